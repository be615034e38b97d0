"""Identifiers (DESIGN.md section 4): the one place where IDs are made.

Every row gets a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds followed by random bits,
so IDs made by any process are unique without coordination and sort by creation time.
docs/ids.md explains the scheme to users.
"""

from __future__ import annotations

import uuid

import uuid6


def new_id() -> uuid.UUID:
    """Return a fresh UUIDv7."""
    value = uuid6.uuid7()
    return uuid.UUID(bytes=value.bytes)


def id_timestamp_ms(value: uuid.UUID) -> int:
    """Return the Unix time in milliseconds that a UUIDv7 carries in its first 48 bits."""
    if value.version != 7:
        raise ValueError(f"{value} is a UUIDv{value.version}, not a UUIDv7")
    return value.int >> 80
