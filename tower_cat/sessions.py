"""Interactive translation (BayLing-style): one segment, a conversation of revision instructions, a result accepted
into the translation memory.

A session starts with the ordinary translation request for a segment — the translation core's
(``tower_cat.core.Translator``: glossary terms, TM examples best first, notes, neighbours and the translator's
instructions of the first turn, fitted to the context window; output cleaned, codes restored, terms repaired
from the n-best list, instructions checked), byte for byte what the files and every HTTP protocol send; then every
instruction is a further user turn after the model's previous answer (``prompts.revision_messages``). The whole
conversation is rendered with the model's own chat template by the engine (multi-turn ChatML for
TowerInstruct, Gemma turns for Tower+ 2B/9B, ...), so the prompt is exactly
``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)``.

Inline codes. The model sees the source as numbered-tag markup (``codes.render``); every answer is parsed back
onto the source's codes with ``codes.parse`` (the pipeline's repairs and flags: ``Turn.ok`` False means the
codes could not be put back safely — such a revision is shown but not accepted unless forced). The assistant
turn kept in the conversation is the *repaired* markup, with every tag, so the next revision starts from a
translation that has them all.

Context window. When the conversation (plus room for the answer) would not fit the model's context, the oldest
exchanges are left out of the prompt — the first request (the source, terms, examples) always stays, followed
by the most recent answers and instructions. ``Turn.dropped`` records how many earlier exchanges were left
out. Verifiable instructions (``instructions.py``) stay in force across turns anyway: each revision is checked
against all of them (a newer length limit or case style replaces an older one) and retried once on failure.

Persistence. :class:`SessionStore` keeps sessions in SQLite (one JSON document per session), so a server
restart loses nothing: a new store on the same file sees every session and the conversation continues.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tower_cat import codes, prompts
from tower_cat.codes import Tag
from tower_cat.core import SegmentRequest, TranslationOptions, Translator
from tower_cat.document import CodeKind, InlineCode, Segment, Unit
from tower_cat.errors import SessionError, SessionNotFound  # noqa: F401  (importable from here, as before)
from tower_cat.instructions import Check, CheckResult, InstructionReport, InstructionSet, choose, merge_checks

__all__ = [
    "Session", "Turn", "SessionStore", "SessionManager", "SessionError", "SessionNotFound", "Accepted",
    "segment_from_markup", "segment_markup",
]

SESSION_FORMAT = 1
ORIGIN = "interactive"  # TM origin of an accepted session result


# --------------------------------------------------------------------------------------------------- markup

def segment_from_markup(text: str) -> Segment:
    """A segment from text with numbered tags (``Click <1>Save</1><2/>``): each tag becomes an inline code whose
    markup is the tag itself — how a terminal user writes inline codes. ``&lt;`` writes a literal ``<1>``."""
    tokens = codes.tokenize(text)
    opens = {t.number for t in tokens if isinstance(t, Tag) and t.role == "open"}
    closes = {t.number for t in tokens if isinstance(t, Tag) and t.role == "close"}
    parts: list[Any] = []
    for t in tokens:
        if isinstance(t, str):
            parts.append(t)
        elif t.role == "open":
            parts.append(InlineCode(str(t.number), CodeKind.OPEN, str(t), tag="g", isolated=t.number not in closes))
        elif t.role == "close":
            parts.append(InlineCode(str(t.number), CodeKind.CLOSE, str(t), tag="g", isolated=t.number not in opens))
        else:
            parts.append(InlineCode(str(t.number), CodeKind.STANDALONE, str(t), tag="x"))
    return Segment(parts)


def segment_markup(segment: Segment) -> str:
    """The segment with each inline code written as its original markup."""
    return "".join(p if isinstance(p, str) else p.xml for p in segment.parts)


def _seg_dump(seg: Segment) -> Any:
    from tower_cat.document import segment_to_json

    return json.loads(segment_to_json(seg))


def _seg_load(data: Any) -> Segment:
    from tower_cat.document import segment_from_json

    return segment_from_json(json.dumps(data, ensure_ascii=False))


# --------------------------------------------------------------------------------------------------- data

@dataclass
class Turn:
    """One request and the model's answer. The first turn (``instruction`` None) is the translation itself."""

    instruction: str | None
    request: str                       # the user message as sent
    markup: str                        # the answer as numbered-tag markup, codes repaired (the next turns see this)
    segment: Segment                   # the answer with the source's inline codes
    ok: bool = True                    # codes restored safely (False: flagged, not accepted without force)
    problems: list[str] = field(default_factory=list)
    raw: str = ""                      # model output before cleaning
    new_checks: list[Check] = field(default_factory=list)  # checks this turn's instruction(s) added
    report: InstructionReport = field(default_factory=InstructionReport)
    terms: dict | None = None          # glossary compliance of the answer
    truncated: bool = False            # the answer hit the token budget
    dropped: int = 0                   # earlier exchanges left out of the prompt to fit the context
    log_prob: float | None = None
    created: float = field(default_factory=time.time)
    origin: str = "mt"                 # the first turn may be a TM match (tm-exact | tm-context): no model call

    @property
    def text(self) -> str:
        return self.segment.text

    def as_dict(self, index: int | None = None) -> dict[str, Any]:
        d = {"instruction": self.instruction, "text": self.segment.text, "target": segment_markup(self.segment),
             "markup": self.markup, "codes_ok": self.ok, "code_problems": list(self.problems),
             "checks": self.report.as_dict(), "truncated": self.truncated, "dropped_turns": self.dropped,
             "origin": self.origin, "created": self.created}
        if self.terms is not None:
            d["terms"] = self.terms
        if index is not None:
            d = {"index": index, **d}
        return d

    def dump(self) -> dict[str, Any]:
        return {"instruction": self.instruction, "request": self.request, "markup": self.markup,
                "segment": _seg_dump(self.segment), "ok": self.ok, "problems": self.problems, "raw": self.raw,
                "new_checks": [c.as_dict() for c in self.new_checks],
                "report": {"results": [{"check": r.check.as_dict(), "passed": r.passed, "message": r.message,
                                        "found": r.found} for r in self.report.results],
                           "unverifiable": self.report.unverifiable, "retried": self.report.retried,
                           "first_failed": self.report.first_failed},
                "terms": self.terms, "truncated": self.truncated, "dropped": self.dropped,
                "log_prob": self.log_prob, "created": self.created, "origin": self.origin}

    @classmethod
    def load(cls, d: dict[str, Any]) -> "Turn":
        rep = d.get("report") or {}
        report = InstructionReport(
            [CheckResult(Check.from_dict(r["check"]), r["passed"], r.get("message", ""), r.get("found"))
             for r in rep.get("results", [])],
            list(rep.get("unverifiable", [])), bool(rep.get("retried")), list(rep.get("first_failed", [])))
        return cls(d["instruction"], d["request"], d["markup"], _seg_load(d["segment"]), d.get("ok", True),
                   list(d.get("problems", [])), d.get("raw", ""),
                   [Check.from_dict(c) for c in d.get("new_checks", [])], report, d.get("terms"),
                   bool(d.get("truncated")), int(d.get("dropped", 0)), d.get("log_prob"),
                   d.get("created", time.time()), d.get("origin", "mt"))


@dataclass
class Accepted:
    turn: int
    segment: Segment
    tm_entry: int | None               # None: no TM attached
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"turn": self.turn, "text": self.segment.text, "target": segment_markup(self.segment),
                "tm_entry": self.tm_entry, "at": self.at}


@dataclass
class Session:
    """A conversation about one segment."""

    id: str
    source: Segment
    source_lang: str
    target_lang: str
    wording: str = "instruct"
    turns: list[Turn] = field(default_factory=list)
    max_length: int | None = None      # the unit's length limit (for "fit the maxwidth")
    first_instructions: list[str] = field(default_factory=list)  # those given with the first request
    accepted: Accepted | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # caller's data: unit id, file, user ...
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @property
    def rendered(self) -> codes.Rendered:
        return codes.render(self.source)

    @property
    def current(self) -> Turn:
        if not self.turns:
            raise SessionError("the session has no translation yet")
        return self.turns[-1]

    @property
    def checks(self) -> list[Check]:
        """The verifiable instructions in force: every turn's, newer ones replacing clashing older ones."""
        out: list[Check] = []
        for t in self.turns:
            out = merge_checks(out, t.new_checks)
        return out

    @property
    def instructions(self) -> list[str]:
        """Every instruction given so far, in order (those of the first request included)."""
        out: list[str] = list(self.first_instructions)
        for t in self.turns:
            if t.instruction:
                out.append(t.instruction)
        return out

    def messages(self, upto: int | None = None, *, answer: bool = False) -> list[dict[str, str]]:
        """The conversation up to the request of turn ``upto`` (default: the last turn): alternating user and
        assistant messages ending with that user request; with ``answer``, its answer too."""
        if not self.turns:
            return []
        last = len(self.turns) - 1 if upto is None else upto
        msgs: list[dict[str, str]] = [{"role": "user", "content": self.turns[0].request}]
        for i in range(1, last + 1):
            msgs = prompts.revision_messages(msgs, self.turns[i - 1].markup, self.turns[i].request)
        if answer:
            msgs = prompts.training_messages(msgs, self.turns[last].markup)
        return msgs

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "source_lang": self.source_lang, "target_lang": self.target_lang,
            "source": {"text": self.source.text, "markup": segment_markup(self.source),
                       "tags": self.rendered.text},
            "turns": [t.as_dict(i) for i, t in enumerate(self.turns)],
            "current": self.turns[-1].as_dict(len(self.turns) - 1) if self.turns else None,
            "checks": [c.as_dict() for c in self.checks], "instructions": self.instructions,
            "max_length": self.max_length,
            "accepted": self.accepted.as_dict() if self.accepted else None,
            "meta": self.meta, "created": self.created, "updated": self.updated,
        }
        return d

    def dump(self) -> dict[str, Any]:
        return {"format": SESSION_FORMAT, "id": self.id, "source": _seg_dump(self.source),
                "source_lang": self.source_lang, "target_lang": self.target_lang, "wording": self.wording,
                "turns": [t.dump() for t in self.turns], "max_length": self.max_length,
                "first_instructions": self.first_instructions,
                "accepted": None if self.accepted is None else {
                    "turn": self.accepted.turn, "segment": _seg_dump(self.accepted.segment),
                    "tm_entry": self.accepted.tm_entry, "at": self.accepted.at},
                "meta": self.meta, "created": self.created, "updated": self.updated}

    @classmethod
    def load(cls, d: dict[str, Any]) -> "Session":
        acc = d.get("accepted")
        return cls(d["id"], _seg_load(d["source"]), d["source_lang"], d["target_lang"], d.get("wording", "instruct"),
                   [Turn.load(t) for t in d.get("turns", [])], d.get("max_length"),
                   list(d.get("first_instructions", [])),
                   None if not acc else Accepted(acc["turn"], _seg_load(acc["segment"]), acc.get("tm_entry"),
                                                 acc.get("at", time.time())),
                   dict(d.get("meta") or {}), d.get("created", time.time()), d.get("updated", time.time()))


# --------------------------------------------------------------------------------------------------- store

class SessionStore:
    """Sessions in one SQLite file (``":memory:"`` for throw-away ones); safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA busy_timeout = 10000")
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created REAL NOT NULL, "
                            "updated REAL NOT NULL, data TEXT NOT NULL)")
        except sqlite3.Error as exc:
            raise SessionError(f"cannot open the session store: {exc}", path=self.path, param="sessions",
                               hint="give a writable file path") from None
        self._lock = threading.RLock()

    def save(self, session: Session) -> None:
        data = json.dumps(session.dump(), ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            try:
                self.db.execute("INSERT INTO sessions (id, created, updated, data) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT(id) DO UPDATE SET updated = excluded.updated, data = excluded.data",
                                (session.id, session.created, session.updated, data))
            except sqlite3.Error as exc:  # locked by another process past the timeout, read-only, disk full
                raise SessionError(f"cannot save the session: {exc}", path=self.path, param="sessions") from None

    def get(self, session_id: str) -> Session:
        with self._lock:
            row = self.db.execute("SELECT data FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(f"no session {session_id!r}", hint="start a new session")
        return Session.load(json.loads(row[0]))

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    def ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT id FROM sessions ORDER BY updated DESC")]

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return self.db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            return self.db.execute("SELECT count(*) FROM sessions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> "SessionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------- manager

class SessionManager:
    """Start, revise, undo and accept sessions with one engine; every change is saved in the store.

    ``tm``: accepted results are written there (and fuzzy matches become examples in the first request);
    ``glossary``: its terms go into the first request and every answer is checked against it.
    ``max_context_tokens``: the context window (default: read from the model).
    """

    def __init__(self, engine, store: SessionStore | str | Path, *, tm=None, glossary=None, options=None,
                 max_context_tokens: int | None = None, few_shot: int = 3, fuzzy_min: float = 70.0):
        self.engine = engine
        self.store = store if isinstance(store, SessionStore) else SessionStore(store)
        self.tm = tm
        self.glossary = glossary
        if options is None:
            from tower_cat.engine import GenerationOptions

            options = GenerationOptions(max_new_tokens=512)
        self.options = options
        self.max_context_tokens = max_context_tokens
        self.few_shot = few_shot
        self.fuzzy_min = fuzzy_min
        self._lock = threading.RLock()
        self.core = self._core(tm, glossary)

    def _core(self, tm, glossary) -> Translator:
        """The translation core the first turn goes through (same prompt, repair and checks as every door)."""
        opts = TranslationOptions(few_shot=self.few_shot, fuzzy_min=self.fuzzy_min, generation=self.options,
                                  max_context_tokens=self.max_context_tokens)
        return Translator(self.engine, tm=tm, glossary=glossary, options=opts, generate=self._engine_call)

    def _engine_call(self, prompts_: list, options, *, sources: list) -> list:
        """The core's engine calls: with the manager's decoding options one prompt at a time through
        :meth:`_generate` (every turn's one engine door), other options (n-best) in one call."""
        if options == self.options:
            return [self._generate(m, s) for m, s in zip(prompts_, sources)]
        return self.engine.generate(prompts_, options, sources=sources)

    @property
    def wording(self) -> str:
        return self.engine.info.wording

    @property
    def context_tokens(self) -> int:
        return self.max_context_tokens or self.engine.context_length

    # -- public API ---------------------------------------------------------------------------------------

    def start(self, source: str | Segment | Unit, source_lang: str, target_lang: str, *,
              instructions: Sequence[str] = (),
              terms: Sequence[tuple[str, str]] | None = None, examples: Sequence[tuple[str, str]] | None = None,
              notes: Sequence[str] = (), context_before: Sequence[str] = (), context_after: Sequence[str] = (),
              max_length: int | None = None, meta: dict | None = None, markup: bool = False,
              session_id: str | None = None, extra_terms: Sequence[tuple[str, str]] = (), tm: Any = ...,
              glossary: Any = ...) -> Session:
        """Translate a segment and open a session on it.

        ``source``: a Segment (with inline codes), a document Unit (its source, character length limit, notes and
        context key come along; the key and neighbours go with an accepted result into the TM) or text (with
        ``markup=True``, numbered tags in it become codes — see :func:`segment_from_markup`). ``terms`` /
        ``examples`` default to what the glossary and TM give for the source (``tm`` / ``glossary``: others than
        the manager's for this first request); ``extra_terms`` are added when the source contains them.
        ``instructions`` go into the first request (and become checks where verifiable).
        """
        meta = dict(meta or {})
        unit = None
        if isinstance(source, Unit):
            unit = source
            source = unit.source
            if max_length is None and unit.max_length and (unit.size_unit or "char") in ("char", "character"):
                max_length = unit.max_length
            notes = list(notes) or [n for n in unit.notes[:2] if n.strip()]
            ctx = unit.context
            for k in ("resname", "msgctxt", "previous_source", "next_source", "file"):
                if getattr(ctx, k, None) and k not in meta:
                    meta[k] = getattr(ctx, k)
            meta.setdefault("unit", unit.id)
            if not context_before and ctx.previous_source:
                context_before = [ctx.previous_source]
            if not context_after and ctx.next_source:
                context_after = [ctx.next_source]
        if isinstance(source, Segment):
            segment = source
        else:
            segment = segment_from_markup(source) if markup else Segment.from_text(source)
        if not segment.text.strip():
            raise SessionError("there is no text to translate")
        core = self.core if tm is ... and glossary is ... else self._core(
            self.tm if tm is ... else tm, self.glossary if glossary is ... else glossary)
        request = SegmentRequest(segment, id=meta.get("unit"), context_before=list(context_before),
                                 context_after=list(context_after), notes=list(notes), msgctxt=meta.get("msgctxt"),
                                 resname=meta.get("resname"), unit=unit, terms=list(extra_terms),
                                 prompt_terms=None if terms is None else list(terms),
                                 examples=None if examples is None else list(examples),
                                 instructions=list(instructions), max_length=max_length)
        prepared = core.prepare_translation(request, source_lang, target_lang)  # SegmentTooLong: no engine work
        iset = prepared.instructions or InstructionSet.parse(instructions, max_length=max_length)
        session = Session(session_id or uuid.uuid4().hex, segment, source_lang, target_lang, self.wording,
                          max_length=max_length, first_instructions=list(iset.instructions), meta=meta)
        turn = Turn(None, prepared.messages[-1]["content"], "", segment, new_checks=list(iset.checks))
        turn.report.unverifiable = list(iset.unverifiable)
        # a 100/101 % TM match whose codes map onto the segment is the first answer, as on every other road
        hit = core.reuse.exact(request.query, prepared.rendered, source_lang, target_lang)
        with self._lock:
            if hit is not None:
                restored = hit.restored
                turn.origin, turn.raw = hit.origin, ""
                turn.report.results = iset.verify(restored.segment.text, target_lang)
            else:
                choice = core.run(core.complete_steps([prepared]))[0]
                restored = core.repair.restore(prepared.rendered, choice.text, target_lang)
                turn.raw = choice.text
                turn.truncated, turn.log_prob = choice.truncated, choice.log_prob
                if choice.instructions is not None:
                    turn.report = choice.instructions
            turn.markup = codes.render_like(prepared.rendered, restored.segment)[0]
            turn.segment = restored.segment
            turn.ok, turn.problems = restored.ok, list(restored.problems)
            if hit is None and choice.terms_repaired:
                turn.problems.append("terminology repaired from the n-best list")
            compliance = core.check_terms(segment, restored.segment, source_lang, target_lang)
            turn.terms = compliance.as_dict() if compliance is not None else None
            session.turns.append(turn)
            self._save(session)
        return session

    def revise(self, session: Session | str, instruction: str) -> Session:
        """Add an instruction turn; the model revises its last translation (checked, retried once on failure)."""
        with self._lock:
            session = self._session(session)
            if not session.turns:
                raise SessionError("the session has no translation to revise")
            rendered = session.rendered
            request = prompts.revision_request(instruction, has_tags=bool(rendered.codes))
            iset = InstructionSet.parse([instruction], max_length=session.max_length)
            turn = Turn(instruction.strip(), request, "", session.source, new_checks=list(iset.checks))
            turn.report.unverifiable = list(iset.unverifiable)
            session.turns.append(turn)
            try:
                self._answer(session, turn)
            except BaseException:
                session.turns.pop()
                raise
            self._save(session)
            return session

    def undo(self, session: Session | str) -> Session:
        """Drop the last revision (the first translation cannot be undone)."""
        with self._lock:
            session = self._session(session)
            if len(session.turns) <= 1:
                raise SessionError("nothing to undo: this is the first translation")
            session.turns.pop()
            self._save(session)
            return session

    def accept(self, session: Session | str, turn: int | None = None, *, force: bool = False,
               tm=None) -> Accepted:
        """Accept the current (or the given) revision; it is written to the TM when one is attached."""
        with self._lock:
            session = self._session(session)
            if not session.turns:
                raise SessionError("the session has no translation to accept")
            index = len(session.turns) - 1 if turn is None else turn
            if index < 0:
                index += len(session.turns)
            if not 0 <= index < len(session.turns):
                raise SessionError(f"no turn {turn} in this session (it has {len(session.turns)})")
            chosen = session.turns[index]
            if not chosen.ok and not force:
                raise SessionError("the inline codes of this revision could not be restored safely: "
                                   + "; ".join(chosen.problems),
                                   hint="revise it (e.g. 'keep the tags around the same words') or accept with force")
            if chosen.segment.is_empty() or not chosen.segment.text.strip():
                raise SessionError("the translation is empty")
            memory = tm if tm is not None else self.tm
            entry = None
            if memory is not None:
                context = {k: session.meta[k] for k in ("resname", "msgctxt", "key", "previous_source",
                                                        "next_source") if session.meta.get(k)}
                entry = memory.add(session.source, chosen.segment, session.source_lang, session.target_lang,
                                   context=context or None, origin=ORIGIN)
            session.accepted = Accepted(index, chosen.segment, entry)
            self._save(session)
            return session.accepted

    def get(self, session_id: str) -> Session:
        return self.store.get(session_id)

    def delete(self, session_id: str) -> bool:
        return self.store.delete(session_id)

    def prompt(self, session: Session, upto: int | None = None) -> list[dict[str, str]]:
        """The messages actually sent for turn ``upto`` (default: the last): the conversation, left-truncated to
        fit the context window."""
        return self._fit(session.messages(upto), session.rendered.text)[0]

    # -- internals ----------------------------------------------------------------------------------------

    def _session(self, session: Session | str) -> Session:
        return self.store.get(session) if isinstance(session, str) else session

    def _save(self, session: Session) -> None:
        session.updated = time.time()
        self.store.save(session)

    def _fit(self, messages: list[dict[str, str]], source: str) -> tuple[list[dict[str, str]], int]:
        """Leave out the oldest exchanges (assistant answer + next instruction) after the first request until
        the prompt and the answer's token budget fit the context window."""
        limit = self.context_tokens
        budget = self.engine.budget(source, self.options)
        dropped = 0
        msgs = list(messages)
        while len(self.engine.render(msgs).ids) + budget > limit:
            if len(msgs) <= 3:
                if len(self.engine.render(msgs).ids) >= limit:
                    raise SessionError(f"the conversation does not fit the model's context ({limit} tokens) even "
                                       "with only the first request and the latest exchange",
                                       hint="start a new session with a shorter segment or instruction")
                break  # the answer may be cut short (Turn.truncated)
            del msgs[1:3]
            dropped += 1
        return msgs, dropped

    def _generate(self, messages: list[dict[str, str]], source: str):
        return self.engine.generate([messages], self.options, sources=[source])[0]

    def _restore(self, session: Session, rendered: codes.Rendered, gen) -> tuple[codes.Restored, str, str]:
        """The core's cleanup and code restoration (C0/C1 controls, the source's outer blanks, codes.parse)."""
        raw = gen.text
        restored = self.core.repair.restore(rendered, raw, session.target_lang)
        return restored, codes.render_like(rendered, restored.segment)[0], raw

    def _answer(self, session: Session, turn: Turn) -> None:
        """Generate the answer to a revision ``turn`` (already the last of ``session.turns``), check the
        instructions in force, retry once on failure. (The first turn is the core's: :meth:`start`.)"""
        rendered = session.rendered
        upto = len(session.turns) - 1
        messages = session.messages(upto)
        messages, dropped = self._fit(messages, rendered.text)
        gen = self._generate(messages, rendered.text)
        restored, markup, raw = self._restore(session, rendered, gen)
        iset = InstructionSet(checks=session.checks)
        results = iset.verify(restored.segment.text, session.target_lang)
        report = turn.report
        report.results, report.retried, report.first_failed = results, False, []
        failed = [r for r in results if not r.passed]
        retry = iset.retry_messages(messages, markup, results) if failed else None
        if retry is not None:
            try:
                retry, _ = self._fit(retry, rendered.text)
            except SessionError:  # no room for the feedback turn: keep the first answer, checks as they are
                retry = None
        if retry is not None:
            gen2 = self._generate(retry, rendered.text)
            restored2, markup2, raw2 = self._restore(session, rendered, gen2)
            results2 = iset.verify(restored2.segment.text, session.target_lang)
            report.retried = True
            report.first_failed = [r.message for r in failed]
            if choose(results, results2) and (restored2.ok or not restored.ok):
                gen, restored, markup, raw, results = gen2, restored2, markup2, raw2, results2
            report.results = results
        turn.markup, turn.segment, turn.raw = markup, restored.segment, raw
        turn.ok, turn.problems = restored.ok, list(restored.problems)
        turn.truncated, turn.log_prob, turn.dropped = gen.truncated, gen.log_prob, dropped
        compliance = self.core.check_terms(session.source, restored.segment, session.source_lang,
                                           session.target_lang)
        turn.terms = compliance.as_dict() if compliance is not None else None


def open_manager(engine, sessions: str | Path | None = None, **kwargs) -> SessionManager:
    """A manager over a session file (``None``: kept in memory only)."""
    return SessionManager(engine, SessionStore(sessions or ":memory:"), **kwargs)

