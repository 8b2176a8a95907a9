"""Engine, migrations and the thread pools that run database work off the event loop.

Database functions in ``farside_gateway.pool`` (and the auth and provisioning modules) are plain
synchronous functions that take a ``Connection``; handlers ``await db.write(fn, ...)`` or
``await db.read(fn, ...)``. Each call is one transaction. SQLite allows one writer, so writes
go through one thread (no "database is locked" under load); reads use their own threads and,
thanks to WAL, never wait for the writer. PostgreSQL gets a pool of writers; rows are
claimed there with ``FOR UPDATE SKIP LOCKED`` so several gateways can share one database.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url, text

P = ParamSpec("P")
T = TypeVar("T")

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode is durable across process crashes (the gateway being killed);
    # only a power loss can drop the last transactions.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=8)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=16, max_overflow=8, pool_pre_ping=True)


#: advisory lock key held while migrating (any constant that no other code uses)
MIGRATION_LOCK = 0x66617273  # "fars"


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # replicas that start together (a Deployment's pods) take turns; the second
            # finds the schema at head and does nothing
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """Runs transactions in worker threads so the event loop never blocks on SQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        #: told each transaction's kind ("read" or "write") and seconds (the metrics)
        self.observe: Callable[[str, float], None] | None = None
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._writer = ThreadPoolExecutor(1 if self.is_sqlite else 8, "db-write")
        self._reader = ThreadPoolExecutor(4, "db-read")

    def migrate(self) -> None:
        migrate(self.engine)

    def _transaction(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        with self.engine.begin() as conn:
            return fn(conn, *args, **kwargs)

    def _timed(
        self,
        kind: str,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        started = time.perf_counter()
        try:
            return self._transaction(fn, *args, **kwargs)
        finally:
            if self.observe is not None:
                self.observe(kind, time.perf_counter() - started)

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._timed, "write", fn, *args, **kwargs)
        return await loop.run_in_executor(self._writer, call)

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._timed, "read", fn, *args, **kwargs)
        return await loop.run_in_executor(self._reader, call)

    def run_sync(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a transaction in the calling thread (CLI tools, start-up)."""
        return self._transaction(fn, *args, **kwargs)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self.engine.dispose()


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows through the driver's own executemany.

    For the hot append-only tables (events, attempts, log lines). SQLAlchemy's executemany
    spends more time preparing each row's parameters than SQLite spends storing it; here
    rows go to the driver as plain tuples. All rows must have the same keys.
    """
    if not rows:
        return
    columns = list(rows[0])
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    conn.exec_driver_sql(sql, [tuple(row[c] for c in columns) for row in rows])
