"""The translation core: the one road from a segment to a checked target, for every door.

``tower-cat translate``/``post-edit`` (``pipeline``), every HTTP protocol (``adapters/service.Service``),
interactive sessions (``sessions``) and the Python API (:class:`Translator`) send segments here and get
:class:`SegmentResult` back. What a segment goes through, once, in this module::

    TM reuse (TMReuse)          100/101 % match whose codes map onto the segment -> filled, no model
    prompt (PromptFitter)       notes for short strings, neighbours, glossary terms, TM examples (best match
                                first, as ``finetune/data.py`` trains), instructions; fitted to the context
                                window or refused (SegmentTooLong) before any engine work
    engine                      ``generate(prompts, options, sources=...)``: the engine itself, or the
                                server's micro-batcher (steps are driven by :meth:`Translator.run` or
                                by an async driver that awaits the batcher)
    repair (OutputRepair)       output cleaned (``clean_output``), codes restored (``codes.parse``), terminology
                                repaired from the n-best list, instructions checked and retried once
    QA (Translator.quality)     ``qa.check_unit`` + glossary compliance

The steps that need the engine are generators: they ``yield`` a :class:`GenerateCall` and receive the
generations, so the same code runs synchronously (files, Python) and inside the server's event loop (the
server awaits its batcher between steps, so concurrent HTTP requests still share engine batches).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Generator, Iterable, Sequence, Union

from tower_cat import codes, prompts, qa
from tower_cat.codes import Rendered
from tower_cat.document import Segment, Unit
from tower_cat.errors import SegmentTooLong, TowerCatError
from tower_cat.terminology import UnitCompliance

__all__ = [
    "TranslationOptions", "SegmentRequest", "SegmentResult", "Translator", "GenerateCall", "Prepared", "Choice",
    "TMReuse", "TMHit", "PromptFitter", "OutputRepair", "clean_output", "default_cache_path", "load",
]

GenerateFn = Callable[..., list]  # (prompts, options, *, sources) -> list[Generation]


@dataclass
class TranslationOptions:
    """How segments are translated. Languages fill in what a file lacks (a file's own languages win)."""

    source_lang: str | None = None
    target_lang: str | None = None
    overwrite: bool = False            # files: translate units that already have a target
    few_shot: int = 3                  # fuzzy TM matches shown as examples
    fuzzy_min: float = 70.0            # lowest TM score used as an example
    exact_status: str = "needs-review"  # status of a 100 % TM match
    context_status: str = "translated"  # status of a 101 % (context) TM match
    context_window: int = 1            # files: neighbouring source segments on each side given as context
    notes: bool = True                 # resource key / notes / msgctxt as context for short strings
    short_words: int = 8               # "short string": at most this many words
    term_repair: int = 4               # n-best width for terminology repair (0: off)
    chunk_size: int | None = None      # files: prompts per engine call (progress and resume granularity);
                                       # None: Engine.preferred_chunk (128 on the CPU, 512 on a GPU)
    max_new_tokens: int = 256
    generation: Any = None             # engine.GenerationOptions; None: greedy with max_new_tokens
    translated_above: float | None = None  # confidence (0-100) at which clean MT is written "translated"
    max_context_tokens: int | None = None  # the model's context length (None: read from the model)
    instructions: tuple[str, ...] = ()  # translator's instructions: in every prompt, checked, one retry
    ape_below: float | None = None     # files + QE backend: post-edit MT scoring below this (0-100), keep the better
    post_edit_scope: Any = None        # post-edit files: a scope.PostEditScope (None: the default scope)

    def generation_options(self):
        from tower_cat.engine import GenerationOptions

        return self.generation or GenerationOptions(max_new_tokens=self.max_new_tokens)


@dataclass
class SegmentRequest:
    """One segment to translate (or, with ``target``, to post-edit), with what the prompt may use."""

    source: Segment
    id: str | None = None
    context_before: Sequence[str] = ()   # neighbouring source text (dropped first when the prompt is too long)
    context_after: Sequence[str] = ()
    notes: Sequence[str] = ()            # developer notes (used for short strings, with msgctxt and resname)
    msgctxt: str | None = None
    resname: str | None = None
    unit: Unit | None = None             # a file's unit: its context decides 101 % TM matches
    terms: Sequence[tuple[str, str]] = ()  # ad-hoc terms, used when the source contains them
    prompt_terms: Sequence[tuple[str, str]] | None = None  # exactly these terms (None: the glossaries')
    examples: Sequence[tuple[str, str]] | None = None      # exactly these examples (None: the TM's)
    instructions: Sequence[str] = ()     # this segment's own instructions (after the options')
    max_length: int | None = None        # character limit (QA, instruction checks)
    target: Segment | None = None        # post-edit: the translation to correct
    source_lang: str | None = None       # this segment's source language (default: the call's)

    @classmethod
    def of_unit(cls, unit: Unit, *, context_before: Sequence[str] = (), context_after: Sequence[str] = (),
                **kw) -> "SegmentRequest":
        """A request for a file's unit: its source, notes, context key and character limit come along."""
        limit = unit.max_length if (unit.size_unit or "char") in ("char", "character") else None
        return cls(unit.source, id=unit.id, context_before=context_before, context_after=context_after,
                   notes=list(unit.notes), msgctxt=unit.context.msgctxt, resname=unit.context.resname, unit=unit,
                   max_length=limit, target=unit.target if unit.has_target else None, **kw)

    @classmethod
    def coerce(cls, value: "SegmentRequest | Segment | Unit | str") -> "SegmentRequest":
        if isinstance(value, SegmentRequest):
            return value
        if isinstance(value, Unit):
            return cls.of_unit(value)
        if isinstance(value, Segment):
            return cls(value)
        if isinstance(value, str):
            return cls(Segment.from_text(value))
        raise TypeError(f"cannot translate a {type(value).__name__}: give text, a Segment, a Unit or a "
                        "SegmentRequest")

    @property
    def query(self) -> Segment | Unit:
        """What the TM is asked about: the unit (its context decides 101 %) or the segment."""
        return self.unit if self.unit is not None else self.source


@dataclass
class SegmentResult:
    """What became of one segment. ``origin``: tm-exact | tm-context | mt | post-edit | copy; None when nothing
    could be written (``reason`` says why)."""

    source: Segment
    target: Segment | None
    origin: str | None
    id: str | None = None
    source_lang: str | None = None
    target_lang: str | None = None
    tm_score: float | None = None        # the best TM match's score (0-101), reused or shown as example
    confidence: float | None = None      # MT: 100 * exp(mean token log-prob)
    tags_ok: bool = True                 # the codes were restored safely
    problems: list[str] = field(default_factory=list)  # code repairs / flags (codes.parse)
    qa: list[qa.QAIssue] = field(default_factory=list)
    terms: Any = None                    # terminology.UnitCompliance of the target (None: no glossary)
    prompt_terms: list[tuple[str, str]] = field(default_factory=list)
    examples: int = 0                    # TM examples in the prompt
    truncated: bool = False              # the model stopped at the token limit
    terms_repaired: bool = False         # the target came from the n-best list to use the glossary's terms
    instructions: Any = None             # instructions.InstructionReport
    alternatives: list[Segment] = field(default_factory=list)
    reason: str | None = None
    generation: Any = None

    @property
    def text(self) -> str:
        """The target's plain text ('' when nothing was written)."""
        return self.target.text if self.target is not None else ""

    @property
    def terms_ok(self) -> bool | None:
        return None if self.terms is None or not self.terms.hits else self.terms.ok

    def __str__(self) -> str:
        return self.text


@dataclass
class GenerateCall:
    """What a step asks the engine for; the driver sends back one Generation per prompt."""

    prompts: list
    options: Any
    sources: list


@dataclass
class Prepared:
    """A prompt ready for the engine, and what finishing its output needs."""

    request: SegmentRequest
    rendered: Rendered
    messages: list[dict]
    src_lang: str
    tgt_lang: str
    terms: list[tuple[str, str]]
    examples: int = 0
    before: str | None = None            # post-edit: the translation, numbered like the source
    before_problems: list[str] = field(default_factory=list)
    instructions: Any = None             # instructions.InstructionSet (None: no instructions)
    tm_score: float | None = None

    @property
    def source(self) -> str:
        return self.rendered.text


@dataclass
class Choice:
    """The kept output of one prompt: the first generation, an n-best hypothesis with the glossary's terms, or
    the instruction retry."""

    text: str
    generation: Any
    terms_repaired: bool = False
    instructions: Any = None             # instructions.InstructionReport

    @property
    def truncated(self) -> bool:
        return bool(self.generation.truncated)

    @property
    def log_prob(self) -> float | None:
        return self.generation.log_prob


Steps = Generator[GenerateCall, list, Any]


def default_cache_path():
    """Where generations are cached unless told otherwise: ``$TOWER_CAT_CACHE`` or
    ``~/.cache/tower-cat/generations.sqlite`` (``$XDG_CACHE_HOME`` respected)."""
    import os
    from pathlib import Path

    env = os.environ.get("TOWER_CAT_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tower-cat" / "generations.sqlite"


# --------------------------------------------------------------------------------------------------- output

_JUNK = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


def clean_output(text: str, target_lang: str | None, source_markup: str) -> str:
    """Model output -> markup to parse: ``prompts.clean_translation``, then control characters (C0 and C1) and
    U+FFFD (broken byte sequences) the source does not have removed, then the source's leading/trailing blanks."""
    out = prompts.clean_translation(text, target_lang)
    if _JUNK.search(out):
        keep = set(_JUNK.findall(source_markup))
        out = _JUNK.sub(lambda m: m.group(0) if m.group(0) in keep else "", out)
    return _with_source_whitespace(source_markup, out)


def _with_source_whitespace(markup: str, output: str) -> str:
    """Models drop leading/trailing blanks: give the output those of the source markup."""
    if not markup.strip():
        return output
    lead = markup[:len(markup) - len(markup.lstrip())]
    trail = markup[len(markup.rstrip()):]
    return lead + output.strip() + trail


# --------------------------------------------------------------------------------------------------- TM reuse

@dataclass
class TMHit:
    """A 100/101 % TM match mapped onto the segment's own codes."""

    match: Any
    restored: codes.Restored

    @property
    def origin(self) -> str:
        return "tm-context" if self.match.kind == "context" else "tm-exact"


def tm_markup(match) -> tuple[str, str, list[str]]:
    """A TM match as the model sees it: source and target numbered alike, and the problems of numbering the
    target like the source (codes that do not line up)."""
    rendered = codes.render(match.source)
    tgt, problems = codes.render_like(rendered, match.target)
    return rendered.text, tgt, problems


class TMReuse:
    """Exact matches that fill a segment, fuzzy matches that become examples (best first)."""

    def __init__(self, tm, *, few_shot: int = 3, fuzzy_min: float = 70.0):
        self.tm = tm
        self.few_shot = few_shot
        self.fuzzy_min = fuzzy_min

    def exact(self, query: Segment | Unit, rendered: Rendered, src: str, tgt: str, *,
              can_store: Callable[[str], bool] | None = None) -> TMHit | None:
        """The best 100/101 % match when its codes map onto the segment's (same numbered markup) and the file
        can store its text; None otherwise (the segment goes to the model with the match as an example)."""
        if self.tm is None:
            return None
        for m in self.tm.lookup(query, src, tgt, limit=1, min_score=100.0, fuzzy=False):
            if m.score < 100:
                continue
            src_markup, tgt_markup, problems = tm_markup(m)
            if src_markup != rendered.text or problems:
                return None
            restored = codes.parse(rendered, tgt_markup)
            if not restored.ok or (can_store is not None and not can_store(restored.segment.text)):
                return None
            return TMHit(m, restored)
        return None

    def examples(self, query: Segment | Unit, src: str, tgt: str) -> tuple[list[tuple[str, str]], float | None]:
        """Few-shot examples, best match first (the order ``finetune/data.py`` trains with), as numbered-tag
        markup; matches whose codes do not line up are left out. Also the best score."""
        if self.tm is None or self.few_shot <= 0:
            return [], None
        out: list[tuple[str, str]] = []
        best = None
        for m in self.tm.lookup(query, src, tgt, limit=self.few_shot, min_score=self.fuzzy_min):
            best = m.score if best is None else best
            if len(out) >= self.few_shot:
                break
            s, t, problems = tm_markup(m)
            if not problems and s.strip() and t.strip():
                out.append((s, t))
        return out, best


# --------------------------------------------------------------------------------------------------- prompts

class PromptFitter:
    """Prompts that fit the model's context window with room for the answer; the only place prompts are built."""

    def __init__(self, engine, *, max_context_tokens: int | None = None):
        self.engine = engine
        self.max_context_tokens = max_context_tokens
        self._ctx_len: int | None = None
        self._overhead: int | None = None

    @property
    def wording(self) -> str:
        return self.engine.info.wording if self.engine is not None else "instruct"

    def context_length(self) -> int:
        if self._ctx_len is None:
            self._ctx_len = self.max_context_tokens or self.engine.context_length
        return self._ctx_len

    def _prompt_tokens(self, messages: list[dict], exact: bool) -> int:
        content = "".join(m["content"] for m in messages)
        if self._overhead is None:
            self._overhead = len(self.engine.render([{"role": "user", "content": ""}]).tokens) + 8
        if not exact:  # byte-level BPE and SentencePiece never make more tokens than UTF-8 bytes (+ a few)
            return len(content.encode("utf-8")) + self._overhead
        return self.engine.count_tokens(content) + self._overhead

    def fits(self, messages: list[dict], source: str, gen) -> bool:
        limit = self.context_length() - self.engine.budget(source, gen)
        return self._prompt_tokens(messages, False) <= limit or self._prompt_tokens(messages, True) <= limit

    def translate(self, markup: str, src: str, tgt: str, *, examples: list, terms: list, before: list,
                  after: list, notes: list, instructions: Sequence[str], gen) -> list[dict] | None:
        """Translation messages that fit: the farthest context goes first, then examples, notes, terms."""
        wording = self.wording
        while True:
            messages = prompts.translate_messages(markup, src, tgt, wording=wording, examples=examples,
                                                  terms=terms, context_before=before, context_after=after,
                                                  notes=notes)
            if instructions:
                messages = prompts.add_instructions(messages, instructions, wording=wording)
            if self.fits(messages, markup, gen):
                return messages
            if after:
                after.pop()
            elif before:
                before.pop(0)
            elif examples:
                examples.pop()
            elif notes:
                notes.pop()
            elif terms:
                terms = []
            else:
                return None

    def bare(self, text: str, src: str, tgt: str) -> list[dict]:
        """The model card's translation prompt with no extras (what ``qe.LogprobBackend`` scores a target under)."""
        return prompts.translate_messages(text, src, tgt, wording=self.wording)

    def post_edit(self, source: str, translation: str, src: str, tgt: str, *, terms: list,
                  gen) -> list[dict] | None:
        messages = prompts.post_edit_messages(source, translation, src, tgt, terms=terms, wording=self.wording)
        return messages if self.fits(messages, source, gen) else None


# --------------------------------------------------------------------------------------------------- repair

class OutputRepair:
    """Model output -> the segment's codes; terminology repair from the n-best list; instruction checks with one
    retry. The steps that need the engine yield a GenerateCall."""

    def __init__(self, fitter: PromptFitter, glossaries: Sequence, *, term_repair: int, gen):
        self.fitter = fitter
        self.glossaries = glossaries
        self.term_repair = term_repair
        self.gen = gen

    @staticmethod
    def restore(rendered: Rendered, text: str, tgt: str | None) -> codes.Restored:
        return codes.parse(rendered, clean_output(text, tgt, rendered.text))

    def _terms_ok(self, p: Prepared, segment: Segment) -> bool:
        return all(g.check(p.request.source, segment, p.src_lang, p.tgt_lang).ok for g in self.glossaries)

    def complete(self, batch: Sequence[Prepared], gens: Sequence) -> Steps:
        """Choose each prompt's output: term repair (translations whose prompt had terms, when the glossary check
        fails: the first n-best hypothesis that restores and complies), then instruction checks (one retry with
        the failed checks fed back; the better of the two kept)."""
        choice = [Choice(g.text, g) for g in gens]
        if self.glossaries and self.term_repair > 1:
            repair = [i for i, p in enumerate(batch) if p.terms and p.before is None
                      and not self._terms_ok(p, self.restore(p.rendered, gens[i].text, p.tgt_lang).segment)]
            if repair:
                k = self.term_repair
                opts = replace(self.gen, beam_size=k, num_hypotheses=k, sampling_topk=1)
                alts = yield GenerateCall([batch[i].messages for i in repair], opts,
                                          [batch[i].source for i in repair])
                for i, alt in zip(repair, alts):
                    p = batch[i]
                    for hyp in alt.hypotheses:
                        restored = self.restore(p.rendered, hyp.text, p.tgt_lang)
                        if restored.ok and self._terms_ok(p, restored.segment):
                            choice[i] = Choice(hyp.text, _HypGen(hyp), terms_repaired=True)
                            break
        if any(p.instructions is not None for p in batch):
            yield from self._check_instructions(batch, choice)
        return choice

    def _check_instructions(self, batch: Sequence[Prepared], choice: list[Choice]) -> Steps:
        from tower_cat.instructions import InstructionReport, choose

        retry = []
        for i, p in enumerate(batch):
            iset = p.instructions
            if iset is None:
                continue
            restored = self.restore(p.rendered, choice[i].text, p.tgt_lang)
            results = iset.verify(restored.segment.text, p.tgt_lang)
            choice[i].instructions = InstructionReport(results, list(iset.unverifiable))
            messages = iset.retry_messages(p.messages, codes.render_like(p.rendered, restored.segment)[0], results)
            if messages is not None and self.fitter.fits(messages, p.source, self.gen):
                retry.append((i, results, messages))
        if not retry:
            return
        gens = yield GenerateCall([r[2] for r in retry], self.gen, [batch[r[0]].source for r in retry])
        for (i, results, _), gen in zip(retry, gens):
            p = batch[i]
            restored = self.restore(p.rendered, gen.text, p.tgt_lang)
            results2 = p.instructions.verify(restored.segment.text, p.tgt_lang)
            report = choice[i].instructions
            report.retried = True
            report.first_failed = [r.message for r in results if not r.passed]
            if restored.ok and restored.segment.text.strip() and choose(results, results2):
                choice[i] = Choice(gen.text, gen, choice[i].terms_repaired, report)
                report.results = results2


@dataclass
class _HypGen:
    """A Hypothesis dressed as a Generation (text, log_prob, truncated, hypotheses)."""

    hyp: Any

    @property
    def text(self) -> str:
        return self.hyp.text

    @property
    def log_prob(self):
        return self.hyp.log_prob

    @property
    def truncated(self) -> bool:
        return self.hyp.truncated

    @property
    def hypotheses(self) -> tuple:
        return (self.hyp,)


# --------------------------------------------------------------------------------------------------- markup

def _parse_markup(text: str, markup: str):
    """(segment, write-back) for a string with inline codes in the given markup."""
    if markup == "tags":
        from tower_cat.sessions import segment_from_markup

        segment = segment_from_markup(text)
        return segment, lambda target: codes.render_like(codes.render(segment), target)[0]
    from tower_cat.adapters.tags import MODES, parse_markup

    if markup not in MODES:
        from tower_cat.errors import InvalidArgument

        raise InvalidArgument(f"unknown markup {markup!r}; use {', '.join(MODES)} or tags")
    parsed = parse_markup(text, markup)
    return parsed.segment, parsed.render


# --------------------------------------------------------------------------------------------------- glossaries

def _glossary_list(glossary) -> list:
    if glossary is None:
        return []
    if isinstance(glossary, (list, tuple)):
        return [g for g in glossary if g is not None]
    return [glossary]


# --------------------------------------------------------------------------------------------------- translator

Source = Union[SegmentRequest, Segment, Unit, str]


class Translator:
    """Engine + TM + glossaries + options: segments in, :class:`SegmentResult` out.

    ``engine``: a ``tower_cat.engine.Engine`` (or anything with the ``protocols.TranslationEngine`` surface);
    ``tm``: a ``tower_cat.tm.TranslationMemory`` (or a ``protocols.TranslationMemoryLike``); ``glossary``: a
    ``terminology.Glossary`` or a list of them; ``generate``: how engine calls are made (default:
    ``engine.generate``; the server passes its micro-batcher).
    """

    def __init__(self, engine, *, tm=None, glossary=None, options: TranslationOptions | None = None,
                 generate: GenerateFn | None = None, fitter: PromptFitter | None = None):
        self.engine = engine
        self.tm = tm
        self.glossaries = _glossary_list(glossary)
        self.options = options or TranslationOptions()
        self.gen = self.options.generation_options()
        self._generate = generate
        self.fitter = fitter or PromptFitter(engine, max_context_tokens=self.options.max_context_tokens)
        self.reuse = TMReuse(tm, few_shot=self.options.few_shot, fuzzy_min=self.options.fuzzy_min)
        self.repair = OutputRepair(self.fitter, self.glossaries, term_repair=self.options.term_repair, gen=self.gen)
        self.model_seconds = 0.0         # inside the engine (run / generate)
        self.prompts_sent = 0
        self._owned: list = []           # what close() closes (load: the engine and TM; QE models it opened)

    @property
    def wording(self) -> str:
        return self.fitter.wording

    # -- engine -----------------------------------------------------------------------------------------

    def generate(self, prompts_: list, options=None, *, sources: list | None = None) -> list:
        """One engine call (timed)."""
        fn = self._generate or self.engine.generate
        t0 = time.perf_counter()
        try:
            return fn(prompts_, options or self.gen, sources=sources)
        finally:
            self.model_seconds += time.perf_counter() - t0

    def run(self, steps: Steps) -> Any:
        """Drive a step generator with this translator's engine calls; returns the generator's result."""
        try:
            call = next(steps)
            while True:
                self.prompts_sent += len(call.prompts)
                call = steps.send(self.generate(call.prompts, call.options, sources=call.sources))
        except StopIteration as stop:
            return stop.value

    # -- terms and quality -------------------------------------------------------------------------------

    def prompt_terms(self, request: SegmentRequest, src: str, tgt: str) -> list[tuple[str, str]]:
        """The glossary terms found in the source (every glossary, in order), then ad-hoc terms the source has."""
        if request.prompt_terms is not None:
            return [tuple(t) for t in request.prompt_terms]
        out: list[tuple[str, str]] = []
        for g in self.glossaries:
            for pair in g.prompt_terms(request.source, src, tgt):
                if tuple(pair) not in out:
                    out.append(tuple(pair))
        low = request.source.text.lower()
        for pair in request.terms:
            if pair[0] and pair[0].lower() in low and tuple(pair) not in out:
                out.append(tuple(pair))
        return out

    def check_terms(self, source: Segment, target: Segment, src: str, tgt: str, unit_id: str = ""):
        """Glossary compliance of a target (None without a glossary)."""
        if not self.glossaries:
            return None
        results = [g.check(source, target, src, tgt, unit_id=unit_id) for g in self.glossaries]
        if len(results) == 1:
            return results[0]
        merged = UnitCompliance(unit_id, source.text, target.text)  # several glossaries' as one
        for r in results:
            merged.hits += r.hits
            merged.issues += r.issues
            merged.ok_hits += r.ok_hits
        return merged

    def quality(self, source: Segment, target: Segment, src: str, tgt: str, *, max_length: int | None = None,
                size_unit: str | None = None, doc=None, unit_id: str = "", terms: Any = ...):
        """(QA issues, glossary compliance) of a target."""
        if terms is ...:
            terms = self.check_terms(source, target, src, tgt, unit_id)
        issues = qa.check_unit(source, target, max_length=max_length, size_unit=size_unit, doc=doc, terms=terms)
        return issues, terms

    @staticmethod
    def confidence(gen) -> float | None:
        return None if gen is None or gen.log_prob is None else 100.0 * math.exp(min(0.0, gen.log_prob))

    # -- preparing prompts -------------------------------------------------------------------------------

    def _notes(self, request: SegmentRequest) -> list[str]:
        if (not self.options.notes or self.wording == "base"
                or request.source.words() > self.options.short_words):
            return []
        return prompts.unit_notes(request.msgctxt, request.resname, list(request.notes))

    def _instructions(self, request: SegmentRequest):
        texts = list(self.options.instructions) + list(request.instructions)
        if not texts:
            return None
        from tower_cat.instructions import InstructionSet

        return InstructionSet.parse(texts, max_length=request.max_length)

    def _too_long(self, request: SegmentRequest, what: str = "segment") -> SegmentTooLong:
        text = request.source.text
        excerpt = " ".join(text.split())[:40] + ("…" if len(text) > 40 else "")
        return SegmentTooLong(f"the {what} {excerpt!r} ({len(text)} characters) is too long for the model's "
                              f"context window ({self.fitter.context_length()} tokens, with room for the answer)",
                              unit=request.id if request.id is not None else None,
                              hint="split it into shorter segments")

    def prepare_translation(self, request: SegmentRequest, src: str, tgt: str, *,
                            rendered: Rendered | None = None) -> Prepared:
        """The translation prompt: notes (short strings), neighbours, glossary terms, TM examples (best first),
        instructions, fitted to the context window. Raises SegmentTooLong when even the bare prompt is too long."""
        rendered = rendered or codes.render(request.source)
        tm_score = None
        if request.examples is not None:
            examples = [tuple(e) for e in request.examples]
        else:
            examples, tm_score = self.reuse.examples(request.query, src, tgt)
        terms = self.prompt_terms(request, src, tgt)
        base = self.wording == "base"
        before = [] if base else [t for t in request.context_before if t]
        after = [] if base else [t for t in request.context_after if t]
        iset = self._instructions(request)
        n_examples = len(examples)
        messages = self.fitter.translate(rendered.text, src, tgt, examples=examples, terms=list(terms),
                                         before=before, after=after, notes=self._notes(request),
                                         instructions=iset.instructions if iset else (), gen=self.gen)
        if messages is None:
            raise self._too_long(request)
        return Prepared(request, rendered, messages, src, tgt, terms, min(n_examples, len(examples)),
                        instructions=iset, tm_score=tm_score)

    def prepare_post_edit(self, request: SegmentRequest, src: str, tgt: str, *,
                          rendered: Rendered | None = None) -> Prepared:
        """The post-edit prompt: source and translation numbered alike, the glossary terms of the source."""
        if request.target is None:
            raise TowerCatError("there is no translation to post-edit", unit=request.id)
        rendered = rendered or codes.render(request.source)
        before, problems = codes.render_like(rendered, request.target)
        terms = self.prompt_terms(request, src, tgt)
        messages = self.fitter.post_edit(rendered.text, before, src, tgt, terms=list(terms), gen=self.gen)
        if messages is None:
            raise self._too_long(request, "segment with its translation")
        return Prepared(request, rendered, messages, src, tgt, terms, before=before, before_problems=problems)

    def complete_steps(self, batch: Sequence[Prepared]) -> Steps:
        """Generate prepared prompts and choose each output (term repair, instruction checks)."""
        if not batch:
            return []
        gens = yield GenerateCall([p.messages for p in batch], self.gen, [p.source for p in batch])
        return (yield from self.repair.complete(batch, gens))

    # -- whole segments ----------------------------------------------------------------------------------

    def _langs(self, request: SegmentRequest, source_lang: str | None, target_lang: str | None) -> tuple[str, str]:
        src = request.source_lang or source_lang or self.options.source_lang
        tgt = target_lang or self.options.target_lang
        if not src or not tgt:
            raise TowerCatError("the source and the target language are needed", unit=request.id,
                                hint="give source_lang and target_lang, e.g. 'en' and 'de'")
        return src, tgt

    def translate_steps(self, sources: Iterable[Source], source_lang: str | None = None,
                        target_lang: str | None = None, *, alternatives: int = 0) -> Steps:
        """Every segment: TM reuse, else a prompt (all prompts are built and fitted before any engine work), one
        engine call, repair, QA. ``alternatives``: up to that many other n-best translations per MT segment."""
        requests = [SegmentRequest.coerce(s) for s in sources]
        results: list[SegmentResult | None] = [None] * len(requests)
        todo: list[tuple[int, Prepared]] = []
        for i, req in enumerate(requests):
            src, tgt = self._langs(req, source_lang, target_lang)
            if not req.source.text.strip():  # only codes / blanks: nothing for the model
                results[i] = SegmentResult(req.source, req.source, "copy", req.id, src, tgt)
                continue
            rendered = codes.render(req.source)
            hit = self.reuse.exact(req.query, rendered, src, tgt)
            if hit is not None:
                res = SegmentResult(req.source, hit.restored.segment, hit.origin, req.id, src, tgt,
                                    tm_score=hit.match.score, tags_ok=hit.restored.ok,
                                    problems=list(hit.restored.problems))
                res.qa, res.terms = self.quality(req.source, res.target, src, tgt, max_length=req.max_length,
                                                 unit_id=str(req.id or ""))
                results[i] = res
                continue
            todo.append((i, self.prepare_translation(req, src, tgt, rendered=rendered)))
        if todo:
            batch = [p for _, p in todo]
            gens = yield GenerateCall([p.messages for p in batch], self.gen, [p.source for p in batch])
            alt_gens = None
            if alternatives > 0:
                opts = replace(self.gen, beam_size=alternatives + 1, num_hypotheses=alternatives + 1)
                alt_gens = yield GenerateCall([p.messages for p in batch], opts, [p.source for p in batch])
            choices = yield from self.repair.complete(batch, gens)
            for k, ((i, p), choice) in enumerate(zip(todo, choices)):
                res = self._finish(p, choice, "mt")
                if alt_gens is not None and res.target is not None:
                    seen = {res.target.text}
                    for h in alt_gens[k].hypotheses:
                        seg = self.repair.restore(p.rendered, h.text, p.tgt_lang).segment
                        if seg.text not in seen and len(res.alternatives) < alternatives:
                            seen.add(seg.text)
                            res.alternatives.append(seg)
                results[i] = res
        return results

    def post_edit_steps(self, sources: Iterable[Source], source_lang: str | None = None,
                        target_lang: str | None = None) -> Steps:
        """Correct each segment's translation (``SegmentRequest.target``); codes restored, QA, terms."""
        requests = [SegmentRequest.coerce(s) for s in sources]
        batch = []
        for req in requests:
            src, tgt = self._langs(req, source_lang, target_lang)
            batch.append(self.prepare_post_edit(req, src, tgt))
        if not batch:
            return []
        gens = yield GenerateCall([p.messages for p in batch], self.gen, [p.source for p in batch])
        choices = yield from self.repair.complete(batch, gens)
        return [self._finish(p, c, "post-edit") for p, c in zip(batch, choices)]

    def _finish(self, p: Prepared, choice: Choice, origin: str) -> SegmentResult:
        req = p.request
        restored = self.repair.restore(p.rendered, choice.text, p.tgt_lang)
        res = SegmentResult(req.source, restored.segment, origin, req.id, p.src_lang, p.tgt_lang,
                            tm_score=p.tm_score, confidence=self.confidence(choice.generation),
                            tags_ok=restored.ok, problems=p.before_problems + list(restored.problems),
                            prompt_terms=list(p.terms), examples=p.examples, truncated=choice.truncated,
                            terms_repaired=choice.terms_repaired, instructions=choice.instructions,
                            generation=choice.generation)
        if not restored.segment.text.strip():
            res.reason = "empty output" + (" (truncated)" if choice.truncated else "")
        elif not restored.ok:
            res.reason = "codes: " + "; ".join(restored.problems)
        res.qa, res.terms = self.quality(req.source, restored.segment, p.src_lang, p.tgt_lang,
                                         max_length=req.max_length, unit_id=str(req.id or ""))
        if choice.truncated:
            res.qa.append(qa.QAIssue("truncated", qa.WARNING, "the model stopped at the token limit"))
        if choice.terms_repaired:
            res.problems.append("terminology repaired from the n-best list")
        return res

    # -- the Python API ---------------------------------------------------------------------------------

    def translate(self, sources: Iterable[Source], source_lang: str | None = None, target_lang: str | None = None,
                  *, alternatives: int = 0) -> list[SegmentResult]:
        """Translate segments (text, Segments, Units or SegmentRequests) in one engine call."""
        return self.run(self.translate_steps(sources, source_lang, target_lang, alternatives=alternatives))

    def translate_text(self, text: str, source_lang: str | None = None, target_lang: str | None = None, *,
                       markup: str = "text") -> str:
        """One string in, its cleaned translation out ('' when the model gave nothing usable). ``markup``: how
        inline codes are written in ``text`` and the answer — ``text`` (none), ``xml`` / ``html`` / ``omegat`` (tags,
        as the server's tag_handling) or ``tags`` (numbered tags such as ``<1>Save</1>``)."""
        segment, write = _parse_markup(text, markup)
        result = self.translate([segment], source_lang, target_lang)[0]
        return write(result.target) if result.target is not None else ""

    def post_edit(self, sources: Iterable[SegmentRequest], source_lang: str | None = None,
                  target_lang: str | None = None) -> list[SegmentResult]:
        return self.run(self.post_edit_steps(sources, source_lang, target_lang))

    def translate_segment(self, source: Source, source_lang: str | None = None,
                          target_lang: str | None = None) -> SegmentResult:
        """One segment (text, Segment, Unit or SegmentRequest) -> its result (target with codes, origin, QA)."""
        return self.translate([source], source_lang, target_lang)[0]

    # -- files --------------------------------------------------------------------------------------------

    def translate_file(self, path, output=None, *, source_lang: str | None = None, target_lang: str | None = None,
                       qe: Any = None, progress=None):
        """Translate an XLIFF/SDLXLIFF/MQXLIFF/PO file into ``output`` (default: the file itself) — the job
        ``tower-cat translate`` runs. ``qe``: a QE backend or its name (``"logprob"``, ``"llm"``: this translator's
        engine judges; see :meth:`qe_backend`) to score the MT (and post-edit below ``options.ape_below``).
        Returns the ``pipeline.JobSummary`` (``summary.failed``, ``summary.totals()``, per-unit results)."""
        return self._run_file("translate", path, output, source_lang, target_lang, qe, progress)

    def post_edit_file(self, path, output=None, *, source_lang: str | None = None, target_lang: str | None = None,
                       qe: Any = None, progress=None):
        """Post-edit the existing targets of a bilingual file into ``output`` (default: the file itself): the units
        in ``options.post_edit_scope`` (``scope.PostEditScope``; default: not confirmed, not 100 % TM). ``qe``: a QE
        backend or its name to gate with (the scope's ``below``, ``options.ape_below``)."""
        return self._run_file("post-edit", path, output, source_lang, target_lang, qe, progress)

    def _run_file(self, task: str, path, output, source_lang, target_lang, qe, progress):
        from pathlib import Path

        from tower_cat.pipeline import run_files

        path = Path(path)
        output = Path(output) if output is not None else path
        output.parent.mkdir(parents=True, exist_ok=True)
        options = replace(self.options, source_lang=source_lang or self.options.source_lang,
                          target_lang=target_lang or self.options.target_lang)
        backend = self.qe_backend(qe) if isinstance(qe, str) else qe
        summary = run_files(task, [path], [output], self.engine, tm=self.tm if task == "translate" else None,
                            glossary=self.glossaries or None, options=options, progress=progress, qe=backend)
        if summary.failed:
            raise TowerCatError(summary.files[0].error or "the file could not be processed", path=path)
        return summary

    def qe_backend(self, name: str = "logprob", model: Any = None, **engine_kwargs):
        """A QE backend. ``llm`` and ``logprob`` share this translator's engine unless ``model`` names another
        model folder (then it is loaded with ``engine_kwargs``: device, compute_type, threads ...); ``comet``
        needs ``model`` (a COMET folder). The judge is asked for a score only (no error spans: half the
        generations). A backend that opened its own model is closed by :meth:`close`."""
        from pathlib import Path

        from tower_cat import qe as qe_mod

        if name == "comet":
            if model is None:
                raise TowerCatError("COMET QE needs a COMET model folder", param="qe_model",
                                    hint="give model= (e.g. a wmt22-cometkiwi-da folder)")
            device = str(engine_kwargs.get("device") or "auto")
            if device not in ("auto", "cpu") and not device.startswith("cuda"):
                device = "auto"  # 0,1 (replicas) is for the translation engine
            backend = qe_mod.CometBackend(model, device=device)
            self._owned.append(backend)
            return backend
        own_path = getattr(self.engine, "path", None)
        own = model is not None and not (own_path is not None and Path(model).resolve() == Path(own_path).resolve())
        kwargs = {k: engine_kwargs[k] for k in ("device", "compute_type", "threads") if own and k in engine_kwargs}
        if name == "llm":
            kwargs["spans"] = False
        backend = qe_mod.get_backend(name, model if own else self.engine, **kwargs)
        if own:
            self._owned.append(backend)
        return backend

    def score_file(self, path, output=None, *, backend: Any = "logprob", source_lang: str | None = None,
                   target_lang: str | None = None) -> list[tuple[str, float | None]]:
        """QE-score every translated unit of a file (0-100): ``[(unit id, score)]``; with ``output`` the scores
        are written into a copy of the file (the formats' own QE fields)."""
        from tower_cat import formats, qe as qe_mod

        from tower_cat.pipeline import resolve_languages

        doc = formats.load(path)
        src, tgt = resolve_languages(doc, replace(self.options, source_lang=source_lang or self.options.source_lang,
                                                  target_lang=target_lang or self.options.target_lang))
        scorer = self.qe_backend(backend) if isinstance(backend, str) else backend
        pairs = qe_mod.score_units(doc.units, scorer, source_lang=src, target_lang=tgt, record=output is not None)
        if output is not None:
            doc.save(output)
        return [(str(u.id), None if r.score is None else round(r.score, 2)) for u, r in pairs]

    def close(self) -> None:
        """Close the engine and TM this translator opened (``load``)."""
        owned, self._owned = self._owned, []
        for thing in reversed(owned):
            thing.close()

    def __enter__(self) -> "Translator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load(model, *, tm=None, glossary=None, cache: Any = ..., device: str = "auto", compute_type: str = "auto",
         threads: int | None = None, **options) -> Translator:
    """A Translator over a model folder (made by ``tower-cat convert``) or an ``Engine``.

    ``tm``: a TM database, a TMX file (imported for this translator), a ``postgresql://`` URL or a TM object;
    ``glossary``: a TBX/CSV/TSV path, a ``terminology.Glossary`` or a list; ``cache``: the SQLite generation
    cache (default: :func:`default_cache_path`; ``None``: none); ``options``: :class:`TranslationOptions`
    fields (``few_shot=3``, ``instructions=(...)``, ``max_new_tokens=256`` ...)."""
    from pathlib import Path

    owned = []
    engine = model
    if isinstance(model, (str, Path)):
        from tower_cat.engine import Engine

        engine = Engine.load(model, device=device, compute_type=compute_type, threads=threads,
                             cache=default_cache_path() if cache is ... else cache)
        owned.append(engine)
    memory = tm
    if isinstance(tm, (str, Path)):
        from tower_cat.tm import open_translation_memory

        memory = open_translation_memory(tm, readonly=True)
        owned.append(memory)
    glossaries = []
    for g in _glossary_list(glossary):
        if isinstance(g, (str, Path)):
            from tower_cat.terminology import Glossary

            g = Glossary.load(g)
        glossaries.append(g)
    if "instructions" in options:
        options["instructions"] = tuple(options["instructions"])
    translator = Translator(engine, tm=memory, glossary=glossaries, options=TranslationOptions(**options))
    translator._owned.extend(owned)
    return translator


# ------------------------------------------------------------------------------------------- quick check


def quick_prompt(engine, text: str, source_lang: str, target_lang: str):
    """The model card's bare translation prompt for ``text`` (no TM, terms or context), or the source itself for
    seq2seq models (Marian, NLLB, M2M-100): what ``tower-cat translate-text`` sends to check a model folder."""
    from tower_cat.convert import SEQ2SEQ
    from tower_cat.engine import SourceText

    if engine.family == SEQ2SEQ:
        return SourceText(text, source_lang, target_lang)
    return prompts.translate_messages(text, source_lang, target_lang, wording=engine.info.wording)


def quick_translate(engine, text: str, source_lang: str, target_lang: str, options=None):
    """One text through :func:`quick_prompt`; the raw ``Generation`` (clean it with ``prompts.clean_translation``)."""
    return engine.generate([quick_prompt(engine, text, source_lang, target_lang)], options, sources=[text])[0]
