"""domain.audit: the hash chain's arithmetic, and what verify names when it breaks."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from conveyor.domain import audit


def _chain(count: int) -> list[dict[str, Any]]:
    entries, previous = [], audit.GENESIS
    for seq in range(1, count + 1):
        entry: dict[str, Any] = {
            "seq": seq,
            "id": f"id-{seq}",
            "team": "payments",
            "at": audit.timestamp(datetime(2026, 12, 6, 13, 0, seq, 250, tzinfo=UTC)),
            "actor": "token 'ci' (maintainer) 3f2a9c1b2d4e",
            "action": "deploy",
            "target": f"payments/api/production#{seq}",
            "detail": {"digest": f"sha256:{seq:064x}", "strategy": "canary"},
            "request_id": f"req-{seq}",
            "prev_hash": previous,
        }
        entry["hash"] = previous = audit.link(previous, entry)
        entries.append(entry)
    return entries


def test_an_entry_s_hash_is_sha256_of_the_previous_hash_and_its_canonical_json():
    first = _chain(1)[0]
    body = {name: first[name] for name in audit.HASHED}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert first["hash"] == hashlib.sha256(bytes(32) + text.encode()).hexdigest()
    assert audit.canonical(first).startswith(b'{"action":"deploy","actor":')
    # Neither key order nor the hashes themselves are part of what is hashed.
    shuffled = dict(reversed(list(first.items())))
    assert audit.canonical(shuffled) == audit.canonical({k: first[k] for k in audit.HASHED})


def test_times_are_hashed_in_utc_with_microseconds():
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 12, 6, 14, 0, 1, 5, tzinfo=paris)
    assert audit.timestamp(moment) == "2026-12-06T13:00:01.000005Z"
    assert audit.timestamp(moment.astimezone(UTC).replace(tzinfo=None)) == audit.timestamp(moment)


def test_a_whole_chain_verifies_with_its_head():
    entries = _chain(5)
    assert audit.verify(entries, (5, entries[-1]["hash"])) is None
    assert audit.verify([], (0, audit.GENESIS)) is None


def test_a_changed_field_names_its_entry():
    entries = _chain(5)
    entries[2]["detail"]["digest"] = "sha256:" + "e" * 64
    broken = audit.verify(entries, (5, entries[-1]["hash"]))
    assert broken == audit.Break(3, "id-3", "its content does not match its hash")
    assert str(broken) == "entry 3 (id-3): its content does not match its hash"


def test_a_rehashed_entry_breaks_the_next_one_s_link():
    entries = _chain(5)
    entries[1]["actor"] = "someone else"
    entries[1]["hash"] = audit.link(entries[0]["hash"], entries[1])
    broken = audit.verify(entries)
    assert broken is not None and (broken.seq, broken.reason) == (
        3,
        "its link to the entry before it does not match",
    )


def test_a_removed_entry_is_named_by_the_gap():
    entries = _chain(5)
    del entries[1]
    broken = audit.verify(entries)
    assert broken is not None and broken.seq == 3
    assert broken.reason == "expected entry 2 here: an entry is missing"


def test_a_repeated_entry_is_named():
    entries = _chain(3)
    broken = audit.verify([*entries, entries[-1]])
    assert broken is not None and broken.reason.endswith("repeated or out of order")


def test_a_removed_last_entry_shows_against_the_head():
    entries = _chain(5)
    head = (5, entries[-1]["hash"])
    broken = audit.verify(entries[:-1], head)
    assert broken == audit.Break(5, None, "the chain's head is entry 5: entries are missing")
    forged = audit.verify(entries, (5, "0" * 64))
    assert forged == audit.Break(5, None, "the chain's head does not match its last entry")
