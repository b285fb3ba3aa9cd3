"""The server's state on PostgreSQL, so several ``tower-cat serve`` processes behind one address behave as one.

``serve --state postgresql://…`` (usually the same database as ``--tm postgresql://…``) keeps glossaries, usage
per key, file-job records, the owners of records and the interactive sessions in PostgreSQL
(:class:`PostgresState`, :class:`PostgresSessionStore`): a glossary created through one process is used by the
other, usage is counted once across all of them (an atomic ``UPDATE … + n`` per request), and a session started
on one continues on another. :class:`PostgresState` says ``shared = True``: the stores the routers use
(``GlossaryStore``, ``UsageCounter``) then read through to the database instead of trusting their own copy.

Tables are prefixed ``state_``; ``state_schema_version`` records the migrations applied (the TM's own tables and
versions are separate, ``tower_cat.tm_postgres``). Each method is one statement or one transaction. A
connection lost (a PostgreSQL restart) is opened again once before an error is raised.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from tower_cat.sessions import Session, SessionError, SessionNotFound, SessionStore
from tower_cat.tm import _redact_url, is_postgres_url
from tower_cat.tm_postgres import apply_migrations

from .state import Dictionary, JobRecord, KeyUsage, ServerState, StateError, StoredGlossary

_STATE_LOCK = 1  # advisory-lock id of the state's migrations (the TM's is 0)


def _migration_1(conn: psycopg.Connection) -> None:
    """Glossaries, usage, jobs, owners and interactive sessions."""
    conn.execute("""
        CREATE TABLE state_glossaries (
            id text PRIMARY KEY, owner text NOT NULL, name text NOT NULL, created text NOT NULL,
            dictionaries text NOT NULL
        );
        CREATE TABLE state_usage (
            owner text PRIMARY KEY, characters bigint NOT NULL, requests bigint NOT NULL, segments bigint NOT NULL
        );
        CREATE TABLE state_jobs (
            id text PRIMARY KEY, owner text NOT NULL, status text NOT NULL, created double precision NOT NULL,
            record text NOT NULL
        );
        CREATE INDEX state_jobs_owner ON state_jobs (owner, created);
        CREATE TABLE state_owners (
            kind text NOT NULL, id text NOT NULL, owner text NOT NULL, PRIMARY KEY (kind, id)
        );
        CREATE TABLE state_sessions (
            id text PRIMARY KEY, created double precision NOT NULL, updated double precision NOT NULL,
            data text NOT NULL
        );
    """)


MIGRATIONS = [(1, "glossaries, usage, jobs, owners, sessions", _migration_1)]


class _Connection:
    """One autocommit connection shared by threads (a lock around each use), opened again once if lost."""

    def __init__(self, url: str, error: type[Exception], what: str):
        self.url, self.where, self.error, self.what = url, _redact_url(url), error, what
        self.lock = threading.RLock()
        self.conn = self._connect()
        try:
            apply_migrations(self.conn, self.where, MIGRATIONS, "state_schema_version", _STATE_LOCK)
        except BaseException:
            self.conn.close()
            raise

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=15,
                                   application_name=f"tower-cat {self.what}")
        except psycopg.Error as exc:
            raise self.error(f"{self.where}: cannot connect to the {self.what} database: {str(exc).strip()}"
                             ) from None

    def run(self, fn):
        """``fn(conn)`` under the lock; a broken connection is replaced and ``fn`` run once more."""
        with self.lock:
            for attempt in (1, 2):
                try:
                    return fn(self.conn)
                except psycopg.OperationalError as exc:
                    if attempt == 2 or not self.conn.broken:
                        raise self.error(f"{self.where}: {self.what} database error: {str(exc).strip()}") from None
                    self.conn = self._connect()
                except psycopg.Error as exc:
                    raise self.error(f"{self.where}: {self.what} database error: {str(exc).strip()}") from None

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class PostgresState(ServerState):
    """:class:`ServerState` in a PostgreSQL database (``postgresql://user:password@host:port/dbname``)."""

    shared = True

    def __init__(self, url: str):
        self._db = _Connection(url, StateError, "server state")

    @property
    def location(self) -> str:
        return self._db.where

    def _exec(self, sql: str, params: tuple = ()) -> None:
        self._db.run(lambda conn: conn.execute(sql, params))

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._db.run(lambda conn: conn.execute(sql, params).fetchall())

    # -- glossaries

    def put_glossary(self, glossary: StoredGlossary) -> None:
        if glossary.builtin is not None:
            return
        self._exec("INSERT INTO state_glossaries VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                   "owner = excluded.owner, name = excluded.name, created = excluded.created, "
                   "dictionaries = excluded.dictionaries",
                   (glossary.glossary_id, glossary.owner or "", glossary.name, glossary.creation_time,
                    json.dumps([d.dump() for d in glossary.dictionaries], ensure_ascii=False)))

    def delete_glossary(self, glossary_id: str) -> None:
        self._exec("DELETE FROM state_glossaries WHERE id = %s", (glossary_id,))

    @staticmethod
    def _glossary(row: tuple) -> StoredGlossary:
        gid, owner, name, created, dicts = row
        return StoredGlossary(gid, name, created, [Dictionary.load(d) for d in json.loads(dicts)], owner)

    def glossaries(self) -> list[StoredGlossary]:
        return [self._glossary(r) for r in self._rows(
            "SELECT id, owner, name, created, dictionaries FROM state_glossaries ORDER BY created, id")]

    def glossary(self, glossary_id: str) -> StoredGlossary | None:
        rows = self._rows("SELECT id, owner, name, created, dictionaries FROM state_glossaries WHERE id = %s",
                          (glossary_id,))
        return self._glossary(rows[0]) if rows else None

    # -- usage: one atomic increment per request, whichever server takes it

    def add_usage(self, owner: str, characters: int, segments: int) -> None:
        self._exec("INSERT INTO state_usage AS u VALUES (%s, %s, 1, %s) ON CONFLICT (owner) DO UPDATE SET "
                   "characters = u.characters + excluded.characters, requests = u.requests + 1, "
                   "segments = u.segments + excluded.segments", (owner, characters, segments))

    def usage(self) -> dict[str, KeyUsage]:
        return {o: KeyUsage(c, r, s) for o, c, r, s in
                self._rows("SELECT owner, characters, requests, segments FROM state_usage")}

    def usage_of(self, owner: str) -> KeyUsage:
        rows = self._rows("SELECT characters, requests, segments FROM state_usage WHERE owner = %s", (owner,))
        return KeyUsage(*rows[0]) if rows else KeyUsage()

    # -- jobs

    def put_job(self, job: JobRecord) -> None:
        self._exec("INSERT INTO state_jobs VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                   "owner = excluded.owner, status = excluded.status, created = excluded.created, "
                   "record = excluded.record",
                   (job.id, job.owner, job.status, job.created, json.dumps(job.dump(), ensure_ascii=False)))

    def delete_job(self, job_id: str) -> None:
        self._exec("DELETE FROM state_jobs WHERE id = %s", (job_id,))

    def jobs(self) -> list[JobRecord]:
        return [JobRecord.load(json.loads(r[0])) for r in
                self._rows("SELECT record FROM state_jobs ORDER BY created, id")]

    # -- owners

    def set_owner(self, kind: str, record_id: str, owner: str) -> None:
        self._exec("INSERT INTO state_owners VALUES (%s, %s, %s) ON CONFLICT (kind, id) DO UPDATE SET "
                   "owner = excluded.owner", (kind, record_id, owner))

    def owner(self, kind: str, record_id: str) -> str | None:
        rows = self._rows("SELECT owner FROM state_owners WHERE kind = %s AND id = %s", (kind, record_id))
        return rows[0][0] if rows else None

    def forget_owner(self, kind: str, record_id: str) -> None:
        self._exec("DELETE FROM state_owners WHERE kind = %s AND id = %s", (kind, record_id))

    def close(self) -> None:
        self._db.close()


class PostgresSessionStore(SessionStore):
    """Interactive sessions in PostgreSQL (``state_sessions``): every server of a deployment sees every session."""

    def __init__(self, url: str):  # noqa: D107 — SessionStore's SQLite set-up is not wanted here
        self._db = _Connection(url, SessionError, "session")
        self.path = self._db.where
        self._lock = self._db.lock

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._db.run(lambda conn: conn.execute(sql, params).fetchall())

    def save(self, session: Session) -> None:
        data = json.dumps(session.dump(), ensure_ascii=False, separators=(",", ":"))
        self._db.run(lambda conn: conn.execute(
            "INSERT INTO state_sessions (id, created, updated, data) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, data = excluded.data",
            (session.id, session.created, session.updated or time.time(), data)))

    def get(self, session_id: str) -> Session:
        rows = self._rows("SELECT data FROM state_sessions WHERE id = %s", (session_id,))
        if not rows:
            raise SessionNotFound(f"no session {session_id!r}", hint="start a new session")
        return Session.load(json.loads(rows[0][0]))

    def delete(self, session_id: str) -> bool:
        return bool(self._rows("DELETE FROM state_sessions WHERE id = %s RETURNING id", (session_id,)))

    def ids(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT id FROM state_sessions ORDER BY updated DESC")]

    def __contains__(self, session_id: object) -> bool:
        return bool(self._rows("SELECT 1 FROM state_sessions WHERE id = %s", (session_id,)))

    def __len__(self) -> int:
        return self._rows("SELECT count(*) FROM state_sessions")[0][0]

    def close(self) -> None:
        self._db.close()


def open_session_store(spec: Any) -> SessionStore:
    """A session store: the one given, a PostgreSQL one for a ``postgresql://`` URL, else a SQLite file."""
    if isinstance(spec, SessionStore):
        return spec
    if is_postgres_url(str(spec)):
        return PostgresSessionStore(str(spec))
    return SessionStore(Path(spec) if not isinstance(spec, Path) else spec)


__all__ = ["MIGRATIONS", "PostgresSessionStore", "PostgresState", "open_session_store"]
