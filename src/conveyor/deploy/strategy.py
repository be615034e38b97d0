"""A deployment's strategy: one typed model from the request to the planner.

A pipeline's `deploy.strategy` (pipeline.deploy.Strategy, as people write it), a
person's `--strategy`/`--steps`, or a rollback's switch becomes a `DeployStrategy`; the
deployment's row keeps it as JSON (`stored()`), the driver reads it back (`load`) and the
planner builds its steps from it (deploy/planner). Rows written before this model had the
same shape, so they load as they are.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from conveyor.deploy.world import Kind
from conveyor.domain.errors import Invalid
from conveyor.pipeline.analysis import AnalysisRun
from conveyor.pipeline.deploy import (
    MAX_SURGE,
    MAX_UNAVAILABLE,
    SCALE_DOWN_DELAY_S,
    UNTIL_PROMOTED,
    Strategy,
)
from conveyor.pipeline.durations import parse_duration

DEFAULT_ANALYSIS_S = AnalysisRun.model_fields["for_"].default


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class WeightStep(_Frozen):
    """Send this share of the traffic (percent) to the new revision."""

    weight: float


class PauseStep(_Frozen):
    """Wait this many seconds; None: until a person promotes it."""

    pause: float | None


def _bare(value: Any) -> Any:
    """`analysis: {}` (as written in a pipeline) is an analysis without a template."""
    return None if isinstance(value, dict) else value


class AnalysisStep(_Frozen):
    """Judge the canary with a template for `for` seconds; without a template, wait for
    `promote`."""

    analysis: Annotated[str | None, BeforeValidator(_bare)]
    for_: float | None = Field(None, alias="for")


CanaryStep = WeightStep | PauseStep | AnalysisStep


class Judging(_Frozen):
    """A template, and how long it judges (a blue-green's pre-promotion, a bake)."""

    analysis: str
    for_: float = Field(DEFAULT_ANALYSIS_S, alias="for")

    @classmethod
    def of(cls, run: AnalysisRun) -> Judging:
        return cls(analysis=run.analysis, for_=run.for_)


class DeployStrategy(BaseModel):
    """How a deployment rolls out, as its row stores it."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    kind: Kind
    steps: tuple[CanaryStep, ...] = ()
    """A canary's steps."""
    max_surge: int | str = MAX_SURGE
    max_unavailable: int | str = MAX_UNAVAILABLE
    scale_down_delay: float = SCALE_DOWN_DELAY_S
    auto_promote: bool = False
    background_analysis: str | None = None
    pre_promotion: Judging | None = None
    """Blue-green: an analysis of the preview before the switch."""
    bake: Judging | None = None
    """An analysis after promotion, while the old revision is warm."""
    templates: dict[str, dict[str, Any]] = {}
    """The analysis templates the strategy names, as the artifact's conveyor.yml had
    them, so that a deployment judges as the revision it deploys says."""

    @classmethod
    def load(cls, stored: dict[str, Any]) -> DeployStrategy:
        return cls.model_validate(stored)

    def stored(self) -> dict[str, Any]:
        """As a deployment's row keeps it (what `load` reads back): every field, so that
        a later change of a default does not change a deployment made before it."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def of_pipeline(cls, strategy: Strategy, bake: AnalysisRun | None = None) -> DeployStrategy:
        """A pipeline's `deploy.strategy` (and `deploy.bake`)."""
        baked = Judging.of(bake) if bake is not None else None
        if strategy.canary is not None:
            steps = tuple(
                _canary_step(s.weight, s.pause, s.analysis, s.for_) for s in strategy.canary.steps
            )
            return cls(
                kind=Kind.CANARY,
                steps=steps,
                background_analysis=strategy.canary.background_analysis,
                bake=baked,
            )
        if strategy.blue_green is not None:
            green = strategy.blue_green
            pre = green.pre_promotion
            return cls(
                kind=Kind.BLUE_GREEN,
                scale_down_delay=green.scale_down_delay,
                auto_promote=green.auto_promote,
                pre_promotion=Judging.of(pre) if pre is not None else None,
                bake=baked,
            )
        rolling = strategy.rolling
        if rolling is None:
            return cls(kind=Kind.ROLLING, bake=baked)
        return cls(
            kind=Kind.ROLLING,
            max_surge=rolling.max_surge,
            max_unavailable=rolling.max_unavailable,
            bake=baked,
        )

    def named_templates(self) -> list[str]:
        """Every analysis template it names, in order."""
        names = [s.analysis for s in self.steps if isinstance(s, AnalysisStep) and s.analysis]
        names += [self.background_analysis] if self.background_analysis else []
        names += [j.analysis for j in (self.pre_promotion, self.bake) if j is not None]
        return list(dict.fromkeys(names))

    def with_templates(self, defined: dict[str, dict[str, Any]], where: str) -> DeployStrategy:
        """Carrying the templates it names, from `defined` (an artifact's
        `analysis.templates`); Invalid for one `where` does not define."""
        names = self.named_templates()
        missing = [n for n in names if n not in defined]
        if missing:
            raise Invalid(
                f"the strategy names analysis template(s) {', '.join(map(repr, missing))}, "
                f"which {where} does not define in `analysis.templates`"
            )
        if not names:
            return self
        return self.model_copy(update={"templates": {n: defined[n] for n in names}})

    def without_pauses(self) -> DeployStrategy:
        """An emergency's strategy: its weights without the pauses and analyses between
        them, no background analysis, no bake, a blue-green that promotes itself."""
        update: dict[str, Any] = {
            "steps": tuple(s for s in self.steps if isinstance(s, WeightStep)),
            "background_analysis": None,
            "bake": None,
        }
        if self.kind is Kind.BLUE_GREEN:
            update |= {"pre_promotion": None, "auto_promote": True}
        return self.model_copy(update=update)

    def without_bake(self) -> DeployStrategy:
        return self.model_copy(update={"bake": None})


def _canary_step(
    weight: float | None, pause: float | str | None, analysis: Any, for_: float | None
) -> CanaryStep:
    if weight is not None:
        return WeightStep(weight=float(weight))
    if pause is not None:
        return PauseStep(pause=None if pause == UNTIL_PROMOTED else float(pause))
    return AnalysisStep(analysis=analysis, for_=None if for_ is None else float(for_))


STEP = re.compile(r"^(?:(?P<weight>\d+(?:\.\d+)?)|pause(?:=(?P<pause>\S+))?|analysis)$")
DEFAULT_CANARY_STEPS: tuple[CanaryStep, ...] = (
    WeightStep(weight=10.0),
    PauseStep(pause=None),
    WeightStep(weight=50.0),
    PauseStep(pause=None),
)


def parse_steps(text: str) -> tuple[CanaryStep, ...]:
    """`10,pause=5s,50,pause,100` → canary steps (a bare `pause` waits until promoted)."""
    steps: list[CanaryStep] = []
    for index, raw in enumerate(p.strip() for p in text.split(",")):
        found = STEP.match(raw)
        if found is None:
            raise Invalid(
                f"--steps item {index + 1} {raw!r}: expected a weight (0-100), "
                "`pause`, `pause=30s` or `analysis`"
            )
        if found["weight"] is not None:
            weight = float(found["weight"])
            if weight > 100:
                raise Invalid(f"--steps item {index + 1}: a weight is at most 100")
            steps.append(WeightStep(weight=weight))
        elif raw.startswith("pause"):
            try:
                seconds = parse_duration(found["pause"]) if found["pause"] else None
            except ValueError as exc:
                raise Invalid(f"--steps item {index + 1}: {exc}") from exc
            steps.append(PauseStep(pause=seconds))
        else:
            steps.append(AnalysisStep(analysis=None))
    return tuple(steps)


def chosen(kind: str | None, steps: str | None, named: DeployStrategy | None) -> DeployStrategy:
    """A person's `--strategy` and `--steps`, else `named` (the strategy the artifact's
    pipeline names for the environment), else rolling."""
    if kind is None and steps is not None:
        kind = "canary"
    if kind is None:
        return named or DeployStrategy(kind=Kind.ROLLING)
    if kind == Kind.CANARY.value:
        if steps is None and named is not None and named.kind is Kind.CANARY:
            return named  # with its analyses
        parsed = parse_steps(steps) if steps else DEFAULT_CANARY_STEPS
        return DeployStrategy(kind=Kind.CANARY, steps=parsed)
    if steps is not None:
        raise Invalid("--steps goes with the canary strategy")
    if named is not None and named.kind.value == kind:
        return named
    return DeployStrategy(kind=Kind(kind))
