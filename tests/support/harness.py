"""Real gateway processes for tests: port 0, a temporary state directory, real pilots.

``GatewayProcess`` runs ``python -m farside_gateway`` exactly as an operator would; the
gateway's local site starts real pilot subprocesses. It can be stopped, SIGKILLed and
restarted on the same port with the same database.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import tomli_w

DEFAULT_SETTINGS: dict[str, Any] = {
    "heartbeat_interval": 1.0,
    "heartbeat_timeout": 6.0,
    "reaper_interval": 0.5,
    "provision_interval": 0.5,
    "max_poll": 10.0,
    "sites": [
        {
            "name": "local",
            "plugin": "local",
            "cores": 1,
            "memory": "2 GiB",
            "min_warm": 2,
            "max_pilots": 2,
            "idle_timeout": 60,
        }
    ],
    # no scheduler started ahead for clusters nobody here asks for: a spare imports
    # distributed and bokeh, seconds of CPU per gateway on a 2-core machine; tests that pass
    # their own [clusters] table (the Dask suite) keep the default spare
    "clusters": {"spare_schedulers": 0},
}


class GatewayProcess:
    def __init__(self, state_dir: Path, database_url: str | None = None, **settings: Any) -> None:
        self.state_dir = state_dir
        self.database_url = database_url
        self.settings = {**DEFAULT_SETTINGS, **settings}
        self.config_path = state_dir / "gateway.toml"
        self.token_dir = state_dir / "tokens"
        self.log_path = state_dir / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(tomli_w.dumps(self.settings))

    # ------------------------------------------------------------------ lifecycle

    def _cli(self, *extra: str) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "farside_gateway",
            *extra,
            "--config",
            str(self.config_path),
            "--state-dir",
            str(self.state_dir),
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        return args

    def start(self, port: int | None = None, timeout: float = 30.0) -> GatewayProcess:
        announce = self.state_dir / "gateway.json"
        announce.unlink(missing_ok=True)
        port = self.port if port is None else port
        args = self._cli("--port", str(port), "--token-dir", str(self.token_dir))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited at start:\n{self.log_tail()}")
            if announce.exists():
                info = json.loads(announce.read_text())
                if info["pid"] == self.proc.pid:
                    self.url = info["url"]
                    self.port = int(self.url.rsplit(":", 1)[1])
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"gateway did not start within {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM: the gateway stops its pilots, then itself."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"gateway did not stop within {timeout}s") from None

    def kill(self) -> None:
        """SIGKILL the gateway alone; its pilots keep running."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            for pid in self.pilot_pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def failure_report(self, lines: int = 60, pilot_lines: int = 15) -> str:
        """What to read when a test of this gateway fails: its log's tail and each pilot
        log's tail (the conftest hook adds it to the failure's report)."""
        parts = [
            f"--- gateway {self.state_dir} (port {self.port}): last {lines} log lines",
            self.log_tail(lines),
        ]
        for log in sorted((self.state_dir / "pilots").glob("*/*.log")):
            with contextlib.suppress(OSError):
                tail = log.read_text(errors="replace").splitlines()[-pilot_lines:]
                parts += [f"--- pilot log {log.relative_to(self.state_dir)}", *tail]
        return "\n".join(parts)

    # ------------------------------------------------------------------ access

    @property
    def user_token(self) -> str:
        return (self.token_dir / "user.token").read_text().strip()

    @property
    def site_token(self) -> str:
        return (self.token_dir / "pilot.token").read_text().strip()

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=30)

    def client(self, token: str | None = None) -> Any:
        import farside

        return farside.Gateway(self.url, token=token or self.user_token)

    def make_user_token(self, user: str, admin: bool = False, groups: tuple[str, ...] = ()) -> str:
        args = self._cli("token", "--user", user) + (["--admin"] if admin else [])
        for group in groups:
            args += ["--group", group]
        out = subprocess.run(args, capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    def pilot_pids(self) -> list[int]:
        """Process ids of the pilots this gateway's local sites started (from the database).

        Only ``local`` sites: another plugin's batch ids are not process ids, and killing
        process groups by them could hit anything on the machine.
        """
        local = {
            site["name"]
            for site in self.settings.get("sites", [])
            if site.get("plugin", "local") == "local"
        }
        rows: list[tuple[str | None, str]] = []
        if self.database_url is None:
            db = self.state_dir / "farside.db"
            if db.exists():
                with sqlite3.connect(db) as conn:
                    rows = conn.execute("select batch_id, site from pilots").fetchall()
        else:
            import sqlalchemy

            engine = sqlalchemy.create_engine(self.database_url)
            try:
                with engine.connect() as conn:
                    rows = [
                        (r[0], r[1])
                        for r in conn.execute(sqlalchemy.text("select batch_id, site from pilots"))
                    ]
            except sqlalchemy.exc.SQLAlchemyError:
                rows = []
            finally:
                engine.dispose()
        return [int(r[0]) for r in rows if r[0] and r[0].isdigit() and r[1] in local]


def free_port() -> int:
    """A TCP port on loopback that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def fresh_postgres_database(dsn: str, prefix: str = "farside_t") -> Iterator[str]:
    """A new, empty database beside ``dsn``'s, dropped afterwards; yields its URL."""
    import sqlalchemy

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(dsn, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.make_url(dsn).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


#: the DSN of the test PostgreSQL (scripts/postgres.sh prints it; scripts/test.sh exports it)
POSTGRES_ENV = "FARSIDE_TEST_POSTGRES"


def postgres_database() -> Iterator[str]:
    """A fresh database on the test PostgreSQL (``$FARSIDE_TEST_POSTGRES``), dropped after
    the test; fails the test, saying what to do, when that is not set."""
    import pytest

    dsn = os.environ.get(POSTGRES_ENV)
    if not dsn:
        pytest.fail(
            f"{POSTGRES_ENV} is not set: start PostgreSQL with scripts/postgres.sh and export "
            "the DSN it prints (scripts/test.sh does both)"
        )
    with fresh_postgres_database(dsn) as url:
        yield url


@contextlib.contextmanager
def batch_pilots(
    gateway_url: str, site_token: str, count: int, workdir: Path, *options: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` pilots started by hand with the site's token, as a batch system's would
    be: they know only ``gateway_url`` (a front for replicas); ``options`` are more
    ``farside pilot`` flags (``--site``, ``--cores``, ...). Stopped afterwards."""
    env = {**os.environ, "FARSIDE_PILOT_TOKEN": site_token}
    pilots: list[subprocess.Popen[bytes]] = []
    try:
        for k in range(count):
            command = [sys.executable, "-m", "farside_pilot", "--gateway-url", gateway_url]
            command += [*options, "--workdir", str(workdir / f"pilot{k}")]
            with (workdir / f"pilot{k}.log").open("ab") as log:
                pilots.append(
                    subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
        yield pilots
    finally:
        for pilot in pilots:
            pilot.terminate()
        for pilot in pilots:
            pilot.wait(30)


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with a clear message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


REPO = Path(__file__).resolve().parents[2]


def run_script(
    script: str, *args: str, timeout: float, fails: str, env: dict[str, str] | None = None
) -> str:
    """Run one of the project's scripts (``scripts/<script> args``) that installs or starts
    what a suite needs, and return the last line it prints (a path, a URL, a kubeconfig).
    If it cannot run, times out or fails, the test fails saying ``fails`` (what it could not
    do, and what it needs) with the script's own message."""
    import pytest

    shown = " ".join([f"scripts/{script}", *args])
    try:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / script), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=None if env is None else {**os.environ, **env},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"could not run {shown}: {exc}")
    if done.returncode != 0:
        pytest.fail(f"{shown} {fails} (exit {done.returncode}):\n{done.stderr.strip()[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def running_gateway(state_dir: Path, **settings: Any) -> Iterator[GatewayProcess]:
    """A started gateway with ``settings``, stopped and cleaned up afterwards (for the
    module-scoped fixtures of the cluster tests, each with its sites and [clusters])."""
    gateway = GatewayProcess(state_dir, **settings)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.cleanup()


def farside_client(gateway: GatewayProcess) -> Iterator[Any]:
    """A farside.Gateway on ``gateway``'s user token, closed afterwards (fixture body)."""
    import farside

    client = farside.Gateway(gateway.url, token=gateway.user_token, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
