"""Conveyor's logs: one line per event, with its level, time (UTC), logger and message,
and whichever of `request_id`, `run_id`, `job_id`, `deployment_id`, `environment_id` and
`delivery_id` apply where it was written (bound for the task doing the work, with
`bound`). JSON for a log stack, or human-readable on a terminal.

The code logs through the standard library's `logging`; structlog formats it
(`ProcessorFormatter`), so every library's lines come out the same way.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import structlog
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars

Format = Literal["auto", "json", "console"]
IDS = ("request_id", "run_id", "job_id", "deployment_id", "environment_id", "delivery_id")
"""What may be bound to the lines of a piece of work."""


def configure(
    form: Format = "auto", level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log line of this process to `stream` (stderr) in `form`: `json`, or
    `console`, or `auto` (console on a terminal, JSON otherwise). Returns the handler."""
    out = stream or sys.stderr
    as_json = form == "json" or (form == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    final: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if as_json:
        final.append(structlog.processors.dict_tracebacks)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[*final, renderer]
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Uvicorn's own access and error loggers come through the same handler.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


@contextmanager
def bound(**ids: object) -> Iterator[None]:
    """Add these ids to every line written by this task (and the tasks it starts) inside
    the block; the ones that are None are left out."""
    values = {k: str(v) for k, v in ids.items() if v is not None}
    tokens = bind_contextvars(**values)
    try:
        yield
    finally:
        reset_contextvars(**tokens)


def bound_value(name: str) -> str | None:
    """What `bound` holds for `name` in this task now (the request id of an audit entry)."""
    value = get_contextvars().get(name)
    return None if value is None else str(value)
