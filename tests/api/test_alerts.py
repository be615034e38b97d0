"""Alertmanager's webhook: who may send it, what a body must be, and what is ignored
(the alerts that name no environment of the project), each with its reason."""

from __future__ import annotations

from tests.api.conftest import World

HOOK = "/hooks/alertmanager/a/api"


def payload(*labels: dict[str, str]) -> dict[str, object]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "conveyor",
        "groupLabels": {},
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": f"A{i}", **each},
                "annotations": {},
                "startsAt": "2026-12-06T10:00:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": f"f{i}",
            }
            for i, each in enumerate(labels)
        ],
    }


def test_a_token_of_the_team_is_needed(world: World):
    body = payload({"environment": "production"})
    assert world.client.post(HOOK, json=body).status_code == 401
    assert world.call("a:viewer", "POST", HOOK, json=body).status_code == 403
    assert world.call("b:developer", "POST", HOOK, json=body).status_code == 404
    assert (
        world.call("a:developer", "POST", "/hooks/alertmanager/a/nope", json=body).status_code
        == 404
    )


def test_a_body_that_is_not_alertmanagers_is_refused_with_where(world: World):
    refused = world.call("a:developer", "POST", HOOK, json={"alerts": [{"labels": {}}]})
    assert refused.status_code == 422
    assert "status" in refused.text and "startsAt" in refused.text


def test_alerts_naming_no_environment_of_the_project_are_ignored_with_the_reason(world: World):
    answer = world.call(
        "a:developer",
        "POST",
        HOOK,
        json=payload(
            {"severity": "page"},
            {"environment": "production"},
            {"conveyor_environment": "production", "service": "other"},
        ),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "recorded": 0,
        "updated": 0,
        "ignored": [
            {
                "alertname": "A0",
                "reason": "no environment label (conveyor_environment, environment, env)",
            },
            {"alertname": "A2", "reason": "service 'other' is not 'api'"},
            {"alertname": "A1", "reason": "no environment 'production' in a/api"},
        ],
    }
