"""Who may see a cluster's Dask dashboard, and where the gateway finds it.

Each scheduler serves its dashboard (bokeh) on ``dashboard_host`` (loopback by default)
under the path ``/clusters/{name}/``; the gateway proxies that path to the cluster's owner
(:mod:`farside_gateway.api.dashboards`). A browser sends no bearer token, so the link a
client shows carries a *ticket*: sealed with the gateway's cluster keys, bound to the
cluster and its owner, valid for ``TICKET_AGE``. The proxy turns it into a cookie for that
cluster's path, so the pages' own requests are let through too.
"""

from __future__ import annotations

import json

from farside_protocol import Forbidden, NotFound, Unauthorized

from ..auth.tokens import Principal
from ..db import Database
from . import store
from .sealing import Sealer, SealError

TICKET_AGE = 24 * 3600.0


def dashboard_path(name: str) -> str:
    """The path of cluster ``name``'s dashboard, on the scheduler and on the gateway."""
    return f"/clusters/{name}"


def make_ticket(sealer: Sealer, name: str, owner: str) -> str:
    return sealer.seal(json.dumps({"cluster": name, "owner": owner}))


async def dashboard_target(
    db: Database, sealer: Sealer, name: str, who: Principal | None, ticket: str | None
) -> str:
    """The dashboard's own address (``http://host:port``) for a caller that may see it:
    the owner or an admin by token, or a browser with a ticket for this cluster."""
    if who is not None:
        owner_filter = who.owner_filter
    else:
        try:
            claims = json.loads(sealer.open_ticket(ticket or "", TICKET_AGE))
        except (SealError, ValueError):
            raise Unauthorized(
                "open the dashboard from its link (cluster.dashboard_link), which carries a "
                "ticket valid for a day, or send your bearer token"
            ) from None
        if claims.get("cluster") != name:
            raise Forbidden("this ticket is for another cluster's dashboard")
        owner_filter = str(claims.get("owner"))
    row = await db.read(store.get_cluster, name, owner_filter)
    if row.state != "running" or not row.dashboard_link:
        raise NotFound(f"cluster {name} has no dashboard now ({row.state})")
    return str(row.dashboard_link)
