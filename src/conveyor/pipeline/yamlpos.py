"""YAML loading that remembers where every key and value came from.

ruamel.yaml composes the document into nodes (YAML 1.2, so `on:` stays a string, unlike
YAML 1.1 loaders that turn it into `True`). We build plain Python data from the nodes
ourselves, so that every path in the data has a line and column, and so that duplicate
keys are reported (all of them) instead of silently overwritten. Anchors, aliases and `<<`
merge keys work as YAML users expect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from conveyor.pipeline.errors import Position

PathKey = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_DEPTH = 64
_MAX_NODES = 200_000
"""Bound on values built, so that alias bombs ("billion laughs") cannot exhaust memory."""


def _tag(node: Node) -> str:
    tag = node.tag
    return str(getattr(tag, "value", tag))


def _pos(node: Node) -> Position:
    mark = node.start_mark
    return Position(mark.line + 1, mark.column + 1)


@dataclass
class Located:
    """Data loaded from YAML with the place of every value and mapping key."""

    data: Any
    values: dict[PathKey, Position] = field(default_factory=dict)
    keys: dict[PathKey, Position] = field(default_factory=dict)
    problems: list[tuple[Position, str]] = field(default_factory=list)

    def value_at(self, path: PathKey) -> Position:
        """The position of the value at `path`, or of its nearest ancestor that has one."""
        return self._nearest(self.values, path)

    def key_at(self, path: PathKey) -> Position:
        """The position of the key that names `path` (falls back to the value's position)."""
        if path in self.keys:
            return self.keys[path]
        return self.value_at(path)

    @staticmethod
    def _nearest(table: dict[PathKey, Position], path: PathKey) -> Position:
        for end in range(len(path), -1, -1):
            found = table.get(path[:end])
            if found is not None:
                return found
        return Position(1, 1)


class YamlSyntaxError(Exception):
    """The text is not YAML at all; carries the place the parser stopped."""

    def __init__(self, position: Position, message: str) -> None:
        super().__init__(message)
        self.position = position
        self.message = message


class _Builder:
    def __init__(self, yaml: YAML, out: Located) -> None:
        self._constructor = yaml.constructor
        self._out = out
        self._budget = _MAX_NODES

    def build(self, node: Node, path: PathKey, depth: int = 0) -> Any:
        self._out.values.setdefault(path, _pos(node))
        self._budget -= 1
        if self._budget == -1:
            self._out.problems.append((_pos(node), f"more than {_MAX_NODES} values (aliases?)"))
        if depth > _MAX_DEPTH:
            self._out.problems.append((_pos(node), f"nesting deeper than {_MAX_DEPTH} levels"))
            return None
        if self._budget < 0:
            return None
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: Node) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except (YAMLError, ValueError, OverflowError) as exc:
            self._out.problems.append((_pos(node), f"bad value: {exc}"))
            return None

    def _mapping(self, node: MappingNode, path: PathKey, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, Position] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if _tag(key_node) == _MERGE_TAG:
                merged.update(self._merge_sources(value_node, path, depth))
                continue
            key = self._key(key_node)
            if key is None:
                continue
            if key in first_seen:
                first = first_seen[key]
                self._out.problems.append(
                    (
                        _pos(key_node),
                        f"duplicate key {key!r} (first defined at line {first.line})",
                    )
                )
                continue
            first_seen[key] = _pos(key_node)
            self._out.keys[(*path, key)] = _pos(key_node)
            result[key] = self.build(value_node, (*path, key), depth + 1)
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def _merge_sources(self, node: Node, path: PathKey, depth: int) -> dict[Any, Any]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        merged: dict[Any, Any] = {}
        for source in sources:
            if not isinstance(source, MappingNode):
                self._out.problems.append((_pos(source), "`<<` must merge a mapping"))
                continue
            for key, value in self._mapping(source, path, depth).items():
                merged.setdefault(key, value)
        return merged

    def _key(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            self._out.problems.append((_pos(node), "a mapping key must be a plain value"))
            return None
        key = self._scalar(node)
        if key is None:
            return None
        return key if isinstance(key, str) else str(key)


def load_located(text: str) -> Located:
    """Parse one YAML document into data plus positions.

    Raises YamlSyntaxError when the text is not valid YAML. Problems the data itself has
    (duplicate keys, complex keys) are collected in `problems`, not raised.
    """
    yaml = YAML(typ="safe")  # the C parser when ruamel.yaml.clib is installed; same marks
    out = Located(data=None)
    try:
        node = yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        raise YamlSyntaxError(where, f"YAML syntax error: {exc.problem or exc}") from exc
    except YAMLError as exc:
        raise YamlSyntaxError(Position(1, 1), f"YAML error: {exc}") from exc
    if node is None:
        return out
    out.data = _Builder(yaml, out).build(node, ())
    return out
