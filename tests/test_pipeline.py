"""The translate / post-edit pipeline: corpus-wide mechanics with a tiny random Llama, TM leverage that never
reaches the model, one model call per distinct source, resume after SIGKILL, and the decision logic (codes, terms,
charset, context window) with a scripted fake engine.

Random tiny models produce garbage; what is tested is the machinery around them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import CORPUS, ROOT, SAMPLES
from tower_cat import codes, formats, pipeline
from tower_cat.document import Segment
from tower_cat.engine import EngineStats, Generation, GenerationOptions, Hypothesis
from tower_cat.errors import TowerCatError, UnsupportedFormatError
from tower_cat.pipeline import PipelineOptions

BILINGUAL_DIRS = ("xliff12", "sdlxliff", "mqxliff", "xliff2", "po")
NEW_TOKENS = 8


def _bilingual_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return [p for d in BILINGUAL_DIRS for p in sorted((CORPUS / d).rglob("*")) if p.is_file()]


def _ident(p: Path) -> str:
    return str(p.relative_to(CORPUS))


@pytest.fixture(scope="session")
def engine(tiny_llama, tmp_path_factory):
    """One engine for the whole file (float32, so results do not depend on int8 kernels), with a cache."""
    from tower_cat.engine import Engine

    cache = tmp_path_factory.mktemp("pipeline-cache") / "generations.sqlite"
    # one thread: on a shared 2-core machine two OpenMP threads fighting other processes are ~10x slower
    eng = Engine.load(tiny_llama.ct2_path, device="cpu", compute_type="float32", threads=1, cache=cache)
    yield eng
    eng.close()


def _opts(**kw) -> PipelineOptions:
    base = dict(source_lang="en", target_lang="de", max_new_tokens=NEW_TOKENS)
    base.update(kw)
    return PipelineOptions(**base)


def _delta(engine, before: EngineStats) -> dict[str, int]:
    now = engine.stats
    return {k: getattr(now, k) - getattr(before, k) for k in vars(before)}


def _snapshot(engine) -> EngineStats:
    return EngineStats(**vars(engine.stats))


def _protected_markup(doc) -> dict[str, str]:
    """The bytes each protected unit owns in the file as loaded (XML fragment or PO entry lines)."""
    out = {}
    if doc.format in ("xliff12", "sdlxliff", "mqxliff"):
        from tower_cat.formats import xliff12

        for u in doc.units:
            if u.protected:
                out[u.id] = xliff12.unit_xml(doc, u)
    elif doc.format == "xliff2":
        h = doc.handle
        for e in h.entries:
            if e.unit.protected:
                out[e.unit.id] = h.xf.outer(e.segment)
    elif doc.format == "po":
        h = doc.handle
        for u in doc.units:
            if u.protected:
                e, _ = h.units[u.id]
                out[u.id] = "".join(h.lines[e.first:e.last])
    return out


# ------------------------------------------------------------------------------------------------ corpus

@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent")
@pytest.mark.parametrize("path", _bilingual_files(), ids=_ident)
def test_corpus_file_translates_with_only_targets_changed(path: Path, tmp_path: Path, engine):
    from tests.test_corpus import _same_content

    try:
        doc = formats.load(path)
    except UnsupportedFormatError:
        pytest.skip("a companion file, not a translation format")
    original = formats.load(path)
    protected = _protected_markup(original)
    summary = pipeline.translate_documents([doc], engine, options=_opts(overwrite=True, term_repair=0))
    out = tmp_path / path.name
    doc.save(out)

    again = formats.load(out)  # strict: well-formed and valid for our reader
    # XLIFF 2 segments without an id get id="tc-s<n>" when a candidate must point at them (ids change, order not)
    assert [_untagged(u.id) for u in again.units] == [u.id for u in original.units]
    results = {r.unit: r for r in summary.files[0].results}
    assert set(results) == {u.id for u in original.units}, "every unit has a recorded outcome"
    for old, new, edited in zip(original.units, again.units, doc.units):
        r = results[old.id]
        if old.protected:
            assert r.action == "skipped" and r.reason
            continue
        if r.action in ("tm", "mt"):
            assert edited.edit is not None and new.target is not None
            assert codes.check(old.source, new.target) == [], f"{old.id}: codes lost or duplicated"
            assert r.status in ("needs-review", "translated")
        else:
            assert r.action in ("skipped", "not-written") and r.reason, f"{old.id}: no target and no reason"
            assert edited.edit is None
    assert _protected_markup(again) == protected, "a locked/final unit changed"
    # replaced targets (--overwrite) are kept as candidates: provenance too, so they are left out of the comparison
    a, b = _without_candidates(path, tmp_path / "a"), _without_candidates(out, tmp_path / "b")
    assert _same_content(doc.format, a, b, ignore_targets=True, target_lang=doc.target_lang), \
        "something outside targets/states/provenance changed"


MTC = "urn:oasis:names:tc:xliff:matches:2.0"


def _untagged(unit_id: str) -> str:
    """XLIFF 2 unit id as before tower-cat named the segment ('f1/u3/tc-s1' -> 'f1/u3/1')."""
    head, _, last = unit_id.rpartition("/")
    return f"{head}/{last[4:]}" if last.startswith("tc-s") and last[4:].isdigit() else unit_id


def _without_candidates(path: Path, folder: Path) -> Path:
    """A copy of an XML file without previous-version candidates (alt-trans / mtc:match); PO files as they are."""
    from lxml import etree

    folder.mkdir(exist_ok=True)
    try:
        tree = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                                      huge_tree=True))
    except etree.XMLSyntaxError:
        return path  # PO
    for el in list(tree.iter()):
        if not isinstance(el.tag, str):
            continue
        local = etree.QName(el).localname
        if (local == "alt-trans" and el.get("alttranstype") == "previous-version") or \
                (el.tag == f"{{{MTC}}}match" and el.get("origin") == "previous-version"):
            el.getparent().remove(el)
    for el in tree.iter():
        if isinstance(el.tag, str) and etree.QName(el).localname == "segment" and (el.get("id") or "").startswith("tc-s"):
            del el.attrib["id"]
    for el in list(tree.iter(f"{{{MTC}}}matches")):
        if len(el) == 0:
            el.getparent().remove(el)
    _drop_findings(tree)
    copy = folder / path.name
    tree.write(str(copy), xml_declaration=True, encoding=tree.docinfo.encoding or "UTF-8")
    return copy


def _drop_findings(tree) -> None:
    """Take tower-cat's findings out (XLIFF notes, Trados comment definitions and markers, memoQ comments): they
    are written on purpose (tests/test_findings.py checks them)."""
    from lxml import etree

    sdl = "http://sdl.com/FileTypes/SdlXliff/1.0"
    for el in list(tree.iter()):
        if not isinstance(el.tag, str) or el.getparent() is None:
            continue
        local = etree.QName(el).localname
        if (local == "note" and (el.get("from") == "tower-cat" or el.get("category") == "tower-cat")) or \
                (local == "comments" and etree.QName(el).namespace == "MQXliff"
                 and all(c.get("creatoruser") == "tower-cat" for c in el)) or \
                (el.tag == f"{{{sdl}}}cmt-defs"
                 and all(c.get("user") == "tower-cat" for c in el.iter(f"{{{sdl}}}Comment"))):
            parent = el.getparent()
            parent.remove(el)
            if parent.tag == f"{{{sdl}}}doc-info" and len(parent) == 0:
                parent.getparent().remove(parent)
    for el in list(tree.iter()):
        if isinstance(el.tag, str) and etree.QName(el).localname == "notes" and len(el) == 0:
            el.getparent().remove(el)


# ------------------------------------------------------------------------------------------------ samples

@pytest.fixture(scope="session")
def sample_tm(tmp_path_factory):
    from tower_cat.tm import TranslationMemory

    db = tmp_path_factory.mktemp("tm") / "tm.sqlite"
    memory = TranslationMemory(db)
    memory.import_file(SAMPLES / "tower-notes.tmx")
    yield memory
    memory.close()


def test_samples_with_tm_and_glossary(engine, sample_tm, tmp_path):
    from tower_cat.terminology import Glossary

    glossary = Glossary.load(SAMPLES / "glossary.tbx")
    ins = [SAMPLES / "tower-notes.en-de.xlf", SAMPLES / "tower-notes.de.po", SAMPLES / "tower-notes.en-pt.xliff"]
    outs = pipeline.plan_outputs(ins, tmp_path)
    summary = pipeline.run_files("translate", ins, outs, engine, tm=sample_tm, glossary=glossary,
                                 options=PipelineOptions(max_new_tokens=NEW_TOKENS))
    assert not summary.failed
    totals = summary.totals()
    assert totals["tm_leveraged"] >= 40 and totals["translated"] > 0
    assert totals["terms_checked"] > 0 and totals["term_compliance"] is not None
    xlf = {r.unit: r for r in summary.files[0].results}
    assert xlf["menu.file.import"].reason == pipeline.HAS_TARGET  # state="translated": kept
    assert xlf["menu.file.quit"].reason == pipeline.FINAL
    assert xlf["app.name"].reason == pipeline.NOT_TRANSLATABLE
    assert xlf["menu.file.save"].action == "tm" and xlf["menu.file.save"].origin == "tm-exact"
    assert xlf["menu.file.save"].status == "needs-review"
    # the TM's 'Move note to trash' is longer than maxwidth=30: written, but QA keeps it for review
    trash = xlf["menu.note.move_to_trash"]
    assert trash.action == "tm" and trash.status == "needs-review" and any(q["check"] == "length" for q in trash.qa)
    po = {r.unit: r for r in summary.files[1].results}
    task_open = next(r for k, r in po.items() if k.startswith("Task status"))
    assert task_open.action == "tm" and task_open.origin == "tm-context" and task_open.status == "translated"
    for out in outs:
        again = formats.load(out)
        for u in again.units:
            if u.has_target:
                assert codes.check(u.source, u.target) == []


def test_tm_exact_hits_never_reach_the_model(engine, tmp_path):
    from tower_cat.tm import TranslationMemory

    doc = formats.load(SAMPLES / "tower-notes.en-de.xlf")
    todo = [u for u in doc.units if not u.protected and not u.has_target]
    memory = TranslationMemory(":memory:")
    in_tm = todo[::2]  # every other unit is in the TM with its own segment as target (codes line up)
    for u in in_tm:
        memory.add(u.source, Segment(["[de] "] + list(u.source.parts)), "en-US", "de-DE")
    seen: list[str] = []
    real = engine.generate

    def spy(prompts, options=None, *, sources=None):
        seen.extend(sources or [])
        return real(prompts, options, sources=sources)

    engine.generate = spy
    try:
        before = _snapshot(engine)
        summary = pipeline.translate_documents([doc], engine, tm=memory, options=_opts(few_shot=0))
    finally:
        del engine.generate
    results = {r.unit: r for r in summary.files[0].results}
    tm_sources = {codes.render(u.source).text for u in in_tm}
    assert all(results[u.id].action == "tm" for u in todo if codes.render(u.source).text in tm_sources)
    assert not tm_sources & set(seen), "a TM exact hit was sent to the model"
    others = {codes.render(u.source).text for u in todo} - tm_sources
    assert set(seen) == others
    assert _delta(engine, before)["prompts_requested"] == len(others)

    # every unit in the TM: the model is not even loaded
    memory2 = TranslationMemory(":memory:")
    for u in todo:
        memory2.add(u.source, Segment(["[de] "] + list(u.source.parts)), "en-US", "de-DE")
    from tower_cat.engine import Engine

    fresh = Engine.load(engine.path, device="cpu", compute_type="float32", threads=1)
    summary = pipeline.translate_documents([formats.load(SAMPLES / "tower-notes.en-de.xlf")], fresh, tm=memory2,
                                           options=_opts())
    assert summary.totals()["tm_leveraged"] == len(todo)
    assert fresh.stats.prompts_requested == 0 and fresh.stats.generator_loads == 0


def _xliff(units: list[tuple[str, str]], target_lang: str = "de-DE") -> str:
    body = "\n".join(f'      <trans-unit id="{i}"><source>{s}</source></trans-unit>' for i, s in units)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">\n'
            f'  <file original="a" source-language="en-US" target-language="{target_lang}" datatype="plaintext">\n'
            f'    <body>\n{body}\n    </body>\n  </file>\n</xliff>\n')


def test_repeats_are_translated_once(engine, tmp_path):
    units = [(f"r{i}", 'Click <g id="1">Save</g> to keep your changes.') for i in range(6)]
    units += [("a", "Open the file."), ("b", "Close the window."), ("c", "Open the file.")]
    path = tmp_path / "repeats.xlf"
    path.write_text(_xliff(units), encoding="utf-8")
    doc = formats.load(path)
    engine.cache_backup, engine.cache = engine.cache, None  # count real generations
    try:
        before = _snapshot(engine)
        summary = pipeline.translate_documents([doc], engine, options=_opts(context_window=2))
    finally:
        engine.cache = engine.cache_backup
        del engine.cache_backup
    d = _delta(engine, before)
    assert summary.prompts == 3 and d["prompts_requested"] == 3 and d["prompts_generated"] == 3
    written = [u for u in doc.units if u.edit is not None]
    repeated = {codes.render(u.target).text for u in written if u.id.startswith("r")}
    assert len(repeated) <= 1  # six repeats, one translation (when written)


RESUME_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tower_cat import pipeline
    from tower_cat.engine import Engine
    from tower_cat.pipeline import PipelineOptions

    model, src, out, cache = sys.argv[1:5]
    engine = Engine.load(model, device="cpu", compute_type="float32", threads=1, cache=cache)
    def killer(done, total):
        if done:  # the first chunk is finished (and cached): die like a crash or an OOM kill
            os.kill(os.getpid(), signal.SIGKILL)
    pipeline.run_files("translate", [Path(src)], [Path(out)], engine,
                       options=PipelineOptions(max_new_tokens=%d, chunk_size=8), progress=killer)
    print("not killed")
""" % NEW_TOKENS)


def test_killed_run_resumes_from_the_cache(tiny_llama, tmp_path):
    src = SAMPLES / "tower-notes.en-de.xlf"
    out, cache = tmp_path / "out.xlf", tmp_path / "cache.sqlite"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, str(tiny_llama.ct2_path), str(src), str(out),
                            str(cache)], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == -9, first.stderr[-2000:]
    assert not out.exists()
    second = subprocess.run([sys.executable, "-m", "tower_cat.cli", "translate", str(src), "-o", str(out),
                             "--model", str(tiny_llama.ct2_path), "--cache", str(cache), "--compute-type", "float32",
                             "--threads", "1", "--device", "cpu", "--max-new-tokens", str(NEW_TOKENS),
                             "--chunk-size", "8", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    report = json.loads(second.stdout)
    prompts = report["prompts"]
    assert prompts > 8
    assert report["engine"]["cache_hits"] == 8
    assert report["engine"]["prompts_generated"] == prompts - 8  # nothing generated twice
    assert formats.load(out).units


def test_cli_translate_and_json(tiny_llama, tmp_path, capsys):
    from tower_cat.cli import main

    out = tmp_path / "out"
    main(["translate", str(SAMPLES / "tower-notes.en-de.xlf"), str(SAMPLES / "tower-notes.de.po"), "-o", str(out),
          "--model", str(tiny_llama.ct2_path), "--tm", str(SAMPLES / "tower-notes.tmx"),
          "--glossary", str(SAMPLES / "glossary.tbx"), "--cache", str(tmp_path / "c.sqlite"),
          "--max-new-tokens", str(NEW_TOKENS), "--device", "cpu", "--threads", "1", "--json"])  # exit 0: returns
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["tm_leveraged"] >= 30 and report["totals"]["files_failed"] == 0
    by_unit = {r["unit"]: r for f in report["files"] for r in f["results"]}
    assert by_unit["#~Sync now"]["reason"] == pipeline.OBSOLETE
    assert all(r["reason"] for r in by_unit.values() if r["action"] in ("skipped", "not-written"))
    assert (out / "tower-notes.en-de.xlf").is_file() and (out / "tower-notes.de.po").is_file()


def test_cli_refuses_to_overwrite_input(tiny_llama, tmp_path, capsys):
    from tower_cat.cli import main

    src = tmp_path / "a.xlf"
    src.write_text(_xliff([("1", "Hello")]), encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["translate", str(src), "-o", str(src), "--model", str(tiny_llama.ct2_path)])
    assert exc.value.code == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    main(["translate", str(src), "--in-place", "--model", str(tiny_llama.ct2_path), "--no-cache", "--device", "cpu",
          "--threads", "1", "--max-new-tokens", "4", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["files"][0]["output"] == str(src)
    assert formats.load(src).units[0].edit is None  # reloads strictly
    assert "leveraged-mt" in src.read_text(encoding="utf-8") or report["totals"]["not_written"] == 1


def test_plan_outputs(tmp_path):
    a, b = tmp_path / "a.xlf", tmp_path / "b.po"
    assert pipeline.plan_outputs([a], tmp_path / "x.xlf") == [tmp_path / "x.xlf"]
    assert pipeline.plan_outputs([a], tmp_path) == [tmp_path / "a.xlf"]
    assert pipeline.plan_outputs([a, b], tmp_path / "o") == [tmp_path / "o" / "a.xlf", tmp_path / "o" / "b.po"]
    assert pipeline.plan_outputs([a, b], None, in_place=True) == [a, b]
    with pytest.raises(TowerCatError):
        pipeline.plan_outputs([a], None)


# ------------------------------------------------------------------------------------------------ post-edit

POST_EDIT = """<?xml version="1.0" encoding="UTF-8"?>
<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">
  <file original="a" source-language="en-US" target-language="de-DE" datatype="plaintext">
    <body>
      <trans-unit id="1"><source>Click <g id="1">Save</g> to keep <x id="2"/> changes.</source><target state="needs-review-translation">Klicken <g id="1">Speichern</g> um <x id="2"/> Änderung.</target></trans-unit>
      <trans-unit id="2"><source>Close the window.</source><target state="translated">Schließen Fenster.</target></trans-unit>
      <trans-unit id="3"><source>No target yet.</source></trans-unit>
      <trans-unit id="4"><source>Locked.</source><target state="final">Gesperrt.</target></trans-unit>
    </body>
  </file>
</xliff>
"""


def test_render_like_numbers_target_like_source():
    from tower_cat.document import CodeKind, InlineCode

    g_open = InlineCode("1", CodeKind.OPEN, '<g id="1">')
    g_close = InlineCode("1", CodeKind.CLOSE, "</g>")
    x = InlineCode("2", CodeKind.STANDALONE, '<x id="2"/>')
    source = Segment(["Click ", g_open, "Save", g_close, " to keep ", x, " changes"])
    target = Segment([x, " Klicken Sie ", g_open, "Speichern", g_close])
    markup, problems = codes.render_like(codes.render(source), target)
    assert codes.render(source).text == "Click <1>Save</1> to keep <2/> changes"
    assert markup == "<2/> Klicken Sie <1>Speichern</1>" and problems == []
    stray = InlineCode("9", CodeKind.STANDALONE, '<x id="9"/>')
    markup, problems = codes.render_like(codes.render(source), Segment(["a", stray]))
    assert markup == "a" and len(problems) == 1


def test_post_edit_keeps_codes_and_measures_ter(tmp_path):
    path = tmp_path / "pe.xlf"
    path.write_text(POST_EDIT, encoding="utf-8")
    doc = formats.load(path)
    fake = FakeEngine({
        "Click <1>Save</1> to keep <2/> changes.": "Klicken Sie auf <1>Speichern</1>, um <2/> Änderungen zu behalten.",
        "Close the window.": "Schließen Fenster.",  # unchanged
    })
    summary = pipeline.post_edit_documents([doc], fake, options=PipelineOptions())
    prompts_seen = [m[0]["content"] for m in fake.calls[0]]
    assert any("Klicken <1>Speichern</1> um <2/> Änderung." in p for p in prompts_seen), \
        "the existing target is shown with the source's tag numbers"
    r = {x.unit: x for x in summary.files[0].results}
    assert r["1"].action == "post-edit" and r["1"].status == "needs-review" and r["1"].ter > 0
    assert r["1"].before == "Klicken Speichern um  Änderung."
    assert r["2"].action == "post-edit" and r["2"].reason == "unchanged" and r["2"].ter == 0
    assert r["3"].reason == pipeline.NO_TARGET and r["4"].reason == pipeline.FINAL
    out = tmp_path / "out.xlf"
    doc.save(out)
    again = formats.load(out)
    u1 = again.units[0]
    assert codes.render(u1.target).text == "Klicken Sie auf <1>Speichern</1>, um <2/> Änderungen zu behalten."
    assert u1.state == "needs-review-translation" and again.units[1].target.text == "Schließen Fenster."
    # the vendor's target is kept as a candidate the translator can compare
    assert 'alttranstype="previous-version"' in out.read_text(encoding="utf-8")
    assert any("Klicken" in (a["target"] or "") for a in u1.meta.get("alt_trans", []))
    assert summary.totals()["post_edited"] == 1 and summary.totals()["mean_ter"] > 0


def test_cli_post_edit(tiny_llama, tmp_path):
    src = tmp_path / "pe.xlf"
    src.write_text(POST_EDIT, encoding="utf-8")
    out = tmp_path / "out.xlf"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "tower_cat.cli", "post-edit", str(src), "-o", str(out), "--model",
                          str(tiny_llama.ct2_path), "--no-cache", "--device", "cpu", "--threads", "1", "--max-new-tokens",
                          str(NEW_TOKENS), "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["task"] == "post-edit" and report["totals"]["units"] == 4
    again = formats.load(out)
    assert again.units[3].target.text == "Gesperrt."


# ------------------------------------------------------------------------------------------------ decisions (fake engine)

class _Info:
    wording = "instruct"


class _Rendered:
    def __init__(self, tokens):
        self.tokens = tokens


class FakeEngine:
    """Scripted engine: the output for a prompt is looked up by its source markup (``sources``)."""

    def __init__(self, outputs: dict[str, str | list[str]], context: int = 4096):
        self.outputs = outputs
        self.calls: list[list] = []
        self.options: list[GenerationOptions] = []
        self.info = _Info()
        self.stats = EngineStats()
        self.context_length = context

    def render(self, messages):
        return _Rendered(["t"] * 4)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def budget(self, source, opts) -> int:
        return 10

    def generate(self, prompts, options=None, *, sources=None):
        self.calls.append(list(prompts))
        self.options.append(options)
        self.stats.prompts_requested += len(prompts)
        out = []
        for src in sources:
            value = self.outputs.get(src, "")
            texts = value if isinstance(value, list) else [value]
            if options is not None and options.num_hypotheses > 1:
                hyps = tuple(Hypothesis(t, (), -0.1, False) for t in texts)
            else:
                hyps = (Hypothesis(texts[0], (), -0.1, False),)
            out.append(Generation(hyps))
        return out


def _doc(tmp_path, units, name="t.xlf"):
    path = tmp_path / name
    path.write_text(_xliff(units), encoding="utf-8")
    return formats.load(path)


def test_broken_codes_are_not_written(tmp_path):
    doc = _doc(tmp_path, [("1", 'Press <g id="1">here</g> and <g id="2">there</g> now.'), ("2", "Save <x id='1'/>")])
    fake = FakeEngine({"Press <1>here</1> and <2>there</2> now.": "Drücken <1>hier und dort</2> jetzt.",
                       "Save <1/>": "Speichern"})
    summary = pipeline.translate_documents([doc], fake, options=PipelineOptions())
    r = {x.unit: x for x in summary.files[0].results}
    assert r["1"].action == "not-written" and r["1"].reason.startswith("codes")
    assert doc.units[0].edit is None and doc.units[0].target is None
    # a missing trailing standalone code is a safe repair: written, and listed
    assert r["2"].action == "mt" and r["2"].problems and codes.render(doc.units[1].target).text == "Speichern<1/>"
    assert summary.totals()["tag_errors"] == 1 and summary.totals()["tag_repaired"] == 1


def test_terminology_repair_picks_a_compliant_hypothesis(tmp_path):
    from tower_cat.terminology import Glossary

    glossary = Glossary.load(SAMPLES / "glossary.de.csv")
    doc = _doc(tmp_path, [("1", "Move the note to the trash.")])
    src = "Move the note to the trash."
    fake = FakeEngine({src: ["Verschieben Sie den Vermerk in den Mülleimer.",
                             "Verschieben Sie die Notiz in den Mülleimer.",
                             "Verschieben Sie die Notiz in den Papierkorb."]})
    summary = pipeline.translate_documents([doc], fake, glossary=glossary, options=PipelineOptions(term_repair=3))
    assert len(fake.calls) == 2 and fake.options[1].num_hypotheses == 3 and fake.options[1].beam_size == 3
    assert doc.units[0].target.text == "Verschieben Sie die Notiz in den Papierkorb."
    r = summary.files[0].results[0]
    assert r.terms_ok is True and "terminology repaired" in " ".join(r.problems)
    prompt = fake.calls[0][0][0]["content"]
    assert "note = Notiz" in prompt and "trash = Papierkorb" in prompt
    # nothing compliant: the greedy output stays, the miss is reported by QA and the unit needs review
    doc2 = _doc(tmp_path, [("1", src)], name="t2.xlf")
    fake2 = FakeEngine({src: ["Verschieben Sie den Vermerk.", "Weg damit."]})
    summary2 = pipeline.translate_documents([doc2], fake2, glossary=glossary, options=PipelineOptions(term_repair=2))
    r2 = summary2.files[0].results[0]
    assert doc2.units[0].target.text == "Verschieben Sie den Vermerk."
    assert r2.terms_ok is False and r2.status == "needs-review" and any(q["check"] == "terms" for q in r2.qa)
    assert summary2.totals()["term_compliance"] < 100


def test_text_the_file_cannot_store_is_not_written(tmp_path):
    doc = _doc(tmp_path, [("1", "Price in euro")])
    doc.charset = "latin-1"
    fake = FakeEngine({"Price in euro": "Preis in € – Ž"})
    summary = pipeline.translate_documents([doc], fake, options=PipelineOptions())
    r = summary.files[0].results[0]
    assert r.action == "not-written" and r.reason.startswith("charset") and doc.units[0].edit is None


def test_document_context_and_window(tmp_path):
    units = [("1", "First sentence here."), ("2", "Second sentence here."), ("3", "Third sentence here."),
             ("4", " ".join(["word"] * 200))]
    doc = _doc(tmp_path, units)
    fake = FakeEngine({})
    pipeline.translate_documents([doc], fake, options=PipelineOptions(context_window=1, max_context_tokens=80))
    prompts = {m[0]["content"].rsplit("English: ", 1)[1].split("\n")[0]: m[0]["content"] for m in fake.calls[0]}
    second = prompts["Second sentence here."]
    assert "Preceding English text, for context only: First sentence here." in second
    assert "Following English text, for context only: Third sentence here." in second
    # the 4th unit's neighbour (200 words) would not fit: dropped, the unit is still translated
    third = prompts["Third sentence here."]
    assert "Following" not in third and "Preceding English text, for context only: Second" in third
    fake2 = FakeEngine({})
    doc2 = _doc(tmp_path, units, name="t2.xlf")
    summary = pipeline.translate_documents([doc2], fake2, options=PipelineOptions(max_context_tokens=60))
    r = {x.unit: x for x in summary.files[0].results}
    assert r["4"].action == "not-written" and r["4"].reason == pipeline.TOO_LONG


def test_short_strings_get_key_and_notes(tmp_path):
    doc = formats.load(SAMPLES / "tower-notes.en-de.xlf")
    fake = FakeEngine({})
    pipeline.translate_documents([doc], fake, options=PipelineOptions())
    content = next(m[0]["content"] for m in fake.calls[0] if "English: Move note to trash" in m[0]["content"])
    assert "Key: menu.note.move_to_trash." in content and "at most 30 characters" in content


def test_translated_above_threshold(tmp_path):
    doc = _doc(tmp_path, [("1", "Open the file."), ("2", "There are 3 files.")])
    fake = FakeEngine({"Open the file.": "Öffnen Sie die Datei.", "There are 3 files.": "Es gibt 4 Dateien."})
    summary = pipeline.translate_documents([doc], fake, options=PipelineOptions(translated_above=80))
    r = {x.unit: x for x in summary.files[0].results}
    assert r["1"].status == "translated"  # confidence 100*exp(-0.1) = 90.5, QA clean
    assert r["2"].status == "needs-review" and any(q["check"] == "numbers" for q in r["2"].qa)
    assert doc.units[1].qa_issues


def test_missing_languages_are_a_clear_error(tmp_path):
    path = tmp_path / "nolang.xlf"
    path.write_text(_xliff([("1", "Hello")]).replace(' target-language="de-DE"', ""), encoding="utf-8")
    doc = formats.load(path)
    with pytest.raises(TowerCatError, match="target_lang") as exc:  # the library names its parameter ...
        pipeline.translate_documents([doc], FakeEngine({}), options=PipelineOptions())
    assert exc.value.param == "target_lang" and "--target" not in str(exc.value)
    from tower_cat.cli import cli_wording

    assert "pass --target" in str(cli_wording(exc.value))  # ... and the CLI says its flag
    summary = pipeline.run_files("translate", [path], [tmp_path / "o.xlf"], FakeEngine({"Hello": "Hallo"}),
                                 options=PipelineOptions())
    assert summary.failed and "target_lang" in summary.files[0].error
    summary = pipeline.run_files("translate", [path], [tmp_path / "o.xlf"], FakeEngine({"Hello": "Hallo"}),
                                 options=PipelineOptions(target_lang="de"))
    assert not summary.failed
    again = formats.load(tmp_path / "o.xlf")
    assert again.target_lang == "de" and again.units[0].target.text == "Hallo"


# ------------------------------------------------------------------------------------------------ QE-gated post-editing

class _APEFakeEngine(FakeEngine):
    """FakeEngine whose post-edit prompts get their own scripted outputs (looked up by source markup)."""

    def __init__(self, outputs, post_edits: dict[str, str]):
        super().__init__(outputs)
        self.post_edits = post_edits
        self.post_edit_prompts: list[str] = []

    def generate(self, prompts, options=None, *, sources=None):
        pe = [m[-1]["content"].startswith("Post-edit") for m in prompts]
        if not any(pe):
            return super().generate(prompts, options, sources=sources)
        assert all(pe), "translation and post-edit prompts are never mixed in one call"
        self.calls.append(list(prompts))
        self.post_edit_prompts += [m[-1]["content"] for m in prompts]
        return [Generation((Hypothesis(self.post_edits.get(src, ""), (), -0.2, False),)) for src in sources]


class _ScriptedQE:
    """A QE backend: the score of a translation is looked up by its text (default 50); every call is recorded."""

    name = "scripted"

    def __init__(self, scores: dict[str, float | None]):
        self.scores = scores
        self.calls: list[list] = []

    def describe(self) -> str:
        return "scripted"

    def score(self, items):
        from tower_cat.qe import QEResult

        self.calls.append(list(items))
        return [QEResult(self.scores.get(it.target, 50.0)) for it in items]


APE_UNITS = [("1", "Open the file."), ("2", "Close the window."), ("3", "Save your work."),
             ("4", 'Click <g id="1">Save</g> now.'), ("5", "Quit the app."), ("6", "Open the file."),
             ("7", "Move the note to the trash.")]
APE_MT = {"Open the file.": "Datei auf.", "Close the window.": "Fenster zu.", "Save your work.": "Speichern Sie.",
          "Click <1>Save</1> now.": "Klicken <1>Speichern</1> jetzt.", "Quit the app.": "App beenden.",
          "Move the note to the trash.": "Verschieben Sie den Vermerk in den Mülleimer."}
APE_PE = {"Open the file.": "Öffnen Sie die Datei.",             # better: applied (twice: unit 1 and its repeat 6)
          "Close the window.": "Schließen Fenster.",             # worse: MT kept
          "Click <1>Save</1> now.": "Klicken <1>Speichern jetzt.",  # broken codes: failed
          "Quit the app.": "App beenden.",                       # unchanged: MT kept, not re-scored
          "Move the note to the trash.": "Verschieben Sie die Notiz in den Papierkorb.",  # terms fixed: applied
          "Save your work.": "must never be asked"}
APE_QE = {"Datei auf.": 30.0, "Öffnen Sie die Datei.": 90.0, "Fenster zu.": 40.0, "Schließen Fenster.": 20.0,
          "Speichern Sie.": 95.0, "Klicken Speichern jetzt.": 10.0, "App beenden.": 55.0,
          "Verschieben Sie den Vermerk in den Mülleimer.": None,  # unscorable: goes to post-editing
          "Verschieben Sie die Notiz in den Papierkorb.": 80.0}


def test_qe_gated_post_editing_keeps_the_better_version(tmp_path):
    from tower_cat.terminology import Glossary

    glossary = Glossary.load(SAMPLES / "glossary.de.csv")
    units = APE_UNITS + [("8", "Already done.")]
    path = tmp_path / "ape.xlf"
    path.write_text(_xliff(units).replace("<source>Already done.</source>",
                                          "<source>Already done.</source><target>Schon erledigt.</target>"),
                    encoding="utf-8")
    doc = formats.load(path)
    fake = _APEFakeEngine(APE_MT, APE_PE)
    backend = _ScriptedQE(APE_QE)
    summary = pipeline.translate_documents([doc], fake, glossary=glossary, qe=backend,
                                           options=PipelineOptions(ape_below=60, term_repair=0))
    r = {x.unit: x for x in summary.files[0].results}

    # one batched QE call over the MT targets (the repeat scored once, the unit with a target not at all), one for
    # the changed corrections
    assert len(backend.calls) == 2
    assert [it.target for it in backend.calls[0]] == ["Datei auf.", "Fenster zu.", "Speichern Sie.",
                                                      "Klicken Speichern jetzt.", "App beenden.",
                                                      "Verschieben Sie den Vermerk in den Mülleimer."]
    assert all(it.source_lang == "en-US" and it.target_lang == "de-DE" for it in backend.calls[0])
    assert sorted(it.target for it in backend.calls[1]) == sorted(
        ["Öffnen Sie die Datei.", "Schließen Fenster.", "Verschieben Sie die Notiz in den Papierkorb."])
    # post-edit prompts only for the weak units, with the source's tag numbering and the glossary terms
    assert len(fake.post_edit_prompts) == 5 and not any("Save your work." in p for p in fake.post_edit_prompts)
    assert any("translation: Klicken <1>Speichern</1> jetzt." in p for p in fake.post_edit_prompts)
    assert any("note = Notiz" in p for p in fake.post_edit_prompts)

    # improved -> the correction is the target, origin post-edit, QE of the correction
    for uid in ("1", "6"):
        assert (r[uid].ape, r[uid].qe_before, r[uid].qe_after, r[uid].qe) == ("applied", 30.0, 90.0, 90.0)
        assert r[uid].action == "mt" and r[uid].origin == "post-edit" and r[uid].status == "needs-review"
        assert (r[uid].before, r[uid].after) == ("Datei auf.", "Öffnen Sie die Datei.") and r[uid].ter > 0
    assert doc.units[0].target.text == "Öffnen Sie die Datei." and doc.units[0].edit.origin == "post-edit"
    assert doc.units[0].edit.previous is None, "the discarded MT is not kept as a candidate"
    # worse -> the MT stays
    assert (r["2"].ape, r["2"].qe_before, r["2"].qe_after, r["2"].qe) == ("kept-original", 40.0, 20.0, 40.0)
    assert doc.units[1].target.text == "Fenster zu." and r["2"].origin == "mt" and r["2"].after == "Schließen Fenster."
    # above the threshold -> untouched
    assert (r["3"].ape, r["3"].qe_before, r["3"].qe_after, r["3"].qe) == (None, 95.0, None, 95.0)
    assert doc.units[2].target.text == "Speichern Sie." and r["3"].before is None
    # broken codes in the correction -> failed, MT kept
    assert r["4"].ape == "failed" and r["4"].ape_reason.startswith("codes") and r["4"].qe == 10.0
    assert codes.render(doc.units[3].target).text == "Klicken <1>Speichern</1> jetzt."
    # unchanged correction -> MT kept, not re-scored
    assert (r["5"].ape, r["5"].qe_before, r["5"].qe_after) == ("kept-original", 55.0, 55.0)
    # unscorable MT counts as below; a scored correction beats it; terms counted once, for the kept version
    assert (r["7"].ape, r["7"].qe_before, r["7"].qe) == ("applied", None, 80.0) and r["7"].terms_ok is True
    # file x2, save x2, note + trash: each unit counted once, the replaced MT's misses (Vermerk, Mülleimer) gone
    assert summary.terms_checked == 6 and summary.terms_ok == 6
    assert r["8"].action == "skipped" and r["8"].qe_before is None and r["8"].ape is None

    t = summary.totals()
    assert (t["qe_scored"], t["ape_threshold"], t["ape_candidates"], t["ape_improved"], t["ape_kept_original"],
            t["ape_failed"]) == (6, 60, 6, 3, 2, 1)
    assert t["translated"] == 7 and t["post_edited"] == 0
    report = json.loads(summary.to_json())
    assert report["qe"]["backend"] == "scripted" and report["qe"]["ape_below"] == 60
    assert {x["unit"]: x["ape"] for x in report["files"][0]["results"]}["2"] == "kept-original"

    # the kept version's score is written into the file and read back
    out = tmp_path / "out.xlf"
    doc.save(out)
    again = {u.id: u for u in formats.load(out).units}
    assert again["1"].target.text == "Öffnen Sie die Datei." and again["1"].qe_score == pytest.approx(90.0)
    assert again["2"].target.text == "Fenster zu." and again["2"].qe_score == pytest.approx(40.0)
    assert again["3"].qe_score == pytest.approx(95.0) and again["7"].qe_score == pytest.approx(80.0)
    assert again["8"].qe_score is None and again["8"].target.text == "Schon erledigt."
    assert "previous-version" not in out.read_text(encoding="utf-8")


def test_qe_backend_without_threshold_only_scores(tmp_path):
    import io

    from rich.console import Console

    from tower_cat.cli.translate import print_summary

    doc = _doc(tmp_path, APE_UNITS[:3])
    fake = _APEFakeEngine(APE_MT, APE_PE)
    backend = _ScriptedQE(APE_QE)
    summary = pipeline.translate_documents([doc], fake, qe=backend, options=PipelineOptions())
    assert len(backend.calls) == 1 and fake.post_edit_prompts == []
    assert [u.qe_score for u in doc.units] == [30.0, 40.0, 95.0]
    assert all(r.ape is None for r in summary.files[0].results)
    t = summary.totals()
    assert t["qe_scored"] == 3 and t["qe_mean"] == 55.0 and "ape_candidates" not in t
    with pytest.raises(TowerCatError, match="QE backend"):
        pipeline.translate_documents([_doc(tmp_path, APE_UNITS[:1], "x.xlf")], fake,
                                     options=PipelineOptions(ape_below=50))
    # the end table and line show the gate
    doc2 = _doc(tmp_path, APE_UNITS[:3], "y.xlf")
    summary2 = pipeline.translate_documents([doc2], _APEFakeEngine(APE_MT, APE_PE), qe=_ScriptedQE(APE_QE),
                                            options=PipelineOptions(ape_below=60))
    buf = io.StringIO()
    print_summary(summary2, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "QE-gated APE: 2 below 60, 1 improved, 1 kept the original, 0 failed" in text
    assert "APE" in text and "improved" in text


def test_cli_translate_qe_gated_post_editing(tiny_llama, tmp_path, capsys):
    """Through the CLI with the tiny model as its own QE (log-probs): everything is below 101, so every machine
    translation is post-edited and re-scored."""
    from tower_cat.cli import main

    src = tmp_path / "a.xlf"
    src.write_text(_xliff([("1", "Open the file."), ("2", "Close the window."), ("3", "Open the file."),
                           ("4", 'Click <g id="1">Save</g> now.')]), encoding="utf-8")
    out = tmp_path / "out.xlf"
    main(["translate", str(src), "-o", str(out), "--model", str(tiny_llama.ct2_path), "--no-cache",
          "--device", "cpu", "--threads", "1", "--max-new-tokens", str(NEW_TOKENS), "--qe-backend", "logprob",
          "--ape-below", "101", "--json"])
    report = json.loads(capsys.readouterr().out)
    t = report["totals"]
    assert report["qe"]["backend"].startswith("logprob:") and report["qe"]["ape_below"] == 101
    assert t["translated"] >= 1 and t["qe_scored"] == t["translated"]
    assert t["ape_candidates"] == t["translated"], "everything scores below 101"
    assert t["ape_improved"] + t["ape_kept_original"] + t["ape_failed"] == t["ape_candidates"]
    mt = [r for r in report["files"][0]["results"] if r["action"] == "mt"]
    assert all(r["ape"] in ("applied", "kept-original", "failed") and r["qe_before"] is not None for r in mt)
    assert all(r["origin"] == ("post-edit" if r["ape"] == "applied" else "mt") for r in mt)
    again = {u.id: u for u in formats.load(out).units}  # reloads strictly
    for r in mt:
        assert again[r["unit"]].qe_score == pytest.approx(r["qe"], abs=0.01)
    with pytest.raises(SystemExit) as exc:
        main(["translate", str(src), "-o", str(tmp_path / "o2.xlf"), "--model", str(tiny_llama.ct2_path),
              "--ape-below", "50"])
    assert exc.value.code == 2 and "--qe-backend" in capsys.readouterr().err
