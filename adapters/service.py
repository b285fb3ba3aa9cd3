"""The server's core, shared by every protocol: one engine owned by one worker thread, requests coalesced into
engine batches, translation with inline codes, TM few-shot examples, glossaries, usage counts.

Concurrency
    CTranslate2's ``generate_batch`` blocks, so the engine never runs on the event loop. One worker thread owns
    it. A request hands its prompts to :class:`Batcher` and awaits a future; the worker takes the first job off
    the queue, keeps collecting for a short window (``batch_window``, 15 ms by default, or until
    ``max_batch_prompts``), and sends everything with the same decoding options to **one**
    ``Engine.generate`` call — which deduplicates identical prompts and cuts length-sorted batches itself.
    The queue is bounded in prompts (``max_pending``): past it a request is refused at once
    (:class:`Overloaded`; HTTP 429/503), so memory stays bounded under any load.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tower_cat.document import Segment
from tower_cat.errors import ServiceError, TowerCatError  # noqa: F401  (ServiceError: importable from here)

from .catalog import Catalog, LanguageError
from .langdetect import Detection, LanguageDetector
from .state import (Caller, Dictionary, GlossaryStore, KeyUsage, ServerState, StoredGlossary,  # noqa: F401
                    TenantMemories, UsageCounter, open_state, owner_id)
from .tags import Markup, parse_markup

log = logging.getLogger("tower_cat.server")


# ----------------------------------------------------------------------------------------------------------
# errors every protocol maps to its own wire shape


class Overloaded(ServiceError):
    status = 429


class QuotaExceeded(ServiceError):
    status = 456


class NotFound(ServiceError):
    status = 404


class Unauthorized(ServiceError):
    status = 403


# ----------------------------------------------------------------------------------------------------------
# configuration


@dataclass
class ServerConfig:
    model: str | None = None
    tm: str | None = None
    glossaries: list[str] = field(default_factory=list)
    api_keys: list[str] = field(default_factory=list)       # empty: no authentication (loopback use)
    languages: list[str] | None = None
    device: str = "auto"
    compute_type: str = "auto"
    threads: int | None = None
    endpoint: str | None = None                             # the model on an OpenAI-compatible server instead
    endpoint_key: str | None = None
    served_model: str | None = None
    cache: str | None = None                                # SQLite generation cache
    batch_window: float = 0.015                             # seconds the worker waits to fill a batch
    max_batch_prompts: int = 64
    max_pending: int = 1024                                 # prompts queued or running; then 429/503
    max_request_bytes: int = 128 * 1024                     # DeepL's own limit
    max_file_bytes: int = 50 * 1024 * 1024
    max_texts: int = 50                                     # DeepL: text[] per request
    max_chars: int = 30_000                                 # characters per request
    max_request_tokens: int = 20_000                        # source tokens per request (model work it may ask for)
    character_limit: int | None = None                      # per key, for /v2/usage and 456
    max_new_tokens: int = 512
    tm_min_score: float = 75.0
    tm_examples: int = 3
    jobs_dir: str | None = None
    sessions: str | None = None                             # SQLite file of /v1/sessions (survives restarts)
    state: str | None = None                                # server state (SQLite); default <jobs_dir>/state.sqlite
    admin_key: str | None = None                            # sees and manages every key's records
    tm_mode: str = "shared"                                 # shared: one TM for all keys; per-key: one TM per key
    job_workers: int = 2                                    # file jobs run at the same time
    job_max_seconds: float = 3600.0                         # a file job past this is cancelled
    job_max_units: int = 200_000                            # units per uploaded file
    job_max_memory_mb: int | None = 2048                    # address space to read an upload (checked first)
    job_keep_days: float = 7.0                              # finished jobs (and their files) kept this long
    preload: bool = True


# ----------------------------------------------------------------------------------------------------------
# the worker


@dataclass
class _Job:
    prompts: list
    sources: list
    options: Any
    future: concurrent.futures.Future
    fn: Callable[[], Any] | None = None   # an exclusive call (scoring, QE) instead of prompts
    owner: str | None = None              # the key it is queued for (its share of the queue)

    @property
    def size(self) -> int:
        return len(self.prompts) if self.fn is None else 1


@dataclass
class BatcherStats:
    jobs: int = 0                 # submissions (one per request that needed the model)
    prompts: int = 0
    generate_calls: int = 0       # Engine.generate calls made by the worker
    calls: int = 0                # exclusive calls (QE, scoring)
    rejected: int = 0
    max_coalesced_jobs: int = 0
    max_coalesced_prompts: int = 0


class Batcher:
    """One thread that owns the engine; see the module docstring."""

    def __init__(self, engine, *, window: float = 0.015, max_batch_prompts: int = 64, max_pending: int = 1024):
        self.engine = engine
        self.window = window
        self.max_batch_prompts = max_batch_prompts
        self.max_pending = max_pending
        self.stats = BatcherStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0
        self._by_owner: dict[str, int] = {}   # segments queued per key
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tower-cat-engine", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    KEY_SHARE = 0.75  # of the queue one key may hold, so the other keys are still answered while it floods

    def _admit(self, n: int, owner: str | None = None) -> None:
        with self._lock:
            if self._pending + n > self.max_pending:
                self.stats.rejected += 1
                raise Overloaded(f"the server is busy ({self._pending} segments queued); retry shortly")
            if owner is not None:
                mine = self._by_owner.get(owner, 0)
                share = max(self.max_batch_prompts, int(self.max_pending * self.KEY_SHARE))
                if mine + n > share:
                    self.stats.rejected += 1
                    raise Overloaded(f"this key has {mine} segments queued (at most {share}); retry shortly")
                self._by_owner[owner] = mine + n
            self._pending += n

    def _release(self, job: "_Job") -> None:  # with self._lock held
        self._pending -= job.size
        if job.owner is not None:
            left = self._by_owner.get(job.owner, 0) - job.size
            if left > 0:
                self._by_owner[job.owner] = left
            else:
                self._by_owner.pop(job.owner, None)

    def submit(self, prompts_: list, sources: list, options, owner: str | None = None) -> concurrent.futures.Future:
        if not prompts_:
            fut: concurrent.futures.Future = concurrent.futures.Future()
            fut.set_result([])
            return fut
        self._admit(len(prompts_), owner)
        job = _Job(list(prompts_), list(sources), options, concurrent.futures.Future(), owner=owner)
        self._queue.put(job)
        return job.future

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run ``fn`` on the engine thread (between batches)."""
        self._admit(1)
        job = _Job([], [], None, concurrent.futures.Future(), fn)
        self._queue.put(job)
        return job.future

    async def generate(self, prompts_: list, sources: list, options, owner: str | None = None) -> list:
        return await asyncio.wrap_future(self.submit(prompts_, sources, options, owner))

    async def run(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.wrap_future(self.call(fn))

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    # -- worker side ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            if job.fn is None:
                size = job.size
                deadline = time.monotonic() + self.window
                while size < self.max_batch_prompts:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        nxt = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)
                        break
                    jobs.append(nxt)
                    size += nxt.size
            try:
                self._process(jobs)
            except BaseException:  # noqa: BLE001 - the worker must outlive any one batch
                log.exception("engine worker: a batch failed")
                for j in jobs:
                    if not j.future.done():
                        self._finish(j, exc=ServiceError("internal error in the engine worker", status=500))

    def _process(self, jobs: list[_Job]) -> None:
        live = []
        for j in jobs:  # a request whose client went away is not generated
            if j.future.set_running_or_notify_cancel():
                live.append(j)
            else:
                with self._lock:
                    self._release(j)
        jobs = live
        calls = [j for j in jobs if j.fn is not None]
        groups: dict[Any, list[_Job]] = {}
        for j in jobs:
            if j.fn is None:
                groups.setdefault(j.options, []).append(j)
        self.stats.max_coalesced_jobs = max(self.stats.max_coalesced_jobs, len(jobs) - len(calls))
        for options, group in groups.items():
            prompts_ = [p for j in group for p in j.prompts]
            sources = [s for j in group for s in j.sources]
            self.stats.jobs += len(group)
            self.stats.prompts += len(prompts_)
            self.stats.generate_calls += 1
            self.stats.max_coalesced_prompts = max(self.stats.max_coalesced_prompts, len(prompts_))
            try:
                results = self.engine.generate(prompts_, options, sources=sources)
            except Exception as exc:  # noqa: BLE001
                if len(group) == 1:
                    self._finish(group[0], exc=exc)
                    continue
                for j in group:  # one bad request must not fail the others it was batched with
                    self.stats.generate_calls += 1
                    try:
                        self._finish(j, result=self.engine.generate(j.prompts, options, sources=j.sources))
                    except Exception as exc2:  # noqa: BLE001
                        self._finish(j, exc=exc2)
                continue
            start = 0
            for j in group:
                self._finish(j, result=results[start:start + len(j.prompts)])
                start += len(j.prompts)
        for j in calls:
            self.stats.calls += 1
            try:
                result = j.fn()
            except BaseException as exc:  # noqa: BLE001
                self._finish(j, exc=exc)
            else:
                self._finish(j, result=result)

    def _finish(self, job: _Job, result: Any = None, exc: BaseException | None = None) -> None:
        with self._lock:
            self._release(job)
        try:
            if exc is not None:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile
            pass


# ----------------------------------------------------------------------------------------------------------
# glossaries (DeepL v2/v3 and /v1 share them)


def parse_entries(entries: str, entries_format: str = "tsv") -> list[tuple[str, str]]:
    """DeepL glossary entries: TSV ``source\\ttarget`` lines or CSV ``source,target[,src_lang,tgt_lang]``."""
    fmt = (entries_format or "tsv").lower()
    if fmt not in ("tsv", "csv"):
        raise ServiceError(f"unsupported entries_format {entries_format!r}; use tsv or csv")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    if fmt == "tsv":
        rows = [line.split("\t") for line in entries.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    else:
        rows = list(csv.reader(io.StringIO(entries)))
    for n, row in enumerate(rows, 1):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ServiceError(f"glossary entry on line {n} needs a source and a target term")
        if fmt == "tsv" and len(row) > 2:
            raise ServiceError(f"glossary entry on line {n} has more than one tab")
        s, t = row[0].strip(), row[1].strip()
        if len(s.encode()) > 1024 or len(t.encode()) > 1024:
            raise ServiceError(f"glossary entry on line {n} is longer than 1024 bytes")
        if s in seen:
            raise ServiceError(f"glossary entry on line {n} duplicates the source term {s!r}")
        seen.add(s)
        out.append((s, t))
    if not out:
        raise ServiceError("the glossary has no entries")
    return out


def entries_tsv(entries: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{s}\t{t}" for s, t in entries)


# ----------------------------------------------------------------------------------------------------------
# translation


@dataclass
class SegmentIn:
    """One string to translate: the parsed segment, how to write it back, and its own context."""

    markup: Markup
    id: str | None = None
    context_before: list[str] = field(default_factory=list)
    context_after: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, mode: str = "text", ignore_tags=frozenset(), **kw) -> "SegmentIn":
        return cls(parse_markup(text, mode, ignore_tags), **kw)

    @property
    def segment(self) -> Segment:
        return self.markup.segment


@dataclass
class SegmentOut:
    text: str                          # in the request's markup
    segment: Segment
    source_lang: str
    detected: Detection | None = None
    origin: str = "mt"                 # mt | tm-exact | tm-context | copy
    tm_score: float | None = None
    examples: int = 0
    terms: list[tuple[str, str]] = field(default_factory=list)
    tags_ok: bool = True
    tag_problems: list[str] = field(default_factory=list)
    truncated: bool = False
    alternatives: list[str] = field(default_factory=list)
    id: str | None = None
    qa: list[dict] = field(default_factory=list)   # QA findings (qa.check_unit), as in the files' job summary
    terms_ok: bool | None = None       # glossary compliance (None: no glossary term in the source)

    def as_dict(self) -> dict:
        d = {"text": self.text, "source_lang": self.source_lang, "origin": self.origin, "tm_score": self.tm_score,
             "examples": self.examples, "terms": [{"source": s, "target": t} for s, t in self.terms],
             "tags_ok": self.tags_ok, "tag_problems": self.tag_problems, "truncated": self.truncated,
             "qa": self.qa, "terms_ok": self.terms_ok}
        if self.id is not None:
            d["id"] = self.id
        if self.detected is not None:
            d["detected_source_lang"] = {"language": self.detected.language, "confidence": self.detected.confidence}
        if self.alternatives:
            d["alternatives"] = self.alternatives
        return d


class Service:
    """Everything the protocol adapters call. Build with :meth:`from_config` or hand in an engine (tests)."""

    def __init__(self, engine, config: ServerConfig | None = None, *, tm=None):
        self.config = config or ServerConfig()
        self.engine = engine
        self.wording = engine.info.wording if engine is not None else "instruct"
        self.catalog = Catalog.for_model(self.wording, self.config.languages)
        self.detector = LanguageDetector(self.catalog.bases)
        self.batcher = Batcher(engine, window=self.config.batch_window,
                               max_batch_prompts=self.config.max_batch_prompts, max_pending=self.config.max_pending)
        self.tm = tm
        self._tm_lock = threading.Lock()
        self._prompt_fitter = None
        self.state: ServerState = open_state(self.config.state or (
            str(Path(self.config.jobs_dir) / "state.sqlite") if self.config.jobs_dir else None))
        where = self.state.location  # per-key TMs: in the jobs folder, else beside a SQLite state file
        folder = Path(self.config.jobs_dir) if self.config.jobs_dir else (
            Path(where).parent if where != ":memory:" and "://" not in where else None)
        self.memories = TenantMemories(self.config.tm_mode, tm, folder / "tm" if folder is not None else None)
        self.glossaries = GlossaryStore(self.state)
        for path in self.config.glossaries:
            self.glossaries.add_builtin(path)
        self.usage = UsageCounter(self.config.character_limit, self.state)
        self.started = time.time()
        self.jobs = None  # set by the app (files endpoints)

    @classmethod
    def from_config(cls, config: ServerConfig) -> "Service":
        from tower_cat.engine import Engine

        if not config.model:
            raise TowerCatError("no model given", hint="pass --model DIR (a folder made by `tower-cat convert`)")
        remote = dict(backend="openai", endpoint=config.endpoint, api_key=config.endpoint_key,
                      served_model=config.served_model) if config.endpoint else {}
        engine = Engine.load(config.model, device=config.device, compute_type=config.compute_type,
                             threads=config.threads, cache=config.cache, **remote)
        from tower_cat.tm import open_translation_memory

        tm = open_translation_memory(config.tm)  # a database or postgresql:// URL; None: $TOWER_CAT_TM_URL
        service = cls(engine, config, tm=tm)
        if config.preload:
            service.batcher.call(lambda: engine.backend).result()
        return service

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.close()
        self.batcher.close()
        if self.tm is not None:
            self.tm.close()
        self.memories.close()
        self.state.close()

    # -- authentication ---------------------------------------------------------------------------------

    def check_key(self, key: str | None) -> str | None:
        """The key a request is counted under; Unauthorized when keys are configured and this one is not."""
        if self.config.api_keys or self.config.admin_key:
            if not key or (key not in self.config.api_keys and key != self.config.admin_key):
                raise Unauthorized("Invalid or missing API key")
            return key
        return None  # open mode: whatever string a client sends as its key is not an account to count under

    def caller(self, key: str | None) -> Caller:
        """Whose records a request sees (see adapters/state.py): without keys, one tenant that sees all."""
        if not (self.config.api_keys or self.config.admin_key):
            return Caller("", admin=True)
        return Caller(owner_id(key), admin=bool(self.config.admin_key) and key == self.config.admin_key)

    def queue_owner(self, key: str | None) -> str | None:
        """Whose share of the engine queue a request takes: its key's (None without keys: one tenant)."""
        return owner_id(key) if (self.config.api_keys or self.config.admin_key) else None

    def check_tokens(self, texts: Sequence[str]) -> None:
        """413 before any engine work when a request's texts hold more than ``max_request_tokens`` tokens: the
        bound on model work one request may ask for (the context window is checked per segment by the core).
        Counted exactly only when the UTF-8 bytes, an upper bound for byte-level tokenizers, exceed it."""
        limit = self.config.max_request_tokens
        if not limit or sum(len(t.encode("utf-8")) for t in texts) <= limit:
            return
        tokens = sum(self.engine.count_tokens(t) for t in texts)
        if tokens > limit:
            raise ServiceError(f"request too large: {tokens} tokens (limit {limit} per request)", status=413)

    # -- languages --------------------------------------------------------------------------------------

    def resolve(self, code: str | None, role: str = "target") -> str:
        try:
            return self.catalog.resolve(code, role=role)
        except LanguageError as exc:
            raise ServiceError(str(exc)) from None

    def detect(self, text: str) -> Detection:
        return self.detector.detect(text)

    # -- TM ---------------------------------------------------------------------------------------------

    def _tm_lookup_many(self, texts: list[Segment], src: str, tgt: str, limit: int, min_score: float) -> list:
        with self._tm_lock:
            return [self.tm.lookup(t, src, tgt, limit=limit, min_score=min_score) for t in texts]

    async def tm_lookup(self, text: str, src: str, tgt: str, limit: int = 5, min_score: float = 70.0) -> list:
        if self.tm is None:
            raise NotFound("no translation memory is configured (start the server with --tm DB)")
        return (await asyncio.to_thread(self._tm_lookup_many, [Segment.from_text(text)], src, tgt, limit,
                                        min_score))[0]

    async def tm_add(self, source: str, target: str, src: str, tgt: str, context: dict | None = None) -> int:
        if self.tm is None:
            raise NotFound("no translation memory is configured (start the server with --tm DB)")

        def add():
            with self._tm_lock:
                return self.tm.add(source, target, src, tgt, context=context, origin="human")

        return await asyncio.to_thread(add)

    # -- translation ------------------------------------------------------------------------------------

    def options(self, **overrides):
        from tower_cat.engine import GenerationOptions

        return GenerationOptions(max_new_tokens=self.config.max_new_tokens, **overrides)

    # -- translation: every protocol's segments go through the one core (tower_cat.core.Translator) ------

    def _fitter(self):
        if self._prompt_fitter is None:
            from tower_cat.core import PromptFitter

            self._prompt_fitter = PromptFitter(self.engine)
        return self._prompt_fitter

    def glossaries_for(self, glossary_ids: Sequence[str], src: str, tgt: str, caller: Any = None) -> list:
        """The glossaries a request uses for one pair (``terminology.Glossary`` objects for the core): the
        --glossary files, then the request's own (NotFound for an unknown one, before any work)."""
        stored = list(self.glossaries.builtins())
        for gid in glossary_ids:
            g = self.glossaries.get(gid, caller)
            if g not in stored:
                stored.append(g)
        out = []
        for g in stored:
            if g.builtin is not None:
                out.append(g.builtin)
            else:
                d = g.dictionary(src, tgt)
                if d is not None:
                    out.append(d.glossary)
        return out

    def translator(self, src: str, tgt: str, *, glossary_ids: Sequence[str] = (), use_tm: bool = True,
                   tm_min_score: float | None = None, examples: int | None = None, key: str | None = None):
        """The core with this server's engine, the TM of ``key`` (``--tm-mode``; locked: one lookup at a time),
        glossaries and options."""
        from tower_cat.core import TranslationOptions, Translator

        opts = TranslationOptions(few_shot=self.config.tm_examples if examples is None else examples,
                                  fuzzy_min=self.config.tm_min_score if tm_min_score is None else tm_min_score,
                                  max_new_tokens=self.config.max_new_tokens, generation=self.options())
        memory = self.memories.for_caller(self.caller(key))
        tm = _LockedTM(memory, self._tm_lock) if memory is not None and use_tm else None
        return Translator(self.engine, tm=tm, glossary=self.glossaries_for(glossary_ids, src, tgt), options=opts,
                          fitter=self._fitter())

    async def run_steps(self, steps, *, offload: bool = True, owner: str | None = None) -> Any:
        """Drive the core's steps: the engine calls through the batcher, so concurrent requests share engine
        batches; the CPU work between them (TM search, prompts, restoring codes, QA) in a worker thread with
        ``offload`` (a TM search can take milliseconds), else on the event loop (well under a millisecond a
        segment without a TM: a thread hop would cost more than the work)."""
        value, first = None, True
        while True:
            if offload:
                done, payload = await asyncio.to_thread(_advance, steps, value, first)
            else:
                done, payload = _advance(steps, value, first)
            first = False
            if done:
                return payload
            value = await self.batcher.generate(payload.prompts, payload.sources, payload.options, owner)

    async def translate(self, items: list[SegmentIn], source_lang: str | None, target_lang: str, *,
                        key: str | None = None, glossary_ids: Sequence[str] = (),
                        terms: Sequence[tuple[str, str]] = (), context: str | None = None, use_tm: bool = True,
                        tm_min_score: float | None = None, examples: int | None = None,
                        alternatives: int = 0, count_usage: bool = True) -> list[SegmentOut]:
        from tower_cat.core import SegmentRequest

        tgt = self.resolve(target_lang, "target")
        src_fixed = self.resolve(source_lang, "source") if source_lang and source_lang != "auto" else None
        for gid in glossary_ids:
            self.glossaries.get(gid, self.caller(key))  # 404 before any work, also for another key's
        chars = sum(len(it.segment.text) for it in items)
        if chars > self.config.max_chars:
            raise ServiceError(f"request too large: {chars} characters (limit {self.config.max_chars})", status=413)
        self.check_tokens([it.segment.text for it in items])
        self.usage.check(key, chars)

        detections: list[Detection | None] = []
        by_src: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            d = None if src_fixed else self.detect(it.segment.text)
            detections.append(d)
            by_src.setdefault(src_fixed or d.language, []).append(i)

        def request(i: int) -> SegmentRequest:
            it = items[i]
            before = list(it.context_before) + ([context] if context else [])
            return SegmentRequest(it.segment, id=it.id, context_before=before, context_after=list(it.context_after),
                                  terms=list(terms))

        async def group(src: str, idx: list[int]) -> list:
            core = self.translator(src, tgt, glossary_ids=glossary_ids, use_tm=use_tm, tm_min_score=tm_min_score,
                                   examples=examples, key=key)
            return await self.run_steps(core.translate_steps([request(i) for i in idx], src, tgt,
                                                             alternatives=alternatives), offload=core.tm is not None,
                                        owner=self.queue_owner(key))

        groups = list(by_src.items())
        done = await asyncio.gather(*(group(src, idx) for src, idx in groups))
        outs: list[SegmentOut | None] = [None] * len(items)
        for (src, idx), results in zip(groups, done):
            for i, res in zip(idx, results):
                outs[i] = self._segment_out(items[i], res, detections[i], alternatives)
        if count_usage:
            self.usage.add(key, chars, len(items))
        return outs  # type: ignore[return-value]

    @staticmethod
    def _segment_out(item: SegmentIn, res, detected: Detection | None = None, alternatives: int = 0) -> SegmentOut:
        """A core result in the request's markup."""
        segment = res.target if res.target is not None else Segment([])
        text = item.markup.render(segment)
        out = SegmentOut(text, segment, res.source_lang, detected, origin=res.origin or "mt", tm_score=res.tm_score,
                         examples=res.examples, terms=list(res.prompt_terms), tags_ok=res.tags_ok,
                         tag_problems=[p for p in res.problems if not p.startswith("terminology")]
                         if item.segment.codes else [],
                         truncated=res.truncated, id=item.id, qa=[i.as_dict() for i in res.qa],
                         terms_ok=res.terms_ok)
        for seg in res.alternatives:
            alt = item.markup.render(seg)
            if alt != text and alt not in out.alternatives and len(out.alternatives) < alternatives:
                out.alternatives.append(alt)
        return out

    async def post_edit(self, pairs: list[tuple[SegmentIn, SegmentIn]], source_lang: str, target_lang: str, *,
                        key: str | None = None, glossary_ids: Sequence[str] = (),
                        terms: Sequence[tuple[str, str]] = ()) -> list[SegmentOut]:
        from tower_cat.core import SegmentRequest

        src = self.resolve(source_lang, "source")
        tgt = self.resolve(target_lang, "target")
        chars = sum(len(s.segment.text) + len(t.segment.text) for s, t in pairs)
        if chars > self.config.max_chars:
            raise ServiceError(f"request too large: {chars} characters (limit {self.config.max_chars})", status=413)
        self.check_tokens([p.segment.text for pair in pairs for p in pair])
        self.usage.check(key, chars)
        requests = [SegmentRequest(source.segment, id=source.id, terms=list(terms), target=translation.segment)
                    for source, translation in pairs]
        core = self.translator(src, tgt, glossary_ids=glossary_ids, use_tm=False)
        results = await self.run_steps(core.post_edit_steps(requests, src, tgt), offload=False,
                                       owner=self.queue_owner(key))
        outs = [self._segment_out(source, res) for (source, _), res in zip(pairs, results)]
        self.usage.add(key, chars, len(pairs))
        return outs

    async def qe(self, items: list[tuple[str, str]], source_lang: str, target_lang: str, *,
                 backend: str = "logprob", spans: bool = False) -> list[dict]:
        from tower_cat import qe

        src = self.resolve(source_lang, "source")
        tgt = self.resolve(target_lang, "target")
        qitems = [qe.QEItem(s, t, source_lang=src, target_lang=tgt) for s, t in items]
        if backend == "logprob":
            scorer = qe.LogprobBackend(self.engine)
        elif backend == "llm":
            scorer = qe.LLMJudgeBackend(self.engine, spans=spans)
        else:
            raise ServiceError(f"unknown QE backend {backend!r}; use logprob or llm")
        results = await self.batcher.run(lambda: scorer.score(qitems))
        return [{**r.to_dict(), "backend": scorer.describe()} for r in results]

    # -- info -------------------------------------------------------------------------------------------

    def model_info(self) -> dict:
        e = self.engine
        info = {"path": str(e.path), "family": e.info.family, "architecture": e.info.architecture,
                "wording": self.wording, "backend": e.backend_name, "device": e.device,
                "compute_type": e.compute_type, "loaded": e.is_loaded, "languages": self.catalog.all_codes(),
                "engine_stats": vars(e.stats).copy(), "batcher": vars(self.batcher.stats).copy(),
                "pending": self.batcher.pending}
        return info

    # -- raw chat: messages through the model's own chat template (the OpenAI-compatible door) -----------

    async def chat(self, messages: list[dict], *, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                   max_tokens: int | None = None, stop: Sequence[str] = (), key: str | None = None) -> "ChatResult":
        """Generate replies to chat messages that are *not* a translation request.

        The prompt is the model's own chat template (``Engine.render``); the job goes through the same
        :class:`Batcher` as translations, so concurrent chat requests with the same decoding options share one
        ``Engine.generate`` call. ``temperature`` 0 is greedy (``n`` identical choices); above 0 samples ``n``
        hypotheses. ``stop`` strings cut the reply (finish reason ``stop``); the token budget gives ``length``.
        """
        if not messages:
            raise ServiceError("'messages' must hold at least one message")
        for i, m in enumerate(messages):
            if m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
                raise ServiceError(f"messages[{i}]: role must be system, user or assistant and content a string")
        chars = sum(len(m["content"]) for m in messages)
        if chars > self.config.max_chars:
            raise ServiceError(f"request too large: {chars} characters (limit {self.config.max_chars})", status=413)
        self.check_tokens([m["content"] for m in messages])
        self.usage.check(key, chars)
        try:
            rendered = await asyncio.to_thread(self.engine.render, [dict(m) for m in messages])
        except TowerCatError:
            raise
        except Exception as exc:  # noqa: BLE001 - a chat template refusing these roles (e.g. no system role)
            raise ServiceError(f"the model's chat template cannot render these messages: {exc}") from None
        prompt_tokens = len(rendered.tokens)
        budget = max_tokens or self.config.max_new_tokens
        room = self.engine.context_length - prompt_tokens
        if room < 1:
            raise ServiceError(f"the messages take {prompt_tokens} tokens; the model's context window is "
                               f"{self.engine.context_length}")
        budget = min(budget, room)
        sampled = temperature > 0
        from dataclasses import replace

        opts = replace(self.options(), max_new_tokens=budget, sampling_topk=0 if sampled else 1,
                       sampling_temperature=temperature if sampled else 1.0, sampling_topp=top_p if sampled else 1.0,
                       num_hypotheses=n if sampled else 1)
        gen = (await self.batcher.generate([[dict(m) for m in messages]], [None], opts))[0]
        hyps = list(gen.hypotheses) if sampled else [gen.hypotheses[0]] * n
        choices: list[tuple[str, str]] = []
        completion_tokens = 0
        for h in hyps[:n]:
            text, reason = h.text, ("length" if h.truncated else "stop")
            cut = min((text.find(s) for s in stop if s and s in text), default=-1)
            if cut >= 0:
                text, reason = text[:cut], "stop"
                completion_tokens += await asyncio.to_thread(self.engine.count_tokens, text) if text else 0
            else:
                completion_tokens += len(h.tokens)
            choices.append((text, reason))
        self.usage.add(key, chars, 1)
        return ChatResult(choices, prompt_tokens, completion_tokens)


@dataclass
class ChatResult:
    """Replies of :meth:`Service.chat`: (text, finish reason) per choice and OpenAI-style token counts."""

    choices: list[tuple[str, str]]
    prompt_tokens: int
    completion_tokens: int


class _LockedTM:
    """The server's TM for the core: one lookup at a time (requests run their steps in worker threads)."""

    def __init__(self, tm, lock: threading.Lock):
        self._tm = tm
        self._lock = lock

    def lookup(self, *args, **kwargs):
        with self._lock:
            return self._tm.lookup(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tm, name)


def _advance(steps, value, first: bool):
    """One step of a core step generator: (True, its result) or (False, the GenerateCall it asks for)."""
    try:
        call = next(steps) if first else steps.send(value)
    except StopIteration as stop:
        return True, stop.value
    return False, call
