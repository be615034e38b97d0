"""Benchmark: load, check and compile a generated pipeline of N jobs (default 1,000).

Prints one JSON object: the time of each phase (best of --repeat) and the peak memory
(tracemalloc peak of the Python heap, and the process's max RSS). Not a test: no
threshold is asserted. Run: `python bench/compile_pipeline.py [--jobs 1000]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc

from conveyor.pipeline.loader import parse_pipeline
from conveyor.pipeline.plan import compile_plan
from conveyor.pipeline.triggers import Event, EventKind


def generate(jobs: int) -> str:
    """A pipeline shaped like a large monorepo service: four stages, fan-out and fan-in,
    explicit needs, `if` rules, retries, reports and gates."""
    lines = [
        "version: 1",
        "service: big",
        "team: platform",
        "on:",
        "  push: {branches: [main, 'release/*'], paths: ['services/big/**']}",
        "  pull_request: {branches: [main]}",
        "stages: [build, test, package, deploy]",
        "defaults: {timeout: 10m, retry: {max: 1, when: [runner_lost, infra]}}",
        "jobs:",
    ]
    per_stage = max(1, jobs // 4)
    for i in range(jobs):
        stage = ("build", "test", "package", "deploy")[min(3, i // per_stage)]
        lines.append(f"  job-{i:05d}:")
        lines.append(f"    stage: {stage}")
        lines.append(f"    script: ['echo {i}', 'make target-{i}']")
        if i % 3 == 0 and i >= per_stage:
            needs = sorted({i - per_stage, (i * 7) % per_stage})
            lines.append(f"    needs: [{', '.join(f'job-{n:05d}' for n in needs)}]")
        if i % 10 == 0:
            lines.append("    if: {branch: [main, 'release/*']}")
        if stage == "test":
            lines.append("    reports: {junit: 'reports/*.xml', coverage: cov.xml}")
            lines.append("    gates: {coverage_min: 80, tests_must_pass: true}")
    return "\n".join(lines) + "\n"


def measure(text: str, repeat: int) -> dict[str, float]:
    event = Event(EventKind.PUSH, "refs/heads/main", changed=("services/big/main.go",))
    best_load = best_compile = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        loaded = parse_pipeline(text, "bench.yml")
        loaded_at = time.perf_counter()
        plan = compile_plan(loaded.spec, event)
        done = time.perf_counter()
        best_load = min(best_load, loaded_at - started)
        best_compile = min(best_compile, done - loaded_at)
    return {"load_s": best_load, "compile_s": best_compile, "planned_jobs": len(plan.jobs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    text = generate(args.jobs)
    timing = measure(text, args.repeat)
    tracemalloc.start()
    event = Event(EventKind.PUSH, "refs/heads/main", changed=("services/big/main.go",))
    compile_plan(parse_pipeline(text, "bench.yml").spec, event)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "benchmark": "compile_pipeline",
                "jobs": args.jobs,
                "file_bytes": len(text),
                "planned_jobs": timing["planned_jobs"],
                "load_and_check_s": round(timing["load_s"], 4),
                "compile_s": round(timing["compile_s"], 4),
                "total_s": round(timing["load_s"] + timing["compile_s"], 4),
                "python_heap_peak_mib": round(peak / 2**20, 1),
                "process_max_rss_mib": round(rss_kib / 1024, 1),
                "python": sys.version.split()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
