"""Brokerage decisions without a database: matching, site ranking, fair-share plans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from farside_gateway.broker.match import Need, check_runnable, unmet
from farside_gateway.broker.plan import SiteView, place
from farside_gateway.config import SiteConfig
from farside_gateway.pool.fairshare import Claimant, ShareRules, plan
from farside_gateway.pool.scouts import percentile
from farside_gateway.sites.base import load_site
from farside_protocol import ErrorClass, InvalidRequest
from farside_protocol.models import JobSpec, Resources

GiB = 1024**3


def site(name: str, **settings: Any) -> SiteConfig:
    return SiteConfig.model_validate(
        {"name": name, "cores": 4, "memory": 8 * GiB, "arch": "x86_64", **settings}
    )


def need(**settings: Any) -> Need:
    return Need(**{"cores": 1, "memory": GiB, "walltime": 60, "gpus": 0, **settings})


def view(config: SiteConfig, running: int = 0, queued: int = 0, free: int = 0) -> SiteView:
    return SiteView(config, running, queued, free, free * GiB, 0)


def test_unmet_names_the_first_missing_requirement() -> None:
    gpu = site("gpu", gpus=2, gpu_model="A100", environments=["ml"])
    assert unmet(gpu, need(gpus=2, gpu_model="A100", env="ml")) is None
    assert "H100" in (unmet(gpu, need(gpus=1, gpu_model="H100")) or "")
    assert "aarch64" in (unmet(gpu, need(arch="aarch64")) or "")
    assert "'cpu-only'" in (unmet(gpu, need(env="cpu-only")) or "")
    assert "not among the allowed" in (unmet(gpu, need(sites=("other",))) or "")


def test_check_runnable_says_what_no_site_offers() -> None:
    sites = [site("a"), site("b", memory=16 * GiB)]
    spec = JobSpec(payload=b"", resources=Resources(memory=32 * GiB))
    with pytest.raises(InvalidRequest, match=r"32 GiB of memory.*16 GiB \(site b\)"):
        check_runnable(sites, [spec])
    # each requirement is met by some site, but never all by one
    sites = [site("big", memory=32 * GiB), site("gpu", gpus=1)]
    spec = JobSpec(payload=b"", resources=Resources(memory=32 * GiB, gpus=1))
    with pytest.raises(InvalidRequest, match="no single site"):
        check_runnable(sites, [spec])


def test_place_prefers_free_room_then_weight_then_preference() -> None:
    a, b = site("a", max_pilots=10), site("b", max_pilots=10)
    # free room on b wins over a's better weight
    views = [view(a, running=5), view(b, running=1, free=1)]
    assert place(views, [need()]) == {"a": 0, "b": 0}
    # no room anywhere: the higher (running+1)/(queued+1) gets the pilot
    views = [view(a, running=3, queued=0), view(b, running=0, queued=2)]
    assert place(views, [need()]) == {"a": 1, "b": 0}
    # a site whose submissions keep failing comes after a healthy one
    sick = view(a, running=3)
    sick.healthy = False
    assert place([sick, view(b)], [need()]) == {"a": 0, "b": 1}
    # equal weights: the user's order of preference decides
    views = [view(a), view(b)]
    assert place(views, [need(sites=("b", "a"))]) == {"a": 0, "b": 1}


def test_place_never_submits_more_than_demand_or_limits() -> None:
    small = site("small", cores=1, max_pilots=3, max_queued=2)
    views = [view(small)]
    assert place(views, [need()] * 10) == {"small": 2}  # max_queued caps waiting pilots
    views = [view(small, queued=1, free=1)]
    assert place(views, [need()]) == {"small": 0}  # the waiting pilot will take it
    offline = site("off", status="offline", min_warm=2)
    assert place([view(offline)], [need()] * 3) == {"off": 0}


def test_place_tops_up_the_warm_minimum() -> None:
    warm = site("warm", min_warm=2, max_pilots=4)
    assert place([view(warm, running=1)], []) == {"warm": 1}


def test_fair_share_plan_interleaves_users_and_honours_caps() -> None:
    alice = Claimant("alice", None, held_jobs=4, held_cores=4)
    bob = Claimant("bob", None)
    rules = ShareRules()
    got = plan([alice, bob], rules, 6)
    assert got[0][0] is bob  # furthest below share goes first
    assert dict((u.owner, n) for u, n in got) == {"bob": 5, "alice": 1}
    capped = ShareRules(max_jobs=2)
    assert dict((u.owner, n) for u, n in plan([alice, bob], capped, 6)) == {"bob": 2}


def test_group_shares_weight_the_plan() -> None:
    rules = ShareRules(groups={"atlas": 3.0, "cms": 1.0})
    atlas = Claimant("ann", "atlas", share=3.0)
    cms = Claimant("carl", "cms", share=1.0)
    counts = dict((u.owner, n) for u, n in plan([atlas, cms], rules, 8))
    assert counts == {"ann": 6, "carl": 2}


def test_percentile() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2


@pytest.mark.parametrize(
    ("plugin", "options", "memory_end", "other_end"),
    [
        ("slurm", {}, "OUT_OF_MEMORY", "CANCELLED"),
        ("kubernetes", {"image": "x"}, "Failed: OOMKilled, exit code 137", "Failed: Evicted"),
        ("htcondor", {}, "held: Job over memory limit (code 34)", "removed: by user"),
    ],
)
def test_each_site_says_which_batch_ends_were_out_of_memory(
    tmp_path: Path, plugin: str, options: dict[str, Any], memory_end: str, other_end: str
) -> None:
    config = SiteConfig(name="s", plugin=plugin, cores=1, memory="1 GiB", options=options)
    site = load_site(config, "http://gw:1", tmp_path)
    assert site.classify_end(memory_end) == (ErrorClass.RESOURCE, "memory")
    assert site.classify_end(other_end) == (ErrorClass.SYSTEM, None)
    assert site.classify_end(None) == (ErrorClass.SYSTEM, None)
    # a batch system's words are its own: Slurm's state means nothing to the local site
    local = load_site(SiteConfig(name="l", plugin="local", cores=1), "http://gw:1", tmp_path)
    assert local.classify_end("OUT_OF_MEMORY") == (ErrorClass.SYSTEM, None)
