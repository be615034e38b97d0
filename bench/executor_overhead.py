"""Benchmark: the local executor's own overhead per trivial job.

Runs N independent jobs whose script is `true` through Conveyor's local run (workspace
copy, environment, bash, log capture, masking, status bookkeeping) at --parallel 1 and
--parallel 4, and compares with a plain shell loop that starts the same `bash -c true`
N times. Overhead per job = (Conveyor's time - the loop's time) / N. Prints one JSON
object; nothing is asserted. Run: `python bench/executor_overhead.py [--jobs 200]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

from conveyor.domain.status import JobStatus
from conveyor.pipeline.loader import load_pipeline
from conveyor.pipeline.plan import compile_plan
from conveyor.pipeline.triggers import Event, EventKind
from conveyor.runner.attempt import RunOptions
from conveyor.runner.local import LocalRun


class Quiet:
    def job_log(self, job: str, line: str) -> None:
        pass

    def job_status(self, job: str, status: JobStatus, detail: str) -> None:
        pass


def conveyor_run(service: Path, parallel: int) -> float:
    plan = compile_plan(
        load_pipeline(service / "conveyor.yml").spec, Event(EventKind.PUSH, "refs/heads/main")
    )
    options = RunOptions(
        source_dir=service, data_dir=service.parent / f"data-{parallel}", parallel=parallel
    )
    started = time.perf_counter()
    result = asyncio.run(LocalRun(plan, options, Quiet()).execute())
    elapsed = time.perf_counter() - started
    if result.status.value != "success":
        raise SystemExit(f"benchmark run failed: {result.status}")
    return elapsed


def shell_loop(jobs: int, parallel: int) -> float:
    script = f"seq {jobs} | xargs -P {parallel} -I{{}} bash --noprofile --norc -c true"
    started = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        service = Path(tmp) / "svc"
        service.mkdir()
        (service / "app.py").write_text("print('hello')\n")
        jobs = "\n".join(f"  j{i}: {{script: 'true', needs: []}}" for i in range(args.jobs))
        (service / "conveyor.yml").write_text(f"version: 1\nservice: b\nteam: b\njobs:\n{jobs}\n")
        out: dict[str, object] = {"benchmark": "executor_overhead", "jobs": args.jobs}
        for parallel in (1, 4):
            ours = conveyor_run(service, parallel)
            loop = shell_loop(args.jobs, parallel)
            out[f"parallel_{parallel}"] = {
                "conveyor_s": round(ours, 3),
                "conveyor_jobs_per_s": round(args.jobs / ours, 1),
                "shell_loop_s": round(loop, 3),
                "shell_loop_jobs_per_s": round(args.jobs / loop, 1),
                "overhead_per_job_ms": round(1000 * (ours - loop) / args.jobs, 2),
                "ratio_to_shell_loop": round(ours / loop, 2),
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
