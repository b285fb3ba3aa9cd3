"""Jobs over Documents: translate and post-edit, from loaded files to targets written with states and provenance.

The translate job, unit by unit (DESIGN.md, "The job in one picture")::

    skip protected / empty / already translated  ->  TM exact or context hit? fill it, no model
      -> group identical sources (one prompt per distinct source)  ->  prompt: task wording + notes/key for short
         strings + neighbouring source text + glossary terms found in the source + up to N fuzzy TM matches
      -> engine.generate in length-sorted chunks (dedup + SQLite cache: a re-run resumes where it stopped);
         the prompts of later chunks are built in a worker thread while the engine decodes
      -> clean the output, restore inline codes (codes.parse), terminology repair (n-best, keep a compliant one)
      -> QA (qa.py)  ->  unit.set_target(status, origin, match_score)   or a recorded reason why not

Decisions (README: "Translating and post-editing files"):

* **TM leverage.** A 101 % (context) match is written with status ``translated`` and origin ``tm-context``; a
  100 % (exact) match with ``needs-review`` and origin ``tm-exact`` — the same text in another context can
  need another translation ("Open" a file vs an "Open" task), so a person confirms it (``exact_status``
  changes this). A match is used only when its codes map onto the unit's codes (same code signature) and
  the file can store its text; otherwise the unit goes to the model with the match as an example. A TM
  target with a QA error or repaired codes is written ``needs-review``. The TM is searched for exact matches
  per unit (its context decides 101 %) and for fuzzy examples once per distinct source.
* **Machine translation** is written ``needs-review`` with origin ``mt``. With ``translated_above`` set, a unit
  whose confidence (``100 * exp(mean token log-prob)``) reaches it, whose codes needed no repair and whose QA
  has no error is written ``translated``.
* **Identical sources** (same rendered text and codes, same language pair, same ``msgctxt``) are translated
  once: the prompt is built from the first occurrence (its neighbours, notes and TM examples). Units whose
  ``msgctxt`` differs are different messages on purpose and get their own prompt.
* **Codes.** Output is parsed with ``codes.parse`` against each unit's own codes. Safe repairs are written
  (and listed); a flagged result is **not written**: the target stays as it was and the reason is recorded.
* **Not written, with a reason:** text the file's charset cannot store, a source too long for the model's
  context window, output the model truncated with nothing usable, empty output.
* **Post-edit** renders the source and the existing target with the same tag numbering, asks the model to
  correct the target (the core's post-edit prompt, ``core.PromptFitter``), restores the codes and writes the result with
  ``needs-review`` / origin ``post-edit`` when it differs; the change is measured with TER (sacrebleu,
  edits from the original to the post-edited text). Every replaced target (post-edit, ``overwrite``) is passed
  as ``set_target(previous=...)``: the format writes it as a candidate (``alt-trans`` previous-version,
  ``mtc:match``, PO comment); one whose codes the format cannot write that way is dropped from the candidates
  (recorded on the unit) rather than failing the file. The JSON summary has ``before``/``after`` as well.
* **QE-gated post-editing** (translate with a QE backend, ``translate_documents(qe=...)``): the MT targets (not TM
  hits, not skipped units) are scored in one backend call and the scores set on the units (``set_qe``). With
  ``ape_below`` T, those below T (or that the backend could not score) go through the post-edit path above (same
  prompts, glossary terms, code numbering and restoration, same engine), the corrections are re-scored in one call,
  and the better version is kept per unit; a tie keeps the MT. A kept correction is written with origin
  ``post-edit``; the candidate in the file is still what the file had before the job (never the discarded MT).
  Each unit's result records ``qe_before`` / ``qe_after`` / ``qe`` (written) and ``ape`` = applied |
  kept-original | failed (``ape_reason``); the totals count them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tower_cat import codes, qa
from tower_cat.codes import Rendered
from tower_cat.core import (Choice, Prepared, SegmentRequest, TMHit, TranslationOptions, Translator,
                            clean_output)
from tower_cat.document import Document, Segment, Unit
from tower_cat.errors import InvalidArgument, SegmentTooLong, TowerCatError

__all__ = [
    "PipelineOptions", "UnitResult", "FileSummary", "JobSummary", "translate_documents", "post_edit_documents",
    "run_files", "plan_outputs",
]

ProgressCallback = Callable[[int, int], None]  # (units done, units total)

# Reasons a unit is skipped or not written (UnitResult.reason); the summary counts them.
LOCKED, FINAL, NOT_TRANSLATABLE, OBSOLETE = "locked", "final (approved)", 'translate="no"', "obsolete entry (#~)"
HAS_TARGET, NO_TARGET, NO_TEXT = "has a target (use --overwrite)", "no target to post-edit", "no text to translate"
TOO_LONG = "too long for the model's context window"


PipelineOptions = TranslationOptions  # how a job runs (the core's options; the old name kept)


@dataclass
class UnitResult:
    """What happened to one unit. ``action``: tm | mt | post-edit | skipped | not-written."""

    unit: str
    action: str
    status: str | None = None
    origin: str | None = None
    reason: str | None = None
    score: float | None = None          # TM score or MT confidence (0-100)
    qa: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # code repairs / flags from codes.parse
    terms_ok: bool | None = None
    ter: float | None = None            # post-edit: TER from the original target to the new one
    before: str | None = None           # post-edit: the original target (plain text)
    after: str | None = None
    instructions: dict | None = None    # instruction checks (instructions.InstructionReport.as_dict())
    # translate with a QE backend: QE of the MT target, of its post-edited version (QE-gated APE), the score written
    # into the file (the kept version's); ape: applied | kept-original | failed (None: not below the threshold)
    qe_before: float | None = None
    qe_after: float | None = None
    qe: float | None = None
    ape: str | None = None
    ape_reason: str | None = None       # ape == "failed": why the post-edit could not be used
    target: str | None = None           # the target written (plain text), for every written unit


@dataclass
class FileSummary:
    path: str
    output: str | None
    format: str | None = None
    source_lang: str | None = None
    target_lang: str | None = None
    units: int = 0
    error: str | None = None            # a hard failure: the file was not written
    results: list[UnitResult] = field(default_factory=list)
    exception: Any = field(default=None, repr=False, compare=False)  # the TowerCatError behind ``error``

    def count(self, action: str | None = None, **where) -> int:
        return sum(1 for r in self.results if (action is None or r.action == action)
                   and all(getattr(r, k) == v for k, v in where.items()))

    @property
    def written(self) -> int:
        return sum(1 for r in self.results if r.action in ("tm", "mt", "post-edit") and r.status)


@dataclass
class JobSummary:
    task: str                           # translate | post-edit
    files: list[FileSummary] = field(default_factory=list)
    seconds: float = 0.0
    model_seconds: float = 0.0          # inside engine.generate
    prompts: int = 0                    # distinct prompts of the job
    engine: dict[str, int] = field(default_factory=dict)
    terms_checked: int = 0
    terms_ok: int = 0
    qe_backend: str | None = None       # translate with QE: the backend (QEBackend.describe())
    ape_below: float | None = None      # QE-gated post-editing threshold
    qe_seconds: float = 0.0             # inside the QE backend
    scope: str | None = None            # post-edit: what the scope takes (scope.PostEditScope.describe())
    warnings: list[str] = field(default_factory=list)  # e.g. a language outside the model's known languages

    @property
    def results(self) -> list[UnitResult]:
        return [r for f in self.files for r in f.results]

    @property
    def failed(self) -> bool:
        return any(f.error for f in self.files)

    def totals(self) -> dict[str, Any]:
        rs = self.results
        written = [r for r in rs if r.action in ("tm", "mt", "post-edit") and r.status]
        tag_repaired = sum(1 for r in written if r.problems)
        tag_flagged = sum(1 for r in rs if r.action == "not-written" and r.reason and r.reason.startswith("codes"))
        skipped: dict[str, int] = {}
        for r in rs:
            if r.action in ("skipped", "not-written"):
                key = r.reason.split(":")[0] if r.reason else "?"
                skipped[key] = skipped.get(key, 0) + 1
        out = {
            "units": len(rs),
            "tm_leveraged": sum(1 for r in rs if r.action == "tm"),
            "translated": sum(1 for r in rs if r.action == "mt"),
            "post_edited": sum(1 for r in rs if r.action == "post-edit" and r.status),
            "unchanged": sum(1 for r in rs if r.action == "post-edit" and not r.status),
            "skipped": sum(1 for r in rs if r.action == "skipped"),
            "not_written": sum(1 for r in rs if r.action == "not-written"),
            "needs_review": sum(1 for r in written if r.status == "needs-review"),
            "qa_errors": sum(1 for r in written if any(i["severity"] == "error" for i in r.qa)),
            "tag_repaired": tag_repaired,
            "tag_errors": tag_flagged,
            "term_compliance": round(100.0 * self.terms_ok / self.terms_checked, 1) if self.terms_checked else None,
            "terms_checked": self.terms_checked,
            "reasons": skipped,
            "files_failed": sum(1 for f in self.files if f.error),
        }
        if self.task == "post-edit":
            ters = [r.ter for r in rs if r.ter is not None]
            out["mean_ter"] = round(sum(ters) / len(ters), 2) if ters else None
        if self.qe_backend is not None:
            qes = [r.qe for r in rs if r.qe is not None]
            out["qe_scored"] = sum(1 for r in rs if r.qe_before is not None)
            out["qe_mean"] = round(sum(qes) / len(qes), 2) if qes else None
            if self.ape_below is not None:
                out["ape_threshold"] = self.ape_below
                out["ape_candidates"] = sum(1 for r in rs if r.ape is not None)  # below the threshold
                out["ape_improved"] = sum(1 for r in rs if r.ape == "applied")
                out["ape_kept_original"] = sum(1 for r in rs if r.ape == "kept-original")
                out["ape_failed"] = sum(1 for r in rs if r.ape == "failed")
        return out

    def as_dict(self) -> dict[str, Any]:
        qe = ({"qe": {"backend": self.qe_backend, "ape_below": self.ape_below, "seconds": round(self.qe_seconds, 3)}}
              if self.qe_backend is not None else {})
        extra = {k: v for k, v in (("scope", self.scope), ("warnings", self.warnings)) if v}
        return {"task": self.task, "totals": self.totals(), "seconds": round(self.seconds, 3), **extra,
                "model_seconds": round(self.model_seconds, 3), "prompts": self.prompts, "engine": self.engine, **qe,
                "files": [{**{k: getattr(f, k) for k in f.__dataclass_fields__ if k not in ("results", "exception")},
                           "units": f.units, "results": [asdict(r) for r in f.results]} for f in self.files]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=2)


def resolve_languages(doc: Document, opts: PipelineOptions) -> tuple[str, str]:
    """(source, target) of a document: its own, else the options' (PO sources default to English, as
    gettext msgids are). A target language the file lacks is set on the document (the format writes it)."""
    src = doc.source_lang or opts.source_lang or ("en" if doc.format == "po" else None)
    tgt = doc.target_lang or opts.target_lang
    if not src:
        raise TowerCatError("the file does not name its source language", path=doc.path, param="source_lang",
                            hint="give the source language (source_lang), e.g. en")
    if not tgt:
        raise TowerCatError("the file does not name its target language", path=doc.path, param="target_lang",
                            hint="give the target language (target_lang), e.g. de")
    if not doc.target_lang:
        doc.target_lang = tgt
    return src, tgt


# --------------------------------------------------------------------------------------------------- job data

@dataclass
class _Task:
    doc: int                 # index into the job's documents
    unit: Unit
    rendered: Rendered
    result: UnitResult
    before_markup: str | None = None  # post-edit: the original target, numbered like the source
    terms_counted: tuple[int, int] = (0, 0)  # glossary hits / compliant hits of the written target (summary)
    candidate: Any = None    # QE-gated APE: (restored, reason or None, generation, problems) of the post-edit


@dataclass
class _Prompt:
    """One distinct prompt of the job (repeats of a source share it); built by the core."""

    key: tuple
    source: str              # rendered source markup: sets the new-token budget
    src_lang: str
    tgt_lang: str
    tasks: list[_Task] = field(default_factory=list)
    prepared: Prepared | None = None
    neighbours: tuple = ((), ())  # translate: source text before/after the first occurrence

    @property
    def messages(self) -> list[dict] | None:
        return self.prepared.messages if self.prepared is not None else None


class _Job:
    """Shared machinery of translate and post-edit: skip rules, prompt grouping, chunked generation, writing.
    Everything about one segment (TM reuse, prompts, repair, QA) is the core's (``tower_cat.core.Translator``)."""

    def __init__(self, task: str, docs: Sequence[Document], engine, *, tm=None, glossary=None,
                 options: PipelineOptions, progress: ProgressCallback | None = None,
                 summaries: Sequence[FileSummary] | None = None, core: Translator | None = None):
        self.task = task
        self.docs = list(docs)
        self.engine = engine
        self.glossary = glossary
        self.opts = options
        self.progress = progress
        self.core = core or Translator(engine, tm=tm, glossary=glossary, options=options)
        self.gen = self.core.gen
        self.summary = JobSummary(task=task)
        self.files = list(summaries) if summaries is not None else [
            FileSummary(path=str(d.path), output=None) for d in self.docs]
        self.prompts: dict[tuple, _Prompt] = {}
        self.langs: list[tuple[str, str]] = []
        self.total = 0
        self.done = 0

    # -- set-up ---------------------------------------------------------------------------------------

    def _start_file(self, di: int, doc: Document):
        """Resolve the file's languages and fill its summary header; returns the file's summary."""
        fs = self.files[di]
        src, tgt = resolve_languages(doc, self.opts)
        self.langs.append((src, tgt))
        self._warn_languages(doc, src, tgt)
        fs.format, fs.source_lang, fs.target_lang, fs.units = doc.format, src, tgt, len(doc.units)
        return fs

    def _warn_languages(self, doc: Document, src: str, tgt: str) -> None:
        """A language outside the model's known ones (``ModelInfo.languages``) is a warning in the summary."""
        from tower_cat.languages import model_language_warning

        info = getattr(self.engine, "info", None)
        for role, code in (("source", src), ("target", tgt)):
            warning = model_language_warning(info, code, role)
            if warning is not None:
                warning = f"{doc.path}: {warning}"
                if warning not in self.summary.warnings:
                    self.summary.warnings.append(warning)

    def _skip_reason(self, unit: Unit) -> str | None:
        if unit.locked:
            return LOCKED
        if unit.final:
            return FINAL
        if not unit.translatable:
            return OBSOLETE if unit.id.startswith("#~") else NOT_TRANSLATABLE
        if not unit.source.text.strip():
            return NO_TEXT
        return None

    def _tick(self, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)

    # -- generation -----------------------------------------------------------------------------------

    def build(self, prompt: _Prompt) -> bool:
        """Have the core build ``prompt.prepared`` when it is built lazily; False: the prompt cannot be sent."""
        return prompt.prepared is not None

    @staticmethod
    def _length(p: _Prompt) -> int:
        return len(p.messages[-1]["content"]) if p.messages else len(p.source)

    def run_prompts(self) -> None:
        """Generate every prompt in chunks, longest first, and finish its units after each chunk.

        Prompts are built (TM fuzzy search, terms, context fitting) in a worker thread, longest source first,
        while the engine generates: CTranslate2 releases the GIL, so that work costs almost no wall time. Each
        chunk is the longest of the prompts built so far (the first waits for two chunks' worth), so batches
        hold prompts of similar length.
        """
        import threading

        todo = sorted(self.prompts.values(), key=lambda p: -len(p.source))
        if not todo:
            return
        size = max(1, self.opts.chunk_size or getattr(self.engine, "preferred_chunk", 128))
        cond = threading.Condition()
        built: list[_Prompt] = []
        rejected: list[_Prompt] = []
        state = {"done": False, "error": None, "stop": False}

        def worker() -> None:
            try:
                for p in todo:
                    if state["stop"]:
                        break
                    ok = self.build(p)
                    with cond:
                        (built if ok else rejected).append(p)
                        cond.notify()
            except BaseException as exc:  # handed to the main thread
                state["error"] = exc
            finally:
                with cond:
                    state["done"] = True
                    cond.notify()

        thread = threading.Thread(target=worker, name="tower-cat-prompts", daemon=True)
        thread.start()
        handled = 0
        try:
            while handled < len(todo):
                with cond:
                    cond.wait_for(lambda: state["done"] or len(built) + len(rejected) >= min(
                        len(todo) - handled, 2 * size))
                    if state["error"] is not None:
                        raise state["error"]
                    bad, rejected[:] = list(rejected), []
                    built.sort(key=lambda p: -self._length(p))
                    chunk, built[:] = built[:size], built[size:]
                for p in bad:
                    for task in p.tasks:
                        task.result.action, task.result.reason = "not-written", TOO_LONG
                    self._tick(len(p.tasks))
                handled += len(bad) + len(chunk)
                if chunk:
                    self.summary.prompts += len(chunk)
                    gens = self.core.generate([p.messages for p in chunk], self.gen,
                                              sources=[p.source for p in chunk])
                    choices = self.core.run(self.core.repair.complete([p.prepared for p in chunk], gens))
                    self.finish_chunk(chunk, choices)
                    self._tick(sum(len(p.tasks) for p in chunk))
        finally:
            state["stop"] = True
            thread.join()

    # -- writing --------------------------------------------------------------------------------------

    def write(self, task: _Task, segment: Segment, *, origin: str, status: str, score: float | None,
              problems: list[str], confident: bool = False, terms=None, previous: Any = ...) -> None:
        """Set a unit's target (QA, terms, status rules) and record it. ``previous``: the replaced target kept as
        a candidate (default: the unit's current target). Writing a unit again replaces its term counts."""
        doc = self.docs[task.doc]
        unit = task.unit
        src_lang, tgt_lang = self.langs[task.doc]
        r = task.result
        r.problems = list(problems)
        if not doc.can_store(segment.text):
            bad = "".join(sorted({c for c in segment.text if not doc.can_store(c)}))[:20]
            r.action, r.reason = "not-written", f"charset: {doc.charset} cannot store {bad!r}"
            r.status = None
            return
        issues, terms = self.core.quality(unit.source, segment, src_lang, tgt_lang, max_length=unit.max_length,
                                          size_unit=unit.size_unit, doc=doc, unit_id=unit.id,
                                          terms=... if terms is None else terms)
        if terms is not None:
            hits, ok_hits = task.terms_counted
            task.terms_counted = (len(terms.hits), terms.ok_hits)
            self.summary.terms_checked += len(terms.hits) - hits
            self.summary.terms_ok += terms.ok_hits - ok_hits
            r.terms_ok = terms.ok if terms.hits else None
        if (qa.has_errors(issues) or problems) and status != "needs-review":  # QA error or repaired codes
            status = "needs-review"
        if origin in ("mt", "post-edit") and status == "translated" and not confident:
            status = "needs-review"
        # a replaced target (post-edit, --overwrite) is kept in the file as a candidate (alt-trans / mtc:match / PO
        # comment) so the translator can compare
        if previous is ...:
            previous = unit.target if unit.has_target else None
        unit.set_target(segment, status=status, origin=origin, match_score=score if origin.startswith("tm") else None,
                        previous=previous)
        unit.qa_issues = issues
        unit.set_findings(issues)  # written where the CAT tool shows comments (notes, Trados/memoQ comments, PO)
        r.target = segment.text
        r.status, r.origin, r.score = status, origin, score
        r.qa = [i.as_dict() for i in issues]
        r.after = segment.text if self.task == "post-edit" else None

    def not_written(self, task: _Task, reason: str, problems: Sequence[str] = ()) -> None:
        r = task.result
        r.action, r.reason, r.status = "not-written", reason, None
        r.problems = list(problems)

    def confidence(self, gen) -> float | None:
        return Translator.confidence(gen)

    def is_confident(self, gen) -> bool:
        c = self.confidence(gen)
        return (self.opts.translated_above is not None and c is not None and not gen.truncated
                and c >= self.opts.translated_above)

    def finish_chunk(self, chunk: list[_Prompt], choices: list[Choice]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- post-editing (the post-edit job and QE-gated post-editing of the translate job) ---------------

    def add_post_edit(self, task: _Task) -> tuple[bool, list[str]]:
        """Queue the post-edit prompt of a unit that has a target (the core builds it: source and target numbered
        alike, the glossary terms of the source); units with the same source and target share a prompt.
        Returns (queued, problems of rendering the target); not queued: the prompt does not fit the context."""
        src, tgt = self.langs[task.doc]
        unit = task.unit
        before, problems = codes.render_like(task.rendered, unit.target)
        task.before_markup = before
        key = (src.lower(), tgt.lower(), task.rendered.text, before)
        prompt = self.prompts.get(key)
        if prompt is None:
            request = SegmentRequest(unit.source, id=unit.id, unit=unit, target=unit.target)
            try:
                prepared = self.core.prepare_post_edit(request, src, tgt, rendered=task.rendered)
            except SegmentTooLong:
                return False, problems
            prompt = self.prompts[key] = _Prompt(key, task.rendered.text, src, tgt, prepared=prepared)
        prompt.tasks.append(task)
        return True, problems

    def corrected(self, prompt: _Prompt, task: _Task, choice) -> tuple[codes.Restored, str | None]:
        """The model's correction restored onto the unit's codes, and why it cannot be written (None: it can)."""
        restored = self.core.repair.restore(task.rendered, choice.text, prompt.tgt_lang)
        if not restored.segment.text.strip():
            return restored, "empty output" + (" (truncated)" if choice.truncated else "")
        if not restored.ok:
            return restored, "codes: " + "; ".join(restored.problems)
        return restored, None

    @staticmethod
    def unchanged(task: _Task, segment: Segment) -> bool:
        """The correction is the original target (same text, same codes in the same places)."""
        return codes.render_like(task.rendered, segment)[0] == task.before_markup

    def write_post_edit(self, task: _Task, restored: codes.Restored, gen, problems: list[str], **kw) -> None:
        self.write(task, restored.segment, origin="post-edit", status="translated", score=self.confidence(gen),
                   problems=problems + restored.problems, confident=self.is_confident(gen), **kw)

    def finish(self) -> JobSummary:
        self.summary.engine = asdict(self.engine.stats) if self.engine is not None else {}
        self.summary.model_seconds = self.core.model_seconds
        self.summary.files = self.files
        return self.summary


# --------------------------------------------------------------------------------------------------- translate

class _TranslateJob(_Job):
    def __init__(self, docs, engine, *, tm=None, glossary=None, options: PipelineOptions, progress=None,
                 summaries=None):
        super().__init__("translate", docs, engine, tm=tm, glossary=glossary, options=options, progress=progress,
                         summaries=summaries)
        self.tm = tm

    def prepare(self) -> None:
        for di, doc in enumerate(self.docs):
            fs = self._start_file(di, doc)
            src, tgt = self.langs[di]
            neighbours = self._neighbours(doc)
            for ui, unit in enumerate(doc.units):
                result = UnitResult(unit=unit.id, action="skipped")
                fs.results.append(result)
                reason = self._skip_reason(unit)
                if reason is None and unit.has_target and not self.opts.overwrite:
                    reason = HAS_TARGET
                if reason is not None:
                    result.reason = reason
                    continue
                self.total += 1
                task = _Task(di, unit, codes.render(unit.source), result)
                hit = self.core.reuse.exact(unit, task.rendered, src, tgt, can_store=doc.can_store)
                if hit is not None and self._use_tm(task, hit):
                    self._tick()
                    continue
                self._add_prompt(task, neighbours[ui])

    def _neighbours(self, doc: Document) -> list[tuple[list[str], list[str]]]:
        """Each unit's neighbouring source text in the same file (the core decides whether the model gets it)."""
        k = self.opts.context_window
        out = []
        units = doc.units
        for i, unit in enumerate(units):
            if k <= 0:
                out.append(([], []))
                continue
            f = unit.context.file
            before = [u.source.text.strip() for u in units[max(0, i - k):i]
                      if u.context.file == f and u.source.text.strip()]
            after = [u.source.text.strip() for u in units[i + 1:i + 1 + k]
                     if u.context.file == f and u.source.text.strip()]
            out.append((before, after))
        return out

    def _use_tm(self, task: _Task, hit: TMHit) -> bool:
        """Fill a unit from a 100/101 % TM match (the core mapped its codes onto the unit's); True when written."""
        context = hit.match.kind == "context"
        status = self.opts.context_status if context else self.opts.exact_status
        task.result.action = "tm"
        self.write(task, hit.restored.segment, origin=hit.origin, status=status, score=hit.match.score,
                   problems=hit.restored.problems)
        return task.result.action == "tm"

    def _add_prompt(self, task: _Task, neighbours: tuple[list[str], list[str]]) -> None:
        src, tgt = self.langs[task.doc]
        markup = task.rendered.text
        msgctxt = task.unit.context.msgctxt
        key = (src.lower(), tgt.lower(), markup, msgctxt)
        prompt = self.prompts.get(key)
        if prompt is None:  # the core builds it later, chunk by chunk (build), overlapping generation
            prompt = self.prompts[key] = _Prompt(key, markup, src, tgt, neighbours=neighbours)
        prompt.tasks.append(task)

    def build(self, prompt: _Prompt) -> bool:
        """The core's prompt for the first occurrence (TM examples, glossary terms, notes, neighbours, fitted)."""
        if prompt.prepared is not None:
            return True
        task = prompt.tasks[0]
        before, after = prompt.neighbours
        request = SegmentRequest.of_unit(task.unit, context_before=list(before), context_after=list(after))
        try:
            prompt.prepared = self.core.prepare_translation(request, prompt.src_lang, prompt.tgt_lang,
                                                            rendered=task.rendered)
        except SegmentTooLong:
            return False
        return True

    def qe_gate(self, backend) -> None:
        _QEGate(self, backend).run()

    def finish_chunk(self, chunk: list[_Prompt], choices: list[Choice]) -> None:
        for prompt, choice in zip(chunk, choices):
            for task in prompt.tasks:
                if choice.instructions is not None:
                    task.result.instructions = choice.instructions.as_dict()
                restored = self.core.repair.restore(task.rendered, choice.text, prompt.tgt_lang)
                if not restored.segment.text.strip() and task.unit.source.text.strip():
                    self.not_written(task, "empty output" + (" (truncated)" if choice.truncated else ""),
                                     restored.problems)
                    continue
                if not restored.ok:
                    self.not_written(task, "codes: " + "; ".join(p for p in restored.problems), restored.problems)
                    continue
                task.result.action = "mt"
                self.write(task, restored.segment, origin="mt", status="translated", score=self.confidence(choice),
                           problems=restored.problems, confident=self.is_confident(choice))
                if task.result.status is None:
                    continue
                if choice.truncated:
                    truncated = qa.QAIssue("truncated", qa.WARNING, "the model stopped at the token limit")
                    task.result.qa.append(truncated.as_dict())
                    task.unit.set_findings([*(task.unit.findings_edit or []), truncated])
                if choice.terms_repaired:
                    task.result.problems.append("terminology repaired from the n-best list")


# --------------------------------------------------------------------------------------------------- QE gate

class _QEGate:
    """QE-gated post-editing over a translate job's machine translations (see the module docstring)."""

    def __init__(self, job: _TranslateJob, backend):
        self.job = job
        self.backend = backend

    def score(self, pairs: Sequence[tuple[_Task, Segment]]) -> list:
        """One backend call for (task, target) pairs; equal items (repeated sources) are scored once."""
        from tower_cat.qe import QEItem, segment_text

        job = self.job
        items = []
        for task, segment in pairs:
            src, tgt = job.langs[task.doc]
            items.append(QEItem(segment_text(task.unit.source), segment_text(segment), None, src, tgt,
                                id=str(task.unit.id)))
        keys = [(it.source, it.target, it.source_lang, it.target_lang) for it in items]
        index: dict[tuple, int] = {}
        unique = []
        for key, it in zip(keys, items):
            if key not in index:
                index[key] = len(unique)
                unique.append(it)
        t0 = time.perf_counter()
        try:
            results = list(self.backend.score(unique)) if unique else []
        finally:
            job.summary.qe_seconds += time.perf_counter() - t0
        if len(results) != len(unique):
            raise TowerCatError(f"the QE backend returned {len(results)} scores for {len(unique)} translations")
        return [results[index[k]] for k in keys]

    def run(self) -> None:
        """Score the machine translations (not TM hits, not skipped units) in one backend call. With ``ape_below``:
        post-edit those below it (or that the backend could not score) through the post-edit path, re-score the
        corrections, and keep the better version per unit (a tie keeps the MT). The kept version's score is set
        on the unit (``set_qe``: the formats write it) and everything is recorded in the unit's result."""
        job = self.job
        threshold = job.opts.ape_below
        job.summary.qe_backend, job.summary.ape_below = self.backend.describe(), threshold
        tasks = [t for p in job.prompts.values() for t in p.tasks if t.result.action == "mt" and t.result.status]
        order = {id(u): (di, ui) for di, d in enumerate(job.docs) for ui, u in enumerate(d.units)}
        tasks.sort(key=lambda t: order[id(t.unit)])  # file order
        first = self.score([(t, t.unit.target) for t in tasks])
        kept = {id(t): res for t, res in zip(tasks, first)}
        for t, res in zip(tasks, first):
            t.result.qe_before = _round(res.score)
        weak = [t for t, res in zip(tasks, first)
                if threshold is not None and (res.score is None or res.score < threshold)]
        if weak:
            self._post_edit_weak(weak, kept)
        for t in tasks:
            res = kept[id(t)]
            t.result.qe = _round(res.score)
            if res.score is not None:
                t.unit.set_qe(t.result.qe)
            t.unit.meta["qe"] = {"backend": job.summary.qe_backend, "score": res.score,
                                 "error_spans": [list(sp) for sp in res.error_spans]}

    def _post_edit_weak(self, weak: list[_Task], kept: dict, *, keep_better: bool = True) -> None:
        """Post-edit ``weak`` through the post-edit path, re-score the corrections; ``keep_better``: a correction
        replaces the target only when it scores higher (else every usable correction is written)."""
        job = self.job
        ape = _APEJob(job)
        ape.prepare_tasks(weak)
        ape.run_prompts()
        job.total, job.done = ape.total, ape.done
        ter = _ter()
        rescore: list[_Task] = []
        for t in weak:
            r = t.result
            restored, reason, gen, problems = t.candidate
            r.before = t.unit.target.text
            if reason is not None:
                r.ape, r.ape_reason = "failed", reason
                r.after = restored.segment.text if restored is not None else None
            elif job.unchanged(t, restored.segment):
                r.ape, r.after, r.qe_after, r.ter = "kept-original", r.before, r.qe_before, 0.0
            else:
                r.after = restored.segment.text
                r.ter = round(ter.sentence_score(r.before, [r.after]).score, 2)
                rescore.append(t)
        for t, res in zip(rescore, self.score([(t, t.candidate[0].segment) for t in rescore])):
            r = t.result
            r.qe_after = _round(res.score)
            before = kept[id(t)].score
            if keep_better and (res.score is None or (before is not None and res.score <= before)):
                r.ape = "kept-original"
                continue
            restored, _, gen, problems = t.candidate
            after = r.after
            # the MT is replaced in memory only: the candidate kept in the file is what the file had before the job
            # (post-edit: the unit's own target, the write default)
            job.write_post_edit(t, restored, gen, problems, previous=t.unit.edit.previous if t.unit.edit else ...)
            r.ape, r.after = "applied", after
            kept[id(t)] = res
        for t in weak:
            t.candidate = None


# --------------------------------------------------------------------------------------------------- post-edit

class _PostEditJob(_Job):
    def __init__(self, docs, engine, *, glossary=None, options: PipelineOptions, progress=None, summaries=None,
                 core: Translator | None = None, qe=None):
        from tower_cat.scope import PostEditScope

        super().__init__("post-edit", docs, engine, glossary=glossary, options=options, progress=progress,
                         summaries=summaries, core=core)
        self.scope = options.post_edit_scope or PostEditScope()
        self.qe = qe                      # a QE backend: the in-scope targets are scored and gated first
        self.gated: list[_Task] = []      # with a QE backend: the in-scope tasks, post-edited by _PostEditGate

    def prepare(self) -> None:
        """Every unit with a target that is not protected and that the scope takes (scope.PostEditScope: origin,
        status, QE score) gets a post-edit prompt; with a QE backend the tasks wait for the gate (``qe_gate``)."""
        self.summary.scope = self.scope.describe()
        candidates = []  # units with a target that are not protected: what --states words should match
        for di, doc in enumerate(self.docs):
            fs = self._start_file(di, doc)
            for unit in doc.units:
                result = UnitResult(unit=unit.id, action="skipped")
                fs.results.append(result)
                reason = self._skip_reason(unit)
                if reason is None and not unit.has_target:
                    reason = NO_TARGET
                if reason is None:
                    candidates.append((unit, doc.format))
                    reason = self.scope.excludes(unit, doc.format)
                if reason is None and self.qe is None:  # --below without a backend: the file's own QE score
                    reason = self.scope.qe_excludes(unit.qe_score, scored_here=False)
                if reason is not None:
                    result.reason = reason
                    continue
                task = _Task(di, unit, codes.render(unit.source), result)
                result.before = unit.target.text
                if self.qe is not None:
                    self.gated.append(task)
                    continue
                self.total += 1
                queued, result.problems = self.add_post_edit(task)
                if not queued:
                    result.action, result.reason = "not-written", TOO_LONG
                    self._tick()
        for word in self.scope.unmatched_states(candidates):
            self.summary.warnings.append(f"--states {word}: no unit that may be post-edited is in that state "
                                         "(statuses: new, needs-review, translated, reviewed; or the file's own "
                                         "values)")

    def qe_gate(self) -> None:
        _PostEditGate(self, self.qe).run(self.gated)

    def finish_chunk(self, chunk: list[_Prompt], choices: list[Choice]) -> None:
        ter = _ter()
        for prompt, choice in zip(chunk, choices):
            for task in prompt.tasks:
                restored, reason = self.corrected(prompt, task, choice)
                if reason is not None:
                    self.not_written(task, reason, restored.problems)
                    continue
                before = task.unit.target.text
                after = restored.segment.text
                task.result.ter = round(ter.sentence_score(before, [after]).score, 2)
                task.result.after = after
                if self.unchanged(task, restored.segment):
                    task.result.action, task.result.reason = "post-edit", "unchanged"
                    continue
                task.result.action = "post-edit"
                self.write_post_edit(task, restored, choice, task.result.problems)


class _PostEditGate(_QEGate):
    """post-edit with a QE backend: the in-scope targets are scored in one call; those at or above the scope's
    ``below`` (or ``ape_below``) are left alone; the others go through the post-edit path and are re-scored. With
    ``ape_below`` the better version is kept (a tie keeps the original, as in translate); otherwise every usable
    post-edit is written. A written post-edit gets its score (``set_qe``); unchanged targets keep theirs."""

    def run(self, tasks: list[_Task]) -> None:
        job = self.job
        threshold = job.opts.ape_below
        job.summary.qe_backend, job.summary.ape_below = self.backend.describe(), threshold
        first = self.score([(t, t.unit.target) for t in tasks])
        kept = {id(t): res for t, res in zip(tasks, first)}
        weak = []
        for t, res in zip(tasks, first):
            r = t.result
            r.qe_before = r.qe = _round(res.score)
            why = job.scope.qe_excludes(res.score, scored_here=True) if res.score is not None else None
            if why is None and threshold is not None and res.score is not None and res.score >= threshold:
                why = f"QE {res.score:.1f} is not below --ape-below {threshold:g}"
            if why is not None:
                r.reason = why
                continue
            weak.append(t)  # below the thresholds, or the backend could not score it: the slow path
        if weak:
            self._post_edit_weak(weak, kept, keep_better=threshold is not None)
        for t in weak:
            r = t.result
            res = kept[id(t)]
            r.qe = _round(res.score)
            if r.ape == "failed":
                r.action, r.reason = "not-written", r.ape_reason
            elif r.ape == "applied":
                r.action, r.reason = "post-edit", None
                if res.score is not None:
                    t.unit.set_qe(r.qe)
                t.unit.meta["qe"] = {"backend": job.summary.qe_backend, "score": res.score,
                                     "error_spans": [list(sp) for sp in res.error_spans]}
            else:
                r.action = "post-edit"
                r.reason = "unchanged" if not r.ter else \
                    f"kept the original: the post-edit scored {r.qe_after} (original {r.qe_before})"
            if threshold is None:
                r.ape = None if r.ape != "failed" else r.ape


def _ter():
    from sacrebleu.metrics import TER

    return TER()


class _APEJob(_PostEditJob):
    """The post-edit pass of QE-gated post-editing, run inside a translate job over its weak MT units: the same
    prompts, generation and code restoration as ``post-edit``, but nothing is written here: each task gets its
    ``candidate`` (restored, reason it cannot be used or None, generation, problems) for the translate job to
    re-score and keep or drop."""

    def __init__(self, parent: _Job):
        super().__init__(parent.docs, parent.engine, glossary=parent.glossary, options=parent.opts,
                         progress=parent.progress, summaries=parent.files, core=parent.core)
        self.summary, self.langs = parent.summary, parent.langs  # one summary: prompts, model time
        self.total, self.done = parent.total, parent.done

    def prepare_tasks(self, tasks: Sequence[_Task]) -> None:
        self.total += len(tasks)
        for task in tasks:
            queued, problems = self.add_post_edit(task)
            task.candidate = (None, None if queued else TOO_LONG, None, problems)
            if not queued:
                self._tick()

    def finish_chunk(self, chunk: list[_Prompt], choices: list[Choice]) -> None:
        for prompt, choice in zip(chunk, choices):
            for task in prompt.tasks:
                restored, reason = self.corrected(prompt, task, choice)
                doc = self.docs[task.doc]
                if reason is None and not doc.can_store(restored.segment.text):
                    reason = f"charset: {doc.charset} cannot store the post-edited text"
                task.candidate = (restored, reason, choice, task.candidate[3])


def _round(score: float | None) -> float | None:
    return None if score is None else round(float(score), 2)


# --------------------------------------------------------------------------------------------------- public API

def translate_documents(docs: Sequence[Document], engine, *, tm=None, glossary=None,
                        options: PipelineOptions | None = None, progress: ProgressCallback | None = None,
                        summaries: Sequence[FileSummary] | None = None, qe=None) -> JobSummary:
    """Translate every unit of the documents that may be translated; targets are set on the units (save the
    documents to write them). One engine, one prompt per distinct source, generation in chunks.

    ``qe``: a ``qe.QEBackend``: the machine translations are scored and the scores set on the units; with
    ``options.ape_below`` those below it are post-edited, re-scored, and the better version kept (QE-gated APE).
    """
    options = options or PipelineOptions()
    if options.ape_below is not None and qe is None:
        raise TowerCatError("QE-gated post-editing (ape_below) needs a QE backend", param="qe",
                            hint="give a QE backend (qe=, e.g. tower_cat.qe.get_backend('logprob', engine))")
    t0 = time.perf_counter()
    job = _TranslateJob(docs, engine, tm=tm, glossary=glossary, options=options, progress=progress,
                        summaries=summaries)
    job.prepare()
    job.run_prompts()
    if qe is not None:
        job.qe_gate(qe)
    summary = job.finish()
    summary.seconds = time.perf_counter() - t0
    return summary


def post_edit_documents(docs: Sequence[Document], engine, *, glossary=None, options: PipelineOptions | None = None,
                        progress: ProgressCallback | None = None,
                        summaries: Sequence[FileSummary] | None = None, qe=None) -> JobSummary:
    """Post-edit the existing targets (vendor MT) of the units in scope (``options.post_edit_scope``, a
    ``scope.PostEditScope``; default: not protected, not confirmed, not a 100 % TM match).

    ``qe``: a ``qe.QEBackend``: the in-scope targets are scored first and only those below the scope's ``below``
    (and ``options.ape_below``) are post-edited; with ``ape_below`` a post-edit is kept only when it scores higher.
    """
    options = options or PipelineOptions()
    if options.ape_below is not None and qe is None:
        raise TowerCatError("QE-gated post-editing (ape_below) needs a QE backend", param="qe",
                            hint="give a QE backend (qe=, e.g. tower_cat.qe.get_backend('logprob', engine))")
    t0 = time.perf_counter()
    job = _PostEditJob(docs, engine, glossary=glossary, options=options, progress=progress,
                       summaries=summaries, qe=qe)
    job.prepare()
    if qe is None:
        job.run_prompts()
    else:
        job.qe_gate()
    summary = job.finish()
    summary.seconds = time.perf_counter() - t0
    return summary


def plan_outputs(inputs: Sequence[Path], output: Path | None, in_place: bool = False) -> list[Path]:
    """Where each input is written: OUT itself for one input (OUT/name when OUT is a folder), OUT/name for
    several, the input itself with ``in_place``. Refuses to overwrite an input otherwise."""
    inputs = [Path(p) for p in inputs]
    if in_place:
        if output is not None:
            raise TowerCatError("give either an output or in_place, not both", param="in_place")
        return inputs
    if output is None:
        raise TowerCatError("no output given", param="output",
                            hint="give an output (a file for one input, a folder for several), or in_place")
    output = Path(output)
    if len(inputs) == 1 and not output.is_dir() and not str(output).endswith(("/", "\\")):
        outs = [output]
    else:
        if output.exists() and not output.is_dir():
            raise TowerCatError("several inputs need an output folder, and this is a file", path=output)
        names = [p.name for p in inputs]
        if len(set(names)) != len(names):
            raise TowerCatError("two inputs have the same file name; they would overwrite each other in the "
                                "output folder", path=output, hint="translate them in separate runs")
        outs = [output / p.name for p in inputs]
    for i, o in zip(inputs, outs):
        if o.exists() and i.exists() and o.resolve() == i.resolve():
            raise TowerCatError("refusing to overwrite the input file", path=o, param="output",
                                hint="choose another output, or in_place")
    return outs


def run_files(task: str, inputs: Sequence[Path], outputs: Sequence[Path], engine, *, tm=None, glossary=None,
              options: PipelineOptions | None = None, progress: ProgressCallback | None = None,
              qe=None) -> JobSummary:
    """Load the files, run the job over all of them at once (one prompt set, one engine), write each output.
    ``qe``: a QE backend, see ``translate_documents`` and ``post_edit_documents``.

    A file that cannot be read or written is recorded in its FileSummary (``error``) and the others go on.
    """
    from tower_cat import formats

    t0 = time.perf_counter()
    docs: list[Document] = []
    summaries: list[FileSummary] = []
    failed: list[FileSummary] = []
    for path, out in zip(inputs, outputs):
        fs = FileSummary(path=str(path), output=str(out))
        try:
            docs.append(formats.load(path))
            summaries.append(fs)
        except TowerCatError as exc:
            fs.error, fs.exception = str(exc), exc
            failed.append(fs)
    opts = options or PipelineOptions()
    good_docs, good = [], []
    for doc, fs in zip(docs, summaries):  # language problems are per file, found before any model work
        try:
            resolve_languages(doc, opts)
            good_docs.append(doc)
            good.append(fs)
        except TowerCatError as exc:
            fs.error, fs.exception = str(exc), exc
            failed.append(fs)
    if task == "translate":
        summary = translate_documents(good_docs, engine, tm=tm, glossary=glossary, options=opts, progress=progress,
                                      summaries=good, qe=qe)
    elif task == "post-edit":
        summary = post_edit_documents(good_docs, engine, glossary=glossary, options=opts, progress=progress,
                                      summaries=good, qe=qe)
    else:
        raise InvalidArgument(f"unknown task {task!r}; use translate or post-edit")
    for doc, fs in zip(good_docs, good):
        _save(doc, fs)
    order = {str(p): i for i, p in enumerate(inputs)}
    summary.files = sorted(good + failed, key=lambda f: order.get(f.path, 0))
    summary.seconds = time.perf_counter() - t0
    return summary


def _save(doc: Document, fs: FileSummary) -> None:
    """Write a document. A replaced target that the format cannot keep as a candidate (its codes do not nest in the
    file's markup) is dropped from the candidates, recorded on the unit, and the save retried."""
    from tower_cat.errors import CodeMismatchError, OutputError

    by_id = {u.id: u for u in doc.units}
    results = {r.unit: r for r in fs.results}
    for _ in range(len(doc.units) + 1):
        try:
            doc.save(Path(fs.output))
            return
        except CodeMismatchError as exc:
            unit = by_id.get(exc.unit) if exc.unit is not None else None
            if unit is None or unit.edit is None or unit.edit.previous is None:
                fs.error = str(exc)
                return
            unit.edit.previous = None
            if exc.unit in results:
                results[exc.unit].problems.append(f"previous target not kept as a candidate: {exc.message}")
        except TowerCatError as exc:
            fs.error = str(exc)
            return
        except OSError as exc:  # a folder in the way, a full disk, a read-only folder: this file only
            err = OutputError(f"cannot write: {exc.strerror or exc}", path=fs.output)
            fs.error, fs.exception = str(err), err
            return
