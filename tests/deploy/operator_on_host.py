"""Run dask-kubernetes' operator (kopf) on the test host, with the one piece of cluster
networking the test cluster lacks: names of Services.

In a real cluster the operator runs in a pod and reaches a scheduler as
``<cluster>-scheduler.<namespace>`` through the cluster's DNS (to ask it whether it is
idle, or which workers to retire). The test cluster has no DNS service, and its image node
runs every pod on this host's network, so such a name means 127.0.0.1 here. Without that,
the operator falls back to a port-forward the test node cannot serve, and waits for it in a
blocking loop that stalls the whole operator (deletions included) for minutes.

Usage: python operator_on_host.py run -m dask_kubernetes.operator.controller ...
"""

from __future__ import annotations

import re
import socket
import sys
from typing import Any

#: ``name.namespace`` (optionally ``.svc`` and ``.svc.cluster.local``) in a test namespace
SERVICE_NAME = re.compile(r"^[a-z0-9-]+\.farside-[a-z0-9-]+(\.svc(\.cluster\.local)?)?\.?$")

_system_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, str) and SERVICE_NAME.match(host):
        host = "127.0.0.1"
    return _system_getaddrinfo(host, *args, **kwargs)


def main() -> int:
    socket.getaddrinfo = _getaddrinfo
    # uvloop (kopf's command line runs on it when it can) and aiodns (aiohttp's resolver
    # when it can import it) resolve names themselves, past the line above; hidden before
    # kopf and aiohttp are imported, asyncio and aiohttp resolve through socket.getaddrinfo
    sys.modules["uvloop"] = None  # type: ignore[assignment]
    sys.modules["aiodns"] = None  # type: ignore[assignment]
    from kopf.cli import main as kopf_main

    return int(kopf_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
