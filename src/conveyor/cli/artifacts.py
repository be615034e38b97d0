"""`conveyor artifacts upload|list|show|download`: the artifact store from the command
line. `upload` prints the digest on its last line, so scripts can take it from there."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from conveyor.artifacts import tarballs
from conveyor.cli.client import ApiClient, JsonOpt, show
from conveyor.cli.console import err, out
from conveyor.cli.options import ServerOpt, TokenOpt
from conveyor.protocol.api import ArtifactOut

app = typer.Typer(
    help="Artifacts: immutable, content-addressed build outputs.", no_args_is_help=True
)
ProjectArg = Annotated[str, typer.Argument(help="TEAM/PROJECT", metavar="TEAM/PROJECT")]


def provenance(data: ArtifactOut) -> str:
    """Which commit, run and job made an artifact, in one phrase."""
    if data.run_id:
        commit = (data.sha or "?")[:12]
        return f"commit {commit}, run {data.run_id}, job {data.job_name!r}"
    sha = f"commit {data.sha[:12]}, " if data.sha else ""
    return f"{sha}uploaded by {data.uploaded_by or 'a person'}"


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            yield block


@app.command("upload")
def upload(
    project: ProjectArg,
    path: Annotated[
        Path, typer.Argument(help="A directory (packed as a tarball), a tarball, or any file.")
    ],
    server: ServerOpt,
    token: TokenOpt,
    name: Annotated[str | None, typer.Option("--name", help="Default: the path's name.")] = None,
    sha: Annotated[str | None, typer.Option("--sha", help="The commit it was built from.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a build output; the last line printed is its digest `sha256:…`. A directory
    is packed as a reproducible tarball; a file goes as it is."""
    if not path.exists():
        err.print(f"[red]error:[/] {path} does not exist")
        raise typer.Exit(2)
    remote = ApiClient(server, token, err)
    packed: Path | None = None
    try:
        if path.is_dir():
            packed = tarballs.temporary(suffix=".tar")
            count = tarballs.pack_tree(path, packed)
            err.print(f"packed {count} file(s) from {path}")
            source = packed
        elif path.is_file():
            source = path
        else:
            err.print(f"[red]error:[/] {path} is neither a directory nor a file")
            raise typer.Exit(2)
        media = tarballs.MEDIA_TYPE if tarballs.is_tarball(source) else "application/octet-stream"
        digest = "sha256:" + _sha256(source)
        params = {"name": name or path.resolve().name, "digest": digest}
        if sha:
            params["sha"] = sha
        data = remote.answer(
            ArtifactOut,
            "POST",
            f"/api/v1/projects/{project}/artifacts",
            params=params,
            content=_chunks(source),
            headers={"Content-Type": media},
            timeout=httpx.Timeout(30.0, write=None, read=600.0),
        )
    finally:
        if packed is not None:
            packed.unlink(missing_ok=True)
    if as_json:
        show(data, True, "")
    else:
        err.print(f"{data.name}: {data.size} bytes ({provenance(data)})")
    out.print(data.digest, soft_wrap=True)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    for block in _chunks(path):
        hasher.update(block)
    return hasher.hexdigest()


@app.command("list")
def list_artifacts(
    project: ProjectArg,
    server: ServerOpt,
    token: TokenOpt,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The project's artifacts, newest first, with their provenance."""
    remote = ApiClient(server, token, err)
    path = f"/api/v1/projects/{project}/artifacts"
    rows = remote.answers(ArtifactOut, "GET", path, params={"limit": limit})
    if as_json:
        show(rows, True, "")
        return
    table = Table("digest", "name", "size", "made by", "created")
    for row in rows:
        table.add_row(
            row.digest[:19],
            escape(row.name),
            str(row.size),
            escape(provenance(row)),
            row.created_at[:19],
        )
    out.print(table)


@app.command("show")
def show_artifact(
    project: ProjectArg,
    digest: Annotated[str, typer.Argument(help="sha256:…")],
    server: ServerOpt,
    token: TokenOpt,
    as_json: JsonOpt = False,
) -> None:
    """One artifact: size, media type and provenance."""
    remote = ApiClient(server, token, err)
    data = remote.answer(ArtifactOut, "GET", f"/api/v1/projects/{project}/artifacts/{digest}")
    show(
        data,
        as_json,
        f"{data.digest}\n  name {escape(data.name)}, {data.size} bytes, "
        f"{data.media_type}\n  made by {escape(provenance(data))}"
        f"\n  created {data.created_at}",
    )


@app.command("download")
def download(
    project: ProjectArg,
    digest: Annotated[str, typer.Argument(help="sha256:…")],
    server: ServerOpt,
    token: TokenOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write it.")] = Path(
        "artifact.tar"
    ),
) -> None:
    """Download an artifact, verified against its digest before it is written in place."""
    remote = ApiClient(server, token, err)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output.parent, delete=False) as handle:
        partial = Path(handle.name)
        hasher = hashlib.sha256()
        try:
            with remote.http.stream(
                "GET", f"/api/v1/projects/{project}/artifacts/{digest}/content"
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    remote.fail(response)
                for block in response.iter_bytes(1 << 20):
                    hasher.update(block)
                    handle.write(block)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            err.print(f"[red]error:[/] download failed: {exc}")
            raise typer.Exit(1) from exc
        except typer.Exit:
            partial.unlink(missing_ok=True)
            raise
    if f"sha256:{hasher.hexdigest()}" != digest:
        partial.unlink(missing_ok=True)
        err.print(f"[red]error:[/] the download does not match {digest}; nothing written")
        raise typer.Exit(1)
    partial.replace(output)
    err.print(f"{digest} → {output}")
