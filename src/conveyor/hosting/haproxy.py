"""HAProxy as the traffic router: started by Conveyor in master-worker mode with a config
rendered from the desired routing, driven through its runtime API (the admin socket).

The safe orders verified on HAProxy 2.6 (docs/deploy.md):
- add a server: `add server` at weight 0 with explicit check timings (dynamic servers
  ignore `default-server`), `enable health`, `enable server`, wait for L7OK, set weight;
- remove one: drain, wait until its sessions reach 0, `maint`, `del server`;
- the split: `set map` on a threshold out of 10,000 compared with `rand(10000)`.
HAProxy forgets runtime changes on reload, so the config file is re-rendered from the
desired routing before every reload, and `apply` converges after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from conveyor.domain.traffic import Served
from conveyor.filelock import exclusive
from conveyor.hosting.request_log import LOG_FORMAT, RING, RequestLog
from conveyor.hosting.routing import (
    HealthCheck,
    Route,
    RouterError,
    Server,
    ServerState,
    ServerStatus,
)

log = logging.getLogger("conveyor.deploy.haproxy")
RISE = 2
"""Consecutive passed checks that bring a server (back) into the traffic."""
PACKAGE_HINT = (
    "HAProxy is not installed: install the `haproxy` package (2.6 or newer), e.g. "
    "`apt-get install -y --no-install-recommends haproxy`"
)


def find_haproxy() -> str:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise RouterError(PACKAGE_HINT)
    return found


RING_BYTES = 4 << 20
"""The request ring: about four minutes of lines at 200 requests per second, far more
than a reader that reconnects after a reload needs."""
REQUEST_LOG = (
    # Every request to the ring the coordinator reads, and only failed ones (at `err`,
    # by log-separate-errors) to the log file; the defaults' log lines are not inherited.
    "    no log",
    "    no option dontlog-normal",
    "    option log-separate-errors",
    f"    log ring@{RING} format raw local0 info",
    "    log stdout format raw local0 err",
    f'    log-format "{LOG_FORMAT}"',
)


COMMANDS_AT_ONCE = 8
"""Runtime API connections open at once (HAProxy serves 10 on its stats socket unless
`stats maxconn` says more): more, from hundreds of environments' drivers,
overflow the admin socket's backlog (EAGAIN), which read as a router gone."""


def check_args(health: HealthCheck) -> str:
    """A server's check settings. Dynamic servers ignore `default-server`, so every server
    line and `add server` carries them. A server going up or down is checked every
    `fastinter`, one that is down every `downinter`, so a new one joins within about a
    second whatever the steady `inter`."""
    inter = health.interval_ms
    return (
        f"check inter {inter}ms fastinter {min(inter, 250)}ms downinter {min(inter, 500)}ms "
        f"rise {RISE} fall {health.fall}"
    )


def render(routes: Sequence[Route], run: Path, bind: str = "127.0.0.1") -> str:
    """The whole config: global settings, then a frontend pair and two backends per route."""
    parts = [
        f"""global
    master-worker
    stats socket {run}/admin.sock mode 600 level admin expose-fd listeners
    stats timeout 30s
    pidfile {run}/haproxy.pid
    hard-stop-after 30s
    maxconn 4096
    log stdout format raw local0 info

ring {RING}
    description "every request of the environments' frontends (the router provider)"
    format raw
    maxlen 1024
    size {RING_BYTES}

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue 10s
    timeout http-keep-alive 10s
    option redispatch
    retries 3
    retry-on conn-failure empty-response response-timeout
"""
    ]
    parts += [_route(route, run, bind) for route in sorted(routes, key=lambda r: r.key)]
    return "\n".join(parts)


def _route(route: Route, run: Path, bind: str) -> str:
    key = route.key
    split, canary = run / "split.map", run / "canary.map"
    lines = [
        f"frontend fe_{key}",
        f"    bind {_hostport(bind, route.port)}",
        *REQUEST_LOG,
        "    http-request set-var(txn.roll) rand(10000)",
        f"    http-request set-var(txn.share_b) str({key}),map_str_int({split},0)",
        f"    http-request set-var(txn.canary) str({key}),map_str({canary},b)",
        "    acl to_canary req.hdr(x-conveyor-track) -i canary",
        "    acl to_stable req.hdr(x-conveyor-track) -i stable",
        "    acl canary_is_a var(txn.canary) -m str a",
        f"    use_backend be_{key}_a if to_canary canary_is_a",
        f"    use_backend be_{key}_b if to_canary !canary_is_a",
        f"    use_backend be_{key}_b if to_stable canary_is_a",
        f"    use_backend be_{key}_a if to_stable !canary_is_a",
        # The split, except that a slot with no usable server (all down, draining or at
        # weight 0) never gets traffic the other slot can serve: no 503 for a slot's share.
        "    acl to_b var(txn.roll),sub(txn.share_b) -m int lt 0",
        f"    acl a_up nbsrv(be_{key}_a) gt 0",
        f"    acl b_up nbsrv(be_{key}_b) gt 0",
        f"    use_backend be_{key}_b if to_b b_up",
        f"    use_backend be_{key}_b if !to_b !a_up b_up",
        f"    default_backend be_{key}_a",
        "",
        f"frontend fe_{key}_preview",
        f"    bind {_hostport(bind, route.preview_port)}",
        *REQUEST_LOG,
        f"    http-request set-var(txn.canary) str({key}),map_str({canary},b)",
        f"    use_backend be_{key}_a if {{ var(txn.canary) -m str a }}",
        f"    default_backend be_{key}_b",
    ]
    for slot in ("a", "b"):
        lines += [
            "",
            f"backend be_{key}_{slot}",
            "    balance roundrobin",
            f"    option httpchk GET {route.health.path}",
            "    http-check expect rstatus ^2",
            f"    timeout check {route.health.timeout_ms}ms",
        ]
        lines += [
            f"    server {s.name} {_hostport(s.address, s.port)} weight {_weight(s)} "
            f"{check_args(route.health)}"
            for s in route.slot(slot)
        ]
    return "\n".join(lines) + "\n"


def _hostport(address: str, port: int) -> str:
    """`address:port`, an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def skeleton(config: str) -> str:
    """The config without its server lines: what only a reload can change."""
    return "\n".join(
        line for line in config.splitlines() if not line.lstrip().startswith("server ")
    )


def _weight(server: Server) -> int:
    return 0 if server.state is ServerState.DRAIN else server.weight


def maps(routes: Sequence[Route]) -> tuple[str, str]:
    """The contents of split.map and canary.map."""
    ordered = sorted(routes, key=lambda r: r.key)
    split = "".join(f"{r.key} {r.share_b}\n" for r in ordered)
    canary = "".join(f"{r.key} {r.canary_slot}\n" for r in ordered)
    return split, canary


def parse_stat(text: str) -> list[ServerStatus]:
    """`show stat` CSV → the servers in it (frontend and backend lines are skipped)."""
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    out = []
    for row in rows:
        if row.get("svname") in (None, "FRONTEND", "BACKEND"):
            continue
        out.append(
            ServerStatus(
                name=row["svname"],
                backend=row.get("pxname", ""),
                status=row.get("status", ""),
                check=row.get("check_status", ""),
                weight=int(row.get("weight") or 0),
                sessions=int(row.get("scur") or 0),
                queued=int(row.get("qcur") or 0),
                requests=int(row.get("stot") or 0),
                errors_5xx=int(row.get("hrsp_5xx") or 0),
                since_s=int(row.get("lastchg") or 0),
            )
        )
    return out


class HAProxyRouter:
    """One HAProxy per data directory, shared by the replicas that use it. It outlives
    the coordinator that started it (its own session), so that a coordinator's death
    never drops traffic; another replica adopts it through the pid file and sockets."""

    def __init__(self, run: Path, binary: str | None = None, bind: str = "127.0.0.1") -> None:
        self.run = run
        self.binary = binary
        self.bind = bind
        """The address the environments' frontends listen on (a router host's own)."""
        self.config = run / "haproxy.cfg"
        self.admin = run / "admin.sock"
        self.master = run / "master.sock"
        self.pidfile = run / "master.pid"
        self._lock = asyncio.Lock()
        self._commands = asyncio.Semaphore(COMMANDS_AT_ONCE)
        self.reloads = 0
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        """The master this object started (kept to reap it once it exits)."""
        self.requests = RequestLog(self.admin)
        """Every request, read from HAProxy's request ring while the analysis asks."""

    # -- process ---------------------------------------------------------------------

    def master_pid(self) -> int | None:
        if self._process is not None and self._process.poll() is not None:
            self._process = None  # it exited (and is reaped now)
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # pragma: no cover - another user's process
            return None
        with contextlib.suppress(OSError):
            if "haproxy" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore"):
                return None
        return pid

    def running(self) -> bool:
        return self.master_pid() is not None

    async def sync(self, routes: Sequence[Route]) -> None:
        async with self._lock:
            await asyncio.to_thread(self._sync_locked, list(routes))

    def _sync_locked(self, routes: list[Route]) -> None:
        with exclusive(self.run / "router.lock"):
            text = render(routes, self.run, self.bind)
            split, canary = maps(routes)
            current = self.config.read_text() if self.config.is_file() else ""
            pid = self.master_pid()
            if pid is not None and current == text:
                self._write_maps(split, canary)
                return
            self._write(text, split, canary)
            if pid is None:
                self._start()
            elif skeleton(current) != skeleton(text):
                # New frontends or backends need a reload; servers, weights and the split
                # are changed through the runtime API, and the file only keeps them for
                # the next reload or restart.
                self._reload(pid)

    def _write_maps(self, split: str, canary: str) -> None:
        for name, content in (("split.map", split), ("canary.map", canary)):
            path = self.run / name
            if path.is_file() and path.read_text() == content:
                continue
            partial = self.run / f"{name}.partial"
            partial.write_text(content)
            partial.replace(path)

    def _write(self, text: str, split: str, canary: str) -> None:
        self._write_maps(split, canary)
        candidate = self.run / "haproxy.cfg.partial"
        candidate.write_text(text)
        binary = self.binary or find_haproxy()
        check = subprocess.run(
            [binary, "-c", "-q", "-f", str(candidate)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RouterError(f"HAProxy refused the config: {check.stderr.strip()[-2000:]}")
        candidate.replace(self.config)

    def _start(self) -> None:
        binary = self.binary or find_haproxy()
        for sock in (self.admin, self.master):
            sock.unlink(missing_ok=True)
        log_file = (self.run / "haproxy.log").open("ab")
        with log_file:
            proc = subprocess.Popen(
                [binary, "-W", "-S", f"{self.master},mode,600", "-f", str(self.config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pidfile.write_text(f"{proc.pid}\n")
        self._process = proc
        self.starts += 1
        log.info("haproxy started (pid %s)", proc.pid)
        for _ in range(200):
            if proc.poll() is not None:
                raise RouterError(f"HAProxy exited at start: see {self.run / 'haproxy.log'}")
            if self.admin.exists():
                try:
                    self._command_sync(self.admin, "show info")
                    return
                except OSError:
                    pass
            time.sleep(0.025)
        raise RouterError("HAProxy did not open its admin socket within 5 s")

    def _reload(self, pid: int) -> None:
        os.kill(pid, signal.SIGUSR2)
        self.reloads += 1
        log.info("haproxy reloaded (pid %s)", pid)

    def processes(self) -> list[int]:
        """Every HAProxy process running this router's config (masters and workers, also
        ones a crashed coordinator may have left behind)."""
        wanted = str(self.config).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if b"haproxy" in cmdline and wanted in cmdline:
                    found.append(int(entry.name))
        return sorted(found)

    async def served(self, route: str, side: str, start: float, end: float) -> list[Served]:
        self.requests.start()  # read from the first time the analysis asks
        return self.requests.served(route, side, start, end)

    async def stop(self) -> None:
        await self.requests.close()
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            # A process leaves /proc's command lines a moment before it can be reaped.
            started_here = self._process
            if not self.processes() and (started_here is None or started_here.poll() is not None):
                self._process = None
                return
            await asyncio.sleep(0.05)
        for pid in self.processes():  # pragma: no cover - HAProxy ignored SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- runtime API -----------------------------------------------------------------

    @staticmethod
    def _command_sync(sock: Path, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(5)
            client.connect(str(sock))
            client.sendall(command.encode() + b"\n")
            client.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := client.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    async def command(self, command: str) -> str:
        """Send one runtime API command (or several joined by `;`) and return the answer
        (at most COMMANDS_AT_ONCE connections at a time)."""
        async with self._commands:
            return await self._command(command)

    async def _command(self, command: str) -> str:
        async with asyncio.timeout(5):  # not wait_for: see conveyor.waiting
            reader, writer = await asyncio.open_unix_connection(str(self.admin))
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(5):
                answer = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return answer.decode(errors="replace")

    async def status(self, key: str) -> dict[str, ServerStatus]:
        out: dict[str, ServerStatus] = {}
        for slot in ("a", "b"):
            text = await self.command(f"show stat be_{key}_{slot} 4 -1")
            out |= {s.name: s for s in parse_stat(text)}
        return out

    async def apply(self, route: Route, seen: Mapping[str, ServerStatus] | None = None) -> None:
        await self._apply_split(route)
        for slot in ("a", "b"):
            backend = f"be_{route.key}_{slot}"
            if seen is None:
                text = await self.command(f"show stat {backend} 4 -1")
                present = {s.name: s for s in parse_stat(text)}
            else:
                present = {name: s for name, s in seen.items() if s.backend == backend}
            await self._apply_slot(route, slot, present)

    async def _apply_split(self, route: Route) -> None:
        """The route's entries in the split and canary maps, each looked up by its key
        (`get map`: one entry, not the whole map, so a pass costs the same with 500
        routes as with one) and set when it differs."""
        split, canary = self.run / "split.map", self.run / "canary.map"
        answer = await self.command(f"get map {split} {route.key}; get map {canary} {route.key}")
        held_split, held_canary = _map_values(answer, 2)
        if held_split != str(route.share_b):
            await self._set_map(split, route.key, str(route.share_b))
        if held_canary != route.canary_slot:
            await self._set_map(canary, route.key, route.canary_slot)

    async def _set_map(self, path: Path, key: str, value: str) -> None:
        answer = await self.command(f"set map {path} {key} {value}")
        if "not found" in answer.lower():
            answer = await self.command(f"add map {path} {key} {value}")
        _check(answer, f"set map {key}")

    async def _apply_slot(self, route: Route, slot: str, present: dict[str, ServerStatus]) -> None:
        backend = f"be_{route.key}_{slot}"
        wanted = {s.name: s for s in route.slot(slot)}
        for name, server in wanted.items():
            seen = present.get(name)
            if seen is None:
                await self._add(backend, server, route.health)
                continue
            if server.state is ServerState.DRAIN:
                if not seen.status.startswith(("DRAIN", "MAINT")):
                    _check(await self.command(f"set server {backend}/{name} state drain"), name)
                continue
            if seen.status.startswith(("MAINT", "DRAIN")):
                _check(await self.command(f"set server {backend}/{name} state ready"), name)
            if seen.weight != server.weight and (server.weight == 0 or seen.healthy):
                _check(
                    await self.command(f"set server {backend}/{name} weight {server.weight}"), name
                )
        for name in present.keys() - wanted.keys():
            await self._delete(backend, name)

    async def _add(self, backend: str, server: Server, health: HealthCheck) -> None:
        """A new server enters at weight 0 with health checks on; its weight is set by a
        later `apply` once its check has passed (L7OK)."""
        name = f"{backend}/{server.name}"
        address = _hostport(server.address, server.port)
        _check(
            await self.command(f"add server {name} {address} weight 0 {check_args(health)}"),
            name,
            ok=("New server registered", "Already exists"),
        )
        _check(await self.command(f"enable health {name}"), name)
        if server.state is ServerState.READY:
            _check(await self.command(f"enable server {name}"), name)

    async def _delete(self, backend: str, name: str) -> None:
        _check(await self.command(f"set server {backend}/{name} state maint"), name)
        with contextlib.suppress(RouterError):
            await self.command(f"shutdown sessions server {backend}/{name}")
        _check(
            await self.command(f"del server {backend}/{name}"),
            name,
            ok=("Server deleted", "No such server"),
        )


def _map_values(answer: str, count: int) -> list[str | None]:
    """The values of `count` `get map` answers in a row (None: the key is not there).
    Each is `type=str, case=sensitive, found=yes, idx=tree, key="k", value="v", ...` or
    `..., found=no`, followed by a blank line."""
    blocks = [b for b in answer.split("\n\n") if b.strip()]
    if len(blocks) != count:
        raise RouterError(f"HAProxy answered get map unexpectedly: {answer[:300]}")
    values: list[str | None] = []
    for block in blocks:
        found = _MAP_VALUE.search(block)
        values.append(found.group(1) if found else None)
    return values


_MAP_VALUE = re.compile(r'found=yes,.*\bvalue="([^"]*)"')


def _check(answer: str, what: str, ok: tuple[str, ...] = ()) -> None:
    text = answer.strip()
    if not text or any(text.startswith(o) for o in ok):
        return
    if "no need to change" in text:
        return
    raise RouterError(f"HAProxy refused ({what}): {text[:300]}")
