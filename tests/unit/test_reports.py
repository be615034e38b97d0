from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.pipeline.schema import Gates
from conveyor.runner.gates import judge
from conveyor.runner.reports import JUnitSummary, ReportError, parse_cobertura, parse_junit

JUNIT = """<?xml version="1.0"?>
<testsuites>
  <testsuite name="unit">
    <properties><property name="a" value="b"/></properties>
    <testcase classname="t.A" name="ok"/>
    <testcase classname="t.A" name="bad"><failure message="boom">trace</failure></testcase>
    <testcase classname="t.B" name="err"><error message="x"/></testcase>
    <testcase name="skip"><skipped/></testcase>
    <testsuite name="nested"><testcase classname="t.C" name="deep"/></testsuite>
  </testsuite>
</testsuites>
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_junit_counts_and_failed_names(tmp_path):
    s = parse_junit([write(tmp_path, "a.xml", JUNIT)])
    assert (s.passed, s.failed, s.skipped, s.total) == (2, 2, 1, 5)
    assert s.failed_names == ["t.A.bad", "t.B.err"]


def test_junit_across_files_and_bare_testsuite(tmp_path):
    other = write(tmp_path, "b.xml", '<testsuite><testcase name="x"/></testsuite>')
    s = parse_junit([write(tmp_path, "a.xml", JUNIT), other])
    assert s.total == 6 and s.files == 2


def test_junit_namespaced(tmp_path):
    text = (
        '<t:testsuite xmlns:t="urn:x"><t:testcase name="a"><t:failure/></t:testcase></t:testsuite>'
    )
    assert parse_junit([write(tmp_path, "n.xml", text)]).failed == 1


def test_bad_junit(tmp_path):
    with pytest.raises(ReportError, match="not valid JUnit XML"):
        parse_junit([write(tmp_path, "bad.xml", "<testsuite><testcase>")])
    with pytest.raises(ReportError, match="cannot read"):
        parse_junit([tmp_path / "missing.xml"])


def test_entity_expansion_bomb_is_refused(tmp_path):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + "".join(
            f'<!ENTITY a{i} "{("&a" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
            for i in range(1, 10)
        )
        + ']><testsuite><testcase name="&a9;"/></testsuite>'
    )
    with pytest.raises(ReportError):
        parse_junit([write(tmp_path, "bomb.xml", bomb)])


@pytest.mark.parametrize(
    ("attrs", "percent"),
    [
        ('lines-valid="200" lines-covered="150"', 75.0),
        ('line-rate="0.8123"', 81.23),
        ('lines-valid="0" lines-covered="0"', 100.0),
    ],
)
def test_cobertura(tmp_path, attrs, percent):
    path = write(tmp_path, "c.xml", f"<coverage {attrs}><packages/></coverage>")
    assert parse_cobertura(path) == percent


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<report/>", "not a Cobertura report"),
        ("<coverage/>", "neither"),
        ('<coverage line-rate="x"/>', "bad coverage figures"),
        ("<coverage", "not valid"),
    ],
)
def test_bad_cobertura(tmp_path, text, message):
    with pytest.raises(ReportError, match=message):
        parse_cobertura(write(tmp_path, "c.xml", text))


def test_gates_give_both_numbers():
    verdicts = judge(Gates(coverage_min=80, tests_must_pass=True), JUnitSummary(passed=3), 72.5)
    assert [(v.gate, v.passed, v.message) for v in verdicts] == [
        ("coverage_min", False, "coverage 72.5% is below the minimum 80%"),
        ("tests_must_pass", True, "all 3 tests passed"),
    ]


def test_tests_gate_names_failures():
    junit = JUnitSummary(passed=1, failed=7, failed_names=[f"t{i}" for i in range(7)])
    (verdict,) = judge(Gates(tests_must_pass=True), junit, None)
    assert verdict.message == "7 of 8 tests failed: t0, t1, t2, t3, t4 and 2 more"


def test_gates_without_reports_fail_with_the_reason():
    verdicts = judge(
        Gates(coverage_min=50, tests_must_pass=True),
        None,
        None,
        {"coverage": "reports/c.xml was not written"},
    )
    assert [v.message for v in verdicts] == [
        "coverage gate needs a report: reports/c.xml was not written",
        "tests gate needs a report: no JUnit report",
    ]
    assert judge(None, None, None) == []
    (empty,) = judge(Gates(tests_must_pass=True), JUnitSummary(), None)
    assert not empty.passed and "no tests" in empty.message
