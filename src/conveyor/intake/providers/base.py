"""What every provider module gives the intake: signature checks, the delivery key, a
cheap first look at the event, and the translation of a payload into changes.

Payloads come from outside: every field is read through `Payload`, which turns a
missing or mistyped field into a `PayloadError` naming it, never a KeyError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from standardwebhooks.webhooks import Webhook

from conveyor.pipeline.triggers import EventKind

ZERO_SHA = "0" * 40
MAX_DELIVERY_KEY = 255
STANDARD_TOLERANCE_S = 300

Headers = Mapping[str, str]
"""Request headers with lower-case names."""


class PayloadError(ValueError):
    """The payload lacks a field its event needs, or the field has the wrong type."""


class Look(StrEnum):
    """What the endpoint does with a verified delivery before storing it."""

    PING = "ping"
    IGNORE = "ignore"
    ACCEPT = "accept"


@dataclass(frozen=True)
class FirstLook:
    look: Look
    event: str
    reason: str = ""


def not_handled(event: str) -> FirstLook:
    return not_handled(event)


def action_ignored(event: str, action: str) -> FirstLook:
    return FirstLook(
        Look.IGNORE, f"{event}.{action}", f"action {action or '(none)'!r} starts nothing"
    )


@dataclass(frozen=True)
class Change:
    """One ref that moved, or one pull request event, as the provider reported it."""

    kind: EventKind
    ref: str
    sha: str
    """May be abbreviated (Bitbucket Cloud sends 12 hex digits); resolved in the mirror."""
    before: str | None = None
    """The ref's previous commit for a push; None for a new ref."""
    changed: tuple[str, ...] | None = None
    """The changed files when the payload holds the complete list; else None."""
    message: str = ""
    target_branch: str | None = None
    action: str | None = None
    number: int | None = None
    default_branch: str | None = None


@dataclass(frozen=True)
class Translation:
    changes: tuple[Change, ...] = ()
    skipped: tuple[str, ...] = field(default_factory=tuple)
    """Why refs in the payload start nothing (deleted branches and tags)."""


class Provider(Protocol):
    name: str

    def verify(self, secrets: Iterable[str], headers: Headers, body: bytes) -> bool:
        """Whether the delivery is signed (or carries the token) with one of `secrets`."""

    def delivery_key(self, headers: Headers, body: bytes) -> str:
        """The provider's id of this delivery (docs/ids.md), bounded in length."""

    def first_look(self, headers: Headers, payload: Any) -> FirstLook:
        """Ping, ignore or accept, from the event header and at most the action."""

    def translate(self, headers: Headers, payload: Any) -> Translation:
        """The changes an accepted delivery announces."""


# -- signatures ---------------------------------------------------------------------------


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def matches_hex(secrets: Iterable[str], body: bytes, given: str | None, prefix: str) -> bool:
    """An HMAC-SHA256 hex signature, optionally after a prefix such as `sha256=`.
    An empty signature (Gitea without a secret) never matches."""
    if not given or not given.startswith(prefix) or len(given) == len(prefix):
        return False
    offered = given[len(prefix) :].strip().lower().encode("latin-1", "replace")
    return any(hmac.compare_digest(hmac_hex(s, body).encode(), offered) for s in secrets)


def matches_token(secrets: Iterable[str], given: str | None) -> bool:
    if not given:
        return False
    offered = given.encode("latin-1", "replace")
    return any(hmac.compare_digest(s.encode(), offered) for s in secrets)


def standard_key(secret: str) -> bytes:
    """Standard Webhooks' key: the base64 after `whsec_`; any other secret as its bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_") + "==")
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def matches_standard(
    secrets: Iterable[str], headers: Headers, body: bytes, now: datetime | None = None
) -> bool:
    """Standard Webhooks: `v1,<base64>` over `id.timestamp.body`, timestamp within ±5 min;
    any one of several space-separated signatures may match."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    offered = headers.get("webhook-signature", "").split()
    if not msg_id or not stamp.isdigit() or not offered:
        return False
    moment = now or datetime.now(UTC)
    if abs(moment.timestamp() - int(stamp)) > STANDARD_TOLERANCE_S:
        return False
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return False
    at = datetime.fromtimestamp(int(stamp), UTC)
    given = [
        sig.encode("latin-1", "replace")
        for version, _, sig in (item.partition(",") for item in offered)
        if version == "v1" and sig
    ]
    for secret in secrets:
        key = standard_key(secret)
        if not key:
            continue
        expected = Webhook(key).sign(msg_id, at, text).partition(",")[2].encode()
        if any(hmac.compare_digest(expected, sig) for sig in given):
            return True
    return False


def standard_headers(secret: str, msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The headers that sign `body` the Standard Webhooks way (used by the git hook)."""
    signature = Webhook(standard_key(secret)).sign(msg_id, now, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


# -- delivery keys -------------------------------------------------------------------------


def body_key(body: bytes) -> str:
    """The key of a delivery that carries no id of its own: sha256 of the body."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def first_header(headers: Headers, *names: str) -> str | None:
    for name in names:
        value = headers.get(name, "").strip()
        if value:
            return value
    return None


def bounded_key(value: str) -> str:
    """A provider id is an opaque string; over 255 bytes it is replaced by its hash."""
    if len(value.encode()) <= MAX_DELIVERY_KEY:
        return value
    return body_key(value.encode())


# -- payload fields -------------------------------------------------------------------------


class Payload:
    """Typed access to a JSON payload; errors name the field that is wrong."""

    def __init__(self, data: Any, path: str = "") -> None:
        self.data = data
        self.path = path

    def _at(self, key: str) -> tuple[Any, str]:
        where = f"{self.path}.{key}" if self.path else key
        if not isinstance(self.data, dict):
            raise PayloadError(f"{self.path or 'the payload'} is not an object")
        return self.data.get(key), where

    def obj(self, key: str) -> Payload:
        value, where = self._at(key)
        if not isinstance(value, dict):
            raise PayloadError(f"{where} is missing or not an object")
        return Payload(value, where)

    def opt_obj(self, key: str) -> Payload | None:
        value, where = self._at(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise PayloadError(f"{where} is not an object")
        return Payload(value, where)

    def text(self, key: str) -> str:
        value, where = self._at(key)
        if not isinstance(value, str) or not value:
            raise PayloadError(f"{where} is missing or not a string")
        return value

    def opt_text(self, key: str) -> str | None:
        value, where = self._at(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise PayloadError(f"{where} is not a string")
        return value

    def integer(self, key: str) -> int:
        value, where = self._at(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise PayloadError(f"{where} is missing or not an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        value, _ = self._at(key)
        return None if value is None else self.integer(key)

    def flag(self, key: str) -> bool:
        value, _ = self._at(key)
        return bool(value) if isinstance(value, bool) else False

    def items(self, key: str) -> list[Payload]:
        value, where = self._at(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise PayloadError(f"{where} is not a list")
        return [Payload(item, f"{where}[{i}]") for i, item in enumerate(value)]

    def texts(self, key: str) -> list[str]:
        value, where = self._at(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PayloadError(f"{where} is not a list of strings")
        return list(value)

    def opt_texts(self, key: str) -> list[str] | None:
        """A list of strings, or None when the field is missing or null."""
        value, _ = self._at(key)
        return None if value is None else self.texts(key)


def files_of(commits: list[Payload]) -> tuple[str, ...]:
    """The files a list of GitHub-style commits added, modified or removed, in order."""
    seen: dict[str, None] = {}
    for commit in commits:
        for key in ("added", "modified", "removed"):
            for path in commit.texts(key):
                seen.setdefault(path, None)
    return tuple(seen)


def is_zero(sha: str | None) -> bool:
    return sha is None or sha.strip("0") == ""
