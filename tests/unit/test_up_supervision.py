"""`conveyor up` supervises its children: one that dies is started again after a back-off
that doubles while it keeps dying, and what happened is said (issue 19 §1.1)."""

from __future__ import annotations

from pathlib import Path

from conveyor.cli.processes import RESTART_FIRST_S, RESTART_RESET_S, _Group


def test_a_child_that_keeps_dying_is_restarted_with_a_doubling_back_off(tmp_path: Path):
    group = _Group(tmp_path, "cvy_admin_x")
    child = group.start("the broken one", ["no-such-command"], "broken.log")
    assert child.proc is not None and child.proc.wait(timeout=30) == 2
    now = child.started
    said = group.supervise(now + 0.1)
    assert said == [
        f"the broken one exited (exit code 2) after 0 s; starting it again in "
        f"{RESTART_FIRST_S:g} s (its log: {tmp_path / 'logs' / 'broken.log'})"
    ]
    assert group.supervise(now + 0.5) == []  # still within its back-off
    assert group.supervise(now + 0.1 + RESTART_FIRST_S) == ["the broken one started again"]
    assert child.proc.wait(timeout=30) == 2
    again = group.supervise(child.started + 0.1)
    assert f"starting it again in {2 * RESTART_FIRST_S:g} s" in again[0]
    # One that ran long enough before it died starts from the first back-off again.
    group.supervise(child.restart_at or 0.0)
    assert child.proc.wait(timeout=30) == 2
    late = group.supervise(child.started + RESTART_RESET_S + 1)
    assert f"starting it again in {RESTART_FIRST_S:g} s" in late[0]
    group.stop()
    assert "No such command" in (tmp_path / "logs" / "broken.log").read_text()
