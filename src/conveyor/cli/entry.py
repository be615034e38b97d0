"""The `conveyor` command's entry point. `conveyor agent …` runs with nothing else of
the CLI loaded, so that an idle agent stays small (cli.agent); every other command goes
through the full app (cli.main)."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["agent"]:
        from conveyor.cli.agent import run_alone

        sys.argv[0:2] = ["conveyor agent"]
        run_alone()
        return
    from conveyor.cli.main import main as everything

    everything()
