"""farside.widgets: the board behind JobMonitor, and both widgets against the fake gateway."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

import farside
from farside import JobState
from farside.widgets import JobMonitor, LogView
from farside.widgets._board import JobBoard
from farside_protocol.models import JobEvent, JobInfo, Resources
from support.fake_gateway import USER_TOKEN, FakeGateway

EVENTS = iter(range(1000, 10**9))


def info(
    job_id: int, state: str, group: str | None = "m", owner: str = "alice", **kw: Any
) -> JobInfo:
    now = datetime.now(UTC)
    return JobInfo(
        id=job_id,
        name="f",
        group=group,
        owner=owner,
        state=JobState(state),
        site=None,
        pilot_id=None,
        attempts=1,
        resources=Resources(),
        priority=0,
        created=now,
        queued=now,
        started=None,
        ended=None,
        exit_code=None,
        error_class=None,
        error=kw.get("error"),
        wall_time=None,
        cpu_time=None,
        max_rss=None,
        kind=kw.get("kind", "function"),
    )


def event(job_id: int, state: str, reason: str | None = None) -> JobEvent:
    return JobEvent(
        seq=next(EVENTS), job_id=job_id, state=JobState(state), time=0.0, attempt=1, reason=reason
    )


def wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return value


# ---------------------------------------------------------------------- the board


def test_board_counts_maps_by_state_and_keeps_failure_reasons() -> None:
    board = JobBoard("alice")
    board.apply_snapshot([info(1, "queued"), info(2, "queued"), info(3, "finished", group=None)])
    assert board.apply_events([event(1, "assigned"), event(2, "running")]) == set()
    assert board.counts("m") == dict.fromkeys(board.counts("m"), 0) | {"running": 2}
    board.apply_events([event(1, "failed", "ValueError: boom"), event(2, "finished")])
    assert board.counts("m")["failed"] == 1
    assert board.counts("m")["finished"] == 1
    assert board.counts()["finished"] == 2  # the single job counts in the total
    [failure] = board.failures()
    assert (failure.job_id, failure.group, failure.reason) == (1, "m", "ValueError: boom")
    [newest, single] = board.groups()
    assert (newest.group, newest.total, newest.ended) == (None, 1, 1)
    assert (single.group, single.total, single.ended) == ("m", 2, 2)


def test_a_retried_job_is_no_longer_listed_as_failed() -> None:
    board = JobBoard("alice")
    board.apply_snapshot([info(1, "failed", error="lost pilot")])
    assert board.failure_count() == 1
    # a snapshot only ever says failed for a final failure, but events may move a job on
    board.apply_events([event(1, "queued", "attempt 1 failed (system): lost pilot; retrying")])
    assert board.failures() == []
    assert board.counts("m")["queued"] == 1


def test_jobs_first_seen_in_events_are_looked_up_and_keep_their_latest_event() -> None:
    board = JobBoard("alice")
    unknown = board.apply_events([event(7, "queued"), event(7, "running"), event(8, "queued")])
    assert unknown == {7, 8}
    assert board.pending_lookups() == {7, 8}
    assert board.counts() == dict.fromkeys(board.counts(), 0)
    # the listing is older than the events: the event's state wins, the listing tells the group
    board.apply_lookup({7, 8}, [info(7, "queued", group="new")])
    assert board.counts("new")["running"] == 1
    assert board.pending_lookups() == set()
    assert board.apply_events([event(8, "finished")]) == set()  # 8 was not listed: ignored
    assert sum(board.counts().values()) == 1


def test_a_snapshot_does_not_undo_what_events_said() -> None:
    board = JobBoard("alice")
    board.apply_lookup({1}, [info(1, "queued")])
    board.apply_events([event(1, "finished")])
    board.apply_snapshot([info(1, "running")])
    assert board.counts("m")["finished"] == 1
    assert board.counts("m")["running"] == 0


def test_board_keeps_only_the_owner_and_the_group_asked_for() -> None:
    board = JobBoard("alice", group="m")
    board.apply_snapshot(
        [info(1, "queued"), info(2, "queued", owner="bob"), info(3, "queued", "x")]
    )
    assert board.counts() == dict.fromkeys(board.counts(), 0) | {"queued": 1}
    assert board.apply_events([event(2, "running"), event(3, "running")]) == set()


# ------------------------------------------------------------- JobMonitor on the fake


def test_a_clusters_worker_leases_are_shown_as_the_cluster_not_as_a_map() -> None:
    from farside.widgets._monitor import _GroupRow

    board = JobBoard("alice")
    board.apply_snapshot(
        [info(1, "running", group="alice-1f2e", kind="dask-worker"), info(2, "queued")]
    )
    kinds = {g.group: g.kind for g in board.groups()}
    assert kinds == {"alice-1f2e": "dask-worker", "m": "function"}
    assert _GroupRow("alice-1f2e", "dask-worker").label.value == "cluster <code>alice-1f2e</code>"
    assert _GroupRow("m").label.value == "<code>m</code>"


def test_monitor_follows_a_map_from_queued_to_ended(
    fake_gateway: FakeGateway, gw: farside.Gateway
) -> None:
    fake_gateway.auto_run = False
    results = gw.map(abs, range(4))
    ids = results.job_ids
    monitor = JobMonitor(gw, interval=0.01)
    try:
        wait_for(lambda: monitor.live and monitor.counts(results.group)["queued"] == 4)
        for i in ids[:3]:
            fake_gateway.emit(i, JobState.RUNNING)
        fake_gateway.emit(ids[0], JobState.FINISHED)
        fake_gateway.emit(ids[1], JobState.FAILED, "ZeroDivisionError: division by zero")
        expected = {"queued": 1, "running": 1, "finished": 1, "failed": 1}
        wait_for(
            lambda: (
                monitor.counts(results.group)
                == dict.fromkeys(expected, 0) | expected | {"pending": 0, "cancelled": 0}
            )
        )
        row = wait_for(lambda: monitor._rows.get(results.group))
        # the painter thread sets the bar's value, then its style, then the counts: wait for
        # all of them, not for the first and assume the rest
        wait_for(
            lambda: (
                (row.bar.value, row.bar.max, row.bar.bar_style) == (2, 4, "danger")
                and 'data-state="finished" data-count="1"' in row.counts.value
            )
        )
        wait_for(lambda: "division by zero" in monitor._failures.value)
        assert [f.job_id for f in monitor.failures] == [ids[1]]
    finally:
        monitor.close()
    assert not monitor._painter.running


def test_monitor_picks_up_a_map_submitted_after_it_started(gw: farside.Gateway) -> None:
    monitor = JobMonitor(gw, interval=0.01)
    try:
        wait_for(lambda: monitor.live)
        results = gw.map(lambda x: 1 // x, [1, 0, 2])
        ended = {"finished": 2, "failed": 1}
        wait_for(lambda: {k: monitor.counts(results.group)[k] for k in ended} == ended)
        wait_for(lambda: monitor._rows_box.children)
        assert monitor._rows_box.children[0].group == results.group  # the newest map on top
        assert "ZeroDivisionError" in monitor.failures[0].reason
    finally:
        monitor.close()


# --------------------------------------------------------------- LogView on the fake


def test_logview_follows_one_job_keeps_the_last_lines_and_marks_stderr(
    fake_gateway: FakeGateway, gw: farside.Gateway
) -> None:
    fake_gateway.auto_run = False
    fut = gw.submit(abs, -1)
    view = LogView(gw, job=fut, max_lines=3, interval=0.01)
    try:
        fake_gateway.log(fut.job_id, "one\n")
        wait_for(lambda: [e.text for e in view.lines] == ["one"])
        assert not view.ended
        fake_gateway.log(fut.job_id, "two <b>\n", "stderr")
        for text in ("three", "four"):
            fake_gateway.log(fut.job_id, text + "\n")
        fake_gateway.emit(fut.job_id, JobState.FINISHED)
        wait_for(lambda: view.ended)
        assert [(e.stream, e.text) for e in view.lines] == [
            ("stderr", "two <b>"),
            ("stdout", "three"),
            ("stdout", "four"),
        ]
        # the painter thread sets the header before the pane: wait for the pane's final
        # content too (only the last paint drops a line), not for the header alone
        wait_for(
            lambda: (
                "ended" in view._header.value and "1 earlier lines not shown" in view._pane.value
            )
        )
        assert 'class="farside-line farside-stderr"' in view._pane.value
        assert "two &lt;b&gt;" in view._pane.value
    finally:
        view.close()


def test_logview_of_a_map_shows_every_jobs_lines_with_its_id(gw: farside.Gateway) -> None:
    results = gw.map(print, ["a", "b", "c"])
    view = LogView(gw, group=results, max_streams=2, interval=0.01)
    try:
        wait_for(lambda: view.ended)
        assert sorted((e.job_id, e.text) for e in view.lines) == list(
            zip(results.job_ids, "abc", strict=True)
        )
        wait_for(lambda: f"[{results.job_ids[2]}]" in view._pane.value)
    finally:
        view.close()


def test_logview_by_group_name_asks_the_gateway_for_the_jobs(gw: farside.Gateway) -> None:
    results = gw.map(print, ["x", "y"])
    view = LogView(gw, group=results.group, interval=0.01, refresh=0.05)
    try:
        wait_for(lambda: view.ended)
        assert sorted(e.text for e in view.lines) == ["x", "y"]
    finally:
        view.close()


def test_for_jobs_follows_a_growing_set_until_closed(gw: farside.Gateway) -> None:
    ids: list[int] = [gw.submit(print, "first").job_id]
    view = LogView.for_jobs(gw, lambda: list(ids), title="cluster c", refresh=0.05)
    try:
        wait_for(lambda: [e.text for e in view.lines] == ["first"])
        wait_for(lambda: view._followers.jobs() == (1, 0, 1))  # the one job has ended
        assert not view.ended  # a changing set is not over when its jobs are
        ids.append(gw.submit(print, "second").job_id)
        wait_for(lambda: [e.text for e in view.lines] == ["first", "second"])
        assert "cluster c" in view._header.value
    finally:
        view.close()
    wait_for(lambda: not view._followers._thread.is_alive())


def test_logview_needs_exactly_one_of_job_and_group(gw: farside.Gateway) -> None:
    with pytest.raises(TypeError, match="exactly one"):
        LogView(gw)
    with pytest.raises(TypeError, match="exactly one"):
        LogView(gw, job=1, group="m")


def test_a_maps_monitor_counts_only_that_map(
    fake_gateway: FakeGateway, gw: farside.Gateway
) -> None:
    other = gw.map(abs, range(3))
    results = gw.map(abs, range(2))
    monitor = results.monitor()
    try:
        assert monitor.group == results.group
        wait_for(lambda: monitor.counts()["finished"] == 2)
        assert monitor.counts(other.group)["finished"] == 0
        wait_for(lambda: list(monitor._rows) == [results.group])  # drawn after counting
    finally:
        monitor.close()


def test_closing_the_gateway_stops_its_monitor(fake_gateway: FakeGateway) -> None:
    gw = farside.Gateway(fake_gateway.url, USER_TOKEN)
    monitor = JobMonitor(gw, interval=0.01)
    wait_for(lambda: monitor.live)
    gw.close()
    fut = farside.Gateway(fake_gateway.url, USER_TOKEN).submit(
        abs, 1
    )  # an event wakes the monitor at once
    wait_for(lambda: not monitor._painter.running)
    assert "the Gateway was closed" in monitor._title.value
    assert not monitor._listener.running
    fut.gateway.close()
