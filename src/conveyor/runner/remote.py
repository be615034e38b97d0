"""What a job of a remote runner gets from the coordinator: its cache, the artifacts of
the jobs it needs (and a place for its own), and its `deploy:` carried out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from conveyor.artifacts import tarballs
from conveyor.domain.deploy import Phase
from conveyor.pipeline.plan import PlannedJob
from conveyor.protocol.errors import StaleLease
from conveyor.runner.attempt import HandedBack
from conveyor.runner.client import Client, DeployError
from conveyor.runner.workspace import (
    StoredFile,
    file_digest,
    match_files,
    pack,
    unpack,
)

log = logging.getLogger("conveyor.runner")
FOLLOW_ERRORS = 120
"""Failed polls in a row (a minute at 0.5 s) before a deploy job stops following; the
deployment itself goes on in the coordinator."""


class RemoteDeployer:
    """A `deploy:` job: the coordinator's deployment manager does the work; the runner
    starts it and follows it, noting every change of phase and step in the job's log."""

    def __init__(self, client: Client, job_id: str, fence: int, poll_s: float = 0.5) -> None:
        self.client = client
        self.job_id = job_id
        self.fence = fence
        self.poll_s = poll_s

    async def deploy(self, job: PlannedJob, note: Callable[[str], None]) -> tuple[bool, str]:
        try:
            made = await self.client.deploy_start(self.job_id, self.fence)
        except DeployError as exc:
            note(f"deploy refused: {exc}")
            return False, str(exc)
        except (httpx.HTTPError, StaleLease) as exc:
            note(f"cannot start the deployment: {exc}")
            return False, f"cannot start the deployment: {exc}"
        environment, number = made.environment, made.number
        if made.awaiting_approval:
            note(
                f"{environment} revision {number} waits for approval: {made.message}; the job "
                "waits blocked, without a runner, and is taken up again once it is decided"
            )
            raise HandedBack(f"{environment} revision {number} waits for approval")
        note(f"deploying {made.digest} to {environment} as revision {number} ({made.strategy})")
        last, errors = "", 0
        while True:
            try:
                row = await self.client.deploy_status(self.job_id, self.fence, environment, number)
            except StaleLease as exc:
                return False, f"lost the job's lease while following the deployment: {exc}"
            except httpx.HTTPError as exc:
                errors += 1
                if errors >= FOLLOW_ERRORS:
                    return False, f"lost contact with the coordinator: {exc}"
                await asyncio.sleep(self.poll_s)
                continue
            errors = 0
            line = f"{row.phase} step {row.step}/{len(row.steps)}"
            if line != last:
                note(f"{environment} revision {number}: {line} {row.message}".rstrip())
                last = line
            if row.phase.is_final:
                return row.phase is Phase.SUCCEEDED, f"{row.phase}: {row.message}"
            await asyncio.sleep(self.poll_s)


class RemoteArtifacts:
    """Artifacts kept by the coordinator's artifact store: a job's files go up as one
    reproducible tarball, and come down verified against its digest."""

    def __init__(self, client: Client, job_id: str, fence: int, scratch: Path) -> None:
        self.client = client
        self.job_id = job_id
        self.fence = fence
        self.scratch = scratch

    async def fetch(self, job_name: str, workspace: Path) -> int:
        archive = tarballs.temporary(self.scratch)
        try:
            if not await self.client.artifacts_get(self.job_id, self.fence, job_name, archive):
                return 0
            return await asyncio.to_thread(tarballs.unpack, archive, workspace)
        except httpx.HTTPError as exc:
            raise OSError(f"cannot fetch the artifacts of {job_name!r}: {exc}") from exc
        finally:
            archive.unlink(missing_ok=True)

    async def publish(
        self, job_name: str, workspace: Path, patterns: Sequence[str]
    ) -> list[StoredFile]:
        files = match_files(workspace, patterns)
        if not files:
            return []
        archive = tarballs.temporary(self.scratch)
        try:
            await asyncio.to_thread(tarballs.pack, workspace, files, archive)
            digest = await self.client.artifacts_put(self.job_id, self.fence, archive)
        except httpx.HTTPError as exc:
            raise OSError(f"cannot upload the artifacts: {exc}") from exc
        finally:
            archive.unlink(missing_ok=True)
        log.info("job %s: artifacts %s", self.job_id, digest)
        return [
            StoredFile(rel, (workspace / rel).stat().st_size, file_digest(workspace / rel))
            for rel in files
        ]


class RemoteCache:
    """A job's cache kept by the coordinator, under the job's team. Best effort: when the
    coordinator cannot be reached, a restore is a miss and a save is skipped."""

    def __init__(self, client: Client, job_id: str, fence: int) -> None:
        self.client = client
        self.job_id = job_id
        self.fence = fence

    async def restore(self, key: str, workspace: Path) -> bool:
        try:
            data = await self.client.cache_get(self.job_id, self.fence, key)
        except (httpx.HTTPError, StaleLease) as exc:
            log.warning("job %s: cache not restored (%s)", self.job_id, exc)
            return False
        if data is None:
            return False
        unpack(data, workspace)
        return True

    async def save(self, key: str, workspace: Path, paths: Sequence[str]) -> int:
        data, count = pack(workspace, paths)
        try:
            await self.client.cache_put(self.job_id, self.fence, key, data)
        except (httpx.HTTPError, StaleLease) as exc:
            log.warning("job %s: cache not saved (%s)", self.job_id, exc)
            return 0
        return count
