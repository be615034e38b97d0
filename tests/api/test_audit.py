"""The audit log through the API: what is recorded of a team's changes, by whom and in
which request; who may read which chain; paging."""

from __future__ import annotations

from conveyor.domain import audit as chain
from tests.api.conftest import World


def _audit(world: World, who: str, team: str = "a", **params: object) -> dict:  # type: ignore[type-arg]
    response = world.call(who, "GET", f"/api/v1/teams/{team}/audit", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_team_s_changes_are_recorded_with_who_and_the_request(world: World):
    owner = {"X-Request-Id": "req-audit-1"}
    made = world.call(
        "a:owner", "POST", "/api/v1/teams/a/tokens", json={"name": "ci", "role": "developer"},
        headers=owner,
    )  # fmt: skip
    assert made.status_code == 201
    secret = {"name": "DB_PASSWORD", "value": "hunter2-very-secret"}
    assert world.call("a:maintainer", "POST", "/api/v1/projects/a/api/secrets", json=secret)
    patched = world.call(
        "a:maintainer", "PATCH", "/api/v1/projects/a/api", json={"artifact_retention_days": 7}
    )
    assert patched.status_code == 200
    subscribed = world.call(
        "a:maintainer", "POST", "/api/v1/projects/a/api/subscriptions",
        json={"url": "http://127.0.0.1:9/hook?token=not-for-the-log", "events": ["run.*"]},
    )  # fmt: skip
    assert subscribed.status_code == 201
    page = _audit(world, "a:maintainer")
    actions = [(e["action"], e["target"]) for e in page["items"]]
    assert actions == [
        ("token.create", "a"),  # the fixture's four, by the admin
        ("token.create", "a"),
        ("token.create", "a"),
        ("token.create", "a"),
        ("project.create", "a/api"),
        ("token.create", "a"),
        ("secret.set", "a/api"),
        ("project.change", "a/api"),
        ("subscription.create", "a/api"),
    ]
    token_entry = page["items"][5]
    assert token_entry["detail"] == {"name": "ci", "role": "developer"}
    assert token_entry["request_id"] == "req-audit-1"
    assert token_entry["actor"].startswith("token 'owner' (owner) ")
    assert page["items"][0]["actor"].startswith("token 'admin (env)' (admin) ")
    assert page["items"][6]["actor"].startswith("token 'maintainer' (maintainer) ")
    secret_entry = page["items"][6]
    assert secret_entry["detail"] == {"name": "DB_PASSWORD"}
    assert "hunter2" not in str(page)
    sub_entry = page["items"][8]
    assert sub_entry["detail"]["host"] == "127.0.0.1" and "not-for-the-log" not in str(sub_entry)
    assert page["head"] == {"seq": 9, "hash": page["items"][-1]["hash"]}
    assert page["next"] is None
    assert chain.verify(page["items"], (page["head"]["seq"], page["head"]["hash"])) is None


def test_pages_follow_each_other(world: World):
    first = _audit(world, "a:owner", limit=2)
    assert [e["seq"] for e in first["items"]] == [1, 2] and first["next"] == 2
    second = _audit(world, "a:owner", after=2, limit=100)
    assert second["items"][0]["seq"] == 3 and second["next"] is None
    assert second["items"][0]["prev_hash"] == first["items"][-1]["hash"]


def test_only_the_team_s_maintainers_and_the_admin_read_its_chain(world: World):
    assert world.call("a:developer", "GET", "/api/v1/teams/a/audit").status_code == 403
    assert world.call("b:owner", "GET", "/api/v1/teams/a/audit").status_code == 404
    assert world.call("admin", "GET", "/api/v1/teams/a/audit").status_code == 200
    assert world.call("a:owner", "GET", "/api/v1/audit").status_code == 403
    company = world.call("admin", "GET", "/api/v1/audit").json()
    assert [(e["action"], e["target"]) for e in company["items"]] == [
        ("team.create", "a"),
        ("team.create", "b"),
    ]
    assert company["team"] is None
    bad = world.call("admin", "GET", "/api/v1/audit", params={"limit": 0})
    assert bad.status_code == 422
