"""The inbox starts a batch's runs in one transaction; when that fails, each delivery is
started on its own, so that one bad delivery fails alone and the others start."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from conveyor.intake.inbox import Intake, Planned, Prepared
from conveyor.scheduler.service import RunStart, Scheduler
from conveyor.storage.database import Database
from conveyor.storage.runs import CreatedRun
from conveyor.storage.secrets import SecretBox
from conveyor.storage.tables import Project, Team
from conveyor.vcs import MirrorSet
from tests.conftest import plan_for

PIPELINE = "jobs:\n  build: {script: x}\n"


class RefusesOneSha(Scheduler):
    """A scheduler whose database refuses any batch holding one commit's run (standing in
    for a row the database rejects)."""

    bad = "b" * 40

    async def start_runs(
        self, starts: Sequence[RunStart], *, durable: bool = True
    ) -> list[CreatedRun]:
        if any(start.plan.event.sha == self.bad for start in starts):
            raise RuntimeError("the database refused the run")
        return await super().start_runs(starts, durable=durable)


async def test_one_delivery_that_cannot_start_fails_alone(database: Database, tmp_path: Path):
    async with database.transaction() as session:
        team = Team(name="a")
        session.add(team)
        await session.flush()
        project = Project(team_id=team.id, name="api", repo_url=str(tmp_path))
        session.add(project)
    intake = Intake(RefusesOneSha(database), SecretBox(b"k" * 32), MirrorSet(tmp_path / "m").get)
    plan = plan_for(PIPELINE)

    def prepared(sha: str) -> Prepared:
        one = replace(plan, event=replace(plan.event, sha=sha))
        return Prepared(uuid.uuid4(), project, ["skipped: a label", Planned(sha[:4], "how", one)])

    good, bad, also_good = prepared("a" * 40), prepared(RefusesOneSha.bad), prepared("c" * 40)
    outcomes = await intake._start_all([good, bad, also_good])
    assert [o.delivery for o in outcomes] == [good.delivery, bad.delivery, also_good.delivery]
    assert [o.state for o in outcomes] == ["done", "failed", "done"]
    assert outcomes[1].lines == [
        "skipped: a label",
        "internal error: RuntimeError: the database refused the run",
    ]
    assert outcomes[0].lines[0] == "skipped: a label"
    assert outcomes[0].lines[1].startswith("aaaa: run started ") and len(outcomes[0].runs) == 1
    # Together again (a redelivery): the same runs, found by their dedupe keys.
    again = await intake._start_all([good, also_good])
    assert [o.runs for o in again] == [outcomes[0].runs, outcomes[2].runs]
    assert "already started by an earlier delivery" in again[0].lines[1]
