"""XLIFF 1.2, SDLXLIFF and MQXLIFF: lossless no-op saves, edits that change only targets and states, inline codes,
segmentation, protected units, QE annotations. Corpus files are read in place from ../shared/corpus."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.test_corpus import _tree_diff
from tower_cat import formats
from tower_cat.document import CodeKind, InlineCode, Segment
from tower_cat.errors import CodeMismatchError, FormatError, TowerCatError
from tower_cat.formats import mqxliff, sdlxliff, xliff12

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
XLIFF = "urn:oasis:names:tc:xliff:document:1.2"
ITS = "http://www.w3.org/2005/11/its"


def _files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    out = []
    for folder in ("xliff12", "sdlxliff", "mqxliff"):
        for p in sorted((CORPUS / folder).rglob("*")):
            if p.is_file() and formats.read_head(p) and _is_xliff1(p):
                out.append(p)
    return out


def _is_xliff1(p: Path) -> bool:
    head = formats.read_head(p)
    return xliff12.sniff(head)


def _ident(p: Path) -> str:
    return str(p.relative_to(CORPUS))


def _corpus(*parts: str) -> Path:
    p = CORPUS.joinpath(*parts)
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


def _swapped(unit) -> Segment:
    return Segment([p.swapcase() if isinstance(p, str) else p for p in unit.source.parts])


# --- corpus: no-op and edited round trips ------------------------------------------------------------------

STATE_ATTRS = {"state", "state-qualifier", "target-language", "conf", "origin", "origin-system", "percent",
               "{MQXliff}status", "{MQXliff}percent"}


def _stripped_tree(path: Path):
    root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)).getroot()
    root = copy.deepcopy(root)
    doomed = []
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        parent = el.getparent()
        if etree.QName(el).localname == "target" and parent is not None \
                and etree.QName(parent).localname == "trans-unit":
            doomed.append(el)
        for name in list(el.attrib):
            if name in STATE_ATTRS or etree.QName(name).localname in STATE_ATTRS or etree.QName(name).namespace == ITS:
                del el.attrib[name]
    for el in doomed:
        el.getparent().remove(el)
    return root


# Only the tests that read corpus files skip without ../shared (parametrized ones get no cases, the others call
# _corpus(), which skips with the missing path); tests on inline samples run everywhere.
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent")


@needs_corpus
@pytest.mark.parametrize("path", _files(), ids=_ident)
def test_corpus_noop_save_is_byte_identical(path: Path, tmp_path: Path):
    doc = formats.load(path)
    assert doc.format in ("xliff12", "sdlxliff", "mqxliff")
    out = tmp_path / "out.xlf"
    doc.save(out)
    assert out.read_bytes() == path.read_bytes()


@needs_corpus
@pytest.mark.parametrize("path", _files(), ids=_ident)
def test_corpus_edited_round_trip(path: Path, tmp_path: Path):
    doc = formats.load(path)
    protected = {u.id: xliff12.unit_xml(doc, u) for u in doc.units if u.protected}
    for unit in doc.units:
        if not unit.protected:
            unit.set_target(_swapped(unit))
            unit.set_qe(87.5)
    if not doc.target_lang:
        doc.target_lang = "qps-ploc"
    out = tmp_path / "out.xlf"
    doc.save(out)

    again = formats.load(out)  # well-formed and valid for the strict reader
    assert again.format == doc.format
    assert [u.id for u in again.units] == [u.id for u in doc.units]
    assert again.target_lang == doc.target_lang
    for old, new in zip(doc.units, again.units):
        if old.protected:
            assert xliff12.unit_xml(again, new) == protected[old.id], f"protected unit {old.id} changed"
            continue
        if not old.source.parts:
            assert new.target is None or not new.target.parts
            continue
        assert new.target is not None, f"unit {old.id} has no target"
        assert [c.key for c in new.target.codes] == [c.key for c in old.source.codes], f"unit {old.id}: codes"
        assert [c.xml for c in new.target.codes] == [c.xml for c in old.source.codes]
        assert new.target.text == old.source.text.swapcase()
        assert new.qe_score == pytest.approx(87.5) or doc.format != "xliff12"
    diff = _tree_diff(_stripped_tree(path), _stripped_tree(out))
    assert diff is None, f"something outside targets/states changed: {diff}"


@needs_corpus
def test_corpus_counts():
    files = _files()
    assert len(files) >= 30
    names = {p.name for p in files}
    assert "lqiTestIssues.xml" not in names  # an ITS companion file, not XLIFF


# --- sniffing ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("head,expected", [
    (b'<?xml version="1.0"?>\n<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">', True),
    (b"<?xml version='1.0'?><!-- c --><xliff version='1.0'>", True),
    (b'<xlf:xliff version="1.2" xmlns:xlf="urn:oasis:names:tc:xliff:document:1.2">', True),
    (b'<xliff xmlns="urn:oasis:names:tc:xliff:document:1.1">', True),
    (b"<xliff>", True),
    (b'<xliff version="2.0" xmlns="urn:oasis:names:tc:xliff:document:2.0" srcLang="en">', False),
    (b'<xliff xmlns="urn:oasis:names:tc:xliff:document:2.2">', False),
    (b"<tmx version='1.4'>", False),
    (b'<its:locQualityIssues xmlns:its="http://www.w3.org/2005/11/its">', False),
])
def test_sniff(head, expected):
    assert xliff12.sniff(head) is expected


def test_sniff_flavours():
    sdl = b'<xliff xmlns:sdl="http://sdl.com/FileTypes/SdlXliff/1.0" version="1.2" sdl:version="1.0">'
    mq = b'<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2" xmlns:mq="MQXliff">'
    assert sdlxliff.sniff(sdl) and not mqxliff.sniff(sdl)
    assert mqxliff.sniff(mq) and not sdlxliff.sniff(mq)
    assert formats.detect(_corpus("xliff12", "rws", "Sdl", "DefaultSample.sdlxliff.xliff")) == "xliff12"
    assert formats.detect(_corpus("sdlxliff", "rws", "TTSExample.docx.sdlxliff")) == "sdlxliff"
    assert formats.detect(_corpus("mqxliff", "okapi", "MQ-12-Test01.xlf")) == "mqxliff"


# --- reading -------------------------------------------------------------------------------------------------

def test_crafted02_inline_elements():
    doc = formats.load(_corpus("xliff12", "disfr", "Crafted02.xliff"))
    units = {u.id: u for u in doc.units}
    assert doc.source_lang == "en-US" and doc.target_lang == "x-xyz"

    def codes(uid):
        return [(c.tag, c.kind, c.id, c.isolated) for c in units[uid].source.codes]

    assert codes("201") == []
    assert codes("202") == [("bpt", CodeKind.OPEN, "202r1", False), ("ept", CodeKind.CLOSE, "202r1", False)]
    assert codes("203") == [("bx", CodeKind.OPEN, "203r1", False), ("ex", CodeKind.CLOSE, "203r1", False)]
    assert codes("204") == [("g", CodeKind.OPEN, "204.1", False), ("g", CodeKind.CLOSE, "204.1", False)]
    assert codes("205") == [("ph", CodeKind.STANDALONE, "205.1", False), ("ph", CodeKind.STANDALONE, "205.2", False)]
    assert codes("206") == [("x", CodeKind.STANDALONE, "206.1", False), ("x", CodeKind.STANDALONE, "206.2", False)]
    assert codes("207") == [("it", CodeKind.OPEN, "207r1", True), ("it", CodeKind.CLOSE, "207r1", True)]
    g = units["204"].source.codes
    assert (g[0].xml, g[1].xml) == ('<g id="204.1">', "</g>")
    assert units["202"].source.codes[0].xml == '<bpt id="202.1" rid="202r1">[CODE]</bpt>'
    assert units["203"].source.codes[1].xml == '<ex id="203.2" rid="203r1"/>'
    assert units["204"].source.text == "g: abc text def."
    assert units["204"].target.text == "g: ABC TEXT DEF."
    assert [c.key for c in units["207"].target.codes] == [c.key for c in units["207"].source.codes]
    assert units["201"].line == 5


def test_crafted04_segments():
    doc = formats.load(_corpus("xliff12", "disfr", "Crafted04.xliff"))
    units = {u.id: u for u in doc.units}
    assert list(units) == ["401#401a", "402#402a", "403#403a", "403#403b", "403#403c", "404#404a", "404#404b"]
    assert units["402#402a"].source.text == "Spaces are excluded from the segment."
    assert units["403#403b"].target.text == "IN A trans-unit."
    seg = units["404#404b"].source
    assert [(c.kind, c.id) for c in seg.codes] == [(CodeKind.OPEN, "404.3"), (CodeKind.CLOSE, "404.3")]
    assert units["404#404a"].source.codes == []  # the <g>/<ph> around the segments belong to the unit structure
    assert units["403#403b"].context.previous_source == "Multiple sentences."
    assert units["403#403b"].context.next_source == "Broken into segments."
    assert units["404#404a"].meta["tu_id"] == "404" and units["404#404a"].meta["mid"] == "404a"


def test_crafted04_edit_one_segment_keeps_the_rest(tmp_path: Path):
    path = _corpus("xliff12", "disfr", "Crafted04.xliff")
    doc = formats.load(path)
    units = {u.id: u for u in doc.units}
    src = units["404#404b"].source
    units["404#404b"].set_target(Segment(["Dans un seul ", src.codes[0], "g", src.codes[1], " & <fin>."]))
    out = tmp_path / "out.xliff"
    doc.save(out)
    text = out.read_text("utf-8")
    assert ('<target state="needs-review-translation" state-qualifier="leveraged-mt">&#9;<g id="404.1">'
            '<ph id="404.2">[bullet/]</ph> <mrk mtype="seg" mid="404a">MULTIPLE SENTENCES.</mrk>  '
            '<mrk mtype="seg" mid="404b">Dans un seul <g id="404.3">g</g> &amp; &lt;fin&gt;.</mrk> '
            '<ph id="404.4">[ref/]</ph></g> </target>') in text
    # only one state because the other segment of the unit keeps its unchanged translation
    assert text.count("needs-review-translation") == 1
    again = {u.id: u for u in formats.load(out).units}
    assert again["404#404b"].target.text == "Dans un seul g & <fin>."
    assert again["404#404a"].target.text == "MULTIPLE SENTENCES."


@pytest.mark.parametrize("name,ids", [
    ("2LevelGTags.xlf", ["1#0"]),
    ("3LevelGTags.xlf", ["1#0"]),
    ("DifferentTags.xlf", ["1#0"]),
    ("DifferentCTypesWithBreakingMrk.xlf", ["NBAE5E0BD-sub2#0", "NBAE5E0BD-sub2#1"]),
])
def test_balancing_segments(name, ids, tmp_path: Path):
    path = _corpus("xliff12", "okapi", "Balancing", name)
    doc = formats.load(path)
    assert [u.id for u in doc.units] == ids
    for u in doc.units:
        assert u.source.codes == []  # every <g> wraps the segment, none is inside it
        u.set_target(_swapped(u))
    out = tmp_path / name
    doc.save(out)
    again = formats.load(out)
    assert [u.target.text for u in again.units] == [u.source.text.swapcase() for u in doc.units]
    if name.startswith("DifferentCTypes"):
        assert any("mid='2'" in i.message for i in doc.warnings)
        assert '<mrk mid="2" mtype="seg">test</mrk>' in out.read_text("utf-8")  # kept as is


def test_states_flags_and_context():
    doc = formats.load(_corpus("xliff12", "okapi", "Manual-12-AltTrans.xlf"))
    units = {u.id: u for u in doc.units}
    assert not units["0"].translatable and units["0"].protected
    assert units["3"].final and units["3"].protected
    assert units["4"].meta["alt_trans"] == [{"origin": None, "match_quality": None,
                                             "target": "Le texte numéro quatre."}]
    assert units["6"].source.codes[0].xml == ("<ph id='1'>startCode<sub>[nested<ph id='2'>ph-in-sub</ph>still in "
                                              "sub]</sub>endCode</ph>")
    typo = {u.id: u for u in formats.load(_corpus("xliff12", "okapi", "Typo3Draft.xlf")).units}
    assert typo["1"].context.resname == "$key"
    assert typo["1"].max_length is None and typo["1"].meta["maxwidth"] == "50"  # size-unit defaults to pixel
    assert typo["3"].source.codes[0].xml == '<xlf:g id="1" ctype="bold">'
    assert typo["4"].source.text == "This is a sentence with a <b>bold</b>word."  # CDATA is text
    states = formats.load(_corpus("xliff12", "translate-toolkit", "states.xlf"))
    assert all(u.final for u in states.units)
    assert any("'fake'" in i.message for i in states.warnings)


def test_duplicate_ids_get_unique_unit_ids():
    doc = formats.load(_corpus("xliff12", "okapi", "PAS-10-Test01.xlf"))
    ids = [u.id for u in doc.units]
    assert len(ids) == len(set(ids))
    assert "1~2" in ids
    assert any("used twice" in i.message for i in doc.warnings)
    assert doc.source_lang == "en" and doc.target_lang is None


def test_memoq_flags():
    doc = formats.load(_corpus("mqxliff", "bb-io", "locked.mqxliff"))
    assert doc.format == "mqxliff"
    first = doc.units[0]
    assert first.locked and not first.translatable and first.state == "Proofread" and first.protected
    assert not doc.units[1].protected and doc.units[1].state == "NotStarted"


def test_sdl_flags_and_tracked_changes():
    doc = formats.load(_corpus("sdlxliff", "disfr", "ChangeTracking_Trados_1.sdlxliff"))
    assert doc.format == "sdlxliff"
    u = doc.units[1]
    assert u.id.endswith("#2") and u.state == "Translated" and u.origin == "interactive"
    assert [(c.kind, c.display) for c in u.target.codes] == [(CodeKind.OPEN, "x-sdl-deleted"),
                                                             (CodeKind.CLOSE, "x-sdl-deleted")]
    assert u.target.codes[0].xml.startswith('<mrk mtype="x-sdl-deleted" sdl:revid=')
    tm = formats.load(_corpus("sdlxliff", "okapi", "TS09-12-Test01.sdlxliff"))
    hit = next(u for u in tm.units if u.origin == "tm")
    assert hit.match_score == 100 and hit.meta["origin_system"] == "English-German"


# --- writing -------------------------------------------------------------------------------------------------

def test_new_target_after_source_with_indentation(tmp_path: Path):
    path = _corpus("xliff12", "okapi", "Manual-12-AltTrans.xlf")
    doc = formats.load(path)
    unit = next(u for u in doc.units if u.id == "1")
    unit.set_target(Segment.from_text("Texte numéro 1"), status="translated", origin="tm-fuzzy", match_score=80)
    out = tmp_path / "out.xlf"
    doc.save(out)
    text = out.read_text("utf-8")
    assert ('      <source xml:lang="en">Text number 1</source>\n      <target xml:lang="fr" state="translated" '
            'state-qualifier="fuzzy-match">Texte numéro 1</target>\n   </trans-unit>') in text
    assert text.replace('\n      <target xml:lang="fr" state="translated" state-qualifier="fuzzy-match">Texte numéro '
                        '1</target>', "") == path.read_text("utf-8")


def test_new_segmented_target_mirrors_seg_source(tmp_path: Path):
    src = tmp_path / "in.xlf"
    src.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">\n'
        ' <file original="f" source-language="en" datatype="plaintext">\n'
        '  <body>\n'
        '    <trans-unit id="t1">\n'
        '      <source>One. <x id="1"/> Two.</source>\n'
        '      <seg-source><mrk mtype="seg" mid="1">One.</mrk> <x id="1"/> <mrk mtype="seg" mid="2">Two.</mrk>'
        '</seg-source>\n'
        '      <note>n</note>\n'
        '    </trans-unit>\n'
        '  </body>\n'
        ' </file>\n'
        '</xliff>\n', "utf-8")
    doc = formats.load(src)
    assert [u.id for u in doc.units] == ["t1#1", "t1#2"] and doc.target_lang is None
    doc.units[1].set_target(Segment.from_text("Deux."))
    doc.target_lang = "fr"
    out = tmp_path / "out.xlf"
    doc.save(out)
    text = out.read_text("utf-8")
    assert ('</seg-source>\n      <target xml:lang="fr" state="needs-review-translation" state-qualifier="leveraged-mt">'
            '<mrk mtype="seg" mid="1"></mrk> <x id="1"/> <mrk mtype="seg" mid="2">Deux.</mrk></target>\n'
            '      <note>') in text
    assert '<file original="f" source-language="en" datatype="plaintext" target-language="fr">' in text
    again = formats.load(out)
    assert again.units[0].target is None and again.units[1].target.text == "Deux."
    assert again.target_lang == "fr"


def test_qe_declares_its_namespace_once(tmp_path: Path):
    path = _corpus("xliff12", "okapi", "Manual-12-AltTrans.xlf")
    doc = formats.load(path)
    for u in doc.units:
        if not u.protected:
            u.set_target(_swapped(u))
            u.set_qe(91.0)
    out = tmp_path / "out.xlf"
    doc.save(out)
    text = out.read_text("utf-8")
    assert text.count(f'xmlns:its="{ITS}"') == 1
    assert '<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2" xmlns:its="' in text
    assert 'its:mtConfidence="0.91" its:annotatorsRef="mt-confidence|https://github.com/tower-cat"' in text
    again = formats.load(out)
    assert [u.qe_score for u in again.units if not u.protected] == [pytest.approx(91.0)] * 5
    # a file that already declares ITS (with its:version) gets no second declaration
    path2 = _corpus("xliff12", "okapi", "lqiTest.xlf")
    doc2 = formats.load(path2)
    doc2.units[0].set_target(_swapped(doc2.units[0]))
    doc2.units[0].set_qe(50)
    out2 = tmp_path / "out2.xlf"
    doc2.save(out2)
    text2 = out2.read_text("utf-8")
    assert text2.count("xmlns:its=") == 1 and text2.count("its:version") == 1


def test_qe_only_on_existing_target(tmp_path: Path):
    path = _corpus("xliff12", "okapi", "Manual-12-AltTrans.xlf")
    doc = formats.load(path)
    unit = next(u for u in doc.units if u.id == "2")
    unit.set_qe(40)
    out = tmp_path / "out.xlf"
    doc.save(out)
    assert ('<target xml:lang="fr" its:mtConfidence="0.4" its:annotatorsRef="mt-confidence|https://github.com/'
            'tower-cat">Texte numéro 2.</target>') in out.read_text("utf-8")


def test_xml_space_preserve_whitespace_kept(tmp_path: Path):
    path = _corpus("xliff12", "translate-toolkit", "test_inline-test_odf2xliff_inline-reference.xlf")
    doc = formats.load(path)
    for u in doc.units:
        u.set_target(_swapped(u))
    out = tmp_path / "out.xlf"
    doc.save(out)
    again = formats.load(out)
    for old, new in zip(doc.units, again.units):
        assert new.target.parts == [p.swapcase() if isinstance(p, str) else p for p in old.source.parts]
    crafted = formats.load(_corpus("xliff12", "disfr", "Crafted04.xliff"))
    assert crafted.units[1].target.text == "SPACES ARE EXCLUDED FROM THE SEGMENT."
    assert crafted.units[0].source.parts == ["Segmentation"]


def test_protected_units_refuse_edits(tmp_path: Path):
    doc = formats.load(_corpus("mqxliff", "bb-io", "locked.mqxliff"))
    doc.units[0].set_target(Segment.from_text("nope"))
    with pytest.raises(TowerCatError, match="locked"):
        doc.save(tmp_path / "out.mqxliff")
    assert not (tmp_path / "out.mqxliff").exists()


def test_locked_memoq_units_never_change(tmp_path: Path):
    path = _corpus("mqxliff", "bb-io", "locked.mqxliff")
    doc = formats.load(path)
    locked = doc.units[0]
    before = xliff12.unit_xml(doc, locked)
    for u in doc.units[1:]:
        u.set_target(_swapped(u), status="translated", origin="tm-fuzzy", match_score=77)
    out = tmp_path / "out.mqxliff"
    doc.save(out)
    again = formats.load(out)
    assert xliff12.unit_xml(again, again.units[0]) == before
    text = out.read_text("utf-8")
    assert text.count('mq:status="Pretranslated"') == 2 and text.count('mq:percent="77"') == 2
    assert again.units[1].state == "Pretranslated" and again.units[1].match_score == 77


def test_code_mismatch_is_refused(tmp_path: Path):
    doc = formats.load(_corpus("xliff12", "disfr", "Crafted02.xliff"))
    unit = doc.units[3]  # g: abc <g id="204.1">text</g> def.
    stray = InlineCode("99", CodeKind.STANDALONE, '<x id="99"/>')
    unit.set_target(Segment(["x ", stray]))
    with pytest.raises(CodeMismatchError, match="99"):
        doc.save(tmp_path / "out.xliff")
    g_open, g_close = unit.source.codes
    unit.set_target(Segment([g_close, "bad", g_open]))  # would not be well-formed
    with pytest.raises(CodeMismatchError):
        doc.save(tmp_path / "out.xliff")
    unit.set_target(Segment(["ok ", g_open, "fine", g_close]))
    doc.save(tmp_path / "out.xliff")
    assert '<target xml:lang="x-xyz" state="needs-review-translation" state-qualifier="leveraged-mt">ok <g ' \
           'id="204.1">fine</g></target>' in (tmp_path / "out.xliff").read_text("utf-8")


SDL_SAMPLE = """<?xml version="1.0" encoding="utf-8"?><xliff xmlns:sdl="http://sdl.com/FileTypes/SdlXliff/1.0" \
version="1.2" sdl:version="1.0" xmlns="urn:oasis:names:tc:xliff:document:1.2"><file original="a.txt" \
source-language="en-US" datatype="x-sdlfilterframework2" target-language="de-DE"><header/><body>
<trans-unit id="u1"><source>One. Two.</source><seg-source><mrk mtype="seg" mid="1">One.</mrk> <mrk mtype="seg" \
mid="2">Two.</mrk></seg-source><target><mrk mtype="seg" mid="1">Eins.</mrk> <mrk mtype="seg" mid="2"/></target>\
<sdl:seg-defs><sdl:seg id="1" conf="ApprovedSignOff" locked="true" origin="interactive"/><sdl:seg id="2" \
origin="tm" percent="75"/></sdl:seg-defs></trans-unit>
<trans-unit id="u2"><source>Three.</source><seg-source><mrk mtype="seg" mid="3">Three.</mrk></seg-source>\
</trans-unit>
</body></file></xliff>"""


def test_sdl_write_back(tmp_path: Path):
    src = tmp_path / "a.sdlxliff"
    src.write_text(SDL_SAMPLE, "utf-8")
    doc = formats.load(src)
    assert doc.format == "sdlxliff"
    one, two, three = doc.units
    assert one.locked and one.final and one.protected and one.state == "ApprovedSignOff"
    assert two.target is None and two.match_score == 75 and not two.protected
    two.set_target(Segment.from_text("Zwei."))
    two.set_qe(66.4)
    three.set_target(Segment.from_text("Drei."), status="translated", origin="tm-exact", match_score=100)
    out = tmp_path / "out.sdlxliff"
    doc.save(out)
    text = out.read_text("utf-8")
    assert ('<target><mrk mtype="seg" mid="1">Eins.</mrk> <mrk mtype="seg" mid="2">Zwei.</mrk></target>'
            '<sdl:seg-defs><sdl:seg id="1" conf="ApprovedSignOff" locked="true" origin="interactive"/>'
            '<sdl:seg id="2" origin="mt" percent="66" conf="Draft" origin-system="tower-cat"/></sdl:seg-defs>') in text
    assert ('</seg-source><target><mrk mtype="seg" mid="3">Drei.</mrk></target><sdl:seg-defs><sdl:seg id="3" '
            'conf="Translated" origin="tm" origin-system="tower-cat" percent="100"/></sdl:seg-defs></trans-unit>') in text
    assert "state=" not in text and "its:" not in text
    again = formats.load(out)
    assert [u.target.text for u in again.units] == ["Eins.", "Zwei.", "Drei."]
    assert again.units[1].state == "Draft" and again.units[1].origin == "mt"
    one.set_qe(10)
    with pytest.raises(TowerCatError, match="u1#1"):
        doc.save(tmp_path / "bad.sdlxliff")


def test_unsafe_and_broken_files_are_refused(tmp_path: Path):
    bomb = tmp_path / "bomb.xlf"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE xliff [<!ENTITY a "aaaa">]><xliff version="1.2"><file '
                    'original="f" source-language="en"><body><trans-unit id="1"><source>&a;</source></trans-unit>'
                    '</body></file></xliff>')
    with pytest.raises(FormatError):
        xliff12.load(bomb)
    broken = tmp_path / "broken.xlf"
    broken.write_text('<xliff version="1.2"><file original="f" source-language="en"><body><trans-unit id="1">'
                      '<target>x</target></trans-unit></body></file></xliff>')
    with pytest.raises(FormatError, match="without <source>"):
        xliff12.load(broken)
    doc = xliff12.load(broken, strict=False)
    assert doc.issues and doc.issues[0].severity == "error"


TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
               max_size=40) | st.sampled_from(["a & b", "<tag>", "]]>", "'\"", "  spaced  ", "tab\tnew\nline"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TEXT, TEXT)
def test_fuzz_text_round_trips(tmp_path: Path, a: str, b: str):
    path = _corpus("xliff12", "disfr", "Crafted02.xliff")
    doc = formats.load(path)
    unit = doc.units[3]
    g_open, g_close = unit.source.codes
    unit.set_target(Segment([a, g_open, b, g_close]))
    out = tmp_path / "fuzz.xliff"
    doc.save(out)
    again = formats.load(out).units[3]
    assert again.target.text == a + b
    assert [c.xml for c in again.target.codes] == [g_open.xml, g_close.xml]


def test_multiple_files_languages_and_context(tmp_path: Path):
    src = tmp_path / "multi.xlf"
    src.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">\n'
        '  <file original="a.properties" source-language="en" target-language="de" datatype="javaproperties">\n'
        '    <body>\n'
        '      <group id="g" translate="no">\n'
        '        <trans-unit id="k1"><source>Keep</source></trans-unit>\n'
        '      </group>\n'
        '      <trans-unit id="k2" maxwidth="10" size-unit="char" resname="greeting">\n'
        '        <source>Hello</source>\n'
        '        <context-group><context context-type="sourcefile">a.c</context>'
        '<context context-type="linenumber">7</context></context-group>\n'
        '      </trans-unit>\n'
        '    </body>\n'
        '  </file>\n'
        '  <file original="b.properties" source-language="en" target-language="fr" datatype="javaproperties">\n'
        '    <body>\n'
        '      <trans-unit id="k1"><source>Bye</source><target xml:lang="de">Tschüss</target></trans-unit>\n'
        '    </body>\n'
        '  </file>\n'
        '</xliff>\n', "utf-8")
    doc = formats.load(src)
    assert [u.id for u in doc.units] == ["k1", "k2", "k1~2"]
    keep, hello, bye = doc.units
    assert not keep.translatable and keep.protected  # translate="no" on the enclosing group
    assert hello.max_length == 10 and hello.size_unit == "char" and hello.context.resname == "greeting"
    assert hello.context.locations == ["a.c:7"] and hello.context.previous_source == "Keep"
    assert hello.context.next_source is None and bye.context.previous_source is None  # per <file>
    assert bye.context.file == "b.properties" and bye.line == 16
    assert (doc.source_lang, doc.target_lang) == ("en", "de")
    messages = " | ".join(i.message for i in doc.warnings)
    assert "target-language 'fr', the first file 'de'" in messages
    assert "contradicts the file's target-language" in messages
    hello.set_target(Segment.from_text("Hallo"), status="final", origin="human")
    bye.set_target(Segment.from_text("Au revoir"), status="reviewed", origin="tm-context", match_score=101)
    out = tmp_path / "out.xlf"
    doc.save(out)
    text = out.read_text("utf-8")
    assert '        <source>Hello</source>\n        <target xml:lang="de" state="final">Hallo</target>\n' in text
    assert ('<target xml:lang="de" state="signed-off" state-qualifier="leveraged-tm">Au revoir</target>') in text


# --- candidates: the target an edit replaces -------------------------------------------------------------------

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _xliff_local(el) -> str | None:
    """The local name of an XLIFF 1.x element (namespaced or not), None for extension elements."""
    if not isinstance(el.tag, str):
        return None
    q = etree.QName(el)
    return q.localname if q.namespace is None or q.namespace.startswith("urn:oasis:names:tc:xliff:document:1.") \
        else None


def _previous_alts(doc, unit) -> list:
    """The alt-trans alttranstype="previous-version" elements that belong to a unit (by mid for segments)."""
    tu, seg = doc.handle.locate(unit)
    mid = seg.mid if seg is not None else None
    return [a for a in tu.el if _xliff_local(a) == "alt-trans" and a.get("alttranstype") == "previous-version"
            and a.get("mid") == mid]


def _alt_target(doc, alt) -> Segment:
    t = next(c for c in alt if _xliff_local(c) == "target")
    return xliff12._ContentReader(doc.handle.xf, doc.handle.ns).segment(t)


def _verbatim(seg: Segment) -> list:
    return [p if isinstance(p, str) else p.xml for p in seg.parts]


def _without_previous_versions(path: Path):
    root = _stripped_tree(path)
    for alt in [a for a in root.iter() if _xliff_local(a) == "alt-trans"
                and a.get("alttranstype") == "previous-version"]:
        alt.getparent().remove(alt)
    return root


def _editable_with_targets() -> list[Path]:
    out = []
    for p in _files():
        try:
            doc = formats.load(p)
        except FormatError:
            continue
        if any(u.has_target and not u.protected for u in doc.units):
            out.append(p)
    return out


def test_previous_target_becomes_alt_trans_sample(tmp_path: Path):
    path = SAMPLES / "tower-notes.en-de.xlf"
    doc = formats.load(path)
    unit = next(u for u in doc.units if u.id == "menu.file.import")
    old = unit.target
    unit.set_target(Segment.from_text("Notizen einlesen…"), status="translated", previous=old)
    out = tmp_path / "out.xlf"
    doc.save(out)
    text = out.read_text("utf-8")
    assert ('          <target state="translated" state-qualifier="leveraged-mt">Notizen einlesen…</target>\n'
            '          <alt-trans alttranstype="previous-version" origin="previous-version"><source>Import notes…'
            '</source><target>Notizen importieren…</target></alt-trans>\n        </trans-unit>') in text
    again = formats.load(out)
    new = next(u for u in again.units if u.id == "menu.file.import")
    assert new.target.text == "Notizen einlesen…"
    assert new.meta["alt_trans"] == [{"origin": "previous-version", "match_quality": None,
                                      "target": "Notizen importieren…"}]
    assert _tree_diff(_without_previous_versions(path), _without_previous_versions(out)) is None
    # an identical previous version is not added twice; the old provenance becomes the origin
    again_unit = new
    again_unit.set_target(Segment.from_text("Notizen laden…"), previous=old)
    out2 = tmp_path / "out2.xlf"
    again.save(out2)
    assert out2.read_text("utf-8").count('alttranstype="previous-version"') == 1
    third = formats.load(out2)
    u3 = next(u for u in third.units if u.id == "menu.file.import")
    assert u3.origin == "leveraged-mt"
    u3.set_target(Segment.from_text("Notizen holen…"), previous=u3.target)
    out3 = tmp_path / "out3.xlf"
    third.save(out3)
    assert ('<alt-trans alttranstype="previous-version" origin="leveraged-mt"><source>Import notes…</source>'
            '<target>Notizen laden…</target></alt-trans>') in out3.read_text("utf-8")
    assert out3.read_text("utf-8").count('alttranstype="previous-version"') == 2


def test_no_candidate_without_a_real_previous_target(tmp_path: Path):
    path = SAMPLES / "tower-notes.en-de.xlf"
    doc = formats.load(path)
    unit = next(u for u in doc.units if u.id == "menu.file.import")
    unit.set_target(Segment.from_text("Notizen importieren…"), previous=unit.target)  # unchanged text
    other = next(u for u in doc.units if u.id == "menu.file")
    other.set_target(Segment.from_text("Datei"), previous=Segment())  # nothing was there
    out = tmp_path / "out.xlf"
    doc.save(out)
    assert "alt-trans" not in out.read_text("utf-8")


@needs_corpus
@pytest.mark.parametrize("path", _editable_with_targets(), ids=_ident)
def test_corpus_previous_targets_become_alt_trans(path: Path, tmp_path: Path):
    doc = formats.load(path)
    expected = {}
    for unit in doc.units:
        if unit.protected or not unit.has_target:
            continue
        old = unit.target
        new = _swapped(unit)
        unit.set_target(new, previous=old)
        expected[unit.id] = (old, new, unit.edit.replaced is not None)
    assert expected
    out = tmp_path / path.name
    doc.save(out)

    again = formats.load(out)
    assert [u.id for u in again.units] == [u.id for u in doc.units]
    by_id = {u.id: u for u in again.units}
    for uid, (old, new, candidate) in expected.items():
        unit = by_id[uid]
        assert [c.xml for c in unit.target.codes] == [c.xml for c in new.codes], uid
        assert unit.target.text == new.text, uid
        alts = _previous_alts(again, unit)
        assert len(alts) == (1 if candidate else 0), uid
        if not candidate:
            continue
        alt = alts[0]
        assert _verbatim(_alt_target(again, alt)) == _verbatim(old), uid  # codes verbatim
        src = next(c for c in alt if _xliff_local(c) == "source")
        reader = xliff12._ContentReader(again.handle.xf, again.handle.ns)
        assert _verbatim(reader.segment(src)) == _verbatim(unit.source), uid
        # schema order: alt-trans with the XLIFF elements, before extension elements (sdl:seg-defs, mq:…)
        later = list(alt.itersiblings())
        assert all(_xliff_local(x) in (None, "alt-trans") for x in later), uid
    assert _tree_diff(_without_previous_versions(path), _without_previous_versions(out)) is None


# --- segmented targets: every code once, in its segment --------------------------------------------------------

def _segmented_files() -> list[Path]:
    """Every SDLXLIFF and every XLIFF 1.2 of the corpus with <mrk mtype="seg"> segments that pseudo writes (not
    locked or approved, with text)."""
    out = []
    for p in _files():
        try:
            doc = formats.load(p)
        except TowerCatError:
            continue
        if any(not s.unit.protected and s.unit.source.text.strip() for tu in doc.handle.tus for s in tu.segs or ()):
            out.append(p)
    return out


_CODE_ELEMENTS = {"x", "bx", "ex", "g", "ph", "bpt", "ept", "it", "mrk"}


def _code_key(el) -> tuple:
    return (etree.QName(el).localname, el.get("id") or el.get("mid") or el.get("rid") or "",
            tuple(sorted((etree.QName(k).localname, v) for k, v in el.attrib.items())))


def _is_seg(el) -> bool:
    return isinstance(el.tag, str) and etree.QName(el).localname == "mrk" and el.get("mtype") == "seg"


def _codes_in(el) -> list[tuple]:
    return sorted(_code_key(d) for d in el.iterdescendants()
                  if isinstance(d.tag, str) and etree.QName(d).localname in _CODE_ELEMENTS and not _is_seg(d))


def _codes_outside_segments(el) -> list[tuple]:
    out = []
    for ch in el:
        if not isinstance(ch.tag, str) or _is_seg(ch):
            continue
        if etree.QName(ch).localname in _CODE_ELEMENTS:
            out.append(_code_key(ch))
        out += _codes_outside_segments(ch)
    return out


@needs_corpus
@pytest.mark.parametrize("path", _segmented_files(), ids=_ident)
def test_pseudo_writes_each_segment_code_once_inside_its_segment(path: Path, tmp_path: Path):
    """After pseudo, every target segment that was written carries exactly the codes of its source segment, and
    no code of a source segment also sits between the target's segments (TS09-12-Test01's ``<x id="ph8"/>``,
    which Okapi had put before the segment, was written there and again inside it)."""
    from tower_cat.pseudo import pseudo_document

    doc = formats.load(path)
    pseudo_document(doc)
    written = {u.id for u in doc.units if u.edit is not None}
    assert written
    out = tmp_path / path.name
    doc.save(out)
    root = etree.parse(str(out), etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)).getroot()
    checked = 0
    for tu in root.iter(f"{{{XLIFF}}}trans-unit", "trans-unit"):
        seg_source = next((c for c in tu if isinstance(c.tag, str) and etree.QName(c).localname == "seg-source"), None)
        target = next((c for c in tu if isinstance(c.tag, str) and etree.QName(c).localname == "target"), None)
        if seg_source is None or target is None:
            continue
        src_segs = {m.get("mid"): m for m in seg_source.iter() if _is_seg(m)}
        tgt_segs = {m.get("mid"): m for m in target.iter() if _is_seg(m)}
        mids = [mid for mid in src_segs if f"{tu.get('id')}#{mid}" in written]
        if not mids:
            continue
        in_segments = {k for mid in src_segs for k in _codes_in(src_segs[mid])}
        for mid in mids:
            assert mid in tgt_segs, f"{tu.get('id')}: segment {mid} missing from the target"
            assert _codes_in(tgt_segs[mid]) == _codes_in(src_segs[mid]), f"{tu.get('id')}#{mid}"
            checked += 1
        doubled = [k for k in _codes_outside_segments(target) if k in in_segments]
        assert not doubled, f"{tu.get('id')}: codes of a segment also written between segments: {doubled}"
    assert checked


def test_code_moved_out_of_its_segment_is_not_written_twice(tmp_path: Path):
    """The TS09-12-Test01 case, inline: the target has the leading code outside the (empty) segment."""
    p = tmp_path / "moved.sdlxliff"
    p.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<xliff xmlns:sdl="http://sdl.com/FileTypes/SdlXliff/1.0" '
        'xmlns="urn:oasis:names:tc:xliff:document:1.2" version="1.2"><file original="a.docx" source-language="en-US" '
        'target-language="de-DE" datatype="x-sdlfilterframework2"><body>\n<trans-unit id="u1"><source><x id="ph8" />'
        'Allow enough space.</source><seg-source><mrk mtype="seg" mid="7"><x id="ph8" />Allow enough space.</mrk>'
        '</seg-source><target><x id="ph8" /><mrk mtype="seg" mid="7" /></target><sdl:seg-defs><sdl:seg id="7" />'
        '</sdl:seg-defs></trans-unit>\n</body></file></xliff>\n', encoding="utf-8")
    doc = formats.load(p)
    assert doc.format == "sdlxliff"
    unit = doc.units[0]
    unit.set_target(Segment([unit.source.codes[0], "Genug Platz lassen."]))
    doc.save(tmp_path / "out.sdlxliff")
    text = (tmp_path / "out.sdlxliff").read_text(encoding="utf-8")
    assert '<target><mrk mtype="seg" mid="7"><x id="ph8" />Genug Platz lassen.</mrk></target>' in text
    assert text.count('<x id="ph8" />') == 3  # source, seg-source, target segment


# --- CRLF files keep CRLF in new multi-line targets ----------------------------------------------------------------

_CRLF_HEAD = {
    "xliff12": '<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">',
    "sdlxliff": '<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2" '
                'xmlns:sdl="http://sdl.com/FileTypes/SdlXliff/1.0">',
    "mqxliff": '<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2" xmlns:mq="MQXliff">',
}


@pytest.mark.parametrize("flavour", list(_CRLF_HEAD))
@pytest.mark.parametrize("segmented", [False, True])
def test_crlf_file_keeps_crlf_in_new_multiline_targets(tmp_path: Path, flavour: str, segmented: bool):
    seg = ('<seg-source><mrk mtype="seg" mid="1">one\ntwo</mrk></seg-source>' if segmented else "")
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n' + _CRLF_HEAD[flavour] + '\n<file original="f" '
            'source-language="en" target-language="de" datatype="plaintext"><body>\n'
            f'<trans-unit id="a"><source>one\ntwo</source>{seg}</trans-unit>\n'
            '<trans-unit id="b"><source>x</source><target>old</target></trans-unit>\n</body></file></xliff>\n')
    p = tmp_path / "crlf.xlf"
    p.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
    doc = formats.load(p)
    assert doc.format == flavour
    for unit in doc.units:
        unit.set_target(Segment.from_text("eins\nzwei\n drei"), previous=unit.target)
    out = tmp_path / "out.xlf"
    doc.save(out)
    raw = out.read_bytes()
    assert b"eins\r\nzwei\r\n drei" in raw
    assert raw.replace(b"\r\n", b"").count(b"\n") == 0, "a bare LF in a CRLF file"
    assert [u.target.text for u in formats.load(out).units] == ["eins\nzwei\n drei"] * 2


@pytest.mark.parametrize("where", ["seg-source", "target"])
def test_nested_segments_are_refused(tmp_path: Path, where: str):
    """Found by fuzzing: a segment inside a segment gave overlapping edits (broken XML or an AssertionError)."""
    nested = '<mrk mtype="seg" mid="1">One <mrk mtype="seg" mid="2">two</mrk>.</mrk>'
    flat = '<mrk mtype="seg" mid="1">One </mrk><mrk mtype="seg" mid="2">two</mrk>'
    p = tmp_path / "nested.xlf"
    p.write_text('<?xml version="1.0"?>\n<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">'
                 '<file original="f" source-language="en" target-language="de" datatype="plaintext"><body>\n'
                 f'<trans-unit id="t"><source>One two.</source><seg-source>{nested if where == "seg-source" else flat}'
                 f'</seg-source>\n<target>{nested if where == "target" else flat}</target></trans-unit>\n'
                 '</body></file></xliff>\n', encoding="utf-8")
    with pytest.raises(FormatError, match="inside another segment") as exc:
        formats.load(p)
    assert exc.value.line == (3 if where == "seg-source" else 4) and exc.value.unit == "t"
    assert any("inside another segment" in i.message for i in formats.load(p, strict=False).issues)
