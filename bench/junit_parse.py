"""Benchmark: parse a large JUnit XML file (default 100 MB) by streaming.

Writes the file to a temporary directory, then parses it in a fresh child process and
reports the parse time and that process's peak RSS, with Python's own baseline RSS for
comparison. Prints one JSON object; nothing is asserted.
Run: `python bench/junit_parse.py [--mb 100]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pathlib import Path
from conveyor.runner.reports import parse_junit
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
summary = parse_junit([Path(sys.argv[1])])
elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"parse_s": elapsed, "peak_rss_kib": peak, "baseline_rss_kib": base,
                  "cases": summary.total, "failed": summary.failed}))
"""


def write_junit(path: Path, megabytes: int) -> int:
    """A JUnit file of about `megabytes` MB: suites of cases, 1 % failing with output."""
    target = megabytes * 1_000_000
    cases = 0
    with path.open("w") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n')
        written = 0
        suite = 0
        while written < target:
            suite += 1
            chunk = [f'<testsuite name="suite{suite}" tests="1000">\n']
            for i in range(1000):
                cases += 1
                if i % 100 == 0:
                    chunk.append(
                        f'<testcase classname="pkg.Suite{suite}" name="test_{i}" time="0.01">'
                        f'<failure message="assert 1 == 2">{"trace line " * 20}</failure>'
                        "</testcase>\n"
                    )
                else:
                    chunk.append(
                        f'<testcase classname="pkg.Suite{suite}" name="test_{i}" time="0.01"/>\n'
                    )
            chunk.append("</testsuite>\n")
            text = "".join(chunk)
            out.write(text)
            written += len(text)
        out.write("</testsuites>\n")
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conveyor-junit-") as tmp:
        path = Path(tmp) / "junit.xml"
        cases = write_junit(path, args.mb)
        size = path.stat().st_size
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
        )
    child = json.loads(done.stdout)
    print(
        json.dumps(
            {
                "benchmark": "junit_parse",
                "file_mb": round(size / 1e6, 1),
                "test_cases": cases,
                "counted_cases": child["cases"],
                "parse_s": round(child["parse_s"], 2),
                "mb_per_s": round(size / 1e6 / child["parse_s"], 1),
                "peak_rss_mib": round(child["peak_rss_kib"] / 1024, 1),
                "python_baseline_rss_mib": round(child["baseline_rss_kib"] / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
