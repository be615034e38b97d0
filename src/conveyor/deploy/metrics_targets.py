"""The instances for Prometheus to scrape: a file for its `file_sd_configs`, rewritten
whenever the routing changes, listing every instance in the router with labels that say
which environment, slot, revision and artifact it runs. With it, a `prometheus` analysis
metric can select a slot's instances (`instance=~"{{ canary }}"`), and dashboards can
tell revisions apart.

    scrape_configs:
      - job_name: conveyor-instances
        file_sd_configs: [{files: [<data-dir>/deploy/prometheus-targets.json]}]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conveyor.domain.deploy import InstanceState
from conveyor.storage.environments import RouteRows

METRICS_TARGETS = "prometheus-targets.json"


def targets_of(rows: Sequence[RouteRows]) -> list[dict[str, Any]]:
    """One target group per instance that is ready or draining (in the router)."""
    out: list[dict[str, Any]] = []
    for row in rows:
        env = row.env
        for instance in sorted(row.instances, key=lambda i: (i.slot, i.port)):
            if InstanceState(instance.state) not in (InstanceState.READY, InstanceState.DRAINING):
                continue
            labels = {
                "conveyor_environment": env.name,
                "conveyor_environment_id": str(env.id),
                "conveyor_project_id": str(env.project_id),
                "conveyor_slot": instance.slot,
                "conveyor_role": "stable" if instance.slot == env.stable_slot else "canary",
                "conveyor_revision": str(instance.revision),
                "conveyor_digest": instance.digest,
            }
            out.append({"targets": [f"127.0.0.1:{instance.port}"], "labels": labels})
    return out


def write(path: Path, rows: Sequence[RouteRows]) -> None:
    """Replace the file in one rename (Prometheus never reads half of it); unchanged
    contents are not rewritten."""
    text = json.dumps(targets_of(rows), indent=1, sort_keys=True) + "\n"
    if path.is_file() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    partial.replace(path)
