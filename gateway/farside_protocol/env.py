"""The ``FARSIDE_*`` environment variables: the whole contract with processes we start.

A site plugin starts a pilot with these variables set and nothing else (like JupyterHub's
``JUPYTERHUB_*`` contract with single-user servers). Clients read the first two.
``docs/reference/environment.md`` is generated from :data:`VARIABLES`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    name: str
    used_by: str
    help: str
    default: str | None = None


GATEWAY_URL = "FARSIDE_GATEWAY_URL"
TOKEN = "FARSIDE_TOKEN"
CONFIG_DIR = "FARSIDE_CONFIG_DIR"
DATABASE_URL = "FARSIDE_DATABASE_URL"
PILOT_TOKEN = "FARSIDE_PILOT_TOKEN"
PILOT_ID = "FARSIDE_PILOT_ID"
SITE = "FARSIDE_SITE"
PILOT_CORES = "FARSIDE_PILOT_CORES"
PILOT_MEMORY = "FARSIDE_PILOT_MEMORY"
PILOT_GPUS = "FARSIDE_PILOT_GPUS"
PILOT_WALLTIME = "FARSIDE_PILOT_WALLTIME"
PILOT_IDLE_TIMEOUT = "FARSIDE_PILOT_IDLE_TIMEOUT"
PILOT_BATCH_ID = "FARSIDE_PILOT_BATCH_ID"
PILOT_WORKDIR = "FARSIDE_PILOT_WORKDIR"
PILOT_PREFETCH = "FARSIDE_PILOT_PREFETCH"
PILOT_HOLD_LIMIT = "FARSIDE_PILOT_HOLD_LIMIT"
PILOT_GATEWAY_GRACE = "FARSIDE_PILOT_GATEWAY_GRACE"
PILOT_LOG_LEVEL = "FARSIDE_PILOT_LOG_LEVEL"
DASK_HOST = "FARSIDE_DASK_HOST"

VARIABLES: tuple[EnvVar, ...] = (
    EnvVar(GATEWAY_URL, "client, pilot", "Base URL of the gateway, e.g. http://127.0.0.1:8765."),
    EnvVar(TOKEN, "client", "Bearer token of the user. Wins over the local platform's file."),
    EnvVar(
        CONFIG_DIR,
        "client, farside up",
        "Directory of the local platform's client.json and token files.",
        "the platform's user config dir (~/.config/farside on Linux)",
    ),
    EnvVar(
        DATABASE_URL,
        "farside gateway, farside up",
        "SQLAlchemy URL of the gateway's database, over the configuration file's "
        "`database_url` (a `--database-url` flag wins over both); keeps the password out of "
        "the file, e.g. from a Kubernetes Secret.",
    ),
    EnvVar(
        PILOT_TOKEN,
        "pilot",
        "Token that lets the pilot register (a site's pilot token, or a one-pilot token "
        "issued by the provisioner). Registration returns the pilot's own token.",
    ),
    EnvVar(
        PILOT_ID,
        "pilot",
        "Id of the pilot record the provisioner created for this pilot (unset when a pilot is "
        "started by hand).",
    ),
    EnvVar(SITE, "pilot", "Name of the site the pilot runs on.", "local"),
    EnvVar(PILOT_CORES, "pilot", "Cores of the slot.", "the cores this process may use"),
    EnvVar(PILOT_MEMORY, "pilot", "Memory of the slot, e.g. '4 GiB'.", "the machine's memory"),
    EnvVar(PILOT_GPUS, "pilot", "GPUs of the slot.", "0"),
    EnvVar(
        PILOT_WALLTIME,
        "pilot",
        "Walltime of the batch slot, e.g. '2h'; the pilot takes no job that would not fit.",
        "unlimited",
    ),
    EnvVar(
        PILOT_IDLE_TIMEOUT,
        "pilot",
        "Seconds without work after which the pilot offers to leave (the gateway keeps it if it "
        "is part of the site's warm minimum).",
        "300",
    ),
    EnvVar(PILOT_BATCH_ID, "pilot", "The batch system's id of the pilot's job, for operators."),
    EnvVar(PILOT_WORKDIR, "pilot", "Scratch directory for jobs.", "a new temporary directory"),
    EnvVar(
        PILOT_PREFETCH,
        "pilot",
        "Most jobs a pilot holds beyond its free cores; it fetches ahead only while jobs are "
        "short, so long jobs are never hoarded.",
        "256",
    ),
    EnvVar(
        PILOT_HOLD_LIMIT,
        "pilot",
        "Seconds a job fetched ahead may wait for room in the pilot; then it goes back to the "
        "pool, queued in its old place with no attempt counted, for another pilot to start.",
        "5",
    ),
    EnvVar(
        PILOT_GATEWAY_GRACE,
        "pilot",
        "Seconds the pilot keeps retrying an unreachable gateway before it gives up.",
        "600",
    ),
    EnvVar(PILOT_LOG_LEVEL, "pilot", "Logging level of the pilot itself.", "INFO"),
    EnvVar(
        DASK_HOST,
        "pilot (Dask-worker leases)",
        "Address a Dask worker listens on, for its scheduler and peers to reach it (an "
        "interface's IP or hostname).",
        "distributed's choice: the address of the default route's interface",
    ),
)
