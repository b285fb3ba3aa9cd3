"""codes.py: Segment <-> numbered-tag markup, escaping, validation and repair (examples + Hypothesis fuzzing)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tower_cat import codes
from tower_cat.codes import Tag, check, parse, render, strip_tags
from tower_cat.document import CodeKind, InlineCode, Segment

K = CodeKind


def g_open(i: str = "1") -> InlineCode:
    return InlineCode(i, K.OPEN, f'<g id="{i}">', tag="g")


def g_close(i: str = "1") -> InlineCode:
    return InlineCode(i, K.CLOSE, "</g>", tag="g")


def x(i: str = "2") -> InlineCode:
    return InlineCode(i, K.STANDALONE, f'<x id="{i}"/>', tag="x")


def save_segment() -> Segment:
    return Segment(["Click ", g_open("1"), "Save", g_close("1"), " to keep ", x("2"), " changes"])


# ------------------------------------------------------------------------------------------------ render

def test_render_pairs_and_standalones():
    r = render(save_segment())
    assert r.text == "Click <1>Save</1> to keep <2/> changes"
    assert r.codes == {1: g_open("1"), 2: x("2")}
    assert r.closers == {1: g_close("1")}
    assert r.paired(1) and not r.paired(2)


def test_render_numbers_in_order_of_appearance_and_nesting():
    seg = Segment([x("9"), g_open("5"), "a", g_open("3"), "b", g_close("3"), g_close("5"), x("1")])
    assert render(seg).text == "<1/><2>a<3>b</3></2><4/>"


def test_render_isolated_and_unmatched_codes_are_single_tags():
    iso = InlineCode("7", K.OPEN, '<it id="7" pos="open">', isolated=True)
    lone_close = g_close("4")
    lone_open = g_open("5")
    seg = Segment([lone_close, "a", iso, "b", g_close("7"), lone_open, "c"])
    r = render(seg)
    assert r.text == "<1/>a<2/>b<3/><4/>c"
    assert r.closers == {}


def test_render_close_before_open_same_id_does_not_pair():
    seg = Segment([g_close("1"), "x", g_open("1")])
    assert render(seg).text == "<1/>x<2/>"


def test_render_ids_not_unique_across_kinds():
    # a standalone with id 1 between a pair with id 1 does not disturb the pairing
    seg = Segment([g_open("1"), x("1"), "t", g_close("1")])
    r = render(seg)
    assert r.text == "<1><2/>t</1>"


def test_render_overlap_stackwise():
    # <a><b></a></b>: </a> closes a, b is left unmatched, </b> then has no partner
    seg = Segment([g_open("a"), "1", g_open("b"), "2", g_close("a"), "3", g_close("b")])
    r = render(seg)
    assert r.text == "<1>1<2/>2</1>3<3/>"
    assert parse(r, r.text).segment == seg


def test_render_nested_same_ids():
    seg = Segment([g_open("1"), "a", g_open("1"), "b", g_close("1"), g_close("1")])
    r = render(seg)
    assert r.text == "<1>a<2>b</2></1>"


# ------------------------------------------------------------------------------------------------ escaping

@pytest.mark.parametrize("text, rendered", [
    ("Press <1> to go", "Press &lt;1> to go"),
    ("a </ 2> b <3 />", "a &lt;/ 2> b &lt;3 />"),
    ("Tom & Jerry", "Tom & Jerry"),
    ("a < b > c", "a < b > c"),
    ("&lt;1&gt;", "&amp;lt;1&gt;"),
    ("&amp;", "&amp;amp;"),
    ("&nbsp;", "&nbsp;"),
    ("&<1>", "&&lt;1>"),
    ("<<1>>", "<&lt;1>>"),
    ("<١>", "<١>"),  # Arabic-Indic digit: not one of our tags
])
def test_escape_scheme(text, rendered):
    assert codes.escape(text) == rendered
    assert codes.unescape(rendered) == text
    r = render(Segment([text, x("1")]))
    assert r.text == rendered + "<1/>"
    back = parse(r, r.text)
    assert back.ok and back.problems == []
    assert back.segment == Segment([text, x("1")])


def test_literal_tag_text_is_not_a_code():
    seg = Segment(["Type <1> or ", x("1")])
    r = render(seg)
    assert r.text == "Type &lt;1> or <1/>"
    res = parse(r, "Tapez &lt;1> ou <1/>")
    assert res.ok and res.segment == Segment(["Tapez <1> ou ", x("1")])


def test_strip_tags():
    assert strip_tags("Cliquez <1>Enregistrer</1> pour <2/> &lt;3> &amp;lt;") == "Cliquez Enregistrer pour  <3> &lt;"
    assert strip_tags("< 1 >a</ 1 ><2 />b") == "ab"


def test_tokenize_whitespace_variants():
    assert codes.tokenize("< 1 >a</ 1><1 />< 02 / >") == [Tag(1, "open"), "a", Tag(1, "close"), Tag(1, "single"),
                                                         Tag(2, "single")]


def test_map_text_keeps_tags_and_escapes():
    out = codes.map_text("a<1>b</1>&lt;2>", str.upper)
    assert out == "A<1>B</1>&lt;2>"


# ------------------------------------------------------------------------------------------------ parse

def test_parse_perfect_output():
    r = render(save_segment())
    res = parse(r, "Cliquez sur <1>Enregistrer</1> pour garder <2/> les modifications")
    assert res.ok and res.problems == [] and not res.repaired
    assert res.segment == Segment(["Cliquez sur ", g_open(), "Enregistrer", g_close(), " pour garder ", x(),
                                   " les modifications"])


def test_parse_whitespace_variants():
    r = render(save_segment())
    res = parse(r, "Cliquez < 1 >Enregistrer</ 1 > pour <2 /> ok")
    assert res.ok and res.problems == []
    assert res.segment.codes == [g_open(), g_close(), x()]


def test_parse_reordered_tags_are_fine():
    seg = Segment([x("1"), " a ", x("2"), " b"])
    r = render(seg)
    res = parse(r, "<2/> b <1/> a")
    assert res.ok and res.problems == []
    assert res.segment == Segment([x("2"), " b ", x("1"), " a"])


def test_parse_drops_invented_and_duplicates():
    r = render(save_segment())
    res = parse(r, "<7>Cliquez</7> <1>Enr</1><1>x</1> <2/><2/><3/>")
    assert res.ok and res.repaired
    assert Counter(res.segment.codes) == Counter(save_segment().codes)
    assert any("invented" in p for p in res.problems)
    assert any("duplicate" in p for p in res.problems)
    assert res.segment.text == "Cliquez Enrx "


def test_parse_missing_standalone_goes_to_end():
    r = render(save_segment())
    res = parse(r, "Cliquez <1>Enregistrer</1>.")
    assert res.ok and res.repaired
    assert res.segment.parts[-1] == x("2")


def test_parse_missing_leading_standalone_goes_to_start():
    seg = Segment([x("1"), "Hello ", g_open("2"), "world", g_close("2")])
    r = render(seg)
    res = parse(r, "Bonjour <2>monde</2>")
    assert res.ok
    assert res.segment.parts[0] == x("1")


def test_parse_missing_wrapping_pair_wraps_target():
    seg = Segment([g_open("1"), "Whole sentence.", g_close("1")])
    r = render(seg)
    res = parse(r, "Phrase entière.")
    assert res.ok and res.repaired
    assert res.segment == Segment([g_open("1"), "Phrase entière.", g_close("1")])


def test_parse_missing_trailing_close_added():
    seg = Segment(["Go ", g_open("1"), "now", g_close("1")])
    r = render(seg)
    res = parse(r, "Allez <1>maintenant")
    assert res.ok
    assert res.segment == Segment(["Allez ", g_open("1"), "maintenant", g_close("1")])


def test_parse_missing_middle_pair_is_flagged():
    r = render(save_segment())
    res = parse(r, "Cliquez Enregistrer pour garder <2/> les modifications")
    assert not res.ok
    assert Counter(res.segment.codes) == Counter(save_segment().codes)
    assert check(save_segment(), res.segment) == []  # well-formed for the reviewer, but not trusted


def test_parse_missing_middle_close_is_flagged():
    r = render(save_segment())
    res = parse(r, "Cliquez <1>Enregistrer pour garder <2/> les modifications")
    assert not res.ok
    assert Counter(res.segment.codes) == Counter(save_segment().codes)


def test_parse_close_before_open_is_flagged():
    r = render(save_segment())
    res = parse(r, "Cliquez </1>Enregistrer<1> <2/>")
    assert not res.ok
    assert any("before" in p for p in res.problems)
    assert check(save_segment(), res.segment) == []


def test_parse_overlap_is_flagged():
    seg = Segment([g_open("1"), "a", g_close("1"), " ", g_open("2"), "b", g_close("2")])
    r = render(seg)
    res = parse(r, "<1>a<2>b</1></2>")
    assert not res.ok
    assert check(seg, res.segment) == []


def test_parse_collapsed_pair():
    seg = Segment(["x ", g_open("1"), g_close("1"), " y"])  # empty pair in the source
    r = render(seg)
    assert r.text == "x <1></1> y"
    assert parse(r, "x <1/> y").ok
    r2 = render(save_segment())
    assert not parse(r2, "Cliquez <1/> pour <2/>").ok  # the covered text is lost


def test_parse_standalone_written_as_pair_is_accepted():
    r = render(save_segment())
    res = parse(r, "Cliquez <1>Enregistrer</1> <2>x</2>")
    assert res.ok and res.repaired
    assert Counter(res.segment.codes) == Counter(save_segment().codes)


def test_parse_no_codes():
    r = render(Segment.from_text("Hello"))
    assert parse(r, "Bonjour <1/>").segment == Segment.from_text("Bonjour ")
    assert parse(r, "").segment == Segment([])


def test_check_reports_missing_extra_and_order():
    src = save_segment()
    assert check(src, src) == []
    assert any("missing" in m for m in check(src, Segment(["a", g_open(), "b", g_close()])))
    assert any("extra" in m for m in check(src, Segment(list(src.parts) + [x("9")])))
    swapped = Segment(["a", g_close(), "b", g_open(), x()])
    assert check(src, swapped)
    assert check(src, Segment([x(), "le ", g_open(), "b", g_close()])) == []


# ------------------------------------------------------------------------------------------------ fuzzing

_CHARS = st.characters(blacklist_categories=("Cs",))
_SNIPPETS = st.sampled_from(["<", ">", "&", "<1>", "</2>", "<3/>", "< 1 >", "</ 2>", "<4 />", "&lt;", "&amp;",
                             "&amp;lt;", "&gt;", ";", "lt", "1", "<١>", "\u00a0", " ", "<<", "&&lt;"])
TEXT = st.lists(st.one_of(st.text(_CHARS, max_size=6), _SNIPPETS), max_size=5).map("".join)
IDS = st.sampled_from(["1", "2", "3", "a"])


@st.composite
def _leaf(draw):
    kind = draw(st.sampled_from(["text", "x", "iso", "lone-open", "lone-close"]))
    i = draw(IDS)
    if kind == "text":
        return [draw(TEXT)]
    if kind == "x":
        return [InlineCode(i, K.STANDALONE, f'<x id="{i}"/>', tag="x")]
    if kind == "iso":
        k = draw(st.sampled_from([K.OPEN, K.CLOSE]))
        return [InlineCode(i, k, f'<it id="{i}" pos="{k.value}"/>', tag="it", isolated=True)]
    if kind == "lone-open":
        return [InlineCode(i, K.OPEN, f'<bpt id="{i}">', tag="bpt")]
    return [InlineCode(i, K.CLOSE, "</g>", tag="g")]


def _pair(children):
    return st.tuples(IDS, st.lists(children, max_size=4)).map(
        lambda t: [g_open(t[0])] + [p for c in t[1] for p in c] + [g_close(t[0])])


PARTS = st.recursive(_leaf(), lambda children: st.one_of(_pair(children),
                                                          st.lists(children, max_size=4).map(
                                                              lambda cs: [p for c in cs for p in c])),
                     max_leaves=12)
SEGMENTS = PARTS.map(Segment)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(TEXT)
def test_fuzz_escape_roundtrip(text):
    esc = codes.escape(text)
    assert codes.unescape(esc) == text
    assert all(isinstance(t, str) for t in codes.tokenize(esc))


@FUZZ
@given(SEGMENTS)
def test_fuzz_render_parse_roundtrip(seg):
    r = render(seg)
    assert len(r.codes) + len(r.closers) == len(seg.codes)
    res = parse(r, r.text)
    assert res.ok, res.problems
    assert res.problems == []
    assert res.segment == seg
    assert strip_tags(r.text) == seg.text
    assert check(seg, res.segment) == []


def _variant(tag: Tag, style: int) -> str:
    n = tag.number
    if style == 0:
        return str(tag)
    if tag.role == "open":
        return [f"< {n} >", f"<{n} >", f"<0{n}>"][style % 3]
    if tag.role == "close":
        return [f"</ {n}>", f"< / {n} >", f"</{n} >"][style % 3]
    return [f"<{n} />", f"< {n}/>", f"<{n}/ >"][style % 3]


@st.composite
def corrupted(draw):
    seg = draw(SEGMENTS)
    r = render(seg)
    toks = list(r.tokens)
    ops = draw(st.lists(st.sampled_from(["drop", "dup", "swap", "invent", "move", "collapse", "text"]),
                        max_size=4))
    for op in ops:
        tag_idx = [i for i, t in enumerate(toks) if isinstance(t, Tag)]
        if op == "invent":
            n = draw(st.integers(len(r.codes) + 1, len(r.codes) + 5))
            toks.insert(draw(st.integers(0, len(toks))), Tag(n, draw(st.sampled_from(["open", "close", "single"]))))
        elif op == "text":
            toks.insert(draw(st.integers(0, len(toks))), draw(TEXT))
        elif not tag_idx:
            continue
        elif op == "drop":
            del toks[draw(st.sampled_from(tag_idx))]
        elif op == "dup":
            toks.insert(draw(st.integers(0, len(toks))), toks[draw(st.sampled_from(tag_idx))])
        elif op == "swap":
            a, b = draw(st.sampled_from(tag_idx)), draw(st.sampled_from(tag_idx))
            toks[a], toks[b] = toks[b], toks[a]
        elif op == "move":
            t = toks.pop(draw(st.sampled_from(tag_idx)))
            toks.insert(draw(st.integers(0, len(toks))), t)
        elif op == "collapse":
            i = draw(st.sampled_from(tag_idx))
            toks[i] = Tag(toks[i].number, "single")
    styles = draw(st.lists(st.integers(0, 3), min_size=len(toks), max_size=len(toks)))
    out = "".join(codes.escape(t) if isinstance(t, str) else _variant(t, s) for t, s in zip(toks, styles))
    return seg, r, out, ops


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted())
def test_fuzz_corruption_never_loses_a_code_silently(case):
    seg, r, out, ops = case
    res = parse(r, out)
    # every source code exactly once, always (even flagged results are complete for the reviewer)
    assert Counter(res.segment.codes) == Counter(seg.codes)
    # tags never change the text
    assert res.segment.text == strip_tags(out)
    if res.ok:
        assert check(seg, res.segment) == []
    else:
        assert res.problems
    if not ops:
        assert res.ok and res.problems == [] and res.segment == seg


@settings(max_examples=200, deadline=None)
@given(SEGMENTS, st.text(st.sampled_from("<>/ 0123456789abc&;lt"), max_size=40))
def test_fuzz_arbitrary_output_never_crashes(seg, out):
    r = render(seg)
    res = parse(r, out)
    assert Counter(res.segment.codes) == Counter(seg.codes)
    if res.ok:
        assert check(seg, res.segment) == []
