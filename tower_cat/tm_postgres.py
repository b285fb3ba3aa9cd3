"""Translation memory on PostgreSQL: one team TM shared by every translator, server and import.

Same interface and same answers as the SQLite ``TranslationMemory`` (``tower_cat.tm``): both inherit
``BaseTranslationMemory``, which reads import files, picks the index keys a query looks up, and computes every
score (rapidfuzz Levenshtein, CAT penalties, 101 % context) in Python. This backend stores, and proposes
candidates from PostgreSQL's own indexes:

* exact / 101 %: sources with the same case-folded text hash (``tm_sources.fold``, a b-tree index);
* fuzzy: the same inverted index as SQLite's — ``tm_postings`` (index key -> source, a b-tree on
  ``(gram, source_id)``: word unigrams/bigrams and character trigrams, computed in Python, so any script and
  any database locale work, stored as 64-bit hashes) and ``tm_grams`` (document frequency per key). A query reads the postings of its
  rarest keys within a budget, and one ``GROUP BY`` in PostgreSQL returns the sources sharing the most of them.
  ``pg_trgm`` was measured and not kept: its GIN index reads the posting list of every query trigram, frequent
  ones included, and rechecks thousands of rows (p50 175 ms at 20 000 units, growing with the TM; see
  docs/ARCHITECTURE.md).

Tables are prefixed ``tm_`` so the TM can share a database with the server's state. ``tm_schema_version``
records the migrations applied; opening a TM for writing applies the missing ones in one transaction, under an
advisory lock, so two processes starting at once migrate once (opening read-only never changes the schema).

Writers: every import batch (and every ``add``) is one transaction. Unique constraints (a source per language
and text hash, an entry per source/target language/content hash) and ``INSERT ... ON CONFLICT`` make
concurrent writers merge instead of duplicating or losing entries; rows are written in key order, so two
batches never wait on each other in a cycle (and a deadlock, should one happen, retries the batch from a
savepoint). An import records its committed units in ``tm_imports`` in the batch's own transaction and holds
a session advisory lock on its row while it runs: an interrupted import (its session gone) is resumed by the
next import of the same file, and a running one is never resumed twice.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import psycopg
from psycopg import errors as pg_errors

from tower_cat.document import segment_to_json
from tower_cat.tm import (BaseTranslationMemory, ImportStats, TMError, _fold_hash, _hash64, _index_keys, _Record,
                          _redact_url, normalize_text)

log = logging.getLogger(__name__)

_LOCK_NAMESPACE = 0x746D  # 'tm': advisory-lock class for this module's locks
_MIGRATION_LOCK = 0
_DEADLOCK_RETRIES = 5
VACUUM_AFTER = 5_000  # new entries from one import after which its tables are vacuumed and analysed at once


# --------------------------------------------------------------------------------------------------------
# schema and migrations


def _migration_1(conn: psycopg.Connection) -> None:
    """Tables, the inverted index for fuzzy candidates and the exact-match index."""
    conn.execute("""
        CREATE TABLE tm_sources (
            id bigserial PRIMARY KEY,
            lang text NOT NULL,
            norm text NOT NULL,
            norm_hash bytea NOT NULL,
            fold bigint NOT NULL,
            len integer NOT NULL,
            UNIQUE (lang, norm_hash)
        );
        CREATE INDEX tm_sources_fold ON tm_sources (fold);
        CREATE TABLE tm_postings (
            gram bigint NOT NULL,
            source_id bigint NOT NULL,
            PRIMARY KEY (gram, source_id)
        );
        CREATE TABLE tm_grams (
            gram bigint PRIMARY KEY,
            df integer NOT NULL
        );
        CREATE TABLE tm_entries (
            id bigserial PRIMARY KEY,
            source_id bigint NOT NULL REFERENCES tm_sources (id),
            tgt_lang text NOT NULL,
            dedup bigint NOT NULL,
            source_json text NOT NULL,
            target_json text NOT NULL,
            target_text text NOT NULL,
            origin text,
            created double precision NOT NULL,
            updated double precision NOT NULL,
            UNIQUE (source_id, tgt_lang, dedup)
        );
        CREATE TABLE tm_contexts (
            entry_id bigint NOT NULL REFERENCES tm_entries (id) ON DELETE CASCADE,
            ctx bigint NOT NULL,
            PRIMARY KEY (entry_id, ctx)
        );
        CREATE TABLE tm_pairs (
            src_lang text NOT NULL,
            tgt_lang text NOT NULL,
            PRIMARY KEY (src_lang, tgt_lang)
        );
        CREATE TABLE tm_imports (
            id bigserial PRIMARY KEY,
            path text NOT NULL,
            fingerprint text NOT NULL,
            src_lang text,
            tgt_lang text,
            units_done integer NOT NULL DEFAULT 0,
            status text NOT NULL,
            started double precision NOT NULL,
            finished double precision
        );
    """)


# (version, description, function): applied in order, each version once, all missing ones in one transaction
MIGRATIONS: list[tuple[int, str, Callable[[psycopg.Connection], None]]] = [
    (1, "tables, inverted index (postings, document frequencies), exact-match index", _migration_1),
]


def schema_version(conn: psycopg.Connection, table: str = "tm_schema_version") -> int:
    """The highest migration applied (0: nothing of ours in this database)."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not row[0]:
        return 0
    return conn.execute(f"SELECT coalesce(max(version), 0) FROM {table}").fetchone()[0]


def apply_migrations(conn: psycopg.Connection, where: str, migrations, table: str, lock: int) -> int:
    """Bring a schema to its latest version (``migrations``: ascending (version, description, function));
    returns it. One transaction, under an advisory lock: all missing migrations or none, and two processes
    starting at once migrate once."""
    latest = migrations[-1][0]
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NAMESPACE, lock))
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (version integer PRIMARY KEY, "
                     "description text NOT NULL, applied double precision NOT NULL)")
        current = schema_version(conn, table)
        if current > latest:
            raise TMError(f"the schema ({table}) is version {current}, newer than this tower-cat knows ({latest})",
                          path=where, hint="upgrade tower-cat")
        for version, description, apply in migrations:
            if version > current:
                try:
                    apply(conn)
                except pg_errors.InsufficientPrivilege as exc:
                    raise TMError(f"cannot create the tables: {exc.diag.message_primary}", path=where,
                                  hint="connect as a role with CREATE on the database's schema, e.g. its owner"
                                  ) from None
                conn.execute(f"INSERT INTO {table} (version, description, applied) VALUES (%s, %s, %s)",
                             (version, description, time.time()))
        return max(current, latest)


def migrate(conn: psycopg.Connection, where: str) -> int:
    """Bring the TM schema to the latest version (``MIGRATIONS``); returns it."""
    return apply_migrations(conn, where, MIGRATIONS, "tm_schema_version", _MIGRATION_LOCK)


# --------------------------------------------------------------------------------------------------------
# the memory


def _norm_hash(norm: str) -> bytes:
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()


@functools.lru_cache(maxsize=1 << 18)  # a TM's vocabulary repeats: most keys were hashed a batch ago
def _key_id(key: str) -> int:
    """An index key (trigram or word token) as a signed 64-bit integer: small, collation-free b-tree keys. Two
    keys sharing an id (odds ~1e-10 for a million keys) only add candidates; every score is computed exactly."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


class PostgresTranslationMemory(BaseTranslationMemory):
    """A translation memory in a PostgreSQL database (``postgresql://user:password@host:port/dbname``).

    ``ignore_case``, ``fallback``: as for the SQLite ``TranslationMemory``. ``readonly``: no writes, no schema
    changes (the database must hold a tower-cat TM at the current schema version).
    """

    index = "postings"

    def __init__(self, url: str, *, ignore_case: bool = False, fallback: bool = True, readonly: bool = False):
        self.url = url
        self.path = _redact_url(url)
        self.ignore_case = ignore_case
        self.fallback = fallback
        self.readonly = readonly
        self._lock = threading.RLock()
        self._pairs_cache = None
        self._pairs_read = 0.0
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=15,
                                        application_name="tower-cat tm")
        except psycopg.Error as exc:
            raise TMError(f"cannot connect to the PostgreSQL TM: {str(exc).strip()}", path=self.path,
                          hint="check the URL, that the server runs, and its pg_hba.conf") from None
        try:
            self._setup()
        except BaseException:
            self.conn.close()
            raise

    def _setup(self) -> None:
        conn = self.conn
        if self.readonly:
            version = schema_version(conn)
            if version == 0:
                raise TMError("not a tower-cat translation memory (no tm_schema_version table)", path=self.path,
                              hint="create it by opening it for writing, e.g. `tower-cat tm import FILE --db URL`")
            if version != MIGRATIONS[-1][0]:
                raise TMError(f"the TM's schema is version {version}, this tower-cat uses {MIGRATIONS[-1][0]}",
                              path=self.path, hint="open it once for writing (e.g. `tower-cat tm import`) to "
                                                   "migrate it" if version < MIGRATIONS[-1][0] else "upgrade tower-cat")
            conn.execute("SET default_transaction_read_only = on")
        else:
            migrate(conn, self.path)
        encoding = conn.execute("SHOW server_encoding").fetchone()[0]
        if encoding.upper() not in ("UTF8", "UTF-8"):
            log.warning("%s: database encoding %s: texts outside it cannot be stored; create the database with "
                        "ENCODING 'UTF8'", self.path, encoding)

    # ---------------------------------------------------------------- connection and transactions

    class _Tx:
        def __init__(self, memory: "PostgresTranslationMemory"):
            self.memory = memory
            self.tx = None

        def __enter__(self):
            memory = self.memory
            if memory.readonly:
                raise TMError("the TM was opened read-only", path=memory.path)
            memory._lock.acquire()
            try:
                self.tx = memory.conn.transaction()
                self.tx.__enter__()
            except BaseException:
                memory._lock.release()
                raise
            return memory.conn

        def __exit__(self, exc_type, exc, tb):
            try:
                return self.tx.__exit__(exc_type, exc, tb)
            finally:
                self.memory._lock.release()

    def _tx(self) -> "_Tx":
        return self._Tx(self)

    def close(self) -> None:
        if getattr(self, "conn", None) is not None:
            self.conn.close()
            self.conn = None  # type: ignore[assignment]

    # ---------------------------------------------------------------- writing

    def _write_batch(self, records: Sequence[_Record]) -> list[tuple[int, bool]]:
        """Write records inside the caller's transaction, retrying from a savepoint should a deadlock hit."""
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                with self.conn.transaction():  # a savepoint inside the caller's transaction
                    return self._write_rows(records)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _DEADLOCK_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _write_rows(self, records: Sequence[_Record]) -> list[tuple[int, bool]]:
        conn = self.conn
        if not records:
            return []
        # 1. sources, in key order (so concurrent batches lock keys in the same order)
        source_keys: dict[tuple[str, bytes], str] = {}
        rec_source: list[tuple[str, bytes]] = []
        for r in records:
            norm = normalize_text(r.source.text)
            key = (r.src_lang, _norm_hash(norm))
            source_keys.setdefault(key, norm)
            rec_source.append(key)
        # ids follow the records' order (as SQLite's rowids do: the candidate ranking breaks ties by id), while
        # the rows are written in key order; an id whose source exists already is simply not used
        fresh = sorted(r[0] for r in conn.execute(
            "SELECT nextval(pg_get_serial_sequence('tm_sources', 'id')) FROM generate_series(1, %s)",
            (len(source_keys),)))
        new_id = dict(zip(source_keys, fresh))
        ordered = sorted(source_keys)
        langs = [k[0] for k in ordered]
        hashes = [k[1] for k in ordered]
        norms = [source_keys[k] for k in ordered]
        new_sources = conn.execute(
            "INSERT INTO tm_sources (id, lang, norm, norm_hash, fold, len) "
            "SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::bytea[], %b::bigint[], %b::integer[]) "
            "ORDER BY 2, 4 ON CONFLICT (lang, norm_hash) DO NOTHING RETURNING id, norm",
            ([new_id[k] for k in ordered], langs, norms, hashes, [_fold_hash(n) for n in norms],
             [len(n) for n in norms])).fetchall()
        if new_sources:  # only the sources this batch created are indexed, by this batch
            self._index_sources(new_sources, +1)
        source_ids = {(lang, bytes(h)): sid for sid, lang, h in conn.execute(
            "SELECT s.id, s.lang, s.norm_hash FROM tm_sources s "
            "JOIN unnest(%b::text[], %b::bytea[]) AS k(lang, h) ON s.lang = k.lang AND s.norm_hash = k.h",
            (langs, hashes))}
        # 2. entries: duplicates inside the batch merged first (ON CONFLICT may touch a row once per statement),
        # the same way the SQLite backend merges them one after the other
        groups: dict[tuple[int, str, int], dict[str, Any]] = {}
        rec_keys: list[tuple[int, str, int]] = []
        first_of_group: list[bool] = []
        for r, skey in zip(records, rec_source):
            sj, tj = segment_to_json(r.source), segment_to_json(r.target)
            key = (source_ids[skey], r.tgt_lang, _hash64(normalize_text(sj), normalize_text(tj)))
            rec_keys.append(key)
            group = groups.get(key)
            if group is None:
                groups[key] = {"sj": sj, "tj": tj, "text": r.target.text, "origin": r.origin, "created": r.created,
                               "updated": max(r.created, r.updated), "contexts": set(r.contexts)}
                first_of_group.append(True)
            else:
                if r.updated > group["updated"]:
                    group["updated"] = r.updated
                    group["origin"] = r.origin if r.origin is not None else group["origin"]
                group["contexts"].update(r.contexts)
                first_of_group.append(False)
        keys = sorted(groups)
        rows = conn.execute(
            "INSERT INTO tm_entries AS e (source_id, tgt_lang, dedup, source_json, target_json, target_text, origin,"
            " created, updated) "
            "SELECT * FROM unnest(%b::bigint[], %b::text[], %b::bigint[], %b::text[], %b::text[], %b::text[],"
            " %b::text[], %b::float8[], %b::float8[]) ORDER BY 1, 2, 3 "
            "ON CONFLICT (source_id, tgt_lang, dedup) DO UPDATE SET "
            " updated = greatest(e.updated, excluded.updated),"
            " origin = CASE WHEN excluded.updated > e.updated THEN coalesce(excluded.origin, e.origin)"
            " ELSE e.origin END "
            "RETURNING e.id, e.source_id, e.tgt_lang, e.dedup, (e.xmax = 0) AS inserted",
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [groups[k]["sj"] for k in keys],
             [groups[k]["tj"] for k in keys], [groups[k]["text"] for k in keys],
             [groups[k]["origin"] for k in keys], [groups[k]["created"] for k in keys],
             [groups[k]["updated"] for k in keys])).fetchall()
        written = {(sid, tgt, dedup): (eid, inserted) for eid, sid, tgt, dedup, inserted in rows}
        # 3. contexts and pairs
        ctx_rows = sorted({(written[k][0], c) for k in keys for c in groups[k]["contexts"]})
        if ctx_rows:
            conn.execute("INSERT INTO tm_contexts (entry_id, ctx) SELECT * FROM unnest(%s::bigint[], %s::bigint[]) "
                         "ORDER BY 1, 2 ON CONFLICT DO NOTHING",
                         ([e for e, _ in ctx_rows], [c for _, c in ctx_rows]))
        pairs = sorted({(r.src_lang, r.tgt_lang) for r in records})
        conn.execute("INSERT INTO tm_pairs (src_lang, tgt_lang) SELECT * FROM unnest(%s::text[], %s::text[]) "
                     "ORDER BY 1, 2 ON CONFLICT DO NOTHING", ([s for s, _ in pairs], [t for _, t in pairs]))
        self._pairs_cache = None
        out = []
        for key, first in zip(rec_keys, first_of_group):
            eid, inserted = written[key]
            out.append((eid, bool(inserted) and first))
        return out

    def _index_sources(self, sources: list[tuple[int, str]], sign: int) -> None:
        """Add (+1) or remove (-1) sources' postings and document frequencies (these in key order)."""
        conn = self.conn
        df: dict[int, int] = {}
        lines: list[str] = []
        postings_keys: list[int] = []
        postings_ids: list[int] = []
        for sid, norm in sources:
            grams, words = _index_keys(norm)
            ids = {_key_id(k) for k in grams | {"w " + w for w in words}}  # trigram 'w f' and word 'f': one key
            for key in ids:
                df[key] = df.get(key, 0) + 1
            if not ids:  # one or two characters, no word: nothing to index
                continue
            if sign > 0:
                tail = f"\t{sid}\n"
                lines.append(tail.join(map(str, ids)) + tail)
            else:
                postings_keys.extend(ids)
                postings_ids.extend([sid] * len(ids))
        keys = sorted(df)
        if sign > 0:
            # new sources only: their postings cannot exist yet, nor be locked by anyone else; COPY is fastest
            with conn.cursor().copy("COPY tm_postings (gram, source_id) FROM STDIN") as copy:
                copy.write("".join(lines))
            conn.execute("INSERT INTO tm_grams AS g (gram, df) SELECT * FROM unnest(%b::bigint[], %b::integer[]) "
                         "ORDER BY 1 ON CONFLICT (gram) DO UPDATE SET df = g.df + excluded.df",
                         (keys, [df[k] for k in keys]))
        else:
            conn.execute("DELETE FROM tm_postings p USING unnest(%b::bigint[], %b::bigint[]) AS d(gram, source_id) "
                         "WHERE p.gram = d.gram AND p.source_id = d.source_id", (postings_keys, postings_ids))
            conn.execute("UPDATE tm_grams g SET df = g.df - d.n FROM unnest(%b::bigint[], %b::integer[]) AS d(gram, n) "
                         "WHERE g.gram = d.gram", (keys, [df[k] for k in keys]))

    def delete(self, entry_id: int) -> bool:
        """Remove one entry (its source, and its postings, go when no other entry uses it)."""
        with self._tx() as conn:
            row = conn.execute("DELETE FROM tm_entries WHERE id = %s RETURNING source_id", (entry_id,)).fetchone()
            if not row:
                return False
            gone = conn.execute("DELETE FROM tm_sources s WHERE s.id = %s AND NOT EXISTS "
                                "(SELECT 1 FROM tm_entries e WHERE e.source_id = s.id) RETURNING id, norm",
                                (row[0],)).fetchall()
            if gone:
                self._index_sources(gone, -1)
        self._pairs_cache = None
        return True

    # ---------------------------------------------------------------- import book-keeping

    def _start_import(self, path: Path, fingerprint: str, src: str | None, tgt: str | None,
                      resume: bool) -> tuple[int, int]:
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id, units_done FROM tm_imports WHERE fingerprint = %s AND coalesce(src_lang, '') = %s AND "
                "coalesce(tgt_lang, '') = %s AND status = 'running' ORDER BY id DESC",
                (fingerprint, src or "", tgt or "")).fetchall()
        for import_id, done in rows:
            # a running import whose session still holds its lock is alive elsewhere: never resume it twice
            if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_NAMESPACE, import_id)).fetchone()[0]:
                continue
            if resume:
                return import_id, done
            with self._tx() as conn:
                conn.execute("UPDATE tm_imports SET status = 'abandoned' WHERE id = %s", (import_id,))
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_NAMESPACE, import_id))
            break
        with self._tx() as conn:
            import_id = conn.execute(
                "INSERT INTO tm_imports (path, fingerprint, src_lang, tgt_lang, status, started) "
                "VALUES (%s, %s, %s, %s, 'running', %s) RETURNING id",
                (str(path.resolve()), fingerprint, src, tgt, time.time())).fetchone()[0]
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_NAMESPACE, import_id))
        return import_id, 0

    def import_file(self, path, src_lang=None, tgt_lang=None, **kwargs) -> ImportStats:
        """As ``BaseTranslationMemory.import_file``; after a bulk load (``VACUUM_AFTER`` new entries or more) the
        index tables are vacuumed and analysed at once, as PostgreSQL advises after bulk loads, so lookups use
        index-only scans and fresh statistics now rather than when autovacuum gets to them."""
        stats = super().import_file(path, src_lang, tgt_lang, **kwargs)
        if stats.added >= VACUUM_AFTER:
            t0 = time.time()
            with self._lock:
                self.conn.execute("VACUUM (ANALYZE) tm_postings, tm_grams, tm_sources, tm_entries")
            log.info("%s: VACUUM (ANALYZE) after %s new entries: %.1f s", self.path, stats.added, time.time() - t0)
            stats.seconds += time.time() - t0
        return stats

    def _set_import_progress(self, import_id: int, units_done: int) -> None:
        self.conn.execute("UPDATE tm_imports SET units_done = %s WHERE id = %s", (units_done, import_id))

    def _finish_import(self, import_id: int) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE tm_imports SET status = 'done', finished = %s WHERE id = %s",
                         (time.time(), import_id))
        self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_NAMESPACE, import_id))

    # ---------------------------------------------------------------- reading

    def pairs(self) -> list[tuple[str, str]]:
        # other processes add pairs too: re-read now and then, not only after our own writes
        if self._pairs_cache is None or time.monotonic() - self._pairs_read > 2.0:
            with self._lock:
                self._pairs_cache = [tuple(r) for r in self.conn.execute(
                    "SELECT src_lang, tgt_lang FROM tm_pairs ORDER BY 1, 2")]
                self._pairs_read = time.monotonic()
        return self._pairs_cache

    def _langs_for(self, src: str, tgt: str) -> tuple[list[str], list[str]]:
        found = super()._langs_for(src, tgt)
        if not found[0]:  # a pair another writer (another server, an import) may have added since: ask again
            self._pairs_cache = None
            found = super()._langs_for(src, tgt)
        return found

    def _exact_candidates(self, qtext: str, srcs: list[str]) -> Iterable[tuple[int, str]]:
        return self.conn.execute("SELECT id, norm FROM tm_sources WHERE fold = %s AND lang = ANY(%s)",
                                 (_fold_hash(qtext), srcs)).fetchall()

    def _gram_dfs(self, keys: list[str]) -> dict[str, int]:
        by_id = {_key_id(k): k for k in keys}
        return {by_id[g]: df for g, df in self.conn.execute(
            "SELECT gram, df FROM tm_grams WHERE gram = ANY(%b::bigint[]) AND df > 0", (list(by_id),))}

    def _most_shared(self, keys: list[str], limit: int) -> list[int]:
        # ties in the order SQLite's counter meets them: by the first (rarest) key that has the source, then id
        ids = [_key_id(k) for k in keys]
        return [sid for (sid,) in self.conn.execute(
            "SELECT source_id FROM tm_postings WHERE gram = ANY(%b::bigint[]) GROUP BY source_id "
            "ORDER BY count(*) DESC, min(array_position(%b::bigint[], gram)), source_id LIMIT %s",
            (ids, ids, limit))]

    def _sources_in_window(self, ids: list[int], lo: int, hi: int, srcs: list[str]) -> list[tuple[int, str]]:
        return self.conn.execute("SELECT id, norm FROM tm_sources WHERE id = ANY(%s) AND len BETWEEN %s AND %s "
                                 "AND lang = ANY(%s)", (ids, lo, hi, srcs)).fetchall()

    def _entry_rows(self, source_ids: list[int], tgts: list[str]) -> Iterable[tuple]:
        return self.conn.execute(
            "SELECT e.id, e.source_id, e.source_json, e.target_json, e.origin, e.created, e.updated, e.tgt_lang,"
            " s.lang FROM tm_entries e JOIN tm_sources s ON s.id = e.source_id"
            " WHERE e.source_id = ANY(%s) AND e.tgt_lang = ANY(%s)", (source_ids, tgts)).fetchall()

    def _has_context(self, entry_id: int, keys: set[int]) -> bool:
        return self.conn.execute("SELECT 1 FROM tm_contexts WHERE entry_id = %s AND ctx = ANY(%s) LIMIT 1",
                                 (entry_id, list(keys))).fetchone() is not None

    def _pair_entry_rows(self, src: str, tgt: str) -> Iterator[tuple]:
        last = 0
        while True:  # pages by id: no transaction held open while the caller writes a TMX
            with self._lock:
                rows = self.conn.execute(
                    "SELECT e.id, e.source_json, e.target_json, e.origin, e.created, e.updated FROM tm_entries e "
                    "JOIN tm_sources s ON s.id = e.source_id WHERE s.lang = %s AND e.tgt_lang = %s AND e.id > %s "
                    "ORDER BY e.id LIMIT 1000", (src, tgt, last)).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    def _commonest_source_lang(self) -> str | None:
        row = self.conn.execute("SELECT s.lang FROM tm_entries e JOIN tm_sources s ON s.id = e.source_id "
                                "GROUP BY s.lang ORDER BY count(*) DESC LIMIT 1").fetchone()
        return row[0] if row else None

    # ---------------------------------------------------------------- stats

    def stats(self) -> dict[str, Any]:
        conn = self.conn
        with self._lock:
            pairs = {f"{s}>{t}": n for s, t, n in conn.execute(
                "SELECT s.lang, e.tgt_lang, count(*) FROM tm_entries e JOIN tm_sources s ON s.id = e.source_id "
                "GROUP BY s.lang, e.tgt_lang ORDER BY 1, 2")}
            return {
                "path": self.path,
                "entries": conn.execute("SELECT count(*) FROM tm_entries").fetchone()[0],
                "sources": conn.execute("SELECT count(*) FROM tm_sources").fetchone()[0],
                "pairs": pairs,
                "index": self.index,
                "postgres": conn.execute("SHOW server_version").fetchone()[0],
                "schema_version": schema_version(conn),
                "imports": [dict(zip(("path", "units", "status"), r)) for r in conn.execute(
                    "SELECT path, units_done, status FROM tm_imports ORDER BY id")],
            }

    def integrity_check(self) -> str:
        """"ok", or what is wrong: the invariants the constraints cannot state (and a check they hold)."""
        checks = {
            "duplicate entries": "SELECT count(*) FROM (SELECT 1 FROM tm_entries GROUP BY source_id, tgt_lang, "
                                 "dedup HAVING count(*) > 1) d",
            "duplicate sources": "SELECT count(*) FROM (SELECT 1 FROM tm_sources GROUP BY lang, norm "
                                 "HAVING count(*) > 1) d",
            "sources with a wrong length": "SELECT count(*) FROM tm_sources WHERE len <> char_length(norm)",
            "sources with a wrong hash": "SELECT count(*) FROM tm_sources WHERE length(norm_hash) <> 16",
            "entries of an unlisted pair": "SELECT count(*) FROM (SELECT DISTINCT s.lang, e.tgt_lang FROM tm_entries "
                                           "e JOIN tm_sources s ON s.id = e.source_id EXCEPT SELECT src_lang, "
                                           "tgt_lang FROM tm_pairs) p",
            "document frequencies that disagree with the postings": "SELECT count(*) FROM tm_grams g FULL JOIN "
                "(SELECT gram, count(*) AS n FROM tm_postings GROUP BY gram) p ON p.gram = g.gram "
                "WHERE coalesce(g.df, 0) <> coalesce(p.n, 0)",
            "postings of missing sources": "SELECT count(*) FROM (SELECT DISTINCT source_id FROM tm_postings) p "
                                           "LEFT JOIN tm_sources s ON s.id = p.source_id WHERE s.id IS NULL",
            "sources of 3+ characters without postings": "SELECT count(*) FROM tm_sources s WHERE NOT EXISTS "
                                        "(SELECT 1 FROM tm_postings p WHERE p.source_id = s.id) AND len >= 3",
            "entries with unreadable JSON": "SELECT count(*) FROM tm_entries WHERE NOT (source_json::jsonb IS NOT "
                                            "NULL AND target_json::jsonb IS NOT NULL)",
        }
        problems = []
        with self._lock:
            for name, sql in checks.items():
                try:
                    n = self.conn.execute(sql).fetchone()[0]
                except psycopg.Error as exc:
                    problems.append(f"{name}: {str(exc).strip()}")
                    continue
                if n:
                    problems.append(f"{n} {name}")
        return "ok" if not problems else "; ".join(problems)

    def __len__(self) -> int:
        with self._lock:
            return self.conn.execute("SELECT count(*) FROM tm_entries").fetchone()[0]
