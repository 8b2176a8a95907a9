"""The client end to end against the fake gateway: submit, results, map, cancel, logs."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

import farside
from farside_protocol import JobState
from farside_protocol.models import JobEvent
from farside_protocol.payload import encode_value
from support.fake_gateway import USER_TOKEN, FakeGateway


@farside.task(cores=1, memory="1 GiB", walltime="10m")
def square(x: int) -> int:
    print("squaring", x)
    return x * x


def test_submit_resolves_from_event_stream(gw: farside.Gateway, fake_gateway: FakeGateway) -> None:
    fut = square.submit(3)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=10) == 9
    assert fut.job_id in fake_gateway.jobs
    # the stream opened before the submission and without Last-Event-ID
    assert fake_gateway.last_event_ids[0] is None
    spec = fake_gateway.jobs[fut.job_id].spec
    assert spec.resources.memory == 1024**3
    assert spec.resources.walltime == 600
    assert spec.name == "square"


def test_plain_call_runs_locally() -> None:
    assert square(4) == 16


async def test_future_is_awaitable(gw: farside.Gateway) -> None:
    assert await square.submit(5) == 25


def test_remote_exception_is_reraised_with_traceback_note(gw: farside.Gateway) -> None:
    @farside.task
    def boom(key: str) -> None:
        raise KeyError(key)

    with pytest.raises(KeyError) as info:
        boom.submit("missing").result(timeout=10)
    notes = "\n".join(info.value.__notes__)
    assert "Remote traceback (job" in notes
    assert "in boom" in notes


def test_failed_without_outcome_is_job_failed(
    gw: farside.Gateway, fake_gateway: FakeGateway
) -> None:
    fake_gateway.auto_run = False
    fut = square.submit(1)
    fake_gateway.finish(fut.job_id, None, JobState.FAILED, reason="pilot lost")
    with pytest.raises(farside.JobFailed, match="pilot lost") as info:
        fut.result(timeout=10)
    assert info.value.job_id == fut.job_id


def test_large_result_is_fetched(fake_gateway: FakeGateway) -> None:
    fake_gateway.inline_limit = 10
    with farside.Gateway(fake_gateway.url, USER_TOKEN) as gw:
        fut = gw.submit(lambda n: "x" * n, 1000)
        assert fut.result(timeout=10) == "x" * 1000
    terminal = [e for e in fake_gateway.events if e.job_id == fut.job_id and e.state.terminal]
    assert terminal[0].result is None
    assert terminal[0].result_size is not None


def test_map_is_ordered_and_chunked(gw: farside.Gateway, fake_gateway: FakeGateway) -> None:
    results = square.map(range(23), chunksize=10)
    assert list(results) == [x * x for x in range(23)]
    assert fake_gateway.submit_sizes == [10, 10, 3]
    assert len(results.job_ids) == 23
    assert {fake_gateway.jobs[i].spec.group for i in results.job_ids} == {results.group}
    assert results.group.startswith("square-")


def test_map_default_chunks_stay_under_a_thousand(
    gw: farside.Gateway, fake_gateway: FakeGateway
) -> None:
    fake_gateway.auto_run = False
    results = square.map(range(2100))
    assert fake_gateway.submit_sizes == [1000, 1000, 100]
    results.cancel()


def test_map_of_several_iterables_and_first_error(gw: farside.Gateway) -> None:
    @farside.task
    def div(a: int, b: int) -> float:
        return a / b

    assert list(div.map([6, 8], [3, 2])) == [2.0, 4.0]
    results = div.map([1, 2, 3], [1, 0, 1])
    assert next(results) == 1.0
    with pytest.raises(ZeroDivisionError):
        next(results)
    assert {f.result() for f in results.as_completed(timeout=10) if f.exception() is None} == {
        1.0,
        3.0,
    }


def test_cancel_future(gw: farside.Gateway, fake_gateway: FakeGateway) -> None:
    fake_gateway.auto_run = False
    fut = square.submit(2)
    assert fut.cancel()
    assert fake_gateway.jobs[fut.job_id].state is JobState.CANCELLED
    assert fake_gateway.cancel_requests[-1]["job_ids"] == [fut.job_id]
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(timeout=1)


def test_cancel_event_cancels_future(gw: farside.Gateway, fake_gateway: FakeGateway) -> None:
    fake_gateway.auto_run = False
    fut = square.submit(2)
    assert gw.cancel(fut) == [fut.job_id]  # the gateway call alone: the event does the rest
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(timeout=10)


def test_map_cancel_by_group(gw: farside.Gateway, fake_gateway: FakeGateway) -> None:
    fake_gateway.auto_run = False
    results = square.map(range(5))
    assert sorted(results.cancel()) == sorted(results.job_ids)
    assert fake_gateway.cancel_requests[-1]["group"] == results.group
    assert all(f.cancelled() for f in results.futures)


def test_event_before_submit_answer_is_kept(gw: farside.Gateway) -> None:
    event = JobEvent(
        seq=999, job_id=4242, state=JobState.FINISHED, time=0.0, attempt=1, result=encode_value(7)
    )
    gw._results.on_events([event])
    (fut,) = gw._track([4242])
    assert fut.result(timeout=1) == 7


def test_futures_survive_gateway_restart(gw: farside.Gateway, fake_gateway: FakeGateway) -> None:
    fake_gateway.auto_run = False
    futures = [square.submit(i) for i in range(3)]
    fake_gateway.stop()
    for fut, value in zip(futures, range(3), strict=True):
        fake_gateway.finish(fut.job_id, encode_value(value * 10), JobState.FINISHED)
    time.sleep(0.3)  # the client is retrying against a closed port
    fake_gateway.start()
    assert [f.result(timeout=15) for f in futures] == [0, 10, 20]
    resumed = [i for i in fake_gateway.last_event_ids if i is not None]
    assert resumed, "the reconnection did not send Last-Event-ID"
    assert int(resumed[0]) < min(
        e.seq for e in fake_gateway.events if e.job_id == futures[0].job_id
    )


def test_logs_paged_and_followed(gw: farside.Gateway, fake_gateway: FakeGateway) -> None:
    @farside.task
    def chatty(n: int) -> int:
        for i in range(n):
            print("line", i)
        return n

    fut = chatty.submit(5)
    followed = list(gw.logs(fut.job_id, follow=True))
    assert fut.result(timeout=10) == 5
    expected = [f"line {i}" for i in range(5)]
    assert followed == expected
    assert gw.logs(fut.job_id) == expected
    assert gw.logs(fut.job_id, since=3) == expected[3:]


def test_jobs_and_job(gw: farside.Gateway) -> None:
    futs = [square.submit(i) for i in range(3)]
    concurrent.futures.wait(futs, timeout=10)
    jobs = gw.jobs()
    assert [j.id for j in jobs] == sorted((f.job_id for f in futs), reverse=True)
    assert gw.jobs(state="finished", limit=2)[0].state is JobState.FINISHED
    detail = gw.job(futs[0].job_id)
    assert [h.state for h in detail.history] == [JobState.RUNNING, JobState.FINISHED]
    with pytest.raises(farside.NotFound):
        gw.job(123456)


def test_close_fails_waiting_futures(fake_gateway: FakeGateway) -> None:
    fake_gateway.auto_run = False
    gw = farside.Gateway(fake_gateway.url, USER_TOKEN)
    fut = gw.submit(abs, -1)
    gw.close()
    with pytest.raises(farside.FarsideError, match="closed"):
        fut.result(timeout=1)
    with pytest.raises(farside.FarsideError, match="closed"):
        gw.submit(abs, -1)


def test_default_gateway(fake_gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARSIDE_GATEWAY_URL", fake_gateway.url)
    monkeypatch.setenv("FARSIDE_TOKEN", USER_TOKEN)
    made = farside.get_gateway()  # created lazily from the environment
    assert farside.get_gateway() is made
    # the public class, with its shortcuts, though the core that makes it sits beneath them
    assert isinstance(made, farside.Gateway)
    assert made.map(abs, [-1, -2]).results(timeout=10) == [1, 2]
    assert square.submit(6).result(timeout=10) == 36
    newer = farside.Gateway()
    assert farside.get_gateway() is newer  # the newest Gateway becomes the default
    newer.close()
    assert farside.get_gateway() is not newer
    made.close()


def test_unclaimed_events_are_bounded(gw: farside.Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    from farside import _resolution

    monkeypatch.setattr(_resolution, "MAX_UNCLAIMED_EVENTS", 2)
    events = [
        JobEvent(seq=i, job_id=5000 + i, state=JobState.FINISHED, time=0.0, attempt=1)
        for i in range(3)
    ]
    gw._results.on_events(events)
    assert list(gw._results._unclaimed) == [5001, 5002]


def test_map_shows_a_progress_bar_that_ends_full(
    gw: farside.Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    results = square.map(range(7), progress=True)
    assert results.results(timeout=10) == [x * x for x in range(7)]
    # tqdm draws on stderr outside a notebook; the bar closes at 7 of 7
    err = capsys.readouterr().err
    assert "7/7" in err
    assert results.group in err
    assert [f.result() for f in results.as_completed(timeout=10, progress=True)]
    assert "7/7" in capsys.readouterr().err


def test_progress_of_futures_counts_each_end_once(gw: farside.Gateway) -> None:
    futures = [square.submit(x) for x in range(3)]
    bar = farside.progress(futures, desc="three")
    concurrent.futures.wait(futures, timeout=10)
    deadline = time.monotonic() + 5
    while bar.done < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # done callbacks run on the listener's thread
    assert (bar.done, bar.total) == (3, 3)
    bar.advance()  # a stray call past the end changes nothing
    assert bar.done == 3
