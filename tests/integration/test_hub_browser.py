"""A user's whole way in, in a real browser: JupyterHub's login button, the OIDC provider's
login form (alice's name and password) and consent page, the profile choice, JupyterLab, a
notebook whose cell submits a farside task through the gateway, and its result on the page.

Headless Chromium (Debian's, from scripts/browser.sh) driven by Playwright; a screenshot of
the Lab with the result is left in ``$FARSIDE_TEST_ARTIFACTS`` (default tests/artifacts/).
``test_up_hub_browser.py`` does the same through ``farside up --hub``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import log_in_and_run_a_task, page
from hub_support import HubStack, artifacts_dir, hub_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]
__all__ = ["page"]  # a fixture, used by name


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStack]:
    yield from hub_stack(tmp_path_factory.mktemp("hub"))


@pytest.mark.timeout(900)
def test_alice_logs_in_and_runs_a_farside_task_from_a_notebook(hub: HubStack, page: Any) -> None:
    log_in_and_run_a_task(page, hub.url, hub.issuer, artifacts_dir() / "hub_browser.png")
    # the job ran on the gateway as alice: the hub handed her OIDC token to her server
    with hub.gateway.http(hub.gateway.user_token) as gw:
        jobs = gw.get("/jobs", params={"all": "true"}).json()
    owners = {job["owner"] for job in jobs["jobs"]}
    assert "alice" in owners, jobs
