"""The `process` provider: CPU and RSS of a slot's instances, read from the operating
system (psutil). A seed criterion for rollback: a canary that leaks memory or spins.

`rss` is the largest resident set of the slot's instances, in bytes (with their
children: a service started through a shell counts as a whole); `cpu` is the mean CPU
use of the slot's instances over the window, as a fraction of one core (psutil's
cpu_percent between two calls, kept per process).
"""

from __future__ import annotations

from collections.abc import Sequence

import psutil

from conveyor.analysis.providers.base import Measurement, SlotTarget
from conveyor.pipeline.analysis import Metric


class ProcessProvider:
    def __init__(self) -> None:
        self._seen: dict[int, psutil.Process] = {}
        """Per pid, the Process object whose last cpu_percent call starts the next window."""

    async def close(self) -> None:
        return None

    async def measure(
        self, metric: Metric, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        return [self._one(metric, target, start, end) for target in targets]

    def _one(self, metric: Metric, target: SlotTarget, start: float, end: float) -> Measurement:
        parts: dict[str, float] = {}
        missing: list[int] = []
        for instance in target.instances:
            value = self._value(metric.measure or "rss", instance.pid)
            if value is None:
                missing.append(instance.pid)
            else:
                parts[str(instance.pid)] = value
        detail = f"gone: {', '.join(map(str, missing))}" if missing else ""
        if not parts:
            return Measurement(
                metric.name, target.slot, None, 0, start, end, detail or "no instance"
            )
        if metric.measure == "cpu":
            value = sum(parts.values()) / len(parts)
        else:
            value = max(parts.values())
        return Measurement(metric.name, target.slot, value, len(parts), start, end, detail, parts)

    def _value(self, measure: str, pid: int) -> float | None:
        try:
            process = self._process(pid)
            family = [process, *process.children(recursive=True)]
            if measure == "rss":
                return float(sum(p.memory_info().rss for p in family))
            return sum(self._cpu(p) for p in family) / 100.0
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            self._seen.pop(pid, None)
            return None

    def _process(self, pid: int) -> psutil.Process:
        found = self._seen.get(pid)
        if found is None or not found.is_running():
            found = self._seen[pid] = psutil.Process(pid)
        return found

    def _cpu(self, process: psutil.Process) -> float:
        """CPU percent since the previous call for this process (0 at the first)."""
        known = self._seen.setdefault(process.pid, process)
        return float(known.cpu_percent(interval=None))
