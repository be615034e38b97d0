"""An analysis metric over time as SVG paths: the canary's and the stable revision's
values at each evaluation, and the threshold, scaled into a small chart. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT, PAD = 320, 90, 4


@dataclass(frozen=True)
class Chart:
    metric: str
    canary: str
    """An SVG path ('' without values)."""
    stable: str
    threshold: float | None
    threshold_y: float | None
    top: float
    unit: str


@dataclass(frozen=True)
class Point:
    at: float
    """Seconds since the analysis run started."""
    canary: float | None
    stable: float | None


def chart(metric: str, points: Sequence[Point], threshold: float | None, unit: str = "") -> Chart:
    values = [v for p in points for v in (p.canary, p.stable) if v is not None]
    top = max([*values, threshold or 0.0, 1e-9]) * 1.1
    last = max((p.at for p in points), default=0.0) or 1.0

    def x(at: float) -> float:
        return round(PAD + (WIDTH - 2 * PAD) * at / last, 1)

    def y(value: float) -> float:
        return round(HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top, 1)

    def path(which: str) -> str:
        steps = [(p.at, getattr(p, which)) for p in points if getattr(p, which) is not None]
        return " ".join(
            f"{'M' if i == 0 else 'L'}{x(at)},{y(value)}" for i, (at, value) in enumerate(steps)
        )

    return Chart(
        metric=metric,
        canary=path("canary"),
        stable=path("stable"),
        threshold=threshold,
        threshold_y=y(threshold) if threshold is not None else None,
        top=top,
        unit=unit,
    )
