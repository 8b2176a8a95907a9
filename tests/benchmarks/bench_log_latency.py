"""Log latency: from ``print`` in a running task to the line arriving in ``gw.logs(follow=True)``.

    .venv/bin/python tests/benchmarks/bench_log_latency.py [--lines 50] [--gap 0.05] [--jobs 2]

The task prints lines stamped with ``time.time()`` (plain ``print``, no flush); the client
follows the job's log stream and takes ``time.time()`` as each line arrives. The pilot and
client are on the same host, so the clocks agree. Target: p95 ≤ 250 ms.
"""

from __future__ import annotations

import argparse
import time

from _common import emit, local_site, log, running_gateway, summary_ms, wait_for_pilots


def chatty(lines: int, gap: float) -> int:
    import time

    for i in range(lines):
        print(f"stamp {i} {time.time():.6f}")
        time.sleep(gap)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.05)
    parser.add_argument("--jobs", type=int, default=2, help="jobs followed one after another")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    import farside

    latencies: list[float] = []
    site = local_site(min_warm=1, max_pilots=1)
    with running_gateway(args.database_url, sites=[site]) as (_, client):
        wait_for_pilots(client, 1)
        task = farside.task(chatty, gateway=client)
        for job in range(args.jobs):
            future = task.submit(args.lines, args.gap)
            seen = 0
            for line in client.logs(future.job_id, follow=True):
                arrived = time.time()
                if not line.startswith("stamp "):
                    continue
                latencies.append(arrived - float(line.split()[2]))
                seen += 1
            assert future.result(timeout=60) == args.lines
            assert seen == args.lines, (seen, args.lines)
            log("job %d (%d): %s", job, future.job_id, summary_ms(latencies[-seen:]))

    figures = summary_ms(latencies)
    emit(
        "log_latency",
        {
            "database": "postgres" if args.database_url else "sqlite",
            "lines_per_job": args.lines,
            "gap_s": args.gap,
            "jobs": args.jobs,
            "latency": figures,
            "targets": {"p95_le_250ms": figures["p95_ms"] <= 250},
        },
    )


if __name__ == "__main__":
    main()
