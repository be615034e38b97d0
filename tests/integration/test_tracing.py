"""Real `conveyor serve` and `conveyor runner` processes export their spans over OTLP/HTTP
(the SDK's exporter, configured by OTEL_* variables only) to a collector on loopback: one
trace runs from the webhook through the inbox, the claim and the runner's attempt, and the
runner's calls back to the coordinator continue it."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.helpers import ADMIN, cli, conveyor, free_port, healthy, process, wait_until
from tests.intake.conftest import commit, git

SECRET = "tracing-test-secret-0123456789"
PIPELINE = """\
version: 1
service: svc
team: a
jobs:
  build: {script: "echo traced"}
"""


class Collector:
    """An OTLP/HTTP trace receiver: every span it was sent, with its service's name."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            for resource in request.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource.resource.attributes
                    if a.key == "service.name"
                )
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        attributes = {a.key: a.value for a in span.attributes}
                        self.spans.append(
                            {
                                "service": service,
                                "name": span.name,
                                "trace": span.trace_id.hex(),
                                "id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "attributes": attributes,
                            }
                        )

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["name"] == name]


@pytest.fixture
def collector() -> Iterator[tuple[str, Collector]]:
    found = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = 404
            if self.path == "/v1/traces":
                found.receive(body)
                status = 200
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", found
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_one_trace_from_the_webhook_to_the_runner_s_calls(
    tmp_path: Path, collector: tuple[str, Collector]
):
    endpoint, spans = collector
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    sha = commit(repo, {"conveyor.yml": PIPELINE})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "CONVEYOR_ADMIN_TOKEN": ADMIN,
        "CONVEYOR_SERVER": url,
        "CONVEYOR_TOKEN": ADMIN,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    env.pop("CONVEYOR_DATABASE_URL", None)
    serve = conveyor("serve", "--port", str(port), "--data-dir", str(tmp_path / "server"))
    with process(serve, tmp_path / "server.log", env):
        wait_until(lambda: healthy(url), 30, "the server")
        cli(env, "team", "create", "a")
        cli(env, "project", "create", "a/svc", "--repo", str(repo), "--provider", "github",
            "--webhook-secret", SECRET)  # fmt: skip
        registration = cli(env, "runner-token", "create", "--team", "a")
        runner = conveyor("runner", "--token", registration, "--data-dir", str(tmp_path / "r"))
        with process(runner, tmp_path / "runner.log", env):
            body = json.dumps(
                {
                    "ref": "refs/heads/main",
                    "before": "0" * 40,
                    "after": sha,
                    "created": True,
                    "commits": [],
                    "repository": {"default_branch": "main"},
                }
            ).encode()
            signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            answer = httpx.post(
                f"{url}/hooks/github/a/svc",
                content=body,
                headers={
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": "traced-1",
                    "X-Hub-Signature-256": f"sha256={signature}",
                    "Content-Type": "application/json",
                },
            )
            assert answer.status_code == 202, answer.text

            def finished() -> list[dict[str, Any]]:
                runs = json.loads(cli(env, "runs", "a/svc", "--json"))["items"]
                return runs if runs and runs[0]["status"] == "success" else []

            (run,) = wait_until(finished, 60, "the run to succeed")
            wait_until(lambda: spans.named("job.attempt"), 20, "the runner's attempt span")
            finish = "POST /api/v1/runners/jobs/{job_id}/finish"
            wait_until(lambda: spans.named(finish), 20, "the coordinator's finish span")

    (hook,) = spans.named("POST /hooks/{provider}/{team}/{project}")
    (translate,) = spans.named("inbox.translate")
    (claim,) = spans.named("job.claim")
    (attempt,) = spans.named("job.attempt")
    (finished_span,) = spans.named(finish)
    trace = hook["trace"]
    assert hook["service"] == "conveyor-coordinator" and hook["parent"] == ""
    assert (translate["trace"], translate["parent"]) == (trace, hook["id"])
    assert (claim["trace"], claim["parent"]) == (trace, translate["id"])
    assert claim["attributes"]["conveyor.run_id"].string_value == run["id"]
    # The runner is another process: the context reached it in the assignment.
    assert attempt["service"] == "conveyor-runner"
    assert (attempt["trace"], attempt["parent"]) == (trace, claim["id"])
    assert attempt["attributes"]["conveyor.status"].string_value == "success"
    # ... and came back in the traceparent header of its calls.
    assert finished_span["service"] == "conveyor-coordinator"
    assert (finished_span["trace"], finished_span["parent"]) == (trace, attempt["id"])
    calls = [s for s in spans.spans if s["parent"] == attempt["id"]]
    assert {s["service"] for s in calls} == {"conveyor-coordinator"}
    # Probes and scrapes make no traces (the fixture asked /healthz until it answered).
    assert not [s for s in spans.spans if s["name"].startswith("GET /healthz")]
