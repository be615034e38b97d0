"""observability.tracing: when it is on, how a span finds its parent, and what crosses a
process boundary."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from conveyor.observability import tracing

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ["console", "otlp"]),
        (
            {"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
            [],
        ),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, []),
    ],
)
def test_tracing_is_on_only_when_the_environment_names_an_exporter(environ, wanted):
    assert tracing.wanted_exporters(environ) == wanted


def test_an_unknown_exporter_is_refused_by_name():
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER: zipkin"):
        tracing.wanted_exporters({"OTEL_TRACES_EXPORTER": "otlp,zipkin"})


def test_configure_installs_nothing_when_tracing_is_off(monkeypatch: pytest.MonkeyPatch):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.configure("conveyor-test") is None
    assert not tracing.on()
    with tracing.span("quiet") as span:
        assert not span.is_recording()
        assert tracing.traceparent() is None


def test_a_span_continues_a_stored_traceparent(spans: InMemorySpanExporter):
    with tracing.span("job.claim", PARENT, attributes={"conveyor.job": "build", "x": None}):
        inner = tracing.traceparent()
    (claim,) = spans.get_finished_spans()
    assert claim.context is not None and claim.parent is not None
    assert f"{claim.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{claim.parent.span_id:016x}" == "b7ad6b7169203331"
    assert claim.attributes == {"conveyor.job": "build"}  # None attributes are left out
    assert inner == f"00-0af7651916cd43dd8448eb211c80319c-{claim.context.span_id:016x}-01"


def test_a_span_nests_in_the_current_one_and_takes_attributes(spans: InMemorySpanExporter):
    assert tracing.on()
    with tracing.span("job.attempt", PARENT, SpanKind.CONSUMER):
        with tracing.span("child") as child:
            tracing.annotate({"conveyor.status": "success", "conveyor.exit_code": None})
    inner, outer = spans.get_finished_spans()
    assert outer.kind is SpanKind.CONSUMER and outer.parent is not None
    assert inner.parent is not None and outer.context is not None
    assert inner.parent.span_id == outer.context.span_id
    assert inner.attributes == {"conveyor.status": "success"}
    assert child.get_span_context().trace_id == outer.context.trace_id


def test_without_a_parent_a_span_starts_a_trace_and_requests_carry_it(
    spans: InMemorySpanExporter,
):
    request = httpx.Request("POST", "http://127.0.0.1:1/api/v1/runners/jobs/request")

    async def send() -> None:
        with tracing.span("job.attempt"):
            await tracing.inject(request)

    asyncio.run(send())
    (attempt,) = spans.get_finished_spans()
    assert attempt.parent is None and attempt.context is not None
    sent = request.headers["traceparent"].split("-")
    assert sent[1:3] == [f"{attempt.context.trace_id:032x}", f"{attempt.context.span_id:016x}"]
