"""Is this gateway able to serve: for load balancers and Kubernetes probes.

Open, like ``/auth``: it says whether the process answers and reaches its database, and
nothing about anyone's work.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from farside_protocol import ServiceUnavailable

from .. import __version__
from .deps import RuntimeDep

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


class Health(BaseModel):
    """A gateway that answers and reaches its database."""

    status: str = Field(description="Always `ok`; a gateway that cannot serve answers 503.")
    version: str = Field(description="The gateway's farside version.")


def _ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


@router.get("/health", response_model=Health)
async def health(rt: RuntimeDep) -> Health:
    """200 while the gateway reaches its database, else 503 with the reason (no token)."""
    try:
        await rt.db.read(_ping)
    except Exception as exc:  # any failure to reach the database means "not ready"
        log.warning("health check: the database did not answer: %s", exc)
        raise ServiceUnavailable(
            f"the gateway cannot reach its database ({type(exc).__name__}); check database_url "
            "and that the database is up"
        ) from exc
    return Health(status="ok", version=__version__)
