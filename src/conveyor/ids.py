"""Identifiers (DESIGN.md section 4): the one place where IDs are made.

Every row gets a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds followed by random bits,
so IDs made by any process are unique without coordination and sort by creation time.
docs/ids.md explains the scheme to users.
"""

from __future__ import annotations

import json
import uuid

import uuid6

RUN_NAMESPACE = uuid.UUID("5b8f0d0e-6c1b-4f43-9d59-2f1c8e2a7c11")
"""The fixed UUIDv5 namespace of run dedupe keys. Never change it: stored keys use it."""


def new_id() -> uuid.UUID:
    """Return a fresh UUIDv7."""
    value = uuid6.uuid7()
    return uuid.UUID(bytes=value.bytes)


def id_timestamp_ms(value: uuid.UUID) -> int:
    """Return the Unix time in milliseconds that a UUIDv7 carries in its first 48 bits."""
    if value.version != 7:
        raise ValueError(f"{value} is a UUIDv{value.version}, not a UUIDv7")
    return value.int >> 80


def run_dedupe_key(project: str, event: str, ref: str, sha: str, pipeline: str) -> uuid.UUID:
    """The UUIDv5 that makes "the same commit announced twice" start one run.

    The name is the canonical JSON array `[project, event, ref, sha, pipeline]` (compact,
    UTF-8): an array, so that a `:` or `/` inside a value cannot make two different
    tuples look alike.
    """
    name = json.dumps([project, event, ref, sha, pipeline], separators=(",", ":"))
    return uuid.uuid5(RUN_NAMESPACE, name)
