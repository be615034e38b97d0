"""The facts of a deployment's risk (domain.risk scores them): its diff against the
revision deployed now, read from the project's mirror; the coverage and the allowed
failures of the run that built it; the environment's recent failures; the time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from conveyor.domain import risk
from conveyor.pipeline.patterns import matching_paths
from conveyor.storage import artifacts, deployments, runs
from conveyor.storage.artifacts import ArtifactRecord
from conveyor.storage.database import Session
from conveyor.storage.deployment_records import EnvironmentRecord
from conveyor.vcs import GitError, GitMirror

RECENT = 30
"""How many of the environment's last deployments the failure rate is taken over."""


async def facts(
    session: Session,
    mirror: GitMirror | None,
    env: EnvironmentRecord,
    artifact: ArtifactRecord,
    *,
    sensitive_paths: Sequence[str],
    pre_deploy: Sequence[str],
    at: datetime,
) -> risk.Facts:
    """What is known of deploying `artifact` to `env` at `at` (aware, in the
    environment's time zone)."""
    deployed = (
        await artifacts.by_digest(session, env.project_id, env.digest) if env.digest else None
    )
    files = lines = None
    sensitive: tuple[str, ...] = ()
    unknown = ""
    if mirror is not None and deployed is not None and deployed.sha and artifact.sha:
        try:
            if not (await mirror.has(deployed.sha) and await mirror.has(artifact.sha)):
                await mirror.fetch()
            changed = await mirror.diff_stat(deployed.sha, artifact.sha)
        except GitError:  # gone from the repository (a force push): the size is unknown
            changed = None
            unknown = "a commit is no longer in the repository"
        if changed is not None:
            files = len(changed)
            lines = sum(added + removed for _, added, removed in changed)
            sensitive = tuple(matching_paths(list(sensitive_paths), [p for p, _, _ in changed]))
    coverage_delta = None
    if artifact.run_id is not None and deployed is not None and deployed.run_id is not None:
        now_cov = await runs.coverage(session, artifact.run_id)
        before_cov = await runs.coverage(session, deployed.run_id)
        if now_cov is not None and before_cov is not None:
            coverage_delta = round(now_cov - before_cov, 2)
    allowed = await runs.allowed_failures(session, artifact.run_id) if artifact.run_id else []
    failed, counted = await deployments.recent_failures(session, env.id, RECENT)
    return risk.Facts(
        at=at,
        files_changed=files,
        lines_changed=lines,
        size_unknown="" if files is not None else unknown or _size_unknown(deployed, artifact),
        sensitive_files=sensitive,
        coverage_delta=coverage_delta,
        allowed_failures=tuple(allowed),
        recent_failures=failed,
        recent_deployments=counted,
        hours_to_freeze=None,
        runs_migrations=risk.runs_migrations(list(pre_deploy)),
    )


def _size_unknown(deployed: ArtifactRecord | None, artifact: ArtifactRecord) -> str:
    """Why the size of the change could not be measured ("": no deployed revision)."""
    if deployed is None:
        return ""
    if not artifact.sha:
        return "the artifact names no commit"
    if not deployed.sha:
        return "the deployed revision names no commit"
    return "the project has no repository to compare in"
