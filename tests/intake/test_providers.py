"""Every published payload in tests/fixtures/webhooks (byte-for-byte copies of the
providers' published examples; its SOURCES.md gives origins, licenses and checksums) is
classified and translated as expected, the published signature vectors verify, tampered
ones do not, and no mutated payload makes a provider raise anything but PayloadError."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.intake.providers import PROVIDERS
from conveyor.intake.providers.base import (
    Look,
    PayloadError,
    matches_hex,
    matches_standard,
    standard_headers,
)
from tests.intake.payloads import CASES, FIXTURES, JSON, MERGED, mutate, paths_in, provider_of


def test_every_fixture_has_a_case() -> None:
    files = {
        str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.json") if "signature" not in p.parts
    }
    assert files == {case[0] for case in CASES}
    assert len(files) == 41
    # Each file is still the byte-for-byte copy SOURCES.md lists (its sha256 prefix).
    sources = (FIXTURES / "SOURCES.md").read_text()
    for name in files:
        digest = hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest()[:16]
        assert f"| `{name}` |" in sources and f"`{digest}…`" in sources, name


@pytest.mark.parametrize(("path", "headers", "expected"), CASES, ids=[c[0] for c in CASES])
def test_fixture_outcome(path: str, headers: dict[str, str], expected: Any) -> None:
    provider = PROVIDERS[provider_of(path)]
    payload = json.loads((FIXTURES / path).read_bytes())
    look = provider.first_look(headers, payload)
    if expected == "ping":
        assert look.look is Look.PING
        return
    if expected[0] == "ignore":
        assert look.look is Look.IGNORE
        assert expected[1] in look.reason
        return
    assert look.look is Look.ACCEPT
    translation = provider.translate(headers, payload)
    if expected[0] == "skipped":
        assert translation.changes == ()
        assert any(expected[1] in s and "deleted" in s for s in translation.skipped)
        return
    got = [
        (
            c.kind,
            c.ref,
            c.sha[:12],
            c.before[:12] if c.before else None,
            c.changed,
            c.target_branch,
            c.action,
        )
        for c in translation.changes
    ]
    assert got == expected


def test_complete_commit_lists_give_the_changed_files() -> None:
    """A GitHub push that updates a branch lists every commit: its files are used."""
    payload = json.loads((FIXTURES / "github/push/new-branch.json").read_bytes())
    payload.update(created=False, before="a" * 40)
    payload["commits"].append(
        {"added": [], "modified": ["src/app.py", "README.md"], "removed": ["old.txt"]}
    )
    (change,) = PROVIDERS["github"].translate({"x-github-event": "push"}, payload).changes
    assert change.changed == ("README.md", "src/app.py", "old.txt")
    assert change.before == "a" * 40
    payload["forced"] = True  # rewritten history: the listed commits are not the diff
    (forced,) = PROVIDERS["github"].translate({"x-github-event": "push"}, payload).changes
    assert forced.changed is None


def test_gitlab_complete_push_and_merge() -> None:
    payload = json.loads((FIXTURES / "gitlab/push/push.json").read_bytes())
    payload["total_commits_count"] = len(payload["commits"])
    (change,) = PROVIDERS["gitlab"].translate({"x-gitlab-event": "Push Hook"}, payload).changes
    assert change.changed is not None and "CHANGELOG" in change.changed
    mr = json.loads((FIXTURES / "gitlab/merge_request/opened.json").read_bytes())
    mr["object_attributes"].update(action="merge", merge_commit_sha="f" * 40)
    headers = {"x-gitlab-event": "Merge Request Hook"}
    assert PROVIDERS["gitlab"].first_look(headers, mr).event == "merge_request.merged"
    (merged,) = PROVIDERS["gitlab"].translate(headers, mr).changes
    assert (merged.kind, merged.ref, merged.sha) == (MERGED, "refs/heads/master", "f" * 40)
    mr["object_attributes"].update(action="update")
    assert PROVIDERS["gitlab"].first_look(headers, mr).look is Look.IGNORE  # a title edit
    mr["object_attributes"]["oldrev"] = "e" * 40
    assert PROVIDERS["gitlab"].first_look(headers, mr).event == "merge_request.synchronize"


# -- delivery keys ------------------------------------------------------------------------


def test_delivery_keys_perprovider_of() -> None:
    body = b'{"x": 1}'
    by_body = "sha256:" + hashlib.sha256(body).hexdigest()
    github = PROVIDERS["github"]
    assert github.delivery_key(
        {"x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}, body
    ) == ("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    gitlab = PROVIDERS["gitlab"]
    assert (
        gitlab.delivery_key({"idempotency-key": '"abc"', "x-gitlab-event-uuid": "e"}, body) == "abc"
    )
    assert (
        gitlab.delivery_key({"x-gitlab-event-uuid": "e", "x-gitlab-webhook-uuid": "w"}, body) == "e"
    )
    assert gitlab.delivery_key({"x-gitlab-webhook-uuid": "random"}, body) == by_body
    assert PROVIDERS["gitea"].delivery_key({"x-gitea-delivery": "g"}, body) == "g"
    assert PROVIDERS["gitea"].delivery_key({"x-forgejo-delivery": "f"}, body) == "f"
    assert PROVIDERS["bitbucket"].delivery_key({"x-request-uuid": "c"}, body) == "c"
    assert PROVIDERS["bitbucket"].delivery_key({"x-request-id": "d"}, body) == "d"
    assert PROVIDERS["git"].delivery_key({"webhook-id": "msg_1"}, body) == "msg_1"
    assert PROVIDERS["git"].delivery_key({}, body) == by_body
    long = "x" * 300
    assert len(github.delivery_key({"x-github-delivery": long}, body)) == 71  # hashed


# -- signatures ---------------------------------------------------------------------------


def test_github_docs_vector_and_tampering() -> None:
    vector = json.loads((FIXTURES / "github/signature/docs-test-vector.json").read_text())
    body = vector["payload"].encode()
    headers = {"x-hub-signature-256": vector["expected_header"]}
    assert PROVIDERS["github"].verify([vector["secret"]], headers, body)
    assert PROVIDERS["github"].verify(["old", vector["secret"]], headers, body)  # rotation
    assert not PROVIDERS["github"].verify([vector["secret"]], headers, body + b" ")
    assert not PROVIDERS["github"].verify(["another secret"], headers, body)
    flipped = vector["expected_header"][:-1] + "f"
    assert not PROVIDERS["github"].verify(
        [vector["secret"]], {"x-hub-signature-256": flipped}, body
    )
    assert not PROVIDERS["github"].verify([vector["secret"]], {}, body)
    # The same HMAC, as Bitbucket and Gitea send it.
    hexsig = vector["expected_hex_signature"]
    assert PROVIDERS["bitbucket"].verify(
        [vector["secret"]], {"x-hub-signature": "sha256=" + hexsig}, body
    )
    assert PROVIDERS["gitea"].verify([vector["secret"]], {"x-gitea-signature": hexsig}, body)
    assert PROVIDERS["gitea"].verify(
        [vector["secret"]], {"x-hub-signature-256": "sha256=" + hexsig}, body
    )
    # Gitea without a secret sends empty signatures: never a match.
    assert not PROVIDERS["gitea"].verify([vector["secret"]], {"x-gitea-signature": ""}, body)
    assert not matches_hex([vector["secret"]], body, "sha256=", "sha256=")
    assert not matches_hex([vector["secret"]], body, "sha256=\u00e9\u00e9", "sha256=")


def test_gitlab_token_compare() -> None:
    assert PROVIDERS["gitlab"].verify(
        ["s3cret-token-xyz"], {"x-gitlab-token": "s3cret-token-xyz"}, b"{}"
    )
    assert not PROVIDERS["gitlab"].verify(
        ["s3cret-token-xyz"], {"x-gitlab-token": "s3cret-token-xy"}, b"{}"
    )
    assert not PROVIDERS["gitlab"].verify(["s3cret-token-xyz"], {}, b"{}")


def _standard_vector() -> dict[str, Any]:
    data = json.loads((FIXTURES / "standard-webhooks/signature/test-vectors.json").read_text())
    assert isinstance(data, dict)
    return data


def test_standard_webhooks_vectors() -> None:
    data = _standard_vector()
    (vector,) = data["sign_vectors"]
    stamp = vector["webhook_timestamp"]
    at = datetime.fromtimestamp(stamp, UTC)
    body = vector["payload"].encode()
    good = {
        "webhook-id": vector["webhook_id"],
        "webhook-timestamp": str(stamp),
        "webhook-signature": vector["expected_signature_header"],
    }
    assert standard_headers(vector["secret"], vector["webhook_id"], body, at) == good
    same, prefixed, *unpadded = data["secret_forms_that_must_be_accepted"]
    assert matches_standard([prefixed], good, body, now=at)
    assert matches_standard(["whsec_" + same], good, body, now=at)
    for secret in unpadded:  # signed with the padded form, verified with the unpadded one
        padded = secret + "=" * (-len(secret) % 4)
        signed = standard_headers("whsec_" + padded, "msg_x", body, at)
        assert matches_standard(["whsec_" + secret], signed, body, now=at), secret
    for bad in data["signatures_that_must_not_verify_for_the_vector_above"]:
        assert not matches_standard(
            [vector["secret"]], {**good, "webhook-signature": bad}, body, now=at
        )
    multi = data["multi_signature_header_example"].replace(
        "<valid v1 signature>", vector["expected_signature_header"]
    )
    assert matches_standard([vector["secret"]], {**good, "webhook-signature": multi}, body, now=at)
    tolerance = timedelta(seconds=data["tolerance_seconds"])
    assert matches_standard([vector["secret"]], good, body, now=at + tolerance)
    assert not matches_standard(
        [vector["secret"]], good, body, now=at + tolerance + timedelta(seconds=1)
    )
    assert not matches_standard(
        [vector["secret"]], good, body, now=at - tolerance - timedelta(seconds=1)
    )
    assert not matches_standard([vector["secret"]], good, body + b" ", now=at)
    assert not matches_standard(
        [vector["secret"]], {**good, "webhook-timestamp": "x"}, body, now=at
    )
    assert not matches_standard([vector["secret"]], good, b"\xff", now=at)


def test_gitlab_signing_token_uses_standard_webhooks() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = b'{"object_kind": "push"}'
    now = datetime.now(UTC)
    headers = standard_headers(secret, "idem-1", body, now)
    assert PROVIDERS["gitlab"].verify([secret], headers, body)
    assert not PROVIDERS["gitlab"].verify([secret], {**headers, "webhook-id": "idem-2"}, body)


def test_plain_secret_signs_standard_webhooks_as_bytes() -> None:
    body = b"{}"
    now = datetime.now(UTC)
    stamp = str(int(now.timestamp()))
    mac = hmac.new(b"plain secret!!!!", f"m.{stamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": "m",
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
    assert matches_standard(["plain secret!!!!"], headers, body, now=now)


# -- mutated payloads ---------------------------------------------------------------------

ACCEPTED = [c for c in CASES if isinstance(c[2], list) or c[2][0] == "skipped"]


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(ACCEPTED), pick=st.integers(min_value=0), junk=JSON)
def test_mutated_payloads_fail_only_with_payload_error(case: Any, pick: int, junk: Any) -> None:
    path, headers, _ = case
    provider = PROVIDERS[provider_of(path)]
    payload = json.loads((FIXTURES / path).read_bytes())
    paths = paths_in(payload, [])
    mutated = mutate(payload, paths[pick % len(paths)], junk)
    provider.first_look(headers, mutated)
    try:
        translation = provider.translate(headers, mutated)
    except PayloadError as exc:
        assert str(exc)
        return
    for change in translation.changes:
        assert isinstance(change.sha, str) and change.sha
        assert isinstance(change.ref, str) and change.ref
