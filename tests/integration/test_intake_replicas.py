"""Two replicas on PostgreSQL receive 1,000 deliveries: 20 % are redeliveries sent to both
replicas at the same moment, 5 % announce an earlier push under a new delivery id. Exactly
one run per distinct push, and no delivery lost."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.helpers import cli, two_replicas
from tests.intake.conftest import PIPELINE, commit, git

SECRET = "replica-test-secret-0123456789"
PUSHES = 750
REPLAYS = 50
REDELIVERIES = 200


def _signed(push: int, delivery: str, sha: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "ref": f"refs/heads/b{push}",
            "before": "0" * 40,
            "after": sha,
            "created": True,
            "commits": [],
            "repository": {"default_branch": "main"},
        }
    ).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={signature}",
        "Content-Type": "application/json",
    }


async def _send_all(urls: list[str], sha: str) -> list[tuple[int, str]]:
    """800 deliveries: one per push, plus replays that announce a push again under a new
    delivery id. 200 of them are also redelivered: the two copies go to both replicas at
    the same moment. 1,000 requests in all."""
    rng = random.Random(7)
    redelivered = set(rng.sample(range(PUSHES), REDELIVERIES))
    sends: list[list[tuple[str, int, str]]] = []
    for push in range(PUSHES):
        if push in redelivered:
            sends.append([(urls[0], push, f"d-{push}"), (urls[1], push, f"d-{push}")])
        else:
            sends.append([(urls[push % 2], push, f"d-{push}")])
    for n, push in enumerate(rng.sample(range(PUSHES), REPLAYS)):
        sends.append([(urls[n % 2], push, f"replay-{push}")])
    rng.shuffle(sends)
    gate = asyncio.Semaphore(32)
    results: list[tuple[int, str]] = []

    async def one(client: httpx.AsyncClient, group: list[tuple[str, int, str]]) -> None:
        async with gate:
            answers = await asyncio.gather(
                *(
                    client.post(f"{url}/hooks/github/a/svc", content=body, headers=headers)
                    for url, push, delivery in group
                    for body, headers in [_signed(push, delivery, sha)]
                )
            )
        results.extend((a.status_code, a.json().get("status", "")) for a in answers)

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(one(client, g) for g in sends))
    return results


@pytest.mark.slow
def test_two_replicas_deduplicate_a_thousand_deliveries(postgres_url: str, tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    sha = commit(repo, {"conveyor.yml": PIPELINE.replace('{paths: ["src/**"]}', "{}")})
    refs = "".join(f"create refs/heads/b{i} {sha}\n" for i in range(PUSHES))
    subprocess.run(["git", "update-ref", "--stdin"], cwd=repo, input=refs, text=True, check=True)
    extra = {"CONVEYOR_HOOK_RATE_LIMIT": "100000/second"}
    with two_replicas(tmp_path, postgres_url, client_of=0, extra=extra) as (urls, env, _):
        cli(env, "team", "create", "a")
        cli(env, "project", "create", "a/svc", "--repo", str(repo), "--provider", "github",
            "--webhook-secret", SECRET)  # fmt: skip
        results = asyncio.run(_send_all(urls, sha))
        assert len(results) == PUSHES + REDELIVERIES + REPLAYS == 1000
        assert all(code < 300 for code, _ in results), sorted(set(results))
        accepted = sum(1 for code, status in results if status == "accepted")
        duplicates = sum(1 for code, status in results if status == "duplicate")
        # Of the two copies of each redelivery, exactly one was stored.
        assert (accepted, duplicates) == (PUSHES + REPLAYS, REDELIVERIES)
        deadline = time.monotonic() + 180
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            while True:
                waiting = conn.execute(
                    "SELECT count(*) FROM deliveries WHERE state = 'received'"
                ).fetchone()
                if waiting == (0,):
                    break
                assert time.monotonic() < deadline, f"{waiting} deliveries still waiting"
                time.sleep(0.5)
            states = dict(conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state"))
            assert states == {"done": PUSHES + REPLAYS}
            per_ref = conn.execute("SELECT ref, count(*) FROM runs GROUP BY ref").fetchall()
            assert len(per_ref) == PUSHES
            assert {count for _, count in per_ref} == {1}
