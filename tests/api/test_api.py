"""The HTTP API in-process, against real SQLite and real git repositories."""

from __future__ import annotations

import os
import stat
import subprocess
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import delete

from conveyor.api.auth import token_hash
from conveyor.coordinator.app import create_app
from conveyor.coordinator.config import ADMIN_TOKEN_FILE, ServerConfig
from conveyor.storage.tables import ApiToken
from tests.api.conftest import World


def trigger(world: World, who: str = "a:developer", team: str = "a", **extra):
    return world.call(
        who, "POST", f"/api/v1/projects/{team}/api/runs", json={"ref": "main"}, **extra
    )


def test_health_needs_no_token(world: World):
    assert world.client.get("/healthz").json() == {"status": "ok"}
    assert world.client.get("/readyz").json() == {"status": "ready"}


def test_stats_count_sql_statements_for_the_admin(world: World):
    before = world.call("admin", "GET", "/api/v1/stats").json()["sql_statements"]
    trigger(world)
    after = world.call("admin", "GET", "/api/v1/stats").json()
    assert after["sql_statements"] > before > 0
    assert world.call("a:owner", "GET", "/api/v1/stats").status_code == 403


def test_a_generated_admin_token_is_written_once_with_mode_600(tmp_path: Path):
    app = create_app(ServerConfig(data_dir=tmp_path))
    with TestClient(app) as client:
        token = (tmp_path / ADMIN_TOKEN_FILE).read_text().strip()
        assert token.startswith("cvy_admin_")
        assert stat.S_IMODE(os.stat(tmp_path / ADMIN_TOKEN_FILE).st_mode) == 0o600
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/teams", headers=headers).status_code == 200
    with TestClient(create_app(ServerConfig(data_dir=tmp_path))):
        assert (tmp_path / ADMIN_TOKEN_FILE).read_text().strip() == token


def test_no_token_is_401_with_a_json_error(world: World):
    response = world.client.get("/api/v1/teams")
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "detail": "send `Authorization: Bearer <token>`",
    }
    bad = world.client.get("/api/v1/teams", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


def test_trigger_runs_the_commit_and_returns_the_run(world: World):
    response = trigger(world)
    assert response.status_code == 201, response.text
    run = response.json()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=world.repos["a"], capture_output=True, text=True
    ).stdout.strip()
    assert run["sha"] == head and run["ref"] == "refs/heads/main" and run["event"] == "manual"
    assert run["status"] == "queued"
    assert [(j["name"], j["status"]) for j in run["jobs"]] == [
        ("build", "pending"),
        ("test", "created"),
    ]
    again = world.call("a:viewer", "GET", f"/api/v1/runs/{run['id']}")
    assert again.status_code == 200 and again.json()["id"] == run["id"]


def test_idempotency_key_returns_the_same_run(world: World):
    key = {"Idempotency-Key": "deploy-42"}
    first = trigger(world, headers=key)
    second = trigger(world, headers=key)
    third = trigger(world)
    assert first.json()["id"] == second.json()["id"] != third.json()["id"]


def test_expired_idempotency_keys_are_purged(world: World):
    from sqlalchemy import select, update

    from conveyor.api.idempotency import KEY_TTL, purge_expired
    from conveyor.domain.clock import utcnow
    from conveyor.storage.tables import IdempotencyRecord

    for key in ("old-1", "old-2", "fresh"):
        assert trigger(world, headers={"Idempotency-Key": key}).status_code == 201
    state = world.client.app.state.coordinator

    async def age_and_purge() -> tuple[int, list[str]]:
        async with state.db.transaction() as session:
            await session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.key.in_(["old-1", "old-2"]))
                .values(created_at=utcnow() - KEY_TTL - timedelta(minutes=1))
            )
        purged = await purge_expired(state.db, utcnow())
        async with state.db.transaction() as session:
            left = list(await session.scalars(select(IdempotencyRecord.key)))
        return purged, left

    assert world.client.portal.call(age_and_purge) == (2, ["fresh"])
    # A purged key starts afresh: a new run, not the stored answer.
    again = trigger(world, headers={"Idempotency-Key": "old-1"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers


def test_idempotency_key_semantics(world: World):
    """The IETF draft: replay, 422 for another body, 409 while in flight, errors replayed,
    keys scoped per token, malformed keys refused."""
    url = "/api/v1/projects/a/api/runs"
    key = {"Idempotency-Key": '"8e03978e-40d5-43e8-bc93-6894a57f9324"'}
    first = world.call("a:developer", "POST", url, json={"ref": "main"}, headers=key)
    assert first.status_code == 201
    replay = world.call("a:developer", "POST", url, json={"ref": "main"}, headers=key)
    assert (replay.status_code, replay.json()) == (201, first.json())
    assert replay.headers["Idempotent-Replayed"] == "true"
    other_body = world.call("a:developer", "POST", url, json={"ref": "other"}, headers=key)
    assert other_body.status_code == 422
    assert other_body.json()["error"] == "idempotency_key_reused"
    # Another token's key of the same value is its own.
    mine = world.call("a:owner", "POST", url, json={"ref": "main"}, headers=key)
    assert mine.status_code == 201 and mine.json()["id"] != first.json()["id"]
    # Errors are stored and replayed too.
    bad = {"Idempotency-Key": "bad-ref-1"}
    error = world.call("a:developer", "POST", url, json={"ref": "nope"}, headers=bad)
    assert error.status_code == 404 and error.json()["error"] == "unknown_ref"
    again = world.call("a:developer", "POST", url, json={"ref": "nope"}, headers=bad)
    assert (again.status_code, again.json()) == (404, error.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    for malformed in ("", '""', "x" * 256, "tab\there"):
        refused = world.call(
            "a:developer", "POST", url, json={"ref": "main"}, headers={"Idempotency-Key": malformed}
        )
        assert refused.status_code in (400, 422), malformed
    # A first request still in progress (here: its record, as another replica would hold
    # it) makes a repeat wait with 409.
    from conveyor.api.auth import token_hash
    from conveyor.api.idempotency import fingerprint
    from conveyor.storage.tables import IdempotencyRecord

    state = world.client.app.state.coordinator

    async def in_flight() -> None:
        async with state.db.transaction() as session:
            session.add(
                IdempotencyRecord(
                    owner=token_hash(world.tokens["a:developer"]),
                    method="POST",
                    route=url,
                    key="busy",
                    fingerprint=fingerprint(url, {"ref": "main", "sha": None}),
                )
            )

    world.client.portal.call(in_flight)
    busy = world.call(
        "a:developer", "POST", url, json={"ref": "main"}, headers={"Idempotency-Key": "busy"}
    )
    assert (busy.status_code, busy.json()["error"]) == (409, "request_in_progress")


def test_roles(world: World):
    assert trigger(world, who="a:viewer").status_code == 403
    body = {"team": "a", "name": "x", "repo_url": "file:///nowhere"}
    assert world.call("a:developer", "POST", "/api/v1/projects", json=body).status_code == 403
    assert world.call("a:maintainer", "POST", "/api/v1/projects", json=body).status_code == 201
    token = {"name": "t", "role": "viewer"}
    assert (
        world.call("a:maintainer", "POST", "/api/v1/teams/a/tokens", json=token).status_code == 403
    )
    assert world.call("a:owner", "POST", "/api/v1/teams/a/tokens", json=token).status_code == 201
    assert world.call("a:owner", "POST", "/api/v1/teams", json={"name": "c"}).status_code == 403


def test_a_repository_url_git_could_never_fetch_is_refused_naming_the_field(world: World):
    """Issue 19 §1.6: `repo_url "Òw"` was stored, then cloned again every interval."""
    for bad, why in (
        ("Òw", "is not a repository git can clone"),
        ("ftp://host/repo.git", "scheme 'ftp'"),
        ("file://relative", "absolute path"),
        ("https://exa mple.com/r.git", "whitespace"),
    ):
        body = {"team": "a", "name": "x", "repo_url": bad}
        refused = world.call("a:maintainer", "POST", "/api/v1/projects", json=body)
        assert refused.status_code == 422, refused.text
        assert "repo_url" in refused.text and why in refused.text, refused.text
    for good in ("git@github.com:a/x.git", "ssh://git@host:22/x.git", "/srv/git/x.git"):
        body = {"team": "a", "name": f"x{len(good)}", "repo_url": good}
        made = world.call("a:maintainer", "POST", "/api/v1/projects", json=body)
        assert made.status_code == 201, made.text


def test_listing_is_per_team_and_paged(world: World):
    ids = [trigger(world).json()["id"] for _ in range(3)]
    trigger(world, who="b:developer", team="b")
    page = world.call("a:viewer", "GET", "/api/v1/runs", params={"limit": 2}).json()
    assert [r["id"] for r in page["items"]] == ids[::-1][:2]
    rest = world.call(
        "a:viewer", "GET", "/api/v1/runs", params={"limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert [r["id"] for r in rest["items"]] == [ids[0]]
    assert len(world.call("admin", "GET", "/api/v1/runs").json()["items"]) == 4
    # Each trigger on main superseded the one before it.
    queued = world.call(
        "a:viewer", "GET", "/api/v1/projects/a/api/runs", params={"status": "queued"}
    )
    assert [r["id"] for r in queued.json()["items"]] == [ids[2]]
    canceled = world.call(
        "a:viewer", "GET", "/api/v1/projects/a/api/runs", params={"status": "canceled"}
    )
    assert [r["id"] for r in canceled.json()["items"]] == [ids[1], ids[0]]
    assert (
        world.call("a:viewer", "GET", "/api/v1/runs", params={"status": "success"}).json()["items"]
        == []
    )
    assert [t["name"] for t in world.call("b:viewer", "GET", "/api/v1/teams").json()] == ["b"]
    assert [p["team"] for p in world.call("b:viewer", "GET", "/api/v1/projects").json()] == ["b"]


def test_cancel(world: World):
    run = trigger(world).json()
    canceled = world.call("a:developer", "POST", f"/api/v1/runs/{run['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    assert {j["status"] for j in canceled["jobs"]} == {"canceled"}


def test_bad_pipeline_and_bad_ref_are_422_with_reasons(world: World):
    repo = world.repos["a"]
    (repo / "conveyor.yml").write_text(
        "version: 1\nservice: api\nteam: a\njobs:\n  x: {scirpt: 1}\n"
    )
    subprocess.run(
        ["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qam", "bad"],
        cwd=repo,
        check=True,
    )
    response = trigger(world)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_pipeline"
    assert "conveyor.yml:5:3: a job needs a `script` (or a `deploy`)" in response.json()["detail"]
    missing = world.call("a:developer", "POST", "/api/v1/projects/a/api/runs", json={"ref": "nope"})
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_ref"
    invalid = world.call("a:developer", "POST", "/api/v1/projects/a/api/runs", json={"reff": "x"})
    assert invalid.status_code == 422 and invalid.json()["error"] == "invalid_request"


def test_runner_protocol_with_fencing(world: World):
    reg = world.call("admin", "POST", "/api/v1/runner-tokens", json={}).json()["token"]
    runner = world.client.post(
        "/api/v1/runners/register", json={"token": reg, "name": "r1", "labels": ["linux"]}
    ).json()["token"]
    headers = {"Authorization": f"Bearer {runner}"}
    run = trigger(world).json()
    job = world.client.post(
        "/api/v1/runners/jobs/request", params={"wait": 0}, headers=headers
    ).json()
    assert job["spec"]["name"] == "build" and job["fence"] == 1 and job["team"] == "a"
    job_id, fence = job["job_id"], job["fence"]
    base = f"/api/v1/runners/jobs/{job_id}"
    assert world.client.post(
        f"{base}/heartbeat", json={"fence": fence}, headers=headers
    ).json() == {"canceled": False}
    assert (
        world.client.put(
            f"{base}/log", params={"fence": fence, "offset": 0}, content=b"hi\n", headers=headers
        ).status_code
        == 204
    )
    stale = world.client.post(
        f"{base}/finish", json={"fence": 0, "status": "success"}, headers=headers
    )
    assert stale.status_code == 409
    done = world.client.post(
        f"{base}/finish",
        json={"fence": fence, "status": "success", "exit_code": 0},
        headers=headers,
    )
    assert done.json() == {"status": "success"}
    log = world.call("a:viewer", "GET", f"/api/v1/jobs/{job_id}/log")
    assert log.content == b"hi\n" and log.headers["X-Job-Status"] == "success"
    assert (
        world.call("a:viewer", "GET", f"/api/v1/jobs/{job_id}/log", params={"offset": 1}).content
        == b"i\n"
    )
    nothing_else_yet = world.client.post(
        "/api/v1/runners/jobs/request", params={"wait": 0}, headers=headers
    )
    assert nothing_else_yet.status_code == 200  # `test` became pending as soon as build finished
    assert world.call("a:viewer", "GET", f"/api/v1/runs/{run['id']}").json()["status"] == "running"
    assert (
        world.client.post("/api/v1/runners/register", json={"token": "x", "name": "r"}).status_code
        == 401
    )
    # A team token is not a runner; a runner is not a team member.
    assert (
        world.call(
            "a:owner", "POST", "/api/v1/runners/jobs/request", params={"wait": 0}
        ).status_code
        == 403
    )
    assert world.client.get(f"/api/v1/runs/{run['id']}", headers=headers).status_code == 404


def _fill(path: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_no_route_leaks_team_a_to_team_b(world: World):
    """Walk every route of the OpenAPI document with team A's objects, as every role of
    team B, as a runner and with no token: nothing of A may come back."""
    run = trigger(world).json()
    freeze = {"cron": "0 18 * * 5", "duration": "62h", "environment": "production"}
    window = world.call("a:maintainer", "POST", "/api/v1/projects/a/api/freezes", json=freeze)
    assert window.status_code == 201, window.text
    ids = {
        "team": "a",
        "project": "api",
        "run_id": run["id"],
        "job_id": run["jobs"][0]["id"],
        "provider": "github",
        "environment": "production",
        "window_id": window.json()["id"],
    }
    reg = world.call("admin", "POST", "/api/v1/runner-tokens", json={"team": "b"}).json()["token"]
    runner = world.client.post(
        "/api/v1/runners/register", json={"token": reg, "name": "rb"}
    ).json()["token"]
    world.tokens["b:runner"] = runner
    open_routes = {"/healthz", "/readyz", "/api/v1/runners/register"}
    collections = {
        "/api/v1/teams",
        "/api/v1/projects",
        "/api/v1/runs",
        "/api/v1/runners",
        "/api/v1/runners/jobs/request",
        # Company-wide, or the caller's own: B's inbox, the company's freezes and switch.
        "/api/v1/approvals",
        "/api/v1/freezes",
        "/api/v1/stop-the-line",
        # The caller's team's own hosts and host tokens (test_hosts.py keeps teams apart).
        "/api/v1/hosts",
        "/api/v1/host-tokens",
    }
    paths = world.client.get("/openapi.json").json()["paths"]
    checked = 0
    for path, methods in paths.items():
        for method in methods:
            url = _fill(path, ids)
            for who in ("b:viewer", "b:developer", "b:maintainer", "b:owner", "b:runner"):
                response = world.call(
                    who, method.upper(), url, json={}, params={"fence": 1, "offset": 0, "wait": 0}
                )
                assert response.status_code < 500, (who, method, url, response.text)
                assert b'"a"' not in response.content and run["id"].encode() not in response.content
                if path in open_routes or path in collections:
                    continue  # not one of team A's objects: may answer, but with B's only
                assert response.status_code >= 400, (who, method, url, response.text)
                checked += 1
            if path not in open_routes:
                anonymous = world.client.request(method.upper(), url)
                assert anonymous.status_code == 401, (method, url)
    assert checked > 40
    for who in ("b:viewer", "b:owner"):
        listed = world.call(who, "GET", "/api/v1/runs")
        assert listed.status_code == 200, listed.text
        assert all(r["team"] == "b" for r in listed.json()["items"])
        assert all(p["team"] == "b" for p in world.call(who, "GET", "/api/v1/projects").json())
        assert [t["name"] for t in world.call(who, "GET", "/api/v1/teams").json()] == ["b"]
        assert [r["team"] for r in world.call(who, "GET", "/api/v1/runners").json()] == ["b"]


def test_oversized_bodies_are_413(world: World):
    big = {"ref": "x" * (3 * 1024 * 1024)}
    response = world.call("a:developer", "POST", "/api/v1/projects/a/api/runs", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"

    def chunks():
        for _ in range(3):
            yield b"x" * (1024 * 1024)

    streamed = world.client.post(
        "/api/v1/teams",
        content=chunks(),
        headers={**world.as_("admin"), "content-type": "application/json"},
    )
    assert streamed.status_code == 413


def test_secrets_are_write_only_and_reach_only_their_project_s_jobs(world: World):
    body = {"name": "DB_PASSWORD", "value": "s3cret-value"}
    assert (
        world.call("a:developer", "POST", "/api/v1/projects/a/api/secrets", json=body).status_code
        == 403
    )
    created = world.call("a:maintainer", "POST", "/api/v1/projects/a/api/secrets", json=body)
    assert created.status_code == 201 and created.json() == {"names": ["DB_PASSWORD"]}
    replaced = world.call(
        "a:maintainer",
        "POST",
        "/api/v1/projects/a/api/secrets",
        json={"name": "DB_PASSWORD", "value": "rotated-value"},
    )
    assert replaced.json() == {"names": ["DB_PASSWORD"]}
    listed = world.call("a:developer", "GET", "/api/v1/projects/a/api/secrets")
    assert listed.json() == {"names": ["DB_PASSWORD"]} and b"rotated" not in listed.content
    bad = world.call(
        "a:maintainer", "POST", "/api/v1/projects/a/api/secrets", json={"name": "1X", "value": "v"}
    )
    assert bad.status_code == 422
    reg = world.call("admin", "POST", "/api/v1/runner-tokens", json={}).json()["token"]
    runner = world.client.post("/api/v1/runners/register", json={"token": reg, "name": "r"}).json()[
        "token"
    ]
    headers = {"Authorization": f"Bearer {runner}"}
    trigger(world, who="b:developer", team="b")
    trigger(world)
    first = world.client.post(
        "/api/v1/runners/jobs/request", params={"wait": 0}, headers=headers
    ).json()
    second = world.client.post(
        "/api/v1/runners/jobs/request", params={"wait": 0}, headers=headers
    ).json()
    by_team = {job["team"]: job for job in (first, second)}
    assert by_team["a"]["secrets"] == {"DB_PASSWORD": "rotated-value"}
    assert by_team["b"]["secrets"] == {}


def test_retry_runs_the_same_commit_again_and_play_starts_a_manual_job(world: World):
    first = trigger(world).json()
    again = world.call("a:developer", "POST", f"/api/v1/runs/{first['id']}/retry")
    assert again.status_code == 201
    assert again.json()["id"] != first["id"] and again.json()["sha"] == first["sha"]
    assert world.call("a:viewer", "POST", f"/api/v1/runs/{first['id']}/retry").status_code == 403
    assert world.call("b:owner", "POST", f"/api/v1/runs/{first['id']}/retry").status_code == 404
    # The new run superseded the first one's interruptible jobs.
    old = world.call("a:viewer", "GET", f"/api/v1/runs/{first['id']}").json()
    assert old["status"] == "canceled"
    job = again.json()["jobs"][0]["id"]
    assert world.call("a:developer", "POST", f"/api/v1/jobs/{job}/play").status_code == 409
    assert world.call("b:owner", "POST", f"/api/v1/jobs/{job}/play").status_code == 404


def test_log_stream_sends_the_log_then_the_end(world: World):
    reg = world.call("admin", "POST", "/api/v1/runner-tokens", json={}).json()["token"]
    runner = world.client.post("/api/v1/runners/register", json={"token": reg, "name": "r"}).json()[
        "token"
    ]
    headers = {"Authorization": f"Bearer {runner}"}
    trigger(world)
    job = world.client.post(
        "/api/v1/runners/jobs/request", params={"wait": 0}, headers=headers
    ).json()
    base = f"/api/v1/runners/jobs/{job['job_id']}"
    world.client.put(
        f"{base}/log",
        params={"fence": job["fence"], "offset": 0},
        content=b"one\n",
        headers=headers,
    )
    world.client.put(
        f"{base}/log",
        params={"fence": job["fence"], "offset": 4},
        content=b"two\n",
        headers=headers,
    )
    world.client.post(
        f"{base}/finish", json={"fence": job["fence"], "status": "success"}, headers=headers
    )
    with world.client.stream(
        "GET", f"/api/v1/jobs/{job['job_id']}/log/stream", headers=world.as_("a:viewer")
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    assert 'event: log\ndata: {"offset": 0, "text": "one\\ntwo\\n"}' in body
    assert body.rstrip().endswith('event: end\ndata: {"status": "success"}')
    assert (
        world.call("b:viewer", "GET", f"/api/v1/jobs/{job['job_id']}/log/stream").status_code == 404
    )


def test_team_quota_is_set_by_the_admin(world: World):
    assert (
        world.call("a:owner", "PATCH", "/api/v1/teams/a", json={"max_running": 2}).status_code
        == 403
    )
    updated = world.call("admin", "PATCH", "/api/v1/teams/a", json={"max_running": 2})
    assert updated.status_code == 200 and updated.json()["max_running"] == 2
    assert world.call("a:viewer", "GET", "/api/v1/teams").json()[0]["max_running"] == 2
    assert (
        world.call("admin", "PATCH", "/api/v1/teams/a", json={"max_running": 0}).status_code == 422
    )
    created = world.call("admin", "POST", "/api/v1/teams", json={"name": "c", "max_running": 5})
    assert created.json()["max_running"] == 5


def test_a_token_over_its_rate_gets_429(tmp_path):
    from tests.api.conftest import ADMIN

    app = create_app(ServerConfig(data_dir=tmp_path, admin_token=ADMIN, rate_limit="3/minute"))
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(app) as client:
        codes = [client.get("/api/v1/teams", headers=headers).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = client.get("/api/v1/teams", headers=headers)
        wait = int(limited.headers["Retry-After"])
        assert 1 <= wait <= 60
        assert limited.json() == {
            "error": "rate_limited",
            "detail": f"this token is limited to 3/minute; retry in {wait}s",
        }
        assert client.get("/healthz").status_code == 200


def _runner_for(world: World, team: str | None, name: str) -> dict[str, str]:
    body = {"team": team} if team else {}
    reg = world.call("admin", "POST", "/api/v1/runner-tokens", json=body).json()["token"]
    token = world.client.post("/api/v1/runners/register", json={"token": reg, "name": name}).json()[
        "token"
    ]
    return {"Authorization": f"Bearer {token}"}


def test_caches_are_kept_per_team_with_counters_and_a_quota(tmp_path):
    from tests.api.conftest import ADMIN, git_repo

    app = create_app(ServerConfig(data_dir=tmp_path / "s", admin_token=ADMIN, cache_quota_mb=1))
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(app) as client:
        world = World(client, {"admin": ADMIN}, {})
        for team in ("a", "b"):
            client.post("/api/v1/teams", json={"name": team}, headers=admin)
            repo = git_repo(tmp_path / f"repo-{team}", team)
            client.post(
                "/api/v1/projects",
                json={"team": team, "name": "api", "repo_url": f"file://{repo}"},
                headers=admin,
            )
        runner_a, runner_b = _runner_for(world, "a", "ra"), _runner_for(world, "b", "rb")
        client.post("/api/v1/projects/a/api/runs", json={"ref": "main"}, headers=admin)
        client.post("/api/v1/projects/b/api/runs", json={"ref": "main"}, headers=admin)
        job_a = client.post(
            "/api/v1/runners/jobs/request", params={"wait": 0}, headers=runner_a
        ).json()
        job_b = client.post(
            "/api/v1/runners/jobs/request", params={"wait": 0}, headers=runner_b
        ).json()
        base_a = f"/api/v1/runners/jobs/{job_a['job_id']}/cache"
        base_b = f"/api/v1/runners/jobs/{job_b['job_id']}/cache"
        fa, fb = {"fence": job_a["fence"]}, {"fence": job_b["fence"]}
        assert client.get(f"{base_a}/deps", params=fa, headers=runner_a).status_code == 404
        assert (
            client.put(
                f"{base_a}/deps", params=fa, content=b"x" * 600_000, headers=runner_a
            ).status_code
            == 204
        )
        got = client.get(f"{base_a}/deps", params=fa, headers=runner_a)
        assert got.status_code == 200 and got.content == b"x" * 600_000
        # Team B's job does not see team A's cache under the same key.
        assert client.get(f"{base_b}/deps", params=fb, headers=runner_b).status_code == 404
        # A second 600 kB archive passes the 1 MiB quota: the least recently used goes.
        assert (
            client.put(
                f"{base_a}/other", params=fa, content=b"y" * 600_000, headers=runner_a
            ).status_code
            == 204
        )
        assert client.get(f"{base_a}/deps", params=fa, headers=runner_a).status_code == 404
        assert client.get(f"{base_a}/other", params=fa, headers=runner_a).status_code == 200
        too_big = client.put(
            f"{base_a}/huge", params=fa, content=b"z" * (2 * 1024 * 1024), headers=runner_a
        )
        assert too_big.status_code == 413
        assert (
            client.get(f"{base_a}/deps", params={"fence": 0}, headers=runner_a).status_code == 409
        )
        assert client.get(f"{base_a}/deps", params=fa, headers=runner_b).status_code == 404
        teams = {t["name"]: t for t in client.get("/api/v1/teams", headers=admin).json()}
        assert (teams["a"]["cache_hits"], teams["a"]["cache_misses"]) == (2, 2)
        assert (teams["b"]["cache_hits"], teams["b"]["cache_misses"]) == (0, 1)


def test_finish_carries_the_log_tail(world: World):
    headers = _runner_for(world, None, "tail")
    trigger(world)
    job = world.client.post("/api/v1/runners/jobs/request", params={"wait": 0}, headers=headers)
    job_id, fence = job.json()["job_id"], job.json()["fence"]
    base = f"/api/v1/runners/jobs/{job_id}"
    world.client.put(
        f"{base}/log", params={"fence": fence, "offset": 0}, content=b"one\n", headers=headers
    ).raise_for_status()
    too_big = world.client.post(
        f"{base}/finish",
        json={"fence": fence, "status": "success", "log": {"offset": 4, "text": "é" * 600_000}},
        headers=headers,
    )
    assert too_big.status_code == 413 and "at most 1048576 bytes" in too_big.json()["detail"]
    done = world.client.post(
        f"{base}/finish",
        json={"fence": fence, "status": "success", "log": {"offset": 4, "text": "two ✓\n"}},
        headers=headers,
    )
    assert done.json() == {"status": "success"}
    log = world.call("a:viewer", "GET", f"/api/v1/jobs/{job_id}/log")
    assert log.content == "one\ntwo ✓\n".encode()


def test_a_token_is_looked_up_once_per_few_seconds(world: World):
    """A token found is kept for a few seconds: a deleted token still works from the
    cache until its entry expires, then gets 401."""
    world.call("a:viewer", "GET", "/api/v1/projects/a/api/runs").raise_for_status()
    state = world.client.app.state.coordinator

    async def drop() -> None:
        async with state.db.transaction() as session:
            await session.execute(
                delete(ApiToken).where(ApiToken.token_hash == token_hash(world.tokens["a:viewer"]))
            )

    world.client.portal.call(drop)
    cached = world.call("a:viewer", "GET", "/api/v1/projects/a/api/runs")
    assert cached.status_code == 200
    state.principals.ttl_s = 0.0
    expired = world.call("a:viewer", "GET", "/api/v1/projects/a/api/runs")
    assert expired.status_code == 401


def test_principal_cache_is_bounded_and_keyed_by_token_hash():
    from conveyor.api.auth import PrincipalCache, token_hash
    from conveyor.domain.principal import Principal
    from conveyor.domain.roles import Role

    cache = PrincipalCache(ttl_s=60.0, size=2)
    for token in ("t1", "t2", "t3"):
        cache.put(Principal(role=Role.VIEWER, subject=token_hash(token)))
    assert cache.get("t1") is None, "the least recently used entry went"
    assert cache.get("t3") is not None and cache.get("t2") is not None
