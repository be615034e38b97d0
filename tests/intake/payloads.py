"""The published webhook payloads the intake tests use, with what each must come to,
and the mutations the fuzz tests make of them (shared: tests import these from here,
not from another test module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import strategies as st

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


def provider_of(path: str) -> str:
    top = path.split("/")[0]
    return "bitbucket" if top.startswith("bitbucket") else top


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def mutate(value: Any, path: list[str | int], replacement: Any) -> Any:
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(value, dict) and head in value:
        return {**value, head: mutate(value[head], rest, replacement)}
    if isinstance(value, list) and isinstance(head, int) and head < len(value):
        copy = list(value)
        copy[head] = mutate(value[head], rest, replacement)
        return copy
    return value


def paths_in(value: Any, prefix: list[str | int], depth: int = 0) -> list[list[str | int]]:
    found = [prefix]
    if depth > 4:
        return found
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths_in(inner, [*prefix, key], depth + 1)
    elif isinstance(value, list):
        for index, inner in enumerate(value[:2]):
            found += paths_in(inner, [*prefix, index], depth + 1)
    return found
