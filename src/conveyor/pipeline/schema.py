"""The schema of `conveyor.yml` (DESIGN.md section 6), as pydantic models.

Keywords follow GitLab CI where GitLab has the same idea (`stages`, `needs`, `when`,
`retry`, `allow_failure`, `interruptible`, `cache`, `artifacts`, hidden `.template` jobs)
and Argo Rollouts for deploy strategies. Shorthands (`script: "make"`, `retry: 2`,
`needs: build`, `on: [push]`, `strategy: rolling`) are normalised by before-validators; the
JSON Schema still shows both forms. Every model forbids unknown keys, so a typo is an error
with a suggestion instead of a silently ignored setting.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
)

from conveyor.domain.failure import RETRYABLE_CLASSES, FailureClass
from conveyor.pipeline.analysis import AnalysisSection
from conveyor.pipeline.deploy import Deploy, Runtime
from conveyor.pipeline.fields import (
    ENV_NAME_PATTERN,
    Duration,
    Env,
    Glob,
    Globs,
    Labels,
    Model,
    Name,
    Script,
    as_list,
    valid_cron,
)

SUPPORTED_VERSION = 1
DEFAULT_STAGES = ("build", "test", "deploy")
DEFAULT_STAGE = "test"
DEFAULT_TIMEOUT_S = 3600.0
MAX_MATRIX_COMBINATIONS = 256
JOB_NAME_PATTERN = r"^[A-Za-z0-9.][A-Za-z0-9_.\- /]*$"


# -- triggers (`on`) --------------------------------------------------------------------


class BranchTrigger(Model):
    """A trigger with a branch filter and a path filter; both must match when given."""

    branches: Globs | None = None
    paths: Globs | None = None


class PushTrigger(BranchTrigger):
    """`on.push`: branch pushes; `branches` filters the pushed branch."""


PullRequestAction = Literal["opened", "synchronize", "reopened", "ready_for_review", "merged"]
DEFAULT_PR_ACTIONS: tuple[PullRequestAction, ...] = (
    "opened",
    "synchronize",
    "reopened",
    "ready_for_review",
)


class PullRequestTrigger(BranchTrigger):
    """`on.pull_request`: `branches` filters the target branch, `paths` the changed files,
    `types` the pull request actions (GitHub Actions' names; `merged` is the merge of the
    pull request into its target, the `pull_request.merged` event)."""

    types: (
        Annotated[
            list[PullRequestAction],
            BeforeValidator(as_list, json_schema_input_type=str | list[str]),
            Field(min_length=1),
        ]
        | None
    ) = None

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self.types) if self.types is not None else DEFAULT_PR_ACTIONS


class ScheduleEntry(Model):
    """`on.schedule[]`: a cron entry (5 fields, UTC) and the branch it runs on."""

    cron: Annotated[str, AfterValidator(valid_cron)]
    branch: str | None = None
    name: str | None = None


_EVENT_NAMES = ("push", "pull_request", "tag", "schedule", "manual")


def _on_shorthand(value: Any) -> Any:
    """`on: push` or `on: [push, tag]` mean those events with no filters."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        mapping: dict[str, Any] = {}
        for name in value:
            if name not in _EVENT_NAMES:
                raise ValueError(f"unknown event {name!r}; events are {', '.join(_EVENT_NAMES)}")
            mapping[name] = None
        value = mapping
    if isinstance(value, dict):
        value = dict(value)
        for key in ("push", "pull_request"):
            if key in value and value[key] is None:
                value[key] = {}
        if "tag" in value and value["tag"] is None:
            value["tag"] = ["*"]
        if value.get("manual", False) is None:
            value["manual"] = True
        value.setdefault("manual", False)
    return value


class On(Model):
    """When a pipeline starts. A missing event is not a trigger."""

    push: PushTrigger | None = None
    pull_request: PullRequestTrigger | None = None
    tag: Globs | None = None
    schedule: list[ScheduleEntry] | None = None
    manual: bool = True


def default_on() -> On:
    """No `on:` at all: every branch push, pull request and tag, and manual runs."""
    return On(push=PushTrigger(), pull_request=PullRequestTrigger(), tag=["*"], manual=True)


# -- job sections -----------------------------------------------------------------------


class When(StrEnum):
    """`when`: what the outcome upstream must be for the job to run."""

    ON_SUCCESS = "on_success"
    ON_FAILURE = "on_failure"
    ALWAYS = "always"
    MANUAL = "manual"


def _retry_shorthand(value: Any) -> Any:
    return {"max": value} if isinstance(value, int) and not isinstance(value, bool) else value


def _retry_classes(classes: list[FailureClass]) -> list[FailureClass]:
    for cls in classes:
        if cls not in RETRYABLE_CLASSES:
            raise ValueError(f"{cls.value!r} failures are never retried")
    return classes


class Retry(Model):
    """`retry`: how many extra attempts, and for which failure classes (all by default)."""

    max: int = Field(0, ge=0, le=10)
    when: Annotated[
        list[FailureClass],
        BeforeValidator(as_list, json_schema_input_type=str | list[str]),
        AfterValidator(_retry_classes),
    ] = Field(default_factory=lambda: sorted(RETRYABLE_CLASSES))


RetryField = Annotated[Retry, BeforeValidator(_retry_shorthand, json_schema_input_type=int | Retry)]


class Need(Model):
    """One entry of `needs`. `optional: true` drops the edge when the needed job is not in
    the plan; `artifacts: false` does not fetch its artifacts."""

    job: str
    optional: bool = False
    artifacts: bool = True


def _needs_shorthand(value: Any) -> Any:
    value = as_list(value)
    if isinstance(value, list):
        return [{"job": item} if isinstance(item, str) else item for item in value]
    return value


Needs = Annotated[
    list[Need], BeforeValidator(_needs_shorthand, json_schema_input_type=str | list[str | Need])
]


class IfCondition(Model):
    """`if`: the job is in the plan only when every given condition holds. Each condition
    is a pattern list; one match (after `!` exclusions) satisfies it."""

    branch: Globs | None = None
    tag: Globs | None = None
    event: (
        Annotated[
            list[
                Literal["push", "pull_request", "pull_request.merged", "tag", "schedule", "manual"]
            ],
            BeforeValidator(as_list, json_schema_input_type=str | list[str]),
            Field(min_length=1),
        ]
        | None
    ) = None
    paths: Globs | None = None


MatrixValue = str | int | float


def _matrix_shorthand(value: Any) -> Any:
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        out = []
        for entry in value:
            if isinstance(entry, dict):
                entry = {k: v if isinstance(v, list) else [v] for k, v in entry.items()}
            out.append(entry)
        return out
    return value


def _matrix_names(entries: list[dict[str, list[MatrixValue]]]) -> list[dict[str, list[str]]]:
    out: list[dict[str, list[str]]] = []
    for entry in entries:
        if not entry:
            raise ValueError("a matrix entry needs at least one variable")
        for name, values in entry.items():
            if not ENV_NAME_PATTERN.match(name):
                raise ValueError(f"matrix variable {name!r} is not a valid environment name")
            if not values:
                raise ValueError(f"matrix variable {name!r} has no values")
        out.append({k: [str(v) for v in vs] for k, vs in entry.items()})
    total = sum(math.prod(len(vs) for vs in entry.values()) for entry in out)
    if total > MAX_MATRIX_COMBINATIONS:
        raise ValueError(
            f"the matrix makes {total} jobs; at most {MAX_MATRIX_COMBINATIONS} are allowed"
        )
    return out


Matrix = Annotated[
    list[dict[str, list[MatrixValue]]],
    BeforeValidator(
        _matrix_shorthand,
        json_schema_input_type=dict[str, MatrixValue | list[MatrixValue]]
        | list[dict[str, MatrixValue | list[MatrixValue]]],
    ),
    AfterValidator(_matrix_names),
    Field(min_length=1),
]


class CacheKey(Model):
    """`cache.key`: the key is a sha256 over these files' contents plus the job name."""

    files: Annotated[list[Glob], Field(min_length=1)]
    prefix: str | None = None


class Cache(Model):
    """`cache`: restored before the script, saved after success."""

    key: CacheKey | None = None
    paths: Annotated[list[Glob], Field(min_length=1)]


class Artifacts(Model):
    """`artifacts`: files kept after success and handed to the jobs that need this one."""

    paths: Annotated[list[Glob], Field(min_length=1)]
    name: (
        Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$", max_length=200)] | None
    ) = None
    """The artifact's name in the store (default: the job's)."""


class Reports(Model):
    """`reports`: JUnit XML files (globs) and one Cobertura XML coverage file."""

    junit: Globs | None = None
    coverage: str | None = None


class Gates(Model):
    """`gates`: conditions on the reports that fail the job."""

    coverage_min: float | None = Field(None, ge=0, le=100)
    tests_must_pass: bool = False


class ConcurrencyPolicy(StrEnum):
    ORDERED = "ordered"
    NEWEST_WINS = "newest-wins"


class Concurrency(Model):
    """`concurrency`: one job of the group runs at a time, across runs."""

    group: Annotated[str, Field(min_length=1)]
    policy: ConcurrencyPolicy = ConcurrencyPolicy.ORDERED


# -- jobs and the pipeline --------------------------------------------------------------


class Defaults(Model):
    """`defaults`: values every job inherits unless it sets its own."""

    timeout: Duration | None = None
    retry: RetryField | None = None
    interruptible: bool | None = None
    checkout: bool | None = None
    env: Env = Field(default_factory=dict)
    before_script: Script | None = None
    after_script: Script | None = None
    labels: Labels | None = None


class Job(Model):
    stage: str | None = None
    needs: Needs | None = None
    before_script: Script | None = None
    script: Script | None = None
    after_script: Script | None = None
    env: Env = Field(default_factory=dict)
    timeout: Duration | None = None
    retry: RetryField | None = None
    when: When = When.ON_SUCCESS
    allow_failure: bool = False
    if_: IfCondition | None = Field(None, alias="if")
    matrix: Matrix | None = None
    cache: Cache | None = None
    artifacts: Artifacts | None = None
    reports: Reports | None = None
    gates: Gates | None = None
    interruptible: bool | None = None
    checkout: bool | None = None
    """False: the job starts in an empty workspace, without the repository (GitLab's
    `GIT_STRATEGY: none`): for jobs that only deploy, notify or call an API."""
    concurrency: Concurrency | None = None
    required_for_merge: bool | Name = False
    """true: a check this pipeline's team requires before a merge; a team's name: that
    team's check (a consumer team's functional tests of this service). Each team's
    required jobs report one commit status, `conveyor/<team>/required`."""
    deploy: Deploy | None = None
    labels: Labels | None = None
    # "A job needs a script or a deploy" is checked by lint, so that it is reported even
    # when the same job has other errors.


def _version(value: Any) -> Any:
    if value != SUPPORTED_VERSION and value != str(SUPPORTED_VERSION):
        raise ValueError(
            f"unsupported version {value!r}; this Conveyor reads version {SUPPORTED_VERSION}"
        )
    return SUPPORTED_VERSION


def _jobs_without_templates(value: Any) -> Any:
    """Keys starting with `.` are templates for YAML anchors, as in GitLab: not jobs."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if not (isinstance(k, str) and k.startswith("."))}
    return value


def _some_jobs(jobs: dict[str, Job]) -> dict[str, Job]:
    if not jobs:
        raise ValueError("a pipeline needs at least one job ('.name' keys are templates)")
    return jobs


JobName = Annotated[str, Field(pattern=JOB_NAME_PATTERN, max_length=100)]


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (like Europe/Berlin)") from None
    return value


class RiskSection(Model):
    """What makes a change to this service risky (docs/policy.md, "Risk score")."""

    sensitive_paths: Globs | None = None
    """Changed files matching these (`migrations/**`, `**/payments/**`) raise the score."""


RoleName = Literal["viewer", "developer", "maintainer", "owner", "admin"]


class EnvironmentRules(Model):
    """An environment's protection rules as the service declares them (docs/policy.md);
    a project maintainer's settings on the server win over them, field by field."""

    required_approvals: Annotated[int, Field(ge=0, le=10)] | None = None
    approver_role: RoleName | None = None
    allowed_branches: Globs | None = None
    wait_timer: Duration | None = None
    approval_timeout: Duration | None = None
    on_timeout: Literal["reject", "approve"] | None = None
    auto_approve_below: Annotated[int, Field(ge=0, le=100)] | None = None
    emergency_role: RoleName | None = None
    timezone: Annotated[str, AfterValidator(_timezone)] | None = None

    def declared(self) -> dict[str, Any]:
        """The fields it sets, as domain.policy.parse reads them."""
        return self.model_dump(exclude_none=True)


def required_team(value: bool | str, own: str) -> str | None:
    """The team a job's `required_for_merge` names (None: not required)."""
    if value is True:
        return own
    return value or None


class MergeSection(Model):
    """What a pull request needs before it merges (docs/policy.md, "Required checks")."""

    required_teams: Annotated[list[Name], Field(min_length=1)] | None = None
    """The teams whose required jobs must pass (default: every team a job is required
    for); a project maintainer's setting on the server wins."""


class PipelineSpec(Model):
    """A whole `conveyor.yml`."""

    version: Annotated[int, BeforeValidator(_version, json_schema_input_type=Literal[1])] = 1
    service: Name
    team: Name
    on: Annotated[
        On, BeforeValidator(_on_shorthand, json_schema_input_type=str | list[str] | On)
    ] = Field(default_factory=default_on)
    stages: Annotated[list[Name], Field(min_length=1)] | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    env: Env = Field(default_factory=dict)
    jobs: Annotated[
        dict[JobName, Job],
        BeforeValidator(_jobs_without_templates, json_schema_input_type=dict[str, Job]),
        AfterValidator(_some_jobs),
    ]
    runtime: Runtime | None = None
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    risk: RiskSection = Field(default_factory=RiskSection)
    environments: dict[Name, EnvironmentRules] = Field(default_factory=dict)
    merge: MergeSection = Field(default_factory=MergeSection)

    @property
    def required_teams(self) -> tuple[str, ...]:
        """The teams whose required jobs a merge needs: `merge.required_teams`, else
        every team a job is required for, in file order."""
        if self.merge.required_teams:
            return tuple(self.merge.required_teams)
        teams = [required_team(job.required_for_merge, self.team) for job in self.jobs.values()]
        return tuple(dict.fromkeys(t for t in teams if t is not None))

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(self.stages) if self.stages else DEFAULT_STAGES
