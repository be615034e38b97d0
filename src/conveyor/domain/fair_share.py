"""Which team's queue a claim looks at first: pure functions of counts and times
(STYLE.md: decisions are pure), fed by storage.queue and called by the scheduler.

Fair share by turns (decision 0008): among the teams with pending jobs and room under
their quota, the one with the fewest running jobs goes first, then the one served least
recently (a team never served goes before one that was), then the one whose oldest job
has waited longest. A team that queues 10,000 jobs therefore delays another team's one
job by one pass at most.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class TeamQueue:
    """A team with pending jobs, as a claim sees it."""

    team_id: uuid.UUID
    oldest: datetime
    """When its oldest pending job was queued."""
    quota: int | None = None
    """At most this many of its jobs run at once (None: no limit)."""


def under_quota(running: int, quota: int | None) -> bool:
    return quota is None or running < quota


def needs_turns(queues: Sequence[TeamQueue]) -> bool:
    """Whether running counts matter: between several teams, or for a quota. With one
    team and no quota (the common case) a claim reads neither."""
    return len(queues) > 1 or any(q.quota is not None for q in queues)


def eligible(queues: Sequence[TeamQueue], running: Mapping[uuid.UUID, int]) -> list[TeamQueue]:
    """The teams with room under their quota."""
    return [q for q in queues if under_quota(running.get(q.team_id, 0), q.quota)]


def fair_order(
    queues: Sequence[TeamQueue],
    running: Mapping[uuid.UUID, int],
    served: Mapping[uuid.UUID, datetime | None],
) -> list[TeamQueue]:
    """The teams in the order a claim tries them. `served` is when each team's last job
    started (None: never)."""

    def turn(queue: TeamQueue) -> tuple[int, bool, datetime, datetime]:
        last = served.get(queue.team_id)
        return (
            running.get(queue.team_id, 0),
            last is not None,
            last or queue.oldest,
            queue.oldest,
        )

    return sorted(queues, key=turn)
