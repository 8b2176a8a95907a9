"""``farside gateway``: the gateway's command line. It runs a gateway from an operator's
configuration file (``farside gateway token`` makes tokens for it). ``farside up``, the
local platform, is built on it in :mod:`farside_platform.up`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from farside_protocol import ConfigurationError, FarsideError, env

from .config import GatewayConfig, load_config
from .token_files import TokenFiles

if TYPE_CHECKING:  # the server's modules load only to serve: `token` needs none of them
    from .runtime import Runtime

log = logging.getLogger("farside_gateway")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="gateway configuration file (TOML)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on; 0 picks a free one")
    parser.add_argument("--state-dir", type=Path, help="database, blobs and pilot logs")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in state dir)")
    parser.add_argument("--log-level", default="INFO", help="gateway log level (default INFO)")


def load_with_flags(args: argparse.Namespace, **defaults: object) -> GatewayConfig:
    """The configuration file over ``defaults``; command-line flags win over both."""
    overrides = {
        "host": args.host,
        "port": args.port,
        "state_dir": args.state_dir,
        # flag, then environment (a Kubernetes Secret), then the file
        "database_url": args.database_url or os.environ.get(env.DATABASE_URL) or None,
    }
    return load_config(args.config, defaults, **overrides)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # a line per HTTP request or migration step would drown the gateway's own story
    for chatty in ("httpx", "alembic"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))


def run(
    config: GatewayConfig,
    tokens: TokenFiles | None,
    stop_pilots: bool,
    on_ready: Callable[[Runtime], None] | None = None,
) -> int:
    """Serve ``config`` until stopped; ``tokens``: files to write (and accept) for a
    client in this account; ``on_ready``: called once the gateway listens."""
    from .server import serve

    def ready(runtime: Runtime) -> None:
        if tokens is not None:
            tokens.write_client_config(runtime.public_url)
        if on_ready is not None:
            on_ready(runtime)

    hooks = [tokens.register] if tokens is not None else []
    return serve(config, stop_pilots_on_exit=stop_pilots, on_ready=ready, bootstrap=hooks)


def gateway_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "token":
        return _token_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="farside gateway",
        description="Run a workload gateway. Subcommand: `farside gateway token --help`.",
    )
    add_common_options(parser)
    parser.add_argument(
        "--token-dir",
        type=Path,
        help="write a user token, a pilot token and client.json here (like `farside up`)",
    )
    parser.add_argument(
        "--keep-pilots",
        action="store_true",
        help="leave pilots running when the gateway stops (they reconnect when it is back)",
    )
    parser.add_argument(
        "--cluster-host",
        metavar="ADDRESS",
        help="this replica's own address for its Dask schedulers: clients and workers "
        "connect there, other replicas reach their dashboards there (sets [clusters] "
        "contact_host and dashboard_host; e.g. a pod's IP)",
    )
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = load_with_flags(args)
        if args.cluster_host:
            # per replica, unlike the shared file: each pod passes its own IP
            clusters = config.clusters.model_copy(
                update={"contact_host": args.cluster_host, "dashboard_host": args.cluster_host}
            )
            config = config.model_copy(update={"clusters": clusters})
        tokens = TokenFiles(args.token_dir) if args.token_dir else None
        return run(config, tokens, stop_pilots=not args.keep_pilots)
    except FarsideError as exc:
        print(f"farside gateway: {exc}", file=sys.stderr)
        return 1


def _token_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="farside gateway token", description="Create a token and print it."
    )
    add_common_options(parser)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user token for this user name")
    who.add_argument("--site", help="a site token: may register pilots for this site")
    parser.add_argument("--admin", action="store_true", help="the user may see every job")
    parser.add_argument("--ttl", type=float, help="seconds until the token expires")
    parser.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME",
        help="fair-share group of the user (repeatable; the first counts for fair share)",
    )
    args = parser.parse_args(argv)
    bad = [g for g in args.group if not g or "," in g]
    if bad:
        parser.error(f"group names must be non-empty and contain no commas: {bad}")
    from .auth.tokens import issue_token
    from .db import Database

    try:
        config = load_with_flags(args)
    except ConfigurationError as exc:
        print(f"farside gateway token: {exc}", file=sys.stderr)
        return 1
    db = Database(config.resolved_database_url)
    try:
        db.migrate()
        if args.user:
            token = db.run_sync(
                issue_token, "user", args.user, admin=args.admin, ttl=args.ttl, groups=args.group
            )
        else:
            token = db.run_sync(issue_token, "site", args.site, ttl=args.ttl)
    finally:
        db.close()
    print(token)
    return 0
