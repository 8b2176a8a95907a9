"""@farside.task: options, local calls, the function pickled once, local modules by value."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import cloudpickle
import pytest
from pydantic import ValidationError

import farside
from farside import _task
from farside._task import ships_by_value
from farside_protocol.payload import decode_call
from support.fake_gateway import FakeGateway


def test_bare_decorator_and_local_call() -> None:
    @farside.task
    def add(a: int, b: int = 1) -> int:
        """Add."""
        return a + b

    assert isinstance(add, farside.Task)
    assert add(1, b=2) == 3
    assert add.__doc__ == "Add."
    assert add.resources == farside.Resources()


def test_options_are_checked_at_decoration() -> None:
    with pytest.raises(ValueError, match="cannot parse memory"):
        farside.task(memory="lots")(print)
    with pytest.raises(ValidationError):
        farside.task(cores=0)(print)
    t = farside.task(cores=2, memory="2 GiB", walltime="1h30m", gpus=1, priority=5)(print)
    assert (t.resources.cores, t.resources.memory, t.resources.walltime) == (2, 2 * 1024**3, 5400)
    assert t.options(memory="4 GiB").resources.memory == 4 * 1024**3
    assert t.options(memory="4 GiB").priority == 5


def test_function_is_pickled_once_per_task(
    gw: farside.Gateway, fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    real = _task.dump_function

    def counting(fn: object) -> bytes:
        calls.append(fn)
        return real(fn)

    monkeypatch.setattr(_task, "dump_function", counting)

    @farside.task
    def inc(x: int) -> int:
        return x + 1

    assert list(inc.map(range(5))) == [1, 2, 3, 4, 5]
    assert inc.submit(1).result(timeout=10) == 2
    assert len(calls) == 1
    payloads = {decode_call(j.spec.payload).function for j in fake_gateway.jobs.values()}
    assert payloads == {inc.function_bytes}


def test_local_module_ships_by_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "analysis_helpers_xyz.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import analysis_helpers_xyz  # type: ignore[import-not-found]

    try:
        assert ships_by_value(analysis_helpers_xyz)
        t = farside.task(analysis_helpers_xyz.double)
        data = t.function_bytes
        assert "analysis_helpers_xyz" in cloudpickle.list_registry_pickle_by_value()
        del sys.modules["analysis_helpers_xyz"]
        monkeypatch.syspath_prepend("/nonexistent")
        sys.path.remove(str(tmp_path))
        assert cloudpickle.loads(data)(4) == 8  # no import of the module needed
    finally:
        cloudpickle.unregister_pickle_by_value(analysis_helpers_xyz)
        sys.modules.pop("analysis_helpers_xyz", None)


def test_installed_modules_travel_by_reference() -> None:
    import json

    import httpx

    assert not ships_by_value(json)
    assert not ships_by_value(httpx)
    assert not ships_by_value(farside)


def test_task_pickles_without_its_gateway(gw: farside.Gateway) -> None:
    t = farside.task(abs, gateway=gw)
    _ = t.function_bytes
    copy = pickle.loads(cloudpickle.dumps(t))
    assert copy._gateway is None
    assert copy(-3) == 3
