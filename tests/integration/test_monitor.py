"""The web monitor's way in and its numbers, without a browser (test_monitor_browser.py
drives the page in Chromium): the login page, the session cookie, and what the pages read
from a real gateway's pool after real jobs ran, per user."""

from __future__ import annotations

import time

import httpx
import pytest
import sqlalchemy

import farside
from farside_gateway.monitor import queries, render
from support.harness import GatewayProcess

pytestmark = [pytest.mark.integration]


@pytest.fixture
def database_url() -> None:
    """SQLite only: the test reads the gateway's database file beside it."""
    return None


def test_logging_in_takes_a_users_token_and_keeps_only_a_sealed_cookie(
    gateway: GatewayProcess,
) -> None:
    with httpx.Client(base_url=gateway.url) as http:
        page = http.get("/monitor/login")
        assert page.status_code == 200
        assert "<form" in page.text
        refused = http.post("/monitor/login", data={"token": "fsu_" + "x" * 43})
        assert refused.status_code == 401
        assert "refused that token" in refused.text
        pilots = http.post("/monitor/login", data={"token": gateway.site_token})
        assert pilots.status_code == 403
        empty = http.post("/monitor/login", data={"token": ""})
        assert empty.status_code == 400
        good = http.post("/monitor/login", data={"token": gateway.user_token})
        assert good.status_code == 303
        assert good.headers["location"] == "/monitor/"
        cookie = good.headers["set-cookie"]
        assert cookie.startswith("farside_monitor=")
        for attribute in ("HttpOnly", "Path=/monitor", "SameSite=strict", "Max-Age=43200"):
            assert attribute.lower() in cookie.lower(), cookie
        assert gateway.user_token not in cookie
        # the page itself (its content comes over its websocket)
        http.cookies.set("farside_monitor", good.cookies["farside_monitor"])
        shown = http.get("/monitor/")
        assert shown.status_code == 200
        assert "<title>farside monitor</title>" in shown.text
    assert gateway.user_token not in gateway.log_path.read_text()


def test_the_pages_numbers_come_from_the_pool_and_stay_the_users(
    gateway: GatewayProcess, client: farside.Gateway
) -> None:
    bob_token = gateway.make_user_token("bob")

    @farside.task(gateway=client)
    def check(x: int) -> int:
        if x % 4 == 0:
            raise ValueError(f"bad value {x}")
        return x

    results = check.map(range(8), group="checks")
    for future in results.futures:
        future.exception(timeout=120)
    with farside.Gateway(gateway.url, bob_token, set_as_default=False) as bob:
        farside.task(gateway=bob)(abs).submit(-3).result(timeout=120)

    engine = sqlalchemy.create_engine(f"sqlite:///{gateway.state_dir / 'farside.db'}")
    with engine.connect() as conn:
        everyone = {(g.owner, g.group) for g in queries.groups(conn, None)}
        mine = queries.groups(conn, "root")
        errors = queries.error_summary(conn, "root", time.time() - 3600)
        bobs_errors = queries.error_summary(conn, "bob", time.time() - 3600)
        usage = queries.usage(conn, None)
    engine.dispose()
    assert everyone == {("root", "checks"), ("bob", "(single jobs)")}
    (checks,) = mine
    assert (checks.group, checks.total, checks.ended) == ("checks", 8, 8)
    assert checks.counts == {"finished": 6, "failed": 2}
    assert checks.eta(time.time()) is None  # all ended
    (error,) = errors  # "bad value 0" and "bad value 4" are one reason
    assert (error.error_class, error.reason, error.site, error.count) == (
        "user",
        "ValueError: bad value #",
        "local",
        2,
    )
    assert sorted(error.sample_jobs) == sorted(
        f.job_id for f in results.futures if isinstance(f.exception(), ValueError)
    )
    assert bobs_errors == []
    assert usage == []  # nothing queued or running now

    table = render.groups_table(mine, time.time(), show_owner=False)
    assert "<b>checks</b>" in table
    assert "8/8" in table
    shown = render.errors_table(errors)
    assert "ValueError: bad value #" in shown
    assert f"?job={error.sample_jobs[0]}" in shown


def test_a_groups_rate_and_eta() -> None:
    g = queries.GroupProgress("m", "function", "me", {"finished": 5, "running": 5}, 100.0)
    assert g.rate(110.0) == pytest.approx(0.5)
    assert g.eta(110.0) == pytest.approx(10.0)
    fresh = queries.GroupProgress("m", "function", "me", {"queued": 3}, 100.0)
    assert (fresh.rate(110.0), fresh.eta(110.0)) == (None, None)


def test_the_users_table_weighs_usage_against_shares_and_caps() -> None:
    from farside_gateway.pool.fairshare import ShareRules

    usage = [queries.UserUsage("alice", "atlas", running_cores=6, running_jobs=3, queued_jobs=9)]
    shown = render.users_table(usage, ShareRules(groups={"atlas": 2.5}, max_cores=8))
    assert "<b>alice</b>" in shown
    assert "<td>atlas</td><td>2.5</td><td>6</td><td>3</td><td>9</td><td>8 cores</td>" in shown
    assert "<td>none</td>" in render.users_table(usage, ShareRules())
