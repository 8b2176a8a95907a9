"""A job's inputs: placeholders in its call replaced, in a real worker, by parents' values."""

from __future__ import annotations

import sys
from collections import namedtuple
from typing import Any

import cloudpickle
import pytest

from farside_protocol.payload import (
    InputRef,
    PayloadError,
    decode_outcome,
    dump_function,
    encode_call,
    encode_exception,
    encode_value,
    substitute_inputs,
)

from .conftest import WorkerHarness

cloudpickle.register_pickle_by_value(sys.modules[__name__])

Pair = namedtuple("Pair", "left right")


def test_placeholders_are_replaced_inside_nested_containers() -> None:
    values = {1: "one", 2: [2, 2]}
    nested = ([InputRef(1), (InputRef(2), {"k": InputRef(1)})], Pair(InputRef(2), 0))
    assert substitute_inputs(nested, values) == (
        ["one", ([2, 2], {"k": "one"})],
        Pair([2, 2], 0),
    )
    assert isinstance(substitute_inputs(Pair(InputRef(1), 0), values), Pair)


def test_containers_without_placeholders_are_not_copied() -> None:
    args = ([1, 2, (3, {"a": [4]})], {"x": 5})
    assert substitute_inputs(args, {1: "unused"}) is args


def test_a_placeholder_for_a_job_that_is_no_input_says_what_to_do() -> None:
    with pytest.raises(PayloadError, match="not one of its inputs; name it"):
        substitute_inputs([InputRef(3)], {1: "one"})


def combine(parts: list[Any], extra: dict[str, Any]) -> Any:
    return {"parts": parts, "extra": extra}


def _run_with_inputs(
    worker: WorkerHarness, fn: Any, inputs: dict[int, bytes], *args: Any, **kwargs: Any
) -> Any:
    payload = encode_call(dump_function(fn), args, kwargs)
    worker.process.run(1, payload, str(worker.workdir / "scratch"), inputs)
    _, outcome = worker.collect(1)
    return outcome


def test_worker_substitutes_the_parents_values(worker: WorkerHarness) -> None:
    inputs = {7: encode_value([1, 2]), 8: encode_value({"deep": True})}
    outcome = _run_with_inputs(
        worker, combine, inputs, [InputRef(7), (InputRef(8),)], extra={"x": InputRef(7)}
    )
    assert outcome.exit_code == 0, outcome.error
    assert decode_outcome(outcome.result) == (
        True,
        {"parts": [[1, 2], ({"deep": True},)], "extra": {"x": [1, 2]}},
    )


def test_an_input_that_cannot_be_loaded_fails_the_job_clearly(worker: WorkerHarness) -> None:
    outcome = _run_with_inputs(worker, combine, {7: b"not an outcome"}, [InputRef(7)], extra={})
    assert outcome.exit_code == 1
    assert outcome.error_class == "user"
    assert "cannot load the result of input job 7" in outcome.error


def test_an_error_outcome_as_input_is_a_system_error(worker: WorkerHarness) -> None:
    inputs = {7: encode_exception(ValueError("parent failed"))}
    outcome = _run_with_inputs(worker, combine, inputs, [InputRef(7)], extra={})
    assert outcome.error_class == "system"
    assert "input job 7 ended in an error" in outcome.error


def test_a_placeholder_not_among_the_inputs_fails_the_job(worker: WorkerHarness) -> None:
    outcome = _run_with_inputs(worker, combine, {7: encode_value(1)}, [InputRef(8)], extra={})
    assert outcome.error_class == "user"
    assert "refers to job 8, which is not one of its inputs" in outcome.error
