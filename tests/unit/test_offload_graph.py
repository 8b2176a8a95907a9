"""Cutting Dask graphs into jobs (no gateway): the parts, their order, and their values."""

from __future__ import annotations

import operator
from typing import Any

import dask
import dask.array as da
import dask.bag as db
import numpy as np
import pytest
from dask._task_spec import DataNode, Task, TaskRef

from farside._offload import _flatten, _nested
from farside._offload_plan import Part, plan, run_part, task_graph
from farside_protocol.payload import InputRef, substitute_inputs


class Captured:
    """A Dask scheduler ``get`` that plans the graph, then runs the parts in order here,
    handing each the exports of its parents as the worker would."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.tasks = 0

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        graph = task_graph(dsk)
        self.tasks = len(graph)
        self.parts = plan(graph, list(_flatten(keys)))
        exported: list[dict[Any, Any]] = []
        for part in self.parts:
            refs = [InputRef(p) for p in part.parents]
            inputs = substitute_inputs(refs, dict(enumerate(exported)))
            exported.append(run_part([graph[k] for k in part.keys], part.exports, inputs))
        values = {k: v for out in exported for k, v in out.items()}
        return _nested(keys, values)


def _check_order(parts: list[Part]) -> None:
    for index, part in enumerate(parts):
        assert all(p < index for p in part.parents), "a part comes before its parents"
        levels = [parts[p].level for p in part.parents]
        assert part.level == (max(levels) + 1 if levels else 0)


def test_array_reduction_is_one_part_per_block_chain() -> None:
    x = da.from_array(np.arange(64.0).reshape(8, 8), chunks=4)
    get = Captured()
    total = (x + x.T).sum()
    assert dask.compute(total, scheduler=get) == dask.compute(total, scheduler="sync")
    _check_order(get.parts)
    # the four add+sum chains, the two off-diagonal blocks each read by two chains, and
    # the aggregate; and never more parts than tasks
    assert len(get.parts) <= get.tasks
    assert get.parts[-1].parents  # the aggregate comes last and reads the chains


def test_bag_partitions_run_side_by_side() -> None:
    bag = db.from_sequence(range(100), npartitions=5).map(lambda v: v + 1).filter(lambda v: v % 3)
    get = Captured()
    assert dask.compute(bag.fold(operator.add), scheduler=get) == (
        bag.fold(operator.add).compute(scheduler="sync"),
    )
    assert len(get.parts) == 5 + 1
    assert [p.level for p in get.parts] == [0] * 5 + [1]


def test_delayed_chains_fuse_and_a_diamond_keeps_its_shared_node_once() -> None:
    step = dask.delayed(lambda v, k: v * 2 + k)
    chains = []
    for start in range(3):
        value: Any = start
        for k in range(4):
            value = step(value, k)
        chains.append(value)
    get = Captured()
    total = dask.delayed(sum)(chains)
    assert dask.compute(total, scheduler=get) == dask.compute(total, scheduler="sync")
    assert get.tasks == 13
    assert [len(p.keys) for p in get.parts] == [4, 4, 4, 1]

    calls: list[int] = []

    def shared(n: int) -> int:
        calls.append(n)
        return n

    top = dask.delayed(shared)(5)
    diamond = dask.delayed(operator.add)(dask.delayed(abs)(top), dask.delayed(operator.neg)(top))
    assert dask.compute(diamond, scheduler=get) == (0,)
    assert calls == [5]  # run once, though two parts need it
    assert len(get.parts) == 4
    _check_order(get.parts)


def test_parallel_sources_of_a_reduction_stay_apart() -> None:
    parts = [dask.delayed(lambda n: b"x" * n)(n) for n in (3, 2, 1)]
    get = Captured()
    total = dask.delayed(lambda *blobs: [len(b) for b in blobs])(*parts)
    assert dask.compute(total, scheduler=get) == ([3, 2, 1],)
    assert len(get.parts) == 4


def test_plain_data_joins_the_part_that_uses_it() -> None:
    graph = {
        "data": DataNode("data", [1, 2, 3]),
        "a": Task("a", sum, TaskRef("data")),
        "b": Task("b", operator.mul, TaskRef("a"), 2),
    }
    (part,) = plan(graph, ["b"])
    assert part.keys == ["data", "a", "b"]
    assert part.exports == ["b"]


def test_exports_are_what_others_or_the_caller_need() -> None:
    graph = {
        "a": Task("a", operator.add, 1, 1),
        "b": Task("b", operator.mul, TaskRef("a"), 3),
        "c": Task("c", operator.neg, TaskRef("a")),
        "d": Task("d", operator.add, TaskRef("b"), TaskRef("c")),
    }
    parts = plan(graph, ["d", "b"])
    by_key = {k: p for p in parts for k in p.keys}
    assert by_key["a"].exports == ["a"]  # read by two other parts
    assert "b" in by_key["b"].exports  # wanted by the caller
    assert Captured()(graph, ["d", ["b"]]) == (4, (6,))


def test_a_graph_missing_a_task_says_which() -> None:
    graph = {"b": Task("b", operator.neg, TaskRef("a"))}
    with pytest.raises(KeyError, match="no task 'a'"):
        plan(graph, ["b"])


def test_old_style_tuple_graphs_are_converted() -> None:
    graph = task_graph({"x": 1, "y": (operator.add, "x", 10), "z": (sum, ["x", "y"])})
    get = Captured()
    assert get(graph, ["z", "y"]) == (12, 11)
    assert len(get.parts) == 1


@pytest.mark.parametrize("module", ["farside._offload_plan", "farside_protocol.payload"])
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert (result.failed, result.attempted > 0) == (0, True)
