"""The schedulers' TLS proxy for dask-gateway clients: one port, routed by SNI.

The stock ``dask_gateway`` client reaches a scheduler at ``gateway://host:port/<name>``: it
opens TLS to ``host:port`` naming ``daskgateway-<name>`` as the server (SNI), and expects
the cluster's own certificate there. This proxy reads that name from the ClientHello,
looks the running cluster up, and from then on copies bytes both ways to its scheduler,
which does the TLS itself (with the cluster's certificate and the client's). So the proxy
holds no key and decides no access: a client without the cluster's certificate is refused
by the scheduler as when it connects directly.

Why by hand: the ClientHello's server name is a few fixed-layout fields, and what follows
is a plain byte copy; asyncio streams do both, and no TLS library exposes SNI without
also terminating the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import Counter
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

SNI_PREFIX = "daskgateway-"
HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
MAX_HELLO = 64 * 1024
HELLO_TIMEOUT = 10.0

#: cluster name -> the scheduler's ``tls://host:port``, or None when it does not run
Resolver = Callable[[str], Awaitable[str | None]]


class NotAClientHello(ValueError):
    """The first bytes were not a TLS ClientHello naming a dask-gateway cluster."""


def server_name(hello: bytes) -> str | None:
    """The SNI host name of a ClientHello handshake message (type byte first), or None."""
    try:
        pos = 4 + 2 + 32  # type, length, version, random
        pos += 1 + hello[pos]  # session id
        (suites,) = struct.unpack_from("!H", hello, pos)
        pos += 2 + suites
        pos += 1 + hello[pos]  # compression methods
        (ext_total,) = struct.unpack_from("!H", hello, pos)
        pos += 2
        end = min(len(hello), pos + ext_total)
        while pos + 4 <= end:
            ext_type, ext_len = struct.unpack_from("!HH", hello, pos)
            pos += 4
            if ext_type == 0:  # server_name: a list of (type, name); type 0 is a host name
                item = pos + 2
                while item + 3 <= pos + ext_len:
                    kind, length = struct.unpack_from("!BH", hello, item)
                    if kind == 0:
                        return hello[item + 3 : item + 3 + length].decode("ascii")
                    item += 3 + length
            pos += ext_len
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None


async def read_client_hello(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read TLS records until the whole ClientHello is in; returns (raw bytes read, the
    handshake message). Raises :class:`NotAClientHello` for anything else."""
    raw = b""
    message = b""
    needed: int | None = None
    while needed is None or len(message) < needed:
        header = await reader.readexactly(5)
        if header[0] != HANDSHAKE:
            raise NotAClientHello("not a TLS handshake")
        (length,) = struct.unpack_from("!H", header, 3)
        body = await reader.readexactly(length)
        raw += header + body
        message += body
        if needed is None and len(message) >= 4:
            if message[0] != CLIENT_HELLO:
                raise NotAClientHello("not a ClientHello")
            needed = 4 + int.from_bytes(message[1:4], "big")
        if len(raw) > MAX_HELLO:
            raise NotAClientHello("ClientHello too large")
    return raw, message


class SchedulerProxy:
    """``await start()`` listens; ``await stop()`` closes the port and every connection."""

    def __init__(self, host: str, port: int, resolve: Resolver) -> None:
        self.host = host
        self.port = port
        self.resolve = resolve
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: open connections by cluster: a dask-gateway client holds one while it lives,
        #: which is its only sign of life (it sends the gateway no heartbeats)
        self.connections: Counter[str] = Counter()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("dask-gateway scheduler proxy on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                raw, hello = await read_client_hello(reader)
        except (NotAClientHello, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("scheduler proxy: dropped a connection: %s", exc)
            return
        name = server_name(hello) or ""
        if not name.startswith(SNI_PREFIX):
            log.info("scheduler proxy: no cluster named in the TLS hello (%r)", name)
            return
        address = await self.resolve(name.removeprefix(SNI_PREFIX))
        if address is None:
            log.info("scheduler proxy: no running cluster %r", name.removeprefix(SNI_PREFIX))
            return
        host, _, port = address.removeprefix("tls://").rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            log.warning("scheduler proxy: cannot reach %s: %s", address, exc)
            return
        up_writer.write(raw)
        cluster = name.removeprefix(SNI_PREFIX)
        self.connections[cluster] += 1
        try:
            await _pipe_both(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()
            self.connections[cluster] -= 1
            if self.connections[cluster] <= 0:
                del self.connections[cluster]


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await source.read(64 * 1024):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()

    await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
