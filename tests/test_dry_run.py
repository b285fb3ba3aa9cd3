"""--dry-run --show-prompts: the prompts a real run sends, byte for byte, without loading the model's weights.

Each test records what the engine receives in a real run (a spy on ``Engine.generate`` that renders every prompt
it is handed) and compares it with the dry run's JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tower_cat import formats, pipeline, qe
from tower_cat.core import TranslationOptions
from tower_cat.dryrun import dry_run_files, qe_prompt_records
from tower_cat.engine import Engine
from tower_cat.scope import PostEditScope

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
TRADOS = "sdlxliff/disfr/Configuring_Spelling_Checker.doc.sdlxliff"


class EngineSpy:
    """Renders every prompt handed to ``engine.generate`` (what the backend is then given) and lets the call
    through."""

    def __init__(self, engine):
        self.engine = engine
        self.real = engine.generate
        self.seen: list[tuple[str, tuple[int, ...]]] = []
        engine.generate = self.generate

    def generate(self, prompts, options=None, **kw):
        for p in prompts:
            r = self.engine.render(p)
            self.seen.append((r.text, r.ids))
        return self.real(prompts, options, **kw)


def _load(tiny):
    return Engine.load(tiny.ct2_path, device="cpu", threads=1, cache=None)


def _cli(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "tower_cat.cli", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_translate_dry_run_is_what_a_real_run_sends(tiny_llama, tmp_path):
    from tower_cat.terminology import Glossary
    from tower_cat.tm import open_translation_memory

    xlf = SAMPLES / "tower-notes.en-de.xlf"
    memory = open_translation_memory(str(SAMPLES / "tower-notes.tmx"), readonly=True)
    glossary = Glossary.load(SAMPLES / "glossary.tbx")
    options = TranslationOptions(max_new_tokens=8)
    engine = _load(tiny_llama)
    try:
        plan = dry_run_files("translate", [xlf], engine, tm=memory, glossary=glossary, options=options)
        assert not engine.is_loaded and engine.stats.generator_loads == 0, "a dry run never loads the weights"
        assert plan.records and plan.summary.totals()["tm_leveraged"] > 0
        texts = [r.text for r in plan.records]
        assert any("Use these German terms" in t for t in texts), "glossary terms reach the prompt"
        assert any(t.count("\nGerman: ") >= 2 for t in texts), "TM examples reach the prompt"
        spy = EngineSpy(engine)
        summary = pipeline.run_files("translate", [xlf], [tmp_path / "out.xlf"], engine, tm=memory,
                                     glossary=glossary, options=options)
        assert engine.stats.generator_loads == 1 and not summary.failed
    finally:
        engine.close()
        memory.close()
    sent = dict(spy.seen)
    assert set(sent) == set(texts), "the dry run shows exactly the prompts the real run sends"
    for r in plan.records:
        assert r.tokens == len(sent[r.text])
    # units that share a source share one prompt, and the real run sent each distinct prompt
    assert len({r.prompt for r in plan.records}) == len(set(texts)) == summary.prompts


def test_post_edit_dry_run_matches_the_real_run_and_keeps_the_scope(corpus, tiny_llama, tmp_path):
    path = corpus / TRADOS
    options = TranslationOptions(max_new_tokens=8, post_edit_scope=PostEditScope.parse("origin=any", "Translated"))
    engine = _load(tiny_llama)
    try:
        plan = dry_run_files("post-edit", [path], engine, options=options)
        assert engine.stats.generator_loads == 0
        spy = EngineSpy(engine)
        pipeline.run_files("post-edit", [path], [tmp_path / "out.sdlxliff"], engine, options=options)
    finally:
        engine.close()
    assert len(plan.records) == 14 and {r.text for r in plan.records} == {t for t, _ in spy.seen}
    assert all(r.task == "post-edit" and r.file == str(path) for r in plan.records)
    # the CLI: JSON lines on stdout, no output file needed, nothing written
    run = _cli("post-edit", path, "--model", tiny_llama.ct2_path, "--device", "cpu", "--dry-run", "--show-prompts",
               "--only", "origin=tm", "--states", "Translated")
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(lines) == 12 and {line["text"] for line in lines} <= {r.text for r in plan.records}
    assert set(lines[0]) >= {"file", "unit", "messages", "text", "tokens"}
    assert "the model's weights were not loaded" in run.stderr and "scope: origin tm" in run.stderr
    # the default scope sends nothing for this Trados file (confirmed, 100 % TM)
    run = _cli("post-edit", path, "--model", tiny_llama.ct2_path, "--device", "cpu", "--dry-run", "--json")
    report = json.loads(run.stdout)
    assert report["dry_run"]["prompts"] == 0 and report["totals"]["reasons"]["out of scope"] == 14


def test_qe_llm_dry_run_is_what_the_judge_sends(corpus, tiny_llama):
    path = corpus / "xliff12/bb-io/3 random sentences-en-de-T.mxliff"
    run = _cli("qe", path, "--backend", "llm", "--model", tiny_llama.ct2_path, "--device", "cpu", "--dry-run",
               "--show-prompts")
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["task"] for line in lines] == ["qe-score"] * 3 + ["qe-spans"] * 3
    engine = _load(tiny_llama)
    try:
        doc = formats.load(path)
        judge = qe.LLMJudgeBackend(engine, spans=True)
        items = [qe.unit_item(u, doc.source_lang, doc.target_lang) for u in doc.units]
        records = list(qe_prompt_records(judge, items, [(str(path), u.id) for u in doc.units]))
        assert engine.stats.generator_loads == 0
        spy = EngineSpy(engine)
        qe.score_units(doc.units, judge, source_lang=doc.source_lang, target_lang=doc.target_lang, record=False)
    finally:
        engine.close()
    assert [line["text"] for line in lines] == [r.text for r in records] == [t for t, _ in spy.seen]
    assert [line["tokens"] for line in lines] == [len(ids) for _, ids in spy.seen]


def test_post_edit_dry_run_with_an_llm_gate_shows_the_judge_and_marks_gated_prompts(corpus, tiny_llama):
    run = _cli("post-edit", corpus / "xliff12/bb-io/3 random sentences-en-de-T.mxliff", "--model",
               tiny_llama.ct2_path, "--device", "cpu", "--dry-run", "--show-prompts", "--qe-backend", "llm",
               "--ape-below", "80")
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["task"] for line in lines] == ["qe-score"] * 3 + ["post-edit"] * 3
    assert all(line["qe_gated"] for line in lines if line["task"] == "post-edit")
    assert "not shown" in run.stderr


def test_flags(tiny_llama, tmp_path):
    xlf = SAMPLES / "tower-notes.en-de.xlf"
    bad = _cli("translate", xlf, "-o", tmp_path / "o.xlf", "--model", tiny_llama.ct2_path, "--show-prompts")
    assert bad.returncode == 2 and "--show-prompts needs --dry-run" in bad.stderr
    bad = _cli("translate", xlf, "--model", tiny_llama.ct2_path, "--dry-run", "--show-prompts", "--json")
    assert bad.returncode == 2
    bad = _cli("qe", xlf, "--backend", "logprob", "--model", tiny_llama.ct2_path, "--dry-run")
    assert bad.returncode == 2 and "--backend llm" in bad.stderr
    assert not (tmp_path / "o.xlf").exists()
