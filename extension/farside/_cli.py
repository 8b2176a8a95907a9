"""The ``farside`` command: look at and steer your jobs; start the local platform.

``farside up``, ``farside gateway`` and ``farside pilot`` hand the rest of the command line
to the gateway and pilot packages (imported only then). The other subcommands talk to the
gateway configured as for :class:`farside.Gateway`. Errors print one line and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, get_args

from farside_protocol import FarsideError, __version__, format_memory, format_walltime
from farside_protocol.models import JobKind

from ._cli_format import cell_width, gpu_use, listing, print_json, table, when
from ._cli_platform import add_platform_commands
from ._cli_workflows import add_workflow_commands
from ._client import Gateway
from ._login import login_main

__all__ = ["main"]

DELEGATED = {
    "up": ("farside_platform.up", "up_main", "start the local platform (gateway + local pilots)"),
    "gateway": ("farside_gateway.cli", "gateway_main", "run or manage a gateway server"),
    "pilot": ("farside_pilot.cli", "main", "run a pilot (normally started by a site)"),
}


def _delegate(command: str, argv: list[str]) -> int:
    module_name, attr, _ = DELEGATED[command]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = " (pip install 'farside[gateway]')" if command != "pilot" else ""
        print(f"farside {command}: not available here: {exc}{extra}", file=sys.stderr)
        return 1
    entry: Callable[[list[str]], int | None] = getattr(module, attr)
    return int(entry(argv) or 0)


# ---------------------------------------------------------------- commands


def _jobs(gw: Gateway, args: argparse.Namespace) -> int:
    jobs = gw.jobs(
        state=args.state,
        group=args.group,
        limit=args.limit,
        batch_id=args.batch_id,
        kind=args.kind,
    )
    if args.json:
        print_json(jobs)
        return 0
    rows = [
        [
            j.id,
            j.name,
            j.kind,
            j.state.value,
            j.site,
            j.attempts,
            when(j.created),
            when(j.ended),
            j.error or j.adjusted,  # a failure's reason, else how the gateway resized the job
        ]
        for j in jobs
    ]
    header = ["id", "name", "kind", "state", "site", "attempts", "created", "ended", "error / note"]
    listing(header, rows, "no jobs")
    return 0


def _job(gw: Gateway, args: argparse.Namespace) -> int:
    job = gw.job(args.job_id)
    if args.json:
        print_json(job)
        return 0
    r = job.resources
    fields: list[tuple[str, Any]] = [
        ("id", job.id),
        ("name", job.name),
        ("group", job.group),
        ("owner", job.owner),
        ("state", job.state.value),
        ("site", job.site),
        ("pilot", job.pilot_id),
        ("attempts", job.attempts),
        (
            "resources",
            f"{r.cores} cores, {format_memory(r.memory)}, {r.gpus} GPUs, "
            f"walltime {format_walltime(r.walltime)}",
        ),
        ("priority", job.priority),
        ("after", ", ".join(map(str, job.after)) or None),
        ("created", when(job.created)),
        ("started", when(job.started)),
        ("ended", when(job.ended)),
        ("exit code", job.exit_code),
        ("error class", job.error_class.value if job.error_class else None),
        ("error", job.error),
        ("adjusted", job.adjusted),
    ]
    for key, value in fields:
        print(f"{key + ':':<13}{'-' if value is None else value}")
    print("\nhistory:")
    print(
        table(
            ["time", "state", "attempt", "reason"],
            [[when(h.time), h.state.value, h.attempt, h.reason] for h in job.history],
            cell_width(),
        )
    )
    if job.attempt_list:
        print("\nattempts:")
        print(
            table(
                ["#", "state", "site", "pilot", "batch id", "started", "ended", "GPU", "error"],
                [
                    [
                        a.number,
                        a.state.value,
                        a.site,
                        a.pilot_id,
                        a.batch_id,
                        when(a.started),
                        when(a.ended),
                        gpu_use(a.gpu_memory, a.gpu_utilization),
                        a.error,
                    ]
                    for a in job.attempt_list
                ],
                cell_width(),
            )
        )
    return 0


def _logs(gw: Gateway, args: argparse.Namespace) -> int:
    for line in gw.logs(args.job_id, follow=args.follow, since=args.since):
        print(line, flush=args.follow)
    return 0


def _debug(gw: Gateway, args: argparse.Namespace) -> int:
    try:
        print("\n".join(gw.debug(args.job_id, timeout=args.timeout)))
    except TimeoutError as exc:
        raise FarsideError(f"{exc}; is the job still running? (farside job {args.job_id})") from exc
    return 0


def _retry(gw: Gateway, args: argparse.Namespace) -> int:
    changes = {
        "cores": args.cores,
        "memory": args.memory,
        "walltime": args.walltime,
        "gpus": args.gpus,
        "sites": args.site,
    }
    future = gw.retry(args.job_id, **{k: v for k, v in changes.items() if v is not None})
    print(f"job {args.job_id} retried as job {future.job_id}")
    return 0


def _cancel(gw: Gateway, args: argparse.Namespace) -> int:
    if not args.job_ids and not args.group:
        raise FarsideError("name job ids or --group to cancel")
    cancelled = gw.cancel(args.job_ids, group=args.group)
    if cancelled:
        print("cancelled: " + " ".join(map(str, cancelled)))
    else:
        print("nothing cancelled (the jobs had already ended)")
    return 0


def _whoami(gw: Gateway, args: argparse.Namespace) -> int:
    me = gw.whoami()
    print(f"{me.name} ({me.kind}) at {gw.url}")
    return 0


_CONNECTION_HELP = {
    "--url": "gateway URL (default: $FARSIDE_GATEWAY_URL, then client.json)",
    "--token": "bearer token (default: $FARSIDE_TOKEN, then client.json)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="farside", description="Run and follow farside jobs; start the local platform."
    )
    # accepted before and after the subcommand; SUPPRESS keeps a subparser from resetting them
    common = argparse.ArgumentParser(add_help=False)
    for flag, default in (("--url", argparse.SUPPRESS), ("--token", argparse.SUPPRESS)):
        common.add_argument(flag, default=default, help=_CONNECTION_HELP[flag])
    for flag in ("--url", "--token"):
        parser.add_argument(flag, help=_CONNECTION_HELP[flag])
    parser.add_argument("--version", action="version", version=f"farside {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[common])

    def add_listing(name: str, help_text: str) -> argparse.ArgumentParser:
        p = add(name, help_text)
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        return p

    for name, (_, _, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)

    p = add_listing("jobs", "list your jobs, newest first")
    p.add_argument("--state", help="only jobs in this state (queued, running, failed, ...)")
    p.add_argument("--group", help="only jobs of this group (one map)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument(
        "--batch-id", help="only jobs that ran on the pilot of this batch job (squeue's id, ...)"
    )
    p.add_argument(
        "--kind",
        choices=get_args(JobKind),
        help="only tasks (function) or only Dask clusters' worker leases (dask-worker)",
    )
    p.set_defaults(func=_jobs)

    p = add_listing("job", "show one job with its history and attempts")
    p.add_argument("job_id", type=int)
    p.set_defaults(func=_job)

    p = add("logs", "print a job's output")
    p.add_argument("job_id", type=int)
    p.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    p.add_argument("--since", type=int, default=0, help="start at this line number")
    p.set_defaults(func=_logs)

    p = add("cancel", "cancel jobs (queued or running)")
    p.add_argument("job_ids", type=int, nargs="*")
    p.add_argument("--group", help="cancel every job of this group")
    p.set_defaults(func=_cancel)

    p = add("retry", "run a job again as a new job, with changed resources or sites")
    p.add_argument("job_id", type=int)
    p.add_argument("--cores", type=int)
    p.add_argument("--memory", help="e.g. '8 GiB'")
    p.add_argument("--walltime", help="e.g. '2 hours'")
    p.add_argument("--gpus", type=int)
    p.add_argument("--site", action="append", help="an allowed site (repeatable)")
    p.set_defaults(func=_retry)

    p = add("debug", "print the Python stacks of a running job's threads (a live stack dump)")
    p.add_argument("job_id", type=int)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    p.set_defaults(func=_debug)

    p = add("login", "log in at the gateway's OIDC issuer (device code in a browser)")
    p.add_argument("--issuer", help="OIDC issuer URL (default: the one the gateway names)")
    p.add_argument("--client-id", help="OIDC client (default: the one the gateway names)")

    add_workflow_commands(add, add_listing)
    add_platform_commands(add, add_listing)

    for name, func, help_text in (("whoami", _whoami, "show who the gateway thinks you are"),):
        add(name, help_text).set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``farside`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in DELEGATED:
        return _delegate(args_list[0], args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 1
    try:
        if args.command == "login":  # needs no token: it gets one
            return login_main(args.url, args.issuer, args.client_id)
        with Gateway(args.url, args.token, set_as_default=False) as gw:
            return int(args.func(gw, args))
    except FarsideError as exc:
        print(f"farside {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
