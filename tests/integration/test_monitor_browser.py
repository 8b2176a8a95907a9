"""The web monitor at /monitor in real headless Chromium: log in with a token, watch a map's
numbers change as it runs without reloading the page, see failures grouped on the Errors
tab, and another user sees none of it. Screenshots go to the test artifacts."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import farside
from support.harness import GatewayProcess
from support.hub import artifacts_dir
from support.lab import CHROMIUM_ARGS, chromium, chromium_page

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

LONG = 60_000  # ms


@pytest.fixture
def database_url() -> None:
    """SQLite only: the page reads the pool the same way on either database."""
    return None


@contextmanager
def _two_browsers() -> Iterator[tuple[Any, Any]]:
    """Two pages with their own cookies (two people), in one headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_context().new_page(), browser.new_context().new_page()
        finally:
            browser.close()


def _log_in(page: Any, gateway: GatewayProcess, token: str) -> None:
    # as `farside up` prints it: the token in the fragment, which no server log sees
    page.goto(f"{gateway.url}/monitor/login#token={token}")
    page.wait_for_selector(".farside-work", timeout=LONG)


def _done(page: Any) -> str:
    return str(page.locator(".farside-work .farside-done").first.inner_text(timeout=LONG))


def test_the_monitor_shows_a_running_map_live_and_only_to_its_owner(
    gateway: GatewayProcess, client: farside.Gateway, tmp_path: Path
) -> None:
    shots = artifacts_dir()

    @farside.task(gateway=client)
    def slow_square(x: int) -> int:
        time.sleep(0.5)
        if x == 3:
            raise ValueError("x = 3 is not allowed")
        return x * x

    from playwright.sync_api import expect

    bob = gateway.make_user_token("bob")
    with _two_browsers() as (page, bobs_page):
        _log_in(page, gateway, gateway.user_token)
        results = slow_square.map(range(12), group="squares")
        page.wait_for_selector("text=squares", timeout=LONG)
        first = _done(page)
        page.screenshot(path=str(shots / "monitor-running.png"), full_page=True)
        for future in results.futures:
            future.exception(timeout=120)  # every call ends (one fails)
        # the page redraws itself: the same page, no reload, shows the map ended
        expect(page.locator(".farside-work .farside-done").first).to_have_text(
            "12/12", timeout=LONG
        )
        assert first != "12/12"
        page.screenshot(path=str(shots / "monitor-ended.png"), full_page=True)
        page.locator(".bk-tab", has_text="Errors").click()
        errors = page.locator(".farside-errs")
        row = errors.locator("tr", has_text="x = # is not allowed")
        expect(row).to_contain_text("user", timeout=LONG)  # class, reason, site, count
        assert re.search(r"user\s+ValueError: x = # is not allowed\s+local\s+1\s", row.inner_text())
        page.screenshot(path=str(shots / "monitor-errors.png"), full_page=True)

        _log_in(bobs_page, gateway, bob)
        bobs_page.wait_for_selector("text=no jobs yet", timeout=LONG)
        assert "squares" not in bobs_page.content()
        bobs_page.screenshot(path=str(shots / "monitor-bob.png"), full_page=True)
        # nor does a link to one of the jobs show it to him
        bobs_page.goto(f"{gateway.url}/monitor/?job={results.futures[0].job_id}")
        expect(bobs_page.locator(".farside-jobhead")).to_contain_text("not found", timeout=LONG)
        assert "slow_square" not in bobs_page.locator(".farside-jobhead").inner_html()


def test_the_monitor_without_a_session_asks_to_log_in(gateway: GatewayProcess) -> None:
    with chromium_page() as page:
        page.goto(f"{gateway.url}/monitor/")
        page.wait_for_selector("text=Not logged in", timeout=LONG)
        page.goto(f"{gateway.url}/monitor/login")
        page.fill("#token", "fsu_" + "x" * 43)
        page.click("button[type=submit]")
        page.wait_for_selector("text=The gateway refused that token", timeout=LONG)


def test_a_jobs_drill_down_shows_its_life_log_and_usage_and_takes_commands(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    from playwright.sync_api import expect

    shots = artifacts_dir()

    @farside.task(gateway=client, memory="800 MB")
    def busy(seconds: float) -> int:
        block = bytearray(200 * 1024**2)  # 200 MB held while it works
        end = time.time() + seconds
        n = 0
        while time.time() < end:
            n += 1
            if n % 2_000_000 == 0:
                print("still busy", n, flush=True)
        return len(block)

    future = busy.submit(12.0)
    with chromium_page() as page:
        _log_in(page, gateway, gateway.user_token)
        page.goto(f"{gateway.url}/monitor/?job={future.job_id}")
        head = page.locator(".farside-jobhead")
        expect(head).to_contain_text(f"{future.job_id}", timeout=LONG)
        # its output arrives while it runs, without a reload
        expect(page.locator(".farside-logpane")).to_contain_text("still busy", timeout=LONG)
        assert future.result(timeout=120) == 200 * 1024**2
        expect(head).to_contain_text("finished", timeout=LONG)
        attempts = page.locator(".farside-attempts-pane")
        expect(attempts).to_contain_text("local", timeout=LONG)
        # the pilot's samples of its memory and CPU, drawn once the attempt ended
        expect(page.locator(".bk-Canvas, canvas").first).to_be_visible(timeout=LONG)
        page.screenshot(path=str(shots / "monitor-job.png"), full_page=True)
        detail = client.job(future.job_id)
        assert detail.attempt_list[0].max_rss
        assert detail.attempt_list[0].max_rss > 200 * 1024**2

        # retry with more memory, from the page
        page.get_by_placeholder("e.g. 8 GiB").fill("900 MB")
        page.get_by_role("button", name="Retry").click()
        message = page.locator(".farside-message")
        expect(message).to_contain_text("retried as job", timeout=LONG)
        new_id = int(re.findall(r"retried as job (\d+)", message.locator("p").inner_text())[0])
        assert client.job(new_id).resources.memory == 900 * 10**6

        # and kill it while it runs
        expect(head).to_contain_text(f"{new_id}", timeout=LONG)
        page.get_by_role("button", name="Kill").click()
        expect(message).to_contain_text(f"cancelled: [{new_id}]", timeout=LONG)
        assert client.job(new_id).state == "cancelled"


MONITOR_PORT = 18780  # the redirect URI registered for farside-monitor (scripts/oidc)


def test_logging_in_at_the_oidc_issuer(make_gateway: Any) -> None:
    from playwright.sync_api import expect

    from support.authz import oidc_settings
    from support.oidc import PASSWORDS, start_provider

    issuer = start_provider()
    gateway = make_gateway(
        start=False, oidc={**oidc_settings(issuer), "browser_client_id": "farside-monitor"}
    ).start(port=MONITOR_PORT)
    with chromium_page() as page:
        page.goto(f"{gateway.url}/monitor/login")
        page.click("a.oidc")
        page.wait_for_selector("#username", timeout=LONG)
        assert page.url.startswith(issuer), page.url  # the provider's own login page
        page.fill("#username", "alice")
        page.fill("#password", PASSWORDS["alice"])
        page.click("#submit")
        if page.locator("#allow").count():
            page.click("#allow")
        expect(page.get_by_text("alice (your work)")).to_be_visible(timeout=LONG)
        page.screenshot(path=str(artifacts_dir() / "monitor-oidc.png"), full_page=True)


def test_admins_switch_a_sites_status_from_the_sites_tab(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    from playwright.sync_api import expect

    admin = gateway.make_user_token("ops", admin=True)
    with _two_browsers() as (page, users_page):
        _log_in(page, gateway, admin)
        page.locator(".bk-tab", has_text="Sites").click()
        page.locator("select").nth(1).select_option("draining")
        page.get_by_placeholder("why (shown to users)").fill("disk maintenance")
        page.get_by_role("button", name="Set status").click()
        expect(page.locator(".farside-site-message")).to_contain_text(
            "site local is now draining", timeout=LONG
        )
        expect(page.locator(".farside-site")).to_contain_text("disk maintenance", timeout=LONG)
        (site,) = client.sites()
        assert (site.status, site.status_reason) == ("draining", "disk maintenance")

        _log_in(users_page, gateway, gateway.make_user_token("carol"))
        users_page.locator(".bk-tab", has_text="Sites").click()
        expect(users_page.locator(".farside-site")).to_contain_text("draining", timeout=LONG)
        assert users_page.get_by_role("button", name="Set status").count() == 0
