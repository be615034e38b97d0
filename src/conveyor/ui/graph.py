"""A run's jobs as a graph, laid out here (no browser-side layout): each job in the
column of its longest chain of `needs`, the columns' jobs in stage order, and an edge
for each need (GitLab draws lines only for `needs` too). Pure: names in, boxes and
edges out, in SVG user units."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 190, 34
GAP_X, GAP_Y = 70, 14
PAD = 10


@dataclass(frozen=True)
class Node:
    name: str
    x: int
    y: int


@dataclass(frozen=True)
class Edge:
    path: str
    """An SVG path from the need's right edge to the job's left edge."""


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int


def layout(jobs: Sequence[str], needs: Mapping[str, Sequence[str]]) -> Graph:
    """`jobs` in the run's order (a topological order of `needs`)."""
    depth: dict[str, int] = {}
    for name in jobs:
        depth[name] = 1 + max((depth[n] for n in needs.get(name, ()) if n in depth), default=-1)
    columns: dict[int, list[str]] = {}
    for name in jobs:
        columns.setdefault(depth[name], []).append(name)
    place: dict[str, Node] = {}
    for column, members in sorted(columns.items()):
        for row, name in enumerate(members):
            x = PAD + column * (WIDTH + GAP_X)
            place[name] = Node(name, x, PAD + row * (HEIGHT + GAP_Y))
    edges = []
    for name in jobs:
        for need in needs.get(name, ()):
            if need not in place:
                continue
            a, b = place[need], place[name]
            x1, y1 = a.x + WIDTH, a.y + HEIGHT // 2
            x2, y2 = b.x, b.y + HEIGHT // 2
            middle = (x1 + x2) // 2
            edges.append(Edge(f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"))
    tallest = max((len(m) for m in columns.values()), default=0)
    return Graph(
        nodes=tuple(place[name] for name in jobs),
        edges=tuple(edges),
        width=2 * PAD + len(columns) * WIDTH + max(0, len(columns) - 1) * GAP_X,
        height=2 * PAD + tallest * HEIGHT + max(0, tallest - 1) * GAP_Y,
    )
