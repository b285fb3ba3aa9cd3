"""The server's durable state behind one small interface: glossaries, usage per key, file jobs, and who owns
what.

:class:`ServerState` is the interface; :class:`SQLiteState` implements it over one SQLite file (WAL, one
transaction per change), ``":memory:"`` when the server has no state folder. A PostgreSQL implementation
plugs in behind the same methods. Every record carries its **owner**: the id of the API key that created it
(:func:`owner_id`, a hash, so the database never holds a key), ``""`` when the server runs without keys.

Tenancy: a :class:`Caller` (the key of a request, and whether it is the admin key) *sees* a record when it owns
it or is the admin; routers answer 404 for a record the caller does not see, so ids cannot be probed. Records
loaded from ``--glossary`` have no owner (``None``) and are seen by everyone.

The stores the routers use (:class:`GlossaryStore`, :class:`UsageCounter`) keep a copy in memory for speed and
write every change through to the state.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from tower_cat.errors import TowerCatError
from tower_cat.terminology import PREFERRED, Concept, Glossary, Term

SCHEMA_VERSION = 1


def _errors():
    """The service's HTTP error family (imported late: ``service`` imports this module)."""
    from . import service

    return service


def _now_iso() -> str:
    # DeepL clients parse %Y-%m-%dT%H:%M:%S.%f%z: fractional seconds are required
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


# ----------------------------------------------------------------------------------------------------------
# owners and callers


def owner_id(key: str | None) -> str:
    """The owner id recorded for an API key: a hash (the state database never holds a key); ``""`` for none."""
    if not key:
        return ""
    return "k-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class Caller:
    """Who makes a request: the owner id of its key, and whether that key is the admin key."""

    owner: str
    admin: bool = False

    def sees(self, record_owner: str | None) -> bool:
        return record_owner is None or self.admin or record_owner == self.owner


# ----------------------------------------------------------------------------------------------------------
# records


@dataclass
class Dictionary:
    source_lang: str   # base code, lower case
    target_lang: str
    entries: list[tuple[str, str]]
    _glossary: Glossary | None = field(default=None, repr=False, compare=False)

    @property
    def glossary(self) -> Glossary:
        if self._glossary is None:
            concepts = []
            for i, (s, t) in enumerate(self.entries):
                c = Concept(id=f"e{i}", dnt=(s == t))
                c.add(Term(s, self.source_lang, None))
                c.add(Term(t, self.target_lang, PREFERRED))
                concepts.append(c)
            self._glossary = Glossary(concepts, src_lang=self.source_lang, tgt_lang=self.target_lang)
        return self._glossary

    def dump(self) -> dict:
        return {"source_lang": self.source_lang, "target_lang": self.target_lang,
                "entries": [list(e) for e in self.entries]}

    @classmethod
    def load(cls, d: dict) -> "Dictionary":
        return cls(d["source_lang"], d["target_lang"], [(s, t) for s, t in d["entries"]])


@dataclass
class StoredGlossary:
    glossary_id: str
    name: str
    creation_time: str
    dictionaries: list[Dictionary]
    owner: str | None = None            # owner id (see owner_id); None: loaded with --glossary, seen by all
    builtin: Glossary | None = None     # loaded from --glossary (TBX/CSV): serves any pair it has

    def v2(self) -> dict:
        d = self.dictionaries[0] if self.dictionaries else Dictionary("", "", [])
        return {"glossary_id": self.glossary_id, "name": self.name, "ready": True, "source_lang": d.source_lang,
                "target_lang": d.target_lang, "creation_time": self.creation_time, "entry_count": len(d.entries)}

    def v3(self) -> dict:
        return {"glossary_id": self.glossary_id, "name": self.name, "creation_time": self.creation_time,
                "dictionaries": [{"source_lang": d.source_lang, "target_lang": d.target_lang,
                                  "entry_count": len(d.entries)} for d in self.dictionaries]}

    def dictionary(self, source_lang: str, target_lang: str) -> Dictionary | None:
        s, t = source_lang.split("-")[0].lower(), target_lang.split("-")[0].lower()
        return next((d for d in self.dictionaries if d.source_lang == s and d.target_lang == t), None)

    def prompt_terms(self, text: str, source_lang: str, target_lang: str) -> list[tuple[str, str]]:
        if self.builtin is not None:
            return self.builtin.prompt_terms(text, source_lang, target_lang)
        d = self.dictionary(source_lang, target_lang)
        return d.glossary.prompt_terms(text, d.source_lang, d.target_lang) if d else []


@dataclass
class KeyUsage:
    characters: int = 0
    requests: int = 0
    segments: int = 0


@dataclass
class JobRecord:
    """A file job as the state keeps it. Paths are derived from ``workdir`` and ``filename``."""

    id: str
    owner: str
    task: str
    filename: str
    workdir: str
    source_lang: str | None
    target_lang: str
    options: dict = field(default_factory=dict)
    glossary_id: str | None = None
    status: str = "queued"          # queued, running, done, failed, cancelled, interrupted (before resuming)
    done: int = 0
    total: int = 0
    error: str | None = None
    totals: dict | None = None      # the summary's totals; the full summary is summary.json in workdir
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    attempts: int = 0               # runs started (a resumed job counts again)
    interrupted: int = 0            # server restarts (crashes) that interrupted it
    node: str = ""                  # the server that runs it (host:jobs folder); others sharing the state leave it be

    def dump(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, d: dict) -> "JobRecord":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ----------------------------------------------------------------------------------------------------------
# the interface


class ServerState(ABC):
    """Durable server state. Every method is one transaction; implementations are safe across threads."""

    # True when other server processes write the same state (PostgreSQL, adapters/state_postgres.py): the
    # stores below then read through to it instead of trusting their copy in memory
    shared = False

    def glossary(self, glossary_id: str) -> "StoredGlossary | None":
        return next((g for g in self.glossaries() if g.glossary_id == glossary_id), None)

    def usage_of(self, owner: str) -> KeyUsage:
        return self.usage().get(owner, KeyUsage())

    # glossaries created over the API (DeepL v2/v3, /v1); --glossary files are not stored
    @abstractmethod
    def put_glossary(self, glossary: StoredGlossary) -> None: ...

    @abstractmethod
    def delete_glossary(self, glossary_id: str) -> None: ...

    @abstractmethod
    def glossaries(self) -> list[StoredGlossary]: ...

    # usage per owner
    @abstractmethod
    def add_usage(self, owner: str, characters: int, segments: int) -> None: ...

    @abstractmethod
    def usage(self) -> dict[str, KeyUsage]: ...

    # file jobs
    @abstractmethod
    def put_job(self, job: JobRecord) -> None: ...

    @abstractmethod
    def delete_job(self, job_id: str) -> None: ...

    @abstractmethod
    def jobs(self) -> list[JobRecord]: ...

    # owners of records kept elsewhere (interactive sessions live in their own SQLite file)
    @abstractmethod
    def set_owner(self, kind: str, record_id: str, owner: str) -> None: ...

    @abstractmethod
    def owner(self, kind: str, record_id: str) -> str | None:
        """The owner recorded for ``kind``/``record_id``; None when nothing is recorded."""

    @abstractmethod
    def forget_owner(self, kind: str, record_id: str) -> None: ...

    def count_owned(self, kind: str, owner: str) -> int:
        """How many records of ``kind`` ``owner`` has (per-key limits); NotImplementedError: not counted here."""
        raise NotImplementedError

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the state lives (for messages)."""


class StateError(TowerCatError):
    """The state database cannot be opened or written."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS glossaries (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, created TEXT NOT NULL,
    dictionaries TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS usage (
    owner TEXT PRIMARY KEY, characters INTEGER NOT NULL, requests INTEGER NOT NULL, segments INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created);
CREATE TABLE IF NOT EXISTS owners (
    kind TEXT NOT NULL, id TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (kind, id));
"""


class SQLiteState(ServerState):
    """:class:`ServerState` in one SQLite file (WAL; a change is one transaction), or ``":memory:"``."""

    def __init__(self, path: str | Path = ":memory:", *, timeout: float = 10.0):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False, isolation_level=None)
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StateError(f"{self.path}: state schema {row[0]} is newer than this tower-cat "
                                 f"({SCHEMA_VERSION})")
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot open the server state database: {exc}") from None

    @property
    def location(self) -> str:
        return self.path

    def _write(self, sql_params: Iterable[tuple[str, tuple]]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in sql_params:
                        self._db.execute(sql, params)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StateError(f"{self.path}: cannot write the server state: {exc}") from None

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"{self.path}: cannot read the server state: {exc}") from None

    # -- glossaries

    def put_glossary(self, glossary: StoredGlossary) -> None:
        if glossary.builtin is not None:
            return
        self._write([("INSERT OR REPLACE INTO glossaries VALUES (?, ?, ?, ?, ?)",
                      (glossary.glossary_id, glossary.owner or "", glossary.name, glossary.creation_time,
                       json.dumps([d.dump() for d in glossary.dictionaries], ensure_ascii=False)))])

    def delete_glossary(self, glossary_id: str) -> None:
        self._write([("DELETE FROM glossaries WHERE id = ?", (glossary_id,))])

    def glossaries(self) -> list[StoredGlossary]:
        rows = self._read("SELECT id, owner, name, created, dictionaries FROM glossaries ORDER BY created")
        return [StoredGlossary(gid, name, created, [Dictionary.load(d) for d in json.loads(dicts)], owner)
                for gid, owner, name, created, dicts in rows]

    # -- usage

    def add_usage(self, owner: str, characters: int, segments: int) -> None:
        self._write([("INSERT INTO usage VALUES (?, ?, 1, ?) ON CONFLICT (owner) DO UPDATE SET "
                      "characters = characters + excluded.characters, requests = requests + 1, "
                      "segments = segments + excluded.segments", (owner, characters, segments))])

    def usage(self) -> dict[str, KeyUsage]:
        return {o: KeyUsage(c, r, s) for o, c, r, s in
                self._read("SELECT owner, characters, requests, segments FROM usage")}

    # -- jobs

    def put_job(self, job: JobRecord) -> None:
        self._write([("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?)",
                      (job.id, job.owner, job.status, job.created, json.dumps(job.dump(), ensure_ascii=False)))])

    def delete_job(self, job_id: str) -> None:
        self._write([("DELETE FROM jobs WHERE id = ?", (job_id,))])

    def jobs(self) -> list[JobRecord]:
        return [JobRecord.load(json.loads(r[0])) for r in self._read("SELECT record FROM jobs ORDER BY created")]

    # -- owners

    def set_owner(self, kind: str, record_id: str, owner: str) -> None:
        self._write([("INSERT OR REPLACE INTO owners VALUES (?, ?, ?)", (kind, record_id, owner))])

    def owner(self, kind: str, record_id: str) -> str | None:
        rows = self._read("SELECT owner FROM owners WHERE kind = ? AND id = ?", (kind, record_id))
        return rows[0][0] if rows else None

    def forget_owner(self, kind: str, record_id: str) -> None:
        self._write([("DELETE FROM owners WHERE kind = ? AND id = ?", (kind, record_id))])

    def count_owned(self, kind: str, owner: str) -> int:
        return self._read("SELECT COUNT(*) FROM owners WHERE kind = ? AND owner = ?", (kind, owner))[0][0]

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass


def open_state(path: str | Path | None) -> ServerState:
    """The state at ``path`` (a SQLite file, or a ``postgresql://`` URL shared by several servers); in memory
    when None."""
    if isinstance(path, str) and path.lower().startswith(("postgresql://", "postgres://")):
        from .state_postgres import PostgresState

        return PostgresState(path)
    return SQLiteState(path or ":memory:")


# ----------------------------------------------------------------------------------------------------------
# translation memories per tenant


TM_MODES = ("shared", "per-key")


class TenantMemories:
    """Which TM a key reads and writes (``serve --tm-mode``).

    ``shared`` (default): one TM (``--tm``) for every key: lookups, few-shot examples, ``/v1/tm`` and accepted
    sessions all use it, so what one key approves helps the others, and is visible to them through matches.
    ``per-key``: each key has its own TM, ``<folder>/<owner id>.sqlite``, made on first use; no key's segments
    reach another key's prompts or matches. ``--tm`` is then the TM of the admin key (and of a server without
    keys).
    """

    def __init__(self, mode: str, shared, folder: str | Path | None):
        if mode not in TM_MODES:
            raise TowerCatError(f"unknown TM mode {mode!r}; use one of {', '.join(TM_MODES)}")
        if mode == "per-key" and folder is None:
            raise TowerCatError("--tm-mode per-key keeps a TM per key in the server's state folder",
                                hint="give --state FILE or --jobs-dir DIR")
        self.mode = mode
        self.shared = shared
        self.folder = Path(folder) if folder is not None else None
        self._by_owner: dict[str, Any] = {}
        self._lock = threading.Lock()

    def for_caller(self, caller: "Caller | None"):
        """The TM ``caller`` reads and writes (None when there is none)."""
        if self.mode == "shared" or caller is None or caller.admin or not caller.owner:
            return self.shared
        with self._lock:
            tm = self._by_owner.get(caller.owner)
            if tm is None:
                from tower_cat.tm import TranslationMemory

                self.folder.mkdir(parents=True, exist_ok=True)
                tm = TranslationMemory(self.folder / f"{caller.owner}.sqlite")
                self._by_owner[caller.owner] = tm
            return tm

    def close(self) -> None:
        with self._lock:
            for tm in self._by_owner.values():
                tm.close()
            self._by_owner.clear()


# ----------------------------------------------------------------------------------------------------------
# the stores the routers use: memory copy, written through


class GlossaryStore:
    MAX_GLOSSARIES = 1000   # per key: one key cannot use up the others' room

    def __init__(self, state: ServerState | None = None):
        self.state = state
        self._items: dict[str, StoredGlossary] = {}
        self._lock = threading.Lock()
        if state is not None:
            for g in state.glossaries():
                self._items[g.glossary_id] = g

    def create(self, name: str, dictionaries: list[Dictionary], owner: str | None = "") -> StoredGlossary:
        errors = _errors()
        if not name or not name.strip():
            raise errors.ServiceError("glossary name must not be empty")
        with self._lock:
            if sum(g.owner == owner for g in self._items.values()) >= self.MAX_GLOSSARIES:
                raise errors.ServiceError("too many glossaries", status=456)
            g = StoredGlossary(str(uuid.uuid4()), name, _now_iso(), dictionaries, owner)
            if self.state is not None:
                self.state.put_glossary(g)
            self._items[g.glossary_id] = g
        return g

    def save(self, glossary: StoredGlossary) -> None:
        """Write a changed glossary (renamed, dictionaries replaced) through to the state."""
        if self.state is not None:
            self.state.put_glossary(glossary)

    def add_builtin(self, path: str) -> StoredGlossary:
        glossary = Glossary.load(path)
        gid = "file-" + Path(path).stem.replace(".", "-")
        g = StoredGlossary(gid, Path(path).name, _now_iso(), [], None, glossary)
        self._items[gid] = g
        return g

    def get(self, glossary_id: str, caller: Caller | None = None) -> StoredGlossary:
        """The glossary; NotFound when there is none or ``caller`` does not see it."""
        g = self._items.get(glossary_id)
        if self.state is not None and self.state.shared and (g is None or g.builtin is None):
            g = self.state.glossary(glossary_id)  # another server may have made, changed or deleted it
        if g is None or (caller is not None and not caller.sees(g.owner)):
            raise _errors().NotFound("glossary not found")
        return g

    def list(self, caller: Caller | None = None) -> list[StoredGlossary]:
        items = list(self._items.values())
        if self.state is not None and self.state.shared:
            items = self.builtins() + self.state.glossaries()
        return [g for g in items if caller is None or caller.sees(g.owner)]

    def delete(self, glossary_id: str, caller: Caller | None = None) -> None:
        errors = _errors()
        with self._lock:
            g = self._items.get(glossary_id)
            if self.state is not None and self.state.shared and (g is None or g.builtin is None):
                g = self.state.glossary(glossary_id)
            if g is None or (caller is not None and not caller.sees(g.owner)):
                raise errors.NotFound("glossary not found")
            if g.builtin is not None:
                raise errors.ServiceError("glossaries loaded with --glossary cannot be deleted", status=403)
            if self.state is not None:
                self.state.delete_glossary(glossary_id)
            self._items.pop(glossary_id, None)

    def builtins(self) -> list[StoredGlossary]:
        return [g for g in self._items.values() if g.builtin is not None]


class UsageCounter:
    """Characters, requests and segments per key (stored under the key's owner id)."""

    def __init__(self, limit: int | None = None, state: ServerState | None = None):
        self.limit = limit
        self.state = state
        self._by_owner: dict[str, KeyUsage] = dict(state.usage()) if state is not None else {}
        self._lock = threading.Lock()

    def check(self, key: str | None, characters: int) -> None:
        if self.limit is None:
            return
        u = self.get(key)
        if u.characters + characters > self.limit:
            raise _errors().QuotaExceeded("Quota Exceeded")

    def add(self, key: str | None, characters: int, segments: int) -> None:
        owner = owner_id(key)
        with self._lock:
            if self.state is not None:
                self.state.add_usage(owner, characters, segments)
            u = self._by_owner.setdefault(owner, KeyUsage())
            u.characters += characters
            u.requests += 1
            u.segments += segments

    def get(self, key: str | None) -> KeyUsage:
        if self.state is not None and self.state.shared:  # counted by every server of the deployment
            return self.state.usage_of(owner_id(key))
        return self._by_owner.get(owner_id(key), KeyUsage())

    def all(self) -> dict[str, KeyUsage]:
        """Usage by owner id."""
        if self.state is not None and self.state.shared:
            return self.state.usage()
        return dict(self._by_owner)


__all__ = ["Caller", "Dictionary", "GlossaryStore", "JobRecord", "KeyUsage", "SQLiteState", "ServerState",
           "StateError", "StoredGlossary", "TM_MODES", "TenantMemories", "UsageCounter", "open_state", "owner_id"]
