"""The one endpoint of a kubelet's API the test cluster's node agent serves: a container's
output, which the API server fetches for ``pods/log`` (``kubectl logs``, kr8s'
``Pod.logs()``, the gateway's logs of a Dask operator's pods).

The API server asks ``https://<node InternalIP>:<status.daemonEndpoints.kubeletEndpoint>``
``/containerLogs/<namespace>/<pod>/<container>`` with ``tailLines``, ``limitBytes`` and
``follow``. It does not check this server's certificate (no
``--kubelet-certificate-authority``), so a self-signed one made at start is enough; nor does
this server check the caller: it listens on 127.0.0.1 only, and the test cluster is one
host. The output is what the node agent already writes, one file per container.

aiohttp (there for dask-gateway's client and kopf) serves it inside the agent's own loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: how often a followed log looks for more output
FOLLOW_POLL = 0.5


def _self_signed(host: str) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"node-agent@{host}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # ssl loads a chain from files only; they live just long enough to be read
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context.load_cert_chain(cert_file, key_file)
    return context


def _tail(data: bytes, lines: int | None, limit: int | None) -> bytes:
    if lines is not None:
        kept = data.splitlines(keepends=True)[-lines:] if lines > 0 else []
        data = b"".join(kept)
    if limit is not None:
        data = data[-limit:]
    return data


def _number(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        return max(0, int(value))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number, not {value!r}") from None


def make_app(log_file: Callable[[str, str, str], Path]) -> web.Application:
    """``log_file(namespace, pod, container)``: where the agent writes that output."""

    async def container_logs(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        path = log_file(info["namespace"], info["pod"], info["container"])
        if not path.is_file():
            raise web.HTTPNotFound(text=f"no output of container {info['container']} here")
        lines, limit = _number(request, "tailLines"), _number(request, "limitBytes")
        data = _tail(path.read_bytes(), lines, limit)
        if request.query.get("follow") != "true":
            return web.Response(body=data, content_type="text/plain", charset="utf-8")
        answer = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await answer.prepare(request)
        await answer.write(data)
        offset = path.stat().st_size
        # until the caller goes, or the container's output does (its pod was removed)
        while path.is_file():
            await asyncio.sleep(FOLLOW_POLL)
            with path.open("rb") as out:
                out.seek(offset)
                more = out.read()
            if more:
                offset += len(more)
                await answer.write(more)
        return answer

    app = web.Application()
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    return app


async def serve(log_file: Callable[[str, str, str], Path], host: str, port: int) -> web.AppRunner:
    """Start serving on ``host:port`` (HTTPS); stop with ``await runner.cleanup()``."""
    runner = web.AppRunner(make_app(log_file), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=_self_signed(host)).start()
    return runner
