"""Who is asking: the admin, a team's token with a role, or a runner acting for a
pipeline. Services take a principal and decide with it; the API builds one from a
bearer token (api/auth.py), the UI from a session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from conveyor.domain.errors import Forbidden, NotFound
from conveyor.domain.roles import Role


@dataclass(frozen=True)
class RunnerIdentity:
    """A registered runner, as requests see it (storage.tokens reads it)."""

    id: uuid.UUID
    team_id: uuid.UUID | None
    """Its team; None: a shared runner that serves every team."""
    name: str
    labels: tuple[str, ...]
    last_seen_at: datetime


@dataclass(frozen=True)
class Principal:
    """The caller: the admin, a team token with a role, or a runner."""

    role: Role
    team_id: uuid.UUID | None = None
    runner: RunnerIdentity | None = None
    subject: str = ""
    """Who is calling, stably: the sha256 of the token (scopes idempotency keys)."""
    name: str = ""
    """The token's name, as its creator gave it."""

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def display(self) -> str:
        """Who did it, for provenance and audit fields: never the token itself."""
        if self.runner is not None:
            return f"runner {self.runner.name}"
        named = f"token {self.name!r} " if self.name else "token "
        role = "admin" if self.is_admin else self.role.label
        return f"{named}({role}) {self.subject[:12]}"

    def can_see(self, team_id: uuid.UUID) -> bool:
        return self.is_admin or (self.runner is None and self.team_id == team_id)

    def require(self, team_id: uuid.UUID, role: Role, what: str = "resource") -> None:
        """NotFound unless the caller belongs to the team (another team's objects do
        not leak their existence); Forbidden if its role is too low."""
        if not self.can_see(team_id):
            raise NotFound(f"no such {what}")
        if self.role < role:
            raise Forbidden(f"this needs the {role.label} role or higher")

    @property
    def acting_role(self) -> Role:
        """The role it acts with in a team it may see (a runner acts for a pipeline:
        developer)."""
        return Role.DEVELOPER if self.runner is not None else self.role
