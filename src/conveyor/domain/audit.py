"""The audit log's hash chain (docs/ids.md, "Audit entries"): what is hashed, how, and
how a chain is checked. Pure, so the server that appends and the client that verifies
(`conveyor audit verify`) compute the same thing from the same entries.

Each chain belongs to a team (the company's own chain has no team). Its entries are
numbered 1, 2, 3, … and each one's hash is

    sha256(previous hash ‖ canonical JSON of the entry)

with the previous hash as 32 raw bytes (32 zero bytes before the first entry) and the
entry's canonical JSON as UTF-8: the fields of `HASHED`, keys sorted, no spaces, times
in UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. A changed field changes its entry's hash; a
removed or inserted entry breaks the numbering or the next entry's link; a removed last
entry no longer matches the chain's head (its number and hash, kept apart).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

GENESIS = "0" * 64
"""The previous hash of a chain's first entry."""

HASHED = ("seq", "id", "team", "at", "actor", "action", "target", "detail", "request_id")
"""The fields an entry's hash covers, all of it but the hashes themselves."""


class Action(StrEnum):
    """What an audit entry records."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    CONTROL = "control"
    """promote, pause, resume, abort."""
    PIN = "pin"
    UNPIN = "unpin"
    SECRET_SET = "secret.set"
    WEBHOOK_SECRET_ROTATE = "webhook-secret.rotate"
    TOKEN_CREATE = "token.create"
    RUNNER_TOKEN_CREATE = "runner-token.create"
    TEAM_CREATE = "team.create"
    TEAM_CHANGE = "team.change"
    PROJECT_CREATE = "project.create"
    PROJECT_CHANGE = "project.change"
    SUBSCRIPTION_CREATE = "subscription.create"
    SUBSCRIPTION_DELETE = "subscription.delete"
    APPROVE = "approve"
    REJECT = "reject"
    EMERGENCY = "emergency"
    """A deploy or rollback with `--emergency`: past freezes and approvals."""
    PROTECTION_SET = "protection.set"
    FREEZE_CREATE = "freeze.create"
    FREEZE_DELETE = "freeze.delete"
    STOP_THE_LINE = "stop-the-line"
    HOST_TOKEN_CREATE = "host-token.create"
    HOST_TOKEN_REVOKE = "host-token.revoke"
    HOST_DRAIN = "host.drain"
    HOST_UNDRAIN = "host.undrain"
    HOST_REMOVE = "host.remove"
    POOL_SHARE = "pool.share"
    POOL_UNSHARE = "pool.unshare"


def timestamp(moment: datetime) -> str:
    """A time as the chain writes it: UTC, microseconds, `Z`."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash covers: its `HASHED` fields as canonical JSON."""
    body = {name: entry.get(name) for name in HASHED}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def link(previous: str, entry: Mapping[str, Any]) -> str:
    """An entry's hash: sha256(previous hash ‖ canonical JSON of the entry), in hex."""
    return hashlib.sha256(bytes.fromhex(previous) + canonical(entry)).hexdigest()


@dataclass(frozen=True)
class Break:
    """The first entry where a chain stops adding up, and why."""

    seq: int
    id: str | None
    reason: str

    def __str__(self) -> str:
        where = f"entry {self.seq}" + (f" ({self.id})" if self.id else "")
        return f"{where}: {self.reason}"


def verify(
    entries: Iterable[Mapping[str, Any]], head: tuple[int, str] | None = None
) -> Break | None:
    """The first broken entry of a chain given in order of `seq`, or None when every
    entry's number, link and hash add up (and the last one is the chain's `head`, the
    number and hash kept apart, when given)."""
    previous, expected = GENESIS, 1
    for entry in entries:
        seq, ident = int(entry["seq"]), entry.get("id")
        if seq != expected:
            missing = "missing" if seq > expected else "repeated or out of order"
            return Break(seq, ident, f"expected entry {expected} here: an entry is {missing}")
        if entry.get("prev_hash") != previous:
            return Break(seq, ident, "its link to the entry before it does not match")
        if link(previous, entry) != entry.get("hash"):
            return Break(seq, ident, "its content does not match its hash")
        previous, expected = str(entry["hash"]), expected + 1
    if head is not None:
        last, last_hash = head
        if last != expected - 1:
            return Break(expected, None, f"the chain's head is entry {last}: entries are missing")
        if last_hash != previous:
            return Break(last, None, "the chain's head does not match its last entry")
    return None
