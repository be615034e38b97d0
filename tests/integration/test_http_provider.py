"""The `http` provider against a real HTTP server on loopback: a number at a JSON path,
a boolean, the status code, and every way of having no data."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conveyor.analysis.providers.base import Slot, SlotTarget
from conveyor.analysis.providers.http import HttpProvider
from conveyor.pipeline.analysis import Metric
from tests.helpers import free_port

ANSWERS = {
    "/health": (200, {"status": {"errors": 3, "ok": True, "mode": "degraded"}}),
    "/broken": (503, {"status": {"errors": 40}}),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/text":
            self._send(200, b"not json", "text/plain")
            return
        status, body = ANSWERS.get(self.path, (404, {"error": "no such path"}))
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def preview() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def metric(url: str, json_path: str | None = None) -> Metric:
    return Metric(name="api", provider="http", url=url, json_path=json_path, max=0)


async def measure(m: Metric, preview: str):  # type: ignore[no-untyped-def]
    provider = HttpProvider()
    try:
        targets = [SlotTarget(Slot.CANARY, url=preview), SlotTarget(Slot.STABLE)]
        return await provider.measure(m, targets, 0.0, 1.0)
    finally:
        await provider.close()


async def test_a_number_at_the_json_path_of_the_preview(preview: str):
    (found,) = await measure(metric("{{ preview }}/health", "$.status.errors"), preview)
    assert (found.slot, found.value, found.samples) == (Slot.CANARY, 3.0, 1)
    assert "$.status.errors = 3" in found.detail


async def test_a_boolean_reads_as_one_or_zero(preview: str):
    (found,) = await measure(metric("{{ preview }}/health", "$.status.ok"), preview)
    assert found.value == 1.0


async def test_without_a_path_the_value_is_the_status_code(preview: str):
    (found,) = await measure(metric("{{ preview }}/broken"), preview)
    assert found.value == 503.0


@pytest.mark.parametrize(
    ("path", "json_path", "why"),
    [
        ("/health", "$.status.missing", "nothing at $.status.missing"),
        ("/health", "$.status.mode", "is 'degraded', not a number"),
        ("/text", "$.x", "not JSON"),
    ],
)
async def test_no_number_is_no_data(preview: str, path: str, json_path: str, why: str):
    (found,) = await measure(metric("{{ preview }}" + path, json_path), preview)
    assert found.value is None and found.samples == 0
    assert why in found.detail


async def test_an_unreachable_url_is_no_data():
    closed = f"http://127.0.0.1:{free_port()}"
    (found,) = await measure(metric(closed + "/health", "$.x"), "http://unused.invalid")
    assert found.value is None and "ConnectError" in found.detail


async def test_no_canary_no_measurement():
    provider = HttpProvider()
    try:
        assert await provider.measure(metric("http://127.0.0.1:1/"), [], 0.0, 1.0) == []
    finally:
        await provider.close()


def test_a_json_path_that_does_not_parse_is_refused():
    with pytest.raises(ValueError, match="not a JSONPath"):
        metric("http://x", "$[[")
