"""A real PostgreSQL for the tests: ``initdb`` + ``pg_ctl`` in a temporary folder, on 127.0.0.1 (a free port)
with its Unix socket in the same folder, stopped and removed at the end of the session.

Needs the PostgreSQL server binaries (Debian: ``apt-get install postgresql`` — ``postgresql-15`` brings
``initdb``, ``pg_ctl`` and the ``pg_trgm`` extension) and ``psycopg``; the tests that need them skip, saying
why, when either is missing. ``initdb`` refuses to run as root, so as root the cluster belongs to ``nobody``.
Every start and stop is bounded in time.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN_DIRS = ("/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin",
               "/usr/lib/postgresql/17/bin")


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in PG_BIN_DIRS:
        path = Path(folder) / name
        if path.is_file():
            return str(path)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throw-away cluster; ``new_database()`` gives the URL of a fresh, empty UTF-8 database."""

    def __init__(self, root: Path, port: int, user: str):
        self.root, self.port, self.user = root, port, user
        self._names = itertools.count(1)

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self, prefix: str = "tm") -> str:
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\' LC_COLLATE \'C.UTF-8\' '
                         f"LC_CTYPE 'C.UTF-8'")
        return self.url(name)


def _run(cmd: list[str], as_user: str | None, timeout: float) -> subprocess.CompletedProcess:
    kwargs = {"user": as_user, "group": "nogroup"} if as_user else {}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def postgres_server():
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'tower-cat[postgres]')")
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql "
                    "(postgresql-15), or make test")
    as_user = "nobody" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="tower-cat-pg-"))
    data = root / "data"
    if as_user:
        shutil.chown(root, user=as_user, group="nogroup")
    user = as_user or os.environ.get("USER") or "postgres"
    init = _run([initdb, "-D", str(data), "-U", user, "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8",
                 "--no-sync"], as_user, timeout=120)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip()[-500:]}")
    port = _free_port()
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
               f"-c full_page_writes=off -c max_connections=60 -c shared_buffers=64MB")
    start = _run([pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "-t", "60",
                  "start"], as_user, timeout=90)
    if start.returncode != 0:
        log = (root / "server.log").read_text(errors="replace")[-800:] if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {start.stderr.strip()[-400:]} {log}")
    try:
        yield PostgresServer(root, port, user)
    finally:
        _run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"], as_user, timeout=90)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_tm_url(postgres_server) -> str:
    """A fresh, empty database on the test cluster (a TM is created in it on first open)."""
    return postgres_server.new_database()
