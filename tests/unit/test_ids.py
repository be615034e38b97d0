from __future__ import annotations

import json
import time
import uuid

import pytest

from conveyor.ids import id_timestamp_ms, new_id


def test_uuid7_sorts_by_time_and_carries_it():
    before = int(time.time() * 1000)
    ids = [new_id() for _ in range(50)]
    after = int(time.time() * 1000)
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert before <= id_timestamp_ms(ids[0]) <= after
    assert len(set(ids)) == 50


def test_timestamp_of_other_versions_is_refused():
    with pytest.raises(ValueError, match="UUIDv4"):
        id_timestamp_ms(uuid.uuid4())


def test_the_worked_examples_in_docs_ids_md():
    """docs/ids.md's examples are recomputed here: the page cannot drift from the code."""
    import hashlib
    import hmac
    from datetime import UTC, datetime
    from pathlib import Path

    from conveyor.api.idempotency import fingerprint
    from conveyor.ids import run_dedupe_key
    from conveyor.intake.providers import PROVIDERS
    from conveyor.intake.providers.base import standard_headers

    doc = " ".join((Path(__file__).parents[2] / "docs" / "ids.md").read_text().split())
    project = "01a2c0de-0000-7000-8000-000000000001"
    sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    rfc7 = uuid.UUID("017F22E2-79B0-7CC3-98C4-DC0C0C07398F")
    assert f"`{rfc7!s}` carries unix_ts_ms `{id_timestamp_ms(rfc7)}`" in doc
    assert f"`{uuid.uuid5(uuid.NAMESPACE_DNS, 'www.example.com')}`" in doc
    examples = [
        ("push", "refs/heads/main", "conveyor.yml"),
        ("pull_request", "refs/pull/7/head", "conveyor.yml"),
        ("schedule", "refs/heads/main", "conveyor.yml#schedule:nightly@2026-11-30T03:00:00+00:00"),
    ]
    for event, ref, pipeline in examples:
        assert f"`{run_dedupe_key(project, event, ref, sha, pipeline)}`" in doc, event
    name = json.dumps(
        [project, "push", "refs/heads/main", sha, "conveyor.yml"], separators=(",", ":")
    )
    assert f"`{name}`" in doc
    github = hmac.new(b"It's a Secret to Everybody", b"Hello, World!", hashlib.sha256).hexdigest()
    assert f"`X-Hub-Signature-256: sha256={github}`" in doc
    at = datetime.fromtimestamp(1614265330, UTC)
    signed = standard_headers(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        b'{"test": 2432232314}',
        at,
    )
    assert f"`webhook-signature: {signed['webhook-signature']}`" in doc
    key = PROVIDERS["gitlab"].delivery_key({}, b'{"object_kind":"push"}')
    assert f"`{key}`" in doc
    print_ = fingerprint("/api/v1/projects/payments/api/runs", {"ref": "main", "sha": None})
    assert f"`{print_}`" in doc
    assert f"`sha256:{hashlib.sha256(b'hello' + bytes([10])).hexdigest()}`" in doc
