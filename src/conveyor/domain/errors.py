"""Why a use case refuses a request, with no HTTP in it.

Services (deploy, intake, policy, storage) raise these; the API answers each kind with
one status in one place (api/errors.py), the UI shows the message on the page it came
from, and the CLI prints it. A message says what is wrong and, where it helps, what to do.
"""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    """A request Conveyor will not carry out, for the reason in its message. `code`
    names the reason for machines when the kind alone does not (`unknown_ref`,
    `invalid_pipeline`); `detail` carries structured particulars (a list of errors)."""

    def __init__(self, message: str, *, code: str | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class Unauthenticated(Refused):
    """Who is asking cannot be told (a signature or token that does not verify)."""


class Malformed(Refused):
    """The request's body cannot be read at all (not JSON)."""


class NotFound(Refused):
    """What the request names does not exist, or is outside the caller's reach."""


class Forbidden(Refused):
    """The caller may see it, but their role does not allow this."""


class Conflict(Refused):
    """The request clashes with the current state (a phase, an order, a pin, a rule)."""


class Invalid(Refused):
    """The request (or what it points at, such as an artifact's conveyor.yml) is not
    well-formed."""


class TooLarge(Refused):
    """A body or file over its limit."""


class Gone(Refused):
    """It existed, but its content is no longer kept."""


class Unavailable(Refused):
    """Something the request needs is not there now (a tool, a service); retry later."""
