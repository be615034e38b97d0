"""The HTTP service: `python -m payments.app --port 8080`.

GET /healthz                      200 {"status": "ok"}
GET /api/v1/quote?amount=&currency=  200 {"amount", "currency", "fee", "total"} or 400
PAYMENTS_FAIL_RATE=0.2 makes that share of API responses fail with 500, and
PAYMENTS_UNHEALTHY=1 makes /healthz answer 503: the bad version of the deploy tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from payments.fees import QuoteError, quote

VERSION = os.environ.get("PAYMENTS_VERSION", "dev")


class Handler(BaseHTTPRequestHandler):
    server_version = "payments-api"
    fail_rate = float(os.environ.get("PAYMENTS_FAIL_RATE", "0") or 0)
    unhealthy = os.environ.get("PAYMENTS_UNHEALTHY") == "1"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/healthz":
            if self.unhealthy:
                self._send(503, {"status": "unhealthy", "version": VERSION})
                return
            self._send(200, {"status": "ok", "version": VERSION})
        elif url.path == "/api/v1/quote":
            if random.random() < self.fail_rate:
                self._send(500, {"error": "injected failure"})
                return
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                body = quote(params.get("amount", ""), params.get("currency", "EUR"))
            except QuoteError as exc:
                self._send(400, {"error": str(exc)})
                return
            self._send(200, body | {"version": VERSION})
        else:
            self._send(404, {"error": f"no route {url.path}"})

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

    The signals are blocked and taken with sigwait() in the main thread while a
    second thread serves: no Python signal handler runs in the middle of other
    code, so stopping cannot deadlock on a lock that code held.
    """
    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    server = Server((host, port), Handler)
    serving = threading.Thread(target=server.serve_forever, args=(0.2,), name="serve")
    serving.start()
    print(f"payments-api {VERSION} listening on {host}:{port}", flush=True)
    signal.sigwait(stops)
    server.shutdown()
    serving.join()
    server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    serve(args.port, args.host)


if __name__ == "__main__":
    main()
