"""The commands that start a process of Conveyor's: `serve` (a coordinator), `runner`,
`up` (both, and HAProxy, on one machine), `down` (stops what the local deploy target left
running) and `db upgrade`. Only these
import the server, the runner or storage, and only when they run: the client commands
load none of it (an import-linter contract and tests/unit/test_cli_imports.py)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from conveyor.cli.agent import agent_cmd, configure_logs
from conveyor.cli.console import EXIT_INVALID, err, out
from conveyor.cli.options import DataDirOpt, ServerOpt, TokenOpt
from conveyor.config import Settings
from conveyor.protocol.api import TokenOut


def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8080,
    data_dir: DataDirOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Processes serving the API; each is a full replica (use the cores).",
        ),
    ] = 1,
) -> None:
    """Start the coordinator: API, scheduler, database migrations."""
    settings = Settings()
    configure_logs(settings)
    root = (data_dir or settings.data_dir).resolve()
    with _metrics_dir(root, workers), coordinator_record(root, f"http://{host}:{port}"):
        # Imported only now: with several workers, prometheus-client must find its
        # shared directory in the environment when it is first imported.
        import uvicorn

        from conveyor.coordinator.app import serving_app
        from conveyor.coordinator.config import server_config
        from conveyor.observability.metrics import serve_open

        config = server_config(settings, data_dir)
        if settings.metrics_address:
            serve_open(settings.metrics_address)
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "log_level": "warning",
            "timeout_graceful_shutdown": 5,
        }
        if workers == 1:
            uvicorn.run(serving_app(config), **options)
            return
        os.environ["CONVEYOR_DATA_DIR"] = str(config.data_dir)
        os.environ["CONVEYOR_WORKERS"] = str(workers)
        uvicorn.run(
            "conveyor.coordinator.app:app_from_environment",
            factory=True,
            workers=workers,
            **options,
        )


@contextlib.contextmanager
def _metrics_dir(root: Path, workers: int) -> Iterator[None]:
    """Several workers count their metrics in one directory of their own (prometheus-
    client's multiprocess mode), emptied at start and removed at the end."""
    if workers == 1:
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="metrics-", dir=root))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def runner_cmd(
    server: ServerOpt,
    token: TokenOpt,
    labels: Annotated[str, typer.Option("--labels", help="Comma-separated labels.")] = "",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64)] = 1,
    name: Annotated[str | None, typer.Option("--name")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run jobs for a coordinator. TOKEN is a registration token (cvy_reg_…) or a runner
    token (cvy_runner_…)."""
    from conveyor.observability.tracing import configure
    from conveyor.runner.agent import Agent, RunnerConfig
    from conveyor.runner.client import Client
    from conveyor.runner.client import register as register_runner

    settings = Settings()
    configure_logs(settings)
    traces = configure("conveyor-runner")
    config = RunnerConfig(
        server=server,
        token=token,
        data_dir=(data_dir or settings.data_dir).resolve() / "runner",
        labels=tuple(x for x in labels.split(",") if x),
        concurrency=concurrency,
        name=name or socket.gethostname(),
    )

    async def main() -> None:
        runner_token = token
        if token.startswith("cvy_reg_"):
            runner_token = await register_runner(server, token, config.name, config.labels)
        client = Client(server, runner_token)
        agent = Agent(config, client)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        out.print(f"runner {config.name} taking jobs from {server}")
        try:
            await agent.serve()
        finally:
            await client.close()
        out.print(f"runner stopped after {agent.jobs_done} job(s)")

    try:
        asyncio.run(main())
    finally:
        if traces is not None:  # sends the spans still buffered
            traces.shutdown()


COORDINATORS = "coordinators"
"""Under the data dir: a file per running `serve`, locked while it runs."""


@contextlib.contextmanager
def coordinator_record(root: Path, url: str) -> Iterator[None]:
    """While the block runs, `<root>/coordinators/<pid>` says this coordinator runs
    (its pid and URL), held by an exclusive lock that ends with the process however it
    ends: `down` reads it to refuse undoing what a running coordinator would redo."""
    folder = root / COORDINATORS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / str(os.getpid())
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(f"pid {os.getpid()} at {url}\n")
        handle.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def running_coordinators(root: Path) -> list[str]:
    """What each coordinator running on data dir `root` wrote of itself; the records of
    ended ones are removed."""
    running = []
    for path in sorted((root / COORDINATORS).glob("*")):
        with contextlib.suppress(OSError), path.open("r") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                running.append(handle.read().strip() or path.name)
                continue
            path.unlink(missing_ok=True)
    return running


def down(data_dir: DataDirOpt = None) -> None:
    """Stop the services the local deploy target and the embedded agent run for this
    data directory: every instance (with its process group), and HAProxy (they outlive
    `conveyor serve` on purpose). Refused while a coordinator runs on it: it would start
    them again."""
    from conveyor.hosting.haproxy import HAProxyRouter
    from conveyor.hosting.processes import stop_everything

    data = (data_dir or Settings().data_dir).resolve()
    running = running_coordinators(data)
    if running:
        err.print(
            f"[red]error:[/] a coordinator runs on {data} ({escape('; '.join(running))}): it "
            "would start the instances again within seconds. Stop it first (Ctrl-C on "
            "`conveyor up`, or SIGTERM to `conveyor serve`), then run `conveyor down`."
        )
        raise typer.Exit(EXIT_INVALID)
    root = data / "deploy"
    stopped = stop_everything(root) + stop_everything(data / "agent" / "host")
    asyncio.run(HAProxyRouter(root / "router").stop())
    out.print(f"stopped {stopped} instance(s) and the router under {root}")


ADMIN_TOKEN_FILE = "admin-token"
UP_RUNNERS = 2


def up(
    port: Annotated[int, typer.Option("--port")] = 8080,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    data_dir: DataDirOpt = None,
    runners: Annotated[int, typer.Option("--runners", min=0, max=16)] = UP_RUNNERS,
) -> None:
    """Conveyor on this machine in one command: a coordinator on SQLite in the data dir,
    runners, and HAProxy for deploys, started together; Ctrl-C stops them all (the
    deployed instances too). Prints the UI's URL and the admin token."""
    from conveyor.hosting.haproxy import find_haproxy
    from conveyor.hosting.routing import RouterError

    try:
        find_haproxy()
    except RouterError as exc:
        err.print(
            f"[red]error:[/] {escape(str(exc))}: deploys go through HAProxy; install the "
            "`haproxy` package (apt-get install haproxy, 2.6 or later)"
        )
        raise typer.Exit(EXIT_INVALID) from exc
    settings = Settings()
    root = (data_dir or settings.data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    group = _Group(root, settings.admin_token or _admin_token(root / ADMIN_TOKEN_FILE))
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    try:
        url = group.coordinator(host, port)
        group.runners(url, runners)
        lines = (
            f"Conveyor is up: [bold]{url}/[/] (the UI; the API is under {url}/api/v1)",
            f"admin token: {group.token}",
            f"  export CONVEYOR_SERVER={url} CONVEYOR_TOKEN={group.token}",
            f"{runners} runner(s); logs in {group.logs}; Ctrl-C stops everything",
        )
        for line in lines:  # whole lines, whatever the terminal's width: scripts read them
            out.print(line, soft_wrap=True)
        while not stopping:
            for line in group.supervise(time.monotonic()):
                out.print(line, soft_wrap=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        group.stop()
        down(root)


RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
RESTART_RESET_S = 60.0
"""A child of `up` that dies is started again after RESTART_FIRST_S, doubling up to
RESTART_MAX_S while it keeps dying; one that ran RESTART_RESET_S starts from the first."""


@dataclass
class _Child:
    name: str
    args: list[str]
    log: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = RESTART_FIRST_S
    restart_at: float | None = None


class _Group:
    """The processes `conveyor up` starts, with their logs in the data dir. It supervises
    them: one that dies is started again with a back-off, and the reason is printed; the
    deployed instances are never touched by a child's death (only by Ctrl-C or `down`)."""

    def __init__(self, root: Path, token: str) -> None:
        self.token = token
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.env = os.environ | {"CONVEYOR_ADMIN_TOKEN": token, "CONVEYOR_DATA_DIR": str(root)}
        self.children: list[_Child] = []

    def start(
        self, name: str, args: list[str], log: str, env: dict[str, str] | None = None
    ) -> _Child:
        child = _Child(name, args, log, env or self.env)
        self.children.append(child)
        self._spawn(child, time.monotonic())
        return child

    def _spawn(self, child: _Child, now: float) -> None:
        with (self.logs / child.log).open("ab") as sink:
            child.proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", *child.args],
                env=child.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        child.started, child.restart_at = now, None

    def coordinator(self, host: str, port: int) -> str:
        url = f"http://{host}:{port}"
        server = self.start(
            "the coordinator", ["serve", "--host", host, "--port", str(port)], "server.log"
        )
        deadline = time.monotonic() + 60
        while not _healthy(url):
            assert server.proc is not None
            if server.proc.poll() is not None or time.monotonic() > deadline:
                where = self.logs / "server.log"
                err.print(f"[red]error:[/] the coordinator did not start: see {where}")
                raise typer.Exit(EXIT_INVALID)
            time.sleep(0.1)
        return url

    def runners(self, url: str, count: int) -> None:
        if not count:
            return
        headers = {"Authorization": f"Bearer {self.token}"}
        made = httpx.post(f"{url}/api/v1/runner-tokens", json={}, headers=headers, timeout=10)
        made.raise_for_status()
        # The token goes in the environment, never on the command line (where `ps` shows it).
        env = self.env | {"CONVEYOR_TOKEN": TokenOut.model_validate(made.json()).token}
        for index in range(count):
            name = f"{socket.gethostname()}-{index + 1}"
            own = str(self.root / "runners" / str(index + 1))  # its workspaces and checkouts
            args = ["runner", "--server", url, "--name", name, "--data-dir", own]
            self.start(f"runner {name}", args, f"runner-{index + 1}.log", env)

    def supervise(self, now: float) -> list[str]:
        """Start again every child that died, once its back-off has passed; what happened,
        in lines to print."""
        said: list[str] = []
        for child in self.children:
            assert child.proc is not None
            code = child.proc.poll()
            if code is None:
                if now - child.started >= RESTART_RESET_S:
                    child.backoff = RESTART_FIRST_S
                continue
            if child.restart_at is None:
                ran = now - child.started
                if ran >= RESTART_RESET_S:
                    child.backoff = RESTART_FIRST_S
                child.restart_at = now + child.backoff
                said.append(
                    f"{child.name} exited ({_exit_reason(code)}) after {ran:.0f} s; starting it "
                    f"again in {child.backoff:g} s (its log: {self.logs / child.log})"
                )
                child.backoff = min(child.backoff * 2, RESTART_MAX_S)
            elif now >= child.restart_at:
                self._spawn(child, now)
                said.append(f"{child.name} started again")
        return said

    def stop(self) -> None:
        procs = [c.proc for c in reversed(self.children) if c.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _healthy(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/healthz", timeout=1).status_code == 200)
    except httpx.HTTPError:
        return False


def _admin_token(path: Path) -> str:
    """The admin token `up` made for this data dir earlier, or a new one (mode 0600)."""
    from conveyor.api.auth import ADMIN_PREFIX, new_token

    if path.exists():
        return path.read_text().strip()
    token = new_token(ADMIN_PREFIX)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


db_app = typer.Typer(help="The database: migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="[env CONVEYOR_DATA_DIR]")
    ] = None,
) -> None:
    """Apply the database migrations (SQLite in the data dir, or CONVEYOR_DATABASE_URL)."""
    from conveyor.storage.database import Database, DatabaseUrlError, database_url
    from conveyor.storage.migrate import current_revision, upgrade

    settings = Settings()
    try:
        url = database_url(data_dir or settings.data_dir, settings.database_url)
    except DatabaseUrlError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID) from exc

    async def migrate(database: Database) -> str | None:
        try:
            await upgrade(database)
            return await current_revision(database)
        finally:
            await database.dispose()

    revision = asyncio.run(migrate(Database(url)))
    out.print(f"database {escape(url.render_as_string())} is at revision {revision}")


def register(app: typer.Typer) -> None:
    """Add the process commands to the `conveyor` app."""
    app.command()(serve)
    app.command("runner")(runner_cmd)
    app.command("agent")(agent_cmd)  # defined apart: `conveyor agent` loads only that
    app.command("down")(down)
    app.command("up")(up)
    app.add_typer(db_app, name="db")
