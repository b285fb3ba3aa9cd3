"""QA, terminology and QE findings written into the files where CAT tools show them (issue 17, item 2).

Per format: XLIFF 1.2 ``<note from="tower-cat">``, XLIFF 2 unit notes (category tower-cat), SDLXLIFF Trados
comments (cmt-defs + x-sdl-comment marker), MQXLIFF memoQ comments, PO ``# tower-cat qa`` translator comments.
Every test runs on third-party files from ../shared/corpus/ (skipped when absent): findings round-trip (read back
as ours in ``meta["findings"]``, never as notes for the model), a second write replaces only ours, and removing
them gives the original bytes back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_pipeline import engine  # noqa: F401  (the tiny model of the pipeline tests)
from tower_cat import formats
from tower_cat.document import Finding

FILES = {
    "xliff12": "xliff12/bb-io/test.xlf",
    "sdlxliff": "sdlxliff/disfr/Configuring_Spelling_Checker.doc.sdlxliff",
    "sdlxliff-no-doc-info": "sdlxliff/okapi/simpleTest15984.sdlxliff",
    "mqxliff": "mqxliff/disfr/ChangeTracking_memoQ_1.mqxliff",
    "xliff2": "xliff2/oasis-xliff21-testsuite/core/valid/withNotes_complex.xlf",
    "po": "po/okapi/AllCasesTest.po",
}
FIRST = [Finding("numbers", "error", "numbers differ: missing 12"),
         Finding("terms", "error", "'photo printer' should be translated as 'Fotodrucker'")]
SECOND = [Finding("terms", "warning", "do-not-translate term 'USB' is not kept")]


def _corpus_file(corpus: Path, key: str, tmp_path: Path) -> Path:
    src = corpus / FILES[key]
    if not src.exists():
        pytest.skip(f"{FILES[key]} is not in the corpus")
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    return dst


def _writable(doc, n: int = 2):
    units = [u for u in doc.units if not u.protected and u.has_target][:n]
    if len(units) < n:
        pytest.skip("not enough translated, unprotected units")
    return units


@pytest.mark.parametrize("key", list(FILES))
def test_findings_round_trip_and_replace_only_ours(key, corpus, tmp_path):
    path = _corpus_file(corpus, key, tmp_path)
    original = path.read_bytes()
    doc = formats.load(path)
    before = {u.id: list(u.notes) for u in doc.units}
    a, b = _writable(doc)
    a.set_findings(FIRST)
    b.set_findings(SECOND)
    out = tmp_path / "out" / path.name
    out.parent.mkdir()
    doc.save(out)

    again = formats.load(out)  # strict: valid for our reader
    by_id = {u.id: u for u in again.units}
    assert by_id[a.id].meta["findings"] == FIRST
    assert by_id[b.id].meta["findings"] == SECOND
    for u in again.units:
        assert u.notes == before[u.id], "findings are never notes (the model would read them)"
        if u.id not in (a.id, b.id):
            assert "findings" not in u.meta
    assert [p for p in by_id[a.id].target.parts] == [p for p in a.target.parts], "the target reads back unchanged"

    # a second run replaces our findings of a unit; the other unit keeps its own
    by_id[a.id].set_findings(SECOND)
    again.save(out)
    third = {u.id: u for u in formats.load(out).units}
    assert third[a.id].meta["findings"] == SECOND
    assert third[b.id].meta["findings"] == SECOND

    # removing them gives the original file back, byte for byte
    last = formats.load(out)
    for u in last.units:
        if u.id in (a.id, b.id):
            u.set_findings([])
    last.save(out)
    assert out.read_bytes() == original


def test_sdlxliff_comments_are_trados_comments_and_keep_others(corpus, tmp_path):
    """Trados' layout: cmt-def in doc-info/cmt-defs (created when missing) and an x-sdl-comment marker inside the
    target segment; another user's comment survives our re-runs; translate-toolkit opens the file; validate."""
    from lxml import etree

    from tower_cat.formats.sdlxliff import SDL_NS

    for key in ("sdlxliff", "sdlxliff-no-doc-info"):
        path = _corpus_file(corpus, key, tmp_path)
        doc = formats.load(path)
        a, b = _writable(doc)
        a.set_findings(FIRST)
        b.set_findings(SECOND)
        out = tmp_path / f"out-{key}.sdlxliff"
        doc.save(out)
        root = etree.parse(str(out)).getroot()
        info = root.find(f"{{{SDL_NS}}}doc-info")
        assert info is not None and root.index(info) == 0
        defs = info.findall(f"{{{SDL_NS}}}cmt-defs/{{{SDL_NS}}}cmt-def")
        assert len(defs) == 2
        comments = [c for d in defs for c in d.iter(f"{{{SDL_NS}}}Comment")]
        assert [c.text for c in comments] == [f.text() for f in FIRST + SECOND]
        assert [c.get("severity") for c in comments] == ["High", "High", "Medium"]
        assert {c.get("user") for c in comments} == {"tower-cat"} and all(c.get("date") for c in comments)
        markers = [m for m in root.iter("{*}mrk") if m.get("mtype") == "x-sdl-comment"]
        assert {m.get(f"{{{SDL_NS}}}cid") for m in markers} == {d.get("id") for d in defs}
        assert all(m.getparent().get("mtype") == "seg" and any(x.tag.endswith("}target") for x in m.iterancestors())
                   for m in markers)

        # somebody else's comment (a reviewer's, same markup) is never touched by our re-runs
        text = out.read_text(encoding="utf-8-sig")
        theirs = defs[1].get("id")
        head, sep, tail = text.rpartition('user="tower-cat"')  # the last comment (unit b's) becomes a reviewer's
        text = head + 'user="reviewer"' + tail
        out.write_text(text, encoding="utf-8")
        mixed = formats.load(out)
        ids = {u.id: u for u in mixed.units}
        assert ids[a.id].meta["findings"] == FIRST
        assert "findings" not in ids[b.id].meta, "a reviewer's comment is not ours"
        for u in mixed.units:
            if u.id in (a.id, b.id):
                u.set_findings([Finding("numbers", "error", "numbers differ: missing 3")])
        mixed.save(out)
        final = out.read_text(encoding="utf-8-sig")
        assert f'<cmt-def id="{theirs}">' in final and 'user="reviewer"' in final
        assert final.count('user="tower-cat"') == 2 and "missing 12" not in final
        reread = {u.id: u for u in formats.load(out).units}
        assert reread[a.id].meta["findings"] == [Finding("numbers", "error", "numbers differ: missing 3")]

        from click.testing import CliRunner

        from tower_cat.cli import cli

        result = CliRunner().invoke(cli, ["validate", str(out)])
        assert result.exit_code == 0, result.output
        from translate.storage import factory

        store = factory.getobject(str(out))
        assert type(store).__name__ == "Xliff1File"  # translate-toolkit reads SDLXLIFF as XLIFF 1.x
        assert len(store.units) == len(factory.getobject(str(path)).units)  # the same trans-units as the input


def test_xliff12_notes_and_xliff2_notes_are_schema_shaped(corpus, tmp_path):
    """XLIFF 1.2: from/priority/annotates on <note>, after the XLIFF children; XLIFF 2: notes before the segments,
    and another tool's notes kept; the OASIS XSD accepts the result when it is available."""
    from lxml import etree

    path = _corpus_file(corpus, "xliff12", tmp_path)
    doc = formats.load(path)
    a, _ = _writable(doc)
    a.set_findings(FIRST)
    doc.save(path)
    notes = [n for n in etree.parse(str(path)).iter("{*}note") if n.get("from") == "tower-cat"]
    assert [(n.get("priority"), n.get("annotates"), n.text) for n in notes] == [
        ("1", "target", f.text()) for f in FIRST]

    path2 = _corpus_file(corpus, "xliff2", tmp_path)
    before = [n.get("id") for n in etree.parse(str(path2)).iter("{*}note")]
    doc2 = formats.load(path2)
    u, _ = _writable(doc2)
    u.set_findings(SECOND)
    doc2.save(path2)
    tree = etree.parse(str(path2))
    ids = [n.get("id") for n in tree.iter("{*}note")]
    assert [i for i in ids if not (i or "").startswith("tc-f")] == before
    ours = [n for n in tree.iter("{*}note") if n.get("category") == "tower-cat"]
    assert [(n.get("priority"), n.get("appliesTo"), n.text) for n in ours] == [("5", "target", SECOND[0].text())]
    unit_children = [etree.QName(c).localname for c in ours[0].getparent().getparent() if isinstance(c.tag, str)]
    assert unit_children.index("notes") < unit_children.index("segment")
    xsd = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "xliff-2.0" / "xliff_core_2.0.xsd"
    if xsd.exists():
        try:
            schema = etree.XMLSchema(etree.parse(str(xsd)))
        except etree.XMLSchemaParseError:
            return
        assert schema.validate(tree), schema.error_log


def test_po_findings_are_translator_comments(corpus, tmp_path):
    import subprocess

    path = _corpus_file(corpus, "po", tmp_path)
    doc = formats.load(path)
    a, _ = _writable(doc)
    translator = list(a.meta.get("translator_comments", []))
    a.set_findings(FIRST)
    doc.save(path)
    text = path.read_text(encoding="utf-8")
    assert "# tower-cat qa: [error] numbers: numbers differ: missing 12" in text
    again = {u.id: u for u in formats.load(path).units}[a.id]
    assert again.meta["translator_comments"] == translator
    if shutil.which("msgfmt"):
        assert subprocess.run(["msgfmt", "-c", "-o", "/dev/null", str(path)], capture_output=True).returncode == 0


def test_translate_writes_findings_and_json_targets(corpus, tmp_path, engine):
    """The translate job writes each unit's QA findings into the SDLXLIFF as Trados comments, a re-run replaces
    them (no pile-up), and the JSON summary carries the target text of machine-translated units."""
    from tests.test_pipeline import _opts
    from tower_cat import pipeline

    path = _corpus_file(corpus, "sdlxliff", tmp_path)
    out = tmp_path / "translated.sdlxliff"
    summary = pipeline.run_files("translate", [path], [out], engine, options=_opts(overwrite=True, term_repair=0))
    results = {r.unit: r for r in summary.files[0].results}
    data = json.loads(summary.to_json())
    written = [r for r in data["files"][0]["results"] if r["action"] in ("mt", "tm") and r["status"]]
    assert written and all(r["target"] is not None for r in written)
    again = {u.id: u for u in formats.load(out).units}
    with_qa = 0
    for uid, r in results.items():
        if r.action not in ("mt", "tm") or not r.status:
            continue
        assert again[uid].target.text == r.target
        want = [Finding.of(i) for i in r.qa]
        assert again[uid].meta.get("findings", []) == want, uid
        with_qa += bool(want)
    assert with_qa, "the tiny model's output should trip at least one QA check"
    comments = out.read_text(encoding="utf-8-sig").count("<cmt-def ")
    assert comments == with_qa

    second = tmp_path / "again.sdlxliff"
    pipeline.run_files("translate", [out], [second], engine, options=_opts(overwrite=True, term_repair=0))
    assert second.read_text(encoding="utf-8-sig").count("<cmt-def ") == with_qa
