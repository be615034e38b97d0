from __future__ import annotations

import time
import uuid

import pytest

from conveyor.ids import id_timestamp_ms, new_id


def test_uuid7_sorts_by_time_and_carries_it():
    before = int(time.time() * 1000)
    ids = [new_id() for _ in range(50)]
    after = int(time.time() * 1000)
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert before <= id_timestamp_ms(ids[0]) <= after
    assert len(set(ids)) == 50


def test_timestamp_of_other_versions_is_refused():
    with pytest.raises(ValueError, match="UUIDv4"):
        id_timestamp_ms(uuid.uuid4())
