"""Deployment policy over the API, role by role: protection rules, the approvals inbox,
approve and reject (not one's own), freeze windows at three levels, stop-the-line, and
the emergency lane; every change audited."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import World
from tests.api.test_deployments import BASE, tarball, upload

SERVICE = """\
version: 1
service: api
team: a
jobs:
  build: {script: "true"}
runtime:
  command: serve --port $PORT
environments:
  production:
    required_approvals: 1
    approver_role: maintainer
"""
PROTECTION = f"{BASE}/environments/production/protection"


@pytest.fixture(autouse=True)
def _haproxy(haproxy_required: None, stops_deploys: None) -> None:
    """Deploy requests need HAProxy on the coordinator; what they start is stopped."""


def service(world: World, marker: str, text: str = SERVICE) -> str:
    return upload(world, tarball({"conveyor.yml": text, "VERSION": marker}))


def deploy(world: World, who: str, digest: str, env: str = "production", **body: Any):  # type: ignore[no-untyped-def]
    payload = {"environment": env, "artifact": digest, **body}
    return world.call(who, "POST", f"{BASE}/deployments", json=payload)


def audit_actions(world: World, team: str = "a") -> list[str]:
    page = world.call("admin", "GET", f"/api/v1/teams/{team}/audit", params={"limit": 500})
    return [e["action"] for e in page.json()["items"]]


def test_protection_rules_are_set_by_maintainers_and_win_over_conveyor_yml(world: World):
    assert world.call("a:viewer", "GET", PROTECTION).status_code == 200
    body = {"required_approvals": 2, "wait_timer": 30}
    refused = world.call("a:developer", "PUT", PROTECTION, json=body)
    assert refused.status_code == 403
    assert world.call("b:owner", "PUT", PROTECTION, json=body).status_code == 404
    bad = world.call("a:maintainer", "PUT", PROTECTION, json={"timezone": "Mars/Base"})
    assert bad.status_code == 422 and "rules.timezone" in bad.json()["detail"]
    unknown = world.call("a:maintainer", "PUT", PROTECTION, json={"colour": "red"})
    assert unknown.status_code == 422 and "colour" in unknown.text
    made = world.call("a:maintainer", "PUT", PROTECTION, json=body)
    assert made.status_code == 200, made.text
    shown = made.json()
    assert shown["server"] == {"required_approvals": 2, "wait_timer": 30.0}
    assert shown["effective"]["required_approvals"] == 2
    assert shown["effective"]["approver_role"] == "maintainer"
    assert "protection.set" in audit_actions(world)
    # The artifact says 1 approval; the server's 2 wins.
    waiting = deploy(world, "a:developer", service(world, "1"))
    assert waiting.status_code == 201, waiting.text
    assert waiting.json()["approval"]["required"] == 2
    assert world.call("a:maintainer", "PUT", PROTECTION, json={}).json()["server"] == {}


def test_a_deploy_that_needs_approval_waits_and_a_maintainer_approves_it_not_its_requester(
    world: World,
):
    made = deploy(world, "a:developer", service(world, "1"))
    assert made.status_code == 201, made.text
    waiting = made.json()
    assert waiting["awaiting_approval"] is True
    assert waiting["approval"]["required"] == 1
    assert waiting["approval"]["reasons"] == ["production requires 1 approval by a maintainer"]
    assert waiting["approval"]["deadline"] is not None

    # The inbox: what the caller may decide; with all=true, the rest and why not.
    assert [i["id"] for i in world.call("a:maintainer", "GET", "/api/v1/approvals").json()] == [
        waiting["id"]
    ]
    assert world.call("a:developer", "GET", "/api/v1/approvals").json() == []
    seen = world.call("a:developer", "GET", "/api/v1/approvals", params={"all": "true"}).json()
    assert seen[0]["can_approve"] is False
    assert seen[0]["why_not"] == "approving needs the maintainer role"
    assert world.call("b:owner", "GET", "/api/v1/approvals").json() == []

    path = f"/api/v1/deployments/{waiting['id']}"
    assert world.call("a:developer", "POST", f"{path}/approve", json={}).status_code == 403
    assert world.call("b:owner", "POST", f"{path}/approve", json={}).status_code == 404
    approved = world.call("a:maintainer", "POST", f"{path}/approve", json={"comment": "ok"})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["awaiting_approval"] is False and body["approval"]["approved_at"]
    assert [(d["decision"], d["comment"]) for d in body["approval"]["decisions"]] == [
        ("approve", "ok")
    ]
    again = world.call("a:owner", "POST", f"{path}/approve", json={})
    assert again.status_code == 409 and "approved already" in again.json()["detail"]
    assert world.call("a:maintainer", "GET", "/api/v1/approvals").json() == []
    assert world.call("a:viewer", "GET", path).json()["approval"]["approved_at"]
    assert "approve" in audit_actions(world)

    # Whoever asked for a deployment cannot approve it.
    own = deploy(world, "a:maintainer", service(world, "2")).json()
    refused = world.call(
        "a:maintainer", "POST", f"/api/v1/deployments/{own['id']}/approve", json={}
    )
    assert refused.status_code == 403
    assert "whoever asked for a deployment cannot approve it" in refused.json()["detail"]
    assert (
        world.call(
            "a:owner", "POST", f"/api/v1/deployments/{own['id']}/approve", json={}
        ).status_code
        == 200
    )


def test_an_approval_says_when_a_freeze_still_holds_the_deployment(world: World):
    """Issue 19 §1.8: `approve` printed `approved: it starts` while a freeze held it."""
    made = deploy(world, "a:developer", service(world, "1")).json()
    queueing = FREEZE | {"environment": "production", "action": "queue"}
    frozen = world.call("a:maintainer", "POST", f"{BASE}/freezes", json=queueing)
    assert frozen.status_code == 201, frozen.text
    path = f"/api/v1/deployments/{made['id']}/approve"
    approved = world.call("a:maintainer", "POST", path, json={}).json()
    assert approved["approval"]["approved_at"]
    assert approved["held"].startswith("a freeze window holds it until "), approved["held"]


def test_a_rejected_deployment_ends_aborted_with_the_reason(world: World):
    made = deploy(world, "a:developer", service(world, "1")).json()
    path = f"/api/v1/deployments/{made['id']}"
    rejected = world.call("a:maintainer", "POST", f"{path}/reject", json={"comment": "not today"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["awaiting_approval"] is False
    ended = _wait_phase(world, path, "aborted")
    assert ended["message"].startswith("rejected by token 'maintainer' (maintainer)")
    assert ended["message"].endswith(": not today")
    assert world.call("a:owner", "POST", f"{path}/approve", json={}).status_code == 409
    assert "reject" in audit_actions(world)


def _wait_phase(world: World, path: str, phase: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 30
    while True:
        row = world.call("a:viewer", "GET", path).json()
        if row["phase"] == phase:
            return dict(row)
        assert time.monotonic() < deadline, row
        time.sleep(0.05)


def test_allowed_branches_refuse_an_artifact_built_elsewhere_with_the_rule(world: World):
    rules = SERVICE + "    allowed_branches: [main]\n"
    refused = deploy(world, "a:developer", service(world, "1", rules))
    assert refused.status_code == 409
    assert "production accepts artifacts built from main only" in refused.json()["detail"]


FREEZE = {"cron": "* * * * *", "duration": "2m", "reason": "holiday season"}


def test_freeze_windows_at_three_levels_each_set_by_its_role(world: World):
    assert world.call("a:owner", "POST", "/api/v1/freezes", json=FREEZE).status_code == 403
    company = world.call("admin", "POST", "/api/v1/freezes", json=FREEZE)
    assert company.status_code == 201, company.text
    assert company.json()["scope"] == "company" and company.json()["active_until"]
    assert [w["id"] for w in world.call("b:viewer", "GET", "/api/v1/freezes").json()] == [
        company.json()["id"]
    ]
    assert (
        world.call("a:developer", "POST", "/api/v1/teams/a/freezes", json=FREEZE).status_code == 403
    )
    team = world.call("a:maintainer", "POST", "/api/v1/teams/a/freezes", json=FREEZE)
    assert team.status_code == 201 and team.json()["scope"] == "team a"
    assert world.call("b:maintainer", "GET", "/api/v1/teams/a/freezes").status_code == 404
    no_env = world.call("a:maintainer", "POST", f"{BASE}/freezes", json=FREEZE)
    assert no_env.status_code == 422 and no_env.json()["detail"][0]["loc"] == [
        "body",
        "environment",
    ]
    env = world.call(
        "a:maintainer", "POST", f"{BASE}/freezes", json=FREEZE | {"environment": "production"}
    )
    assert env.status_code == 201 and env.json()["scope"] == "a/api/production"
    for wrong, message in (
        ({"cron": "every friday"}, "five fields"),
        ({"duration": "10s"}, "from one minute to 31 days"),
        ({"duration": "soon"}, "soon"),
        ({"timezone": "Nowhere/City"}, "not an IANA name"),
    ):
        bad = world.call("a:maintainer", "POST", "/api/v1/teams/a/freezes", json=FREEZE | wrong)
        assert bad.status_code == 422 and message in bad.json()["detail"], bad.text
    # Removing: a maintainer of its team; the company's, only the admin.
    team_path = f"/api/v1/freezes/{team.json()['id']}"
    assert world.call("b:owner", "DELETE", team_path).status_code == 404
    assert world.call("a:developer", "DELETE", team_path).status_code == 403
    assert world.call("a:maintainer", "DELETE", team_path).status_code == 204
    company_path = f"/api/v1/freezes/{company.json()['id']}"
    assert world.call("a:owner", "DELETE", company_path).status_code == 403
    assert world.call("admin", "DELETE", company_path).status_code == 204
    actions = audit_actions(world)
    assert actions.count("freeze.create") == 2 and actions.count("freeze.delete") == 1
    company_chain = world.call("admin", "GET", "/api/v1/audit", params={"limit": 500}).json()
    assert [e["action"] for e in company_chain["items"]][-2:] == ["freeze.create", "freeze.delete"]
    # An environment's freeze is audited under its environment, when added and removed.
    env_path = f"/api/v1/freezes/{env.json()['id']}"
    assert world.call("a:maintainer", "DELETE", env_path).status_code == 204
    chain = world.call("admin", "GET", "/api/v1/teams/a/audit", params={"limit": 500}).json()
    removed = [e for e in chain["items"] if e["action"] == "freeze.delete"]
    assert [e["target"] for e in removed] == ["team a", "a/api/production"], removed


def test_a_refusing_freeze_refuses_a_deploy_and_an_emergency_passes_it(world: World):
    frozen = FREEZE | {"action": "refuse", "environment": "staging"}
    assert world.call("a:maintainer", "POST", f"{BASE}/freezes", json=frozen).status_code == 201
    digest = service(world, "1")
    refused = deploy(world, "a:developer", digest, env="staging")
    assert refused.status_code == 409
    assert "staging is frozen until" in refused.json()["detail"]
    assert "(holiday season)" in refused.json()["detail"]
    # An emergency needs the environment's emergency_role (maintainer by default).
    denied = deploy(world, "a:developer", digest, env="staging", emergency="prod is down")
    assert denied.status_code == 403 and "emergency_role" in denied.json()["detail"]
    passed = deploy(world, "a:maintainer", digest, env="staging", emergency="prod is down")
    assert passed.status_code == 201, passed.text
    assert passed.json()["emergency"] == "prod is down"
    assert "emergency" in audit_actions(world)
    # Another environment of the project is not frozen.
    assert deploy(world, "a:developer", service(world, "2"), env="dev").status_code == 201


def test_an_emergency_skips_approvals(world: World):
    made = deploy(world, "a:maintainer", service(world, "1"), emergency="card payments fail")
    assert made.status_code == 201, made.text
    assert made.json()["awaiting_approval"] is False
    assert made.json()["approval"]["reasons"] == ["emergency: approvals skipped"]
    too_short = deploy(world, "a:maintainer", service(world, "2"), emergency="x")
    assert too_short.status_code == 422


def test_stop_the_line_is_the_admins_and_says_why(world: World):
    assert (
        world.call("a:owner", "PUT", "/api/v1/stop-the-line", json={"on": True}).status_code == 403
    )
    missing = world.call("admin", "PUT", "/api/v1/stop-the-line", json={"on": True})
    assert missing.status_code == 422 and "reason" in missing.json()["detail"]
    on = world.call(
        "admin", "PUT", "/api/v1/stop-the-line", json={"on": True, "reason": "incident 42"}
    )
    assert on.status_code == 200 and on.json()["on"] is True
    shown = world.call("b:viewer", "GET", "/api/v1/stop-the-line").json()
    assert shown["on"] is True and shown["reason"] == "incident 42"
    off = world.call("admin", "PUT", "/api/v1/stop-the-line", json={"on": False})
    assert off.json()["on"] is False
    chain = world.call("admin", "GET", "/api/v1/audit", params={"limit": 500}).json()["items"]
    assert [e["detail"]["on"] for e in chain if e["action"] == "stop-the-line"] == [True, False]
