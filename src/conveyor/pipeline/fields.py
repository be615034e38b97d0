"""Value types shared by the sections of `conveyor.yml`: the strict base model, and
annotated types that accept GitLab-style shorthands (`script: "make"` for a list) and
check globs, cron, durations and environment names."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from conveyor.pipeline.durations import parse_duration
from conveyor.pipeline.patterns import check_cron, check_glob
from conveyor.pipeline.units import parse_size

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Model(BaseModel):
    """Base for every section: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def as_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a string or a list of strings, got {value!r}")
    return value


def valid_glob(pattern: str) -> str:
    problem = check_glob(pattern)
    if problem:
        raise ValueError(problem)
    return pattern


def valid_cron(expression: str) -> str:
    problem = check_cron(expression)
    if problem:
        raise ValueError(problem)
    return expression


def valid_env(env: dict[str, str]) -> dict[str, str]:
    for name in env:
        if not ENV_NAME_PATTERN.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
        if name.startswith("CONVEYOR_"):
            raise ValueError(f"{name!r}: the CONVEYOR_ prefix is reserved for Conveyor")
    return env


def env_values(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif isinstance(item, int | float):
            out[key] = str(item)
        else:
            out[key] = item
    return out


StrList = Annotated[list[str], BeforeValidator(as_list, json_schema_input_type=str | list[str])]
Glob = Annotated[str, AfterValidator(valid_glob)]
Globs = Annotated[
    list[Glob],
    BeforeValidator(as_list, json_schema_input_type=str | list[str]),
    Field(min_length=1),
]
Script = Annotated[
    list[Annotated[str, Field(min_length=1)]],
    BeforeValidator(as_list, json_schema_input_type=str | list[str]),
]
Duration = Annotated[
    float,
    BeforeValidator(parse_duration, json_schema_input_type=str | float),
]
Env = Annotated[
    dict[str, str],
    BeforeValidator(env_values, json_schema_input_type=dict[str, str | int | float | bool]),
    AfterValidator(valid_env),
]
Size = Annotated[int, BeforeValidator(parse_size, json_schema_input_type=str | int)]
"""Bytes, written `512MiB`, `4GiB`, `100MB` or as a number."""
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]
Labels = Annotated[
    list[Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]],
    BeforeValidator(as_list, json_schema_input_type=str | list[str]),
]
"""`labels`: every label a runner must have to take the job (GitLab calls them tags)."""
