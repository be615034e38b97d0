"""The `process` provider: CPU and RSS of a slot's instances, read from the operating
system (psutil) for instances on this machine, and from their agents' reports for
instances on the fleet's hosts. A seed criterion for rollback: a canary that leaks
memory or spins.

`rss` is the largest resident set of the slot's instances, in bytes (with their
children: a service started through a shell counts as a whole); `cpu` is the mean CPU
use of the slot's instances over the window, as a fraction of one core (psutil's
cpu_percent between two calls, kept per process; for a host's instance, the CPU time
between its agent's two latest reports over the time between them). An agent reports its
instances' usage at least every 5 s (agent.host.USAGE_S); a report older than STALE_S
counts as no data for that instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import psutil

from conveyor.analysis.providers.base import Measurement, Reported, SlotTarget
from conveyor.pipeline.analysis import Metric

STALE_S = 15.0
"""A host's report this old says nothing of the instance now (its agent stopped)."""


class ProcessProvider:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._seen: dict[int, psutil.Process] = {}
        """Per pid, the Process object whose last cpu_percent call starts the next window."""
        self._reports: dict[str, tuple[Reported | None, Reported]] = {}
        """Per instance on a host, its two latest reports (the CPU window)."""
        self.clock = clock

    async def close(self) -> None:
        return None

    async def measure(
        self, metric: Metric, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        return [self._one(metric, target, start, end) for target in targets]

    def _one(self, metric: Metric, target: SlotTarget, start: float, end: float) -> Measurement:
        parts: dict[str, float] = {}
        missing: list[str] = []
        hosts: set[str] = set()
        for instance in target.instances:
            if instance.reported is not None:
                key = f"{instance.reported.host}:{instance.pid}"
                value = self._reported(metric.measure or "rss", instance.reported)
            else:
                key = str(instance.pid)
                value = self._value(metric.measure or "rss", instance.pid)
            if value is None:
                missing.append(key)
            else:
                parts[key] = value
                if instance.reported is not None:
                    hosts.add(instance.reported.host)
        detail = f"gone: {', '.join(missing)}" if missing else ""
        if not parts:
            return Measurement(
                metric.name, target.slot, None, 0, start, end, detail or "no instance"
            )
        if metric.measure == "cpu":
            value = sum(parts.values()) / len(parts)
        else:
            value = max(parts.values())
        return Measurement(
            metric.name,
            target.slot,
            value,
            len(parts),
            start,
            end,
            detail,
            parts,
            hosts=frozenset(hosts),
        )

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

    def _reported(self, measure: str, now: Reported) -> float | None:
        """From the agent's reports: the RSS it last saw, or its CPU use between its two
        latest reports (0 until there are two)."""
        if self.clock() - now.at > STALE_S:
            self._reports.pop(now.instance, None)
            return None
        if measure == "rss":
            return now.rss
        if now.cpu_s is None:
            return None
        before, latest = self._reports.get(now.instance, (None, now))
        if now.at > latest.at:
            before, latest = latest, now
        self._reports[now.instance] = (before, latest)
        if before is None or before.cpu_s is None or latest.cpu_s is None:
            return 0.0
        return max(latest.cpu_s - before.cpu_s, 0.0) / (latest.at - before.at)

    def _process(self, pid: int) -> psutil.Process:
        found = self._seen.get(pid)
        if found is None or not found.is_running():
            found = self._seen[pid] = psutil.Process(pid)
        return found

    def _cpu(self, process: psutil.Process) -> float:
        """CPU percent since the previous call for this process (0 at the first)."""
        known = self._seen.setdefault(process.pid, process)
        return float(known.cpu_percent(interval=None))
