"""`conveyor serve --workers 2` scraped for real: the two worker processes' counts add up
on either page (the API's with the scrape token, the open listener's without), and a
real Prometheus scrapes it and evaluates an alert of deploy/prometheus/alerts.yml on
what it scraped."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

from tests.api.conftest import git_repo
from tests.helpers import ADMIN, conveyor, free_port, healthy, process, wait_until
from tests.monitoring import prometheus

TOKEN = "scrape-me"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def count(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def alert_expr(name: str) -> str:
    rules = YAML(typ="safe").load(RULES.read_text())
    return next(r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == name)


def test_workers_are_counted_together_and_prometheus_evaluates_an_alert(tmp_path: Path):
    port, open_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "CONVEYOR_ADMIN_TOKEN": ADMIN,
        "CONVEYOR_SERVER": url,
        "CONVEYOR_TOKEN": ADMIN,
        "CONVEYOR_METRICS_TOKEN": TOKEN,
        "CONVEYOR_METRICS_ADDRESS": f"127.0.0.1:{open_port}",
    }
    env.pop("CONVEYOR_DATABASE_URL", None)
    args = conveyor(
        "serve", "--port", str(port), "--workers", "2", "--data-dir", str(tmp_path / "data")
    )
    with process(args, tmp_path / "server.log", env):
        wait_until(lambda: healthy(url), 60, "the server")
        open_page = f"http://127.0.0.1:{open_port}/metrics"
        wait_until(lambda: _answers(open_page), 30, "the open metrics listener")
        before = httpx.get(open_page).text
        with httpx.Client() as client:  # new connections: either worker may take each
            for _ in range(40):
                client.get(f"{url}/healthz", headers={"Connection": "close"})
        after = httpx.get(open_page).text
        name = "conveyor_http_request_duration_seconds_count"
        assert count(after, name, route="/healthz") - count(before, name, route="/healthz") == 40
        guarded = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert guarded.status_code == 200 and count(guarded.text, name, route="/healthz") >= 40
        assert httpx.get(f"{url}/metrics").status_code == 401

        # A run waits with no runner online: ConveyorJobsWaitingWithNoRunner's condition.
        repo = git_repo(tmp_path / "repo", "a")
        for command in (
            ("team", "create", "a"),
            ("project", "create", "a/api", "--repo", f"file://{repo}"),
            ("trigger", "a/api", "--ref", "main"),
        ):
            done = subprocess.run(
                conveyor(*command), env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, done.stdout + done.stderr
        config = (
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: conveyor\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{open_port}']}}]\n"
        )
        with prometheus(tmp_path / "prometheus", config) as prom:
            expr = alert_expr("ConveyorJobsWaitingWithNoRunner")

            def firing() -> list:  # type: ignore[type-arg]
                answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}).json()
                return list(answer["data"]["result"])

            (result,) = wait_until(firing, 30, "the alert's condition in Prometheus")
            assert float(result["value"][1]) == 1  # the one pending job (`build`)
            served = httpx.get(
                f"{prom}/api/v1/query",
                params={
                    "query": 'sum(conveyor_http_request_duration_seconds_count{route="/healthz"})'
                },
            ).json()["data"]["result"]
            assert float(served[0]["value"][1]) >= 40


def _answers(page: str) -> bool:
    try:
        return httpx.get(page, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
