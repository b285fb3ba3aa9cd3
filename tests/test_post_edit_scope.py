"""post-edit scope: origin / state / QE score as the files say, on third-party SDLXLIFF, MQXLIFF and XLIFF files.

The model is the tiny Llama (its output is noise: these tests check which units are sent to it and which are
left alone, never what it writes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tower_cat import formats, pipeline, qe
from tower_cat.core import TranslationOptions
from tower_cat.engine import Engine
from tower_cat.errors import InvalidArgument
from tower_cat.scope import PostEditScope, is_confirmed, is_full_tm_match, origin_class, unit_status

ROOT = Path(__file__).resolve().parents[1]
TRADOS = "sdlxliff/disfr/Configuring_Spelling_Checker.doc.sdlxliff"  # Trados: conf=Translated, tm 100 % + interactive
PHRASE = "xliff12/bb-io/3 random sentences-en-de-T.mxliff"            # Phrase: m:trans-origin=mt, no state
MEMOQ = "mqxliff/bb-io/locked.mqxliff"                                # memoQ: a Proofread unit, two NotStarted


def _prompted(summary) -> set[str]:
    """Units that were sent to the model (written, unchanged or refused after generation)."""
    return {r.unit for r in summary.results if r.action in ("post-edit", "not-written")}


def _run(engine, path: Path, out: Path, scope: PostEditScope, **kw):
    return pipeline.run_files("post-edit", [path], [out], engine,
                              options=TranslationOptions(max_new_tokens=12, post_edit_scope=scope,
                                                         ape_below=kw.pop("ape_below", None)), **kw)


@pytest.fixture(scope="module")
def engine(tiny_llama):
    eng = Engine.load(tiny_llama.ct2_path, device="cpu", threads=1, cache=None)
    yield eng
    eng.close()


def test_what_the_formats_say_becomes_origin_status_and_confirmation(corpus):
    trados = formats.load(corpus / TRADOS)
    segs = [u for u in trados.units if u.has_target]
    tm = [u for u in segs if u.origin == "tm"]
    human = [u for u in segs if u.origin == "interactive"]
    assert len(tm) == 12 and len(human) == 2
    assert all(origin_class(u, "sdlxliff") == "tm" and is_full_tm_match(u, "sdlxliff") for u in tm)
    assert all(origin_class(u, "sdlxliff") == "human" and not is_full_tm_match(u, "sdlxliff") for u in human)
    # conf="Translated" is the translator's confirmation in Trados
    assert all(unit_status(u, "sdlxliff") == "translated" and is_confirmed(u, "sdlxliff") for u in segs)
    phrase = formats.load(corpus / PHRASE)
    assert [origin_class(u, phrase.format) for u in phrase.units] == ["mt"] * 3
    assert not any(is_confirmed(u, phrase.format) for u in phrase.units)
    memoq = formats.load(corpus / MEMOQ)
    assert [unit_status(u, "mqxliff") for u in memoq.units] == ["final", "new", "new"]
    # the default scope says why a unit is out
    scope = PostEditScope()
    assert "100 % TM" in scope.excludes(tm[0], "sdlxliff")
    assert "confirmed" in scope.excludes(human[0], "sdlxliff")
    assert scope.excludes(phrase.units[0], phrase.format) is None
    assert PostEditScope.parse("origin=tm", "Translated").excludes(tm[0], "sdlxliff") is None
    assert PostEditScope.parse("origin=any", "needs-review").excludes(tm[0], "sdlxliff").startswith(
        "out of scope: state Translated")


def test_scope_words_are_checked():
    assert PostEditScope.parse("origin=mt,tm").origins == ("mt", "tm")
    assert PostEditScope.parse("origin=any").origins is None
    for bad in ("mt", "origin=", "origin=robot", "state=mt"):
        with pytest.raises(InvalidArgument):
            PostEditScope.parse(bad)
    with pytest.raises(InvalidArgument):
        PostEditScope.parse(below=101)


def test_default_scope_never_touches_a_trados_confirmed_100_percent_tm_segment(corpus, tiny_llama, tmp_path):
    """The bug the issue reports: post-edit rewrote a Trados-confirmed 100 % TM segment. Now the default scope
    leaves the whole file alone, sends nothing to the model (the weights are not even loaded) and writes the file
    back byte for byte; the summary says why, per unit."""
    out = tmp_path / "out.sdlxliff"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "tower_cat.cli", "post-edit", str(corpus / TRADOS), "-o", str(out),
                          "--model", str(tiny_llama.ct2_path), "--no-cache", "--device", "cpu", "--threads", "1",
                          "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["scope"] == "any origin but 100 % TM matches; not confirmed"
    assert report["totals"]["post_edited"] == 0 and report["prompts"] == 0
    assert report["engine"]["generator_loads"] == 0
    reasons = [r["reason"] for r in report["files"][0]["results"]]
    assert reasons.count("out of scope: 100 % TM match (use --only origin=tm or origin=any)") == 12
    assert reasons.count("out of scope: confirmed (Translated; use --states to include it)") == 2
    assert out.read_bytes() == (corpus / TRADOS).read_bytes()


def test_only_and_states_choose_the_units(corpus, engine, tmp_path):
    path = corpus / TRADOS
    doc = formats.load(path)
    tm = {u.id for u in doc.units if u.origin == "tm"}
    human = {u.id for u in doc.units if u.origin == "interactive"}
    out = tmp_path / "out.sdlxliff"
    # --states Translated: the confirmed units come in, the 100 % TM ones still stay out (not asked for)
    assert _prompted(_run(engine, path, out, PostEditScope.parse(None, "Translated"))) == human
    # --only origin=tm asks for TM segments, 100 % ones included
    assert _prompted(_run(engine, path, out, PostEditScope.parse("origin=tm", "translated"))) == tm
    assert _prompted(_run(engine, path, out, PostEditScope.parse("origin=human", "Translated"))) == human
    assert _prompted(_run(engine, path, out, PostEditScope.parse("origin=any", "Translated"))) == tm | human
    assert _prompted(_run(engine, path, out, PostEditScope.parse("origin=mt", "Translated"))) == set()
    typo = _run(engine, path, out, PostEditScope.parse(None, "Translated,Draf"))
    assert _prompted(typo) == human and len(typo.warnings) == 1 and typo.warnings[0].startswith("--states Draf:")
    # Phrase MT without a state: in the default scope; memoQ: the Proofread unit is locked and final, never in scope
    phrase = corpus / PHRASE
    assert _prompted(_run(engine, phrase, tmp_path / "p.mxliff", PostEditScope())) == \
        {u.id for u in formats.load(phrase).units}
    assert _prompted(_run(engine, phrase, tmp_path / "p.mxliff", PostEditScope.parse("origin=tm"))) == set()
    summary = _run(engine, corpus / MEMOQ, tmp_path / "m.mqxliff", PostEditScope.parse("origin=any", "final"))
    assert _prompted(summary) == set()
    assert [r.reason for r in summary.results] == [pipeline.LOCKED, pipeline.NO_TARGET, pipeline.NO_TARGET]


def test_below_gates_on_the_qe_backend_score(corpus, engine, tmp_path):
    path = corpus / TRADOS
    scope_all = PostEditScope.parse("origin=any", "Translated")
    backend = qe.get_backend("logprob", engine)
    doc = formats.load(path)
    units = [u for u in doc.units if u.has_target]
    scores = {u.id: r.score for u, r in qe.score_units(units, backend, source_lang=doc.source_lang,
                                                         target_lang=doc.target_lang, record=False)}
    values = sorted(set(scores.values()))
    assert len(values) >= 2, "the tiny model gives different log-prob scores"
    threshold = values[len(values) // 2]
    below = {uid for uid, s in scores.items() if s < threshold}
    summary = _run(engine, path, tmp_path / "out.sdlxliff", PostEditScope.parse("origin=any", "Translated",
                                                                                  threshold), qe=backend)
    assert _prompted(summary) == below and below
    r = {x.unit: x for x in summary.results}
    for uid, s in scores.items():
        assert r[uid].qe_before == round(s, 2)
        if uid not in below:
            assert r[uid].action == "skipped" and r[uid].reason.startswith("out of scope: QE")
    assert summary.qe_backend == backend.describe() and summary.totals()["qe_scored"] == len(scores)
    # written post-edits carry their own score into the file (sdl percent)
    again = formats.load(tmp_path / "out.sdlxliff")
    for u in again.units:
        if r.get(u.id) and r[u.id].action == "post-edit" and r[u.id].status:
            assert u.match_score == round(r[u.id].qe_after)

    # --ape-below: the same gate, and a post-edit replaces the target only when it scores higher
    summary = _run(engine, path, tmp_path / "ape.sdlxliff", scope_all, qe=backend, ape_below=threshold)
    assert _prompted(summary) == below
    for x in summary.results:
        if x.ape == "applied":
            assert x.qe_after > x.qe_before and x.status
        elif x.ape == "kept-original":
            assert x.status is None and (x.qe_after is None or x.qe_after <= x.qe_before)
    assert summary.totals()["ape_candidates"] == len(below)


def test_below_without_a_backend_reads_the_score_the_file_carries(corpus, engine, tmp_path):
    """A file scored earlier (``tower-cat qe``: ITS mtConfidence in XLIFF 1.2) is gated on those scores."""
    from tower_cat.core import Translator

    scored = tmp_path / "scored.mxliff"
    pairs = Translator(engine).score_file(corpus / PHRASE, scored, backend="logprob")
    values = sorted({s for _, s in pairs})
    assert len(values) >= 2
    threshold = values[-1]
    reread = {u.id: u.qe_score for u in formats.load(scored).units}
    assert all(reread[uid] == s for uid, s in pairs)
    summary = _run(engine, scored, tmp_path / "out.mxliff", PostEditScope.parse(below=threshold))
    assert _prompted(summary) == {uid for uid, s in pairs if s < threshold}
    assert {r.reason for r in summary.results if r.action == "skipped"} == \
        {f"out of scope: QE {threshold:.1f} is not below {threshold:g}"}
    # an unscored file: nothing to compare, said per unit
    summary = _run(engine, corpus / PHRASE, tmp_path / "out2.mxliff", PostEditScope.parse(below=50))
    assert _prompted(summary) == set()
    assert all("has no QE score" in r.reason for r in summary.results)


def test_cli_post_edit_scope_flags(corpus, tiny_llama, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    base = [sys.executable, "-m", "tower_cat.cli", "post-edit", str(corpus / TRADOS),
            "-o", str(tmp_path / "o.sdlxliff"),
            "--model", str(tiny_llama.ct2_path), "--no-cache", "--device", "cpu", "--threads", "1",
            "--max-new-tokens", "8"]
    bad = subprocess.run(base + ["--only", "origin=robot"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown origin 'robot'" in bad.stderr
    bad = subprocess.run(base + ["--ape-below", "50"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--ape-below needs --qe-backend" in bad.stderr
    run = subprocess.run(base + ["--only", "origin=tm", "--states", "Translated", "--qe-backend", "logprob",
                                 "--below", "100", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["scope"] == "origin tm (100 % TM matches included); states Translated, QE below 100"
    results = report["files"][0]["results"]
    assert sum(1 for r in results if r["qe_before"] is not None) == 12
    assert all(r["reason"].startswith("out of scope: origin human") for r in results
               if r["action"] == "skipped" and r["reason"].startswith("out of scope"))


def test_python_api_post_edit_file_takes_the_scope_and_a_qe_backend(corpus, tiny_llama, tmp_path):
    import tower_cat

    scope = PostEditScope.parse("origin=human", "Translated")
    with tower_cat.load(tiny_llama.ct2_path, cache=None, device="cpu", threads=1, max_new_tokens=8,
                        post_edit_scope=scope) as translator:
        summary = translator.post_edit_file(corpus / TRADOS, tmp_path / "out.sdlxliff", qe="logprob")
    human = {u.id for u in formats.load(corpus / TRADOS).units if u.origin == "interactive"}
    assert _prompted(summary) == human and summary.totals()["qe_scored"] == len(human)
    assert summary.scope == scope.describe()
