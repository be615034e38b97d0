"""The deployment manager's rows as storage hands them out: frozen records, read once
per pass (or per request) and never written back by changing them; every change goes
through the guarded statements of storage.deployments, environments, analysis and
policy."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.storage.tables import (
    AnalysisEvaluation,
    AnalysisRun,
    Approval,
    Deployment,
    DeploymentAction,
    Environment,
    Instance,
    RevisionPin,
)
from conveyor.storage.values import record_of


@dataclass(frozen=True, slots=True)
class EnvironmentRecord:
    """An environment: its slots, split, stable revision, lease and fence."""

    id: uuid.UUID
    team_id: uuid.UUID
    project_id: uuid.UUID
    name: str
    target: str
    queue_policy: str
    port: int
    preview_port: int
    stable_slot: str
    canary_share: int
    revision: int
    digest: str | None
    runtime: dict[str, Any] | None
    warm_digest: str | None
    warm_until: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    fence: int
    changes: int
    created_at: datetime


def environment_record(row: Environment) -> EnvironmentRecord:
    return record_of(EnvironmentRecord, row)


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """A deployment (a revision of an environment) and where it is."""

    id: uuid.UUID
    team_id: uuid.UUID
    project_id: uuid.UUID
    environment_id: uuid.UUID
    number: int
    digest: str
    artifact_id: uuid.UUID
    sha: str | None
    runtime: dict[str, Any]
    strategy: dict[str, Any]
    kind: str
    rollback_of: int | None
    phase: str
    step: int
    step_started_at: datetime | None
    pause_reason: str | None
    request: str | None
    requested_by: str | None
    pre_deploy: str | None
    pre_deploy_host_id: uuid.UUID | None
    pre_deploy_result: dict[str, Any] | None
    committed_at: datetime | None
    fix: bool
    desired: dict[str, Any]
    observed: dict[str, Any]
    paused_by_user: bool
    started_by: str
    message: str
    run_id: uuid.UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    traceparent: str | None
    policy: dict[str, Any] | None
    requester: str | None
    approved_at: datetime | None
    released_at: datetime | None
    emergency: str | None
    job_id: uuid.UUID | None


def deployment_record(row: Deployment) -> DeploymentRecord:
    return record_of(DeploymentRecord, row)


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """An instance of a revision in a slot, and its process."""

    id: uuid.UUID
    environment_id: uuid.UUID
    deployment_id: uuid.UUID | None
    revision: int
    digest: str
    slot: str
    server: str
    port: int
    pid: int | None
    pid_started: str | None
    state: str
    restarts: int
    health_failures: int
    drain_started_at: datetime | None
    started_at: datetime | None
    created_at: datetime
    stopped_at: datetime | None
    host_id: uuid.UUID | None = None
    address: str | None = None
    launch: dict[str, Any] | None = None
    observed: dict[str, Any] | None = None
    observed_at: datetime | None = None


def instance_record(row: Instance) -> InstanceRecord:
    return record_of(InstanceRecord, row)


@dataclass(frozen=True, slots=True)
class PinRecord:
    """A revision pinned as bad in an environment."""

    id: uuid.UUID
    environment_id: uuid.UUID
    digest: str
    reason: str
    pinned_by: str
    created_at: datetime
    cleared_by: str | None
    cleared_at: datetime | None


def pin_record(row: RevisionPin) -> PinRecord:
    return record_of(PinRecord, row)


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """An action of an environment's driver, recorded before it is taken."""

    id: uuid.UUID
    environment_id: uuid.UUID
    deployment_id: uuid.UUID | None
    seq: int
    action: str
    params: dict[str, Any]
    fence: int
    driver: str
    done: bool
    started_at: datetime
    done_at: datetime | None


def intent_record(row: DeploymentAction) -> IntentRecord:
    return record_of(IntentRecord, row)


@dataclass(frozen=True, slots=True)
class AnalysisRunRecord:
    """An analysis run of a deployment and its standing."""

    id: uuid.UUID
    team_id: uuid.UUID
    deployment_id: uuid.UUID
    key: str
    template: str
    spec: dict[str, Any]
    duration_s: float | None
    phase: str
    failures: dict[str, Any]
    extended: int
    evaluations: int
    reason: str
    latest: list[Any]
    ended_by: str | None
    started_at: datetime
    last_at: datetime | None
    decided_at: datetime | None


def analysis_run_record(row: AnalysisRun) -> AnalysisRunRecord:
    return record_of(AnalysisRunRecord, row)


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """One evaluation of an analysis run."""

    id: uuid.UUID
    run_id: uuid.UUID
    seq: int
    at: datetime
    elapsed_s: float
    verdict: str
    judgements: list[Any]
    measurements: list[Any]


def evaluation_record(row: AnalysisEvaluation) -> EvaluationRecord:
    return record_of(EvaluationRecord, row)


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """A person's approval or rejection of a deployment."""

    id: uuid.UUID
    team_id: uuid.UUID
    deployment_id: uuid.UUID
    decision: str
    subject: str
    approver: str
    comment: str
    created_at: datetime


def approval_record(row: Approval) -> ApprovalRecord:
    return record_of(ApprovalRecord, row)
