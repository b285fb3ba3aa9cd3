"""Translation memory on SQLite: import (TMX streaming, bilingual XLIFF/SDLXLIFF/MQXLIFF/PO), exact / context /
fuzzy lookup with CAT-style penalties, write-back of approved translations, export to TMX.

``BaseTranslationMemory`` holds what does not depend on storage — import readers, the choice of candidate keys,
scoring and ranking — so the PostgreSQL team TM (``tower_cat.tm_postgres``) gives the same answers.
``open_translation_memory`` opens whatever a user named: a database (by its header), a TMX (read into memory),
a ``postgresql://`` URL, or ``$TOWER_CAT_TM_URL``.

One database file holds any number of language pairs. It runs in WAL mode; every import batch is one
transaction, so a killed import leaves the database consistent (``PRAGMA integrity_check`` ok) and shows either
the whole of a batch or nothing of it. The ``imports`` table records how many units of a file were committed;
importing the same (unchanged) file again resumes after them.

Storage
    ``sources``  one row per distinct (source language, whitespace-normalised source text); its plain text is
                 indexed for fuzzy retrieval (FTS5 ``trigram`` tokenizer when SQLite has it, >= 3.34; otherwise
                 an own n-gram posting table). A source shared by several target languages is indexed once.
    ``entries``  one row per (source, target language, source segment, target segment): the segments are kept
                 as JSON parts (text runs and inline codes with their original markup) so codes can be
                 restored; plus origin and created/updated timestamps.
    ``contexts`` context fingerprints of an entry (resname/msgctxt/x-context key; previous+next source).
    ``grams``    document frequency of each trigram (picks the rare, selective grams at query time).

Duplicates
    * Same source segment + same target segment + same languages = **one entry**: adding it again only moves
      its ``updated`` timestamp forward (the later of the two) and adds the new context, if any.
    * Same source, **different target** = **both kept**; lookups list the most recently updated first among
      equal scores.
    * Whitespace differences (runs of spaces, leading/trailing blanks) do not make a new entry.

Languages
    Codes are normalised (``en_us``, ``EN-us`` -> ``en-US``; ``zh-hant-tw`` -> ``zh-Hant-TW``). With
    ``fallback=True`` (default) a query for ``de-DE`` also finds entries stored as ``de`` and vice versa; two
    different explicit regions (``pt-PT`` vs ``pt-BR``) never match each other.

Scores (0-101)
    * 101 ``context``: exact match whose entry was stored with the same context: the same resname / msgctxt /
      TMX ``x-context`` key, or the same previous *and* next source segment.
    * 100 ``exact``: same text (whitespace normalised; case too when ``ignore_case=True``) and the same codes.
    * fuzzy: ``100 * (1 - levenshtein(query, source) / max(len))`` on the whitespace-normalised plain text
      (the same measure as translate-toolkit's ``LevenshteinComparer``), capped at 99, minus penalties:
        - ``case``: 1 when the texts differ only in letter case (and ``ignore_case`` is off); such a match
          scores 99 instead of its character distance;
        - ``codes``: 1 per inline code present on one side only (compared by kind and tag name; ids do not
          matter), and 1 when the same codes come in a different order — only when the query is a Segment;
        - ``numbers``: 2 per number (digits with , . : separators) that differs between query and source.
      An exact text whose codes differ is reported as ``fuzzy`` with ``score = 100 - code penalty``.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from rapidfuzz.distance import Levenshtein

from tower_cat.document import Segment, Unit, UnitContext, segment_from_json, segment_to_json
from tower_cat.languages import check_lang, lang_base, lang_matches, normalize_lang
from tower_cat import errors
from tower_cat.errors import InvalidArgument

SCHEMA_VERSION = 1

# Penalties (percentage points), as CAT tools apply them. Documented in the module docstring.
CASE_PENALTY = 1.0
CODE_PENALTY = 1.0
CODE_ORDER_PENALTY = 1.0
NUMBER_PENALTY = 2.0
FUZZY_CAP = 99.0

# Fuzzy retrieval: how many posting-list entries one query may read (rarest grams first), and how many
# candidates (by shared-gram count) are scored with Levenshtein.
WORD_BUDGET = 6000  # postings read for word tokens (unigrams + bigrams)
TRIGRAM_BUDGET = 2500  # postings read for character trigrams (typos, short texts, scripts without spaces)
MAX_TOKENS = 40
CANDIDATES = 60  # candidates per route scored with Levenshtein

_WS = re.compile(r"\s+")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")


TMError = errors.TMError  # one error family (tower_cat.errors); importable from here as before


def _as_segment(value: str | Segment) -> Segment:
    return value if isinstance(value, Segment) else Segment.from_text(value)


def normalize_text(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _hash64(*parts: str) -> int:
    h = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big", signed=True)


def _fold_hash(norm: str) -> int:
    return _hash64(norm.casefold())


def _grams(norm: str) -> set[str]:
    low = norm.lower()
    return {low[i:i + 3] for i in range(len(low) - 2)}


_WORD = re.compile(r"[^\W_]+")


def _word_tokens(norm: str) -> set[str]:
    """Word unigrams and bigrams ('invoice', 'invoice_could'): far more selective than trigrams."""
    words = _WORD.findall(norm.lower())
    tokens = set(words)
    tokens.update(f"{a}_{b}" for a, b in zip(words, words[1:]))
    return tokens


def _index_keys(norm: str) -> tuple[set[str], set[str]]:
    return _grams(norm), _word_tokens(norm)


def _code_signature(seg: Segment) -> list[tuple[str, str]]:
    return [(c.kind.value, c.tag or c.display or "") for c in seg.codes]


def _fts_quote(gram: str) -> str:
    return '"' + gram.replace('"', '""') + '"'


def context_keys(context: UnitContext | dict | None) -> list[int]:
    """Fingerprints of a unit's context: its key (resname / msgctxt / x-context) and its neighbours."""
    if context is None:
        return []
    if isinstance(context, dict):
        get = context.get
    else:
        def get(name: str, _c=context):
            return getattr(_c, name, None)
    keys = []
    for name in ("resname", "msgctxt", "key", "x-context", "context"):
        value = get(name)
        if value:
            keys.append(_hash64("key", str(value)))
            break
    prev, nxt = get("previous_source"), get("next_source")
    if prev is None:
        prev = get("prev")
    if nxt is None:
        nxt = get("next")
    if prev or nxt:
        keys.append(_hash64("pn", normalize_text(str(prev or "")), normalize_text(str(nxt or ""))))
    return keys


# --------------------------------------------------------------------------------------------------------
# results


@dataclass
class Match:
    """A TM hit. ``score`` is 0-101 (101 context, 100 exact, below fuzzy); ``similarity`` is the raw character
    similarity before penalties; ``penalties`` maps a reason ('case', 'codes', 'numbers') to points taken off."""

    source: Segment
    target: Segment
    score: float
    kind: str  # 'context' | 'exact' | 'fuzzy'
    similarity: float
    penalties: dict[str, float]
    entry_id: int
    origin: str | None
    src_lang: str
    tgt_lang: str
    created: float
    updated: float

    @property
    def source_text(self) -> str:
        return self.source.text

    @property
    def target_text(self) -> str:
        return self.target.text

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source.text, "target": self.target.text, "score": self.score, "kind": self.kind,
                "similarity": round(self.similarity, 2), "penalties": self.penalties, "entry_id": self.entry_id,
                "origin": self.origin, "src_lang": self.src_lang, "tgt_lang": self.tgt_lang,
                "source_json": json.loads(segment_to_json(self.source)),
                "target_json": json.loads(segment_to_json(self.target)),
                "updated": self.updated}


@dataclass
class ImportStats:
    path: str
    format: str
    units: int = 0  # translation units read (TMX <tu>, document units)
    added: int = 0  # new entries
    updated: int = 0  # duplicates: existing entries whose timestamp/context were refreshed
    skipped: int = 0  # no usable source/target in the requested languages
    resumed_from: int = 0  # units skipped because an earlier, interrupted import had committed them
    pairs: dict[str, int] = field(default_factory=dict)  # "en-US>de-DE" -> entries added or updated
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.seconds else 0.0


@dataclass
class _Record:
    src_lang: str
    tgt_lang: str
    source: Segment
    target: Segment
    contexts: list[int]
    origin: str | None
    created: float
    updated: float

    def __post_init__(self) -> None:  # every write builds a record: no 'xx' or '../x' pair is ever stored
        check_lang(self.src_lang, "source language")
        check_lang(self.tgt_lang, "target language")


ProgressCallback = Callable[[int, "int | None"], None]  # (units done, total units or None)


# --------------------------------------------------------------------------------------------------------
# scoring: one implementation for every backend


def text_score(q: str, s: str, min_score: float, ignore_case: bool = False) -> tuple[float, float | None, dict]:
    """(similarity, score before code penalties or None when below min_score, penalties) of a stored source
    ``s`` for the query ``q`` (both whitespace-normalised)."""
    if q == s:
        return 100.0, 100.0, {}
    if q.casefold() == s.casefold():
        if ignore_case:
            return 100.0, 100.0, {}
        return 100.0, 100.0 - CASE_PENALTY, {"case": CASE_PENALTY}
    longest = max(len(q), len(s))
    # the best any number penalty could leave is the similarity itself; cut off just below min_score
    cutoff = int((1 - (min_score - 1) / 100) * longest) + 1
    dist = Levenshtein.distance(q, s, score_cutoff=cutoff)
    if dist > cutoff:
        return 0.0, None, {}
    sim = 100.0 * (1 - dist / longest)
    pens: dict[str, float] = {}
    score = min(sim, FUZZY_CAP)
    nq, ns = collections.Counter(_NUMBER.findall(q)), collections.Counter(_NUMBER.findall(s))
    if nq != ns:
        differing = max(sum((nq - ns).values()), sum((ns - nq).values()))
        pens["numbers"] = NUMBER_PENALTY * differing
        score -= pens["numbers"]
    return sim, score, pens


def rank_matches(rows: Iterable[tuple], by_source: dict[int, tuple[float, float, dict]], qseg: Segment | None,
                 ctx_keys: set[int], has_context: Callable[[int, set[int]], bool], limit: int,
                 min_score: float) -> list[Match]:
    """Matches from entry rows (see ``BaseTranslationMemory._entry_rows``) and their sources' text scores: code
    penalties, 101 % context, the fuzzy cap; best first (score, similarity, most recently updated, newest)."""
    matches: list[Match] = []
    for eid, sid, sj, tj, origin, created, updated, elang, slang in rows:
        sim, base, pens = by_source[sid]
        pens = dict(pens)
        source = segment_from_json(sj)
        score = base
        if qseg is not None:
            cp = _code_penalty(qseg, source)
            if cp:
                pens["codes"] = cp
                score -= cp
        if score >= 100:
            kind = "exact"
            if ctx_keys and has_context(eid, ctx_keys):
                kind, score = "context", 101.0
        else:
            kind = "fuzzy"
            score = min(score, FUZZY_CAP) if sim < 100 or pens else score
        score = max(0.0, round(score, 2))
        if score < min_score:
            continue
        matches.append(Match(source, segment_from_json(tj), score, kind, sim, pens, eid, origin, slang, elang,
                             created, updated))
    matches.sort(key=lambda m: (-m.score, -m.similarity, -m.updated, -m.entry_id))
    return matches[:limit]


# --------------------------------------------------------------------------------------------------------
# the memory

class BaseTranslationMemory:
    """What every TM backend shares: reading import files, language resolution, and the scoring and ranking of
    matches (``text_score``, ``code_penalty``), so SQLite and PostgreSQL give the same answers on the same data.

    A backend stores and retrieves: it implements the hooks below (transactions, batch writes, import
    book-keeping, candidate retrieval, entry rows). Retrieval only proposes candidates; every score is computed
    here, in Python, with rapidfuzz.
    """

    path: str
    ignore_case: bool
    fallback: bool
    _lock: threading.RLock
    _pairs_cache: list[tuple[str, str]] | None

    # ---------------------------------------------------------------- hooks a backend implements

    def _tx(self):
        """A context manager: one write transaction (and the backend's lock) around its body."""
        raise NotImplementedError

    def _write_batch(self, records: Sequence[_Record]) -> list[tuple[int, bool]]:
        """Store records inside the caller's transaction; (entry id, is new) per record, in order."""
        raise NotImplementedError

    def _start_import(self, path: Path, fingerprint: str, src: str | None, tgt: str | None,
                      resume: bool) -> tuple[int, int]:
        """(import id, units already committed by an interrupted import of the same file)."""
        raise NotImplementedError

    def _set_import_progress(self, import_id: int, units_done: int) -> None:
        """Record, inside the batch's own transaction, how many units of the import are committed."""
        raise NotImplementedError

    def _finish_import(self, import_id: int) -> None:
        raise NotImplementedError

    def pairs(self) -> list[tuple[str, str]]:
        """The (source language, target language) pairs stored."""
        raise NotImplementedError

    def _exact_candidates(self, qtext: str, srcs: list[str]) -> Iterable[tuple[int, str]]:
        """(source id, normalised text) of sources equal to the query up to case."""
        raise NotImplementedError

    def _gram_dfs(self, keys: list[str]) -> dict[str, int]:
        """Document frequency of index keys (character trigrams, and word tokens as ``"w " + token``)."""
        raise NotImplementedError

    def _most_shared(self, keys: list[str], limit: int) -> list[int]:
        """Ids of the ``limit`` sources sharing the most of ``keys``, most first."""
        raise NotImplementedError

    def _sources_in_window(self, ids: list[int], lo: int, hi: int, srcs: list[str]) -> list[tuple[int, str]]:
        """(id, normalised text) of those sources with a length in [lo, hi] and a language in ``srcs``."""
        raise NotImplementedError

    def _entry_rows(self, source_ids: list[int], tgts: list[str]) -> Iterable[tuple]:
        """(entry id, source id, source json, target json, origin, created, updated, target lang, source lang)."""
        raise NotImplementedError

    def _has_context(self, entry_id: int, keys: set[int]) -> bool:
        raise NotImplementedError

    def _pair_entry_rows(self, src: str, tgt: str) -> Iterable[tuple]:
        """(entry id, source json, target json, origin, created, updated) of one pair, oldest entry first."""
        raise NotImplementedError

    def _commonest_source_lang(self) -> str | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- context manager

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
    # ---------------------------------------------------------------- writing

    def add(self, source: str | Segment, target: str | Segment, src_lang: str, tgt_lang: str, *,
            context: UnitContext | dict | None = None, origin: str | None = "human",
            timestamp: float | None = None) -> int:
        """Write back one (approved) translation; returns the entry id. A duplicate refreshes the existing entry."""
        src, tgt = normalize_lang(src_lang), normalize_lang(tgt_lang)
        if not src or not tgt:
            raise TMError("add() needs a source and a target language")
        now = time.time() if timestamp is None else timestamp
        rec = _Record(src, tgt, _as_segment(source), _as_segment(target), context_keys(context), origin, now, now)
        if not normalize_text(rec.source.text) or rec.target.is_empty():
            raise TMError("add() needs a non-empty source and target")
        with self._tx():
            ids = self._write_batch([rec])
        self._pairs_cache = None
        return ids[0][0]

    def add_many(self, records: Iterable[tuple], src_lang: str, tgt_lang: str, *, origin: str | None = "human",
                 batch_size: int = 2000) -> tuple[int, int]:
        """Add (source, target[, context]) tuples in batched transactions; returns (added, updated)."""
        src, tgt = normalize_lang(src_lang), normalize_lang(tgt_lang)
        added = updated = 0
        batch: list[_Record] = []
        now = time.time()

        def flush():
            nonlocal added, updated
            with self._tx():
                for _, new in self._write_batch(batch):
                    added += new
                    updated += not new
            batch.clear()

        for item in records:
            s, t = item[0], item[1]
            ctx = item[2] if len(item) > 2 else None
            batch.append(_Record(src, tgt, _as_segment(s), _as_segment(t), context_keys(ctx), origin, now, now))
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        self._pairs_cache = None
        return added, updated
    # ---------------------------------------------------------------- import

    def import_file(self, path: str | Path, src_lang: str | None = None, tgt_lang: str | None = None, *,
                    origin: str | None = None, progress: ProgressCallback | None = None, batch_size: int = 2000,
                    resume: bool = True) -> ImportStats:
        """Import a TMX (streamed) or a bilingual XLIFF / SDLXLIFF / MQXLIFF / PO file (units with a target).

        ``src_lang``/``tgt_lang`` pick (or, for files without languages, supply) the pair; for a TMX without
        ``tgt_lang`` every non-source language becomes a target. Each batch of ``batch_size`` units is one
        transaction; an import of the same unchanged file that was interrupted resumes after the last
        committed batch (``resume=False`` reads it from the start; duplicates are merged either way).
        """
        from tower_cat import formats

        path = Path(path)
        if not path.is_file():
            raise TMError("no such file", path=path)
        fmt = formats.detect(path)
        src = normalize_lang(src_lang)
        tgt = normalize_lang(tgt_lang)
        stats = ImportStats(path=str(path), format=fmt)
        t0 = time.time()
        if fmt == "tmx":
            total = _count_tus(path)
            records = self._tmx_records(path, src, tgt, origin or "tmx", stats)
        else:
            doc = formats.load(path)
            total = len(doc.units)
            records = self._document_records(doc, src, tgt, origin or fmt, stats)
        fingerprint = _fingerprint(path)
        import_id, done = self._start_import(path, fingerprint, src, tgt, resume)
        stats.resumed_from = done
        try:
            self._run_import(records, import_id, done, batch_size, stats, progress, total)
        except BaseException:
            stats.seconds = time.time() - t0
            raise
        self._finish_import(import_id)
        self._pairs_cache = None
        stats.seconds = time.time() - t0
        return stats
    def _run_import(self, records: Iterator[tuple[int, list[_Record]]], import_id: int, done: int,
                    batch_size: int, stats: ImportStats, progress: ProgressCallback | None,
                    total: int | None) -> None:
        batch: list[_Record] = []
        batch_units = 0
        units_seen = 0

        def flush(upto: int) -> None:
            nonlocal batch_units
            with self._tx():
                for (entry_id, new), rec in zip(self._write_batch(batch), batch):
                    if new:
                        stats.added += 1
                    else:
                        stats.updated += 1
                    key = f"{rec.src_lang}>{rec.tgt_lang}"
                    stats.pairs[key] = stats.pairs.get(key, 0) + 1
                self._set_import_progress(import_id, upto)
            batch.clear()
            batch_units = 0

        for index, recs in records:
            units_seen = index + 1
            if index < done:
                if progress and index % 5000 == 0:
                    progress(units_seen, total)
                continue
            stats.units += 1
            batch.extend(recs)
            batch_units += 1
            if batch_units >= batch_size:
                flush(units_seen)
                if progress:
                    progress(units_seen, total)
        if batch or units_seen > done:
            flush(units_seen)
        if progress:
            progress(units_seen, total)

    def _tmx_records(self, path: Path, src: str | None, tgt: str | None, origin: str,
                     stats: ImportStats) -> Iterator[tuple[int, list[_Record]]]:
        from tower_cat.formats import tmx

        for n, tu in enumerate(tmx.iter_tmx(path)):
            variants = {normalize_lang(lang): seg for lang, seg in tu.variants.items() if lang}
            tu_src = normalize_lang(getattr(tu, "srclang", None))
            if src:
                src_key = next((k for k in variants if lang_matches(src, k, self.fallback)), None)
            elif tu_src and tu_src.lower() != "*all*":
                # srclang as declared; else the same language in another region (a header saying en-GB over
                # en-US tuvs, as Trados exports do); else the first tuv, as the TMX reader does
                src_key = tu_src if tu_src in variants else next(
                    (k for k in variants if lang_matches(tu_src, k, True)), None) or next(
                    (k for k in variants if lang_base(k) == lang_base(tu_src)), None) or next(iter(variants), None)
            else:
                src_key = next(iter(variants), None)
            recs: list[_Record] = []
            if src_key is not None and normalize_text(variants[src_key].text):
                created, updated = _tu_dates(tu)
                ctx = _tu_context(tu)
                for lang, seg in variants.items():
                    if lang == src_key or seg.is_empty():
                        continue
                    if tgt and not lang_matches(tgt, lang, self.fallback):
                        continue
                    recs.append(_Record(src or src_key, tgt or lang, variants[src_key], seg, ctx, origin,
                                        created, updated))
            if not recs:
                stats.skipped += 1
            yield getattr(tu, "index", n), recs

    def _document_records(self, doc, src: str | None, tgt: str | None, origin: str,
                          stats: ImportStats) -> Iterator[tuple[int, list[_Record]]]:
        # gettext msgids are English unless the file says otherwise
        src = src or normalize_lang(doc.source_lang) or ("en" if doc.format == "po" else None)
        tgt = tgt or normalize_lang(doc.target_lang)
        if not src or not tgt:
            raise TMError(f"the {doc.format} file does not say its languages", path=doc.path,
                          hint="pass src_lang and tgt_lang", param="tm_languages")
        now = time.time()
        for n, unit in enumerate(doc.units):
            recs = []
            if unit.has_target and normalize_text(unit.source.text) and not _is_fuzzy(unit):
                ctx = context_keys(unit.context)
                recs.append(_Record(src, tgt, unit.source, unit.target, ctx, unit.origin or origin, now, now))
            else:
                stats.skipped += 1
            yield n, recs
    # ---------------------------------------------------------------- reading

    def _langs_for(self, src: str, tgt: str) -> tuple[list[str], list[str]]:
        srcs, tgts = set(), set()
        for s, t in self.pairs():
            if lang_matches(src, s, self.fallback) and lang_matches(tgt, t, self.fallback):
                srcs.add(s)
                tgts.add(t)
        return sorted(srcs), sorted(tgts)

    def lookup(self, query: str | Segment | Unit, src_lang: str, tgt_lang: str, *,
               context: UnitContext | dict | None = None, limit: int = 5, min_score: float = 70.0,
               fuzzy: bool = True) -> list[Match]:
        """Best matches for a source text, Segment or Unit (a Unit brings its own context), best first."""
        with self._lock:
            return self._lookup(query, src_lang, tgt_lang, context, limit, min_score, fuzzy)
    def _lookup(self, query, src_lang, tgt_lang, context, limit, min_score, fuzzy) -> list[Match]:
        if isinstance(query, Unit):
            if context is None:
                context = query.context
            query = query.source
        qseg = query if isinstance(query, Segment) else None
        qtext = normalize_text(query.text if isinstance(query, Segment) else str(query))
        src, tgt = normalize_lang(src_lang), normalize_lang(tgt_lang)
        if not qtext or not src or not tgt:
            return []
        srcs, tgts = self._langs_for(src, tgt)
        if not srcs:
            return []
        cands: dict[int, str] = dict(self._exact_candidates(qtext, srcs))
        if fuzzy and min_score < 100:
            for sid, norm in self._fuzzy_candidates(qtext, srcs, min_score):
                cands.setdefault(sid, norm)
        if not cands:
            return []
        by_source: dict[int, tuple[float, float, dict]] = {}
        for sid, norm in cands.items():
            sim, base, pens = text_score(qtext, norm, min_score, self.ignore_case)
            if base is not None:
                by_source[sid] = (sim, base, pens)
        if not by_source:
            return []
        return rank_matches(self._entry_rows(list(by_source), tgts), by_source, qseg, set(context_keys(context)),
                            self._has_context, limit, min_score)

    def _fuzzy_candidates(self, qtext: str, srcs: list[str], min_score: float) -> list[tuple[int, str]]:
        """Candidate sources for fuzzy scoring, without scanning: the sources sharing most of the query's rarest
        word tokens, plus those sharing most of its rarest character trigrams (typos, short texts)."""
        grams, words = _index_keys(qtext)
        keys = list(grams) + ["w " + w for w in words]
        df = self._gram_dfs(keys)
        routes = (([f"w {w}" for w in words], WORD_BUDGET), (list(grams), TRIGRAM_BUDGET))
        ratio = max(min_score, 1.0) / 100.0
        lo, hi = int(len(qtext) * ratio), int(len(qtext) / ratio) + 1
        seen: set[int] = set()
        out: list[tuple[int, str]] = []
        for route_keys, budget in routes:
            present = sorted((k for k in route_keys if df.get(k)), key=lambda k: (df[k], k))
            chosen: list[str] = []
            used = 0
            for n, key in enumerate(present):
                d = df[key]
                if n >= MAX_TOKENS or (used + d > budget and n >= 2):
                    break
                used += d
                chosen.append(key)
            if not chosen:
                continue
            top = [sid for sid in self._most_shared(chosen, CANDIDATES * 3) if sid not in seen]
            found = self._sources_in_window(top, lo, hi, srcs)
            order = {sid: n for n, sid in enumerate(top)}
            found.sort(key=lambda r: order[r[0]])
            for row in found[:CANDIDATES]:
                seen.add(row[0])
                out.append(row)
        return out

    # ---------------------------------------------------------------- export

    def iter_entries(self, src_lang: str | None = None, tgt_lang: str | None = None
                     ) -> Iterator[tuple[str, str, Segment, Segment, dict]]:
        """(src_lang, tgt_lang, source, target, info) for every entry of the pair (all pairs when None)."""
        src, tgt = normalize_lang(src_lang), normalize_lang(tgt_lang)
        pairs = [(s, t) for s, t in self.pairs()
                 if (not src or lang_matches(src, s, self.fallback)) and
                 (not tgt or lang_matches(tgt, t, self.fallback))]
        for s, t in pairs:
            for eid, sj, tj, origin, created, updated in self._pair_entry_rows(s, t):
                yield s, t, segment_from_json(sj), segment_from_json(tj), {
                    "id": eid, "origin": origin, "created": created, "updated": updated}
    def export_tmx(self, path: str | Path, src_lang: str | None = None, tgt_lang: str | None = None) -> int:
        """Write the entries of a pair (or all) as TMX 1.4 (one bilingual <tu> per entry); returns the count."""
        from tower_cat.formats import tmx

        src = normalize_lang(src_lang)
        header_src = src
        if not header_src:  # the commonest source language names the file; each <tu> carries its own srclang
            header_src = self._commonest_source_lang() or "en"
        count = 0

        def units():
            nonlocal count
            for n, (s, t, source, target, info) in enumerate(self.iter_entries(src, tgt_lang)):  # noqa: B007
                count += 1
                yield _make_tmx_unit(tmx, n, s, t, source, target, info)

        tmx.write_tmx(Path(path), units(), header_src)
        return count


LOCK_TIMEOUT = 10.0  # seconds a write waits for another process's write lock


def sqlite_error(exc: sqlite3.Error, path: str) -> TMError:
    """A one-line TMError naming the database for an SQLite failure (locked, not a database, read-only, full)."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return TMError(f"the translation memory is locked by another process (waited {LOCK_TIMEOUT:g} s)", path=path,
                       hint="try again when the other import or server has finished writing")
    if "not a database" in text or "malformed" in text:
        return TMError(f"this is not a tower-cat translation memory ({text})", path=path)
    if "readonly" in text or "read-only" in text:
        return TMError("the translation memory cannot be written (read-only)", path=path)
    return TMError(f"the translation memory cannot be used: {text}", path=path)


class TranslationMemory(BaseTranslationMemory):
    """A translation memory stored in one SQLite file (``":memory:"`` for a throw-away one).

    ``ignore_case``: exact matches ignore letter case (otherwise a case-only difference costs 1 point).
    ``fallback``: region -> language fallback for language codes (see the module docstring).
    ``index``: ``"auto"`` (FTS5 trigram when available), ``"fts5"`` or ``"ngram"``; fixed when the database
    is created.
    """

    def __init__(self, path: str | Path, *, ignore_case: bool = False, fallback: bool = True,
                 index: str = "auto", readonly: bool = False):
        self.path = str(path)
        self.ignore_case = ignore_case
        self.fallback = fallback
        uri = f"file:{Path(self.path).resolve()}?mode=ro" if readonly and self.path != ":memory:" else None
        try:
            if uri:
                self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise TMError(f"cannot open the translation memory: {exc}", path=self.path) from None
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(LOCK_TIMEOUT * 1000)}")
            if not readonly:
                if self.path != ":memory:":
                    self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA cache_size = -65536")
            # one connection shared by threads (a server): statements of one call never interleave with another's
            self._lock = threading.RLock()
            self.index = self._setup(index, readonly)
        except sqlite3.Error as exc:
            self.db.close()
            raise sqlite_error(exc, self.path) from None
        self._pairs_cache: list[tuple[str, str]] | None = None

    # ---------------------------------------------------------------- schema

    @staticmethod
    def fts5_trigram_available() -> bool:
        if sqlite3.sqlite_version_info < (3, 34, 0):
            return False
        try:
            con = sqlite3.connect(":memory:")
            con.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='trigram')")
            con.close()
            return True
        except sqlite3.Error:
            return False

    def _setup(self, index: str, readonly: bool) -> str:
        row = None
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'index'").fetchone()
        except sqlite3.OperationalError:
            pass
        except sqlite3.DatabaseError as exc:
            raise TMError(f"not a tower-cat translation memory ({exc})", path=self.path) from None
        if row:
            return row[0]
        if readonly:
            raise TMError("not a tower-cat translation memory (no meta table)", path=self.path)
        if index == "auto":
            index = "fts5" if self.fts5_trigram_available() else "ngram"
        if index == "fts5" and not self.fts5_trigram_available():
            raise TMError(f"SQLite {sqlite3.sqlite_version} has no FTS5 trigram tokenizer (needs 3.34+)",
                          path=self.path, hint="use index='ngram'")
        if index not in ("fts5", "ngram"):
            raise InvalidArgument(f"unknown index {index!r}; expected 'auto', 'fts5' or 'ngram'")
        if index == "fts5":
            index_sql = ("CREATE VIRTUAL TABLE IF NOT EXISTS sources_fts USING "
                         "fts5(norm, tokenize='trigram', content='', detail='none');"
                         "CREATE VIRTUAL TABLE IF NOT EXISTS sources_words USING "
                         "fts5(tokens, tokenize=\"unicode61 remove_diacritics 0 tokenchars '_'\", content='', "
                         "detail='none');")
        else:
            index_sql = ("CREATE TABLE IF NOT EXISTS postings (gram TEXT NOT NULL, source_id INTEGER NOT NULL, "
                         "PRIMARY KEY (gram, source_id)) WITHOUT ROWID;")
        if True:  # one script = one transaction: a database is created completely or not at all
            self.db.executescript(f"""
                BEGIN IMMEDIATE;
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS sources (
                    id INTEGER PRIMARY KEY,
                    lang TEXT NOT NULL,
                    norm TEXT NOT NULL,
                    fold INTEGER NOT NULL,
                    len INTEGER NOT NULL,
                    UNIQUE (lang, norm)
                );
                CREATE INDEX IF NOT EXISTS sources_fold ON sources (fold);
                CREATE TABLE IF NOT EXISTS entries (
                    id INTEGER PRIMARY KEY,
                    source_id INTEGER NOT NULL REFERENCES sources (id),
                    tgt_lang TEXT NOT NULL,
                    dedup INTEGER NOT NULL,
                    source_json TEXT NOT NULL,
                    target_json TEXT NOT NULL,
                    target_text TEXT NOT NULL,
                    origin TEXT,
                    created REAL NOT NULL,
                    updated REAL NOT NULL,
                    UNIQUE (source_id, tgt_lang, dedup)
                );
                CREATE TABLE IF NOT EXISTS contexts (
                    entry_id INTEGER NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
                    ctx INTEGER NOT NULL,
                    PRIMARY KEY (entry_id, ctx)
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS pairs (
                    src_lang TEXT NOT NULL, tgt_lang TEXT NOT NULL, PRIMARY KEY (src_lang, tgt_lang)
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS grams (gram TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS imports (
                    id INTEGER PRIMARY KEY,
                    path TEXT NOT NULL,
                    fingerprint TEXT NOT NULL,
                    src_lang TEXT, tgt_lang TEXT,
                    units_done INTEGER NOT NULL DEFAULT 0,
                    status TEXT NOT NULL,
                    started REAL NOT NULL,
                    finished REAL
                );
                INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA_VERSION}');
                INSERT OR IGNORE INTO meta VALUES ('index', '{index}');
                {index_sql}
                COMMIT;
            """)
        return self.db.execute("SELECT value FROM meta WHERE key = 'index'").fetchone()[0]

    class _Tx:
        def __init__(self, db: sqlite3.Connection, lock: threading.RLock, path: str):
            self.db, self.lock, self.path = db, lock, path

        def __enter__(self):
            self.lock.acquire()
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                self.lock.release()
                raise sqlite_error(exc, self.path) from None
            except BaseException:
                self.lock.release()
                raise
            return self.db

        def __exit__(self, exc_type, exc, tb):
            try:
                self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            except sqlite3.Error as err:
                if exc_type is None:
                    raise sqlite_error(err, self.path) from None
            finally:
                self.lock.release()
            return False

    def _tx(self) -> "_Tx":
        return self._Tx(self.db, self._lock, self.path)

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
            self.db.close()
            self.db = None  # type: ignore[assignment]

    # ---------------------------------------------------------------- writing

    def _write_batch(self, records: Sequence[_Record]) -> list[tuple[int, bool]]:
        """Insert records inside the caller's transaction. Returns (entry id, is_new) per record."""
        db = self.db
        out: list[tuple[int, bool]] = []
        new_grams: collections.Counter[str] = collections.Counter()
        fts_rows: list[tuple[int, str]] = []
        word_rows: list[tuple[int, str]] = []
        posting_rows: list[tuple[str, int]] = []
        pairs: set[tuple[str, str]] = set()
        for r in records:
            norm = normalize_text(r.source.text)
            row = db.execute("SELECT id FROM sources WHERE lang = ? AND norm = ?", (r.src_lang, norm)).fetchone()
            if row:
                source_id = row[0]
            else:
                source_id = db.execute("INSERT INTO sources (lang, norm, fold, len) VALUES (?, ?, ?, ?)",
                                       (r.src_lang, norm, _fold_hash(norm), len(norm))).lastrowid
                grams, words = _index_keys(norm)
                new_grams.update(grams)
                new_grams.update("w " + w for w in words)
                if self.index == "fts5":
                    fts_rows.append((source_id, norm))
                    word_rows.append((source_id, " ".join(words)))
                else:
                    posting_rows.extend((g, source_id) for g in grams)
                    posting_rows.extend(("w " + w, source_id) for w in words)
            sj, tj = segment_to_json(r.source), segment_to_json(r.target)
            dedup = _hash64(normalize_text(sj), normalize_text(tj))
            row = db.execute("SELECT id, updated FROM entries WHERE source_id = ? AND tgt_lang = ? AND dedup = ?",
                             (source_id, r.tgt_lang, dedup)).fetchone()
            if row:
                entry_id, is_new = row[0], False
                if r.updated > row[1]:
                    db.execute("UPDATE entries SET updated = ?, origin = coalesce(?, origin) WHERE id = ?",
                               (r.updated, r.origin, entry_id))
            else:
                entry_id = db.execute(
                    "INSERT INTO entries (source_id, tgt_lang, dedup, source_json, target_json, target_text, origin,"
                    " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (source_id, r.tgt_lang, dedup, sj, tj, r.target.text, r.origin, r.created,
                     max(r.created, r.updated))).lastrowid
                is_new = True
            if r.contexts:
                db.executemany("INSERT OR IGNORE INTO contexts (entry_id, ctx) VALUES (?, ?)",
                               [(entry_id, c) for c in r.contexts])
            pairs.add((r.src_lang, r.tgt_lang))
            out.append((entry_id, is_new))
        if fts_rows:
            db.executemany("INSERT INTO sources_fts (rowid, norm) VALUES (?, ?)", fts_rows)
            db.executemany("INSERT INTO sources_words (rowid, tokens) VALUES (?, ?)", word_rows)
        if posting_rows:
            db.executemany("INSERT OR IGNORE INTO postings (gram, source_id) VALUES (?, ?)", posting_rows)
        if new_grams:
            db.executemany("INSERT INTO grams (gram, df) VALUES (?, ?) ON CONFLICT (gram) DO UPDATE SET "
                           "df = df + excluded.df", new_grams.items())
        if pairs:
            db.executemany("INSERT OR IGNORE INTO pairs VALUES (?, ?)", pairs)
        return out
    def delete(self, entry_id: int) -> bool:
        """Remove one entry (its source stays indexed while other entries use it)."""
        with self._tx():
            row = self.db.execute("SELECT source_id FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if not row:
                return False
            self.db.execute("DELETE FROM contexts WHERE entry_id = ?", (entry_id,))
            self.db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
            source_id = row[0]
            if not self.db.execute("SELECT 1 FROM entries WHERE source_id = ? LIMIT 1", (source_id,)).fetchone():
                norm = self.db.execute("SELECT norm FROM sources WHERE id = ?", (source_id,)).fetchone()[0]
                grams, words = _index_keys(norm)
                if self.index == "fts5":
                    self.db.execute("INSERT INTO sources_fts (sources_fts, rowid, norm) VALUES ('delete', ?, ?)",
                                    (source_id, norm))
                    self.db.execute("INSERT INTO sources_words (sources_words, rowid, tokens) VALUES ('delete', ?, ?)",
                                    (source_id, " ".join(words)))
                else:
                    self.db.execute("DELETE FROM postings WHERE source_id = ?", (source_id,))
                keys = [(g,) for g in grams] + [("w " + w,) for w in words]
                self.db.executemany("UPDATE grams SET df = df - 1 WHERE gram = ?", keys)
                self.db.execute("DELETE FROM sources WHERE id = ?", (source_id,))
        self._pairs_cache = None
        return True
    # ---------------------------------------------------------------- import book-keeping

    def _start_import(self, path: Path, fingerprint: str, src: str | None, tgt: str | None,
                      resume: bool) -> tuple[int, int]:
        with self._tx():
            row = self.db.execute(
                "SELECT id, units_done FROM imports WHERE fingerprint = ? AND coalesce(src_lang, '') = ? AND "
                "coalesce(tgt_lang, '') = ? AND status = 'running' ORDER BY id DESC LIMIT 1",
                (fingerprint, src or "", tgt or "")).fetchone()
            if row and resume:
                return row[0], row[1]
            if row:
                self.db.execute("UPDATE imports SET status = 'abandoned' WHERE id = ?", (row[0],))
            cur = self.db.execute("INSERT INTO imports (path, fingerprint, src_lang, tgt_lang, status, started) "
                                  "VALUES (?, ?, ?, ?, 'running', ?)",
                                  (str(path.resolve()), fingerprint, src, tgt, time.time()))
            return cur.lastrowid, 0
    def _set_import_progress(self, import_id: int, units_done: int) -> None:
        self.db.execute("UPDATE imports SET units_done = ? WHERE id = ?", (units_done, import_id))

    def _finish_import(self, import_id: int) -> None:
        with self._tx():
            self.db.execute("UPDATE imports SET status = 'done', finished = ? WHERE id = ?", (time.time(), import_id))

    # ---------------------------------------------------------------- reading

    def pairs(self) -> list[tuple[str, str]]:
        if self._pairs_cache is None:
            self._pairs_cache = [tuple(r) for r in self.db.execute("SELECT src_lang, tgt_lang FROM pairs")]
        return self._pairs_cache
    def _exact_candidates(self, qtext: str, srcs: list[str]) -> Iterable[tuple[int, str]]:
        ph = ",".join("?" * len(srcs))
        return self.db.execute(f"SELECT id, norm FROM sources WHERE fold = ? AND lang IN ({ph})",
                               (_fold_hash(qtext), *srcs)).fetchall()

    def _entry_rows(self, source_ids: list[int], tgts: list[str]) -> Iterable[tuple]:
        tph = ",".join("?" * len(tgts))
        sph = ",".join("?" * len(source_ids))
        return self.db.execute(
            f"SELECT e.id, e.source_id, e.source_json, e.target_json, e.origin, e.created, e.updated, e.tgt_lang,"
            f" s.lang FROM entries e JOIN sources s ON s.id = e.source_id"
            f" WHERE e.source_id IN ({sph}) AND e.tgt_lang IN ({tph})", (*source_ids, *tgts)).fetchall()

    def _has_context(self, entry_id: int, keys: set[int]) -> bool:
        ph = ",".join("?" * len(keys))
        return self.db.execute(f"SELECT 1 FROM contexts WHERE entry_id = ? AND ctx IN ({ph}) LIMIT 1",
                               (entry_id, *keys)).fetchone() is not None
    def _gram_dfs(self, keys: list[str]) -> dict[str, int]:
        df: dict[str, int] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            ph = ",".join("?" * len(chunk))
            df.update(self.db.execute(f"SELECT gram, df FROM grams WHERE gram IN ({ph})", chunk).fetchall())
        return df

    def _most_shared(self, keys: list[str], limit: int) -> list[int]:
        counts: collections.Counter[int] = collections.Counter()
        for key in keys:
            counts.update(self._postings(key))
        return [sid for sid, _ in counts.most_common(limit)]

    def _sources_in_window(self, ids: list[int], lo: int, hi: int, srcs: list[str]) -> list[tuple[int, str]]:
        lph = ",".join("?" * len(srcs))
        found: list[tuple[int, str]] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            ph = ",".join("?" * len(chunk))
            # unary + keeps the planner on the primary key (not the (lang, norm) index)
            found.extend(self.db.execute(
                f"SELECT id, norm FROM sources WHERE id IN ({ph}) AND len BETWEEN ? AND ? AND +lang IN ({lph})",
                (*chunk, lo, hi, *srcs)).fetchall())
        return found

    def _postings(self, key: str) -> list[int]:
        if self.index == "fts5":
            if key.startswith("w "):
                sql = "SELECT rowid FROM sources_words WHERE sources_words MATCH ?"
                arg = _fts_quote(key[2:])
            else:
                sql, arg = "SELECT rowid FROM sources_fts WHERE sources_fts MATCH ?", _fts_quote(key)
        else:
            sql, arg = "SELECT source_id FROM postings WHERE gram = ?", key
        return [r for (r,) in self.db.execute(sql, (arg,))]

    def _pair_entry_rows(self, src: str, tgt: str) -> Iterator[tuple]:
        cur = self.db.execute(
            "SELECT e.id, e.source_json, e.target_json, e.origin, e.created, e.updated FROM entries e "
            "JOIN sources so ON so.id = e.source_id WHERE so.lang = ? AND e.tgt_lang = ? ORDER BY e.id", (src, tgt))
        while True:
            rows = cur.fetchmany(1000)
            if not rows:
                break
            yield from rows

    def _commonest_source_lang(self) -> str | None:
        row = self.db.execute("SELECT s.lang FROM entries e JOIN sources s ON s.id = e.source_id GROUP BY s.lang "
                              "ORDER BY count(*) DESC LIMIT 1").fetchone()
        return row[0] if row else None

    # ---------------------------------------------------------------- stats

    def stats(self) -> dict[str, Any]:
        db = self.db
        pairs = {f"{s}>{t}": n for s, t, n in db.execute(
            "SELECT s.lang, e.tgt_lang, count(*) FROM entries e JOIN sources s ON s.id = e.source_id "
            "GROUP BY s.lang, e.tgt_lang ORDER BY 1, 2")}
        return {
            "path": self.path,
            "entries": db.execute("SELECT count(*) FROM entries").fetchone()[0],
            "sources": db.execute("SELECT count(*) FROM sources").fetchone()[0],
            "pairs": pairs,
            "index": self.index,
            "sqlite": sqlite3.sqlite_version,
            "imports": [dict(zip(("path", "units", "status"), r)) for r in db.execute(
                "SELECT path, units_done, status FROM imports ORDER BY id")],
        }

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def __len__(self) -> int:
        return self.db.execute("SELECT count(*) FROM entries").fetchone()[0]


# --------------------------------------------------------------------------------------------------------
# helpers


def _code_penalty(query: Segment, source: Segment) -> float:
    a, b = _code_signature(query), _code_signature(source)
    if a == b:
        return 0.0
    ca, cb = collections.Counter(a), collections.Counter(b)
    differing = sum((ca - cb).values()) + sum((cb - ca).values())
    if differing:
        return CODE_PENALTY * differing
    return CODE_ORDER_PENALTY  # same codes, different order


def _is_fuzzy(unit: Unit) -> bool:
    state = (unit.state or "").lower()
    return state == "fuzzy" or bool(unit.meta.get("fuzzy"))


def _count_tus(path: Path) -> int | None:
    """A quick count of <tu> elements for the progress bar (None for UTF-16 files or on any doubt)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head:
                return None
            fh.seek(0)
            count, tail = 0, b""
            pattern = re.compile(rb"<tu[\s>]")
            while True:
                chunk = fh.read(1 << 22)
                if not chunk:
                    break
                buf = tail + chunk  # a match needs 4 bytes, so one lying in the 3-byte tail was not counted
                count += sum(1 for _ in pattern.finditer(buf))
                tail = buf[-3:]
            return count
    except OSError:
        return None


def _fingerprint(path: Path) -> str:
    st = path.stat()
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 16))
        if st.st_size > 1 << 17:
            fh.seek(-(1 << 16), os.SEEK_END)
            h.update(fh.read())
    return f"{st.st_size}:{h.hexdigest()}"


_TMX_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")


@functools.lru_cache(maxsize=4096)
def _parse_tmx_date(value: str | None) -> float | None:
    if not value:
        return None
    m = _TMX_DATE.match(value.strip())
    if not m:
        return None
    import calendar

    y, mo, d, h, mi, s = (int(x) for x in m.groups())
    try:
        return float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


def _tu_attr(tu: Any, name: str) -> str | None:
    value = getattr(tu, name, None)
    if value is None:
        attrs = getattr(tu, "attrs", None) or getattr(tu, "attributes", None)
        if isinstance(attrs, dict):
            value = attrs.get(name)
    return value


def _tu_dates(tu: Any) -> tuple[float, float]:
    created = _parse_tmx_date(_tu_attr(tu, "creationdate"))
    changed = _parse_tmx_date(_tu_attr(tu, "changedate"))
    now = time.time()
    created = created or changed or now
    return created, max(created, changed or created)


def _tu_props(tu: Any) -> list[tuple[str, str]]:
    props = getattr(tu, "props", None) or []
    if isinstance(props, dict):
        items = []
        for k, v in props.items():
            if isinstance(v, (list, tuple)):
                items.extend((k, x) for x in v)
            else:
                items.append((k, v))
        return items
    out = []
    for p in props:
        if isinstance(p, (list, tuple)) and len(p) >= 2:
            out.append((p[0], p[1]))
        elif hasattr(p, "type"):
            out.append((p.type, getattr(p, "value", getattr(p, "text", ""))))
    return out


def _tu_context(tu: Any) -> list[int]:
    for key, value in _tu_props(tu):
        if key and key.lower() in ("x-context", "x-resname", "x-msgctxt") and value:
            return [_hash64("key", str(value))]
    return []


def _make_tmx_unit(tmx: Any, n: int, src: str, tgt: str, source: Segment, target: Segment, info: dict) -> Any:
    attrs = {"creationdate": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(info["created"]))}
    if info["updated"] > info["created"]:
        attrs["changedate"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(info["updated"]))
    props = [("x-tower-cat-origin", info["origin"])] if info.get("origin") else []
    return tmx.TmxUnit(index=n, line=None, tuid=str(info["id"]), variants={src: source, tgt: target}, srclang=src,
                       props=props, attrs=attrs)


# --------------------------------------------------------------------------------------------------------
# opening a TM from what a user typed: a database, a TMX, or a PostgreSQL URL

TM_URL_ENV = "TOWER_CAT_TM_URL"
"""Environment variable naming the TM (a ``postgresql://`` URL or a database path) when no ``--tm`` is given."""

SQLITE_HEADER = b"SQLite format 3\x00"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(spec: str | Path | None) -> bool:
    return isinstance(spec, str) and spec.lower().startswith(POSTGRES_SCHEMES)


def translation_memory_spec(spec: str | Path | None) -> str | Path | None:
    """The TM a command should use: ``spec`` when given, else ``$TOWER_CAT_TM_URL`` (None when neither)."""
    if spec is not None and str(spec) != "":
        return spec
    return os.environ.get(TM_URL_ENV, "").strip() or None


def is_tm_database(spec: str | Path) -> bool:
    """True for a ``postgresql://`` URL or an existing SQLite file (a tower-cat TM database, not a TMX)."""
    if is_postgres_url(spec):
        return True
    path = Path(spec)
    return path.is_file() and path.stat().st_size > 0 and _is_sqlite_file(path)


def _is_sqlite_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise TMError(f"cannot read the translation memory: {exc.strerror or exc}", path=path) from None
    # SQLite itself treats an empty file as an empty database
    return head == SQLITE_HEADER or head == b""


def open_translation_memory(spec: str | Path | None = None, *, readonly: bool = False, ignore_case: bool = False,
                            fallback: bool = True,
                            on_import: Callable[[ImportStats], None] | None = None) -> "TranslationMemory | None":
    """Open the TM a user named, whatever kind it is; the one place the CLI, the server and refine open TMs.

    ``spec`` (or, when it is None, ``$TOWER_CAT_TM_URL``) is one of:

    * a ``postgresql://`` URL: the team TM on PostgreSQL (``tower_cat.tm_postgres``);
    * a tower-cat TM database (SQLite; recognised by its header, not its name). A path that does not exist yet
      becomes a new database unless ``readonly``;
    * a TMX file: imported into a throw-away in-memory TM (``on_import`` receives the import statistics). Only
      for reading: a command that writes to its TM (``readonly=False``) refuses a TMX, since what it writes would
      be lost — ``tower-cat tm import`` makes a database of it;
    * ``":memory:"``: an empty throw-away TM.

    Returns None when ``spec`` is None and the environment variable is not set.
    """
    spec = translation_memory_spec(spec)
    if spec is None:
        return None
    if is_postgres_url(spec):
        try:
            from tower_cat.tm_postgres import PostgresTranslationMemory
        except ImportError as exc:
            raise TMError(f"a PostgreSQL TM needs the postgres extra ({exc})", path=_redact_url(str(spec)),
                          hint="pip install 'tower-cat[postgres]'") from None
        return PostgresTranslationMemory(str(spec), ignore_case=ignore_case, fallback=fallback, readonly=readonly)
    if str(spec) == ":memory:":
        return TranslationMemory(":memory:", ignore_case=ignore_case, fallback=fallback)
    path = Path(spec)
    if path.is_dir():
        raise TMError("is a folder, not a translation memory", path=path,
                      hint="give a TM database, a TMX file or a postgresql:// URL")
    if not path.exists():
        if readonly:
            raise TMError("no such translation memory", path=path,
                          hint="give a TM database (`tower-cat tm import` makes one), a TMX file or a "
                               "postgresql:// URL")
        return TranslationMemory(path, ignore_case=ignore_case, fallback=fallback)
    if _is_sqlite_file(path):
        return TranslationMemory(path, ignore_case=ignore_case, fallback=fallback, readonly=readonly)
    from tower_cat import formats
    from tower_cat.errors import FormatError

    try:
        fmt = formats.detect(path)
    except FormatError:
        fmt = None
    if fmt != "tmx":
        raise TMError("neither a tower-cat TM database (SQLite) nor a TMX file", path=path,
                      hint="give a TM database, a TMX file or a postgresql:// URL")
    if not readonly:
        raise TMError("a TMX file cannot be written to", path=path,
                      hint=f"make a TM database of it first: tower-cat tm import {path} --db tm.sqlite")
    memory = TranslationMemory(":memory:", ignore_case=ignore_case, fallback=fallback)
    try:
        stats = memory.import_file(path)
    except BaseException:
        memory.close()
        raise
    if on_import is not None:
        on_import(stats)
    return memory


def _redact_url(url: str) -> str:
    """A URL fit for messages and logs: the password replaced by ``***``."""
    return re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1:***@", url)
