"""Functional tests against a running instance at $BASE_URL."""

import json
import os
import urllib.error
import urllib.request

BASE_URL = os.environ["BASE_URL"]


def get(path):
    try:
        with urllib.request.urlopen(BASE_URL + path, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_health():
    assert get("/healthz") == (200, {"status": "ok", "version": "dev"})


def test_quote():
    status, body = get("/api/v1/quote?amount=250&currency=USD")
    assert status == 200
    assert body["fee"] == "3.80"
    assert body["total"] == "253.80"


def test_bad_request_is_400():
    status, body = get("/api/v1/quote?amount=-1")
    assert status == 400
    assert "between" in body["error"]


def test_unknown_route_is_404():
    assert get("/nope")[0] == 404


def test_metrics_count_the_api_requests_by_status():
    get("/api/v1/quote?amount=10&currency=EUR")
    with urllib.request.urlopen(BASE_URL + "/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'payments_requests_total{code="200",version="dev"}' in text
    assert 'payments_request_duration_seconds_bucket{le="+Inf",version="dev"}' in text
