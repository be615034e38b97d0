"""The `logs` provider: how often the instances of a slot write a line that matches
`pattern` (a regular expression: `ERROR|Traceback`), from the files their target keeps
their output in. A seed criterion: a canary that starts logging errors is rolled back.

Each call reads what each instance's file gained since the last call (at most READ_MAX
bytes of it), so the value is the matching lines per second over the window, summed over
the slot's instances; `samples` is how many lines were read. A file seen for the first
time is read from its start: it is that instance's output alone.

An instance on a fleet's host is counted by its agent (the patterns of the deployment's
`logs` metrics travel with the instance): the value is what its reported counts gained
since the last call. Counts arrive with the agent's reports (at once when a line matched,
else at least every 5 s), so a window may hold lines written just before it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from conveyor.analysis.providers.base import Measurement, SlotTarget
from conveyor.pipeline.analysis import Metric

READ_MAX = 4 << 20
"""The most read of one file per call; anything beyond is skipped, not queued."""


class LogsProvider:
    def __init__(self) -> None:
        self._offsets: dict[str, int] = {}
        """Per file: how far it has been read."""
        self._counted: dict[str, tuple[int, int]] = {}
        """Per instance on a host and pattern: its (lines, matches) counted so far."""

    async def close(self) -> None:
        return None

    async def measure(
        self, metric: Metric, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        assert metric.pattern is not None
        pattern = re.compile(metric.pattern)
        return [self._one(metric, pattern, t, start, end) for t in targets]

    def _one(
        self, metric: Metric, pattern: re.Pattern[str], target: SlotTarget, start: float, end: float
    ) -> Measurement:
        files = [i.log for i in target.instances if i.log]
        reported = [i.reported for i in target.instances if i.reported is not None]
        if not files and not reported:
            return Measurement(metric.name, target.slot, None, 0, start, end, "no log to read")
        lines = matched = 0
        for name in files:
            for line in self._new_lines(Path(name)):
                lines += 1
                matched += bool(pattern.search(line))
        for seen in reported:
            text = pattern.pattern
            if text not in seen.log_matches:
                continue  # started before a template asked for this pattern
            key = f"{seen.instance}:{text}"
            before_lines, before_matched = self._counted.get(key, (0, 0))
            now = (seen.log_lines, seen.log_matches[text])
            self._counted[key] = now
            lines += max(0, now[0] - before_lines)
            matched += max(0, now[1] - before_matched)
        seconds = max(end - start, 1e-3)
        detail = f"{matched} of {lines} new lines match {metric.pattern!r}"
        return Measurement(
            metric.name,
            target.slot,
            matched / seconds,
            lines,
            start,
            end,
            detail,
            hosts=frozenset(seen.host for seen in reported),
        )

    def _new_lines(self, path: Path) -> list[str]:
        key = str(path)
        try:
            size = path.stat().st_size
        except OSError:
            self._offsets.pop(key, None)
            return []
        offset = self._offsets.get(key, 0)
        if size < offset:  # truncated or replaced: read it again from the start
            offset = 0
        with path.open("rb") as handle:
            handle.seek(max(offset, size - READ_MAX))
            data = handle.read(size - handle.tell())
        # Only whole lines: a line still being written is read next time.
        cut = data.rfind(b"\n") + 1
        self._offsets[key] = size - len(data) + cut
        return data[:cut].decode(errors="replace").splitlines()
