"""A user's whole way in, in a real browser: JupyterHub's login button, the OIDC provider's
login form (alice's name and password) and consent page, the profile choice, JupyterLab, a
notebook whose cell submits a farside task through the gateway, and its result on the page;
then, once the access token the server started with has expired (tokens live 45 s here),
another task from the same kernel: the client renews the token through the hub.

Headless Chromium (Debian's, from scripts/browser.sh) driven by Playwright; a screenshot of
the Lab with the result is left in ``$FARSIDE_TEST_ARTIFACTS`` (default tests/artifacts/).
``test_up_hub_browser.py`` does the same through ``farside up --hub``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.browser import log_in_and_run_a_task, run_another_cell
from support.hub import HubStack, artifacts_dir, hub_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]

#: access tokens live this many seconds here (an hour by default), so that the token the
#: server started with expires during the test
TOKEN_TTL = 45
SHORT_LIVED = """
c.FarsideOAuthenticator.token_min_lifetime = 20
c.FarsideOAuthenticator.auth_refresh_age = 5
"""
#: waits until the server's first token is past its expiry and the gateway's 30 s leeway
#: (the gateway refuses it then, which the cell checks), then submits: the task runs only
#: if the client got a fresh token through the hub
AFTER_EXPIRY = """import os, time, httpx
from farside._tokens import jwt_expiry
first = os.environ["FARSIDE_TOKEN"]
while jwt_expiry(first) > time.time() - 32:
    time.sleep(1)
url = os.environ["FARSIDE_GATEWAY_URL"].rstrip("/") + "/api/v1/whoami"
stale = httpx.get(url, headers={"Authorization": "Bearer " + first}).status_code
print("stale token:", stale, "after expiry", square.submit(8).result(timeout=180))
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubStack]:
    yield from hub_stack(tmp_path_factory.mktemp("hub"), TOKEN_TTL, SHORT_LIVED)


@pytest.mark.timeout(900)
def test_alice_logs_in_and_runs_a_farside_task_from_a_notebook(hub: HubStack, page: Any) -> None:
    log_in_and_run_a_task(page, hub.url, hub.issuer, artifacts_dir() / "hub_browser.png")
    # the token the hub put in the server's environment expires; the kernel goes on
    run_another_cell(page, AFTER_EXPIRY, "stale token: 401 after expiry 64")
    # the job ran on the gateway as alice: the hub handed her OIDC token to her server
    with hub.gateway.http(hub.gateway.user_token) as gw:
        jobs = gw.get("/jobs", params={"all": "true"}).json()
    owners = {job["owner"] for job in jobs["jobs"]}
    assert "alice" in owners, jobs
