"""The options every command that talks to a coordinator shares (only typer imported:
`conveyor agent` uses them too, and loads nothing else of the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ServerOpt = Annotated[
    str, typer.Option("--server", envvar="CONVEYOR_SERVER", help="Coordinator URL.")
]
TokenOpt = Annotated[str, typer.Option("--token", envvar="CONVEYOR_TOKEN", help="API token.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="[env CONVEYOR_DATA_DIR, default ./.conveyor]")
]
