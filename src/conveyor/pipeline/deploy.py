"""The `deploy` and `runtime` sections of `conveyor.yml`: strategies in the words of Argo
Rollouts (rolling, blue-green, canary steps of weight, pause and analysis), and how to
start the service. Validated now; executed by the deployment manager."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from conveyor.pipeline.analysis import AnalysisRun
from conveyor.pipeline.durations import parse_duration
from conveyor.pipeline.fields import Duration, Env, Model, Name, Size
from conveyor.pipeline.units import LabelKey


def _valid_amount(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be 0 or more")
        return value
    if not re.fullmatch(r"\d{1,3}%", value) or int(value[:-1]) > 100:
        raise ValueError(f"expected a count or a percentage like '25%', got {value!r}")
    return value


Amount = Annotated[int | str, AfterValidator(_valid_amount)]


MAX_SURGE = 1
MAX_UNAVAILABLE = 0
SCALE_DOWN_DELAY_S = 30.0
"""How long the previous stable revision stays warm after a promotion (a rollback within
it is a traffic switch)."""


class Rolling(Model):
    max_surge: Amount = MAX_SURGE
    max_unavailable: Amount = MAX_UNAVAILABLE


class BlueGreen(Model):
    scale_down_delay: Duration = SCALE_DOWN_DELAY_S
    auto_promote: bool = False
    preview_port: int | None = Field(None, ge=1, le=65535)
    pre_promotion: AnalysisRun | None = None
    """An analysis of the preview before any traffic moves to it (Argo Rollouts'
    prePromotionAnalysis); `deploy.bake` judges it after the switch."""


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
    """One canary step: exactly one of `weight`, `pause` or `analysis`. An analysis step
    names a template of the `analysis` section and may say how long it judges
    (`{analysis: http-health, for: 60s}`); `analysis: {}` waits for `promote`."""

    weight: float | None = Field(None, ge=0, le=100)
    pause: Annotated[
        float | Literal["until-promoted"] | None,
        BeforeValidator(_pause, json_schema_input_type=str | float | dict[str, Any]),
    ] = None
    analysis: Name | dict[str, Any] | None = None
    for_: Duration | None = Field(None, alias="for")

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, value: Any) -> Any:
        if isinstance(value, dict):
            kinds = [k for k in value if k != "for"]
            if len(kinds) != 1:
                raise ValueError("a canary step has exactly one of: weight, pause, analysis")
            if "for" in value and kinds != ["analysis"]:
                raise ValueError("`for` goes with an analysis step: {analysis: NAME, for: 60s}")
        return value


class Canary(Model):
    steps: Annotated[list[CanaryStep], Field(min_length=1)]
    background_analysis: Name | None = None
    """A template judged through every step, from the first weight to promotion."""


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
    bake: AnalysisRun | None = None
    """An analysis that keeps judging after promotion, while the old revision is warm."""


class Health(Model):
    path: Annotated[str, Field(pattern=r"^/")] = "/healthz"
    interval: Duration = 1.0
    timeout: Duration = 2.0
    start_period: Duration = 10.0
    """How long a new instance may take to answer its health path before failures count."""
    failures: int = Field(3, ge=1, le=100)
    """Consecutive failed checks that make an instance unhealthy: a canary's instance
    that is unhealthy, or crashes more than `max_restarts` times, aborts the deployment."""
    max_restarts: int = Field(3, ge=0, le=100)


def _command(value: Any) -> Any:
    """`- ./migrate.sh` is `- {command: ./migrate.sh}`."""
    return {"command": value} if isinstance(value, str) else value


class PreDeploy(Model):
    """A check run once per deployment before the new revision starts: a migration, a
    configuration check. It fails on a non-zero exit or when its timeout passes."""

    command: Annotated[str, Field(min_length=1)]
    timeout: Duration = 60.0


class Placement(Model):
    """`runtime.placement`: which hosts may run the service's instances (every label
    must match a host's), and how they spread: over the values of each `spread` key in
    turn (`host`, or a host label such as `zone`), at most `max_per_host` per host."""

    labels: dict[LabelKey, Annotated[str, Field(max_length=63)]] = Field(default_factory=dict)
    spread: list[LabelKey] = Field(default_factory=lambda: ["host"], max_length=5)
    max_per_host: int | None = Field(None, ge=1, le=100)

    @model_validator(mode="after")
    def _spread_once(self) -> Placement:
        twice = sorted({key for key in self.spread if self.spread.count(key) > 1})
        if twice:
            raise ValueError(f"spread names {', '.join(twice)} more than once")
        return self


class Runtime(Model):
    """`runtime`: how to start the service; `$PORT` is the port it must listen on."""

    command: Annotated[str, Field(min_length=1)]
    replicas: int = Field(1, ge=1, le=100)
    memory: Size | None = None
    """What one instance needs of a host's memory capacity (placement counts it)."""
    placement: Placement | None = None
    """Where its instances run: on the fleet's hosts that match (docs/fleet.md); without
    it, on the coordinator's machine."""
    health: Health = Field(default_factory=Health)
    drain: Duration = 10.0
    env: Env = Field(default_factory=dict)
    pre_deploy: list[
        Annotated[PreDeploy, BeforeValidator(_command, json_schema_input_type=str | dict[str, Any])]
    ] = Field(default_factory=list, max_length=20)
    """Run in order, in the release's directory with the service's `env`, before the
    deployment's first instance starts; the first that fails aborts the deployment."""

    @model_validator(mode="after")
    def _uses_port(self) -> Runtime:
        if "$PORT" not in self.command and "${PORT}" not in self.command:
            raise ValueError("runtime.command must listen on $PORT, e.g. `serve --port $PORT`")
        return self
