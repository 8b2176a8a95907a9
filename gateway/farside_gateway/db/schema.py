"""The database schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` build it.

Times are UNIX seconds as floats: cheap to compare in SQL and the same in SQLite and
PostgreSQL. ``events`` is both the per-job state history and the source of the clients'
event stream: its ids are the stream's sequence numbers, so a client that reconnects with
``Last-Event-ID`` gets exactly what it missed.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# A big integer that is still an autoincrementing rowid on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("owner", String(200), nullable=False),
    Column("name", String(200)),
    Column("group_name", String(200)),
    Column("kind", String(20), nullable=False),
    Column("state", String(16), nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("cores", Integer, nullable=False),
    Column("memory", BigInteger, nullable=False),
    Column("walltime", Integer, nullable=False),
    Column("gpus", Integer, nullable=False),
    Column("gpu_model", String(64)),
    Column("arch", String(32)),
    Column("env", String(200)),
    # ",a,b," so that a site filter is a LIKE in SQL; NULL means any site. The user's
    # order of preference is kept in ``site_order`` (the LIKE column is sorted).
    Column("sites", String(2000)),
    Column("site_order", String(2000)),
    # the fair-share group the owner's token named at submission
    Column("share_group", String(200)),
    # resources the user left to the gateway ("memory,walltime"): scouts may correct them
    Column("tunable", String(32)),
    # 1: a scout of a large map; 2: waits (pending) for its map's scouts
    Column("scout", Integer, nullable=False, default=0),
    Column("adjusted", Text),
    Column("max_attempts", Integer, nullable=False),
    Column("user_failures", Integer, nullable=False, default=0),
    Column("system_failures", Integer, nullable=False, default=0),
    Column("resource_failures", Integer, nullable=False, default=0),
    Column("attempt", Integer, nullable=False, default=0),
    Column("parents_left", Integer, nullable=False, default=0),
    # parents whose results the job takes as arguments, "12,15" in the user's order (those
    # of its job_deps marked input); read with the assignment, so no extra query
    Column("inputs", Text),
    Column("pilot_id", Id),
    Column("site", String(64)),
    Column("lease_expires", Float),
    Column("payload", LargeBinary),
    Column("payload_blob", String(200)),
    Column("payload_size", BigInteger, nullable=False),
    Column("result", LargeBinary),
    Column("result_blob", String(200)),
    Column("result_size", BigInteger),
    Column("exit_code", Integer),
    Column("error_class", String(16)),
    Column("error", Text),
    Column("wall_time", Float),
    Column("cpu_time", Float),
    Column("max_rss", BigInteger),
    Column("created_at", Float, nullable=False),
    Column("queued_at", Float),
    Column("started_at", Float),
    Column("ended_at", Float),
    # the workflow run a job belongs to (its body: kind 'workflow'; its children: others)
    Column("workflow_id", Id),
    # a child's name in its run's journal: submitting the same key again returns this job
    Column("journal_key", String(100)),
    sqlite_autoincrement=True,
)
# The broker's scan: queued jobs, best first.
Index("ix_jobs_queue", jobs.c.state, jobs.c.priority.desc(), jobs.c.id)
# Fair share: each user's queued jobs best first, and the distinct users with queued work.
Index("ix_jobs_owner_queue", jobs.c.state, jobs.c.owner, jobs.c.priority.desc(), jobs.c.id)
Index("ix_jobs_owner", jobs.c.owner, jobs.c.id)
Index("ix_jobs_owner_group", jobs.c.owner, jobs.c.group_name)
Index("ix_jobs_pilot", jobs.c.pilot_id, jobs.c.state)
# A run's journal: at most one job per key (NULL keys: children dropped from the journal).
Index("ix_jobs_journal", jobs.c.workflow_id, jobs.c.journal_key, unique=True)
# No index on lease_expires: heartbeats renew it constantly, and the reaper finds held jobs
# through ix_jobs_queue's leading state column anyway.

job_deps = Table(
    "job_deps",
    metadata,
    Column("child_id", Id, ForeignKey("jobs.id"), primary_key=True),
    Column("parent_id", Id, ForeignKey("jobs.id"), primary_key=True),
    # the child takes the parent's result as an input: that result is the child's, not the
    # notebook's, and stays off the clients' event stream. Marked here, not on the parent's
    # row, so that submitting a child never locks (nor deadlocks on) a running parent.
    Column("input", Boolean, nullable=False, default=False),
)
Index("ix_job_deps_parent", job_deps.c.parent_id)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, ForeignKey("jobs.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("pilot_id", Id),
    Column("site", String(64)),
    Column("batch_id", String(200)),
    Column("state", String(16), nullable=False),
    Column("assigned_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("error_class", String(16)),
    Column("error", Text),
    Column("exit_code", Integer),
    Column("wall_time", Float),
    Column("cpu_time", Float),
    Column("max_rss", BigInteger),
    # its GPUs as nvidia-smi saw them: peak memory in use (bytes), mean utilisation (%)
    Column("max_gpu_memory", BigInteger),
    Column("gpu_utilization", Float),
    # its memory and CPU over time, as the pilot sampled them: JSON [[s, rss, cpu], ...]
    Column("usage", Text),
    UniqueConstraint("job_id", "number"),
    sqlite_autoincrement=True,
)
# From a batch job (squeue, condor_q, kubectl) back to the jobs that ran in it.
Index("ix_attempts_batch_id", attempts.c.batch_id)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, nullable=False),
    Column("owner", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("time", Float, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("error_class", String(16)),
    Column("reason", Text),
    sqlite_autoincrement=True,
)
Index("ix_events_owner", events.c.owner, events.c.id)
Index("ix_events_job", events.c.job_id, events.c.id)

log_lines = Table(
    "log_lines",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("stream", String(8), nullable=False),
    Column("time", Float, nullable=False),
    Column("text", Text, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_log_lines_job", log_lines.c.job_id, log_lines.c.id)

pilots = Table(
    "pilots",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    # submitted -> running -> retiring -> exited | lost | failed
    Column("state", String(16), nullable=False),
    Column("hostname", String(255)),
    Column("pid", Integer),
    Column("batch_id", String(200)),
    Column("cores", Integer),
    Column("memory", BigInteger),
    Column("gpus", Integer),
    Column("walltime_end", Float),
    Column("submitted_at", Float),
    Column("registered_at", Float),
    Column("last_seen", Float),
    Column("ended_at", Float),
    Column("reason", Text),
    sqlite_autoincrement=True,
)
Index("ix_pilots_site_state", pilots.c.site, pilots.c.state)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    # user | site | pilot
    Column("kind", String(8), nullable=False),
    # user name, or site name for site and pilot tokens
    Column("subject", String(200), nullable=False),
    Column("admin", Boolean, nullable=False, default=False),
    Column("pilot_id", Id),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("description", String(200)),
    # fair-share groups of a user token, ",a,b,"
    Column("groups", String(1000)),
    # a workflow body's token: valid while attempt ``job_attempt`` of job ``job_id`` runs
    Column("job_id", Id),
    Column("job_attempt", Integer),
    sqlite_autoincrement=True,
)
Index("ix_tokens_job", tokens.c.job_id)

# Workflow runs (``@farside.workflow``). The body is a job of kind 'workflow'; a resume or
# retry gives it a new job, named in ``body_job_id``. The run's state is the body job's
# (see protocol.workflows.workflow_state), except while ``paused``.
workflows = Table(
    "workflows",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("share_group", String(200)),
    Column("body_job_id", Id, nullable=False),
    Column("body_runs", Integer, nullable=False, default=1),
    Column("paused", Boolean, nullable=False, default=False),
    # the body's last farside.report(...), as JSON
    Column("report", Text),
    Column("created_at", Float, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_workflows_owner", workflows.c.owner, workflows.c.id)
Index("ix_workflows_owner_name", workflows.c.owner, workflows.c.name)

# Run-time site status set by an admin; it wins over the configuration file's ``status``
# and survives restarts (and is seen by every replica).
site_status = Table(
    "site_status",
    metadata,
    Column("site", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("changed_by", String(200), nullable=False),
    Column("changed_at", Float, nullable=False),
)

# Stack dumps users asked of running jobs (``farside debug``): the pilot running the job
# takes them with its next heartbeat, and the dump reaches the job's log.
debug_requests = Table(
    "debug_requests",
    metadata,
    Column("job_id", Id, primary_key=True),
    Column("pilot_id", Id, nullable=False),
    Column("requested_at", Float, nullable=False),
)
Index("ix_debug_requests_pilot", debug_requests.c.pilot_id)

# Interactive Dask clusters. The scheduler was started by a gateway replica and is managed
# by the one named in ``instance`` (the same, or one that adopted it after the first was
# gone); that replica acts on the targets and states other replicas write here.
# Worker leases are jobs of kind 'dask-worker' whose group_name is the cluster's name and
# whose name is the Dask worker's name.
clusters = Table(
    "clusters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),
    # starting | running | stopping | stopped | failed
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("instance", String(200), nullable=False),
    Column("scheduler_address", String(300)),
    Column("dashboard_link", String(300)),
    Column("tls_cert", Text, nullable=False),
    Column("tls_key", Text, nullable=False),
    # {"default": WorkerGroupSpec, ...} as JSON; each spec's ``workers`` is its target
    Column("groups", Text, nullable=False),
    # JSON list of worker names the owner asked to stop (adapt's choice): the reconcile
    # pass retires these first; a name leaves the list once its lease has ended
    Column("retiring", Text),
    # {"minimum": int, "maximum": int | null} as JSON while the gateway itself adapts the
    # default group to the scheduler's wish (dask-gateway clients' adapt); null: it does not
    Column("adapt", Text),
    Column("share_group", String(200)),
    # the Kubernetes site whose dask-kubernetes operator runs it as a DaskCluster resource
    # (sites/kubernetes_dask.py); NULL: a scheduler process of a replica, workers on pilots
    Column("operator_site", String(64)),
    Column("idle_timeout", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_client_seen", Float),
    Column("ended_at", Float),
)
Index("ix_clusters_owner_state", clusters.c.owner, clusters.c.state)
Index("ix_clusters_instance_state", clusters.c.instance, clusters.c.state)

# Each gateway replica's last sign of life (written by its cluster pass). A replica that
# has not been seen for [clusters] adopt_after seconds is gone: another one takes over
# its clusters, whose schedulers wait for that (clusters.scheduler's orphan grace).
gateway_instances = Table(
    "gateway_instances",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("seen_at", Float, nullable=False),
)

#: A result row of any shape (SQLAlchemy 2.1's Row is variadic).
AnyRow: TypeAlias = "Row[*tuple[Any, ...]]"
