"""JupyterLab in a real browser, without a hub: a Lab server with token auth, headless
Chromium (Debian's, from ``scripts/browser.sh``) driven by Playwright, and a notebook whose
cells a test runs one by one.

The notebook is written to disk before the Lab opens it, so cells are never typed (no
auto-indent or bracket completion to fight); a test adds a cell by adding a string.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from support.harness import run_script
from support.hub import artifacts_dir, free_port

REPO = Path(__file__).resolve().parents[2]
__all__ = [
    "LONG",
    "LabServer",
    "NotebookPage",
    "artifacts_dir",
    "chromium_page",
    "free_port",
    "write_notebook",
]
EXECUTED = re.compile(r"\[\d+\]:")  # a cell's prompt once the kernel ran it
LONG = 180_000  # ms: a first kernel start or task on 2 shared cores can take a while
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Lab settings for a predictable page: every cell in the DOM, no news toast over the cells
USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


def chromium() -> str:
    return run_script("browser.sh", timeout=900, fails="could not provide chromium")


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)


class LabServer:
    """``jupyter lab`` on a free port with a random token, its Jupyter dirs in ``root``."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.notebooks = root / "notebooks"
        config = root / "jupyter-config"
        for name, value in USER_SETTINGS.items():
            target = config / "lab" / "user-settings" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(value))
        self.notebooks.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            **env,
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_DATA_DIR": str(root / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(root / "jupyter-runtime"),
        }
        self.log_path = root / "lab.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def start(self, timeout: float = 120.0) -> LabServer:
        args = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.notebooks}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"JupyterLab exited at start:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url("/api/status"), timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"JupyterLab did not start in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM the Lab's process group (the Lab and its kernels), SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextmanager
def chromium_page(viewport: Any = None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="farside-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=chromium(),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport=viewport or {"width": 1280, "height": 800},
            )
            try:
                yield context.pages[0] if context.pages else context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class NotebookPage:
    """A notebook open in the Lab; :meth:`run` runs one of its cells and waits for it."""

    def __init__(self, page: Any, lab: LabServer, name: str) -> None:
        self.page = page
        self.lab = lab
        self.name = name
        self.dialogs: list[str] = []

    def open(self) -> NotebookPage:
        self.page.goto(self.lab.url(f"/lab/tree/{self.name}"))
        self.cell(0).locator(".cm-content").wait_for(timeout=LONG)
        self.page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=LONG, state="attached"
        )
        return self

    def accept_dialogs(self) -> None:
        """Accept a dialog over the notebook (e.g. the kernel choice, when the Lab asks
        although the notebook names its kernel), keeping its text in :attr:`dialogs`."""
        dialog = self.page.locator(".jp-Dialog")
        while dialog.count():
            self.dialogs.append(dialog.first.inner_text())
            dialog.first.locator("button.jp-mod-accept").first.click()
            dialog.first.wait_for(state="detached", timeout=10_000)

    def cell(self, index: int) -> Any:
        return self.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)

    def output(self, index: int) -> Any:
        return self.cell(index).locator(".jp-OutputArea")

    def run(self, index: int, timeout: float = LONG) -> None:
        """Run cell ``index`` and wait until the kernel has executed it (a number in its
        prompt). The first execution right after a kernel starts may be dropped: retried."""
        from playwright.sync_api import expect

        cell, prompt = self.cell(index), self.cell(index).locator(".jp-InputPrompt")
        for _ in range(5):
            self.accept_dialogs()
            cell.locator(".cm-content").click()
            self.page.keyboard.press("Control+Enter")
            try:
                expect(prompt).not_to_have_text("[ ]:", timeout=15_000)
                break
            except AssertionError:
                continue
        expect(prompt).to_have_text(EXECUTED, timeout=timeout)
