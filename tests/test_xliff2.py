"""XLIFF 2.x reader/writer: the shared corpus (valid and invalid files), the official XSDs as oracle, and focused
cases for pairing, nesting, dataRef display, reordering, states and QE write-back."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from lxml import etree

from tower_cat.document import CodeKind, InlineCode, Segment
from tower_cat.errors import CodeMismatchError, FormatError, TowerCatError
from tower_cat.formats import xliff2

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"
SCHEMAS = SHARED / "schemas"
VALID = sorted(p for p in (CORPUS / "xliff2").rglob("*") if p.is_file()) if (CORPUS / "xliff2").is_dir() else []
INVALID = sorted(p for p in (CORPUS / "invalid" / "xliff2").rglob("*.xlf")) \
    if (CORPUS / "invalid" / "xliff2").is_dir() else []

needs_corpus = pytest.mark.skipif(not VALID, reason="../shared/corpus is absent")
HAVE_SCHEMAS = (SCHEMAS / "xliff-2.0").is_dir() and (SCHEMAS / "xliff-2.2").is_dir()
needs_schemas = pytest.mark.skipif(not HAVE_SCHEMAS, reason="../shared/schemas (the OASIS XSDs, test oracle) is absent")

MODULES = [
    ("urn:oasis:names:tc:xliff:matches:2.0", "matches.xsd"),
    ("urn:oasis:names:tc:xliff:metadata:2.0", "metadata.xsd"),
    ("urn:oasis:names:tc:xliff:glossary:2.0", "glossary.xsd"),
    ("urn:oasis:names:tc:xliff:fs:2.0", "fs.xsd"),
    ("urn:oasis:names:tc:xliff:resourcedata:2.0", "resource_data.xsd"),
    ("urn:oasis:names:tc:xliff:sizerestriction:2.0", "size_restriction.xsd"),
    ("urn:oasis:names:tc:xliff:validation:2.0", "validation.xsd"),
]


def _ids(paths):
    return [str(p.relative_to(CORPUS)) for p in paths]


@functools.lru_cache(maxsize=None)
def schema(core_ns: str) -> etree.XMLSchema:
    """Core XSD plus the module XSDs that load offline (everything else is laxly skipped via ##other)."""
    folder = SCHEMAS / ("xliff-2.2" if core_ns == xliff2.NS22 else "xliff-2.0")
    core = folder / ("xliff_core_2.2.xsd" if core_ns == xliff2.NS22 else "xliff_core_2.0.xsd")
    imports = [f'<xs:import namespace="{core_ns}" schemaLocation="{core.as_uri()}"/>']
    imports += [f'<xs:import namespace="{ns}" schemaLocation="{(folder / f).as_uri()}"/>' for ns, f in MODULES]
    wrapper = ('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x-tower-cat-test" '
               f'elementFormDefault="qualified">{"".join(imports)}</xs:schema>')
    return etree.XMLSchema(etree.fromstring(wrapper.encode(), base_url=folder.as_uri() + "/"))


def xsd_valid(path: Path) -> tuple[bool, str]:
    tree = etree.parse(str(path))
    sch = schema(etree.QName(tree.getroot()).namespace)
    ok = sch.validate(tree)
    return ok, "" if ok else str(sch.error_log.last_error)


def assert_valid(path: Path) -> None:
    """Our own validator always (a strict load); the OASIS XSDs too when ../shared/schemas is there, so a test
    that checks more than validity still runs in a plain clone."""
    xliff2.load(path, strict=True)
    if HAVE_SCHEMAS:
        ok, err = xsd_valid(path)
        assert ok, err


def swapcase_like(seg: Segment) -> Segment:
    return Segment([p.swapcase() if isinstance(p, str) else p for p in seg.parts])


def stripped_c14n(path: Path) -> bytes:
    """The document without targets, segment state/subState and root trgLang: what an edit may not touch."""
    tree = etree.parse(str(path))
    root = tree.getroot()
    root.attrib.pop("trgLang", None)
    for ns in xliff2.CORE_NAMESPACES:
        for seg in root.iter(f"{{{ns}}}segment"):
            seg.attrib.pop("state", None)
            seg.attrib.pop("subState", None)
            for t in seg.findall(f"{{{ns}}}target"):
                prev = t.getprevious()
                if prev is not None:
                    prev.tail = t.tail  # the target goes with the whitespace written before it
                seg.remove(t)
    return etree.tostring(tree)  # same serializer on both sides (C14N refuses relative namespace URIs)


def write(tmp_path: Path, text: str, name: str = "t.xlf") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ------------------------------------------------------------------------------------------------ corpus


@needs_corpus
@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_file_loads_and_noop_save_is_byte_identical(path, tmp_path):
    doc = xliff2.load(path)
    assert not [i for i in doc.issues if i.severity == "error"]
    assert doc.source_lang
    out = tmp_path / path.name
    xliff2.save(doc, out)
    assert out.read_bytes() == path.read_bytes()


@needs_corpus
@needs_schemas
@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_file_edit_every_unit(path, tmp_path):
    doc = xliff2.load(path)
    if not doc.target_lang:
        doc.target_lang = "fr"
    edited = {}
    for unit in doc.translatable_units():
        new = swapcase_like(unit.source)
        unit.set_target(new, status="needs-review")
        edited[unit.id] = new
    out = tmp_path / path.name
    xliff2.save(doc, out)
    etree.parse(str(out))  # well-formed

    valid_before, _ = xsd_valid(path)
    if valid_before:
        ok, err = xsd_valid(out)
        assert ok, err

    again = xliff2.load(out)  # strict: we never write something invalid
    by_id = {u.id: u for u in again.units}
    assert len(again.units) == len(doc.units)
    for uid, new in edited.items():
        unit = by_id[uid]
        assert unit.target is not None
        assert [c.xml for c in unit.target.codes] == [c.xml for c in unit.source.codes]
        assert [c.key for c in unit.target.codes] == [c.key for c in unit.source.codes]
        assert unit.target.text == new.text
        assert unit.state == "translated"
        assert unit.meta["subState"] == "tower-cat:needs-review"
    for unit in doc.units:
        if unit.id not in edited:
            old_target = unit.target.parts if unit.target else None
            new_target = by_id[unit.id].target.parts if by_id[unit.id].target else None
            assert old_target == new_target
    assert stripped_c14n(out) == stripped_c14n(path)


@needs_corpus
@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_file_is_rejected(path):
    with pytest.raises(FormatError) as info:
        xliff2.load(path, strict=True)
    assert isinstance(info.value, TowerCatError)
    assert info.value.line is not None
    assert f":{info.value.line}" in str(info.value)


@needs_corpus
@pytest.mark.parametrize("path", [p for p in INVALID if p.name != "Good-pgs_plural.xlf"],
                         ids=_ids([p for p in INVALID if p.name != "Good-pgs_plural.xlf"]))
def test_invalid_file_lenient_load_reports_errors(path):
    doc = xliff2.load(path, strict=False)
    errors = [i for i in doc.issues if i.severity == "error"]
    assert errors and all(i.line for i in errors)


@needs_corpus
def test_bbio_deviations_are_warnings():
    path = CORPUS / "xliff2" / "bb-io" / "The Hobbit, or There and Back Again_en-US.html.xlf"
    doc = xliff2.load(path)
    messages = " | ".join(i.message for i in doc.warnings)
    assert "<skeleton>" in messages and "<originalData>" in messages and "startRef" in messages
    unit = doc.units[0]
    # <ec> without startRef closes the <sc> opened just before it: paired, not isolated
    assert [(c.kind.value, c.id, c.isolated) for c in unit.source.codes][:4] == [
        ("open", "1", False), ("open", "2", False), ("close", "2", False), ("close", "1", False)]
    assert unit.source.codes[0].display == "<strong>"


@needs_corpus
def test_invalid_messages_name_the_unit():
    doc = xliff2.load(CORPUS / "invalid/xliff2/oasis-xliff21-testsuite/bad_EcBeforeSc.xlf", strict=False)
    assert doc.issues[0].unit == "1"
    with pytest.raises(FormatError, match=r"unit '1'.*before its <sc>"):
        xliff2.load(CORPUS / "invalid/xliff2/oasis-xliff21-testsuite/bad_EcBeforeSc.xlf")


# ------------------------------------------------------------------------------------------------ focused

NS = 'xmlns="urn:oasis:names:tc:xliff:document:2.0" version="2.0"'


def test_sniff():
    assert xliff2.sniff(b'<?xml version="1.0"?>\n<xliff xmlns="urn:oasis:names:tc:xliff:document:2.0" version="2.0">')
    assert xliff2.sniff(b'<xliff version="2.2" srcLang="en" xmlns="urn:oasis:names:tc:xliff:document:2.2">')
    assert xliff2.sniff(b'<!-- c --><x:xliff xmlns:x="urn:oasis:names:tc:xliff:document:2.2" version="2.1">')
    assert not xliff2.sniff(b'<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2" '
                            b'xmlns:its="http://www.w3.org/2005/11/its" its:version="2.0">')
    assert not xliff2.sniff(b'<tmx version="1.4">')


def test_sc_ec_pairing_within_and_across_segments(tmp_path):
    p = write(tmp_path, f"""<xliff {NS} srcLang="en" trgLang="de"><file id="f"><unit id="u">
<segment id="a"><source><sc id="1"/>bold<ec startRef="1"/> and <sc id="2"/>split</source></segment>
<segment id="b"><source>rest<ec startRef="2"/> <sc id="3" isolated="yes"/>x</source></segment>
</unit></file></xliff>""")
    doc = xliff2.load(p)
    a, b = doc.units
    assert a.id == "f/u/a"
    assert [(c.kind, c.id, c.isolated) for c in a.source.codes] == [
        (CodeKind.OPEN, "1", False), (CodeKind.CLOSE, "1", False), (CodeKind.OPEN, "2", True)]
    assert [(c.kind, c.id, c.isolated) for c in b.source.codes] == [
        (CodeKind.CLOSE, "2", True), (CodeKind.OPEN, "3", True)]
    assert a.source.codes[1].xml == '<ec startRef="1"/>'
    # writing the targets of both segments keeps the unit's target side paired
    for u in doc.units:
        u.set_target(swapcase_like(u.source))
    xliff2.save(doc, p)
    again = xliff2.load(p)
    assert [c.xml for c in again.units[1].target.codes] == ['<ec startRef="2"/>', '<sc id="3" isolated="yes"/>']


def test_pc_nesting_and_written_target(tmp_path):
    p = write(tmp_path, f"""<xliff {NS} srcLang="en" trgLang="de">
 <file id="f">
  <unit id="u">
   <segment>
    <source>A <pc id="1" type="fmt"><pc id="2">deep</pc> &amp; <ph id="3"/></pc>.</source>
   </segment>
  </unit>
 </file>
</xliff>""")
    doc = xliff2.load(p)
    (u,) = doc.units
    assert u.id == "f/u/1"
    assert [(c.kind.value, c.id, c.xml) for c in u.source.codes] == [
        ("open", "1", '<pc id="1" type="fmt">'), ("open", "2", '<pc id="2">'), ("close", "2", "</pc>"),
        ("standalone", "3", '<ph id="3"/>'), ("close", "1", "</pc>")]
    assert u.source.text == "A deep & ."
    c = u.source.codes
    u.set_target(Segment(["B ", c[0], c[1], "tief", c[2], " < ", c[3], c[4], "."]), status="translated")
    xliff2.save(doc, p)
    text = p.read_text()
    assert ('    <source>A <pc id="1" type="fmt"><pc id="2">deep</pc> &amp; <ph id="3"/></pc>.</source>\n'
            '    <target>B <pc id="1" type="fmt"><pc id="2">tief</pc> &lt; <ph id="3"/></pc>.</target>\n'
            '   </segment>') in text
    assert '<segment state="translated">' in text


def test_bad_nesting_is_never_written(tmp_path):
    p = write(tmp_path, f"""<xliff {NS} srcLang="en" trgLang="de"><file id="f"><unit id="u"><segment>
<source><pc id="1">a</pc><pc id="2">b</pc></source></segment></unit></file></xliff>""")
    doc = xliff2.load(p)
    c = doc.units[0].source.codes
    doc.units[0].set_target(Segment([c[0], "a", c[2], "b", c[1], c[3]]))
    with pytest.raises(CodeMismatchError):
        xliff2.save(doc, tmp_path / "out.xlf")
    doc.units[0].set_target(Segment(["x", InlineCode("9", CodeKind.STANDALONE, '<ph id="9"/>')]))
    with pytest.raises(CodeMismatchError):
        xliff2.save(doc, tmp_path / "out.xlf")


@needs_corpus
def test_dataref_display():
    doc = xliff2.load(CORPUS / "xliff2/oasis-xliff21-testsuite/core/valid/everything-core.xlf")
    tu2 = next(u for u in doc.units if u.meta["unit_id"] == "tu2")
    assert tu2.id == "f1/tu2/s1"
    assert [(c.kind.value, c.display) for c in tu2.source.codes] == [
        ("open", "[b [#$tu3]   ]"), ("close", "[/b [#t3end]   ]"), ("standalone", "[rtl-data   ]")]
    # translate="no" on <file>, translate="yes" on the unit and group
    assert all(u.translatable for u in doc.units)
    assert tu2.notes == ["Text of note1", "Text of note-g1"]


def test_translate_no_inherited_and_final_protected(tmp_path):
    p = write(tmp_path, f"""<xliff {NS} srcLang="en" trgLang="de"><file id="f" translate="no">
<group id="g"><unit id="u1"><segment><source>a</source></segment></unit>
<unit id="u2" translate="yes"><segment state="final"><source>b</source><target>B</target></segment>
<segment state="reviewed"><source>c</source><target>C</target></segment></unit></group></file></xliff>""")
    doc = xliff2.load(p)
    u1, u2a, u2b = doc.units
    assert not u1.translatable and u1.protected
    assert u2a.final and u2a.protected
    assert not u2b.final and not u2b.protected and u2b.state == "reviewed"


@needs_corpus
def test_can_reorder_check():
    with pytest.raises(FormatError, match="canReorder"):
        xliff2.load(CORPUS / "invalid/xliff2/oasis-xliff21-testsuite/bad_WrongReordering1.xlf")
    doc = xliff2.load(CORPUS / "xliff2/oasis-xliff22-testsuite/core/valid/withReorderedCodes.xlf")
    assert not doc.issues


def test_can_reorder_custom(tmp_path):
    no = 'canDelete="no" canCopy="no"'  # a reorder sequence's codes are also non-removable and not copyable
    src = f'<ph id="1" canReorder="firstNo" {no}/><ph id="2" canReorder="no" {no}/>text<ph id="3"/>'
    ok = write(tmp_path, f"""<xliff {NS} srcLang="en" trgLang="de"><file id="f"><unit id="u"><segment>
<source>{src}</source><target><ph id="3"/>text<ph id="1" canReorder="firstNo" {no}/><ph id="2" canReorder="no" {no}/></target>
</segment></unit></file></xliff>""", "ok.xlf")
    assert not xliff2.load(ok).issues
    bad = write(tmp_path, f"""<xliff {NS} srcLang="en" trgLang="de"><file id="f"><unit id="u"><segment>
<source>{src}</source><target><ph id="2" canReorder="no" {no}/><ph id="1" canReorder="firstNo" {no}/>text<ph id="3"/></target>
</segment></unit></file></xliff>""", "bad.xlf")
    with pytest.raises(FormatError, match="canReorder"):
        xliff2.load(bad)


def test_state_mapping(tmp_path):
    p = write(tmp_path, f"""<xliff {NS} srcLang="en" trgLang="de"><file id="f"><unit id="u">
<segment id="s1" state="initial" subState="acme:todo"><source>a</source></segment>
<segment id="s2"><source>b</source></segment>
<segment id="s3"><source>c</source></segment>
</unit></file></xliff>""")
    doc = xliff2.load(p)
    s1, s2, s3 = doc.units
    s1.set_target(Segment(["A"]), status="translated")
    s2.set_target(Segment(["B"]), status="needs-review")
    s3.set_target(Segment(["C"]), status="final")
    xliff2.save(doc, p)
    text = p.read_text()
    assert '<segment id="s1" state="translated">' in text  # a stale subState goes with the old state
    assert '<segment id="s2" state="translated" subState="tower-cat:needs-review">' in text
    assert '<segment id="s3" state="final">' in text
    again = xliff2.load(p)
    assert [u.state for u in again.units] == ["translated", "translated", "final"]
    assert again.units[2].final


@needs_corpus
def test_trglang_written_when_missing(tmp_path):
    doc = xliff2.load(CORPUS / "xliff2/oasis-xliff21-testsuite/core/valid/sourceOnly.xlf")
    assert doc.target_lang is None
    doc.units[0].set_target(Segment(["Quelle"]))
    with pytest.raises(FormatError, match="trgLang"):
        xliff2.save(doc, tmp_path / "x.xlf")
    doc.target_lang = "fr"
    out = tmp_path / "sourceOnly.xlf"
    xliff2.save(doc, out)
    text = out.read_text()
    assert 'srcLang="en" trgLang="fr">' in text
    assert "    <source>source</source>\n    <target>Quelle</target>\n" in text
    again = xliff2.load(out)
    assert again.target_lang == "fr" and again.units[0].target.text == "Quelle"


@needs_corpus
def test_segments_without_id_are_positional(tmp_path):
    doc = xliff2.load(CORPUS / "xliff2/oasis-xliff21-testsuite/core/valid/withGlossary.xlf")
    assert [u.id for u in doc.units] == ["f1/1/1", "f1/1/2"]
    doc.units[1].set_target(Segment(["Encore un ", *doc.units[1].source.codes[:1], "sosie",
                                      *doc.units[1].source.codes[1:], "."]))
    out = tmp_path / "g.xlf"
    xliff2.save(doc, out)
    again = xliff2.load(out)
    assert again.units[0].target.text == "Il est mon alter ego. "
    assert again.units[1].target.text == "Encore un sosie."


def test_invalid_xml_characters_become_cp(tmp_path):
    p = write(tmp_path, f"""<xliff {NS} srcLang="en" trgLang="de"><file id="f"><unit id="u"><segment>
<source>a</source></segment></unit></file></xliff>""")
    doc = xliff2.load(p)
    doc.units[0].set_target(Segment(["x\x01y"]))
    xliff2.save(doc, p)
    assert '<target>x<cp hex="0001"/>y</target>' in p.read_text()
    again = xliff2.load(p)
    assert again.units[0].target.codes[0].display == "\x01"


def test_xml_lang_on_new_target(tmp_path):
    p = write(tmp_path, f"""<xliff {NS} srcLang="en" trgLang="fr"><file id="f"><unit id="u" xml:lang="en">
<segment><source>a</source></segment></unit></file></xliff>""")
    doc = xliff2.load(p)
    doc.units[0].set_target(Segment(["b"]))
    xliff2.save(doc, p)
    assert '<target xml:lang="fr">b</target>' in p.read_text()
    xliff2.load(p)  # strict: the new target does not inherit xml:lang="en"


def test_max_length_from_size_restriction(tmp_path):
    p = write(tmp_path, f"""<xliff {NS} srcLang="en" xmlns:slr="urn:oasis:names:tc:xliff:sizerestriction:2.0">
<file id="f"><unit id="u" slr:sizeRestriction="0,25"><segment><source>a</source></segment></unit>
<unit id="v" slr:sizeRestriction="*"><segment><source>b</source></segment></unit></file></xliff>""")
    doc = xliff2.load(p)
    assert doc.units[0].max_length == 25 and doc.units[0].size_unit == "char"
    assert doc.units[1].max_length is None


@needs_corpus
@needs_schemas
@pytest.mark.parametrize("name", ["oasis-xliff21-testsuite/core/valid/withGlossary.xlf",
                                  "oasis-xliff21-testsuite/core/valid/toJoin.xlf",
                                  "oasis-xliff22-testsuite/modules/valid/Good-itsm_text-analytics.xlf",
                                  "oasis-xliff21-testsuite/core/valid/withMatches.xlf",
                                  "oasis-xliff22-testsuite/core/valid/everything-core.xlf",
                                  "bb-io/contentful.html.xliff"])
def test_qe_write_is_schema_valid(name, tmp_path):
    path = CORPUS / "xliff2" / name
    doc = xliff2.load(path)
    for i, unit in enumerate(doc.translatable_units()):
        if i % 2 == 0:
            unit.set_target(swapcase_like(unit.source))
        unit.set_qe(87.5 - i)
    out = tmp_path / path.name
    xliff2.save(doc, out)
    ok, err = xsd_valid(out)
    assert ok, err
    again = xliff2.load(out)
    scored = [u for u in again.units if u.qe_score is not None]
    expected = [u for u in doc.translatable_units() if u.target is not None]
    assert len(scored) == len(expected) and scored[0].qe_score == 87.5
    tree = etree.parse(str(out))
    matches = tree.getroot().findall(".//{urn:oasis:names:tc:xliff:matches:2.0}match[@origin='tower-cat']")
    assert len(matches) == len(expected) and all(m.get("type") == "mt" for m in matches)
    # a second QE run replaces the tower-cat candidates instead of adding more
    for unit in again.translatable_units():
        unit.set_qe(10)
    out2 = tmp_path / ("2" + path.name)
    xliff2.save(again, out2)
    tree = etree.parse(str(out2))
    matches = tree.getroot().findall(".//{urn:oasis:names:tc:xliff:matches:2.0}match[@origin='tower-cat']")
    assert len(matches) == len(expected) and {m.get("matchQuality") for m in matches} == {"10"}
    assert xsd_valid(out2)[0]
    assert stripped_c14n(out2) != b""


def test_prefixed_core_namespace_and_crlf(tmp_path):
    text = ('<?xml version="1.0" encoding="UTF-8"?>\r\n'
            '<x:xliff xmlns:x="urn:oasis:names:tc:xliff:document:2.2" version="2.2" srcLang="en" trgLang="de">\r\n'
            ' <x:file id="f">\r\n  <x:unit id="u">\r\n   <x:segment>\r\n'
            '    <x:source>Hi <x:ph id="1"/></x:source>\r\n   </x:segment>\r\n  </x:unit>\r\n </x:file>\r\n</x:xliff>\r\n')
    p = tmp_path / "p.xlf"
    p.write_bytes(text.encode("utf-8"))
    assert xliff2.sniff(p.read_bytes()[:200])
    doc = xliff2.load(p)
    u = doc.units[0]
    u.set_target(Segment(["Hallo ", u.source.codes[0]]))
    u.set_qe(55)
    xliff2.save(doc, p)
    raw = p.read_bytes().decode("utf-8")
    assert '    <x:source>Hi <x:ph id="1"/></x:source>\r\n    <x:target>Hallo <x:ph id="1"/></x:target>\r\n' in raw
    assert "\n" not in raw.replace("\r\n", "")
    assert "<x:source>Hi" in raw.split("<mtc:match ")[1]
    assert_valid(p)
    again = xliff2.load(p)
    assert again.units[0].qe_score == 55 and again.units[0].target.text == "Hallo "


def test_large_file_edit_round_trip(tmp_path):
    units = "".join(f'<unit id="u{i}"><segment><source>Text {i} <pc id="1">b</pc><ph id="2"/></source></segment>'
                    f"</unit>\n" for i in range(5000))
    p = write(tmp_path, f'<xliff {NS} srcLang="en" trgLang="de"><file id="f">\n{units}</file></xliff>')
    doc = xliff2.load(p)
    for u in doc.units:
        u.set_target(swapcase_like(u.source))
    xliff2.save(doc, p)
    again = xliff2.load(p)
    assert len(again.units) == 5000
    assert [u.target.codes for u in again.units] == [u.source.codes for u in again.units]


@needs_corpus
def test_sniff_on_the_corpus():
    from tower_cat.formats import read_head

    assert all(xliff2.sniff(read_head(p)) for p in VALID + INVALID)
    others = [p for d in ("xliff12", "sdlxliff", "mqxliff", "tmx", "po") for p in (CORPUS / d).rglob("*")
              if p.is_file()]
    assert others and not [p for p in others if xliff2.sniff(read_head(p))]


# ------------------------------------------------------------------------------------ candidates (replaced targets)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
MTC = "urn:oasis:names:tc:xliff:matches:2.0"


def _previous_matches(root) -> list:
    return [m for m in root.iter(f"{{{MTC}}}match") if m.get("subType") == "tower-cat:previous"]


def _sig(el):
    """Tags, attributes and non-whitespace text of a tree (namespace declarations and indentation ignored)."""
    if not isinstance(el.tag, str):
        return (el.tag, (el.text or "").strip(), (el.tail or "").strip())
    return (el.tag, sorted(el.attrib.items()), (el.text or "").strip(), (el.tail or "").strip(),
            [_sig(c) for c in el])


def _without_previous_candidates(path: Path, new_ids=()):
    """The document minus what writing a target with ``previous=`` may change: targets, segment state/subState,
    root trgLang, tower-cat's previous-version matches (and a <mtc:matches> they leave empty), segment ids tower-cat
    added (``new_ids``)."""
    root = etree.parse(str(path)).getroot()
    root.attrib.pop("trgLang", None)
    for m in _previous_matches(root):
        parent = m.getparent()
        parent.remove(m)
        if not len(parent):
            parent.getparent().remove(parent)
    for ns in xliff2.CORE_NAMESPACES:
        for seg in root.iter(f"{{{ns}}}segment"):
            seg.attrib.pop("state", None)
            seg.attrib.pop("subState", None)
            if seg.get("id") in new_ids:
                del seg.attrib["id"]
            for t in seg.findall(f"{{{ns}}}target"):
                seg.remove(t)
    return _sig(root)


def test_previous_target_becomes_mtc_match_sample(tmp_path):
    # a first run translates, a second one re-translates (--overwrite): the first result is kept as a candidate
    doc = xliff2.load(SAMPLES / "tower-notes.en-pt.xliff")
    unit = next(u for u in doc.units if u.id == "f1/menu.file/1")
    unit.set_target(Segment.from_text("Ficheiro"), status="translated")
    first = tmp_path / "first.xliff"
    xliff2.save(doc, first)
    doc = xliff2.load(first)
    unit = next(u for u in doc.units if u.id == "f1/menu.file/1")
    unit.set_target(Segment.from_text("Arquivo"), previous=unit.target)
    out = tmp_path / "out.xliff"
    xliff2.save(doc, out)
    text = out.read_text("utf-8")
    assert ('      <unit id="menu.file" name="menu.file">\n        <mtc:matches>\n'
            '          <mtc:match id="tc-prev-tc-s1" ref="#tc-s1" type="mt" origin="previous-version" '
            'subType="tower-cat:previous"><source>File</source><target>Ficheiro</target></mtc:match>\n'
            '        </mtc:matches>\n        <notes>') in text
    assert '<segment state="translated" subState="tower-cat:needs-review" id="tc-s1">' in text
    assert_valid(out)
    again = xliff2.load(out)
    assert next(u for u in again.units if u.id == "f1/menu.file/tc-s1").target.text == "Arquivo"
    assert _without_previous_candidates(out, {"tc-s1"}) == _without_previous_candidates(first)
    # the same previous version is not added twice; a QE score for the segment is a separate match
    u2 = next(u for u in again.units if u.id == "f1/menu.file/tc-s1")
    u2.set_target(Segment.from_text("Arquivo!"), previous=Segment.from_text("Ficheiro"))
    u2.set_qe(70)
    out2 = tmp_path / "out2.xliff"
    xliff2.save(again, out2)
    root = etree.parse(str(out2)).getroot()
    assert [m.find(f"{{{xliff2.NS20}}}target").text for m in _previous_matches(root)] == ["Ficheiro"]
    assert len(root.findall(f".//{{{MTC}}}match[@origin='tower-cat']")) == 1
    assert_valid(out2)
    assert xliff2.load(out2).units[0].qe_score == 70


PREVIOUS_FILES = ["bb-io/contentful.html.xliff",
                  "oasis-xliff21-testsuite/core/valid/toJoin.xlf",
                  "oasis-xliff21-testsuite/core/valid/withMatches.xlf",
                  "oasis-xliff21-testsuite/core/valid/withGlossary.xlf",
                  "oasis-xliff21-testsuite/core/valid/withReferences.xlf",
                  "oasis-xliff21-testsuite/core/valid/withNotes_complex.xlf",
                  "oasis-xliff21-testsuite/core/valid/everything-core.xlf",
                  "oasis-xliff22-testsuite/core/valid/withReorderedCodes.xlf",
                  "oasis-xliff22-testsuite/modules/valid/Good-ctr_revisions-using-ref-to-resolvableID.xlf",
                  "okapi/test01.xlf"]


@needs_corpus
@needs_schemas
@pytest.mark.parametrize("name", PREVIOUS_FILES)
def test_corpus_previous_targets_become_mtc_matches(name, tmp_path):
    path = CORPUS / "xliff2" / name
    doc = xliff2.load(path)
    expected = {}
    for unit in doc.translatable_units():
        if unit.has_target:
            old = unit.target
            unit.set_target(swapcase_like(unit.source), previous=old)
            if unit.edit.replaced is not None:
                expected[unit.id] = old
    assert expected
    out = tmp_path / path.name
    xliff2.save(doc, out)
    if xsd_valid(path)[0]:
        ok, err = xsd_valid(out)
        assert ok, err
    again = xliff2.load(out)  # strict: the candidates pass the same inline checks as segments

    from tower_cat.formats import _xml

    xf = _xml.parse(out)
    segments = {}
    for e in again.handle.entries:
        segments[(e.unit_el.get("id"), e.segment.get("id"))] = e
    old_ids = {u.meta["segment_id"] for u in doc.units}
    seen = set()
    for m in _previous_matches(xf.root):
        unit_el = m.getparent().getparent()
        e = segments[(unit_el.get("id"), m.get("ref")[1:])]
        old_unit = doc.units[next(i for i, u in enumerate(again.units) if u is e.unit)]
        old = expected[old_unit.id]
        assert (m.get("type"), m.get("origin")) == ("mt", "previous-version")
        target = next(c for c in m if etree.QName(c).localname == "target")
        raw = xf.inner(target)
        assert "".join(target.itertext()) == old.text
        pos = 0
        for c in old.codes:  # codes verbatim, in order (isolated ones are rewritten isolated="yes")
            if c.isolated or not c.xml:
                continue
            pos = raw.index(c.xml, pos) + len(c.xml)
        seen.add(old_unit.id)
    assert seen == set(expected)
    new_ids = {e.segment.get("id") for e in again.handle.entries} - old_ids
    assert _without_previous_candidates(out, new_ids) == _without_previous_candidates(path)


def test_crlf_file_keeps_crlf_in_new_multiline_targets(tmp_path):
    """Issue 20: a new target with line breaks in a CRLF file gets CRLF, in the target and in the candidates."""
    text = ('<?xml version="1.0" encoding="UTF-8"?>\r\n'
            f'<xliff {NS} srcLang="en" trgLang="de">\r\n <file id="f">\r\n  <unit id="u">\r\n'
            '   <segment id="s"><source>one\r\ntwo</source><target>alt\r\nalt</target>'
            '</segment>\r\n  </unit>\r\n </file>\r\n</xliff>\r\n')
    p = tmp_path / "crlf.xlf"
    p.write_bytes(text.encode("utf-8"))
    doc = xliff2.load(p)
    u = doc.units[0]
    assert u.source.text == "one\ntwo"  # XML reads CRLF as one line feed
    u.set_target(Segment.from_text("eins\nzwei\n"), previous=u.target)
    u.set_qe(80)
    xliff2.save(doc, p)
    raw = p.read_bytes().decode("utf-8")
    assert "\n" not in raw.replace("\r\n", ""), "a bare LF was written into a CRLF file"
    assert "<target>eins\r\nzwei\r\n</target>" in raw
    assert "<target>alt\r\nalt</target></mtc:match>" in raw  # the replaced target as a candidate
    again = xliff2.load(p)
    assert again.units[0].target.text == "eins\nzwei\n" and again.units[0].qe_score == 80
    # an LF file keeps LF
    lf = tmp_path / "lf.xlf"
    lf.write_bytes(text.replace("\r\n", "\n").encode("utf-8"))
    doc = xliff2.load(lf)
    doc.units[0].set_target(Segment.from_text("eins\nzwei"))
    xliff2.save(doc, lf)
    assert "\r" not in lf.read_text("utf-8") and "<target>eins\nzwei</target>" in lf.read_text("utf-8")


# ------------------------------------------------------------------------------------------------ validation
# Small documents, one rule each (no corpus needed): the rule is refused with a message naming it, and the
# valid twin loads. The full OASIS 2.2 suite is tests/test_oasis_suite.py.

NS22 = 'xmlns="urn:oasis:names:tc:xliff:document:2.2" version="2.2"'
GLS = 'xmlns:gls="urn:oasis:names:tc:xliff:glossary:2.0"'


def _doc(tmp_path, unit_body: str, root_extra: str = "", name: str = "v.xlf") -> Path:
    return write(tmp_path, f"""<xliff {NS22} srcLang="en" trgLang="de" {root_extra}><file id="f"><unit id="u">
{unit_body}
</unit></file></xliff>""", name)


@pytest.mark.parametrize("bad, good, rule", [
    # glossary: an entry needs a translation or a definition
    ('<gls:glossary><gls:glossEntry><gls:term>snow</gls:term></gls:glossEntry></gls:glossary>'
     '<segment><source>snow</source></segment>',
     '<gls:glossary><gls:glossEntry><gls:term>snow</gls:term><gls:definition>white</gls:definition>'
     '</gls:glossEntry></gls:glossary><segment><source>snow</source></segment>',
     "needs a <gls:translation> or a <gls:definition>"),
    # comment annotation: exactly one of value and ref, ref to a note of this unit
    ('<notes><note id="n1">x</note></notes><segment><source><mrk id="m" type="comment">t</mrk></source></segment>',
     '<notes><note id="n1">x</note></notes><segment><source><mrk id="m" type="comment" ref="#n=n1">t</mrk></source>'
     '</segment>', "exactly one of value and ref"),
    # fragment identifier syntax
    ('<segment><source><mrk id="m" ref="#u=u/f=f">t</mrk></source></segment>',
     '<segment><source><mrk id="m" ref="#f=f/u=u">t</mrk></source></segment>', "out of order"),
    # fs on a non-isolated <ec> (module attribute placement)
    ('<segment><source><sc id="1" fs:fs="b"/>x<ec startRef="1" fs:fs="b"/></source></segment>',
     '<segment><source><sc id="1" fs:fs="b"/>x<ec startRef="1"/></source></segment>', "non-isolated <ec>"),
    # extension attributes only where the core allows them
    ('<segment><source><pc id="1" my:a="v">t</pc></source></segment>',
     '<segment><source><mrk id="1" my:a="v">t</mrk></source></segment>', "extension attribute"),
    # matches: ref must point into this unit; subType needs type
    ('<mtc:matches><mtc:match ref="#nope"><source>a</source><target>b</target></mtc:match></mtc:matches>'
     '<segment id="s"><source>a</source></segment>',
     '<mtc:matches><mtc:match ref="#s"><source>a</source><target>b</target></mtc:match></mtc:matches>'
     '<segment id="s"><source>a</source></segment>', "no segment, ignorable or source element"),
    # size restriction: a numeric sizeInfo is a size in whole units
    ('<segment><source><ph id="1" slr:sizeInfo="2.5"/></source></segment>',
     '<segment><source><ph id="1" slr:sizeInfo="some profile data"/></source></segment>', "sizeInfo='2.5'"),
    # validation module: exactly one rule kind
    ('<val:validation><val:rule isPresent="a" startsWith="b"/></val:validation><segment><source>a</source></segment>',
     '<val:validation><val:rule isPresent="a"/></val:validation><segment><source>a</source></segment>',
     "exactly one of isPresent"),
    # metadata: meta needs type
    ('<mda:metadata><mda:metaGroup><mda:meta>x</mda:meta></mda:metaGroup></mda:metadata>'
     '<segment><source>a</source></segment>',
     '<mda:metadata><mda:metaGroup><mda:meta type="t">x</mda:meta></mda:metaGroup></mda:metadata>'
     '<segment><source>a</source></segment>', "requires the 'type' attribute"),
    # ITS module values
    ('<segment><source><mrk id="m" its:locQualityIssueType="nonsense">a</mrk></source></segment>',
     '<segment><source><mrk id="m" its:locQualityIssueType="grammar">a</mrk></source></segment>',
     "locQualityIssueType='nonsense'"),
    # non-removable code dropped from the target
    ('<segment><source><ph id="1" canDelete="no"/>a</source><target>b</target></segment>',
     '<segment><source><ph id="1" canDelete="no"/>a</source><target>b<ph id="1" canDelete="no"/></target></segment>',
     "non-removable"),
])
def test_rule_refused_and_valid_twin_loads(tmp_path, bad, good, rule):
    decls = ('xmlns:gls="urn:oasis:names:tc:xliff:glossary:2.0" xmlns:fs="urn:oasis:names:tc:xliff:fs:2.0" '
             'xmlns:my="urn:example:ext" xmlns:mtc="urn:oasis:names:tc:xliff:matches:2.0" '
             'xmlns:slr="urn:oasis:names:tc:xliff:sizerestriction:2.0" '
             'xmlns:val="urn:oasis:names:tc:xliff:validation:2.0" xmlns:mda="urn:oasis:names:tc:xliff:metadata:2.0" '
             'xmlns:its="http://www.w3.org/2005/11/its"')
    with pytest.raises(FormatError, match=re.escape(rule)) as info:
        xliff2.load(_doc(tmp_path, bad, decls, "bad.xlf"))
    assert info.value.line is not None and info.value.unit == "u"
    doc = xliff2.load(_doc(tmp_path, good, decls, "good.xlf"))
    assert not [i for i in doc.issues if i.severity == "error"]


def test_order_deviations_real_exporters_write_are_warnings(tmp_path):
    """<skeleton> after a module element and <originalData> after the segments (Blackbird) load with a warning;
    an extension element after the units does not (the OASIS suite's bad_InvalidExtensionElementInFile)."""
    ok = write(tmp_path, f"""<xliff {NS22} srcLang="en" xmlns:mda="urn:oasis:names:tc:xliff:metadata:2.0"><file id="f">
<mda:metadata><mda:metaGroup><mda:meta type="t">x</mda:meta></mda:metaGroup></mda:metadata><skeleton>s</skeleton>
<unit id="u"><segment><source><ph id="1" dataRef="d"/></source></segment><originalData><data id="d">x</data>
</originalData></unit></file></xliff>""", "ok.xlf")
    doc = xliff2.load(ok)
    messages = " | ".join(i.message for i in doc.warnings)
    assert "<skeleton> is out of schema order" in messages and "<originalData> is out of schema order" in messages
    bad = write(tmp_path, f"""<xliff {NS22} srcLang="en"><file id="f"><unit id="u"><segment><source>a</source>
</segment></unit><my:x xmlns:my="urn:example:ext"/></file></xliff>""", "bad.xlf")
    with pytest.raises(FormatError, match=r"<file> has invalid content"):
        xliff2.load(bad)


def test_stale_reference_into_a_rewritten_target_is_a_warning(tmp_path):
    """A candidate pointing at a target span (#t=…) that a translation step rewrote is stale, not corrupt."""
    p = _doc(tmp_path, '<mtc:matches><mtc:match ref="#t=m9"><source>a</source><target>b</target></mtc:match>'
                       '</mtc:matches><segment><source>a</source><target>b</target></segment>',
             'xmlns:mtc="urn:oasis:names:tc:xliff:matches:2.0"')
    doc = xliff2.load(p)
    assert any("stale" in i.message for i in doc.warnings)


def test_a_target_never_drops_a_non_removable_code(tmp_path):
    """canDelete="no" codes must stay in the target (OASIS bad_MissingNonRemovable*): we refuse to write one
    that drops such a code instead of writing a file our own validator would refuse."""
    p = _doc(tmp_path, '<segment><source>a<ph id="1" canDelete="no"/>b<ph id="2"/></source></segment>')
    doc = xliff2.load(p)
    u = doc.units[0]
    u.set_target(Segment.from_text("ab"))
    with pytest.raises(CodeMismatchError, match="non-removable"):
        xliff2.save(doc, tmp_path / "out.xlf")
    assert not (tmp_path / "out.xlf").exists()
    u.set_target(Segment(["a", u.source.codes[0], "b"]))  # the removable <ph id="2"/> may go
    xliff2.save(doc, tmp_path / "out.xlf")
    assert xliff2.load(tmp_path / "out.xlf").units[0].target.codes == [u.source.codes[0]]


# one edit each that breaks the schema somewhere (applied at its first place in a file)
SCHEMA_BREAKERS = [(b'id="', b'id="#'), (b'state="', b'state="x'), (b'translate="', b'translate="maybe'),
                   (b'<source>', b'<source dir="rtl">'), (b'<segment', b'<segment foo="1"'),
                   (b'canReorder="', b'canReorder="x'), (b'type="', b'type="zz'), (b'priority="', b'priority="11'),
                   (b'</source>', b'</source><source>x</source>'), (b'<unit ', b'<unit version="1" '),
                   (b'srcLang="', b'srcLang="1'), (b'<notes>', b'<notes><foo/>'), (b'order="', b'order="0'),
                   (b'hex="', b'hex="G'), (b'isolated="', b'isolated="Y'), (b'matchQuality="', b'matchQuality="101'),
                   (b'<target', b'<target xml:lang="x y"'), (b'appliesTo="', b'appliesTo="all'),
                   (b'<originalData>', b'<originalData><data/>'), (b'</segment>', b'<target/></segment>')]


@needs_corpus
@needs_schemas
def test_whatever_the_xsd_refuses_we_refuse(tmp_path):
    """The XSDs as oracle for our structure rules: every schema-breaking edit of a schema-valid corpus file
    that the XSD refuses, our validator refuses too (the converse does not hold: we also check what the XSD
    cannot express)."""
    checked = 0
    for path in VALID:
        data = path.read_bytes()
        if path.suffix not in (".xlf", ".xliff") or not xsd_valid(path)[0]:
            continue
        for old, new in SCHEMA_BREAKERS:
            if old not in data:
                continue
            out = tmp_path / "m.xlf"
            out.write_bytes(data.replace(old, new, 1))
            try:
                etree.parse(str(out))
            except etree.XMLSyntaxError:
                continue
            ok, err = xsd_valid(out)
            if ok:
                continue
            checked += 1
            with pytest.raises(FormatError):
                xliff2.load(out)
    assert checked > 100


@pytest.mark.parametrize("prop", ["", "a b", "1x"])
def test_change_tracking_item_with_an_impossible_property_is_refused_not_a_crash(tmp_path, prop):
    """Found by fuzzing: property="" made lxml raise ValueError inside validation."""
    path = tmp_path / "ctr.xlf"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<xliff xmlns="urn:oasis:names:tc:xliff:document:2.0" '
        'xmlns:ctr="urn:oasis:names:tc:xliff:changetracking:2.0" version="2.0" srcLang="en" trgLang="fr">\n'
        ' <file id="f1">\n  <unit id="u1">\n   <ctr:changeTrack>\n    <ctr:revisions appliesTo="source">\n'
        f'     <ctr:revision>\n      <ctr:item property="{prop}">old</ctr:item>\n     </ctr:revision>\n'
        '    </ctr:revisions>\n   </ctr:changeTrack>\n   <segment><source>Hello</source></segment>\n'
        '  </unit>\n </file>\n</xliff>\n', encoding="utf-8")
    with pytest.raises(FormatError, match="neither 'content' nor an attribute name") as err:
        xliff2.load(path)
    assert err.value.line == 8


def test_segments_per_file_are_bounded(tmp_path, monkeypatch):
    from tower_cat.formats import _xml

    monkeypatch.setattr(_xml, "MAX_UNITS", 3)
    segs = "".join(f'<unit id="u{i}"><segment><source>s{i}</source></segment></unit>' for i in range(4))
    path = tmp_path / "many.xlf"
    path.write_text('<?xml version="1.0"?>\n<xliff xmlns="urn:oasis:names:tc:xliff:document:2.0" version="2.0" '
                    f'srcLang="en"><file id="f">{segs}</file></xliff>\n', encoding="utf-8")
    with pytest.raises(FormatError, match="more than 3 segments"):
        xliff2.load(path)
