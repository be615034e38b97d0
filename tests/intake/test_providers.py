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
from pathlib import Path
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
from conveyor.pipeline.triggers import EventKind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"

PUSH, PR, MERGED = EventKind.PUSH, EventKind.PULL_REQUEST, EventKind.PULL_REQUEST_MERGED

# file, event headers, expected: "ping", ("ignore", reason part), or a list of
# (kind, ref, sha prefix, before prefix or None, changed files or None, target, action),
# or ("skipped", text) for a deletion.
CASES: list[tuple[str, dict[str, str], Any]] = [
    ("github/ping/repository-hook.json", {"x-github-event": "ping"}, "ping"),
    ("github/ping/organization-hook.json", {"x-github-event": "ping"}, "ping"),
    (
        "github/push/new-branch.json",
        {"x-github-event": "push"},
        [(PUSH, "refs/heads/master", "6113728f27ae", None, None, None, None)],
    ),
    ("github/push/tag-deleted.json", {"x-github-event": "push"}, ("skipped", "simple-tag")),
    (
        "github/pull_request/opened.json",
        {"x-github-event": "pull_request"},
        [(PR, "refs/pull/2/head", "ec26c3e57ca3", None, None, "master", "opened")],
    ),
    (
        "github/pull_request/ghes-opened.json",
        {"x-github-event": "pull_request"},
        [(PR, "refs/pull/2/head", "14977a7b5485", None, None, "master", "opened")],
    ),
    (
        "github/pull_request/synchronize.json",
        {"x-github-event": "pull_request"},
        [(PR, "refs/pull/2/head", "ec26c3e57ca3", None, None, "master", "synchronize")],
    ),
    (
        "github/pull_request/closed-merged.json",
        {"x-github-event": "pull_request"},
        [(MERGED, "refs/heads/main", "5a47c3f3c22f", None, None, "main", "merged")],
    ),
    (
        "github/pull_request/closed-not-merged.json",
        {"x-github-event": "pull_request"},
        ("ignore", "'closed'"),
    ),
    (
        "github/pull_request/labeled.json",
        {"x-github-event": "pull_request"},
        ("ignore", "'labeled'"),
    ),
    (
        "github/pull_request/converted_to_draft.json",
        {"x-github-event": "pull_request"},
        ("ignore", "converted_to_draft"),
    ),
    (
        "github/check_suite/requested.json",
        {"x-github-event": "check_suite"},
        ("ignore", "check_suite"),
    ),
    ("github/create/tag.json", {"x-github-event": "create"}, ("ignore", "create")),
    ("github/delete/tag.json", {"x-github-event": "delete"}, ("ignore", "delete")),
    ("github/release/published.json", {"x-github-event": "release"}, ("ignore", "release")),
    (
        "github/workflow_dispatch/payload.json",
        {"x-github-event": "workflow_dispatch"},
        ("ignore", "workflow_dispatch"),
    ),
    (
        "gitlab/push/push.json",
        {"x-gitlab-event": "Push Hook"},
        # 2 of 4 commits listed: the file list is incomplete, so it comes from the mirror.
        [(PUSH, "refs/heads/master", "da1560886d4f", "95790bf891e7", None, None, None)],
    ),
    (
        "gitlab/tag_push/tag-created.json",
        {"x-gitlab-event": "Tag Push Hook"},
        [(PUSH, "refs/tags/v1.0.0", "82b3d5ae55f7", None, None, None, None)],
    ),
    (
        "gitlab/merge_request/opened.json",
        {"x-gitlab-event": "Merge Request Hook"},
        [(PR, "refs/merge-requests/1/head", "da1560886d4f", None, None, "master", "opened")],
    ),
    (
        "gitlab/note/merge-request-comment.json",
        {"x-gitlab-event": "Note Hook"},
        ("ignore", "Note Hook"),
    ),
    (
        "gitlab/pipeline/pipeline.json",
        {"x-gitlab-event": "Pipeline Hook"},
        ("ignore", "Pipeline Hook"),
    ),
    ("gitlab/build/job.json", {"x-gitlab-event": "Job Hook"}, ("ignore", "Job Hook")),
    (
        "gitlab/deployment/deployment.json",
        {"x-gitlab-event": "Deployment Hook"},
        ("ignore", "Deployment Hook"),
    ),
    (
        "gitea/push/new-branch.json",
        {"x-gitea-event": "push"},
        [(PUSH, "refs/heads/master", "67b56589a451", None, None, None, None)],
    ),
    (
        "gitea/pull_request/opened.json",
        {"x-gitea-event": "pull_request"},
        [(PR, "refs/pull/2/head", "48e773f892a8", None, None, "master", "opened")],
    ),
    ("gitea/create/branch.json", {"x-gitea-event": "create"}, ("ignore", "create")),
    ("gitea/delete/branch.json", {"x-gitea-event": "delete"}, ("ignore", "delete")),
    (
        "gitea/issue_comment/pull-request-comment.json",
        {"x-gitea-event": "issue_comment", "x-gitea-event-type": "pull_request_comment"},
        ("ignore", "issue_comment"),
    ),
    (
        "bitbucket-cloud/repo_push/branch-created.json",
        {"x-event-key": "repo:push"},
        [(PUSH, "refs/heads/feature/test", "174561d625c9", None, None, None, None)],
    ),
    (
        "bitbucket-cloud/repo_push/branch-updated.json",
        {"x-event-key": "repo:push"},
        [(PUSH, "refs/heads/main", "e42fac24456e", "501bf5b99365", None, None, None)],
    ),
    (
        "bitbucket-cloud/repo_push/tag-created.json",
        {"x-event-key": "repo:push"},
        [(PUSH, "refs/tags/simple-tag", "7ef5981d5914", None, None, None, None)],
    ),
    (
        "bitbucket-cloud/repo_push/tag-deleted.json",
        {"x-event-key": "repo:push"},
        ("skipped", "deleted"),
    ),
    (
        "bitbucket-cloud/pullrequest_created/created.json",
        {"x-event-key": "pullrequest:created"},
        [(PR, "refs/heads/feature/test", "d31df3425c5b", None, None, "master", "opened")],
    ),
    (
        "bitbucket-cloud/pullrequest_updated/updated.json",
        {"x-event-key": "pullrequest:updated"},
        [(PR, "refs/heads/release/release-1", "f945c96c71d0", None, None, "master", "synchronize")],
    ),
    (
        "bitbucket-cloud/pullrequest_fulfilled/merged.json",
        {"x-event-key": "pullrequest:fulfilled"},
        [(MERGED, "refs/heads/main", "1986c2284946", None, None, "main", "merged")],
    ),
    ("bitbucket-server/diagnostics_ping/ping.json", {"x-event-key": "diagnostics:ping"}, "ping"),
    (
        "bitbucket-server/repo_refs_changed/branch-updated.json",
        {"x-event-key": "repo:refs_changed"},
        [(PUSH, "refs/heads/main", "9fdd7b96d3f5", "a8c13e8850dc", None, None, None)],
    ),
    (
        "bitbucket-server/repo_refs_changed/tag-created.json",
        {"x-event-key": "repo:refs_changed"},
        [(PUSH, "refs/tags/simple-tag", "fb522a6f08c7", None, None, None, None)],
    ),
    (
        "bitbucket-server/pr_opened/opened.json",
        {"x-event-key": "pr:opened"},
        [(PR, "refs/heads/feature/diffstat", "251fce291f08", None, None, "master", "opened")],
    ),
    (
        "bitbucket-server/pr_merged/merged.json",
        {"x-event-key": "pr:merged"},
        [(MERGED, "refs/heads/master", "cbf26be7bfc8", None, None, "master", "merged")],
    ),
    (
        "bitbucket-server/pr_declined/declined.json",
        {"x-event-key": "pr:declined"},
        ("ignore", "pr:declined"),
    ),
]


def _provider(path: str) -> str:
    top = path.split("/")[0]
    return "bitbucket" if top.startswith("bitbucket") else top


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
    provider = PROVIDERS[_provider(path)]
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


def test_delivery_keys_per_provider() -> None:
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

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutate(value: Any, path: list[str | int], replacement: Any) -> Any:
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(value, dict) and head in value:
        return {**value, head: _mutate(value[head], rest, replacement)}
    if isinstance(value, list) and isinstance(head, int) and head < len(value):
        copy = list(value)
        copy[head] = _mutate(value[head], rest, replacement)
        return copy
    return value


def _paths(value: Any, prefix: list[str | int], depth: int = 0) -> list[list[str | int]]:
    found = [prefix]
    if depth > 4:
        return found
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, [*prefix, key], depth + 1)
    elif isinstance(value, list):
        for index, inner in enumerate(value[:2]):
            found += _paths(inner, [*prefix, index], depth + 1)
    return found


ACCEPTED = [c for c in CASES if isinstance(c[2], list) or c[2][0] == "skipped"]


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(ACCEPTED), pick=st.integers(min_value=0), junk=JSON)
def test_mutated_payloads_fail_only_with_payload_error(case: Any, pick: int, junk: Any) -> None:
    path, headers, _ = case
    provider = PROVIDERS[_provider(path)]
    payload = json.loads((FIXTURES / path).read_bytes())
    paths = _paths(payload, [])
    mutated = _mutate(payload, paths[pick % len(paths)], junk)
    provider.first_look(headers, mutated)
    try:
        translation = provider.translate(headers, mutated)
    except PayloadError as exc:
        assert str(exc)
        return
    for change in translation.changes:
        assert isinstance(change.sha, str) and change.sha
        assert isinstance(change.ref, str) and change.ref
