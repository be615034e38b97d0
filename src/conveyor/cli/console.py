"""The CLI's two consoles (results to stdout, errors to stderr) and its exit codes."""

from __future__ import annotations

import os

from rich.console import Console

# Logs and CI consoles are not terminals; Rich would squeeze tables into 80 columns there.
_WIDTH = None if os.environ.get("COLUMNS") or os.isatty(1) else 140
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
"""A pipeline file or a setting that is not valid."""
EXIT_SKIPPED = 3
EXIT_CANCELED = 130
