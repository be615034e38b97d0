"""Commit statuses back to the provider, through a durable outbox.

A reconciler on every replica compares each active run of a reporting project with what
was last queued for it (`runs.status_reported`) and, in the same transaction, queues a
report in `status_outbox` whenever the run's state changed. A sender posts the queued
reports to the provider, retrying with exponential backoff. Nothing is added to the
path of a job: the reports follow the runs.

Each run reports two contexts:
- `conveyor/<team>/<project>`: the whole run;
- `conveyor/<team>/required`, one per required team: the jobs `required_for_merge` names
  for that team (docs/policy.md, "Required checks"), the checks a branch protection rule
  can require. A required team none of whose jobs ran reports a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from conveyor.domain.clock import utcnow
from conveyor.domain.status import JobOutcome, JobStatus, RunStatus, run_status
from conveyor.storage import jobs, statuses
from conveyor.storage.database import Database
from conveyor.storage.projects import ProjectRecord, TeamRecord
from conveyor.storage.runs import RunRecord
from conveyor.storage.secrets import SecretBox
from conveyor.storage.statuses import Report

log = logging.getLogger("conveyor.statuses")
STATUS_TOKEN = "status-token"
FINAL = frozenset({"success", "failure", "canceled", "skipped"})
MAX_ATTEMPTS = 12
STATE = {
    RunStatus.QUEUED: "pending",
    RunStatus.RUNNING: "running",
    RunStatus.SUCCESS: "success",
    RunStatus.FAILED: "failure",
    RunStatus.CANCELED: "canceled",
    RunStatus.SKIPPED: "skipped",
}
"""Conveyor's report states; each provider maps them to its own words below."""

GITHUB_STATES = {
    "pending": "pending",
    "running": "pending",
    "success": "success",
    "failure": "failure",
    "canceled": "error",
    "skipped": "success",
}
"""GitHub's commit status states; Gitea took the same API."""
PROVIDER_STATE: dict[str, dict[str, str]] = {
    "github": GITHUB_STATES,
    "gitea": GITHUB_STATES,
    "gitlab": {
        "pending": "pending",
        "running": "running",
        "success": "success",
        "failure": "failed",
        "canceled": "canceled",
        "skipped": "skipped",
    },
    "bitbucket": {
        "pending": "INPROGRESS",
        "running": "INPROGRESS",
        "success": "SUCCESSFUL",
        "failure": "FAILED",
        "canceled": "STOPPED",
        "skipped": "SUCCESSFUL",
    },
}
BITBUCKET_DATA_CENTER_STATES = PROVIDER_STATE["bitbucket"] | {"canceled": "CANCELLED"}
"""Data Center's build states: Cloud's, with CANCELLED where Cloud says STOPPED."""


def is_bitbucket_data_center(api: str) -> bool:
    """Bitbucket Data Center's REST API lives under `/rest/api/` on the server's own host;
    Cloud's is `https://api.bitbucket.org/2.0`."""
    return "/rest/api/" in urllib.parse.urlsplit(api).path.rstrip("/") + "/"


@dataclass(frozen=True)
class StatusRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


def status_request(
    provider: str, api: str, repo: str, token: str, report: Report, target_url: str
) -> StatusRequest:
    """The HTTP request that reports one status, in the provider's documented format."""
    state = PROVIDER_STATE[provider][report.state]
    base = api.rstrip("/")
    if provider in ("github", "gitea"):  # Gitea's statuses API is GitHub's, but for auth
        headers = (
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
            if provider == "github"
            else {"Authorization": f"token {token}"}
        )
        return StatusRequest(
            "POST",
            f"{base}/repos/{repo}/statuses/{report.sha}",
            headers,
            {
                "state": state,
                "target_url": target_url,
                "description": report.description,
                "context": report.context,
            },
        )
    if provider == "gitlab":
        project = urllib.parse.quote(repo, safe="")
        return StatusRequest(
            "POST",
            f"{base}/projects/{project}/statuses/{report.sha}",
            {"PRIVATE-TOKEN": token},
            {
                "state": state,
                "ref": report.ref.removeprefix("refs/heads/").removeprefix("refs/tags/"),
                "name": report.context,
                "target_url": target_url,
                "description": report.description,
            },
        )
    if provider == "bitbucket" and is_bitbucket_data_center(base):
        project_key, _, slug = repo.partition("/")
        quoted = [urllib.parse.quote(part, safe="") for part in (project_key, slug)]
        return StatusRequest(
            "POST",
            f"{base}/projects/{quoted[0]}/repos/{quoted[1]}/commits/{report.sha}/builds",
            {"Authorization": f"Bearer {token}"},
            {
                "key": report.context[-255:],
                "state": BITBUCKET_DATA_CENTER_STATES[report.state],
                "name": report.context,
                "url": target_url,
                "description": report.description,
                "ref": report.ref,
            },
        )
    if provider == "bitbucket":
        key = report.context if len(report.context) <= 40 else report.context[-40:]
        return StatusRequest(
            "POST",
            f"{base}/repositories/{repo}/commit/{report.sha}/statuses/build",
            {"Authorization": f"Bearer {token}"},
            {
                "key": key,
                "state": state,
                "name": report.context,
                "url": target_url,
                "description": report.description,
            },
        )
    raise ValueError(f"no commit statuses for provider {provider!r}")


BLOCKED = "blocked"


@dataclass(frozen=True)
class Check:
    """One required team's commit status for a run."""

    team: str
    state: str
    description: str


def required_checks(
    run: RunRecord,
    team: TeamRecord,
    project: ProjectRecord,
    states: list[jobs.JobState],
    outcomes: list[tuple[str, JobOutcome]],
) -> list[Check]:
    """One check per required team (the project's setting, else the run's conveyor.yml,
    else every team a job is required for): its required jobs' state, or a failure
    when none of them ran in this pipeline."""
    by_team: dict[str, list[tuple[str, JobOutcome]]] = {}
    for outcome, job in zip(outcomes, states, strict=True):
        owner = job.spec.get("required_by") or (
            team.name if job.spec.get("required_for_merge") else None
        )
        if owner is not None:
            by_team.setdefault(str(owner), []).append(outcome)
    teams = project.required_teams or run.required_teams or list(by_team)
    checks = []
    for name in teams:
        found = by_team.get(name, [])
        if not found:
            why = f"no job required by team {name} ran in this pipeline"
            checks.append(Check(name, "failure", why))
        else:
            checks.append(Check(name, STATE[run_status(o for _, o in found)], _summary(found)))
    return checks


def _gate_code(checks: list[Check]) -> str:
    """The required checks as the run's recorded state: their common end once all have
    ended (so the run counts as reported in full), else a digest of each one's state."""
    if not checks:
        return "skipped"
    states = [c.state for c in checks]
    if all(state in FINAL for state in states):
        for worst in ("failure", "canceled", "success"):
            if worst in states:
                return worst
        return "skipped"
    text = ",".join(f"{c.team}={c.state}" for c in checks)
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _summary(outcomes: list[tuple[str, JobOutcome]]) -> str:
    counts: dict[str, int] = {}
    for _, outcome in outcomes:
        counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))[:140]


class Statuses:
    """The reconciler and the sender; both loop on every replica."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        public_url: str,
        poll_s: float = 1.0,
        backoff_s: float = 5.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.public_url = public_url.rstrip("/")
        self.poll_s = poll_s
        self.backoff_s = backoff_s
        self.client = client or httpx.AsyncClient(timeout=10.0)

    async def work(self) -> None:
        while True:
            try:
                await self.reconcile()
                await self.send_due()
            except Exception:  # pragma: no cover - logged; the next pass retries
                log.exception("commit status pass failed")
            await asyncio.sleep(self.poll_s)

    async def reconcile(self) -> int:
        """Queue a report for every active run whose state changed; returns how many."""
        queued = 0
        finished = [f"{a}|{b}" for a in FINAL for b in FINAL]
        since = utcnow() - timedelta(days=2)
        async with self.db.transaction() as session:
            rows = await statuses.runs_to_reconcile(
                session, finished, since, skip_locked=not self.db.is_sqlite
            )
            for run, project, team in rows:
                reports = self._reports(run, team, project, await jobs.run_jobs(session, run.id))
                if reports is None:
                    continue
                state, due = reports
                for report in due:
                    statuses.queue_report(session, report)
                queued += len(due)
                await statuses.mark_reported(session, run.id, state)
        return queued

    def _reports(
        self, run: RunRecord, team: TeamRecord, project: ProjectRecord, states: list[jobs.JobState]
    ) -> tuple[str, list[Report]] | None:
        """The run's state to record (`overall|required[|blocked]`) and the reports it
        makes due; None when nothing changed since the last."""
        outcomes = [
            (j.name, JobOutcome(j.status, bool(j.spec.get("allow_failure", False)))) for j in states
        ]
        checks = required_checks(run, team, project, states, outcomes)
        overall = STATE[run_status(o for _, o in outcomes)]
        gate = _gate_code(checks)
        blocked = [name for name, o in outcomes if o.status is JobStatus.BLOCKED]
        now_state = f"{overall}|{gate}" + (f"|{BLOCKED}" if blocked else "")
        if run.status_reported == now_state:
            return None
        old_overall, _, rest = (run.status_reported or "|").partition("|")
        old_gate, _, was_blocked = rest.partition("|")
        due = []
        if overall != old_overall or bool(blocked) != bool(was_blocked):
            summary = _summary(outcomes)
            if blocked:  # the commit page says why the pipeline waits
                summary = f"{', '.join(blocked)} waits for approval; {summary}"[:140]
            due.append(self._report(run, team, project, overall, summary))
        if checks and gate != old_gate:
            for check in checks:
                context = f"conveyor/{check.team}/required"
                due.append(
                    self._report(run, team, project, check.state, check.description, context)
                )
        return now_state, due

    @staticmethod
    def _report(
        run: RunRecord,
        team: TeamRecord,
        project: ProjectRecord,
        state: str,
        description: str,
        context: str | None = None,
    ) -> Report:
        return Report(
            team_id=run.team_id,
            project_id=project.id,
            run_id=run.id,
            sha=run.sha,
            ref=run.ref,
            context=context or f"conveyor/{team.name}/{project.name}",
            state=state,
            description=description,
        )

    async def send_due(self, limit: int = 50) -> int:
        """Send the reports that are due, oldest first; returns how many were sent."""
        async with self.db.transaction() as session:
            ids = await statuses.claim_due(session, limit, skip_locked=not self.db.is_sqlite)
        sent = 0
        for report_id in ids:
            sent += await self._send(report_id)
        return sent

    async def _send(self, report_id: uuid.UUID) -> int:
        async with self.db.transaction() as session:
            found = await statuses.with_project(session, report_id)
        if found is None or not found[1].status_api:
            return 0
        report, project = found
        assert project.status_api is not None
        token = (
            self.box.open_blob(project.id, STATUS_TOKEN, project.status_token)
            if project.status_token
            else ""
        )
        request = status_request(
            project.provider,
            project.status_api,
            project.status_repo or "",
            token,
            report,
            f"{self.public_url}/api/v1/runs/{report.run_id}",
        )
        error = ""
        try:
            response = await self.client.request(
                request.method, request.url, headers=request.headers, json=request.body
            )
            if response.status_code >= 300:
                error = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        async with self.db.transaction() as session:
            await statuses.record_send(
                session, report_id, error, give_up_after=MAX_ATTEMPTS, delay_for=self._delay
            )
        if not error:
            return 1
        log.warning("status %s to %s: %s", report_id, request.url, error)
        return 0

    def _delay(self, attempts: int) -> float:
        """Exponential backoff, at most 10 minutes."""
        return float(min(self.backoff_s * 2 ** (attempts - 1), 600.0))
