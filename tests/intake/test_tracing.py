"""One trace from a webhook to the runner's calls back, recorded by the SDK's in-memory
exporter: the request that stored the delivery, the inbox's translation, the job's claim,
and the runner's requests that carry the claim's context."""

from __future__ import annotations

import time

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.intake.conftest import Hooks, commit, push_payload


def _named(spans: InMemorySpanExporter, name: str, timeout: float = 10.0) -> ReadableSpan:
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in spans.get_finished_spans() if s.name == name]
        if found:
            assert len(found) == 1, found
            return found[0]
        assert time.monotonic() < deadline, [s.name for s in spans.get_finished_spans()]
        time.sleep(0.05)


def _child_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.context is not None and parent.context is not None
    return (
        child.parent is not None
        and child.parent.span_id == parent.context.span_id
        and child.context.trace_id == parent.context.trace_id
    )


def test_a_webhook_s_trace_runs_through_the_inbox_the_claim_and_the_runner(
    spans: InMemorySpanExporter, hooks: Hooks
):
    project = hooks.project("github")
    before = commit(hooks.repo, {"src/app.py": "v1.5\n"})
    after = commit(hooks.repo, {"src/app.py": "v2\n"})
    answer = hooks.github(project, "push", push_payload("refs/heads/main", before, after))
    assert answer.status_code == 202, answer.text
    (delivery,) = hooks.settled(project, 1)
    assert len(delivery["runs"]) == 1, delivery

    hook = _named(spans, "POST /hooks/{provider}/{team}/{project}")
    translate = _named(spans, "inbox.translate")
    assert hook.kind is SpanKind.SERVER and hook.parent is None
    assert hook.attributes is not None and hook.attributes["http.response.status_code"] == 202
    assert _child_of(translate, hook)
    assert translate.attributes is not None
    assert translate.attributes["conveyor.delivery_id"] == delivery["id"]

    reg = hooks.client.post("/api/v1/runner-tokens", json={}, headers=hooks.admin).json()
    runner = hooks.client.post(
        "/api/v1/runners/register", json={"token": reg["token"], "name": "r1"}
    ).json()["token"]
    auth = {"Authorization": f"Bearer {runner}"}
    job = hooks.client.post("/api/v1/runners/jobs/request", params={"wait": 0}, headers=auth)
    assignment = job.json()
    claim = _named(spans, "job.claim")
    assert _child_of(claim, translate)
    assert claim.attributes is not None and claim.attributes["conveyor.job"] == "build"
    assert claim.attributes["conveyor.run_id"] == delivery["runs"][0]
    assert claim.context is not None
    assert assignment["traceparent"].startswith(
        f"00-{claim.context.trace_id:032x}-{claim.context.span_id:016x}-"
    )

    # The runner sends the claim's context back with every call about the job.
    beat = hooks.client.post(
        f"/api/v1/runners/jobs/{assignment['job_id']}/heartbeat",
        json={"fence": assignment["fence"]},
        headers=auth | {"traceparent": assignment["traceparent"]},
    )
    assert beat.status_code == 200
    heartbeat = _named(spans, "POST /api/v1/runners/jobs/{job_id}/heartbeat")
    assert heartbeat.kind is SpanKind.SERVER and _child_of(heartbeat, claim)
    # The runner's long poll came without a context: a trace of its own.
    request = _named(spans, "POST /api/v1/runners/jobs/request")
    assert request.context is not None and hook.context is not None
    assert request.parent is None and request.context.trace_id != hook.context.trace_id
