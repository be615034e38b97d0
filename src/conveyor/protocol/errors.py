"""The two ways a runner's write to a job is refused."""

from __future__ import annotations

from conveyor.domain.errors import Conflict, NotFound


class StaleLease(Conflict):
    """A runner wrote with a fencing token that is no longer the job's: its lease was
    lost and the job was requeued or finished. Answered with 409; the runner's client
    raises it again when it reads a 409."""


class NotYours(NotFound):
    """A runner wrote to a job that does not exist or was never leased to it. Answered
    with 404, like any object outside the caller's reach."""
