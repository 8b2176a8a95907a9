from __future__ import annotations

import socket

import pytest

from farside_gateway.server import bind
from farside_protocol import ConfigurationError


def test_busy_port_says_what_to_do() -> None:
    first = bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}.*--port"):
            bind("127.0.0.1", port)
    finally:
        first.close()


def test_connections_get_tcp_nodelay() -> None:
    # asyncio sets TCP_NODELAY only on sockets created with IPPROTO_TCP; without it
    # Nagle's algorithm delays every small response by tens of milliseconds
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
