"""A user's whole way in, in a real browser: JupyterHub's login button, the OIDC provider's
login form (alice's name and password) and consent page, the profile choice, JupyterLab, a
notebook whose cell submits a farside task through the gateway, and its result on the page.

Headless Chromium (Debian's, from scripts/browser.sh) driven by Playwright; a screenshot of
the Lab with the result is left in ``$FARSIDE_TEST_ARTIFACTS`` (default tests/artifacts/).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from hub_support import REPO, HubStack, artifacts_dir, hub_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStack]:
    yield from hub_stack(tmp_path_factory.mktemp("hub"))


CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CELL = """import farside

@farside.task
def square(x):
    return x * x

print("farside says", square.submit(7).result(timeout=180))

import os
from farside._profile import _expiry, hub_access_token
fresh = hub_access_token() or ""
print("profile", os.environ["FARSIDE_PROFILE"], "hub token", bool(_expiry(fresh)))
"""
LONG = 180_000  # ms: a spawn or a first task on 2 shared cores can take a while


def _chromium() -> str:
    import subprocess

    done = subprocess.run(["bash", str(REPO / "scripts" / "browser.sh")], capture_output=True,
                          text=True, timeout=900, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"scripts/browser.sh could not provide chromium:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="farside-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 800},
            )  # fmt: skip
            try:
                yield context.pages[0] if context.pages else context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.timeout(900)
def test_alice_logs_in_and_runs_a_farside_task_from_a_notebook(hub: HubStack, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    shot = artifacts_dir() / "hub_browser.png"
    try:
        page.goto(hub.url + "/hub/login")
        page.click('a[href*="oauth_login"]')
        page.wait_for_selector("#username")
        assert page.url.startswith(hub.issuer), page.url  # the provider's own login page
        page.fill("#username", "alice")
        page.fill("#password", "wrong")
        page.click("#submit")
        expect(page.locator("#error")).to_contain_text("Invalid username or password")
        page.fill("#username", "alice")
        page.fill("#password", "alice-pw")
        page.click("#submit")
        page.click("#allow")  # consent: the hub asks for offline_access, among others

        # the spawn page offers farside's profiles; CPU is the default
        page.wait_for_selector("#profile-cpu", timeout=LONG)
        expect(page.locator("#profile-ml-gpu")).to_be_visible()
        page.check("#profile-cpu")
        page.click('form input[type="submit"], form button[type="submit"]')
        page.wait_for_url("**/user/alice/lab**", timeout=LONG)
        page.goto(hub.url + "/user/alice/lab?reset")  # a restored workspace hides the Launcher
        page.wait_for_selector(".jp-Launcher", timeout=LONG)

        page.click('.jp-LauncherCard[data-category="Notebook"]')
        editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        editor.wait_for(timeout=LONG)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                               timeout=LONG, state="attached")  # fmt: skip
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
        # the server's hub token may read a fresh access token (farside._profile.fresh_token)
        expect(page.locator(".jp-OutputArea-output").first).to_contain_text(
            "profile cpu hub token True", timeout=30_000
        )
    finally:
        page.screenshot(path=str(shot))
    # the job ran on the gateway as alice: the hub handed her OIDC token to her server
    with hub.gateway.http(hub.gateway.user_token) as gw:
        jobs = gw.get("/jobs", params={"all": "true"}).json()
    owners = {job["owner"] for job in jobs["jobs"]}
    assert "alice" in owners, jobs
