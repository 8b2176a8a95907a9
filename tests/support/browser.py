"""A user's way into JupyterLab in a real browser, for the ``browser`` suite.

Headless Chromium (Debian's, from ``scripts/browser.sh``) driven by Playwright: JupyterHub's
login button, the OIDC provider's login form and consent page, the profile choice, JupyterLab,
and a notebook cell that submits a farside task and prints its result.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.lab import chromium_page
from support.oidc import PASSWORDS

CELL = """import farside

@farside.task
def square(x):
    return x * x

print("farside says", square.submit(7).result(timeout=180))

import os
from farside._tokens import hub_access_token, jwt_expiry
fresh = hub_access_token() or ""
print("profile", os.environ["FARSIDE_PROFILE"], "hub token", bool(jwt_expiry(fresh)))
"""
LONG = 180_000  # ms: a spawn or a first task on 2 shared cores can take a while


@pytest.fixture
def page() -> Iterator[Any]:
    """A fresh headless Chromium page (its own profile: no cookies from other tests)."""
    with chromium_page() as fresh:
        yield fresh


def log_in_and_run_a_task(
    page: Any, hub_url: str, issuer: str, shot: Path, user: str = "alice"
) -> None:
    """As ``user``: log in at the provider (a wrong password first), allow, pick the CPU
    profile, open a notebook in JupyterLab, run :data:`CELL` and see the task's result.
    A screenshot of the page goes to ``shot``, whatever happens."""
    from playwright.sync_api import expect

    try:
        page.goto(hub_url + "/hub/login")
        page.click('a[href*="oauth_login"]')
        page.wait_for_selector("#username")
        assert page.url.startswith(issuer), page.url  # the provider's own login page
        page.fill("#username", user)
        page.fill("#password", "wrong")
        page.click("#submit")
        expect(page.locator("#error")).to_contain_text(
            "Invalid username or password", timeout=LONG
        )  # a page load: Playwright's default 5 s is short on 2 loaded cores
        page.fill("#username", user)
        page.fill("#password", PASSWORDS[user])
        page.click("#submit")
        page.click("#allow")  # consent: the hub asks for offline_access, among others

        # the spawn page offers farside's profiles; CPU is the default
        page.wait_for_selector("#profile-cpu", timeout=LONG)
        expect(page.locator("#profile-ml-gpu")).to_be_visible()
        page.check("#profile-cpu")
        page.click('form input[type="submit"], form button[type="submit"]')
        page.wait_for_url(f"**/user/{user}/lab**", timeout=LONG)
        page.goto(f"{hub_url}/user/{user}/lab?reset")  # a restored workspace hides the Launcher
        page.wait_for_selector(".jp-Launcher", timeout=LONG)

        page.click('.jp-LauncherCard[data-category="Notebook"]')
        editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        editor.wait_for(timeout=LONG)
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=LONG, state="attached"
        )
        editor.click()
        page.keyboard.insert_text(CELL)  # one insertion: no auto-indent on typed newlines
        output = page.locator(".jp-OutputArea-output").filter(has_text="farside says")
        for _ in range(3):  # the first execution right after a kernel starts may be dropped
            editor.click()
            page.keyboard.press("Control+Enter")
            try:
                output.first.wait_for(timeout=60_000)
                break
            except Exception:  # playwright's TimeoutError: try once more
                continue
        expect(output.first).to_contain_text("farside says 49", timeout=LONG)
        # the server's hub token may read a fresh access token (farside._tokens.hub_renewed)
        expect(page.locator(".jp-OutputArea-output").first).to_contain_text(
            "profile cpu hub token True", timeout=30_000
        )
    finally:
        page.screenshot(path=str(shot))


def run_another_cell(page: Any, code: str, expected: str, timeout: int = LONG) -> None:
    """In the notebook :func:`log_in_and_run_a_task` left open: a new cell below the last,
    ``code`` in it, run; its output must contain ``expected``."""
    from playwright.sync_api import expect

    page.keyboard.press("Escape")  # command mode, whatever the focus
    page.keyboard.press("b")  # a new cell below, selected
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content").last
    editor.click()
    page.keyboard.insert_text(code)
    page.keyboard.press("Control+Enter")
    cell = page.locator(".jp-Notebook .jp-Cell").last
    expect(cell.locator(".jp-OutputArea-output").first).to_contain_text(expected, timeout=timeout)
