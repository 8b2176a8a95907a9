"""A worker never outlives its pilot.

Workers run in their own session, so that killing one kills whatever its job started. That
also means a pilot killed outright (SIGKILL, out of memory, a batch system that signals
only the pilot's process) leaves its workers running: a job nobody reports any more, still
holding the slot's cores, and for a workflow body still submitting work. The worker
watches its parent and, once it is gone, kills its own process group.
"""

from __future__ import annotations

import os
import signal
import threading

#: seconds between looks at the parent: a lost pilot's leases outlive this by far
PERIOD = 1.0


def watch_parent(period: float = PERIOD) -> threading.Thread:
    """Start a daemon thread that kills this process group when the parent process dies."""
    parent = os.getppid()

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(period):
            if os.getppid() != parent:  # re-parented: the pilot is gone
                if os.getpgid(0) == os.getpid():  # our own group: the job's processes too
                    os.killpg(0, signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread
