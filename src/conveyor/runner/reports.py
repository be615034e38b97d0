"""Test and coverage reports: JUnit XML and Cobertura XML, parsed by streaming.

JUnit files are read with expat's callbacks, building no tree, so memory stays flat
however large the file; a Cobertura file is read only up to its root element. Parsing
uses the standard library's expat, which refuses entity-expansion bombs (expat ≥ 2.4).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

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
        _JUnitCounter(summary).parse(path)
    return summary


class _JUnitCounter:
    """Counts test cases from expat's start/end callbacks: no element tree is built, so
    memory does not grow with the file."""

    def __init__(self, summary: JUnitSummary) -> None:
        self.summary = summary
        self.case: dict[str, str] | None = None
        self.outcome = "passed"

    def parse(self, path: Path) -> None:
        parser = expat.ParserCreate()
        parser.buffer_text = True
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        try:
            with path.open("rb") as handle:
                parser.ParseFile(handle)
        except expat.ExpatError as exc:
            raise ReportError(f"{path}: not valid JUnit XML: {exc}") from exc
        except OSError as exc:
            raise ReportError(f"{path}: cannot read: {exc.strerror}") from exc

    # Tags may carry a namespace prefix (`t:testcase`); expat runs without namespace
    # processing, so the local name is what follows the last colon.
    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "testcase" or tag.endswith(":testcase"):
            self.case = attrs
            self.outcome = "passed"
        elif self.case is not None:
            name = tag.rpartition(":")[2]
            if name in ("failure", "error"):
                self.outcome = "failed"
            elif name == "skipped" and self.outcome == "passed":
                self.outcome = "skipped"

    def _end(self, tag: str) -> None:
        if self.case is not None and (tag == "testcase" or tag.endswith(":testcase")):
            _count(self.summary, self.case, self.outcome)
            self.case = None


def _count(summary: JUnitSummary, case: dict[str, str], outcome: str) -> None:
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
