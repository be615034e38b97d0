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
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from conveyor.domain.failure import RETRYABLE_CLASSES, FailureClass
from conveyor.pipeline.durations import parse_duration
from conveyor.pipeline.patterns import check_cron, check_glob

SUPPORTED_VERSION = 1
DEFAULT_STAGES = ("build", "test", "deploy")
DEFAULT_STAGE = "test"
DEFAULT_TIMEOUT_S = 3600.0
MAX_MATRIX_COMBINATIONS = 256
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
JOB_NAME_PATTERN = r"^[A-Za-z0-9.][A-Za-z0-9_.\- /]*$"
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Model(BaseModel):
    """Base for every section: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- small value types -----------------------------------------------------------------


def _as_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a string or a list of strings, got {value!r}")
    return value


def _valid_glob(pattern: str) -> str:
    problem = check_glob(pattern)
    if problem:
        raise ValueError(problem)
    return pattern


def _valid_cron(expression: str) -> str:
    problem = check_cron(expression)
    if problem:
        raise ValueError(problem)
    return expression


def _valid_env(env: dict[str, str]) -> dict[str, str]:
    for name in env:
        if not ENV_NAME_PATTERN.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
        if name.startswith("CONVEYOR_"):
            raise ValueError(f"{name!r}: the CONVEYOR_ prefix is reserved for Conveyor")
    return env


def _env_values(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif isinstance(item, int | float):
            out[key] = str(item)
        else:
            out[key] = item
    return out


StrList = Annotated[list[str], BeforeValidator(_as_list, json_schema_input_type=str | list[str])]
Glob = Annotated[str, AfterValidator(_valid_glob)]
Globs = Annotated[
    list[Glob],
    BeforeValidator(_as_list, json_schema_input_type=str | list[str]),
    Field(min_length=1),
]
Script = Annotated[
    list[Annotated[str, Field(min_length=1)]],
    BeforeValidator(_as_list, json_schema_input_type=str | list[str]),
]
Duration = Annotated[
    float,
    BeforeValidator(parse_duration, json_schema_input_type=str | float),
]
Env = Annotated[
    dict[str, str],
    BeforeValidator(_env_values, json_schema_input_type=dict[str, str | int | float | bool]),
    AfterValidator(_valid_env),
]
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
Labels = Annotated[
    list[Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]],
    BeforeValidator(_as_list, json_schema_input_type=str | list[str]),
]
"""`labels`: every label a runner must have to take the job (GitLab calls them tags)."""


# -- triggers (`on`) --------------------------------------------------------------------


class BranchTrigger(Model):
    """A trigger with a branch filter and a path filter; both must match when given."""

    branches: Globs | None = None
    paths: Globs | None = None


class PushTrigger(BranchTrigger):
    """`on.push`: branch pushes; `branches` filters the pushed branch."""


class PullRequestTrigger(BranchTrigger):
    """`on.pull_request`: `branches` filters the target branch, `paths` the changed files."""


class ScheduleEntry(Model):
    """`on.schedule[]`: a cron entry (5 fields, UTC) and the branch it runs on."""

    cron: Annotated[str, AfterValidator(_valid_cron)]
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
        BeforeValidator(_as_list, json_schema_input_type=str | list[str]),
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
    value = _as_list(value)
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
            list[Literal["push", "pull_request", "tag", "schedule", "manual"]],
            BeforeValidator(_as_list, json_schema_input_type=str | list[str]),
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
    name: str | None = None


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


# -- deploy -----------------------------------------------------------------------------


def _valid_amount(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be 0 or more")
        return value
    if not re.fullmatch(r"\d{1,3}%", value) or int(value[:-1]) > 100:
        raise ValueError(f"expected a count or a percentage like '25%', got {value!r}")
    return value


Amount = Annotated[int | str, AfterValidator(_valid_amount)]


class Rolling(Model):
    max_surge: Amount = 1
    max_unavailable: Amount = 0


class BlueGreen(Model):
    scale_down_delay: Duration = 30.0
    auto_promote: bool = False
    preview_port: int | None = Field(None, ge=1, le=65535)


UNTIL_PROMOTED = "until-promoted"


def _pause(value: Any) -> Any:
    """`pause: 2m`, `pause: {duration: 2m}`, or `pause: {}` (wait until promoted, as in
    Argo Rollouts)."""
    if value is None or value == UNTIL_PROMOTED:
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"duration"}
        if unknown:
            raise ValueError(f"a pause takes only `duration`, not {sorted(unknown)}")
        return parse_duration(value["duration"]) if "duration" in value else UNTIL_PROMOTED
    return parse_duration(value)


class CanaryStep(Model):
    """One canary step: exactly one of `weight`, `pause` or `analysis`."""

    weight: float | None = Field(None, ge=0, le=100)
    pause: Annotated[
        float | Literal["until-promoted"] | None,
        BeforeValidator(_pause, json_schema_input_type=str | float | dict[str, Any]),
    ] = None
    analysis: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, value: Any) -> Any:
        if isinstance(value, dict) and len(value) != 1:
            raise ValueError("a canary step has exactly one of: weight, pause, analysis")
        return value


class Canary(Model):
    steps: Annotated[list[CanaryStep], Field(min_length=1)]


def _strategy_shorthand(value: Any) -> Any:
    if value in ("rolling", "blue-green", "blue_green"):
        return {value.replace("_", "-"): {}}
    if value == "canary":
        raise ValueError("a canary strategy needs steps: `strategy: {canary: {steps: [...]}}`")
    if isinstance(value, dict):
        value = {k.replace("_", "-") if isinstance(k, str) else k: v for k, v in value.items()}
        value = {k: ({} if v is None else v) for k, v in value.items()}
        if len(value) != 1:
            raise ValueError("choose exactly one strategy: rolling, blue-green or canary")
    return value


class Strategy(Model):
    rolling: Rolling | None = None
    blue_green: BlueGreen | None = Field(None, alias="blue-green")
    canary: Canary | None = None


class Deploy(Model):
    """`deploy`: accepted and validated now; executed by the deployment manager."""

    environment: Name
    strategy: Annotated[
        Strategy,
        BeforeValidator(
            _strategy_shorthand,
            json_schema_input_type=Literal["rolling", "blue-green"] | Strategy,
        ),
    ] = Field(default_factory=lambda: Strategy(rolling=Rolling()))


# -- jobs and the pipeline --------------------------------------------------------------


class Defaults(Model):
    """`defaults`: values every job inherits unless it sets its own."""

    timeout: Duration | None = None
    retry: RetryField | None = None
    interruptible: bool | None = None
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
    concurrency: Concurrency | None = None
    required_for_merge: bool = False
    deploy: Deploy | None = None
    labels: Labels | None = None
    # "A job needs a script or a deploy" is checked by lint, so that it is reported even
    # when the same job has other errors.


class Health(Model):
    path: Annotated[str, Field(pattern=r"^/")] = "/healthz"
    interval: Duration = 1.0
    timeout: Duration = 2.0


class Runtime(Model):
    """`runtime`: how to start the service; `$PORT` is the port it must listen on."""

    command: Annotated[str, Field(min_length=1)]
    replicas: int = Field(1, ge=1, le=100)
    health: Health = Field(default_factory=Health)
    drain: Duration = 10.0
    env: Env = Field(default_factory=dict)

    @model_validator(mode="after")
    def _uses_port(self) -> Runtime:
        if "$PORT" not in self.command and "${PORT}" not in self.command:
            raise ValueError("runtime.command must listen on $PORT, e.g. `serve --port $PORT`")
        return self


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

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(self.stages) if self.stages else DEFAULT_STAGES
