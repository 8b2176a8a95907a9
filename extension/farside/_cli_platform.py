"""The ``farside`` commands about the platform rather than one's jobs: sites (and an
admin's status switch), pilots, and Dask clusters."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from farside_protocol import format_memory

from ._cli_format import listing, print_json, when
from ._client import Gateway

__all__ = ["add_platform_commands"]


def _sites(gw: Gateway, args: argparse.Namespace) -> int:
    sites = gw.sites()
    if args.json:
        print_json(sites)
        return 0
    rows = [
        [
            s.name,
            s.kind,
            s.status + ("" if s.healthy else " (unhealthy)"),
            f"{s.slot.cores}c/{format_memory(s.slot.memory)}/{s.slot.gpus}g"
            + (f" {s.slot.gpu_model}" if s.slot.gpu_model else ""),
            " ".join(f"{k}={v}" for k, v in s.pilots.items()),
            s.min_warm,
            s.max_pilots,
            s.last_error or s.status_reason,
        ]
        for s in sites
    ]
    header = ["name", "kind", "status", "slot", "pilots", "min warm", "max", "note"]
    listing(header, rows, "no sites")
    return 0


def _site_status(gw: Gateway, args: argparse.Namespace) -> int:
    site = gw.set_site_status(args.site, args.status, args.reason)
    print(f"site {site.name} is now {site.status}")
    return 0


def _pilots(gw: Gateway, args: argparse.Namespace) -> int:
    pilots = gw.pilots(all=args.all)
    if args.json:
        print_json(pilots)
        return 0
    rows = [
        [
            p.id,
            p.site,
            p.state,
            p.hostname,
            p.batch_id,
            p.cores,
            format_memory(p.memory),
            p.gpus,
            p.running_jobs,
            when(p.last_seen),
        ]
        for p in pilots
    ]
    header = [
        "id",
        "site",
        "state",
        "host",
        "batch id",
        "cores",
        "memory",
        "gpus",
        "running",
        "last seen",
    ]
    listing(header, rows, "no pilots")
    return 0


def _clusters(gw: Gateway, args: argparse.Namespace) -> int:
    clusters = gw.clusters(ended=args.all)
    if args.json:
        print_json(clusters)
        return 0
    rows = []
    for c in clusters:
        live = [w for w in c.workers if not w.state.terminal]
        groups = " ".join(f"{g.name}={g.spec.workers}" for g in c.groups)
        rows.append([c.name, c.state, groups, len(live), c.scheduler_address, c.reason])
    header = ["name", "state", "targets", "leases", "scheduler", "note"]
    listing(header, rows, "no clusters")
    return 0


def _cluster_stop(gw: Gateway, args: argparse.Namespace) -> int:
    from farside_protocol.clusters import ClusterInfo

    info = ClusterInfo.model_validate_json(
        gw._api.request("DELETE", f"/clusters/{args.name}").content
    )
    print(f"cluster {info.name} is {info.state}" + (f": {info.reason}" if info.reason else ""))
    return 0


def add_platform_commands(
    add: Callable[[str, str], argparse.ArgumentParser],
    add_listing: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    p = add("site-status", "set a site online, draining or offline (admins)")
    p.add_argument("site")
    p.add_argument("status", choices=["online", "draining", "offline"])
    p.add_argument("--reason", help="why, shown in `farside sites`")
    p.set_defaults(func=_site_status)

    p = add_listing("pilots", "list pilots with their batch ids")
    p.add_argument("--all", action="store_true", help="also pilots that have ended")
    p.set_defaults(func=_pilots)

    p = add_listing("clusters", "list your Dask clusters")
    p.add_argument("--all", action="store_true", help="also clusters that have ended")
    p.set_defaults(func=_clusters)

    p = add("cluster-stop", "stop a Dask cluster: its workers retire, its scheduler ends")
    p.add_argument("name")
    p.set_defaults(func=_cluster_stop)

    add_listing("sites", "list the sites: status, health, slot and pilots").set_defaults(
        func=_sites
    )
