"""Hosts of a fleet as the coordinator sees them: the states an agent's host moves
through (docs/states.md)."""

from __future__ import annotations

from enum import StrEnum

LOCAL_POOL = "local"
"""The pool of the coordinators' own machines: each replica's embedded agent joins it
(coordinator/embedded.py), and it serves every team without being shared."""
LOCAL_LABEL = "conveyor.local"
"""The label of a coordinator's own machine (`true`): a service placed with
`labels: {conveyor.local: "true"}` runs there."""


class HostState(StrEnum):
    UP = "up"
    """Its agent holds its lease: instances may be placed on it."""
    DRAINING = "draining"
    """A person asked to empty it: its instances move elsewhere, nothing new comes."""
    LOST = "lost"
    """Its lease ran out: its instances count as gone until the agent comes back."""


def state_of(state: str, draining: bool) -> HostState:
    """A host's state from its columns: lost while its lease has run out (`state`), else
    draining when asked to, else up."""
    if state == HostState.LOST.value:
        return HostState.LOST
    return HostState.DRAINING if draining else HostState.UP
