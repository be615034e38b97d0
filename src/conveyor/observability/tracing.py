"""Traces with OpenTelemetry, switched on by its standard environment variables
(docs/metrics.md, "Traces").

Off unless `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an OTLP
endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
`OTEL_SDK_DISABLED=true` wins. The SDK reads the rest itself: the endpoint and headers,
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`.

Off, every span is the API's no-op span and `traceparent()` is None, so nothing is
stored. On, a trace follows one change from the webhook to the deployment: the context
crosses the inbox, the run, the job's claim and the runner's attempt as a W3C
`traceparent` stored with each row or sent as an HTTP header.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind

TRACER = trace.get_tracer("conveyor")
PROVIDER: Any | None = None
"""A tracer provider of this module's own (tests); None: the process-wide one."""
HEADER = "traceparent"
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Asked every few seconds by probes and scrapers: no trace of their own."""


def wanted_exporters(environ: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters the environment asks for (none: tracing stays off)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    named = env.get("OTEL_TRACES_EXPORTER") or ("otlp" if endpoint else "none")
    wanted = [n.strip() for n in named.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in wanted if n not in ("otlp", "console")]
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} (use otlp, console, none)")
    return wanted


def configure(service: str) -> Any | None:
    """Install a tracer provider for this process when the environment asks for one;
    returns it (to shut down at exit, which sends what is left), else None."""
    wanted = wanted_exporters()
    if not wanted:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    for exporter_name in wanted:
        exporter: SpanExporter
        if exporter_name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def fastapi_telemetry() -> dict[str, Any]:
    """FastAPI's own telemetry settings: its HTTP server span per request (named after
    the route's template, continuing the caller's `traceparent`) is the one Conveyor's
    spans hang from; its metrics and logs stay off (Prometheus and structlog have them),
    and so do its per-dependency spans (a request's cost, not its story)."""
    return {
        "tracer_provider": PROVIDER,
        "tracing": True,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "auto_configure": False,
        "exclude": lambda scope: scope.get("path") in QUIET_PATHS,
    }


def traceparent() -> str | None:
    """The current span's context as a W3C `traceparent` (None when nothing is traced)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(HEADER)


def on() -> bool:
    """Whether spans are recorded in this process (`configure` installed a provider, or
    a test gave this module one): when not, no stored context is worth reading."""
    return PROVIDER is not None or not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider
    )


def annotate(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (nothing when it is not recording)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes({k: v for k, v in attributes.items() if v is not None})


async def inject(request: Any) -> None:
    """An httpx request hook: the request carries the current trace context."""
    propagate.inject(request.headers)


@contextmanager
def span(
    name: str,
    parent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A span, current inside the block: a child of `parent` (a stored `traceparent`)
    when given, else of the current span. (A request's own context comes in through
    FastAPI's server span, see `fastapi_telemetry`.)"""
    if not on():  # nothing records it: skip the no-op span's context switch
        yield trace.INVALID_SPAN
        return
    context = propagate.extract({HEADER: parent}) if parent else None
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with TRACER.start_as_current_span(name, context=context, kind=kind, attributes=attrs) as made:
        yield made
