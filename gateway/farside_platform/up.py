"""``farside up``: the local platform on embedded defaults.

SQLite in the user's data directory, a ``local`` site of subprocess pilots, a proxy for
stock dask-gateway clients on a free port, and the account's tokens and ``client.json`` in
the user's config directory (the client's, :func:`farside._paths.config_dir`). ``--hub``
puts JupyterHub in front (:mod:`farside_platform.hub`); ``--example`` runs
:mod:`farside_platform.example` once the gateway is up; ``--once`` stops after that.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

import platformdirs

from farside._paths import config_dir
from farside_gateway.cli import add_common_options, load_with_flags, run, setup_logging
from farside_gateway.config import GatewayConfig
from farside_gateway.runtime import Runtime
from farside_gateway.token_files import TokenFiles
from farside_protocol import FarsideError

from .example import run_example
from .hub import HubLauncher, HubSettings, find_proxy


def state_dir() -> Path:
    """Where the local platform keeps its database, blobs and pilot logs."""
    return Path(platformdirs.user_data_dir("farside"))


def _serve(
    config: GatewayConfig,
    tokens: TokenFiles,
    hub: HubLauncher | None,
    example: bool,
    once: bool,
) -> int:
    def ready(runtime: Runtime) -> None:
        if hub is not None:
            proxy = runtime.clusters.proxy
            address = f"gateway://{proxy.host}:{proxy.port}" if proxy is not None else None
            hub.start_in_background(runtime.public_url, address)
        _print_banner(runtime, tokens, tokens.directory / "client.json")
        if example or once:
            threading.Thread(
                target=_example_then, args=(runtime, example, once), daemon=True
            ).start()

    try:
        return run(config, tokens, stop_pilots=True, on_ready=ready)
    finally:
        if hub is not None:  # the hub stops its proxy and the users' servers
            hub.stop()


def _example_then(runtime: Runtime, example: bool, once: bool) -> None:
    status = 0
    if example:
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
    add_common_options(parser)
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
    setup_logging(args.log_level)
    try:
        # the local platform also serves stock dask-gateway clients (a proxy on a free port)
        defaults: dict[str, object] = {"state_dir": state_dir(), "clusters": {"proxy_port": 0}}
        hub = None
        if args.hub:
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
        config = load_with_flags(args, **defaults)
        return _serve(config, TokenFiles(config_dir()), hub, args.example, args.once)
    except FarsideError as exc:
        print(f"farside up: {exc}", file=sys.stderr)
        return 1
