"""Cutting a Dask graph into jobs: one per chain of tasks, not one per task.

A job boundary costs an upload and a download of the value that crosses it, and a trip
through the pool; a job per tiny task would spend more on that than on the work. So the
graph is cut where parallelism needs it and nowhere else. Walking from the outputs towards
the sources, a task joins the part (future job) of the tasks that use it when

* all of its users are in one part, and
* it is plain data, or it is the only dependency that does work (not plain data) of each
  of its users: a linear chain.

A reduction, whose task has several dependencies that do work, keeps each of them a part
of its own, so they run side by side; a task used by several parts is a part of its own,
so it runs once (never twice: tasks need not be pure). Other parts read only a part's
root, the task it was started from (its users are in several parts, or it has none): a
cycle of parts would be a cycle of tasks, so the parts form a DAG. Each part's job runs
:func:`run_part` on a pilot's worker.

>>> from dask._task_spec import Task, TaskRef
>>> inc = lambda x: x + 1
>>> dsk = {"a": Task("a", inc, 1), "b": Task("b", inc, TaskRef("a")),
...        "c": Task("c", inc, TaskRef("b"))}
>>> [part.keys for part in plan(dsk, ["c"])]
[['a', 'b', 'c']]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dask._task_spec import DataNode, GraphNode, convert_legacy_graph
from dask.utils import key_split

__all__ = ["Part", "plan", "run_part", "task_graph"]

Key = Hashable


@dataclass
class Part:
    """Tasks that run as one job."""

    keys: list[Key]  # in an order that runs each task after its dependencies
    exports: list[Key]  # the values other parts, or the caller, need from this one
    parents: list[int]  # indexes (in the plan) of the parts whose exports it reads
    level: int  # 0 for parts without parents, else one more than the deepest parent

    @property
    def name(self) -> str:
        return str(key_split(self.keys[-1]))[:200]


def task_graph(dsk: Any) -> dict[Key, GraphNode]:
    """The graph a Dask scheduler's ``get`` is given, as task-spec nodes.

    Collections hand over a mapping of old-style tuples or :class:`GraphNode` objects, or
    an object with ``__dask_graph__`` (newer Dask); all become nodes.
    """
    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    return dict(convert_legacy_graph(dsk))


def _in_order(dsk: Mapping[Key, GraphNode], outputs: Iterable[Key]) -> list[Key]:
    """The tasks the outputs need, each after its dependencies (the rest is culled)."""
    order: list[Key] = []
    seen: set[Key] = set()
    for output in outputs:
        stack: list[tuple[Key, bool]] = [(output, False)]
        while stack:
            key, expanded = stack.pop()
            if expanded:
                order.append(key)
                continue
            if key in seen:
                continue
            if key not in dsk:
                raise KeyError(f"the Dask graph has no task {key!r}, which another one needs")
            seen.add(key)
            stack.append((key, True))
            stack.extend((dep, False) for dep in dsk[key].dependencies if dep not in seen)
    return order


def plan(dsk: Mapping[Key, GraphNode], outputs: list[Key]) -> list[Part]:
    """Cut the part of ``dsk`` that ``outputs`` need into parts, parents before children."""
    order = _in_order(dsk, outputs)
    users: dict[Key, list[Key]] = {key: [] for key in order}
    for key in order:
        for dep in dsk[key].dependencies:
            users[dep].append(key)

    def work(key: Key) -> bool:
        return not isinstance(dsk[key], DataNode)

    def chained(key: Key) -> bool:
        if not work(key):
            return True
        return all(
            sum(1 for dep in dsk[user].dependencies if work(dep)) == 1 for user in users[key]
        )

    group: dict[Key, int] = {}
    count = 0
    for key in reversed(order):
        owners = {group[user] for user in users[key]}
        if len(owners) == 1 and chained(key):
            group[key] = owners.pop()
        else:
            group[key] = count
            count += 1

    members: list[list[Key]] = [[] for _ in range(count)]
    for key in order:
        members[group[key]].append(key)
    wanted = set(outputs)
    parents: list[set[int]] = [set() for _ in range(count)]
    exports: list[list[Key]] = [[] for _ in range(count)]
    for key in order:
        own = group[key]
        parents[own].update(group[dep] for dep in dsk[key].dependencies if group[dep] != own)
        if key in wanted or any(group[user] != own for user in users[key]):
            exports[own].append(key)

    levels = _levels(parents)
    # parents before children, and within a level in the order the graph runs
    first = {g: order.index(members[g][0]) for g in range(count)}
    ranked = sorted(range(count), key=lambda g: (levels[g], first[g]))
    index = {g: i for i, g in enumerate(ranked)}
    return [
        Part(members[g], exports[g], sorted(index[p] for p in parents[g]), levels[g])
        for g in ranked
    ]


def _levels(parents: list[set[int]]) -> list[int]:
    levels = [0] * len(parents)
    children: list[list[int]] = [[] for _ in parents]
    waiting = [len(p) for p in parents]
    for child, ps in enumerate(parents):
        for parent in ps:
            children[parent].append(child)
    ready = [g for g, n in enumerate(waiting) if n == 0]
    while ready:
        g = ready.pop()
        for child in children[g]:
            levels[child] = max(levels[child], levels[g] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return levels


def run_part(
    nodes: list[GraphNode], exports: list[Key], inputs: list[dict[Key, Any]]
) -> dict[Key, Any]:
    """Run one part's tasks on the worker; return the values others need, by key.

    ``inputs`` are the parent parts' exports (the worker put them in place of the job's
    input placeholders). Values are dropped once no later task of the part needs them.
    """
    cache: dict[Key, Any] = {}
    for values in inputs:
        cache.update(values)
    left = Counter(dep for node in nodes for dep in node.dependencies)
    keep = set(exports)
    for node in nodes:
        # only its dependencies: a node checks that it got all it needs by making a set of
        # what it is given, which for the whole cache would cost quadratic time
        cache[node.key] = node({dep: cache[dep] for dep in node.dependencies})
        for dep in node.dependencies:
            left[dep] -= 1
            if left[dep] == 0 and dep not in keep:
                del cache[dep]
    return {key: cache[key] for key in exports}
