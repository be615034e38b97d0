"""Who may do what: roles within a team, ordered."""

from __future__ import annotations

from enum import IntEnum


class Role(IntEnum):
    """A token's role in its team; a higher role may do everything a lower one may."""

    VIEWER = 1
    """Reads runs, jobs and logs."""
    DEVELOPER = 2
    """Also triggers, cancels and retries runs, and starts manual jobs."""
    MAINTAINER = 3
    """Also creates projects, sets secrets and registers runners."""
    OWNER = 4
    """Also creates tokens for the team."""
    ADMIN = 5
    """The instance's administrator: every team."""

    @classmethod
    def parse(cls, name: str) -> Role:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()
