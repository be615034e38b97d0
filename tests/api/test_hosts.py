"""The fleet over HTTP: host tokens, agents joining and long-polling, and people's
commands on hosts, each refused with the right status when it must be."""

from __future__ import annotations

import hashlib
import logging

import pytest

from tests.api.conftest import World

JOIN = {"name": "h1", "address": "10.77.0.11", "labels": {"zone": "a"}, "slots": 8}


def _host_token(world: World, who: str = "a:maintainer", team: str = "a") -> str:
    made = world.call(who, "POST", f"/api/v1/teams/{team}/host-tokens", json={"name": "fleet"})
    assert made.status_code == 201, made.text
    assert made.json()["token"].startswith("cvy_host_")
    return str(made.json()["token"])


def _agent(world: World, token: str, method: str, path: str, **kwargs):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return world.client.request(method, path, headers=headers, **kwargs)


def test_an_agent_joins_polls_and_is_fenced_by_its_own_next_join(world: World):
    token = _host_token(world)
    joined = _agent(world, token, "POST", "/api/v1/agent/join", json=JOIN)
    assert joined.status_code == 201, joined.text
    first = joined.json()
    assert first["fence"] == 1 and first["lease_s"] == 15.0
    poll = {"host": first["host_id"], "fence": 1, "generation": first["generation"], "wait": 0}
    desired = _agent(world, token, "GET", "/api/v1/agent/desired", params=poll)
    assert desired.status_code == 200, desired.text
    assert desired.json()["generation"] == first["generation"]
    # A second agent of the same host (or this one restarted) joins: the first is stale.
    again = _agent(world, token, "POST", "/api/v1/agent/join", json=JOIN).json()
    assert again["host_id"] == first["host_id"] and again["fence"] == 2
    stale = _agent(world, token, "GET", "/api/v1/agent/desired", params=poll)
    assert stale.status_code == 409 and stale.json()["error"] == "stale_fence", stale.text
    # What it should run changed (a drain): a poll at the old generation answers at once.
    drained = world.call("a:maintainer", "POST", "/api/v1/hosts/h1/drain")
    assert drained.status_code == 200 and drained.json()["state"] == "draining"
    poll |= {"fence": 2, "generation": again["generation"], "wait": 30}
    moved = _agent(world, token, "GET", "/api/v1/agent/desired", params=poll).json()
    assert moved["generation"] > again["generation"] and moved["draining"] is True


def test_a_revoked_host_token_is_refused_at_the_next_call(world: World):
    token = _host_token(world)
    joined = _agent(world, token, "POST", "/api/v1/agent/join", json=JOIN).json()
    (listed,) = world.call("a:viewer", "GET", "/api/v1/host-tokens").json()
    assert listed["token"] is None and listed["revoked_at"] is None
    assert (
        world.call("a:developer", "DELETE", f"/api/v1/host-tokens/{listed['id']}").status_code
        == 403
    )
    revoked = world.call("a:maintainer", "DELETE", f"/api/v1/host-tokens/{listed['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    again = world.call("a:maintainer", "DELETE", f"/api/v1/host-tokens/{listed['id']}")
    assert again.status_code == 409
    poll = {"host": joined["host_id"], "fence": joined["fence"], "wait": 0}
    refused = _agent(world, token, "GET", "/api/v1/agent/desired", params=poll)
    assert refused.status_code == 401, refused.text
    assert _agent(world, token, "POST", "/api/v1/agent/join", json=JOIN).status_code == 401
    audit = world.call("a:maintainer", "GET", "/api/v1/teams/a/audit").json()
    actions = [entry["action"] for entry in audit["items"]]
    assert "host-token.create" in actions and "host-token.revoke" in actions


def test_teams_see_only_their_hosts_and_pools_shared_with_them(world: World):
    ours = _host_token(world)
    _agent(world, ours, "POST", "/api/v1/agent/join", json=JOIN)
    pool = world.call("admin", "POST", "/api/v1/pools/shared/host-tokens", json={"name": "p"})
    assert pool.status_code == 201, pool.text
    shared = {**JOIN, "name": "s1", "address": "10.77.0.21"}
    assert (
        _agent(world, pool.json()["token"], "POST", "/api/v1/agent/join", json=shared).status_code
        == 201
    )
    assert [h["name"] for h in world.call("a:viewer", "GET", "/api/v1/hosts").json()] == ["h1"]
    assert world.call("b:viewer", "GET", "/api/v1/hosts").json() == []
    assert world.call("b:viewer", "GET", "/api/v1/hosts/h1").status_code == 404
    # Another team cannot take a host name that is registered.
    theirs = _host_token(world, "b:maintainer", "b")
    taken = _agent(world, theirs, "POST", "/api/v1/agent/join", json=JOIN)
    assert taken.status_code == 409 and "another team" in taken.json()["detail"]
    assert world.call("a:owner", "PUT", "/api/v1/pools/shared/teams/b").status_code == 403
    assert world.call("admin", "PUT", "/api/v1/pools/shared/teams/b").status_code == 204
    b_sees = world.call("b:viewer", "GET", "/api/v1/hosts").json()
    assert [(h["name"], h["pool"], h["team"]) for h in b_sees] == [("s1", "shared", None)]
    # A pool's hosts are the admin's to drain.
    assert world.call("b:maintainer", "POST", "/api/v1/hosts/s1/drain").status_code == 403
    assert world.call("admin", "DELETE", "/api/v1/pools/shared/teams/b").status_code == 204
    assert world.call("admin", "DELETE", "/api/v1/pools/shared/teams/b").status_code == 404
    assert world.call("b:viewer", "GET", "/api/v1/hosts").json() == []
    assert [h["name"] for h in world.call("admin", "GET", "/api/v1/hosts").json()] == ["h1", "s1"]


def test_bad_input_is_refused_with_what_is_wrong(world: World):
    token = _host_token(world)
    bad = _agent(world, token, "POST", "/api/v1/agent/join", json={**JOIN, "address": "nowhere"})
    assert bad.status_code == 422 and "address" in bad.text
    old = _agent(world, token, "POST", "/api/v1/agent/join", json={**JOIN, "protocol": 0})
    assert old.status_code == 409 and old.json()["error"] == "protocol_mismatch"
    assert "protocol 1, the agent 0" in old.json()["detail"]
    nobody = _agent(world, "cvy_host_nope", "POST", "/api/v1/agent/join", json=JOIN)
    assert nobody.status_code == 401
    pool_by_team = world.call("a:owner", "POST", "/api/v1/pools/p/host-tokens", json={})
    assert pool_by_team.status_code == 403
    bad_pool = world.call("admin", "POST", "/api/v1/pools/no%20spaces/host-tokens", json={})
    assert bad_pool.status_code == 422
    assert (
        world.call("a:developer", "POST", "/api/v1/teams/a/host-tokens", json={}).status_code == 403
    )
    assert (
        world.call("b:maintainer", "POST", "/api/v1/teams/a/host-tokens", json={}).status_code
        == 404
    )
    _agent(world, token, "POST", "/api/v1/agent/join", json=JOIN)
    up = world.call("a:maintainer", "DELETE", "/api/v1/hosts/h1")
    assert up.status_code == 409 and "drain it first" in up.json()["detail"]
    assert world.call("a:maintainer", "POST", "/api/v1/hosts/h1/drain").status_code == 200
    assert world.call("a:maintainer", "DELETE", "/api/v1/hosts/h1").status_code == 204
    assert world.call("a:maintainer", "GET", "/api/v1/hosts/h1").status_code == 404


def test_an_agent_fetches_artifacts_of_the_teams_its_host_serves_with_ranges(world: World):
    body = b"release bytes " * 5000
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    for team in ("a", "b"):
        made = world.call(
            f"{team}:developer",
            "POST",
            f"/api/v1/projects/{team}/api/artifacts",
            params={"name": "api.tar"},
            content=body if team == "a" else body + b"!",
        )
        assert made.status_code == 201, made.text
    other = "sha256:" + hashlib.sha256(body + b"!").hexdigest()
    token = _host_token(world)
    joined = _agent(world, token, "POST", "/api/v1/agent/join", json=JOIN).json()
    params = {"host": joined["host_id"], "fence": joined["fence"]}
    whole = _agent(world, token, "GET", f"/api/v1/agent/artifacts/{digest}", params=params)
    assert whole.status_code == 200 and whole.content == body
    rest = _agent(
        world,
        token,
        "GET",
        f"/api/v1/agent/artifacts/{digest}",
        params=params,
        headers={"Range": "bytes=1000-"},
    )
    assert rest.status_code == 206 and rest.content == body[1000:]
    # Team b's artifact is not for a host of team a; a stale fence is refused.
    theirs = _agent(world, token, "GET", f"/api/v1/agent/artifacts/{other}", params=params)
    assert theirs.status_code == 404, theirs.text
    stale = params | {"fence": joined["fence"] + 1}
    refused = _agent(world, token, "GET", f"/api/v1/agent/artifacts/{digest}", params=stale)
    assert refused.status_code == 409 and refused.json()["error"] == "stale_fence"
    bad = _agent(world, token, "GET", "/api/v1/agent/artifacts/md5:1", params=params)
    assert bad.status_code == 422


def test_a_path_parameter_named_like_a_log_field_is_logged_under_another_name(
    world: World, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.INFO, logger="conveyor.api"):
        missing = world.call("a:viewer", "GET", "/api/v1/hosts/nowhere")
    assert missing.status_code == 404
    (line,) = [r for r in caplog.records if "/api/v1/hosts/{name}" in r.getMessage()]
    assert line.path_name == "nowhere" and line.name == "conveyor.api"  # type: ignore[attr-defined]
