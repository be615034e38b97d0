"""Whether an event starts a pipeline, and whether each job joins the plan: pure
decisions that carry the rule that decided them, so `conveyor explain` can say why."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from conveyor.pipeline.patterns import first_match, matching_paths
from conveyor.pipeline.schema import BranchTrigger, IfCondition, On, PipelineSpec

_SKIP_CI = re.compile(r"\[(?:skip ci|ci skip)\]", re.IGNORECASE)


class EventKind(StrEnum):
    PUSH = "push"
    PULL_REQUEST = "pull_request"
    PULL_REQUEST_MERGED = "pull_request.merged"
    TAG = "tag"
    SCHEDULE = "schedule"
    MANUAL = "manual"


@dataclass(frozen=True)
class Event:
    """What happened in the repository.

    `changed` is None when the changed files are unknown (a new branch with no base to
    compare to): path filters then count every path as changed, and the decision says so.
    """

    kind: EventKind
    ref: str
    sha: str = "0" * 40
    changed: tuple[str, ...] | None = None
    message: str = ""
    target_branch: str | None = None
    action: str | None = None
    """For pull requests: `opened`, `synchronize`, `reopened`, `ready_for_review`."""
    author: str = ""
    """Who wrote the commit (its author's name), when known."""

    @property
    def branch(self) -> str | None:
        if self.ref.startswith("refs/heads/"):
            return self.ref.removeprefix("refs/heads/")
        if self.ref.startswith("refs/"):
            return None
        return self.ref

    @property
    def tag(self) -> str | None:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else None

    @property
    def effective_kind(self) -> EventKind:
        """A push of a tag ref is a tag event."""
        if self.kind is EventKind.PUSH and self.tag is not None:
            return EventKind.TAG
        return self.kind


@dataclass(frozen=True)
class Match:
    """A yes/no with the reasons, in the order they were checked."""

    included: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)


def skip_ci(message: str) -> bool:
    """Whether a commit message asks to skip CI (`[skip ci]` or `[ci skip]`)."""
    return bool(_SKIP_CI.search(message))


def _describe(patterns: Sequence[str]) -> str:
    return "[" + ", ".join(patterns) + "]"


def _match_value(label: str, patterns: Sequence[str] | None, value: str | None) -> Match:
    if patterns is None:
        return Match(True, (f"no {label} filter",))
    if value is None:
        return Match(False, (f"{label} filter {_describe(patterns)}: the event has no {label}",))
    included, decided_by = first_match(patterns, value)
    if included:
        return Match(True, (f"{label} {value!r} matches {decided_by!r}",))
    if decided_by is not None:
        return Match(False, (f"{label} {value!r} is excluded by {decided_by!r}",))
    return Match(False, (f"{label} {value!r} matches none of {_describe(patterns)}",))


def match_paths(patterns: Sequence[str] | None, changed: tuple[str, ...] | None) -> Match:
    """The path filter: at least one changed file must be included."""
    if patterns is None:
        return Match(True, ("no paths filter",))
    if changed is None:
        return Match(
            True,
            (
                f"paths {_describe(patterns)}: no changed-file list (as for a push that "
                "creates a branch), so every path counts as changed",
            ),
        )
    hits = matching_paths(patterns, changed)
    if hits:
        shown = ", ".join(hits[:3]) + (f" and {len(hits) - 3} more" if len(hits) > 3 else "")
        return Match(True, (f"paths {_describe(patterns)} match changed {shown}",))
    return Match(
        False, (f"paths {_describe(patterns)} match none of the {len(changed)} changed files",)
    )


def _all(*decisions: Match) -> Match:
    reasons: list[str] = []
    for decision in decisions:
        reasons += decision.reasons
        if not decision.included:
            return Match(False, tuple(reasons))
    return Match(True, tuple(reasons))


SKIPPABLE = (EventKind.PUSH, EventKind.PULL_REQUEST, EventKind.PULL_REQUEST_MERGED)
"""The events a commit message's `[skip ci]` skips."""


def pipeline_trigger(spec: PipelineSpec, event: Event) -> Match:
    """Does this event start the pipeline? Checks `[skip ci]` (for a push or a pull
    request: a schedule or a person's trigger runs whatever the message says, as in
    GitLab), then the `on` rule."""
    if event.kind in SKIPPABLE and skip_ci(event.message):
        return Match(False, ("the commit message contains [skip ci]",))
    return _on_rule(spec.on, event)


def _on_rule(on: On, event: Event) -> Match:
    return _EVENT_RULES[event.effective_kind](on, event)


def _branch_rule(
    name: str, trigger: BranchTrigger | None, label: str, branch: str | None, event: Event
) -> Match:
    """push and pull_request: a branch filter and a path filter."""
    if trigger is None:
        return Match(False, (f"`on` has no {name} trigger",))
    return _all(
        Match(True, (f"on.{name}",)),
        _match_value(label, trigger.branches, branch),
        match_paths(trigger.paths, event.changed),
    )


def _push_rule(on: On, event: Event) -> Match:
    return _branch_rule("push", on.push, "branch", event.branch, event)


def _pull_request_rule(on: On, event: Event) -> Match:
    action = "merged" if event.kind is EventKind.PULL_REQUEST_MERGED else event.action
    if on.pull_request is not None and action is not None:
        actions = on.pull_request.actions
        if action not in actions:
            return Match(
                False, (f"pull request action {action!r} is not in types {_describe(actions)}",)
            )
    return _branch_rule(
        "pull_request", on.pull_request, "target branch", event.target_branch, event
    )


def _tag_rule(on: On, event: Event) -> Match:
    if on.tag is None:
        return Match(False, ("`on` has no tag trigger",))
    return _all(Match(True, ("on.tag",)), _match_value("tag", on.tag, event.tag))


def _schedule_rule(on: On, event: Event) -> Match:
    if not on.schedule:
        return Match(False, ("`on` has no schedule",))
    return Match(True, (f"on.schedule ({len(on.schedule)} entries)",))


def _manual_rule(on: On, event: Event) -> Match:
    if not on.manual:
        return Match(False, ("`on.manual` is false",))
    return Match(True, ("on.manual",))


_EVENT_RULES: dict[EventKind, Callable[[On, Event], Match]] = {
    EventKind.PUSH: _push_rule,
    EventKind.PULL_REQUEST: _pull_request_rule,
    EventKind.PULL_REQUEST_MERGED: _pull_request_rule,
    EventKind.TAG: _tag_rule,
    EventKind.SCHEDULE: _schedule_rule,
    EventKind.MANUAL: _manual_rule,
}


def job_condition(condition: IfCondition | None, event: Event) -> Match:
    """A job's `if`: every condition given must hold."""
    if condition is None:
        return Match(True, ("no `if` rule",))
    parts: list[Match] = []
    if condition.event is not None:
        kind = event.effective_kind.value
        ok = kind in condition.event
        verdict = "is" if ok else "is not"
        parts.append(Match(ok, (f"if.event: {kind!r} {verdict} in {_describe(condition.event)}",)))
    if condition.branch is not None:
        parts.append(_prefixed("if.", _match_value("branch", condition.branch, event.branch)))
    if condition.tag is not None:
        parts.append(_prefixed("if.", _match_value("tag", condition.tag, event.tag)))
    if condition.paths is not None:
        parts.append(_prefixed("if.", match_paths(condition.paths, event.changed)))
    return _all(*parts)


def _prefixed(prefix: str, decision: Match) -> Match:
    return Match(decision.included, tuple(prefix + r for r in decision.reasons))
