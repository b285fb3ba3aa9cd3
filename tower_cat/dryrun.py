"""Dry runs: the exact prompts a translate / post-edit / LLM-QE job would send, without the model's weights.

The job is set up by the pipeline's own code (``pipeline._TranslateJob`` / ``_PostEditJob``: skip rules, the
post-edit scope, TM reuse, one prompt per distinct source, the core's prompt building and context fitting), and
each prompt is rendered by the engine exactly as ``Engine.generate`` renders it before decoding. Rendering needs
only the tokenizer and chat template (``Engine`` loads the weights on its first generation or scoring, which a dry
run never reaches), so a 72B model's prompts can be checked on a laptop.

What a dry run cannot show is what depends on the model's answers: terminology repair (the same prompt again with
an n-best search), the instruction retry, the QE scores of machine translations and the post-edit prompts that
QE-gated post-editing (``--ape-below``) sends for the MT that scores low. For post-edit with a QE backend the
gate's input is known (the file's targets): every in-scope unit's post-edit prompt is shown, marked ``qe_gated``
(whether it is sent depends on its score), and with an ``llm`` backend the judge's prompts are shown too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from tower_cat.errors import InvalidArgument, TowerCatError

__all__ = ["PromptRecord", "DryRun", "dry_run_files", "qe_prompt_records"]


@dataclass
class PromptRecord:
    """One unit's prompt, as the engine would receive it. Units with the same source share a prompt
    (``prompt``: its number in the job; the model sees it once)."""

    task: str                 # translate | post-edit | qe-score | qe-spans
    file: str
    unit: str
    prompt: int               # the distinct prompt's number (1-based, in file order)
    source_lang: str
    target_lang: str
    messages: Any             # the chat messages (or raw text) handed to the engine
    text: str                 # the rendered prompt text (chat template applied), exactly what is tokenized
    tokens: int               # prompt tokens, BOS included
    max_new_tokens: int       # the new-token budget the engine would give it
    qe_gated: bool = False    # post-edit with a QE backend: sent only when the unit scores below the threshold

    def to_json(self) -> str:
        import json

        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass
class DryRun:
    summary: Any                                  # pipeline.JobSummary (nothing written; prompted units: "prompt")
    records: list[PromptRecord] = field(default_factory=list)

    @property
    def distinct_prompts(self) -> int:
        return len({(r.task, r.prompt) for r in self.records})

    @property
    def prompt_tokens(self) -> int:
        seen: dict[tuple, int] = {}
        for r in self.records:
            seen[(r.task, r.prompt)] = r.tokens
        return sum(seen.values())


def _records(task: str, job, prompts: Sequence, engine, gen, *, qe_gated: bool = False) -> Iterator[PromptRecord]:
    for number, p in enumerate(prompts, 1):
        rendered = engine.render(p.messages)
        budget = engine.budget(p.source, gen)
        for t in p.tasks:
            t.result.action, t.result.reason = "prompt", "dry run: not sent"
            yield PromptRecord(task, str(job.docs[t.doc].path), str(t.unit.id), number, p.src_lang, p.tgt_lang,
                               p.messages, rendered.text, len(rendered.ids), budget, qe_gated)


def dry_run_files(task: str, inputs: Sequence[Path], engine, *, tm=None, glossary=None, options=None,
                  qe: str | None = None) -> DryRun:
    """Set up the job over ``inputs`` as ``pipeline.run_files`` would and return every prompt it would send first,
    per unit, in file order; nothing is generated, scored or written. ``qe``: the QE backend's name
    (translate/post-edit ``--qe-backend``); only its kind matters here (see the module docstring)."""
    from tower_cat import formats
    from tower_cat.pipeline import (FileSummary, PipelineOptions, _PostEditJob, _TranslateJob, resolve_languages,
                                    TOO_LONG)

    if task not in ("translate", "post-edit"):
        raise InvalidArgument(f"unknown task {task!r}; use translate or post-edit")
    t0 = time.perf_counter()
    opts = options or PipelineOptions()
    docs, good, failed = [], [], []
    for path in inputs:
        fs = FileSummary(path=str(path), output=None)
        try:
            doc = formats.load(path)
            resolve_languages(doc, opts)
        except TowerCatError as exc:
            fs.error, fs.exception = str(exc), exc
            failed.append(fs)
            continue
        docs.append(doc)
        good.append(fs)
    out = DryRun(None)
    if task == "translate":
        job = _TranslateJob(docs, engine, tm=tm, glossary=glossary, options=opts, summaries=good)
        job.prepare()
        prompts = []
        for p in job.prompts.values():  # first occurrence order = file order
            if job.build(p):
                prompts.append(p)
            else:
                for t in p.tasks:
                    t.result.action, t.result.reason = "not-written", TOO_LONG
        out.records = list(_records(task, job, prompts, engine, job.gen))
    else:
        job = _PostEditJob(docs, engine, glossary=glossary, options=opts, summaries=good, qe=qe or None)
        job.prepare()
        if qe:
            for t in job.gated:  # what the gate could send: every in-scope unit (its score decides)
                queued, t.result.problems = job.add_post_edit(t)
                if not queued:
                    t.result.action, t.result.reason = "not-written", TOO_LONG
            if qe == "llm":
                out.records += _gate_judge_records(job, engine)
        out.records += list(_records(task, job, list(job.prompts.values()), engine, job.gen, qe_gated=bool(qe)))
    summary = job.finish()
    order = {str(p): i for i, p in enumerate(inputs)}
    summary.files = sorted(good + failed, key=lambda f: order.get(f.path, 0))
    summary.prompts = out.distinct_prompts
    summary.seconds = time.perf_counter() - t0
    out.summary = summary
    return out


def _gate_judge_records(job, engine) -> list[PromptRecord]:
    """post-edit --qe-backend llm: the judge's prompts for the in-scope targets (score only, as the pipeline asks)."""
    from tower_cat.qe import LLMJudgeBackend, QEItem, segment_text

    judge = LLMJudgeBackend(engine, spans=False)
    items, where = [], []
    for t in job.gated:
        src, tgt = job.langs[t.doc]
        items.append(QEItem(segment_text(t.unit.source), segment_text(t.unit.target), None, src, tgt,
                            id=str(t.unit.id)))
        where.append((str(job.docs[t.doc].path), str(t.unit.id)))
    return list(qe_prompt_records(judge, items, where))


def qe_prompt_records(judge, items: Sequence, where: Sequence[tuple[str, str]]) -> Iterator[PromptRecord]:
    """The prompts an LLM judge (``qe.LLMJudgeBackend``) sends for ``items``; ``where``: (file, unit) per item.
    Equal prompts (the engine sends them once) share a number."""
    engine = judge.engine
    gen = judge.generation_options()
    for kind, prompts in judge.prompt_sets(list(items)):
        numbers: dict[str, int] = {}
        for item, (path, unit), messages in zip(items, where, prompts):
            rendered = engine.render(messages)
            number = numbers.setdefault(rendered.text, len(numbers) + 1)
            yield PromptRecord(f"qe-{kind}", path, unit, number, item.source_lang, item.target_lang, messages,
                               rendered.text, len(rendered.ids), engine.budget(None, gen))
