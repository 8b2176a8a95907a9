"""The dask-gateway scheduler proxy reads the cluster's name from real TLS ClientHellos."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from farside_gateway.clusters.sni_proxy import (
    NotAClientHello,
    read_client_hello,
    server_name,
)


def _client_hello(host: str) -> bytes:
    """The first bytes Python's own TLS client sends, naming ``host``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=host)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def _read(data: bytes) -> tuple[bytes, bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await read_client_hello(reader)


async def test_the_cluster_name_comes_from_the_hello() -> None:
    hello = _client_hello("daskgateway-alice-1a2b3c4d")
    raw, message = await _read(hello + b"more bytes the proxy must not take yet")
    assert raw == hello  # exactly the hello: it is replayed to the scheduler as it came
    assert server_name(message) == "daskgateway-alice-1a2b3c4d"


async def test_a_hello_split_over_records_is_put_together() -> None:
    hello = _client_hello("daskgateway-bob-00000000")
    message = hello[5:]
    # the same handshake message in two TLS records, as a client may send it
    first, second = message[:40], message[40:]
    split = b"".join(
        bytes([0x16]) + hello[1:3] + len(part).to_bytes(2, "big") + part for part in (first, second)
    )
    raw, whole = await _read(split)
    assert raw == split
    assert server_name(whole) == "daskgateway-bob-00000000"


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n\r\n", bytes([0x16, 3, 1, 0, 4, 2, 0, 0, 0])])
async def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(NotAClientHello):
        await _read(data)


def test_no_name_is_none() -> None:
    assert server_name(b"\x01\x00\x00\x00") is None
