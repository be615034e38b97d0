"""Hosts of a fleet as the coordinator sees them: the states an agent's host moves
through (docs/states.md)."""

from __future__ import annotations

from enum import StrEnum


class HostState(StrEnum):
    UP = "up"
    """Its agent holds its lease: instances may be placed on it."""
    DRAINING = "draining"
    """A person asked to empty it: its instances move elsewhere, nothing new comes."""
    LOST = "lost"
    """Its lease ran out: its instances count as gone until the agent comes back."""
