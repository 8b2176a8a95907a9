"""Outcomes: values, re-raised exceptions with their remote traceback, and failures."""

from __future__ import annotations

import pickle
import sys
import types

import pytest

import farside
from farside._outcome import outcome_of
from farside_protocol.models import JobEvent
from farside_protocol.payload import encode_exception, encode_value


def terminal(state: str, **fields: object) -> JobEvent:
    return JobEvent.model_validate(
        {"seq": 1, "job_id": 9, "state": state, "time": 0.0, "attempt": 1, **fields}
    )


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_value() -> None:
    out = outcome_of(terminal("finished"), encode_value({"a": [1, 2]}))
    assert (out.value, out.error, out.cancelled) == ({"a": [1, 2]}, None, False)


def test_exception_is_rebuilt_with_remote_traceback() -> None:
    out = outcome_of(terminal("failed"), encode_exception(raised(ValueError("bad input"))))
    assert type(out.error) is ValueError
    assert str(out.error) == "bad input"
    (note,) = out.error.__notes__
    assert note.startswith("Remote traceback (job 9):\n")
    assert "raise exc" in note


def test_unimportable_exception_type_becomes_remote_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("only_on_the_worker")
    exec("class Oops(Exception):\n    pass\n", module.__dict__)
    monkeypatch.setitem(sys.modules, "only_on_the_worker", module)
    data = encode_exception(raised(module.Oops("it broke")))
    pickle.loads(pickle.loads(data)[2].exception)  # while the module exists, it unpickles
    monkeypatch.delitem(sys.modules, "only_on_the_worker")

    out = outcome_of(terminal("failed"), data)
    assert isinstance(out.error, farside.RemoteError)
    assert out.error.type_name == "only_on_the_worker.Oops"
    assert out.error.job_id == 9
    assert "it broke" in str(out.error)
    assert "Oops" in out.error.remote_traceback


def test_failed_without_outcome() -> None:
    event = terminal("failed", reason="lost pilot 3", error_class="system")
    out = outcome_of(event, None)
    assert isinstance(out.error, farside.JobFailed)
    assert "lost pilot 3" in str(out.error)
    assert (out.error.job_id, out.error.error_class) == (9, "system")


def test_cancelled() -> None:
    assert outcome_of(terminal("cancelled"), None).cancelled


def test_value_that_cannot_load_here_is_a_task_error(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("worker_only_values")
    exec("class Thing:\n    pass\n", module.__dict__)
    monkeypatch.setitem(sys.modules, "worker_only_values", module)
    data = encode_value(module.Thing())
    monkeypatch.delitem(sys.modules, "worker_only_values")
    out = outcome_of(terminal("finished"), data)
    assert isinstance(out.error, farside.TaskError)
    assert "worker_only_values" in str(out.error)


def test_garbage_outcome_is_a_task_error() -> None:
    out = outcome_of(terminal("finished"), b"not a pickle")
    assert isinstance(out.error, farside.TaskError)
