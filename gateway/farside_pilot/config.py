"""The pilot's configuration: ``FARSIDE_*`` environment variables, overridden by flags.

The variables are the contract with whoever starts the pilot (see
:mod:`farside_protocol.env`); the flags exist for people starting one by hand.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from farside_protocol import __version__, env
from farside_protocol.errors import ConfigurationError
from farside_protocol.units import parse_memory, parse_walltime


@dataclass
class PilotConfig:
    """Everything a pilot needs to know before it registers."""

    gateway_url: str
    token: str
    site: str = "local"
    cores: int = 1
    memory: int = 1024**3
    gpus: int = 0
    #: the slot's GPU device ids, as the batch system named them (CUDA_VISIBLE_DEVICES);
    #: None: 0 .. gpus-1
    gpu_ids: list[str] | None = None
    walltime: int | None = None
    idle_timeout: float = 300.0
    batch_id: str | None = None
    pilot_id: int | None = None
    workdir: str | None = None
    prefetch: int = 256
    hold_limit: float = 5.0
    gateway_grace: float = 600.0
    shutdown_grace: float = 10.0
    log_level: str = "INFO"


def _default_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _default_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="farside pilot",
        description="Run a farside pilot: register with the gateway, pull jobs, run them.",
        epilog="Every flag defaults to its FARSIDE_* environment variable.",
    )
    add = parser.add_argument
    add("--version", action="version", version=f"farside-pilot {__version__}")
    add("--gateway-url", help=f"gateway base URL (${env.GATEWAY_URL})")
    add("--token", help=f"registration token (${env.PILOT_TOKEN})")
    add("--site", help=f"site name (${env.SITE}, default local)")
    add("--cores", type=int, help=f"cores of the slot (${env.PILOT_CORES})")
    add("--memory", help=f"memory of the slot, e.g. '4 GiB' (${env.PILOT_MEMORY})")
    add("--gpus", type=int, help=f"GPUs of the slot (${env.PILOT_GPUS})")
    add("--walltime", help=f"walltime of the slot, e.g. '2h' (${env.PILOT_WALLTIME})")
    add(
        "--idle-timeout",
        type=float,
        help=f"seconds idle before leaving (${env.PILOT_IDLE_TIMEOUT})",
    )
    add("--batch-id", help=f"batch system job id (${env.PILOT_BATCH_ID})")
    add("--pilot-id", type=int, help=f"pilot record id (${env.PILOT_ID})")
    add("--workdir", help=f"scratch directory (${env.PILOT_WORKDIR})")
    add("--prefetch", type=int, help=f"most jobs held beyond free cores (${env.PILOT_PREFETCH})")
    add(
        "--hold-limit",
        type=float,
        help=f"seconds a fetched job may wait for room before it is given back "
        f"(${env.PILOT_HOLD_LIMIT})",
    )
    add("--gateway-grace", type=float, help=f"seconds to retry (${env.PILOT_GATEWAY_GRACE})")
    add("--shutdown-grace", type=float, default=10.0, help="seconds jobs get on SIGTERM")
    add("--log-level", help=f"logging level (${env.PILOT_LOG_LEVEL})")
    return parser


def load_config(
    argv: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> PilotConfig:
    """Build the configuration; raises :class:`ConfigurationError` when something is wrong."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)

    def pick(flag: object, name: str) -> str | None:
        if flag is not None:
            return str(flag)
        value = environ.get(name)
        return value if value else None

    url = pick(args.gateway_url, env.GATEWAY_URL)
    token = pick(args.token, env.PILOT_TOKEN)
    if not url:
        raise ConfigurationError(f"no gateway address: set {env.GATEWAY_URL} or --gateway-url")
    if not token:
        raise ConfigurationError(f"no registration token: set {env.PILOT_TOKEN} or --token")
    try:
        cores = int(pick(args.cores, env.PILOT_CORES) or _default_cores())
        memory_text = pick(args.memory, env.PILOT_MEMORY)
        memory = parse_memory(memory_text) if memory_text else _default_memory()
        gpus = int(pick(args.gpus, env.PILOT_GPUS) or 0)
        walltime_text = pick(args.walltime, env.PILOT_WALLTIME)
        walltime = parse_walltime(walltime_text) if walltime_text else None
        idle = float(pick(args.idle_timeout, env.PILOT_IDLE_TIMEOUT) or 300)
        pilot_id_text = pick(args.pilot_id, env.PILOT_ID)
        prefetch = int(pick(args.prefetch, env.PILOT_PREFETCH) or 256)
        grace = float(pick(args.gateway_grace, env.PILOT_GATEWAY_GRACE) or 600)
        hold_limit = float(pick(args.hold_limit, env.PILOT_HOLD_LIMIT) or 5)
    except ValueError as exc:
        raise ConfigurationError(f"bad pilot setting: {exc}") from exc
    if cores < 1:
        raise ConfigurationError(f"a pilot needs at least one core, got {cores}")
    return PilotConfig(
        gateway_url=url.rstrip("/"),
        token=token,
        site=pick(args.site, env.SITE) or "local",
        cores=cores,
        memory=memory,
        gpus=gpus,
        gpu_ids=_gpu_ids(environ),
        walltime=walltime,
        idle_timeout=idle,
        batch_id=pick(args.batch_id, env.PILOT_BATCH_ID) or detect_batch_id(os.environ),
        pilot_id=int(pilot_id_text) if pilot_id_text else None,
        workdir=pick(args.workdir, env.PILOT_WORKDIR),
        prefetch=prefetch,
        hold_limit=hold_limit,
        gateway_grace=grace,
        shutdown_grace=args.shutdown_grace,
        log_level=(pick(args.log_level, env.PILOT_LOG_LEVEL) or "INFO").upper(),
    )


def _gpu_ids(environ: Mapping[str, str]) -> list[str] | None:
    """The GPUs the batch system gave this slot: Slurm, HTCondor and Kubernetes' device
    plugin set ``CUDA_VISIBLE_DEVICES`` for the pilot's job.

    >>> _gpu_ids({"CUDA_VISIBLE_DEVICES": "2,3"}), _gpu_ids({})
    (['2', '3'], None)
    """
    value = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return [v.strip() for v in value.split(",") if v.strip()] or None


def detect_batch_id(environ: Mapping[str, str]) -> str | None:
    """The batch system's id of the job this pilot runs in, from what the batch system sets.

    Slurm sets ``SLURM_JOB_ID``; HTCondor writes the job's ClassAd to the file named by
    ``_CONDOR_JOB_AD`` (``GlobalJobId``, else ``ClusterId.ProcId``). A Kubernetes site passes
    the pod's name in ``FARSIDE_PILOT_BATCH_ID`` itself (downward API), which wins over these.

    >>> detect_batch_id({"SLURM_JOB_ID": "42"})
    '42'
    >>> detect_batch_id({}) is None
    True
    """
    if environ.get("SLURM_JOB_ID"):
        return environ["SLURM_JOB_ID"]
    ad_path = environ.get("_CONDOR_JOB_AD")
    if ad_path:
        try:
            text = Path(ad_path).read_text()
        except OSError:
            return None
        attrs: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(" = ")
            if sep:
                attrs[key.strip()] = value.strip().strip('"')
        if "ClusterId" in attrs:
            return f"{attrs['ClusterId']}.{attrs.get('ProcId', '0')}"
        return attrs.get("GlobalJobId")
    return None


def make_workdir(config: PilotConfig) -> str:
    if config.workdir:
        os.makedirs(config.workdir, exist_ok=True)
        return tempfile.mkdtemp(prefix="pilot-", dir=config.workdir)
    return tempfile.mkdtemp(prefix="farside-pilot-")
