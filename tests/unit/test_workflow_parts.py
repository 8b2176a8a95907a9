"""The parts of workflow runs that need no gateway: journal keys, states, reports, and the
worker's lifeline to its pilot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from farside._journal import Journal, call_key
from farside_protocol.models import JobSpec
from farside_protocol.payload import encode_call
from farside_protocol.workflows import WorkflowReport, WorkflowState, workflow_state

KEY_IN_A_FRESH_PROCESS = """
from farside._journal import call_key
from farside_protocol.models import JobSpec
from farside_protocol.payload import encode_call
point = {"learning_rate": 0.1 * 3, "depth": 4, "tags": ("a", "b"), "seed": None}
print(call_key(7, JobSpec(payload=encode_call(b"f", (point,), {"n": 2.5}), name="evaluate")))
"""


def _spec(*args: object, name: str = "evaluate", **kwargs: object) -> JobSpec:
    return JobSpec(payload=encode_call(b"f", args, kwargs), name=name)


def test_a_call_has_the_same_key_in_every_process() -> None:
    # the body runs again in another process (on another pilot): its calls must match
    keys = {
        subprocess.run(
            [sys.executable, "-c", KEY_IN_A_FRESH_PROCESS],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2)
    }
    point = {"learning_rate": 0.1 * 3, "depth": 4, "tags": ("a", "b"), "seed": None}
    here = call_key(7, _spec(point, n=2.5))
    assert keys == {here}


def test_keys_tell_calls_and_places_apart() -> None:
    base = call_key(0, _spec(1.0))
    assert call_key(1, _spec(1.0)) != base  # another place
    assert call_key(0, _spec(1.5)) != base  # another argument
    assert call_key(0, _spec(1.0, name="other")) != base  # another task
    assert call_key(0, _spec(x=1.0)) != base  # by keyword


def test_the_journal_numbers_calls_in_submission_order() -> None:
    journal = Journal(workflow_id=3)
    first = journal.stamp([_spec(1), _spec(2)])
    second = journal.stamp([_spec(1)])
    places = [spec.journal_key.split(":")[0] for spec in [*first, *second] if spec.journal_key]
    assert places == ["0", "1", "2"]
    assert first[0].journal_key != second[0].journal_key  # the same call, later: a new place


@pytest.mark.parametrize(
    ("body", "paused", "state"),
    [
        ("pending", False, WorkflowState.QUEUED),
        ("queued", False, WorkflowState.QUEUED),
        ("assigned", False, WorkflowState.QUEUED),
        ("running", False, WorkflowState.RUNNING),
        ("finished", False, WorkflowState.FINISHED),
        ("failed", False, WorkflowState.FAILED),
        ("cancelled", False, WorkflowState.CANCELLED),
        ("cancelled", True, WorkflowState.PAUSED),
    ],
)
def test_a_runs_state_follows_its_body(body: str, paused: bool, state: WorkflowState) -> None:
    assert workflow_state(body, paused) is state


def test_reports_are_small_json() -> None:
    assert WorkflowReport(values={"iteration": 3, "best": [0.1, 2]}).values["iteration"] == 3
    with pytest.raises(ValidationError, match="report summaries"):
        WorkflowReport(values={"data": "x" * 20_000})
    with pytest.raises(ValidationError, match="must be JSON"):
        WorkflowReport(values={"when": object()})


ORPHAN = """
import os, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c",
     "from farside_pilot.lifeline import watch_parent; import time; watch_parent(0.1); "
     "time.sleep(60)"],
    start_new_session=True,
)
print(child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_a_worker_dies_with_its_pilot() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(ORPHAN)], stdout=subprocess.PIPE, text=True
    ) as pilot:
        assert pilot.stdout is not None
        worker = int(pilot.stdout.readline())
        time.sleep(0.5)
        assert _alive(worker)
        pilot.send_signal(signal.SIGKILL)
        pilot.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)
