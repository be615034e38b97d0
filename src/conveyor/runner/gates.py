"""Quality gates: a verdict from report figures, with no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.pipeline.schema import Gates
from conveyor.runner.reports import JUnitSummary


@dataclass(frozen=True, slots=True)
class GateVerdict:
    gate: str
    passed: bool
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"gate": self.gate, "passed": self.passed, "message": self.message}


def judge(
    gates: Gates | None,
    junit: JUnitSummary | None,
    coverage: float | None,
    problems: dict[str, str] | None = None,
) -> list[GateVerdict]:
    """Evaluate the job's gates. `problems` says why a report is missing, per report kind."""
    if gates is None:
        return []
    problems = problems or {}
    verdicts: list[GateVerdict] = []
    if gates.coverage_min is not None:
        verdicts.append(_coverage_gate(gates.coverage_min, coverage, problems.get("coverage")))
    if gates.tests_must_pass:
        verdicts.append(_tests_gate(junit, problems.get("junit")))
    return verdicts


def _coverage_gate(minimum: float, coverage: float | None, problem: str | None) -> GateVerdict:
    if coverage is None:
        why = problem or "no coverage report"
        return GateVerdict("coverage_min", False, f"coverage gate needs a report: {why}")
    if coverage < minimum:
        return GateVerdict(
            "coverage_min", False, f"coverage {coverage:g}% is below the minimum {minimum:g}%"
        )
    return GateVerdict("coverage_min", True, f"coverage {coverage:g}% ≥ minimum {minimum:g}%")


def _tests_gate(junit: JUnitSummary | None, problem: str | None) -> GateVerdict:
    if junit is None:
        why = problem or "no JUnit report"
        return GateVerdict("tests_must_pass", False, f"tests gate needs a report: {why}")
    if junit.failed:
        names = ", ".join(junit.failed_names[:5])
        more = f" and {junit.failed - 5} more" if junit.failed > 5 else ""
        return GateVerdict(
            "tests_must_pass", False, f"{junit.failed} of {junit.total} tests failed: {names}{more}"
        )
    if junit.total == 0:
        return GateVerdict("tests_must_pass", False, "the JUnit report holds no tests")
    return GateVerdict("tests_must_pass", True, f"all {junit.passed} tests passed")
