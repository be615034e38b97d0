"""Where new instances go: a pure function of the environment's placement rules, the
hosts (labels, capacity, what they already run, their state) and where the instances they
spread against already are. No I/O; the deployment manager calls it and pauses the
deployment with `Placed.reason` when not every instance found a host (Nomad's lesson: a
placement that cannot be met is loud, never a hang or a silent shortfall)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.domain.hosts import HostState
from conveyor.pipeline.deploy import Placement

HOST = "host"
"""The spread key that means the host itself."""


@dataclass(frozen=True)
class Candidate:
    """One host as placement sees it."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    slots: int | None = None
    """How many instances it may run in all (None: no limit)."""
    memory: int | None = None
    """Bytes of memory its instances may take in all (None: no limit)."""
    used_slots: int = 0
    used_memory: int = 0
    state: HostState = HostState.UP

    def value(self, key: str) -> str:
        """Its value for a spread key: its name for `host`, else the label ('' unset)."""
        return self.name if key == HOST else self.labels.get(key, "")


@dataclass(frozen=True)
class Placed:
    """Where each new instance goes, in order; `reason` says why some found no host."""

    hosts: tuple[str, ...]
    wanted: int
    reason: str | None = None

    @property
    def complete(self) -> bool:
        return len(self.hosts) == self.wanted


def place(
    rules: Placement,
    hosts: Sequence[Candidate],
    peers: Sequence[str],
    count: int,
    memory: int = 0,
) -> Placed:
    """Hosts for `count` new instances of `memory` bytes each. `peers` are the hosts of
    the instances they spread against (the same slot's instances that stay), one entry per
    instance. Each instance goes where, key by key of `rules.spread` (then by host), the
    fewest peers are; ties go to the host with the fewest instances in all, then by name."""
    keys = [*rules.spread, *([] if HOST in rules.spread else [HOST])]
    by_name = {host.name: host for host in hosts}
    spread = {key: Counter(by_name[p].value(key) for p in peers if p in by_name) for key in keys}
    on_host = Counter(peers)
    used = {host.name: (host.used_slots, host.used_memory) for host in hosts}
    chosen: list[str] = []
    for _ in range(count):
        open_ = [
            h for h in hosts if _refusal(rules, h, on_host[h.name], used[h.name], memory) is None
        ]
        if not open_:
            break
        best = min(
            open_,
            key=lambda h: (*(spread[k][h.value(k)] for k in keys), used[h.name][0], h.name),
        )
        chosen.append(best.name)
        on_host[best.name] += 1
        slots, taken = used[best.name]
        used[best.name] = (slots + 1, taken + memory)
        for key in keys:
            spread[key][best.value(key)] += 1
    if len(chosen) == count:
        return Placed(tuple(chosen), count)
    refusals = Counter(
        _refusal(rules, h, on_host[h.name], used[h.name], memory) or "with room" for h in hosts
    )
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(refusals.items()))
    found = f"{len(chosen)} of {count}" if chosen else f"none of {count}"
    of_hosts = (
        f"of {len(hosts)} host{'s' if len(hosts) != 1 else ''}: {why}" if hosts else "no hosts"
    )
    return Placed(tuple(chosen), count, f"placed {found} instances; {of_hosts}")


def _refusal(
    rules: Placement, host: Candidate, peers_here: int, used: tuple[int, int], memory: int
) -> str | None:
    """Why `host` cannot take one more instance now, or None."""
    if host.state is not HostState.UP:
        return f"{host.state.value}"
    missing = [f"{k}={v}" for k, v in sorted(rules.labels.items()) if host.labels.get(k) != v]
    if missing:
        return f"without {', '.join(missing)}"
    if rules.max_per_host is not None and peers_here >= rules.max_per_host:
        return f"at max_per_host {rules.max_per_host}"
    slots, taken = used
    if host.slots is not None and slots + 1 > host.slots:
        return f"full ({host.slots} slots)"
    if host.memory is not None and taken + memory > host.memory:
        return f"out of memory ({_mib(host.memory - taken)} free, {_mib(memory)} needed)"
    return None


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f}MiB"
