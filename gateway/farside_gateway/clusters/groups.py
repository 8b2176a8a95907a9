"""Rules for worker groups that need no scheduler: what a group left to the gateway gets,
and the checks that refuse a group no site could ever run."""

from __future__ import annotations

import re

from farside_protocol import InvalidRequest
from farside_protocol.clusters import GROUP_PATTERN, WorkerGroupSpec

from ..broker.match import check_runnable
from ..config import SiteConfig
from . import store


def fit_defaults(sites: list[SiteConfig], groups: dict[str, WorkerGroupSpec]) -> None:
    """A group that left its memory or walltime to us gets the default, but no more
    than the biggest slot its sites offer: a default of 8 hours on sites of 1-hour
    slots (or 2 GiB on a laptop's 1 GiB slots) would wait forever, and the user did not
    ask for it."""
    for name, spec in groups.items():
        allowed = [s for s in sites if not spec.sites or s.name in spec.sites]
        if not allowed:
            continue  # check_groups names the unknown sites
        update: dict[str, int] = {}
        longest = [s.walltime for s in allowed]
        if "walltime" not in spec.model_fields_set and None not in longest:
            most = max(w for w in longest if w is not None)
            if most < spec.walltime:
                update["walltime"] = most
        biggest = max(s.memory for s in allowed)
        if "memory" not in spec.model_fields_set and biggest < spec.memory:
            update["memory"] = biggest
        if update:
            groups[name] = spec.model_copy(update=update)


def check_groups(sites: list[SiteConfig], groups: dict[str, WorkerGroupSpec]) -> None:
    for name in groups:
        if not re.fullmatch(GROUP_PATTERN, name):
            raise InvalidRequest(
                f"worker group name {name!r} is not allowed: use 1-32 lower-case letters, "
                "digits, '-' or '_', starting with a letter"
            )
    # a worker group no site can run would wait forever: say so now
    for name, spec in groups.items():
        try:
            check_runnable(sites, [store.probe_spec(spec)])
        except InvalidRequest as exc:
            message = str(exc).replace("job 0", f"worker group {name!r}", 1)
            raise InvalidRequest(message) from None
