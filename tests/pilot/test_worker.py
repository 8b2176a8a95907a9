"""A real worker process: results, errors, output capture, crashes, measurements."""

from __future__ import annotations

import os
import pickle
import sys
import time
import types

import cloudpickle

from farside_protocol.payload import ErrorInfo, decode_outcome, encode_call

from .conftest import WorkerHarness

# Workers cannot import this test module: send its functions by value, as notebooks do.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_returns_the_value(worker: WorkerHarness) -> None:
    logs, outcome = worker.run(lambda a, b=0: {"sum": a + b}, 40, b=2)
    assert logs == []
    assert outcome.exit_code == 0
    assert outcome.error_class is None
    assert outcome.result is not None
    assert decode_outcome(outcome.result) == (True, {"sum": 42})
    assert outcome.wall_time >= 0


def fails() -> None:
    raise ValueError("bad input 17")


def test_exception_travels_with_traceback(worker: WorkerHarness) -> None:
    _, outcome = worker.run(fails)
    assert outcome.exit_code == 1
    assert outcome.error_class == "user"
    assert outcome.error == "ValueError: bad input 17"
    assert outcome.result is not None
    ok, info = decode_outcome(outcome.result)
    assert not ok
    assert isinstance(info, ErrorInfo)
    assert info.type_name == "builtins.ValueError"
    assert "fails" in info.traceback
    assert "bad input 17" in info.traceback
    assert isinstance(pickle.loads(info.exception), ValueError)


def chatty(n: int) -> str:
    for i in range(n):
        print(f"line {i}")
    print("warn", file=sys.stderr)
    print("no newline at end", end="")
    return "done"


def test_prints_arrive_in_order_before_the_result(worker: WorkerHarness) -> None:
    logs, outcome = worker.run(chatty, 50)
    stdout = [m[4] for m in logs if m[2] == "stdout"]
    stderr = [m[4] for m in logs if m[2] == "stderr"]
    assert stdout == [f"line {i}" for i in range(50)] + ["no newline at end"]
    assert stderr == ["warn"]
    times = [m[3] for m in logs]
    assert times == sorted(times)
    assert outcome.exit_code == 0


def writes_to_fds() -> int:
    os.write(1, b"raw stdout\n")
    os.write(2, b"raw stderr, partial")
    os.system("echo from a child process")
    return 1


def test_fd_level_output_is_captured(worker: WorkerHarness) -> None:
    logs, _ = worker.run(writes_to_fds)
    texts = {(m[2], m[4]) for m in logs}
    assert ("stdout", "raw stdout") in texts
    assert ("stdout", "from a child process") in texts
    assert ("stderr", "raw stderr, partial") in texts


def hard_exit() -> None:
    print("about to leave")
    os._exit(3)


def test_a_worker_that_exits_reports_its_status(worker: WorkerHarness) -> None:
    worker.send(hard_exit)
    messages = []
    while (message := worker.next())[0] != "exited":
        messages.append(message)
    assert message == ("exited", 3)
    assert messages[0][:3] == ("log", 1, "stdout")
    assert messages[0][4] == "about to leave"


def allocate(mb: int) -> int:
    block = bytearray(mb * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


def test_max_rss_is_measured_per_job(worker: WorkerHarness) -> None:
    _, small = worker.run(lambda: None)
    _, big = worker.run(allocate, 200)
    _, after = worker.run(lambda: None)
    assert small.max_rss is not None
    assert big.max_rss is not None
    assert after.max_rss is not None
    assert big.max_rss - small.max_rss > 180 * 1024**2
    # the peak is reset between jobs, so the big job does not show up in the next one
    assert after.max_rss < big.max_rss - 150 * 1024**2


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_time_is_measured(worker: WorkerHarness) -> None:
    _, outcome = worker.run(burn, 0.3)
    assert 0.25 < outcome.cpu_time < 2.0


def counting() -> int:
    counting.calls = getattr(counting, "calls", 0) + 1  # type: ignore[attr-defined]
    return counting.calls  # type: ignore[attr-defined]


def test_functions_are_cached_by_digest(worker: WorkerHarness) -> None:
    # A fresh unpickle would give a fresh function object and the count would restart.
    results = [decode_outcome(worker.run(counting)[1].result or b"")[1] for _ in range(3)]
    assert results == [1, 2, 3]


def test_each_job_runs_in_a_clean_scratch_directory(worker: WorkerHarness) -> None:
    def leave_file() -> str:
        with open("left-behind.txt", "w") as f:
            f.write("x")
        return os.getcwd()

    _, first = worker.run(leave_file)
    _, second = worker.run(lambda: sorted(os.listdir(".")))
    cwd = decode_outcome(first.result or b"")[1]
    assert cwd == str(worker.workdir / "scratch")
    assert decode_outcome(second.result or b"")[1] == []


def test_missing_module_is_a_clear_user_error(worker: WorkerHarness) -> None:
    # A function pickled by reference to a module that exists only in this process.
    module = types.ModuleType("not_a_module")
    exec("def f(): return 1", module.__dict__)
    sys.modules["not_a_module"] = module
    try:
        function = pickle.dumps(module.f)
    finally:
        del sys.modules["not_a_module"]
    worker.process.run(99, encode_call(function, (), {}), str(worker.workdir / "s"))
    _, outcome = worker.collect(99)
    assert outcome.error_class == "user"
    assert outcome.error is not None
    assert "'not_a_module' is not importable on the pilot" in outcome.error


def test_garbage_payload_is_a_system_error(worker: WorkerHarness) -> None:
    worker.process.run(5, b"not a pickle", str(worker.workdir / "s"))
    _, outcome = worker.collect(5)
    assert outcome.error_class == "system"
    assert outcome.exit_code == 1
    assert outcome.error is not None
    assert "cannot decode" in outcome.error
