from __future__ import annotations

import pytest

from farside_gateway.pool.changes import TRANSITIONS, Changes, IllegalTransition
from farside_protocol import JobState
from farside_protocol.states import TERMINAL_STATES


def test_final_states_are_final() -> None:
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
        for target in JobState:
            with pytest.raises(IllegalTransition):
                Changes(0.0).transition(1, "u", state, target, 1)


def test_every_state_is_reachable_from_pending() -> None:
    seen = {JobState.PENDING}
    frontier = [JobState.PENDING]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(JobState)


def test_queued_cannot_jump_to_running() -> None:
    with pytest.raises(IllegalTransition, match="queued -> running"):
        Changes(0.0).transition(1, "u", JobState.QUEUED, JobState.RUNNING, 1)


def test_changes_record_wakeups() -> None:
    changes = Changes(5.0)
    changes.transition(7, "alice", JobState.PENDING, JobState.QUEUED, 0)
    changes.transition(8, "bob", JobState.RUNNING, JobState.FINISHED, 1)
    assert changes.queued
    assert changes.owners == {"alice", "bob"}
    assert changes.ended_jobs == {8}
    assert [r["state"] for r in changes.event_rows] == ["queued", "finished"]
