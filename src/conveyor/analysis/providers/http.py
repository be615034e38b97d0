"""The `http` provider (Argo Rollouts' web provider): GET a URL and read a number from
its JSON answer at `json_path` (jsonpath-ng), or, without one, the status code.

The URL may name the canary's preview, `{{ preview }}`, so that a service's own health
or business endpoint judges the new revision before (and while) it takes traffic. It
measures the canary slot only. Anything but a number (or a boolean, read as 1 or 0) at
the path, a failed request or an answer that is not JSON is no data, with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import httpx
from jsonpath_ng.parser import parse as jsonpath

from conveyor.analysis.providers.base import Measurement, Slot, SlotTarget
from conveyor.pipeline.analysis import Metric

TIMEOUT_S = 1.5
"""Below the driver's limit on one measurement (deploy.analyses.MEASURE_TIMEOUT_S)."""


class HttpProvider:
    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self.client = client or httpx.AsyncClient(timeout=TIMEOUT_S)

    async def close(self) -> None:
        await self.client.aclose()

    async def measure(
        self, metric: Metric, targets: Sequence[SlotTarget], start: float, end: float
    ) -> list[Measurement]:
        canary = next((t for t in targets if t.slot is Slot.CANARY), None)
        if canary is None or metric.url is None:
            return []
        url = metric.url.replace("{{ preview }}", (canary.url or "").rstrip("/"))
        value, detail = await self._read(url, metric.json_path)
        samples = 0 if value is None else 1
        return [Measurement(metric.name, Slot.CANARY, value, samples, start, end, detail)]

    async def _read(self, url: str, path: str | None) -> tuple[float | None, str]:
        began = time.monotonic()
        try:
            response = await self.client.get(url)
        except httpx.HTTPError as exc:
            return None, f"GET {url}: {type(exc).__name__}: {exc}"
        took = f"{(time.monotonic() - began) * 1000:.0f} ms"
        if path is None:
            return float(response.status_code), f"GET {url}: {response.status_code} in {took}"
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None, f"GET {url}: {response.status_code}, not JSON"
        found = [m.value for m in jsonpath(path).find(body)]
        if not found:
            return None, f"GET {url}: nothing at {path}"
        value = found[0]
        if isinstance(value, bool):
            return float(value), f"GET {url}: {path} = {value}"
        if not isinstance(value, int | float):
            return None, f"GET {url}: {path} is {value!r}, not a number"
        return float(value), f"GET {url}: {path} = {value} in {took}"
