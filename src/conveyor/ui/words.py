"""Times and amounts as the pages say them: `3 min ago` with the exact time on hover,
durations as `1m 05s`, and analysis values with their units (as the CLI shows them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

from conveyor.analysis.judge import shown
from conveyor.hosting.routing import SHARE_SCALE


def parse(moment: str | datetime | None) -> datetime | None:
    if moment is None or moment == "":
        return None
    found = moment if isinstance(moment, datetime) else datetime.fromisoformat(moment)
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def ago(moment: datetime, now: datetime) -> str:
    """How long before `now`, in words."""
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return "in " + span(-seconds)
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours > 1 else ''} ago"
    days = int(seconds // 86400)
    if days == 1:
        return "yesterday"
    if days < 30:
        return f"{days} days ago"
    return f"on {moment.astimezone(UTC):%Y-%m-%d}"


def span(seconds: float) -> str:
    """A duration: `0.4 s`, `42 s`, `1m 05s`, `2h 03m`, `3d 4h`."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def when(moment: str | datetime | None, now: datetime | None = None) -> Markup:
    """A `<time>` in words, the exact UTC time on hover; a dash when there is none."""
    found = parse(moment)
    if found is None:
        return Markup('<span class="dim">-</span>')
    exact = f"{found.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    words = ago(found, now or datetime.now(UTC))
    return Markup(
        f'<time datetime="{escape(found.isoformat())}" title="{exact}">{escape(words)}</time>'
    )


def took(
    start: str | datetime | None, end: str | datetime | None, now: datetime | None = None
) -> str:
    """How long from `start` to `end` (to now, with `so far`, while it runs)."""
    begun, ended = parse(start), parse(end)
    if begun is None:
        return ""
    if ended is None:
        return span(((now or datetime.now(UTC)) - begun).total_seconds()) + " so far"
    return span(max(0.0, (ended - begun).total_seconds()))


def measured(value: float | None, unit: str) -> str:
    """An analysis value with its unit, as the CLI prints it (`1.20%`, `212.0 ms`)."""
    return shown(value, unit)


def _short(value: object) -> str:
    text = str(value)
    return text[7:19] if text.startswith("sha256:") else text[:8]


def describe(action: str, params: dict[str, Any]) -> str:
    """A driver's action in words, for an environment's timeline."""
    instance = _short(params.get("instance", ""))
    why = f" ({params['reason']})" if params.get("reason") else ""
    numbers = ", ".join(str(n) for n in params.get("numbers", []) or [])
    said = {
        "begin": f"revision {numbers} begins",
        "supersede": f"revision {numbers} superseded by a newer one",
        "start": f"start an instance of {_short(params.get('digest', ''))} in slot "
        f"{params.get('slot', '?')}" + (f" on port {params['port']}" if "port" in params else ""),
        "ready": f"instance {instance} is healthy and takes traffic",
        "restart": f"restart instance {instance}{why}",
        "drain": f"drain instance {instance}{why}",
        "stop": f"stop instance {instance}{why}",
        "split": f"send {float(params.get('share', 0)) / SHARE_SCALE:.1%} of the traffic to the "
        "canary",
        "promote": f"slot {params.get('slot', '?')} becomes stable",
        "advance": f"go to step {int(params.get('step', 0)) + 1}{why}",
        "pause": f"pause: {params.get('message') or params.get('reason') or 'held'}",
        "finish": f"the deployment ends {params.get('phase', '')}{why}",
        "pre-deploy": "run the pre_deploy commands",
        "checked": f"the pre_deploy commands {params.get('phase') or 'ended'}{why}",
        "release": "released past its gate",
        "rollback": f"roll back to the previous revision{why}",
    }
    return said.get(action) or " ".join(
        [action, *(f"{k}={v}" for k, v in params.items() if k != "act")]
    )


def size(count: int) -> str:
    """Bytes as people read them: `812 B`, `4.2 KiB`, `61.0 MiB`."""
    amount = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def starter(started_by: str) -> str:
    """Who started a deployment, without the run's id a pipeline's job names (the page
    links to the run instead): `job deploy-production`."""
    return started_by.split(" of run ", 1)[0]
