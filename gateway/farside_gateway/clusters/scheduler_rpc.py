"""Talking to a cluster's scheduler from the gateway: retire workers, ask if it is idle,
ask what adaptive scaling wants. Each call opens a TLS connection with the cluster's own
client certificate (its key is opened from the pool's sealed copy), as a Dask client would;
a scheduler of the Dask operator has none, and is called over plain TCP in its cluster."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .sealing import Sealer

if TYPE_CHECKING:
    from distributed.security import Security

log = logging.getLogger(__name__)

RETIRE_TIMEOUT = 20.0
RPC_TIMEOUT = 10.0


def client_security(cert: str, key: str) -> Security:
    from distributed.security import Security

    return Security(
        tls_ca_file=cert, tls_client_cert=cert, tls_client_key=key, require_encryption=True
    )


class SchedulerRpc:
    """Calls on the scheduler of a cluster row (its address and sealed credentials)."""

    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer

    async def call(self, row: Any, method: str, within: float, **kwargs: Any) -> Any:
        from distributed.core import rpc

        args: dict[str, Any] = {}
        if row.tls_cert:  # none: the Dask operator's scheduler, plain TCP in its cluster
            security = client_security(row.tls_cert, self.sealer.open(row.tls_key))
            args = security.get_connection_args("client")
        async with asyncio.timeout(within):
            async with rpc(row.scheduler_address, connection_args=args) as scheduler:
                return await getattr(scheduler, method)(**kwargs)

    async def retire(self, row: Any, names: list[str]) -> None:
        """Let the scheduler move the workers' results elsewhere before they go."""
        try:
            await self.call(
                row, "retire_workers", RETIRE_TIMEOUT, names=names, close_workers=True, remove=True
            )
        except Exception as exc:  # the leases are cancelled either way
            log.warning("cluster %s: retiring %s failed: %s", row.name, names, exc)

    async def idle(self, row: Any) -> bool:
        try:
            return await self.call(row, "check_idle", RPC_TIMEOUT) is not None
        except Exception:
            return True  # a scheduler that cannot answer has no work worth keeping
