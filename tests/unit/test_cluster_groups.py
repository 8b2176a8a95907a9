"""Worker-group rules of the cluster manager that need no scheduler: walltime fitting and
the checks that refuse impossible groups."""

from __future__ import annotations

import pytest

from farside_gateway.clusters.groups import check_groups, fit_defaults
from farside_gateway.config import GatewayConfig, SiteConfig
from farside_protocol import InvalidRequest
from farside_protocol.clusters import WorkerGroupSpec

SITES = [
    {"name": "short", "plugin": "local", "cores": 4, "memory": "8 GiB", "walltime": "1h"},
    {"name": "long", "plugin": "local", "cores": 1, "memory": "2 GiB", "walltime": "2h"},
]


def configured(sites: list[dict[str, object]]) -> list[SiteConfig]:
    return GatewayConfig.model_validate({"sites": sites}).sites


def fit(sites: list[dict[str, object]], groups: dict[str, WorkerGroupSpec]) -> None:
    fit_defaults(configured(sites), groups)


def test_a_walltime_left_to_the_gateway_fits_the_longest_slot() -> None:
    groups = {"default": WorkerGroupSpec(workers=1), "pinned": WorkerGroupSpec(sites=["short"])}
    fit(SITES, groups)
    assert groups["default"].walltime == 2 * 3600
    assert groups["pinned"].walltime == 3600
    assert groups["default"].memory == 2 * 1024**3  # the default, which a site offers


def test_a_memory_left_to_the_gateway_fits_the_biggest_slot() -> None:
    small = [{"name": "laptop", "plugin": "local", "memory": "1 GiB"}]
    groups = {"default": WorkerGroupSpec(), "mine": WorkerGroupSpec(memory="512 MiB")}
    fit(small, groups)
    assert groups["default"].memory == 1024**3
    assert groups["mine"].memory == 512 * 1024**2


def test_a_walltime_the_user_gave_is_kept_and_sites_without_limit_change_nothing() -> None:
    groups = {"mine": WorkerGroupSpec(walltime="3h"), "any": WorkerGroupSpec()}
    fit([*SITES, {"name": "open", "plugin": "local"}], groups)
    assert groups["mine"].walltime == 3 * 3600
    assert groups["any"].walltime == 8 * 3600


def test_impossible_groups_are_refused_with_the_reason() -> None:
    check = check_groups
    me = configured(SITES)
    with pytest.raises(InvalidRequest, match=r"worker group 'big' can run on no site"):
        check(me, {"big": WorkerGroupSpec(memory="64 GiB", walltime="1h")})
    with pytest.raises(InvalidRequest, match="group name 'GPU!' is not allowed"):
        check(me, {"GPU!": WorkerGroupSpec(walltime="1h")})
    check(me, {"ok": WorkerGroupSpec(walltime="1h")})
