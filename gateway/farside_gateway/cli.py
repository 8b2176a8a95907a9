"""``farside gateway`` and ``farside up``: the gateway's command line.

``farside up`` is the local platform on embedded defaults: SQLite in the user's data
directory, a ``local`` site of subprocess pilots, tokens and ``client.json`` in the user's
config directory. ``farside gateway`` runs a gateway from an operator's configuration file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from farside_protocol import ConfigurationError, FarsideError, env

from .config import GatewayConfig, load_config
from .local_platform import TokenFiles, config_dir, state_dir

if TYPE_CHECKING:  # the server's modules load only to serve: `token` needs none of them
    from .hub_platform import HubLauncher
    from .runtime import Runtime

log = logging.getLogger("farside_gateway")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="gateway configuration file (TOML)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on; 0 picks a free one")
    parser.add_argument("--state-dir", type=Path, help="database, blobs and pilot logs")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in state dir)")
    parser.add_argument("--log-level", default="INFO", help="gateway log level (default INFO)")


def _load(args: argparse.Namespace, **defaults: object) -> GatewayConfig:
    """The configuration file over ``defaults``; command-line flags win over both."""
    overrides = {
        "host": args.host,
        "port": args.port,
        "state_dir": args.state_dir,
        # flag, then environment (a Kubernetes Secret), then the file
        "database_url": args.database_url or os.environ.get(env.DATABASE_URL) or None,
    }
    return load_config(args.config, defaults, **overrides)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # a line per HTTP request or migration step would drown the gateway's own story
    for chatty in ("httpx", "alembic"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))


def _run(
    config: GatewayConfig,
    tokens: TokenFiles | None,
    banner: bool,
    example: bool,
    once: bool,
    stop_pilots: bool,
    hub: HubLauncher | None = None,
) -> int:
    from .server import serve

    def ready(runtime: Runtime) -> None:
        if hub is not None:
            proxy = runtime.clusters.proxy
            address = f"gateway://{proxy.host}:{proxy.port}" if proxy is not None else None
            hub.start_in_background(runtime.public_url, address)
        if tokens is not None:
            client_json = tokens.write_client_config(runtime.public_url)
            if banner:
                _print_banner(runtime, tokens, client_json)
        if example or once:
            threading.Thread(
                target=_example_then, args=(runtime, example, once), daemon=True
            ).start()

    hooks = [tokens.register] if tokens is not None else []
    try:
        return serve(config, stop_pilots_on_exit=stop_pilots, on_ready=ready, bootstrap=hooks)
    finally:
        if hub is not None:  # the hub stops its proxy and the users' servers
            hub.stop()


def _example_then(runtime: Runtime, example: bool, once: bool) -> None:
    import os
    import signal

    status = 0
    if example:
        from .example import run_example

        try:
            run_example()
        except Exception as exc:
            print(f"the example failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            status = 1
    if once:
        runtime.exit_status = status
        os.kill(os.getpid(), signal.SIGTERM)


def _print_banner(runtime: Runtime, tokens: TokenFiles, client_json: Path) -> None:
    sites = ", ".join(
        f"{s.name} ({s.plugin}, {s.min_warm}-{s.max_pilots} pilots)" for s in runtime.config.sites
    )
    print(
        f"""
farside is up at {runtime.public_url}
  state:   {runtime.config.state_dir} (database {runtime.db.engine.url.render_as_string()})
  sites:   {sites}
  client:  {client_json}

Connect from Python in this account (no arguments needed):
    import farside
    gw = farside.Gateway()

From elsewhere:
    export FARSIDE_GATEWAY_URL={runtime.public_url}
    export FARSIDE_TOKEN=$(cat {tokens.user_token_path}){_dask_gateway_lines(runtime, tokens)}

The web monitor (log in with that token), or straight in from this account:
    {runtime.public_url}/monitor/
    xdg-open "{runtime.public_url}/monitor/login#token=$(cat {tokens.user_token_path})"

Ctrl-C stops the gateway and its pilots.
""",
        flush=True,
    )


def _dask_gateway_lines(runtime: Runtime, tokens: TokenFiles) -> str:
    proxy = runtime.clusters.proxy
    if proxy is None:
        return ""
    return f"""

The stock dask-gateway client (pip install dask-gateway), as in a dask-gateway deployment:
    export DASK_GATEWAY__ADDRESS={runtime.public_url}/dask-gateway
    export DASK_GATEWAY__PROXY_ADDRESS=gateway://{proxy.host}:{proxy.port}
    export DASK_GATEWAY__AUTH__TYPE=basic
    export DASK_GATEWAY__AUTH__KWARGS__PASSWORD=$(cat {tokens.user_token_path})"""


def up_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="farside up",
        description="Run the local platform: gateway + local site of subprocess pilots.",
    )
    _common(parser)
    parser.add_argument(
        "--example", action="store_true", help="run a small example end to end once it is up"
    )
    parser.add_argument(
        "--once", action="store_true", help="stop after start-up (and the example, if asked)"
    )
    hub_options = parser.add_argument_group(
        "JupyterHub",
        "--hub puts JupyterHub in front (docs/how-to/jupyterhub.md); the OIDC "
        "client secret comes from $FARSIDE_HUB_CLIENT_SECRET",
    )
    hub_options.add_argument("--hub", action="store_true", help="run JupyterHub too")
    hub_options.add_argument("--issuer", help="OIDC issuer users log in at (required with --hub)")
    hub_options.add_argument("--client-id", default="farside-hub", help="the hub's OIDC client")
    hub_options.add_argument("--audience", default="farside", help="aud of tokens for farside")
    hub_options.add_argument("--hub-port", type=int, default=8000, help="the hub's port")
    hub_options.add_argument("--hub-api-port", type=int, default=8081, help="hub API port")
    hub_options.add_argument(
        "--allowed-group",
        action="append",
        default=[],
        metavar="NAME",
        help="OIDC group that may log in (repeatable; default: anyone)",
    )
    hub_options.add_argument(
        "--admin-group",
        action="append",
        default=[],
        metavar="NAME",
        help="OIDC group whose members are hub and farside admins",
    )
    hub_options.add_argument("--proxy", help="configurable-http-proxy (default: scripts/hub.sh's)")
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        # the local platform also serves stock dask-gateway clients (a proxy on a free port)
        defaults: dict[str, object] = {"state_dir": state_dir(), "clusters": {"proxy_port": 0}}
        hub = None
        if args.hub:
            from .hub_platform import HubLauncher, HubSettings, find_proxy

            if not args.issuer:
                parser.error("--hub needs --issuer (the OIDC issuer users log in at)")
            settings = HubSettings(
                # beside the gateway's own state, also when --state-dir moves it
                state_dir=Path(args.state_dir or state_dir()) / "hub",
                gateway_url="",
                issuer=args.issuer,
                client_id=args.client_id,
                hub_port=args.hub_port,
                api_port=args.hub_api_port,
                proxy_api_port=args.hub_api_port + 1,
                proxy=find_proxy(args.proxy),
                allowed_groups=args.allowed_group,
                admin_groups=args.admin_group,
            )
            hub = HubLauncher(settings, args.audience)
            defaults.update(hub.gateway_defaults())
        config = _load(args, **defaults)
        tokens = TokenFiles(config_dir())
        return _run(config, tokens, True, args.example, args.once, stop_pilots=True, hub=hub)
    except FarsideError as exc:
        print(f"farside up: {exc}", file=sys.stderr)
        return 1


def gateway_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "token":
        return _token_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="farside gateway",
        description="Run a workload gateway. Subcommand: `farside gateway token --help`.",
    )
    _common(parser)
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
    _setup_logging(args.log_level)
    try:
        config = _load(args)
        if args.cluster_host:
            # per replica, unlike the shared file: each pod passes its own IP
            clusters = config.clusters.model_copy(
                update={"contact_host": args.cluster_host, "dashboard_host": args.cluster_host}
            )
            config = config.model_copy(update={"clusters": clusters})
        tokens = TokenFiles(args.token_dir) if args.token_dir else None
        return _run(config, tokens, False, False, False, stop_pilots=not args.keep_pilots)
    except FarsideError as exc:
        print(f"farside gateway: {exc}", file=sys.stderr)
        return 1


def _token_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="farside gateway token", description="Create a token and print it."
    )
    _common(parser)
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
        config = _load(args)
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
