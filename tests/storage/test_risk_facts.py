"""policy.risk.facts on SQLite and PostgreSQL with a real git mirror: the diff since the
deployed revision, the sensitive paths in it, the coverage change and the allowed
failures of the runs that built both artifacts, the environment's recent failures; and
the score they give, computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from conveyor.domain import risk
from conveyor.policy.risk import facts
from conveyor.storage.database import Database
from conveyor.storage.tables import (
    Artifact,
    Deployment,
    Environment,
    Job,
    JobAttempt,
    Project,
    Run,
    Team,
)
from conveyor.vcs import MirrorSet
from tests.intake.conftest import commit, git

TUESDAY_11 = datetime(2026, 12, 8, 11, 0, tzinfo=UTC)


def _repo(path: Path) -> tuple[str, str]:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    first = commit(path, {"src/app.py": "a\nb\nc\n", "migrations/0001.sql": "create;\n"})
    second = commit(
        path,
        {"src/app.py": "a\nB\nc\nd\n", "migrations/0002.sql": "alter;\nupdate;\n"},
    )
    return first, second


async def _seed(db: Database, repo: Path, first: str, second: str) -> tuple[Environment, Artifact]:
    async with db.transaction() as session:
        team = Team(name="pay")
        session.add(team)
        await session.flush()
        project = Project(team_id=team.id, name="api", repo_url=str(repo))
        session.add(project)
        await session.flush()
        built = {}
        for sha, coverage, lint in ((first, 80.0, "success"), (second, 77.5, "failed")):
            run = Run(team_id=team.id, project_id=project.id, event="push", ref="main", sha=sha)
            session.add(run)
            await session.flush()
            test = Job(team_id=team.id, run_id=run.id, name="test", spec={}, status="success")
            linted = Job(
                team_id=team.id,
                run_id=run.id,
                name="lint",
                spec={"allow_failure": True},
                status=lint,
            )
            session.add_all([test, linted])
            await session.flush()
            session.add_all(
                [
                    JobAttempt(
                        team_id=team.id, job_id=test.id, number=1, status="failed",
                        reports={"coverage_percent": 10.0},
                    ),
                    JobAttempt(
                        team_id=team.id, job_id=test.id, number=2, status="success",
                        reports={"coverage_percent": coverage},
                    ),
                ]
            )  # fmt: skip
            artifact = Artifact(
                team_id=team.id,
                project_id=project.id,
                name="svc",
                digest=f"sha256:{sha[:8]:0>64}",
                size=1,
                media_type="application/x-tar",
                sha=sha,
                run_id=run.id,
            )
            session.add(artifact)
            await session.flush()
            built[sha] = artifact
        env = Environment(
            team_id=team.id,
            project_id=project.id,
            name="production",
            port=18001,
            preview_port=18002,
            digest=built[first].digest,
            revision=3,
        )
        session.add(env)
        await session.flush()
        # Revision 2 was aborted, 3 was rolled back (by 4, back to 1): 2 failures of 3.
        for number, phase, kind, back in (
            (1, "succeeded", "deploy", None),
            (2, "aborted", "deploy", None),
            (3, "succeeded", "deploy", None),
            (4, "succeeded", "rollback", 3),
        ):
            session.add(
                Deployment(
                    team_id=team.id,
                    project_id=project.id,
                    environment_id=env.id,
                    number=number,
                    digest=built[first].digest,
                    artifact_id=built[first].id,
                    runtime={},
                    strategy={"kind": "rolling"},
                    phase=phase,
                    kind=kind,
                    rollback_of=back,
                )
            )
    return env, built[second]


async def test_the_facts_of_a_deploy_and_their_score(database: Database, tmp_path: Path):
    first, second = _repo(tmp_path / "repo")
    env, artifact = await _seed(database, tmp_path / "repo", first, second)
    mirror = MirrorSet(tmp_path / "mirrors").get(str(tmp_path / "repo"))
    await mirror.fetch()
    async with database.transaction() as session:
        found = await facts(
            session,
            mirror,
            env,
            artifact,
            sensitive_paths=["migrations/**", "**/payments/**"],
            pre_deploy=["alembic upgrade head"],
            at=TUESDAY_11,
        )
    assert found == risk.Facts(
        at=TUESDAY_11,
        files_changed=2,
        lines_changed=5,  # app.py: 2 changed lines (1 out, 2 in) + 0002.sql: 2 in
        sensitive_files=("migrations/0002.sql",),
        coverage_delta=-2.5,  # the last attempt's coverage of each run: 77.5 - 80.0
        allowed_failures=("lint",),
        recent_failures=2,
        recent_deployments=3,
        hours_to_freeze=None,
        runs_migrations=True,
    )
    scored = risk.score(found)
    # size 0 + sensitive 10 + coverage 5 + allowed 5 + recent 15 + timing 0 + migrations 10
    assert [f.contribution for f in scored.factors] == [0.0, 10.0, 5.0, 5.0, 15.0, 0.0, 10.0]
    assert scored.score == 45


async def test_a_first_deploy_has_no_diff_and_no_history(database: Database, tmp_path: Path):
    first, second = _repo(tmp_path / "repo")
    env, artifact = await _seed(database, tmp_path / "repo", first, second)
    async with database.transaction() as session:
        fresh = Environment(
            team_id=env.team_id,
            project_id=env.project_id,
            name="staging",
            port=18003,
            preview_port=18004,
        )
        session.add(fresh)
        await session.flush()
        found = await facts(
            session, None, fresh, artifact, sensitive_paths=[], pre_deploy=[], at=TUESDAY_11
        )
    assert (found.files_changed, found.lines_changed, found.coverage_delta) == (None, None, None)
    assert (found.recent_failures, found.recent_deployments) == (0, 0)
    assert found.allowed_failures == ("lint",)
    assert risk.score(found).score == 15  # unknown size 10 + one allowed failure 5
