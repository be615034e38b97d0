"""Lifecycle events as they leave Conveyor: which types a subscription's patterns take,
the Standard Webhooks signature (checked with the library receivers use), the Slack
body, and the CDEvents each event becomes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conveyor.domain import events as types
from conveyor.domain.deploy import Phase
from conveyor.notify.cdevents import bus_subject, cdevent, ce_headers, purl
from conveyor.notify.webhooks import Webhooks, body_for, new_secret, signed_headers
from conveyor.storage.tables import Event

DIGEST = "sha256:" + "ab" * 32
WHEN = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def deployment(event_type: str, **extra: object) -> Event:
    return Event(
        id=uuid.UUID("01a24b59-0000-7000-8000-000000000001"),
        type=event_type,
        subject="deployments/d1",
        created_at=WHEN,
        data={
            "team": "pay.ments",
            "project": "api",
            "environment": "production",
            "deployment": {
                "id": "d1",
                "number": 7,
                "kind": "rollback" if event_type == types.DEPLOYMENT_ROLLED_BACK else "deploy",
                "strategy": "canary",
                "phase": "aborted",
                "digest": DIGEST,
                "sha": "c0ffee",
                "message": "analysis canary failed: error rate",
                **extra,
            },
        },
    )


def run(event_type: str, status: str) -> Event:
    return Event(
        id=uuid.UUID("01a24b59-0000-7000-8000-000000000002"),
        type=event_type,
        subject="runs/r1",
        created_at=WHEN,
        data={
            "team": "pay",
            "project": "api",
            "run": {"id": "r1", "status": status, "ref": "refs/heads/main", "sha": "c0ffee42"},
        },
    )


def test_patterns_choose_types_and_bad_ones_say_why():
    assert types.check_patterns(["*", "deployment.*", "run.finished"]) == [
        "*",
        "deployment.*",
        "run.finished",
    ]
    for bad in ("deploy.*", "run.done", "", "deployment"):
        with pytest.raises(ValueError, match="is not an event type"):
            types.check_patterns([bad])
    assert types.matches(["deployment.*"], "deployment.rolled_back")
    assert not types.matches(["deployment.*"], "run.finished")
    assert types.matches(["run.finished"], "run.finished")
    assert not types.matches(["run.finished"], "run.queued")
    assert types.matches(["*"], "run.queued")


def test_each_phase_tells_its_event():
    assert types.deployment_event(Phase.SUCCEEDED, "deploy") == types.DEPLOYMENT_SUCCEEDED
    assert types.deployment_event(Phase.SUCCEEDED, "rollback") == types.DEPLOYMENT_ROLLED_BACK
    assert types.deployment_event(Phase.PAUSED, "deploy") == types.DEPLOYMENT_PAUSED
    assert types.deployment_event(Phase.ABORTED, "deploy") == types.DEPLOYMENT_ABORTED
    assert types.deployment_event(Phase.FAILED, "deploy") == types.DEPLOYMENT_FAILED
    assert types.deployment_event(Phase.PROGRESSING, "deploy") is None  # the next step
    assert types.deployment_event(Phase.PROGRESSING, "deploy", resumed=True) == (
        types.DEPLOYMENT_RESUMED
    )


def test_the_signature_verifies_with_the_standard_webhooks_library():
    secret = new_secret()
    event = deployment(types.DEPLOYMENT_ABORTED)
    body = body_for(event, "standard", "http://ci.example:8080/")
    headers = signed_headers(secret, str(event.id), body, datetime.now(UTC))
    verified = Webhook(secret).verify(body, headers)
    assert verified["type"] == "deployment.aborted" and verified["data"]["environment"] == (
        "production"
    )
    assert verified["data"]["url"] == (
        "http://ci.example:8080/api/v1/projects/pay.ments/api/environments/production/deployments/7"
    )
    assert headers["webhook-id"] == str(event.id)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"aborted", b"succeeded"), headers)


def test_the_slack_body_is_one_line_with_a_link():
    text = json.loads(body_for(deployment(types.DEPLOYMENT_ABORTED), "slack", "http://ci"))["text"]
    assert text == (
        ":no_entry: pay.ments/api production: <http://ci/api/v1/projects/pay.ments/api/"
        "environments/production/deployments/7|revision 7> (canary) aborted: analysis canary "
        "failed: error rate"
    )
    finished = json.loads(body_for(run(types.RUN_FINISHED, "failed"), "slack", "http://ci"))
    assert finished["text"] == ":x: pay/api: run <http://ci/api/v1/runs/r1|c0ffee42> on main failed"


def test_events_become_cdevents():
    first = cdevent(deployment(types.DEPLOYMENT_SUCCEEDED, first=True), "http://ci/")
    assert first["context"]["type"] == "dev.cdevents.service.deployed.0.3.0"
    assert first["context"]["specversion"] == "0.5.1" and first["context"]["source"] == "http://ci"
    content = first["subject"]["content"]
    assert content["environment"]["id"] == "pay.ments/api/production"
    assert content["artifactId"] == purl("pay.ments", "api", DIGEST)
    assert content["artifactId"] == "pkg:generic/pay.ments/api@sha256%3A" + "ab" * 32
    later = cdevent(deployment(types.DEPLOYMENT_SUCCEEDED, first=False), "http://ci")
    assert later["context"]["type"] == "dev.cdevents.service.upgraded.0.3.0"
    back = cdevent(deployment(types.DEPLOYMENT_ROLLED_BACK), "http://ci")
    assert back["context"]["type"] == "dev.cdevents.service.rolledback.0.3.0"
    aborted = cdevent(deployment(types.DEPLOYMENT_ABORTED), "http://ci")
    assert aborted["context"]["type"] == "dev.cdeventsx.conveyor-deployment.aborted.0.1.0"
    assert aborted["subject"]["content"]["deployment"]["number"] == 7
    finished = cdevent(run(types.RUN_FINISHED, "canceled"), "http://ci")
    assert finished["context"]["type"] == "dev.cdevents.pipelinerun.finished.0.3.0"
    assert finished["subject"]["content"] == {
        "pipelineName": "pay/api",
        "uri": "http://ci/api/v1/runs/r1",
        "outcome": "cancel",
        "errors": "run canceled",
    }
    queued = cdevent(run(types.RUN_QUEUED, "queued"), "http://ci")
    assert queued["context"]["type"] == "dev.cdevents.pipelinerun.queued.0.3.0"
    headers = ce_headers(aborted)
    assert headers["ce-id"] == aborted["context"]["id"] == str(deployment("x").id)
    assert headers["ce-subject"] == "d1" and headers["ce-specversion"] == "1.0"
    assert bus_subject("conveyor", deployment(types.DEPLOYMENT_ABORTED)) == (
        "conveyor.pay_ments.api.deployment.aborted"
    )


def host(event_type: str, **extra: object) -> Event:
    about = {"id": "h1id", "name": "web-1", "address": "10.0.0.7", "pool": None}
    return Event(
        id=uuid.UUID("01a24b59-0000-7000-8000-000000000003"),
        type=event_type,
        subject="hosts/h1id",
        created_at=WHEN,
        data={"team": "pay.ments", "host": {**about, "labels": {"zone": "a"}, **extra}},
    )


def test_host_events_leave_as_webhooks_slack_lines_and_cdevents():
    lost = host(types.HOST_LOST)
    standard = json.loads(body_for(lost, "standard", "http://ci/"))
    assert standard["type"] == "host.lost" and standard["data"]["host"]["name"] == "web-1"
    assert standard["data"]["url"] == "http://ci/api/v1/hosts/web-1"
    slack = json.loads(body_for(lost, "slack", "http://ci"))["text"]
    assert slack == ":warning: pay.ments: host <http://ci/api/v1/hosts/web-1|web-1> (10.0.0.7) lost"
    back = json.loads(body_for(host(types.HOST_JOINED, rejoined=True), "slack", "http://ci"))
    assert back["text"].endswith("(10.0.0.7) joined again")
    drained = cdevent(host(types.HOST_DRAINED), "http://ci")
    assert drained["context"]["type"] == "dev.cdeventsx.conveyor-host.drained.0.1.0"
    assert drained["subject"]["id"] == "web-1"
    assert drained["subject"]["type"] == "conveyor-host"
    assert drained["subject"]["content"]["host"]["labels"] == {"zone": "a"}
    assert ce_headers(drained)["ce-subject"] == "web-1"
    assert bus_subject("conveyor", lost) == "conveyor.pay_ments._hosts.host.lost"
    assert types.matches(["host.*"], types.HOST_LOST)
    assert not types.matches(["deployment.*"], types.HOST_JOINED)


def test_backoff_doubles_up_to_its_ceiling():
    hooks = Webhooks(None, None, public_url="http://ci", backoff_s=1, backoff_max_s=10)  # type: ignore[arg-type]
    assert [hooks.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
