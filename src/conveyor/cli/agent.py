"""`conveyor agent`: the process on every host of the fleet. Its module imports only
what the agent runs on (typer, the agent's own package, the protocol's bodies), and
`conveyor agent` loads nothing else of the CLI (cli.main dispatches to it first), so
that an idle agent stays small (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from typing import Annotated

import typer
from rich.markup import escape

from conveyor.cli.console import EXIT_INVALID, err, out
from conveyor.cli.options import DataDirOpt, ServerOpt, TokenOpt
from conveyor.config import Settings


def configure_logs(settings: Settings) -> None:
    """Logs as configured; and the tracing environment checked before anything starts."""
    from conveyor.observability.logs import configure
    from conveyor.observability.tracing import wanted_exporters

    configure(settings.log_format, settings.log_level)
    try:
        wanted_exporters()
    except ValueError as exc:
        err.print(f"error: {escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID) from None


def _pairs(text: str, what: str) -> dict[str, str]:
    """`zone=a,role=web` → {"zone": "a", "role": "web"}; exits with the reason otherwise."""
    pairs: dict[str, str] = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            err.print(f"error: {what}: expected key=value, got {escape(item)!r}")
            raise typer.Exit(EXIT_INVALID)
        pairs[key.strip()] = value.strip()
    return pairs


def _size(text: str, what: str) -> int:
    from conveyor.pipeline.units import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        err.print(f"error: {what}: {escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID) from None


def _capacity(text: str) -> tuple[int | None, int | None]:
    """`slots=8,memory=4GiB` → (8, 4 GiB in bytes)."""
    from conveyor.pipeline.units import parse_size

    given = _pairs(text, "--capacity")
    unknown = sorted(set(given) - {"slots", "memory"})
    try:
        if unknown:
            raise ValueError(f"unknown {', '.join(unknown)} (slots and memory are known)")
        slots = int(given["slots"]) if "slots" in given else None
        memory = parse_size(given["memory"]) if "memory" in given else None
    except ValueError as exc:
        err.print(f"error: --capacity: {escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID) from None
    return slots, memory


def agent_cmd(
    server: ServerOpt,
    token: TokenOpt,
    address: Annotated[
        str, typer.Option("--address", help="The address this host's instances listen on.")
    ],
    labels: Annotated[str, typer.Option("--labels", help="zone=a,role=web")] = "",
    capacity: Annotated[str, typer.Option("--capacity", help="slots=8,memory=4GiB")] = "",
    router: Annotated[
        bool, typer.Option("--router", help="This host runs HAProxy for environments too.")
    ] = False,
    name: Annotated[str | None, typer.Option("--name", help="Default: the hostname.")] = None,
    cache_size: Annotated[
        str, typer.Option("--cache-size", help="The most the artifact cache keeps.")
    ] = "10GiB",
    data_dir: DataDirOpt = None,
) -> None:
    """Run this host's instances for a coordinator: joins with a host token (cvy_host_…),
    holds the host's lease and long-polls for what the host should run. Dials out only."""
    from pydantic import ValidationError

    from conveyor.agent.client import AgentClient, Refusal
    from conveyor.agent.host import HostAgent, HostFacts

    settings = Settings()
    configure_logs(settings)
    slots, memory = _capacity(capacity)
    cache_bytes = _size(cache_size, "--cache-size")
    facts = HostFacts(
        name=name or socket.gethostname(),
        address=address,
        labels=_pairs(labels, "--labels"),
        slots=slots,
        memory=memory,
        router=router,
    )
    try:
        facts.join()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        err.print(f"error: {escape(problems)}")
        raise typer.Exit(EXIT_INVALID) from None

    async def main() -> None:
        client = AgentClient(server, token)
        root = (data_dir or settings.data_dir).resolve() / "agent"
        agent = HostAgent(facts, client, root, cache_bytes)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        out.print(f"agent of host {facts.name} ({facts.address}) dialing {server}")
        try:
            await agent.serve()
        finally:
            await agent.close()
            await client.close()

    try:
        asyncio.run(main())
    except Refusal as exc:
        err.print(f"error: the coordinator refused host {facts.name}: {escape(str(exc))}")
        raise typer.Exit(EXIT_INVALID) from None
    out.print(f"agent of host {facts.name} stopped")


def run_alone() -> None:
    """`conveyor agent …` with nothing else of the CLI loaded."""
    typer.run(agent_cmd)


if __name__ == "__main__":  # pragma: no cover
    sys.argv[0] = "conveyor agent"
    run_alone()
