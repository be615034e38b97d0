"""What Conveyor exports, what docs/metrics.md lists, and what the shipped alert rules
and Grafana dashboard query are the same set of metrics: a rename anywhere fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ruamel.yaml import YAML

from conveyor.observability import metrics

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bconveyor_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_count", "_sum")


def exported() -> set[str]:
    text = metrics.exposition().decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE conveyor_")}


def documented() -> set[str]:
    rows = (ROOT / "docs" / "metrics.md").read_text().splitlines()
    return {m[1] for row in rows if (m := re.match(r"\| `(conveyor_[a-z0-9_]+)` \|", row))}


def family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in exported():
            return name.removesuffix(suffix)
    return name


def queried(expressions: list[str]) -> set[str]:
    return {family(name) for expr in expressions for name in NAME.findall(expr)}


def test_every_exported_metric_is_documented_and_nothing_else():
    assert exported() == documented()
    assert all(n.startswith("conveyor_") for n in exported()) and len(exported()) >= 20


def test_the_alert_rules_query_only_exported_metrics():
    rules = YAML(typ="safe").load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    expressions = [r["expr"] for group in rules["groups"] for r in group["rules"]]
    assert len(expressions) >= 10
    assert queried(expressions) <= exported(), queried(expressions) - exported()


def test_every_dashboard_panel_queries_exported_metrics():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "conveyor.json").read_text())
    panels = dashboard["panels"]
    assert len(panels) >= 15
    for panel in panels:
        expressions = [t["expr"] for t in panel["targets"]]
        names = queried(expressions)
        assert names, f"panel {panel['title']!r} queries no Conveyor metric"
        assert names <= exported(), (panel["title"], names - exported())
    variables = [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert queried(variables) <= exported()
