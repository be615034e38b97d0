"""Errors in a pipeline file, each with the place it points at."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in a file, 1-based as editors show it."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class PipelineError:
    """One problem in a pipeline file."""

    file: str
    position: Position
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.position.line}:{self.position.column}: {self.message}"


class PipelineInvalid(Exception):
    """A pipeline file has one or more errors; `errors` holds every one, sorted by place."""

    def __init__(self, errors: list[PipelineError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.file, e.position, e.message))
        super().__init__("\n".join(str(e) for e in self.errors))
