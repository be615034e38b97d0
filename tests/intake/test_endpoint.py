"""POST /hooks/{provider}/{team}/{project} against a real git repository: answers,
deduplication by delivery and by commit, changed files and path filters, secrets."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from conveyor.intake.providers.base import standard_headers
from tests.intake.conftest import SECRET, Hooks, commit, git, make_hooks, push_payload

ZERO = "0" * 40


def test_push_starts_one_run_and_a_redelivery_starts_nothing(hooks: Hooks, repo: Path) -> None:
    project = hooks.project("github")
    base = git(repo, "rev-parse", "HEAD")
    head = commit(repo, {"src/app.py": "v2\n"})
    payload = push_payload("refs/heads/main", base, head)
    first = hooks.github(project, "push", payload, delivery="d-1")
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "accepted"
    again = hooks.github(project, "push", payload, delivery="d-1")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    (done,) = hooks.settled(project, 1)
    assert done["state"] == "done" and len(done["runs"]) == 1
    assert "1 changed files since" in done["outcome"][0]
    # The same push announced by another delivery (a Gitea replay has a new id): one run.
    replay = hooks.github(project, "push", payload, delivery="d-2")
    assert replay.status_code == 202
    deliveries = hooks.settled(project, 2)
    assert deliveries[0]["runs"] == done["runs"]
    assert "already started" in deliveries[0]["outcome"][0]
    (run,) = hooks.runs(project)
    assert (run["sha"], run["ref"], run["event"]) == (head, "refs/heads/main", "push")
    # A canceled run does not block a new one for the same commit.
    canceled = hooks.client.post(f"/api/v1/runs/{run['id']}/cancel", headers=hooks.admin)
    assert canceled.status_code == 200, canceled.text
    assert hooks.github(project, "push", payload, delivery="d-3").status_code == 202
    hooks.settled(project, 3)
    assert len(hooks.runs(project)) == 2


def test_path_filters_use_the_diff_or_the_merge_base(hooks: Hooks, repo: Path) -> None:
    project = hooks.project("github")
    base = git(repo, "rev-parse", "HEAD")
    docs_only = commit(repo, {"docs/a.md": "b\n"})
    hooks.github(project, "push", push_payload("refs/heads/main", base, docs_only))
    (skipped,) = hooks.settled(project, 1)
    assert skipped["runs"] == [] and "not triggered" in skipped["outcome"][0]
    assert "match none of the 1 changed files" in skipped["outcome"][0]
    # A new branch: compared with its merge-base on main, not "everything changed".
    git(repo, "checkout", "-q", "-b", "feature")
    docs_again = commit(repo, {"docs/b.md": "b\n"})
    hooks.github(project, "push", push_payload("refs/heads/feature", ZERO, docs_again))
    new_branch = hooks.settled(project, 2)[0]
    assert new_branch["runs"] == []
    assert "merge-base with main" in new_branch["outcome"][0]
    code = commit(repo, {"src/new.py": "x\n"})
    hooks.github(project, "push", push_payload("refs/heads/feature", docs_again, code))
    started = hooks.settled(project, 3)[0]
    assert len(started["runs"]) == 1, started
    # Payload lists that are complete are used as they are.
    listed = push_payload(
        "refs/heads/feature",
        code,
        code,
        commits=[{"added": [], "modified": ["src/listed.py"], "removed": []}],
    )
    hooks.github(project, "push", listed, delivery="listed")
    from_payload = hooks.settled(project, 4)[0]
    assert "1 changed files listed in the payload" in from_payload["outcome"][0]
    # Four commits, one conveyor.yml: it was parsed once (the cache is keyed by blob).
    parsed = hooks.client.app.state.coordinator.intake.runs._pipelines
    assert [path for _, path in parsed] == ["conveyor.yml"]


def test_deletions_pull_requests_and_merges(hooks: Hooks, repo: Path) -> None:
    project = hooks.project("github")
    main = git(repo, "rev-parse", "HEAD")
    deleted = hooks.github(project, "push", push_payload("refs/heads/old", main, ZERO))
    assert deleted.status_code == 202
    (gone,) = hooks.settled(project, 1)
    assert gone["runs"] == [] and gone["outcome"] == ["refs/heads/old was deleted"]
    git(repo, "checkout", "-q", "-b", "topic")
    head = commit(repo, {"src/topic.py": "t\n"})
    git(repo, "update-ref", "refs/pull/7/head", head)
    pr = {
        "action": "opened",
        "number": 7,
        "pull_request": {
            "head": {"sha": head, "ref": "topic"},
            "base": {"ref": "main", "sha": main},
            "merged": False,
            "title": "Topic",
        },
        "repository": {"default_branch": "main"},
    }
    assert hooks.github(project, "pull_request", pr).status_code == 202
    # `synchronize` of the same commit is the same run; `labeled` is ignored, not stored.
    assert hooks.github(project, "pull_request", {**pr, "action": "synchronize"}).status_code == 202
    labeled = hooks.github(project, "pull_request", {**pr, "action": "labeled"})
    assert labeled.status_code == 202 and labeled.json()["status"] == "ignored"
    hooks.settled(project, 3)
    (run,) = hooks.runs(project)
    assert (run["event"], run["ref"], run["sha"]) == ("pull_request", "refs/pull/7/head", head)
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "topic", "-m", "merge topic")
    merge = git(repo, "rev-parse", "HEAD")
    merged = {**pr, "action": "closed"}
    merged["pull_request"] = {**pr["pull_request"], "merged": True, "merge_commit_sha": merge}
    assert hooks.github(project, "pull_request", merged).status_code == 202
    hooks.settled(project, 4)
    newest = hooks.runs(project)[0]
    assert (newest["event"], newest["ref"], newest["sha"]) == (
        "pull_request.merged",
        "refs/heads/main",
        merge,
    )


def test_refusals_store_nothing(tmp_path: Path, repo: Path) -> None:
    for hooks in make_hooks(tmp_path, repo, hook_body_mb=1):
        project = hooks.project("github")
        head = git(repo, "rev-parse", "HEAD")
        payload = push_payload("refs/heads/main", ZERO, head)
        wrong = hooks.github(project, "push", payload, secret="not the secret at all")
        assert wrong.status_code == 401 and wrong.json()["error"] == "bad_signature"
        unsigned = hooks.client.post(
            f"/hooks/github/a/{project}", json=payload, headers={"X-GitHub-Event": "push"}
        )
        assert unsigned.status_code == 401
        assert hooks.github("nope", "push", payload).status_code == 404
        unknown = hooks.client.post("/hooks/svn/a/github-svc", content=b"{}")
        assert unknown.status_code == 404 and "github" in unknown.json()["detail"]
        body = b"{not json"
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={signature}"}
        bad_json = hooks.client.post(f"/hooks/github/a/{project}", content=body, headers=headers)
        assert bad_json.status_code == 400 and bad_json.json()["error"] == "invalid_json"
        big = hooks.client.post(f"/hooks/github/a/{project}", content=b"x" * (1024 * 1024 + 1))
        assert big.status_code == 413
        ping = hooks.github(project, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
        assert (ping.status_code, ping.json()["status"]) == (200, "pong")
        ignored = hooks.github(project, "issues", {"action": "opened"})
        assert ignored.status_code == 202
        assert ignored.json()["status"] == "ignored" and "issues" in ignored.json()["reason"]
        assert hooks.deliveries(project) == []


def test_rotation_keeps_the_old_secret_for_the_grace_period(hooks: Hooks, repo: Path) -> None:
    project = hooks.project("github")
    head = git(repo, "rev-parse", "HEAD")
    payload = push_payload("refs/tags/v1", ZERO, head)
    url = f"/api/v1/projects/a/{project}/webhook-secret"
    rotated = hooks.client.post(url, json={"grace_seconds": 3600}, headers=hooks.admin)
    assert rotated.status_code == 200
    new = rotated.json()["webhook_secret"]
    assert new.startswith("whsec_") and new != SECRET
    assert hooks.github(project, "push", payload, secret=SECRET).status_code == 202
    assert hooks.github(project, "push", payload, secret=new).status_code == 202
    again = hooks.client.post(url, json={"grace_seconds": 0}, headers=hooks.admin)
    newest = again.json()["webhook_secret"]
    assert hooks.github(project, "push", payload, secret=new).status_code == 401
    assert hooks.github(project, "push", payload, secret=newest).status_code == 202
    viewer = hooks.client.post(
        "/api/v1/teams/a/tokens", json={"name": "v", "role": "viewer"}, headers=hooks.admin
    ).json()["token"]
    denied = hooks.client.post(url, json={}, headers={"Authorization": f"Bearer {viewer}"})
    assert denied.status_code == 403
    # The tag push started its run once, whichever secret signed it.
    hooks.settled(project, 3)
    (run,) = hooks.runs(project)
    assert (run["event"], run["ref"]) == ("tag", "refs/tags/v1")


def test_generated_secret_is_shown_once(hooks: Hooks, repo: Path) -> None:
    body = {"team": "a", "name": "gen", "repo_url": f"file://{repo}"}
    created = hooks.client.post("/api/v1/projects", json=body, headers=hooks.admin).json()
    assert created["provider"] == "git" and created["webhook_secret"].startswith("whsec_")
    shown = hooks.client.get("/api/v1/projects/a/gen", headers=hooks.admin).json()
    assert shown["webhook_secret"] is None
    # The bare-git provider: Standard Webhooks signatures with that secret.
    head = git(repo, "rev-parse", "HEAD")
    payload = json.dumps(
        {"ref": "refs/heads/main", "before": ZERO, "after": head, "changed": ["src/app.py"]}
    ).encode()
    signed = standard_headers(created["webhook_secret"], "msg_1", payload, datetime.now(UTC))
    answer = hooks.client.post("/hooks/git/a/gen", content=payload, headers=signed)
    assert answer.status_code == 202, answer.text
    (done,) = hooks.settled("gen", 1)
    assert len(done["runs"]) == 1 and "listed in the payload" in done["outcome"][0]


def test_hooks_over_the_project_rate_get_429(tmp_path: Path, repo: Path) -> None:
    for hooks in make_hooks(tmp_path, repo, hook_rate_limit="2/minute"):
        project = hooks.project("github")
        ping = {"zen": "z", "hook_id": 1}
        codes = [hooks.github(project, "ping", ping).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = hooks.github(project, "ping", ping)
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        other = hooks.project("gitlab")
        token = {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "System Hook"}
        answer = hooks.client.post(f"/hooks/gitlab/a/{other}", json={}, headers=token)
        assert answer.status_code == 202  # each project has its own budget


def test_an_unparseable_payload_is_kept_and_marked_failed(hooks: Hooks) -> None:
    project = hooks.project("github")
    response = hooks.github(project, "push", {"ref": 5, "after": []}, delivery=str(uuid.uuid4()))
    assert response.status_code == 202
    (failed,) = hooks.settled(project, 1)
    assert failed["state"] == "failed"
    assert "unexpected payload: after is missing or not a string" in failed["outcome"]


def test_redis_counts_one_budget_across_replicas(
    tmp_path: Path, repo: Path, redis_url: str
) -> None:
    """Two coordinators sharing Redis share a project's budget: 3/minute in all."""
    name = f"svc-{uuid.uuid4().hex[:8]}"  # fresh Redis keys for every run of the test
    config = {"hook_rate_limit": "3/minute", "redis_url": redis_url}
    first = make_hooks(tmp_path / "one", repo, **config)
    second = make_hooks(tmp_path / "two", repo, **config)
    one, two = next(first), next(second)
    try:
        ping = {"zen": "z", "hook_id": 1}
        one.project("github", name)
        two.project("github", name)
        codes = [hooks.github(name, "ping", ping).status_code for hooks in (one, two, one, two)]
        assert codes == [200, 200, 200, 429]
        assert 1 <= int(one.github(name, "ping", ping).headers["Retry-After"]) <= 60
    finally:
        for gen in (first, second):
            gen.close()
