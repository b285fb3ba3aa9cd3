"""TMX: the Document view (byte-identical no-op saves, edited and new targets), the streaming reader (same pairs
as the Document view, bounded memory, clear errors) and the streaming writer (codes survive a round trip)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from lxml import etree

from tower_cat.document import CodeKind, InlineCode, Segment
from tower_cat.errors import CodeMismatchError, FormatError, UnsafeXMLError
from tower_cat.formats import tmx

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _tmx_files() -> list[Path]:
    if not (CORPUS / "tmx").is_dir():
        return []
    return sorted(p for p in (CORPUS / "tmx").rglob("*") if p.is_file())


def _ident(p: Path) -> str:
    return str(p.relative_to(CORPUS))


needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent")


def _c14n(xml: str) -> str:
    try:
        return etree.tostring(etree.fromstring(xml), method="c14n").decode()
    except etree.XMLSyntaxError:  # a <hi> start or end tag alone
        return xml.replace("'", '"')


def _norm(seg: Segment | None):
    if seg is None:
        return None
    return [p if isinstance(p, str) else (p.kind, p.id, p.tag, p.isolated, _c14n(p.xml)) for p in seg.parts]


def _swap(seg: Segment) -> Segment:
    return Segment([p.swapcase() + " «ok»" if isinstance(p, str) else p for p in seg.parts] or ["«ok»"])


def _tree_without(path: Path, lang: str) -> str:
    """The file as canonical XML, without the tuvs of ``lang``: what must not change when targets are written."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=True)
    root = etree.parse(str(path), parser).getroot()
    for tuv in list(root.iter("tuv")):
        if (tuv.get(XML_LANG) or tuv.get("lang") or "").lower() == lang.lower():
            tuv.getparent().remove(tuv)
    return etree.tostring(root, method="c14n").decode()


# --- Document view --------------------------------------------------------------------------------------------------

@needs_corpus
@pytest.mark.parametrize("path", _tmx_files(), ids=_ident)
def test_noop_save_is_byte_identical(path: Path, tmp_path: Path):
    doc = tmx.load(path)
    assert doc.units and doc.target_lang
    out = tmp_path / path.name
    tmx.save(doc, out)
    assert out.read_bytes() == path.read_bytes()


@needs_corpus
@pytest.mark.parametrize("path", _tmx_files(), ids=_ident)
def test_edit_every_unit_round_trip(path: Path, tmp_path: Path):
    doc = tmx.load(path)
    expected = {}
    for u in doc.units:
        new = _swap(u.source)
        u.set_target(new, status="translated", origin="mt")
        expected[u.id] = new
    out = tmp_path / path.name
    tmx.save(doc, out)
    again = tmx.load(out, target_lang=doc.target_lang)
    assert [u.id for u in again.units] == [u.id for u in doc.units]
    for u in again.units:
        assert [p if isinstance(p, str) else p.xml for p in u.target.parts] == \
            [p if isinstance(p, str) else p.xml for p in expected[u.id].parts]
        assert _norm(u.source) == _norm(doc.units[[x.id for x in doc.units].index(u.id)].source)
    assert _tree_without(out, doc.target_lang) == _tree_without(path, doc.target_lang)


@needs_corpus
@pytest.mark.parametrize("path", _tmx_files(), ids=_ident)
def test_new_target_language_adds_tuvs(path: Path, tmp_path: Path):
    doc = tmx.load(path, target_lang="qps-ploc")
    assert all(u.target is None for u in doc.units)
    for u in doc.units:
        u.set_target(_swap(u.source))
    out = tmp_path / path.name
    tmx.save(doc, out)
    again = tmx.load(out, target_lang="qps-ploc")
    assert [_norm(u.target) for u in again.units] == [_norm(u.edit.segment) for u in doc.units]
    assert _tree_without(out, "qps-ploc") == _tree_without(path, "qps-ploc")
    # the default target language of the file did not change
    assert tmx.load(out).target_lang == tmx.load(path).target_lang


SMALL = """<?xml version="1.0" encoding="UTF-8"?>
<tmx version="1.4">
  <header creationtool="t" creationtoolversion="1" datatype="plaintext" segtype="sentence" adminlang="en"
          srclang="en-US" o-tmf="t"/>
  <body>
    <tu tuid="a">
      <prop type="x-context">Menu</prop>
      <note>tu note</note>
      <tuv xml:lang="en-US">
        <seg>Open <bpt i="1" x="1">&lt;b></bpt>file<ept i="1">&lt;/b></ept> <ph>{n}</ph> <hi type="term">now</hi></seg>
      </tuv>
      <tuv xml:lang="de-DE"><seg/></tuv>
    </tu>
    <tu>
      <tuv xml:lang="EN-us"><seg>Close</seg></tuv>
    </tu>
  </body>
</tmx>
"""


def test_small_file_view_and_save(tmp_path: Path):
    p = tmp_path / "s.tmx"
    p.write_text(SMALL)
    doc = tmx.load(p)
    assert doc.source_lang == "en-US" and doc.target_lang == "de-DE"
    a, b = doc.units
    assert (a.id, b.id) == ("a", "tu2")
    assert a.meta["props"] == [("x-context", "Menu")] and a.notes == ["tu note"] and a.context.msgctxt == "Menu"
    kinds = [(c.kind, c.id, c.tag) for c in a.source.codes]
    ph_id, hi_id = kinds[2][1], kinds[3][1]
    assert ph_id.startswith("ph-") and hi_id.startswith("hi-")  # no x: ids derived from the element
    assert kinds == [(CodeKind.OPEN, "1", "bpt"), (CodeKind.CLOSE, "1", "ept"), (CodeKind.STANDALONE, ph_id, "ph"),
                     (CodeKind.OPEN, hi_id, "hi"), (CodeKind.CLOSE, hi_id, "hi")]
    assert a.source.codes[0].xml == '<bpt i="1" x="1">&lt;b></bpt>'
    assert a.source.text == "Open file  now" and a.target is not None and a.target.is_empty()
    assert b.target is None
    c = a.source.codes
    a.set_target(Segment(["Öffne ", c[0], "Datei", c[1], " ", c[2], " ", c[3], "jetzt", c[4], " & <mehr>"]))
    b.set_target(Segment.from_text("Schließen"))
    out = tmp_path / "out.tmx"
    tmx.save(doc, out)
    text = out.read_text()
    assert ('<tuv xml:lang="de-DE"><seg>Öffne <bpt i="1" x="1">&lt;b></bpt>Datei<ept i="1">&lt;/b></ept> <ph>{n}</ph> '
            '<hi type="term">jetzt</hi> &amp; &lt;mehr&gt;</seg></tuv>') in text
    assert ('      <tuv xml:lang="EN-us"><seg>Close</seg></tuv>\n      <tuv xml:lang="de-DE"><seg>Schließen</seg></tuv>\n'
            '    </tu>') in text
    # a code the source does not have is refused, and nothing is written
    doc = tmx.load(out)
    doc.units[1].set_target(Segment(["x", InlineCode("9", CodeKind.STANDALONE, "<ph/>", "ph")]))
    with pytest.raises(CodeMismatchError):
        tmx.save(doc, tmp_path / "bad.tmx")
    assert not (tmp_path / "bad.tmx").exists()


def test_tmx11_lang_attribute_and_layout(tmp_path: Path):
    p = tmp_path / "old.tmx"
    p.write_text('<?xml version="1.0"?>\n<tmx version="1.1">\n<header srclang="EN" creationtool="t" '
                 'creationtoolversion="1" datatype="rtf" segtype="sentence" adminlang="EN" o-tmf="x"/>\n<body>\n'
                 '<tu>\n<tuv lang="EN">\n<seg>Hello</seg>\n</tuv>\n</tu>\n</body>\n</tmx>\n')
    doc = tmx.load(p, target_lang="FR")
    doc.units[0].set_target(Segment.from_text("Bonjour"))
    out = tmp_path / "out.tmx"
    tmx.save(doc, out)
    assert '<tuv lang="EN">\n<seg>Hello</seg>\n</tuv>\n<tuv lang="FR">\n<seg>Bonjour</seg>\n</tuv>\n</tu>' in out.read_text()


def test_code_ids_without_x_survive_reordering(tmp_path: Path):
    p = tmp_path / "r.tmx"
    p.write_text('<tmx version="1.4"><header srclang="en"/><body><tu>'
                 '<tuv xml:lang="en"><seg><ph>{a}</ph> and <ph>{b}</ph> and <ph>{a}</ph></seg></tuv>'
                 '<tuv xml:lang="de"><seg><ph>{b}</ph> und <ph>{a}</ph> und <ph>{a}</ph></seg></tuv></tu></body></tmx>')
    (unit,) = tmx.load(p).units
    src = [c.id for c in unit.source.codes]
    tgt = [c.id for c in unit.target.codes]
    assert len(set(src)) == 3 and tgt == [src[1], src[0], src[2]]


def test_srclang_all_takes_the_first_tuv(tmp_path: Path):
    p = tmp_path / "all.tmx"
    p.write_text('<tmx version="1.4"><header srclang="*all*" creationtool="t" creationtoolversion="1" '
                 'datatype="plaintext" segtype="block" adminlang="en" o-tmf="t"/><body>'
                 '<tu><tuv xml:lang="de"><seg>Hallo</seg></tuv><tuv xml:lang="en"><seg>Hello</seg></tuv></tu>'
                 '</body></tmx>')
    doc = tmx.load(p)
    assert doc.units[0].source.text == "Hallo" and doc.target_lang == "en"
    assert [t.source.text for t in tmx.iter_tmx(p)] == ["Hallo"]


# --- streaming reader -----------------------------------------------------------------------------------------------

@needs_corpus
@pytest.mark.parametrize("path", _tmx_files(), ids=_ident)
def test_iter_tmx_matches_the_document_view(path: Path):
    doc = tmx.load(path)
    units = list(tmx.iter_tmx(path))
    assert [u.index for u in units] == list(range(len(doc.units)))
    for unit, tu in zip(doc.units, units):
        assert tu.tuid == unit.meta["tuid"]
        assert tu.line == unit.line
        assert tu.props == unit.meta["props"]
        assert _norm(tu.variants[unit.meta["source_lang"]]) == _norm(unit.source)
        assert _norm(tu.get(doc.target_lang)) == _norm(unit.target)


def _generate(path: Path, n: int, rich: bool = True) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4"><header srclang="en" creationtool="t" '
                 'creationtoolversion="1" datatype="plaintext" segtype="sentence" adminlang="en" o-tmf="t"/>\n<body>\n')
        for i in range(n):
            if not rich:
                fh.write(f'<tu tuid="{i}"><tuv xml:lang="en"><seg>Sentence number {i} with a <ph>{{x}}</ph> '
                         f'placeholder and some more words to make it longer.</seg></tuv><tuv xml:lang="de"><seg>Satz '
                         f'Nummer {i} mit einem <ph>{{x}}</ph> Platzhalter und ein paar Wörtern mehr.</seg></tuv></tu>\n')
                continue
            fh.write(f'<tu tuid="{i}" creationdate="20240101T000000Z"><prop type="x-n">{i}</prop>'
                     f'<tuv xml:lang="en"><seg>Sentence number {i} with <bpt i="1">&lt;b></bpt>bold'
                     f'<ept i="1">&lt;/b></ept> text and a <ph>{{x}}</ph> placeholder.</seg></tuv>'
                     f'<tuv xml:lang="de"><seg>Satz Nummer {i} mit <bpt i="1">&lt;b></bpt>fettem'
                     f'<ept i="1">&lt;/b></ept> Text und einem <ph>{{x}}</ph> Platzhalter.</seg></tuv></tu>\n')
        fh.write("</body>\n</tmx>\n")


@pytest.mark.slow
def test_iter_tmx_streams_in_bounded_memory(tmp_path: Path):
    p = tmp_path / "big.tmx"
    _generate(p, 50_000, rich=False)
    size = p.stat().st_size
    tracemalloc.start()
    try:
        count = 0
        for tu in tmx.iter_tmx(p):
            count += 1
            assert len(tu.source.codes) == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 50_000
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte file"


def test_iter_tmx_reads_every_unit_of_a_large_file_in_order(tmp_path: Path):
    """The functional half of the streaming reader (the memory half is measured by ``bench/formats.py --tmx``):
    every tu of a 20 000-unit file comes out once, in order, with its line, id and both languages."""
    p = tmp_path / "big.tmx"
    _generate(p, 20_000, rich=False)
    count = 0
    for tu in tmx.iter_tmx(p):
        assert tu.index == count and tu.tuid == str(count) and tu.line == count + 4
        assert tu.source.text.startswith(f"Sentence number {count} with a ")
        assert tu.get("de").text.startswith(f"Satz Nummer {count} mit einem ")
        assert [c.tag for c in tu.source.codes] == ["ph"]
        count += 1
    assert count == 20_000


def _write(tmp_path: Path, text: str, name: str = "x.tmx") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


HEAD = ('<?xml version="1.0"?>\n<tmx version="1.4">\n<header srclang="en" creationtool="t" creationtoolversion="1" '
        'datatype="plaintext" segtype="sentence" adminlang="en" o-tmf="t"/>\n<body>\n')
GOOD_TU = '<tu><tuv xml:lang="en"><seg>a</seg></tuv><tuv xml:lang="de"><seg>b</seg></tuv></tu>\n'


@pytest.mark.parametrize("body,line,unit,what", [
    (GOOD_TU + GOOD_TU + "<tu><tuv xml:lang='en'><seg>a</tuv></tu>\n", 7, "tu #2", "not well-formed"),
    # far into the file (lxml's streaming parser reads ahead in chunks): still named by position
    (GOOD_TU * 3000 + "<tu><tuv xml:lang='en'><seg>a</seg></tuv>\n<tuv xml:lang='de'><seg>b</tuv></tu>\n" + GOOD_TU,
     3006, "tu #3000", "not well-formed"),
    (GOOD_TU * 5 + "<tu><tuv xml:lang='en'><seg>a&b</seg></tuv></tu>\n" + GOOD_TU * 3000, 10, "tu #5",
     "not well-formed"),
    (GOOD_TU * 2 + "<!-- <tu> in a comment -->\n<tu><tuv xml:lang='en'><seg>a</tuv></tu>\n", 8, "tu #2",
     "not well-formed"),
    (GOOD_TU * 2 + "<!--\n<tu>\n-->\n<tu><tuv xml:lang='en'><seg><![CDATA[<tu>\n<tu>]]>a</tuv></tu>\n", 11,
     "tu #2", "not well-formed"),
    (GOOD_TU + "<tu><note>x</note></tu>\n", 6, "tu #1", "without <tuv>"),
    (GOOD_TU + "<tu>\n<tuv><seg>a</seg></tuv></tu>\n", 7, "tu #1", "without xml:lang"),
    ("<tu><tuv xml:lang='en'><note>n</note></tuv></tu>\n", 5, "tu #0", "without <seg>"),
])
def test_bad_tmx_names_line_and_tu(tmp_path: Path, body: str, line: int, unit: str, what: str):
    p = _write(tmp_path, HEAD + body + "</body>\n</tmx>\n")
    with pytest.raises(FormatError) as exc:
        list(tmx.iter_tmx(p))
    assert exc.value.line == line and exc.value.unit == unit and what in str(exc.value)
    with pytest.raises(FormatError):
        tmx.load(p)


def test_entities_are_refused(tmp_path: Path):
    p = _write(tmp_path, '<?xml version="1.0"?>\n<!DOCTYPE tmx [<!ENTITY x "boom">]>\n<tmx version="1.4"><header '
                         'srclang="en"/><body><tu><tuv xml:lang="en"><seg>&x;</seg></tuv></tu></body></tmx>')
    with pytest.raises(UnsafeXMLError):
        list(tmx.iter_tmx(p))
    with pytest.raises(UnsafeXMLError):
        tmx.load(p)


def test_not_a_tmx(tmp_path: Path):
    p = _write(tmp_path, "<xliff version='1.2'/>")
    with pytest.raises(FormatError, match="not <tmx>"):
        list(tmx.iter_tmx(p))


# --- streaming writer -----------------------------------------------------------------------------------------------

@needs_corpus
@pytest.mark.parametrize("path", _tmx_files(), ids=_ident)
def test_write_tmx_round_trip_keeps_codes(path: Path, tmp_path: Path):
    units = list(tmx.iter_tmx(path))
    srclang = next(iter(units[0].variants)) if units[0].srclang in (None, "*all*") else units[0].srclang
    out = tmp_path / "out.tmx"
    assert tmx.write_tmx(out, iter(units), srclang=srclang) == len(units)
    again = list(tmx.iter_tmx(out))
    assert len(again) == len(units)
    for a, b in zip(units, again):
        assert (a.tuid, a.props, a.notes, a.attrs) == (b.tuid, b.props, b.notes, b.attrs)
        assert {k.lower() for k in a.variants} == {k.lower() for k in b.variants}
        for lang, seg in a.variants.items():
            assert _norm(b.get(lang)) == _norm(seg)
            assert b.variant_props[b.lang(lang)] == a.variant_props[lang]
            assert b.variant_notes[b.lang(lang)] == a.variant_notes[lang]
    # the TMX we write is valid for our Document view too
    assert len(tmx.load(out).units) == len(units)


def test_write_tmx_converts_foreign_codes(tmp_path: Path):
    g_open = InlineCode("1", CodeKind.OPEN, '<g id="1" ctype="bold">', "g")
    g_close = InlineCode("1", CodeKind.CLOSE, "</g>", "g")
    x = InlineCode("2", CodeKind.STANDALONE, '<x id="2"/>', "x")
    xliff_bpt = InlineCode("3", CodeKind.OPEN, '<bpt id="3">&lt;i&gt;</bpt>', "bpt")  # XLIFF: id, not i
    lone = InlineCode("4", CodeKind.CLOSE, "</span>", "g", isolated=True)
    po_ph = InlineCode("1", CodeKind.STANDALONE, "%s", "placeholder", "%s")
    native = InlineCode("9", CodeKind.OPEN, '<bpt i="1">&lt;u></bpt>', "bpt")
    native_close = InlineCode("9", CodeKind.CLOSE, '<ept i="1">&lt;/u></ept>', "ept")
    src = Segment(["A ", g_open, "b", g_close, " ", x, " ", xliff_bpt, "c", lone, " ", po_ph, native, "u",
                   native_close, " & <"])
    unit = tmx.TmxUnit(index=0, line=None, tuid="t1", variants={"en": src, "de": "nur Text"}, srclang="en",
                       props=[("x-origin", "mt")], notes=["n"], attrs={"creationdate": "20240101T000000Z"})
    out = tmp_path / "o.tmx"
    tmx.write_tmx(out, [unit], srclang="en", creationdate="20240101T000000Z")
    text = out.read_text()
    assert ('<seg>A <bpt i="2">&lt;g id="1" ctype="bold"&gt;</bpt>b<ept i="2">&lt;/g&gt;</ept> '
            '<ph>&lt;x id="2"/&gt;</ph> <it pos="begin">&lt;bpt id="3"&gt;&amp;lt;i&amp;gt;&lt;/bpt&gt;</it>c'
            '<it pos="end">&lt;/span&gt;</it> <ph>%s</ph><bpt i="1">&lt;u></bpt>u<ept i="1">&lt;/u></ept> &amp; &lt;</seg>'
            ) in text
    (tu,) = tmx.iter_tmx(out)
    assert tu.get("en").text == "A b  c u & <"
    assert tu.get("de").text == "nur Text" and tu.props == [("x-origin", "mt")] and tu.notes == ["n"]
    assert tu.attrs == {"creationdate": "20240101T000000Z"}
    kinds = [(c.kind, c.tag) for c in tu.get("en").codes]
    assert kinds == [(CodeKind.OPEN, "bpt"), (CodeKind.CLOSE, "ept"), (CodeKind.STANDALONE, "ph"),
                     (CodeKind.OPEN, "it"), (CodeKind.CLOSE, "it"), (CodeKind.STANDALONE, "ph"),
                     (CodeKind.OPEN, "bpt"), (CodeKind.CLOSE, "ept")]


def test_write_tmx_is_atomic(tmp_path: Path):
    def units():
        yield tmx.TmxUnit(index=0, line=None, tuid="1", variants={"en": "a", "de": "b"})
        raise RuntimeError("source went away")

    out = tmp_path / "tm.tmx"
    with pytest.raises(RuntimeError):
        tmx.write_tmx(out, units(), srclang="en")
    assert list(tmp_path.iterdir()) == []


def test_sniff():
    assert tmx.sniff(b'<?xml version="1.0"?>\n<tmx version="1.4">')
    assert not tmx.sniff(b'<xliff version="1.2">')


def test_crlf_file_keeps_crlf_in_new_multiline_targets(tmp_path: Path):
    text = ('<?xml version="1.0"?>\n<tmx version="1.4"><header srclang="en"/><body>\n<tu><tuv xml:lang="en">'
            '<seg>one\ntwo</seg></tuv><tuv xml:lang="de"><seg>x</seg></tuv></tu>\n<tu><tuv xml:lang="en"><seg>b</seg>'
            '</tuv></tu>\n</body></tmx>\n')
    p = tmp_path / "crlf.tmx"
    p.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
    doc = tmx.load(p)
    for unit in doc.units:  # one existing target, one new tuv
        unit.set_target(Segment.from_text("eins\nzwei\n drei"))
    tmx.save(doc, tmp_path / "out.tmx")
    raw = (tmp_path / "out.tmx").read_bytes()
    assert raw.count(b"eins\r\nzwei\r\n drei") == 2 and raw.replace(b"\r\n", b"").count(b"\n") == 0
    assert [u.target.text for u in tmx.load(tmp_path / "out.tmx").units] == ["eins\nzwei\n drei"] * 2
