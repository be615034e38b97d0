"""Glob patterns for branches, tags and paths, and cron expressions.

Patterns follow the conventions GitHub Actions and GitLab users know: `*` stays within one
path segment, `**` crosses segments, `{a,b}` alternates, `[abc]` is a class, and a leading
`!` excludes. In a list, patterns apply in order and the last one that matches wins; a list
of only exclusions starts from "everything matches".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from croniter import croniter
from wcmatch import glob

_GLOB_FLAGS = glob.GLOBSTAR | glob.BRACE | glob.DOTGLOB | glob.EXTGLOB


def check_glob(pattern: str) -> str | None:
    """Return why `pattern` is not a usable glob, or None when it is fine."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body.strip():
        return "empty pattern"
    if "***" in body:
        return f"'***' in glob {pattern!r}: use '**' to match any number of directories"
    problem = _bracket_problem(body)
    return f"{problem} in glob {pattern!r}" if problem else None


def _bracket_problem(body: str) -> str | None:
    """Unbalanced `[...]` classes or `{...}` alternations, honouring backslash escapes."""
    square = brace = 0
    escaped = False
    for ch in body:
        if escaped or ch == "\\":
            escaped = not escaped
            continue
        if ch == "[":
            square += 1
        elif ch == "]" and square:
            square -= 1
        elif ch in "{}" and not square:
            brace += 1 if ch == "{" else -1
            if brace < 0:
                return "unbalanced '}'"
    if square:
        return "unclosed '['"
    return "unclosed '{'" if brace else None


def glob_matches(pattern: str, value: str) -> bool:
    """Whether `value` (a branch, tag or repository-relative path) matches one pattern."""
    return bool(glob.globmatch(value.lstrip("/"), pattern.lstrip("/"), flags=_GLOB_FLAGS))


def first_match(patterns: Sequence[str], value: str) -> tuple[bool, str | None]:
    """Apply an ordered include/exclude list to one value.

    Returns (included, the pattern that decided it, or None when no pattern matched).
    """
    included = all(p.startswith("!") for p in patterns)
    decided_by: str | None = None
    for pattern in patterns:
        negate = pattern.startswith("!")
        if glob_matches(pattern[1:] if negate else pattern, value):
            included = not negate
            decided_by = pattern
    return included, decided_by


def matching_paths(patterns: Sequence[str], paths: Iterable[str]) -> list[str]:
    """The paths that the ordered pattern list includes."""
    return [p for p in paths if first_match(patterns, p)[0]]


def check_cron(expression: str) -> str | None:
    """Return why `expression` is not a valid 5-field cron expression, or None."""
    fields = expression.split()
    if len(fields) != 5:
        return f"cron expression {expression!r} must have 5 fields (minute hour day month weekday)"
    if not croniter.is_valid(expression):
        return f"invalid cron expression {expression!r}"
    return None
