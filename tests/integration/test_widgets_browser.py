"""farside's widgets in JupyterLab, in a real browser: a notebook shows a JobMonitor, runs a
map whose jobs wait at a gate, shows its LogView, and the page's numbers move as the test
opens the gate — live updates sent from the widgets' background threads while the kernel
stays free for other cells.

A real gateway with two local pilots, a JupyterLab server (token auth, no hub) and
headless Chromium (tests/support/lab.py). The screenshot is left in
``$FARSIDE_TEST_ARTIFACTS`` (default tests/artifacts/widgets_browser.png). A new widget gets
a cell in CELLS and a check in the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.harness import GatewayProcess
from support.lab import LONG, LabServer, NotebookPage, artifacts_dir, chromium_page, write_notebook

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]

MAP_SIZE = 6
SETUP, MAP, KERNEL_FREE, CLUSTER, SCALE, CLOSE = 0, 1, 2, 3, 4, 5
CELLS = [
    # SETUP: the monitor, before any work exists
    """import farside
from farside.widgets import JobMonitor, LogView

gw = farside.Gateway()
monitor = JobMonitor(gw)
monitor""",
    # MAP: jobs that wait for a file the test creates, one of which fails
    """import os, sys, time

GATE = {gate!r}

@farside.task(cores=1, memory="256 MiB", walltime="5m")
def gated_square(x):
    print("waiting at the gate", x)
    while not os.path.exists(GATE):
        time.sleep(0.1)
    if x == 3:
        print("three is unlucky", file=sys.stderr)
        raise ValueError("three is unlucky")
    print("squared", x, "is", x * x)
    return x * x

results = gated_square.map(range({n}))
print("map", results.group)
LogView(gw, group=results, height="14em")""",
    # KERNEL_FREE: the kernel answers while both widgets follow the gateway; the monitor
    # SETUP made before it ran again was closed (one monitor thread, not two)
    """import threading
monitors = sum(t.name == "farside-monitor" for t in threading.enumerate())
print("kernel free, finished so far:", monitor.counts(results.group)["finished"],
      "monitors:", monitors)""",
    # CLUSTER: a Dask cluster on the same pilots; its repr is the ClusterWidget
    """cluster = gw.new_cluster(workers=1, cores=1, memory="512 MiB")
client = cluster.get_client()
client.wait_for_workers(1, timeout=120)
cluster""",
    # SCALE: the widget follows without being shown again
    """cluster.scale(2)
client.wait_for_workers(2, timeout=120)
print("sum on the cluster:", client.submit(sum, range(10)).result())""",
    # CLOSE
    """client.close()
cluster.close()
print("closed", cluster.name)""",
]


@pytest.fixture(scope="module")
def lab_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("gateway"))
    try:
        yield gw.start()
    finally:
        gw.cleanup()


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, lab_gateway: GatewayProcess
) -> Iterator[LabServer]:
    root = tmp_path_factory.mktemp("lab")
    server = LabServer(
        root,
        {
            "FARSIDE_GATEWAY_URL": lab_gateway.url,
            "FARSIDE_TOKEN": lab_gateway.user_token,
            "FARSIDE_CONFIG_DIR": str(root / "farside-config"),
        },
    )
    try:
        yield server.start()
    finally:
        server.stop()


def count(row: Any, state: str) -> Any:
    return row.locator(f".farside-count[data-state='{state}']")


def line(logs: Any, text: str) -> Any:
    return logs.locator(".farside-line").filter(has_text=text)


@pytest.mark.timeout(900)
def test_widgets_render_and_follow_a_map_in_jupyterlab(lab: LabServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    gate = tmp_path / "gate"
    cells = [c.format(gate=str(gate), n=MAP_SIZE) if i == MAP else c for i, c in enumerate(CELLS)]
    write_notebook(lab.notebooks / "widgets.ipynb", cells)
    shot = artifacts_dir() / "widgets_browser.png"
    with chromium_page({"width": 1400, "height": 1300}) as page:
        nb = NotebookPage(page, lab, "widgets.ipynb")
        try:
            nb.open()

            nb.run(SETUP)
            monitor = nb.output(SETUP).locator(".farside-monitor")
            expect(monitor).to_contain_text("farside jobs of", timeout=LONG)
            expect(monitor.locator(".farside-status")).to_contain_text("live", timeout=LONG)
            # run it again, as users do: the first monitor is closed (see KERNEL_FREE)
            prompt = nb.cell(SETUP).locator(".jp-InputPrompt")
            first_run = prompt.inner_text()
            nb.run(SETUP)
            expect(prompt).not_to_have_text(first_run, timeout=LONG)
            expect(monitor.locator(".farside-status")).to_contain_text("live", timeout=LONG)

            nb.run(MAP)
            expect(nb.output(MAP)).to_contain_text("map gated_square-", timeout=LONG)
            group = re.search(r"map (gated_square-\w+)", nb.output(MAP).inner_text())
            assert group is not None
            row = monitor.locator(".farside-group").filter(has_text=group[1])
            # the map appears in the monitor, which was displayed before it existed
            expect(row.locator(".farside-counts")).to_have_attribute(
                "data-total", str(MAP_SIZE), timeout=LONG
            )
            # both pilots hold a job at the gate; nothing can have finished yet
            expect(count(row, "running")).to_have_attribute("data-count", "2", timeout=LONG)
            expect(count(row, "finished")).to_have_attribute("data-count", "0")
            logs = nb.output(MAP).locator(".farside-logview")
            for x in (0, 1):  # the jobs at the gate, in the order their lines arrived
                expect(line(logs, f"waiting at the gate {x}")).to_have_count(1, timeout=LONG)

            nb.run(KERNEL_FREE)
            expect(nb.output(KERNEL_FREE)).to_contain_text(
                "kernel free, finished so far: 0 monitors: 1", timeout=LONG
            )

            gate.touch()
            expect(count(row, "finished")).to_have_attribute(
                "data-count", str(MAP_SIZE - 1), timeout=LONG
            )
            expect(count(row, "failed")).to_have_attribute("data-count", "1", timeout=LONG)
            expect(count(row, "running")).to_have_attribute("data-count", "0")
            # the bar and the failure list are widgets of their own: their updates reach the
            # page after the counts' (Playwright's default 5 s is short on 2 loaded cores)
            expect(row.locator(".progress-bar.progress-bar-danger")).to_have_attribute(
                "style", re.compile(r"width: 100%"), timeout=LONG
            )
            expect(monitor.locator(".farside-failure")).to_contain_text(
                "ValueError: three is unlucky", timeout=LONG
            )
            expect(logs.locator(".farside-line.farside-stderr")).to_contain_text(
                ["three is unlucky"], timeout=LONG
            )
            expect(line(logs, "squared 5 is 25")).to_have_count(1, timeout=LONG)
            expect(logs.locator(".farside-status")).to_contain_text("ended", timeout=LONG)

            nb.run(CLUSTER)
            widget = nb.output(CLUSTER).locator(".farside-cluster-widget")
            expect(widget).to_contain_text("farside cluster", timeout=LONG)
            expect(widget.locator(".farside-state")).to_have_text("running", timeout=LONG)
            expect(widget.locator(".farside-connected")).to_have_text("1", timeout=LONG)
            workers = widget.locator("table.farside-workers")
            expect(workers).to_contain_text("local", timeout=LONG)
            expect(widget).to_contain_text("default: 1 workers of 1 cores")
            # Dask's own tabs (status, scaling controls) sit below farside's view
            expect(widget.get_by_text("Scaling", exact=True)).to_have_count(1)

            nb.run(SCALE)
            expect(nb.output(SCALE)).to_contain_text("sum on the cluster: 45", timeout=LONG)
            expect(widget.locator(".farside-connected")).to_have_text("2", timeout=LONG)
            expect(widget).to_contain_text("default: 2 workers of 1 cores", timeout=LONG)
            expect(workers.locator("tr").filter(has_text="local")).to_contain_text(
                "2", timeout=LONG
            )
            nb.output(CLUSTER).screenshot(path=str(artifacts_dir() / "cluster_widget.png"))

            nb.run(CLOSE)
            expect(nb.output(CLOSE)).to_contain_text("closed", timeout=LONG)
            expect(widget.locator(".farside-state")).to_have_text("stopped", timeout=LONG)
        finally:
            page.screenshot(path=str(shot))
            print("dialogs the Lab showed:", nb.dialogs or "none")
