"""JobMonitor and LogView against a real gateway with real local pilots."""

from __future__ import annotations

import sys
from typing import Any

import pytest

import farside
from farside.widgets import JobMonitor, LogView
from support.harness import wait_until

pytestmark = [pytest.mark.integration]


@farside.task(cores=1, memory="256 MiB", walltime="5m")
def checked_root(x: int) -> float:
    print("root of", x)
    if x < 0:
        print("negative:", x, file=sys.stderr)
        raise ValueError(f"no real root of {x}")
    return float(x**0.5)


def test_monitor_and_logview_reach_a_real_maps_final_counts(client: Any) -> None:
    monitor = JobMonitor(client, interval=0.05)
    try:
        wait_until(lambda: monitor.live, timeout=60)
        results = checked_root.options(gateway=client).map([4, 9, -1, 16, 25, 36])
        logs = LogView(client, group=results, interval=0.05)
        try:
            final = {
                "pending": 0,
                "queued": 0,
                "running": 0,
                "finished": 5,
                "failed": 1,
                "cancelled": 0,
            }
            wait_until(lambda: monitor.counts(results.group) == final, timeout=120)
            [failure] = monitor.failures
            assert failure.job_id == results.job_ids[2]
            assert "no real root of -1" in failure.reason
            row = wait_until(lambda: monitor._rows.get(results.group), timeout=30)
            wait_until(lambda: (row.bar.value, row.bar.max) == (6, 6), timeout=30)
            wait_until(lambda: logs.ended, timeout=120)
            texts = {(e.job_id, e.stream, e.text) for e in logs.lines}
            for job_id, x in zip(results.job_ids, [4, 9, -1, 16, 25, 36], strict=True):
                assert (job_id, "stdout", f"root of {x}") in texts
            assert (results.job_ids[2], "stderr", "negative: -1") in texts
        finally:
            logs.close()
    finally:
        monitor.close()
