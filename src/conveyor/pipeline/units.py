"""Label keys and sizes: what a service's `runtime` and a host's agent both read, with
nothing but pydantic imported (the agent imports this, and nothing else of the pipeline)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

LABEL_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$"
LabelKey = Annotated[str, Field(pattern=LABEL_KEY, max_length=63)]

SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(" + "|".join(SIZE_UNITS) + r")")


def parse_size(value: object) -> int:
    """`512MiB`, `4GiB`, `100MB` or a bare number of bytes → bytes. ValueError with a
    readable message otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (found := _SIZE.fullmatch(value.strip())):
        return int(float(found[1]) * SIZE_UNITS[found[2]])
    raise ValueError(f"expected a size like '512MiB' or '4GiB', got {value!r}")
