"""The HTTP service: `python -m payments.app --port 8080`.

GET /healthz                      200 {"status": "ok"}
GET /api/v1/quote?amount=&currency=  200 {"amount", "currency", "fee", "total"} or 400
GET /metrics                      its requests in Prometheus's text format

The bad versions of the deploy tests, the demo and the benchmarks:
PAYMENTS_FAIL_RATE=0.2     that share of API responses fail with 500;
PAYMENTS_LATENCY_MS=200    API responses take that much longer (PAYMENTS_SLOW_RATE=0.1:
                           only that share of them);
PAYMENTS_WARMUP_S=5        for that long after its first API request, responses take
                           PAYMENTS_WARMUP_MS (300) longer: a cold start;
PAYMENTS_UNHEALTHY=1       /healthz answers 503.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from payments.fees import QuoteError, quote

VERSION = os.environ.get("PAYMENTS_VERSION", "dev")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _number(name: str, default: float) -> float:
    return float(os.environ.get(name, "") or default)


class Metrics:
    """Its API requests by status, and their durations as a histogram."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: dict[int, int] = {}
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, status: int, seconds: float) -> None:
        with self.lock:
            self.codes[status] = self.codes.get(status, 0) + 1
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1
            self.count += 1
            self.total += seconds

    def text(self) -> str:
        with self.lock:
            lines = ["# TYPE payments_requests_total counter"]
            lines += [
                f'payments_requests_total{{code="{code}",version="{VERSION}"}} {n}'
                for code, n in sorted(self.codes.items())
            ]
            lines.append("# TYPE payments_request_duration_seconds histogram")
            name = "payments_request_duration_seconds"
            lines += [
                f'{name}_bucket{{le="{bound}",version="{VERSION}"}} {n}'
                for bound, n in zip(BUCKETS, self.buckets, strict=True)
            ]
            lines.append(f'{name}_bucket{{le="+Inf",version="{VERSION}"}} {self.count}')
            lines.append(f'{name}_sum{{version="{VERSION}"}} {self.total}')
            lines.append(f'{name}_count{{version="{VERSION}"}} {self.count}')
        return "\n".join(lines) + "\n"


METRICS = Metrics()


class Handler(BaseHTTPRequestHandler):
    server_version = "payments-api"
    fail_rate = _number("PAYMENTS_FAIL_RATE", 0)
    latency_s = _number("PAYMENTS_LATENCY_MS", 0) / 1000
    slow_rate = _number("PAYMENTS_SLOW_RATE", 1)
    warmup_s = _number("PAYMENTS_WARMUP_S", 0)
    warmup_extra_s = _number("PAYMENTS_WARMUP_MS", 300) / 1000
    unhealthy = os.environ.get("PAYMENTS_UNHEALTHY") == "1"
    first_request: float | None = None

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/healthz":
            if self.unhealthy:
                self._send(503, {"status": "unhealthy", "version": VERSION})
                return
            self._send(200, {"status": "ok", "version": VERSION})
        elif url.path == "/metrics":
            self._text(METRICS.text())
        elif url.path == "/api/v1/quote":
            began = time.monotonic()
            status = self._quote(url.query)
            METRICS.observe(status, time.monotonic() - began)
        else:
            self._send(404, {"error": f"no route {url.path}"})

    def _delay(self) -> None:
        now = time.monotonic()
        if Handler.first_request is None:
            Handler.first_request = now
        extra = 0.0
        if now - Handler.first_request < self.warmup_s:
            extra += self.warmup_extra_s
        if self.latency_s and random.random() < self.slow_rate:
            extra += self.latency_s
        if extra:
            time.sleep(extra)

    def _quote(self, query: str) -> int:
        self._delay()
        if random.random() < self.fail_rate:
            self._send(500, {"error": "injected failure"})
            return 500
        params = {k: v[0] for k, v in parse_qs(query).items()}
        try:
            body = quote(params.get("amount", ""), params.get("currency", "EUR"))
        except QuoteError as exc:
            self._send(400, {"error": str(exc)})
            return 400
        self._send(200, body | {"version": VERSION})
        return 200

    def _text(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


class Server(ThreadingHTTPServer):
    request_queue_size = 128
    """A listen backlog for bursts behind a load balancer (the default is 5)."""


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting connections and exit.

    A second thread serves; a third waits for the signal on a pipe that Python's C-level
    handler writes the signal's number to (`signal.set_wakeup_fd`), stops the server and
    exits. Nothing in the stop depends on the main thread running Python code: in CI the
    main thread was once found held inside its signal handler (in a weakref callback
    of the garbage collector) 30 s after SIGTERM, and a stop that waited for it never
    came (an earlier sigwait() in the main thread hung too).
    """
    faulthandler.register(signal.SIGUSR1)  # every thread's stack, for a stop that hangs
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _noted)  # the number reaches the pipe; nothing else to do
    server = Server((host, port), Handler)
    serving = threading.Thread(target=server.serve_forever, args=(0.2,), name="serve")
    serving.start()

    def stop_on_signal() -> None:
        while not {signal.SIGTERM, signal.SIGINT} & set(os.read(wake_read, 64)):
            pass
        server.shutdown()
        server.server_close()
        os._exit(0)

    threading.Thread(target=stop_on_signal, name="stop", daemon=True).start()
    print(f"payments-api {VERSION} listening on {host}:{port}", flush=True)
    serving.join()


def _noted(signum: int, frame: object) -> None:
    """A Python-level handler, so that the signal is caught (and written to the wakeup
    pipe) instead of ending the process."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    # An agent sets CONVEYOR_ADDRESS to its host's address, where the routers reach it.
    parser.add_argument("--host", default=os.environ.get("CONVEYOR_ADDRESS", "127.0.0.1"))
    args = parser.parse_args()
    serve(args.port, args.host)


if __name__ == "__main__":
    main()
