"""The tasks a host's agent runs: a deployment's `pre_deploy` commands, once, in the
artifact's directory with the service's environment (hosting.processes runs them in a
session of their own, as on the coordinator's machine), and how each ended, reported
while the coordinator still lists it."""

from __future__ import annotations

import logging
import uuid

from conveyor.agent.instances import Fetch
from conveyor.hosting.processes import LocalTarget
from conveyor.hosting.target import Task, TaskResult
from conveyor.protocol.agent import DesiredTask, ObservedTask

log = logging.getLogger("conveyor.agent")


def task_name(task_id: uuid.UUID) -> str:
    return f"pre-deploy-{task_id}"


class HostTasks:
    def __init__(self, target: LocalTarget, fetch: Fetch) -> None:
        self.target = target
        self.fetch = fetch
        self.wanted: list[DesiredTask] = []
        self.ended: dict[uuid.UUID, TaskResult] = {}

    async def converge(self, wanted: list[DesiredTask]) -> None:
        """Start every task of `wanted` not started yet (a task is started once per
        id, also across the agent's restarts)."""
        self.wanted = wanted
        for gone in set(self.ended) - {t.id for t in wanted}:
            del self.ended[gone]
        for task in wanted:
            if task.id in self.ended:
                continue
            try:
                blob = await self.fetch(task.digest)
                release = self.target.prepare(task.digest, blob)
            except Exception as exc:  # reported: the deployment is aborted with it
                log.warning("task %s: cannot start: %s", task.id, exc)
                self.ended[task.id] = TaskResult(-1, "", f"cannot start: {exc}")
                continue
            commands = tuple((c, t) for c, t in task.commands)
            self.target.start_task(Task(task_name(task.id), release, commands, dict(task.env)))

    def watch(self) -> bool:
        """Whether a task ended since the last look."""
        changed = False
        for task in self.wanted:
            if task.id in self.ended:
                continue
            result = self.target.task_result(task_name(task.id))
            if result is not None:
                log.info("task %s ended with %d", task.id, result.exit_code)
                self.ended[task.id] = result
                changed = True
        return changed

    def observed(self) -> list[ObservedTask]:
        return [
            ObservedTask(id=i, exit_code=r.exit_code, command=r.command, output=r.output[-20_000:])
            for i, r in self.ended.items()
        ]
