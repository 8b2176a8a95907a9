"""Heartbeats of many pilots: the gateway's answer time while N simulated pilots (N = 10,000
by default) each send a heartbeat, as fast as ``--concurrency`` connections allow.

    .venv/bin/python tests/benchmarks/bench_heartbeats.py [--pilots 10000] [--rounds 2]
        [--concurrency 100] [--database-url URL]

The pilots are registered over the REST API with the site's token, as a real pilot does,
and hold no jobs; each heartbeat asks for no long-poll (``wait=0``), so what is measured
is the gateway's own work: a lease renewal, a drop check, a stack-dump check. A real
pilot beats every ``heartbeat_interval`` (5 s): 10,000 pilots send 2,000 beats/s, which is
what the reported rate is to be set against. Target: p99 ≤ 250 ms at that scale.

The load comes from ``--concurrency`` keep-alive connections speaking plain HTTP/1.1 over
asyncio streams, not from httpx: real pilots are thousands of processes, while one httpx
client at this rate spends its CPU in its own connection pool (py-spy: the benchmark at
100% CPU, the gateway at 27%), and the figure measured the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import httpx
from _common import emit, log, running_gateway, summary_ms

logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would be the load

REGISTRATION = {"site": "local", "cores": 1, "memory": "1 GiB", "version": "bench"}


async def _register(url: str, site_token: str, n: int, concurrency: int) -> list[tuple[int, str]]:
    limits = httpx.Limits(max_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:

        async def one(i: int) -> tuple[int, str]:
            async with gate:
                body = {**REGISTRATION, "hostname": f"node{i}", "pid": i}
                answer = await http.post(
                    "/api/v1/pilots", json=body, headers={"Authorization": f"Bearer {site_token}"}
                )
                answer.raise_for_status()
                data = answer.json()
                return int(data["pilot_id"]), str(data["token"])

        return list(await asyncio.gather(*(one(i) for i in range(n))))


BEAT_BODY = b'{"held": [], "wait": 0}'


def _beat_request(host: str, pilot_id: int, token: str) -> bytes:
    head = (
        f"POST /api/v1/pilots/{pilot_id}/heartbeat HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BEAT_BODY)}\r\n\r\n"
    )
    return head.encode() + BEAT_BODY


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length framed); return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _beat(
    url: str, pilots: list[tuple[int, str]], rounds: int, concurrency: int
) -> tuple[list[float], float]:
    address = httpx.URL(url)
    host = f"{address.host}:{address.port}"
    requests = [_beat_request(host, p, t) for p, t in pilots]
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(address.host, address.port)
        try:
            while not queue.empty():
                request = queue.get_nowait()
                started = time.perf_counter()
                writer.write(request)
                status = await _answer(reader)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"heartbeat answered {status}")
        finally:
            writer.close()

    began = time.perf_counter()
    for _ in range(rounds):
        for request in requests:
            queue.put_nowait(request)
        await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return latencies, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pilots", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    # pilots registered by hand: the site starts none, and none is reaped meanwhile
    sites = [{"name": "local", "plugin": "local", "min_warm": 0, "max_pilots": 0}]
    settings = {"sites": sites, "heartbeat_interval": 5.0, "heartbeat_timeout": 600.0}
    with running_gateway(args.database_url, **settings) as (gateway, _):
        began = time.perf_counter()
        pilots = asyncio.run(
            _register(gateway.url, gateway.site_token, args.pilots, args.concurrency)
        )
        registered = time.perf_counter() - began
        log("registered %d pilots in %.1f s", len(pilots), registered)
        latencies, elapsed = asyncio.run(_beat(gateway.url, pilots, args.rounds, args.concurrency))
    figures = summary_ms(latencies)
    rate = len(latencies) / elapsed
    log("heartbeats: %s, %.0f/s", figures, rate)
    emit(
        "heartbeats",
        {
            "database": "postgres" if args.database_url else "sqlite",
            "pilots": args.pilots,
            "rounds": args.rounds,
            "concurrency": args.concurrency,
            "register_s": round(registered, 1),
            "beats_per_s": round(rate),
            "needed_per_s": round(args.pilots / 5.0),
            "latency": figures,
            "targets": {
                "p99_le_250ms": figures["p99_ms"] <= 250,
                "keeps_up": rate >= args.pilots / 5.0,
            },
        },
    )


if __name__ == "__main__":
    main()
