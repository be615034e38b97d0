"""A webhook delivery's lifecycle in the inbox (docs/states.md)."""

from __future__ import annotations

from enum import StrEnum


class DeliveryState(StrEnum):
    RECEIVED = "received"
    """Stored and acknowledged; waiting to be translated (or to be retried)."""
    DONE = "done"
    """Translated: its runs were started, or it said why it starts none."""
    FAILED = "failed"
    """Could not be translated (an unexpected payload, or retries ran out)."""
