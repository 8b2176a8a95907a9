"""``farside workflows`` and ``farside workflow RUN [ACTION]``: list runs, show one, and
pause, resume, kill or retry it, or print its body's log, from a shell."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from farside_protocol.workflows import WorkflowInfo

from ._cli_format import listing, print_json, when
from ._client import Gateway

__all__ = ["add_workflow_commands"]

ACTIONS = ("show", "pause", "resume", "kill", "retry", "logs")


def calls(info: WorkflowInfo) -> str:
    """Children as ``finished/all`` with the other states that are not zero.

    >>> from datetime import datetime, UTC
    >>> info = WorkflowInfo(id=1, name="w", owner="me", state="running", body_job_id=3,
    ...     body_runs=1, attempts=1, children={"finished": 8, "running": 2}, report={},
    ...     created=datetime.now(UTC), ended=None)
    >>> calls(info)
    '8/10 (running 2)'
    """
    total = sum(info.children.values())
    others = ", ".join(f"{s} {n}" for s, n in sorted(info.children.items()) if s != "finished")
    done = f"{info.children.get('finished', 0)}/{total}"
    return f"{done} ({others})" if others else done


def _workflows(gw: Gateway, args: argparse.Namespace) -> int:
    runs = gw.workflows(name=args.name, limit=args.limit)
    if args.json:
        print_json(runs)
        return 0
    rows = [
        [
            r.id,
            r.name,
            r.state.value,
            calls(r),
            r.body_runs,
            when(r.created),
            when(r.ended),
            json.dumps(r.report) if r.report else None,
        ]
        for r in runs
    ]
    header = ["id", "name", "state", "calls done", "body runs", "created", "ended", "report"]
    listing(header, rows, "no workflow runs")
    return 0


def _show(info: WorkflowInfo) -> None:
    fields = [
        ("run", info.id),
        ("name", info.name),
        ("owner", info.owner),
        ("state", info.state.value),
        ("body job", info.body_job_id),
        ("body runs", info.body_runs),
        ("attempts", info.attempts),
        ("calls done", calls(info)),
        ("created", when(info.created)),
        ("ended", when(info.ended)),
        ("error", info.error),
    ]
    for key, value in fields:
        print(f"{key + ':':<12}{'-' if value is None else value}")
    for key, value in info.report.items():
        print(f"  {key}: {json.dumps(value)}")


def _workflow(gw: Gateway, args: argparse.Namespace) -> int:
    run = gw.workflow(args.run)
    if args.action == "logs":
        for line in run.logs(follow=args.follow):
            print(line)
        return 0
    commands: dict[str, Callable[[], WorkflowInfo]] = {
        "show": run.progress,
        "pause": run.pause,
        "resume": run.resume,
        "kill": run.kill,
        "retry": run.retry,
    }
    command = commands[args.action]
    info = command()
    if args.json:
        print_json(info)
    else:
        _show(info)
    return 0


def add_workflow_commands(
    add: Callable[[str, str], argparse.ArgumentParser],
    add_listing: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    p = add_listing("workflows", "list your workflow runs, newest first")
    p.add_argument("--name", help="only runs of this workflow")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.set_defaults(func=_workflows)

    p = add_listing("workflow", "show a workflow run, or pause, resume, kill or retry it")
    p.add_argument("run", help="the run's id, or a workflow's name (its newest run)")
    p.add_argument("action", nargs="?", default="show", choices=ACTIONS)
    p.add_argument("-f", "--follow", action="store_true", help="logs: follow until it ends")
    p.set_defaults(func=_workflow)
