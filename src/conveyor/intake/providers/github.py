"""GitHub (github.com, GHEC, GHES): `X-Hub-Signature-256`, `X-GitHub-Delivery`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from conveyor.intake.providers.base import (
    Change,
    FirstLook,
    Headers,
    Look,
    Payload,
    Translation,
    body_key,
    bounded_key,
    files_of,
    first_header,
    is_zero,
    matches_hex,
)
from conveyor.pipeline.triggers import EventKind

PR_ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})
MAX_LISTED_COMMITS = 2048
"""GitHub lists at most this many commits in a push; a longer push lists no more."""


def pull_request_change(
    pr: Payload, number: int, action: str, head_ref: str, default_branch: str | None
) -> Change:
    """A GitHub-shaped pull request (GitHub and Gitea): the head commit on the PR's ref,
    or, once merged, the merge commit on the target branch."""
    base = pr.obj("base")
    target = base.text("ref")
    if action == "merged":
        sha = pr.opt_text("merge_commit_sha") or pr.obj("head").text("sha")
        return Change(
            kind=EventKind.PULL_REQUEST_MERGED,
            ref=f"refs/heads/{target}",
            sha=sha,
            message=pr.opt_text("title") or "",
            target_branch=target,
            action=action,
            number=number,
            default_branch=default_branch,
        )
    return Change(
        kind=EventKind.PULL_REQUEST,
        ref=head_ref,
        sha=pr.obj("head").text("sha"),
        message=pr.opt_text("title") or "",
        target_branch=target,
        action=action,
        number=number,
        default_branch=default_branch,
    )


def push_change(body: Payload, commits_complete: bool) -> Change | None:
    """A GitHub-shaped push (GitHub, Gitea, the bare git hook); None for a deletion."""
    after = body.text("after")
    if body.flag("deleted") or is_zero(after):
        return None
    before = body.opt_text("before")
    new_ref = body.flag("created") or is_zero(before)
    commits = body.items("commits")
    complete = commits_complete and not new_ref and not body.flag("forced") and bool(commits)
    head = body.opt_obj("head_commit")
    repo = body.opt_obj("repository")
    return Change(
        kind=EventKind.PUSH,
        ref=body.text("ref"),
        sha=after,
        before=None if new_ref else before,
        changed=files_of(commits) if complete else None,
        message=(head.opt_text("message") if head else None) or "",
        default_branch=repo.opt_text("default_branch") if repo else None,
    )


class GitHub:
    name = "github"

    def verify(self, secrets: Iterable[str], headers: Headers, body: bytes) -> bool:
        return matches_hex(secrets, body, headers.get("x-hub-signature-256"), "sha256=")

    def delivery_key(self, headers: Headers, body: bytes) -> str:
        value = first_header(headers, "x-github-delivery")
        return bounded_key(value) if value else body_key(body)

    def first_look(self, headers: Headers, payload: Any) -> FirstLook:
        event = headers.get("x-github-event", "")
        if event == "ping":
            return FirstLook(Look.PING, event)
        if event == "push":
            return FirstLook(Look.ACCEPT, event)
        if event == "pull_request":
            return _pr_look(event, payload)
        return FirstLook(
            Look.IGNORE, event, f"Conveyor does not act on {event or 'unnamed'} events"
        )

    def translate(self, headers: Headers, payload: Any) -> Translation:
        body = Payload(payload)
        if headers.get("x-github-event") == "push":
            length = len(body.items("commits"))
            change = push_change(body, commits_complete=length < MAX_LISTED_COMMITS)
            if change is None:
                return Translation(skipped=(f"{body.text('ref')} was deleted",))
            return Translation((change,))
        pr = body.obj("pull_request")
        action = _pr_action(payload)
        number = body.integer("number")
        repo = body.opt_obj("repository")
        return Translation(
            (
                pull_request_change(
                    pr,
                    number,
                    action,
                    f"refs/pull/{number}/head",
                    repo.opt_text("default_branch") if repo else None,
                ),
            )
        )


def _pr_action(payload: Any) -> str:
    action = str(payload.get("action", "")) if isinstance(payload, dict) else ""
    if action == "closed":
        pr = payload.get("pull_request")
        return "merged" if isinstance(pr, dict) and pr.get("merged") is True else "closed"
    return action


def _pr_look(event: str, payload: Any) -> FirstLook:
    action = _pr_action(payload)
    if action in PR_ACTIONS or action == "merged":
        return FirstLook(Look.ACCEPT, f"{event}.{action}")
    return FirstLook(
        Look.IGNORE,
        f"{event}.{action}",
        f"pull request action {action or '(none)'!r} starts nothing",
    )
