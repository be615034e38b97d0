"""Log lines: one JSON object per event with its level, time, logger and the ids bound
for the work it belongs to; readable text on a terminal."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from conveyor.observability.logs import bound, configure


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_bound_ids(restored: None):
    stream = io.StringIO()
    configure("json", "INFO", stream)
    log = logging.getLogger("conveyor.test")
    with bound(run_id="r-1", job_id=None):
        with bound(job_id="j-2"):
            log.info("job %s finished", "build", extra={"status": "success"})
        log.debug("not shown at INFO")
    log.warning("after the block")
    first, second = lines(stream)
    assert first["event"] == "job build finished" and first["level"] == "info"
    assert (first["logger"], first["run_id"], first["job_id"]) == ("conveyor.test", "r-1", "j-2")
    assert first["status"] == "success" and str(first["timestamp"]).endswith("Z")
    assert "run_id" not in second and second["level"] == "warning"


def test_an_exception_is_one_line_with_its_traceback_as_data(restored: None):
    stream = io.StringIO()
    configure("json", "INFO", stream)
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("conveyor.test").exception("it failed")
    (line,) = lines(stream)
    assert line["event"] == "it failed" and line["level"] == "error"
    frames = line["exception"]
    assert isinstance(frames, list) and frames[0]["exc_type"] == "ValueError"


def test_a_terminal_gets_readable_lines(restored: None):
    stream = io.StringIO()
    configure("console", "INFO", stream)
    with bound(deployment_id="d-3"):
        logging.getLogger("conveyor.test").info("promoted")
    text = stream.getvalue()
    assert "promoted" in text and "deployment_id=d-3" in text and not text.startswith("{")


def test_runner_calls_are_logged_at_debug_unless_refused():
    import logging

    from conveyor.api.metrics import _level

    finish = "/api/v1/runners/jobs/{job_id}/finish"
    assert _level(finish, 200) == logging.DEBUG
    assert _level(finish, 409) == logging.INFO  # a stale lease is worth a line
    assert _level("/api/v1/runners/register", 201) == logging.INFO
    assert _level("/api/v1/projects/{team}/{project}/runs", 201) == logging.INFO
    assert _level("/metrics", 200) is None and _level("/healthz", 503) is None
