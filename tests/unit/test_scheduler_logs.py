"""Scheduler logs are pruned once past ``[clusters] log_retention``; running ones stay."""

from __future__ import annotations

import os
import time
from pathlib import Path

from farside_gateway.clusters.process import prune_logs

DAY = 86400.0


def _log(directory: Path, name: str, age_days: float) -> Path:
    path = directory / name
    path.write_text("distributed.scheduler - INFO - ...\n")
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def test_old_logs_go_and_recent_or_running_ones_stay(tmp_path: Path) -> None:
    old = _log(tmp_path, "alice-0a1b2c3d.log", 8)
    old_spare = _log(tmp_path, "scheduler-4242-1.log", 30)
    recent = _log(tmp_path, "alice-9f8e7d6c.log", 1)
    running = _log(tmp_path, "bob-11223344.log", 40)  # a long-lived, quiet scheduler
    other = _log(tmp_path, "notes.txt", 100)  # not a scheduler log

    deleted = prune_logs(str(tmp_path), [str(running)], 7 * DAY, time.time())

    assert sorted(deleted) == sorted([str(old), str(old_spare)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [recent.name, running.name, other.name]
    )


def test_nothing_to_prune_deletes_nothing(tmp_path: Path) -> None:
    _log(tmp_path, "alice-0a1b2c3d.log", 0.5)
    assert prune_logs(str(tmp_path), [], 7 * DAY, time.time()) == []
    assert len(list(tmp_path.iterdir())) == 1
