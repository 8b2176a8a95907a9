"""Where new pilots go: each queued job is placed on the best site that can run it.

The provisioner asks this module, once per pass, how many pilots each site needs. The
queued jobs at the head of the queue (as many as all sites together could run at once)
are walked best first; each goes to the best-ranked online site that fits it:

1. a site with free room on pilots it already has (running or waiting in the batch queue);
2. else a healthy site before one whose submissions keep failing;
3. else the highest PanDA weight ``(running + 1) / (queued + 1)`` — a site that starts
   its pilots promptly gets more, one whose queue is backed up gets fewer;
4. else the user's order of preference (the job's ``sites`` list).

A site gets a new pilot only for a job that needs it and only within its limits
(``max_pilots``, ``max_queued``), so it never has more waiting pilots than demand; on top
of that each site keeps its warm minimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from farside_protocol import SiteStatus

from ..config import SiteConfig
from .match import Need, fits


@dataclass
class SiteView:
    """A site as the planner sees it during one pass."""

    config: SiteConfig
    running: int  # registered pilots that take work
    queued: int  # pilots submitted but not registered yet
    free_cores: int  # cores on those pilots that no job holds
    free_memory: int
    free_gpus: int
    new: int = 0  # pilots this pass decides to submit
    healthy: bool = True  # False after repeated failed submissions

    @property
    def name(self) -> str:
        return self.config.name

    def has_room(self, need: Need) -> bool:
        return (
            self.free_cores >= need.cores
            and self.free_memory >= need.memory
            and self.free_gpus >= need.gpus
        )

    def can_grow(self) -> bool:
        cfg = self.config
        return (
            self.running + self.queued + self.new < cfg.max_pilots
            and self.queued + self.new < cfg.queue_limit
        )

    def take(self, need: Need) -> None:
        self.free_cores -= need.cores
        self.free_memory -= need.memory
        self.free_gpus -= need.gpus

    def grow(self) -> None:
        self.new += 1
        self.free_cores += self.config.cores
        self.free_memory += self.config.memory
        self.free_gpus += self.config.gpus

    def weight(self) -> float:
        return (self.running + 1) / (self.queued + self.new + 1)


def rank(view: SiteView, need: Need) -> tuple[int, int, float, int]:
    """Sort key of a fitting site for one job: smaller is better."""
    preference = need.sites.index(view.name) if view.name in need.sites else len(need.sites)
    return (0 if view.has_room(need) else 1, 0 if view.healthy else 1, -view.weight(), preference)


def place(views: Sequence[SiteView], needs: Sequence[Need]) -> dict[str, int]:
    """New pilots per site for these queued jobs (best first), plus warm minimums."""
    online = [v for v in views if v.config.status == SiteStatus.ONLINE]
    for need in needs:
        candidates = [v for v in online if fits(v.config, need)]
        for view in sorted(candidates, key=lambda v: rank(v, need)):
            if view.has_room(need):
                view.take(need)
                break
            if view.can_grow():
                view.grow()
                view.take(need)
                break
    for view in online:
        short = view.config.min_warm - (view.running + view.queued + view.new)
        while short > 0 and view.can_grow():
            view.grow()
            short -= 1
    return {v.name: v.new for v in views}


def head_size(sites: Sequence[SiteConfig]) -> int:
    """How many queued jobs, at most, all online sites' pilots could hold at once; more
    of the queue cannot change this pass's decisions."""
    total = sum(s.max_pilots * s.cores for s in sites if s.status == SiteStatus.ONLINE)
    return min(10_000, total + 1)
