"""Event ids are the stream's cursor: they must become visible in id order on PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from farside_gateway.db import Database
from farside_gateway.pool.changes import Changes
from farside_protocol import JobState

pytestmark = pytest.mark.postgres


# SQLite needs no test: its single writer makes commit order id order by construction
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_later_event_waits_for_an_earlier_one_to_commit(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    first_inserted = threading.Event()
    release_first = threading.Event()
    second_done = threading.Event()

    def first(conn) -> None:  # type: ignore[no-untyped-def]
        changes = Changes(time.time())
        changes.transition(1, "alice", None, JobState.QUEUED, 0)
        changes.flush(conn)  # takes its id, stays uncommitted for now
        first_inserted.set()
        release_first.wait(10)

    def second(conn) -> None:  # type: ignore[no-untyped-def]
        changes = Changes(time.time())
        changes.transition(2, "alice", None, JobState.QUEUED, 0)
        changes.flush(conn)

    try:
        t1 = threading.Thread(target=db.run_sync, args=(first,))
        t1.start()
        assert first_inserted.wait(10)
        t2 = threading.Thread(target=lambda: (db.run_sync(second), second_done.set()))
        t2.start()
        # the second writer must wait, or it could commit a larger id first
        assert not second_done.wait(0.5)
        release_first.set()
        t1.join(10)
        assert second_done.wait(10)
        t2.join(10)
    finally:
        release_first.set()
        db.close()
