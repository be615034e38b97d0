"""Load a pipeline file: YAML with positions → schema → lint, with every error at once."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from conveyor.pipeline.errors import PipelineError, PipelineInvalid, Position
from conveyor.pipeline.lint import lint, suggest
from conveyor.pipeline.schema import PipelineSpec
from conveyor.pipeline.yamlpos import Located, PathKey, YamlSyntaxError, load_located

MAX_FILE_BYTES = 1_000_000


@dataclass(frozen=True)
class LoadedPipeline:
    """A checked pipeline and where it came from."""

    spec: PipelineSpec
    file: Path
    located: Located


def load_pipeline(path: Path | str) -> LoadedPipeline:
    """Read and check a pipeline file. Raises PipelineInvalid with every error found."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise PipelineInvalid(
            [PipelineError(str(file), Position(1, 1), f"cannot read: {exc.strerror}")]
        ) from exc
    return parse_pipeline(raw, str(file), base=file)


def parse_pipeline(raw: bytes | str, name: str, base: Path | None = None) -> LoadedPipeline:
    """Check pipeline text. `name` is used in error messages."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_FILE_BYTES:
            msg = f"file is larger than {MAX_FILE_BYTES} bytes"
            raise PipelineInvalid([PipelineError(name, Position(1, 1), msg)])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            msg = f"not UTF-8 text (byte {exc.start})"
            raise PipelineInvalid([PipelineError(name, Position(1, 1), msg)]) from exc
    else:
        text = raw
    try:
        located = load_located(text)
    except YamlSyntaxError as exc:
        raise PipelineInvalid([PipelineError(name, exc.position, exc.message)]) from exc

    errors = [PipelineError(name, pos, msg) for pos, msg in located.problems]
    spec: PipelineSpec | None = None
    if not isinstance(located.data, dict):
        got = "an empty file" if located.data is None else type(located.data).__name__
        errors.append(PipelineError(name, Position(1, 1), f"expected a mapping, got {got}"))
    else:
        try:
            spec = PipelineSpec.model_validate(located.data)
        except ValidationError as exc:
            errors += [_schema_error(name, located, err) for err in exc.errors()]
        for finding in lint(located.data):
            where = (
                located.key_at(finding.path) if finding.at_key else located.value_at(finding.path)
            )
            errors.append(PipelineError(name, where, finding.message))
    if errors or spec is None:
        raise PipelineInvalid(_dedupe(errors))
    return LoadedPipeline(spec=spec, file=base or Path(name), located=located)


def _dedupe(errors: list[PipelineError]) -> list[PipelineError]:
    return list(dict.fromkeys(errors))


def _dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _schema_error(name: str, located: Located, err: ErrorDetails) -> PipelineError:
    loc: PathKey = tuple(err["loc"])
    kind = err["type"]
    if loc and loc[-1] == "[key]":
        path = loc[:-1]
        return PipelineError(name, located.key_at(path), f"{_dotted(path)}: bad name: {_msg(err)}")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        fields = _fields_at(loc[:-1])
        hint = suggest(key, fields) if fields else ""
        where = f" in {_dotted(loc[:-1])}" if len(loc) > 1 else ""
        return PipelineError(name, located.key_at(loc), f"unknown key {key!r}{where}{hint}")
    if kind == "missing":
        parent = loc[:-1]
        return PipelineError(
            name,
            located.key_at(parent) if parent else Position(1, 1),
            f"{_dotted(parent)}: missing required key {loc[-1]!r}",
        )
    message = f"{_dotted(loc)}: {_msg(err)}"
    value = err.get("input")
    if isinstance(value, str | int | float | bool) and kind != "value_error":
        message += f", got {value!r}"
    return PipelineError(name, located.value_at(loc), message)


def _msg(err: ErrorDetails) -> str:
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:]


def _fields_at(path: PathKey) -> list[str]:
    """The keys the model at `path` accepts, for "did you mean" hints."""
    current: Any = PipelineSpec
    for part in path:
        current = _step(current, part)
        if current is None:
            return []
    model = _unwrap_model(current)
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _unwrap_model(tp: Any) -> type[BaseModel] | None:
    for candidate in _members(tp):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _members(tp: Any) -> list[Any]:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            out += _members(arg)
        return out
    return [tp]


def _step(tp: Any, part: str | int) -> Any:
    for member in _members(tp):
        if isinstance(member, type) and issubclass(member, BaseModel):
            for field_name, info in member.model_fields.items():
                if part in (field_name, info.alias):
                    return info.annotation
        origin = typing.get_origin(member)
        if origin is dict and isinstance(part, str):
            return typing.get_args(member)[1]
        if origin is list and isinstance(part, int):
            return typing.get_args(member)[0]
    return None
