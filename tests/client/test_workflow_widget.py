"""farside.widgets.WorkflowMonitor and a run's HTML: what a workflow run shows in Jupyter."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from farside.widgets import WorkflowMonitor
from farside.widgets._workflow import workflow_html
from farside_protocol.workflows import WorkflowInfo, WorkflowState


def info(state: str, children: dict[str, int], report: dict[str, Any], **kw: Any) -> WorkflowInfo:
    return WorkflowInfo(
        id=7,
        name="optimise",
        owner="alice",
        state=WorkflowState(state),
        body_job_id=12,
        body_runs=kw.get("body_runs", 1),
        attempts=kw.get("attempts", 1),
        children=children,
        report=report,
        error=kw.get("error"),
        created=datetime.now(UTC),
        ended=None,
    )


def test_the_html_names_state_calls_and_report() -> None:
    page = workflow_html(
        info("running", {"finished": 8, "running": 4}, {"iteration": 2, "best": 0.125})
    )
    assert "workflow optimise</b> (run 7)" in page
    assert ">running<" in page
    assert "finished 8" in page
    assert "running 4" in page
    assert "<b>iteration</b></td><td>2" in page
    assert "<b>best</b></td><td>0.125" in page
    assert "body run" not in page  # the first run of the body: nothing to say


def test_the_html_says_when_the_body_ran_again_and_escapes_what_it_shows() -> None:
    page = workflow_html(
        info("failed", {}, {"<script>": "x" * 300}, body_runs=2, attempts=3, error="a < b")
    )
    assert "body run 2 · attempt 3" in page
    assert "<i>a &lt; b</i>" in page
    assert "<script>" not in page
    assert "x" * 199 + "…" in page
    assert "x" * 200 not in page
    assert "<i>none yet</i>" in page


class FakeRun:
    """A run whose progress moves on each time it is asked (as a run's does)."""

    id = 7

    def __init__(self) -> None:
        self.steps = [
            info("running", {"running": 4}, {}),
            info("running", {"finished": 4, "running": 4}, {"iteration": 1}),
            info("finished", {"finished": 8}, {"iteration": 2}),
        ]
        self.asked = 0

    def progress(self) -> WorkflowInfo:
        step = self.steps[min(self.asked, len(self.steps) - 1)]
        self.asked += 1
        return step


def test_the_monitor_follows_the_run_until_it_ends() -> None:
    run = FakeRun()
    monitor = WorkflowMonitor(run, interval=0.05)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 10
        while (monitor.info is None or not monitor.info.state.terminal) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert monitor.info is not None
        assert monitor.info.state is WorkflowState.FINISHED
        assert "finished 8" in monitor.value
        assert "<b>iteration</b></td><td>2" in monitor.value
        asked = run.asked
        time.sleep(0.5)
        assert run.asked == asked  # an ended run is not asked again
    finally:
        monitor.close()
