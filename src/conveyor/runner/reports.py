"""Test and coverage reports: JUnit XML and Cobertura XML, parsed by streaming.

Elements are discarded as soon as they are counted, so memory stays flat however large
the file (a 100 MB JUnit file needs a few MB, not 1 GB). Parsing uses the standard
library's expat, which refuses entity-expansion bombs (expat ≥ 2.4).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_FAILED_NAMES = 50


class ReportError(Exception):
    """A report file is missing or is not the XML it should be."""


@dataclass
class JUnitSummary:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failed_names: list[str] = field(default_factory=list)
    files: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "total": self.total,
            "failed_tests": list(self.failed_names),
            "files": self.files,
        }


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_junit(paths: Iterable[Path]) -> JUnitSummary:
    """Count passed, failed and skipped test cases across JUnit XML files."""
    summary = JUnitSummary()
    for path in paths:
        summary.files += 1
        _parse_junit_file(path, summary)
    return summary


def _parse_junit_file(path: Path, summary: JUnitSummary) -> None:
    stack: list[ET.Element] = []
    outcome = "passed"
    try:
        for event, elem in ET.iterparse(path, events=("start", "end")):
            tag = _local(elem.tag)
            if event == "start":
                if tag == "testcase":
                    outcome = "passed"
                elif stack and _local(stack[-1].tag) == "testcase":
                    if tag in ("failure", "error"):
                        outcome = "failed"
                    elif tag == "skipped" and outcome == "passed":
                        outcome = "skipped"
                stack.append(elem)
                continue
            stack.pop()
            if tag == "testcase":
                _count(summary, elem, outcome)
            if stack and tag in ("testcase", "testsuite"):
                stack[-1].remove(elem)  # drop what is counted: memory stays flat
            elem.clear()
    except ET.ParseError as exc:
        raise ReportError(f"{path}: not valid JUnit XML: {exc}") from exc
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror}") from exc


def _count(summary: JUnitSummary, case: ET.Element, outcome: str) -> None:
    if outcome == "failed":
        summary.failed += 1
        if len(summary.failed_names) < MAX_FAILED_NAMES:
            cls, name = case.get("classname", ""), case.get("name", "?")
            summary.failed_names.append(f"{cls}.{name}" if cls else name)
    elif outcome == "skipped":
        summary.skipped += 1
    else:
        summary.passed += 1


def parse_cobertura(path: Path) -> float:
    """Line coverage in percent from a Cobertura XML file (its root element's figures)."""
    try:
        for _event, elem in ET.iterparse(path, events=("start",)):
            if _local(elem.tag) != "coverage":
                raise ReportError(f"{path}: not a Cobertura report (root is <{elem.tag}>)")
            return _coverage_percent(path, elem)
    except ET.ParseError as exc:
        raise ReportError(f"{path}: not valid Cobertura XML: {exc}") from exc
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror}") from exc
    raise ReportError(f"{path}: empty coverage report")  # pragma: no cover - parser raises


def _coverage_percent(path: Path, root: ET.Element) -> float:
    valid, covered = root.get("lines-valid"), root.get("lines-covered")
    try:
        if valid is not None and covered is not None:
            total = int(valid)
            return 100.0 if total == 0 else round(100.0 * int(covered) / total, 2)
        rate = root.get("line-rate")
        if rate is not None:
            return round(100.0 * float(rate), 2)
    except ValueError as exc:
        raise ReportError(f"{path}: bad coverage figures: {exc}") from exc
    raise ReportError(f"{path}: <coverage> has neither lines-valid/lines-covered nor line-rate")
