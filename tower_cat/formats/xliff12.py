"""XLIFF 1.0/1.1/1.2 (namespaced, un-namespaced or with a prefixed namespace; Phrase .mxliff too).

Reading: every ``<trans-unit>`` is a Unit, or, when its ``<seg-source>`` holds ``<mrk mtype="seg">`` segments, every
segment is a Unit of its own (id ``"<trans-unit id>#<mid>"``). Inline elements become ``InlineCode``s whose ``xml``
is the markup exactly as written in the file: ``<g>``/``<mrk>`` give an OPEN code (the start tag) and a CLOSE code
(the end tag); ``<x/> <bx/> <ex/> <ph> <bpt> <ept> <it>`` give one code holding the whole element; anything else
(an unknown element, a comment) becomes a STANDALONE code so nothing is lost.

Writing: ``_xml.Splicer`` edits only the targets (their content, ``state``/``state-qualifier``, ITS MT confidence) of
changed units, and adds an ``<alt-trans alttranstype="previous-version">`` for an edit that replaces a target
(``TargetEdit.previous``) and, for QA/terminology/QE findings (``Unit.findings_edit``), ``<note from="tower-cat"
priority="1|5" annotates="target">[error] numbers: …</note>`` (tower-cat's earlier notes on the unit replaced, nobody
else's; read back into ``meta["findings"]``, not into ``notes``); every other byte of the file is kept. SDLXLIFF and MQXLIFF are this reader/writer plus a
``Dialect`` (``sdlxliff.py``, ``mqxliff.py``) that reads and writes the tool's own status attributes.
"""

from __future__ import annotations

import functools
import re
import typing
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from tower_cat.document import (FINDINGS_AUTHOR, STATUSES, CodeKind, Document, Finding, InlineCode, Issue, Part,
                                Segment, TargetEdit, Unit, UnitContext)
from tower_cat.errors import CodeMismatchError, FormatError, TowerCatError
from tower_cat.formats import _xml

FORMAT = "xliff12"
XLIFF_NS_PREFIX = "urn:oasis:names:tc:xliff:document:1."
ITS_NS = "http://www.w3.org/2005/11/its"
ITS_TOOL = "https://github.com/tower-cat"  # the IRI in its:annotatorsRef="mt-confidence|…"
MXLIFF_NS = "http://www.memsource.com/mxlf/2.0"
XML_LANG = f"{{{_xml.XML_NS}}}lang"
ITS_CONFIDENCE = f"{{{ITS_NS}}}mtConfidence"
XML_SPACE = f"{{{_xml.XML_NS}}}space"

# XLIFF 1.2 state values (anything else should be "x-" prefixed).
STATES = ("new", "needs-translation", "needs-adaptation", "needs-l10n", "needs-review-translation",
          "needs-review-adaptation", "needs-review-l10n", "translated", "signed-off", "final")
FINAL_STATES = ("final", "signed-off")
STATUS_TO_STATE = {"new": "new", "needs-review": "needs-review-translation", "translated": "translated",
                   "reviewed": "signed-off", "final": "final"}
ORIGIN_TO_QUALIFIER = {"mt": "leveraged-mt", "post-edit": "leveraged-mt", "tm-exact": "exact-match",
                       "tm-context": "leveraged-tm", "tm-fuzzy": "fuzzy-match"}
STATUS_RANK = {s: i for i, s in enumerate(STATUSES)}


def state_to_status(state: str | None) -> str | None:
    """The abstract status of an XLIFF 1.2 state value (None when there is none)."""
    if not state:
        return None
    if state in ("new", "needs-translation", "needs-adaptation", "needs-l10n"):
        return "new"
    if state == "translated":
        return "translated"
    if state == "signed-off":
        return "reviewed"
    if state == "final":
        return "final"
    return "needs-review"


# --- sniffing -----------------------------------------------------------------------------------------------

_COMMENT = re.compile(rb"<!--.*?-->", re.S)
_FIRST_TAG = re.compile(rb"<(?![?!])([^\s/>]+)([^>]*)>", re.S)
_VERSION = re.compile(rb"""\sversion\s*=\s*["']\s*([^"']*)["']""")


def sniff(head: bytes) -> bool:
    """Root element ``xliff`` (any prefix) with version 1.x or an XLIFF 1.x namespace, or no version and no 2.x
    namespace."""
    head = _COMMENT.sub(b"", head)
    m = _FIRST_TAG.search(head)
    if not m or m.group(1).split(b":")[-1] != b"xliff":
        return False
    attrs = m.group(2)
    if b"urn:oasis:names:tc:xliff:document:2" in attrs:
        return False
    v = _VERSION.search(attrs)
    if v:
        return v.group(1).startswith(b"1")
    return True


# --- the document handle ------------------------------------------------------------------------------------

@dataclass
class FileRec:
    el: etree._Element
    original: str | None
    source_language: str | None
    target_language: str | None


@dataclass
class SegRec:
    unit: Unit
    mid: str
    src: etree._Element  # the <mrk mtype="seg"> in <seg-source>
    tgt: etree._Element | None  # the <mrk mtype="seg"> with the same mid in <target>


@dataclass
class TuRec:
    el: etree._Element
    file: FileRec
    source: etree._Element
    segsource: etree._Element | None
    target: etree._Element | None
    unit: Unit | None = None  # unsegmented trans-unit
    segs: list[SegRec] | None = None  # segmented trans-unit

    def units(self) -> list[Unit]:
        return [s.unit for s in self.segs] if self.segs is not None else [self.unit]


@dataclass
class Handle:
    xf: _xml.XmlFile
    dialect: "Dialect"
    ns: str
    files: list[FileRec]
    tus: list[TuRec]
    target_lang: str | None  # as loaded (first <file>)
    recs: dict = field(default_factory=dict, repr=False)  # id(unit) -> TuRec | (TuRec, SegRec)

    @functools.cached_property
    def targets_have_lang(self) -> bool | None:
        """Whether the file's targets carry xml:lang (None: it has none); read from the text when a writer first
        creates a target, not at every load."""
        return targets_have_lang(self.xf.text)

    def locate(self, unit: Unit) -> tuple[TuRec, SegRec | None]:
        rec = self.recs[id(unit)]  # a TuRec for an unsegmented trans-unit, else (TuRec, SegRec)
        return rec if type(rec) is tuple else (rec, None)


def unit_xml(doc: Document, unit: Unit) -> str:
    """The markup a unit owns in the file as loaded: the trans-unit, or for a segment its target ``<mrk>`` (plus
    the SDLXLIFF ``<sdl:seg>``). Handy for checking that protected units were written back untouched."""
    h: Handle = doc.handle
    tu, seg = h.locate(unit)
    if seg is None:
        return h.xf.outer(tu.el)
    out = h.xf.outer(seg.tgt) if seg.tgt is not None else ""
    extra = h.dialect.seg_element(tu, seg.mid)
    return out + (h.xf.outer(extra) if extra is not None else "")


# --- dialects -----------------------------------------------------------------------------------------------

class Dialect:
    """What differs between plain XLIFF 1.2 and the tools' flavours (SDLXLIFF, MQXLIFF)."""

    format = FORMAT
    writes_state = True  # XLIFF 1.2 state/state-qualifier on <target>
    writes_its = True  # QE as its:mtConfidence

    def read_unit(self, h: Handle, tu: TuRec, unit: Unit, seg: SegRec | None) -> None:
        """Fill tool-specific flags (locked, status, origin, scores) after the generic reader."""
        el = tu.el
        if MXLIFF_NS in (el.nsmap or {}).values():  # Phrase/Memsource
            if el.get(f"{{{MXLIFF_NS}}}locked") == "true":
                unit.locked = True
            if el.get(f"{{{MXLIFF_NS}}}confirmed") == "1":
                unit.final = True
            origin = el.get(f"{{{MXLIFF_NS}}}trans-origin")
            if origin:
                unit.origin = origin
            score = _float(el.get(f"{{{MXLIFF_NS}}}score"))
            if score is not None:
                unit.match_score = score * 100 if score <= 1 else score

    def seg_element(self, tu: TuRec, mid: str) -> etree._Element | None:
        return None

    def new_target_lang(self, h: Handle, tu: TuRec, lang: str | None) -> str | None:
        """xml:lang for a target we create: when the file names a target language, unless its existing targets
        show that the tool leaves xml:lang off."""
        if not lang or h.targets_have_lang is False:
            return None
        return lang

    def write_tu(self, w: "Writer", tu: TuRec) -> None:
        """Tool attributes outside <target> (trans-unit attributes, sdl:seg-defs)."""

    def notes_for_findings(self, tu: TuRec) -> bool:
        """Findings of this trans-unit go into ``<note from="tower-cat">`` (a tool with its own comments says no
        and writes them in ``write_tu`` / ``segment_with_findings``)."""
        return True

    def finish(self, w: "Writer") -> None:
        """Document-level markup after every trans-unit is written (SDLXLIFF comment definitions)."""

    def forget_elements(self) -> None:
        """Drop what is cached per element: a streaming reader frees the trans-units it has written."""

    def segment_with_findings(self, w: "Writer", tu: TuRec, seg: SegRec, content: str | None) -> str | None:
        """The target content of a segment with its findings, when the tool keeps comments inside the target
        (SDLXLIFF); ``content``: the new content, None when the target is not edited. None: no change."""
        return content


# --- reading ------------------------------------------------------------------------------------------------

def _float(s: str | None) -> float | None:
    if s is None:
        return None
    try:
        return float(s.strip().rstrip("%"))
    except ValueError:
        return None


_PAIRED_OPEN = {"bx", "bpt"}
_PAIRED_CLOSE = {"ex", "ept"}
_STANDALONE = {"x", "ph"}
_OPEN_KIND, _CLOSE_KIND, _STANDALONE_KIND = CodeKind.OPEN, CodeKind.CLOSE, CodeKind.STANDALONE


class _ContentReader:
    """Turns the content of <source>, <target> or a <mrk> into a Segment."""

    def __init__(self, xf: _xml.XmlFile, ns: str):
        self.xf = xf
        self.ns = ns
        self.prefix = f"{{{ns}}}" if ns else ""
        # InlineCode is immutable: equal codes (the same markup, id and display) share one object per document
        self._codes: dict[tuple, InlineCode] = {}

    def forget(self) -> None:
        """Drop the shared codes (a streaming reader calls this with each window it frees)."""
        self._codes.clear()

    def _code(self, *key) -> InlineCode:
        code = self._codes.get(key)
        if code is None:
            code = self._codes[key] = InlineCode(*key)
        return code

    def segment(self, el: etree._Element) -> Segment:
        if not len(el):  # the common case: text only
            text = el.text
            return Segment.merged([text] if text else [])
        parts: list[Part] = []
        self._walk(el, parts, {})
        return Segment.merged(parts)  # text runs and codes alternate: nothing to merge

    @staticmethod
    def _synthetic_id(name: str, raw: str, seen: dict[str, int]) -> str:
        """An id for a code the file gives none (a <mrk> without mid, an unknown element, a comment): derived from
        its markup, so the same code gets the same id in the source and in a target that reorders codes."""
        base = f"{name}-{zlib.crc32(raw.encode('utf-8')) & 0xffffff:06x}"
        n = seen.get(base, 0) + 1
        seen[base] = n
        return base if n == 1 else f"{base}-{n}"

    def _walk(self, el: etree._Element, parts: list[Part], counter: dict[str, int]) -> None:
        text = el.text
        if text:
            parts.append(text)
        append = parts.append
        xf = self.xf
        src = xf.text
        spans = xf.spans
        index, starts, tag_ends, closes, ends = spans.index, spans.starts, spans.tag_ends, spans.closes, spans.ends
        prefix = self.prefix
        plen = len(prefix)
        codes = self._codes
        for child in el:
            tag = child.tag
            if not isinstance(tag, str):  # comment or processing instruction: keep it as a code
                kind = "comment" if isinstance(child, etree._Comment) else "pi"
                raw = etree.tostring(child, with_tail=False, encoding="unicode")
                append(InlineCode(self._synthetic_id(kind, raw, counter), CodeKind.STANDALONE, raw, tag=kind))
            else:
                local = tag[plen:] if tag.startswith(prefix) and (plen or tag[0] != "{") else None
                get = child.get
                i = index[child]
                if local == "g" or local == "mrk":
                    start, tag_end = starts[i], tag_ends[i]
                    if local == "g":
                        cid = get("id") or self._synthetic_id("g", src[start:tag_end], counter)
                        display = get("equiv-text") or get("ctype") or ""
                    else:
                        cid = get("mid") or self._synthetic_id("mrk", src[start:tag_end], counter)
                        display = get("mtype") or ""
                    end = ends[i]
                    if tag_end == end:
                        append(self._code(cid, _STANDALONE_KIND, src[start:end], local, display, False))
                    else:
                        key = (cid, _OPEN_KIND, src[start:tag_end], local, display, False)
                        code = codes.get(key)
                        append(code if code is not None else self._code(*key))
                        self._walk(child, parts, counter)
                        key = (cid, _CLOSE_KIND, src[closes[i]:end], local, display, False)
                        code = codes.get(key)
                        append(code if code is not None else self._code(*key))
                else:
                    raw = src[starts[i]:ends[i]]
                    display = get("equiv-text") or (child.text or "")[:40] if local != "x" else get("equiv-text") or ""
                    isolated = False
                    if local in _STANDALONE:
                        kind, cid = _STANDALONE_KIND, get("id")
                    elif local in _PAIRED_OPEN or local in _PAIRED_CLOSE:
                        kind = _OPEN_KIND if local in _PAIRED_OPEN else _CLOSE_KIND
                        cid = (get("i") or get("rid") or get("id")) if local in ("bpt", "ept") \
                            else (get("rid") or get("id"))
                    elif local == "it":
                        pos = get("pos")
                        kind = {"open": _OPEN_KIND, "close": _CLOSE_KIND}.get(pos, _STANDALONE_KIND)
                        cid, isolated = get("rid") or get("id"), True
                    else:
                        kind = _STANDALONE_KIND
                        name = local or etree.QName(tag).localname
                        cid = get("id")
                        local = name
                    if not cid:
                        cid = self._synthetic_id(local, raw, counter)
                    key = (cid, kind, raw, local or "", display, isolated)
                    code = codes.get(key)
                    append(code if code is not None else self._code(*key))
            tail = child.tail
            if tail:
                append(tail)


@dataclass
class _FileState:
    """What the reader remembers within one ``<file>``: ids seen, translate="no" of enclosing groups."""

    file: FileRec
    seen: set = field(default_factory=set)
    no_translate: dict = field(default_factory=dict)
    parent_no: dict = field(default_factory=dict)  # parent -> translate="no" on it or an enclosing group
    tlang: str = field(init=False)

    def __post_init__(self) -> None:
        self.tlang = (self.file.target_language or "").lower()

    def forget_elements(self) -> None:
        """Drop the element caches (a streaming reader calls this when it frees the elements)."""
        self.no_translate.clear()
        self.parent_no.clear()


_TARGET_START = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?target(?=[\s/>])[^>]*>")
_ALT_TRANS = re.compile(r"<((?:[A-Za-z_][\w.-]*:)?alt-trans)(?=[\s/>])(?:[^>]*/>|.*?</\1\s*>)", re.S)


def targets_have_lang(text: str) -> bool | None:
    """What the whole-file reader learns from every trans-unit's ``<target>`` (those in ``<alt-trans>`` do not
    count): None when there is none, else whether any carries ``xml:lang``."""
    seen = False
    skip = _ALT_TRANS.finditer(text)
    alt = next(skip, None)
    for m in _TARGET_START.finditer(text):
        while alt is not None and alt.end() <= m.start():
            alt = next(skip, None)
        if alt is not None and alt.start() < m.start():
            continue
        if "xml:lang" in m.group(0):
            return True
        seen = True
    return False if seen else None


def link_context(units: list[Unit], before: tuple[Unit, str] | None = None) -> tuple[Unit, str] | None:
    """Each unit's previous and next source text (within one ``<file>``). ``before``: the unit preceding
    ``units[0]`` and its source text (a streaming reader links across trans-units); returns the same for the
    last unit."""
    texts = [u.source.text for u in units]
    if before is not None and units:
        before[0].context.next_source = texts[0]
        units[0].context.previous_source = before[1]
    for k in range(1, len(units)):
        units[k - 1].context.next_source = texts[k]
        units[k].context.previous_source = texts[k - 1]
    return (units[-1], texts[-1]) if units else before


class _Loader:
    def __init__(self, path: Path, dialect: Dialect):
        self.path = path
        self.dialect = dialect
        self.issues: list[Issue] = []
        self.unit_count = 0  # units read so far (MAX_UNITS)
        self.tus_kept = 0  # trans-units that gave units (the name of one without id)

    def issue(self, severity: str, message: str, line: int | None = None, unit: str | None = None) -> None:
        self.issues.append(Issue(severity, message, line, unit))

    def begin(self, xf: _xml.XmlFile) -> Handle:
        """Check the root element and set up the handle (the root's start is enough: a streaming reader calls
        this at the root's start event)."""
        root = xf.root
        if _xml.localname(root) != "xliff":
            raise FormatError(f"the root element is <{root.tag}>, not <xliff>", path=self.path, line=root.sourceline)
        ns = _xml.namespace(root)
        if ns and not ns.startswith(XLIFF_NS_PREFIX):
            raise FormatError(f"unexpected namespace {ns!r} on <xliff> (XLIFF 1.x expected)", path=self.path,
                              line=root.sourceline)
        version = root.get("version")
        if version and not version.startswith("1."):
            self.issue("warning", f"version {version!r} on <xliff>; read as XLIFF 1.2", root.sourceline)
        p = f"{{{ns}}}" if ns else ""
        self.T = {n: p + n for n in ("file", "trans-unit", "source", "seg-source", "target", "note", "alt-trans",
                                     "context-group", "context", "mrk", "group", "body")}
        self.reader = _ContentReader(xf, ns)
        self.h = Handle(xf=xf, dialect=self.dialect, ns=ns, files=[], tus=[], target_lang=None)
        self.src_lang = self.tgt_lang = None
        return self.h

    def add_file(self, fel: etree._Element) -> FileRec:
        """A ``<file>`` (its start tag is enough): languages checked against the first file's."""
        frec = FileRec(fel, fel.get("original"), fel.get("source-language"), fel.get("target-language"))
        if not self.h.files:
            self.src_lang, self.tgt_lang = frec.source_language, frec.target_language
        else:
            src_lang, tgt_lang = self.src_lang, self.tgt_lang
            if frec.source_language and src_lang and frec.source_language.lower() != src_lang.lower():
                self.issue("warning", f"<file original={frec.original!r}> has source-language "
                                      f"{frec.source_language!r}, the first file {src_lang!r}", fel.sourceline)
            if frec.target_language and tgt_lang and frec.target_language.lower() != tgt_lang.lower():
                self.issue("warning", f"<file original={frec.original!r}> has target-language "
                                      f"{frec.target_language!r}, the first file {tgt_lang!r}", fel.sourceline)
            self.tgt_lang = tgt_lang or frec.target_language
            self.src_lang = src_lang or frec.source_language
        self.h.files.append(frec)
        return frec

    def load(self) -> Document:
        xf = _xml.parse(self.path)
        root = xf.root
        h = self.begin(xf)
        units: list[Unit] = []
        used_ids: dict[str, int] = {}
        files = [el for el in root if el.tag == self.T["file"]]
        if not files:
            self.issue("error", "no <file> element", root.sourceline)
        for fel in files:
            frec = self.add_file(fel)
            file_units: list[Unit] = []
            self._file(frec, file_units, used_ids)
            link_context(file_units)
            units += file_units
        h.target_lang = self.tgt_lang
        return Document(path=self.path, format=self.dialect.format, units=units, source_lang=self.src_lang,
                        target_lang=self.tgt_lang, issues=self.issues, handle=h)

    def _file(self, frec: FileRec, out: list[Unit], used_ids: dict[str, int]) -> None:
        fs = _FileState(frec)
        trans_unit = self._trans_unit
        for tu in frec.el.iter(self.T["trans-unit"]):
            rec = trans_unit(tu, fs, used_ids)
            if rec is not None:
                if rec.segs is None:
                    out.append(rec.unit)
                else:
                    out.extend(s.unit for s in rec.segs)

    def _trans_unit(self, tu: etree._Element, fs: "_FileState", used_ids: dict[str, int]) -> TuRec | None:
        """Read one ``<trans-unit>``: its units are registered in the handle; None when it gives no unit."""
        T = self.T
        t_source, t_segsource, t_target, t_note, t_alt, t_cgroup, t_mrk = (
            T["source"], T["seg-source"], T["target"], T["note"], T["alt-trans"], T["context-group"], T["mrk"])
        h = self.h
        recs = h.recs
        read_unit = self.dialect.read_unit
        frec = fs.file
        seen, no_translate, parent_no, tlang = fs.seen, fs.no_translate, fs.parent_no, fs.tlang
        line = tu.sourceline
        if self.unit_count >= _xml.MAX_UNITS:
            _xml.check_units(self.unit_count + 1, self.path, line)
        get = tu.get
        tu_id = get("id")
        if tu_id is None:
            tu_id = f"{self.tus_kept + 1}"
            self.issue("warning", f"<trans-unit> without id; called {tu_id!r}", line)
        parent = tu.getparent()
        for outer in tu.iterancestors(T["trans-unit"]):
            self.issue("error", f"<trans-unit> inside <trans-unit id={outer.get('id')!r}> (line "
                                f"{outer.sourceline}): trans-units cannot nest", line, tu_id)
            return None
        if tu_id in seen:  # PASSOLO does this; we write by position, so only the unit id is made unique
            self.issue("warning", f"trans-unit id {tu_id!r} is used twice in this file (unit ids get a ~N "
                                  f"suffix)", line, tu_id)
        seen.add(tu_id)
        source = segsource = target = None
        notes: list[str] = []
        ours: list[tuple[Finding, str | None]] = []
        alts: list[etree._Element] = []
        groups: list[etree._Element] = []
        for ch in tu:
            t = ch.tag
            if t == t_source:
                if source is None:
                    source = ch
            elif t == t_target:
                if target is None:
                    target = ch
            elif t == t_note:
                if ch.get("from") == FINDINGS_AUTHOR:  # our findings: not a note for the translator or model
                    ours.append(Finding.parse("".join(ch.itertext())))
                else:
                    notes.append("".join(ch.itertext()))
            elif t == t_segsource:
                segsource = ch
            elif t == t_alt:
                alts.append(ch)
            elif t == t_cgroup:
                groups.append(ch)
        if source is None:
            self.issue("error", "<trans-unit> without <source>", line, tu_id)
            return None
        rec = TuRec(tu, frec, source, segsource, target)
        if get("translate", "yes") != "no":
            group_no = parent_no.get(parent)
            if group_no is None:
                group_no = parent_no[parent] = self._group_no(parent, no_translate)
            translatable = not group_no
        else:
            translatable = False
        if target is not None:
            tl = target.get(XML_LANG)
            if tl and tlang and tl.lower() != tlang:
                self.issue("warning", f"target xml:lang {tl!r} contradicts the file's target-language "
                                      f"{frec.target_language!r}", target.sourceline, tu_id)
        seg_mrks = []
        if segsource is not None:
            seg_mrks = [m for m in segsource.iter(t_mrk) if m.get("mtype") == "seg"]
        base = self._base(tu, tu_id, target, notes, groups, frec, translatable, line)
        base["findings"] = _by_segment(ours)
        if alts:
            alts = _AltTrans(alts, self.T["target"])
        if seg_mrks:
            rec.segs = []
            tmrks: dict[str, etree._Element] = {}
            if target is not None:
                for m in target.iter(t_mrk):
                    if m.get("mtype") == "seg":
                        tmrks.setdefault(m.get("mid", ""), m)
            nested = self._nested_segment(seg_mrks, segsource)
            if nested is None and target is not None:
                nested = self._nested_segment(list(tmrks.values()), target)
            if nested is not None:
                self.issue("error", f"segment mid={nested.get('mid')!r} is inside another segment (segments "
                                    f"cannot nest)", nested.sourceline, tu_id)
                return None
            mids = set()
            for m in seg_mrks:
                mid = m.get("mid")
                if mid is None:
                    self.issue("error", "<mrk mtype=\"seg\"> without mid in <seg-source>", m.sourceline, tu_id)
                    continue
                if mid in mids:
                    self.issue("error", f"segment mid {mid!r} appears twice in <seg-source>", m.sourceline,
                               tu_id)
                    continue
                mids.add(mid)
                tm = tmrks.get(mid)
                unit = self._unit(base, f"{tu_id}#{mid}", m, tm, used_ids, alts, mid)
                seg = SegRec(unit, mid, m, tm)
                rec.segs.append(seg)
                recs[id(unit)] = (rec, seg)
                read_unit(h, rec, unit, seg)
                self.unit_count += 1
            for mid, tm in tmrks.items():
                if mid not in mids:
                    self.issue("warning", f"the target has a segment mid={mid!r} that <seg-source> lacks; it is "
                                          f"kept as is", tm.sourceline, tu_id)
            if not rec.segs:
                return None
        else:
            if segsource is not None and not self.reader.segment(source).text.strip():
                return None  # seg-source without segments (e.g. SDLXLIFF code-only paragraph): nothing to translate
            unit = self._unit(base, tu_id, source, target, used_ids, alts, None, own=True)
            rec.unit = unit
            recs[id(unit)] = rec
            read_unit(h, rec, unit, None)
            self.unit_count += 1
        h.tus.append(rec)
        self.tus_kept += 1
        return rec

    @staticmethod
    def _nested_segment(segs: list[etree._Element], holder) -> etree._Element | None:
        """The first ``<mrk mtype="seg">`` that lies inside another one (up to ``holder``), else None."""
        marks = set(segs)
        for m in segs:
            up = m.getparent()
            while up is not None and up is not holder:
                if up in marks:
                    return m
                up = up.getparent()
        return None

    def _group_no(self, parent: etree._Element | None, cache: dict) -> bool:
        """translate="no" on an enclosing <group> (cached per group)."""
        if parent is None or parent.tag != self.T["group"]:
            return False
        if parent in cache:
            return cache[parent]
        value = parent.get("translate") == "no" or self._group_no(parent.getparent(), cache)
        cache[parent] = value
        return value

    def _base(self, tu, tu_id, target, notes, groups, frec, translatable, line) -> dict:
        if target is not None:
            tget = target.get
            state = tget("state")
            origin = tget("state-qualifier")
            if state and state not in STATES and not state.startswith("x-"):
                self.issue("warning", f"non-standard state {state!r} (not an XLIFF 1.2 value, nor x-…)",
                           target.sourceline, tu_id)
        else:
            state = origin = None
        get = tu.get
        final = get("approved") == "yes" or state in FINAL_STATES
        ctx = UnitContext(frec.original, get("resname"))
        meta = {"tu_id": tu_id}
        if groups:
            contexts = []
            for g in groups:
                file = cline = None
                for c in g.iter(self.T["context"]):
                    ctype, text = c.get("context-type", ""), (c.text or "")
                    contexts.append((ctype, text))
                    if ctype == "sourcefile":
                        file = text
                    elif ctype == "linenumber":
                        cline = text
                    elif ctype in ("x-po-msgctxt", "msgctxt", "x-msgctxt"):
                        ctx.msgctxt = text
                if file:
                    ctx.locations.append(f"{file}:{cline}" if cline else file)
            if contexts:
                meta["contexts"] = contexts
        max_length = size_unit = None
        maxwidth = get("maxwidth")
        if maxwidth is not None:
            size_unit = get("size-unit", "pixel")
            if size_unit == "char":
                try:
                    max_length = int(maxwidth)
                except ValueError:
                    self.issue("warning", f"maxwidth {maxwidth!r} is not a number", line, tu_id)
            if max_length is None:
                meta["maxwidth"] = maxwidth
        return dict(state=state, notes=notes, context=ctx, final=final, translatable=translatable,
                    max_length=max_length, size_unit=size_unit, origin=origin, line=line, meta=meta, target=target)

    def _unit(self, base: dict, uid: str, src_el, tgt_el, used_ids: dict[str, int], alts, mid, own: bool = False) \
            -> Unit:
        """``own``: the unit is the only one made from ``base`` and may take its lists and dicts without copies."""
        n = used_ids.get(uid, 0) + 1
        used_ids[uid] = n
        if n > 1:
            uid = f"{uid}~{n}"
        reader = self.reader
        target = None
        if tgt_el is not None and (tgt_el.text or len(tgt_el)):
            target = reader.segment(tgt_el)
        ctx = base["context"]
        if own:
            meta = base["meta"]
            notes = base["notes"]
        else:
            # the segments of one trans-unit share its notes and locations (nothing mutates them): copies per
            # segment made a 270 KB file with 3 000 segments and 3 000 notes cost 1.8 GB
            ctx = UnitContext(ctx.file, ctx.resname, ctx.msgctxt, ctx.locations)
            meta = dict(base["meta"])
            notes = base["notes"]
        if mid is not None:
            meta["mid"] = mid
        findings = base["findings"](mid)
        if findings:
            meta["findings"] = findings
        if alts:
            found = alts.for_mid(mid)
            if found:
                meta["alt_trans"] = found
        qe = None
        holder = tgt_el if mid is not None else base["target"]
        if holder is not None:
            qe = _float(holder.get(ITS_CONFIDENCE))
            if qe is not None:
                qe *= 100
        source = reader.segment(src_el)
        if target is not None and (target.codes or source.codes):
            keys = {c.key for c in source.codes}
            extra = [c for c in target.codes if c.key not in keys and c.tag != "mrk"]  # mrk: tracked changes
            if extra:
                self.issue("warning", f"the target has inline code(s) {', '.join(repr(c.id) for c in extra)} that "
                                      f"the source lacks", tgt_el.sourceline, uid)
        return Unit(id=uid, source=source, target=target, state=base["state"], notes=notes, context=ctx,
                    final=base["final"], translatable=base["translatable"], max_length=base["max_length"],
                    size_unit=base["size_unit"], origin=base["origin"], qe_score=qe,
                    line=src_el.sourceline if mid is not None else base["line"], meta=meta)


def _by_segment(items: list[tuple]) -> "typing.Callable[[str | None], list]":
    """(thing, segment mid or None) pairs of a trans-unit -> a function giving a segment its things (those for
    every segment and its own, in file order), grouped once: a scan per segment was segments x notes."""
    common = [(i, f) for i, (f, seg) in enumerate(items) if seg is None]
    own: dict[str, list] = {}
    for i, (f, seg) in enumerate(items):
        if seg is not None:
            own.setdefault(seg, []).append((i, f))
    common_only = [f for _, f in common]

    def for_mid(mid: str | None) -> list:
        mine = own.get(mid) if mid is not None else None
        if not mine:
            return list(common_only)
        return [f for _, f in sorted(common + mine, key=lambda x: x[0])]

    return for_mid


MAX_ALT_TRANS = 100  # <alt-trans> records kept in unit.meta["alt_trans"] per unit (informational; real files: < 10)


class _AltTrans:
    """The ``<alt-trans>`` of a trans-unit, read once and indexed by ``mid``: a segment gets those without mid
    and those with its own, in file order, at most :data:`MAX_ALT_TRANS` (a scan of every alt-trans per segment
    was quadratic in the file)."""

    def __init__(self, alts: list[etree._Element], target_tag: str):
        self.all: list[tuple[int, dict]] = []
        self.common: list[tuple[int, dict]] = []
        self.by_mid: dict[str, list[tuple[int, dict]]] = {}
        for i, a in enumerate(alts):
            mid = a.get("mid")
            bucket = self.common if mid is None else self.by_mid.setdefault(mid, [])
            if len(bucket) >= MAX_ALT_TRANS and len(self.all) >= MAX_ALT_TRANS:
                continue
            t = a.find(target_tag)
            rec = (i, {"origin": a.get("origin"), "match_quality": a.get("match-quality"),
                       "target": "".join(t.itertext()) if t is not None else None})
            if len(self.all) < MAX_ALT_TRANS:
                self.all.append(rec)
            if len(bucket) < MAX_ALT_TRANS:
                bucket.append(rec)
        self.common_only = [r for _, r in self.common]

    def for_mid(self, mid: str | None) -> list[dict]:
        if mid is None:  # an unsegmented trans-unit: every alt-trans
            return [r for _, r in self.all]
        own = self.by_mid.get(mid)
        if not own:
            return list(self.common_only)
        return [r for _, r in sorted(self.common + own, key=lambda x: x[0])][:MAX_ALT_TRANS]


def load(path: Path, strict: bool = True, dialect: Dialect | None = None) -> Document:
    path = Path(path)
    loader = _Loader(path, dialect or Dialect())
    with _xml.gc_paused():
        doc = loader.load()
    if strict:
        for issue in doc.issues:
            if issue.severity == "error":
                raise FormatError(issue.message, path=path, line=issue.line, unit=issue.unit,
                                  hint="run `tower-cat validate` to see every finding")
    return doc


# --- writing ------------------------------------------------------------------------------------------------

_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TAG_NAME = re.compile(r"<([^\s/>]+)")


def escape_content(s: str) -> str:
    s = _INVALID_XML_CHARS.sub("", s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # escape_text
    return s.replace("\r", "&#13;") if "\r" in s else s


def element_name(start_tag: str) -> str:
    """The qualified name as written in a start tag (``xlf:target`` for ``<xlf:target …>``)."""
    return _TAG_NAME.match(start_tag).group(1)


def open_form(start_tag: str) -> str:
    """``<mrk …/>`` → ``<mrk …>`` (a start tag that is followed by content)."""
    if start_tag.endswith("/>"):
        return start_tag[:-2].rstrip() + ">"
    return start_tag


def render(segment: Segment, source: Segment, unit: Unit, path: Path | None = None, newline: str = "\n") -> str:
    """A target segment as XML content: escaped text plus the source's codes, verbatim. Line breaks in the text
    are written as ``newline`` (``"\r\n"`` in a CRLF file: XML parsers read both as one line feed).

    Every code must exist in the source (same kind and id); element halves (``<g>``/``<mrk>`` start and end tags)
    must nest properly, so the output is always well-formed.
    """
    codes = {(c.kind, c.id): c for c in source.parts if not isinstance(c, str)}  # (kind, id): InlineCode.key
    out: list[str] = []
    stack: list[str] = []
    for part in segment.parts:
        if isinstance(part, str):
            text = escape_content(part)
            out.append(text.replace("\n", newline) if newline != "\n" and "\n" in text else text)
            continue
        code = codes.get((part.kind, part.id))
        if code is None:
            raise CodeMismatchError(f"the target has inline code {part.kind.value} {part.id!r} that the source does "
                                    f"not have; not written", path=path, line=unit.line, unit=unit.id,
                                    hint="repair the codes (tower_cat.codes) before saving")
        if code.tag in ("g", "mrk") and code.kind is not CodeKind.STANDALONE:
            if code.kind is CodeKind.OPEN:
                stack.append(code.id)
            elif not stack or stack.pop() != code.id:
                raise CodeMismatchError(f"inline code {code.id!r} closes out of order in the target; not written",
                                        path=path, line=unit.line, unit=unit.id)
        out.append(code.xml)
    if stack:
        raise CodeMismatchError(f"inline code {stack[-1]!r} is opened but never closed in the target; not written",
                                path=path, line=unit.line, unit=unit.id)
    return "".join(out)


def _num(x: float) -> str:
    return ("%.4f" % x).rstrip("0").rstrip(".")


def qe_value(unit: Unit) -> float | None:
    return unit.qe_edit


def score_for(edit: TargetEdit | None, qe: float | None) -> float | None:
    """The percentage a tool shows: the TM match for TM origins, else the QE score, else the engine's own score."""
    if edit is not None and edit.origin.startswith("tm-") and edit.match_score is not None:
        return edit.match_score
    if qe is not None:
        return qe
    return edit.match_score if edit is not None else None


class Writer:
    def __init__(self, doc: Document):
        self.doc = doc
        self.h: Handle = doc.handle
        self.xf = self.h.xf
        self.sp = _xml.Splicer(self.xf.text)
        self.nl = self.xf.newline()  # line breaks in new text: CRLF files keep CRLF
        self.declare: dict[str, str] = {}
        self._tnames: dict[str, str] = {}  # source start tag -> target element name
        self._tags: dict[tuple, str] = {}  # (target name, attribute items) -> new target start tag
        self._previous: dict = {}  # trans-unit element -> {mid: [previous-version targets as parts]}

    # helpers
    def start_tag(self, el) -> str:
        return self.xf.start_tag(el)

    def replace_start(self, el, changes: dict[str, str | None]) -> None:
        if not changes:
            return
        old = self.xf.start_tag(el)
        new = _xml.set_attrs(old, changes)
        if new != old:
            span = self.xf.spans[el]
            self.sp.replace(span.start, span.tag_end, new)

    def replace_content(self, el, content: str, changes: dict[str, str | None] | None = None) -> None:
        span = self.xf.spans[el]
        tag = self.xf.start_tag(el)
        if changes:
            tag = _xml.set_attrs(tag, changes)
        if span.empty:
            self.sp.replace(span.start, span.end, f"{open_form(tag)}{content}</{element_name(tag)}>")
        else:
            if changes and tag != self.xf.start_tag(el):
                self.sp.replace(span.start, span.tag_end, tag)
            self.sp.replace(span.tag_end, span.close, content)

    def its_attrs(self, el, qe: float, existing_ref: str | None) -> dict[str, str]:
        conf = _xml.qname(el, ITS_NS, "mtConfidence", self.declare, "its")
        ref = _xml.qname(el, ITS_NS, "annotatorsRef", self.declare, "its")
        entries = [e for e in (existing_ref or "").split() if not e.startswith("mt-confidence|")]
        entries.append(f"mt-confidence|{ITS_TOOL}")
        return {conf: _num(qe / 100.0), ref: " ".join(entries)}

    def insert_after(self, anchor, markup: str) -> None:
        """Insert an element after ``anchor`` on a line of its own with the anchor's indentation when the anchor
        starts its line, else directly after it."""
        text = self.xf.text
        spans = self.xf.spans
        i = spans.index[anchor]
        start, end = spans.starts[i], spans.ends[i]
        line_start = text.rfind("\n", 0, start) + 1
        prefix = text[line_start:start]
        if line_start > 0 and prefix.strip() == "":
            nl = "\r\n" if text[line_start - 2:line_start] == "\r\n" else "\n"
            self.sp.insert(end, nl + prefix + markup)
        else:
            self.sp.insert(end, markup)

    def new_target_tag(self, tu: TuRec, attrs: dict[str, str | None]) -> tuple[str, str]:
        """Start tag and name of a target element created for ``tu``."""
        src_tag = self.xf.start_tag(tu.source)
        tname = self._tnames.get(src_tag)
        if tname is None:
            name = element_name(src_tag)
            prefix = name[: -len("source")] if name.endswith("source") else ""
            tname = self._tnames[src_tag] = prefix + "target"
        items: dict[str, str | None] = {}
        lang = tu.file.target_language or self.doc.target_lang
        lang = self.h.dialect.new_target_lang(self.h, tu, lang)
        if lang:
            items["xml:lang"] = lang
        space = tu.source.get(XML_SPACE)
        if space is not None:
            items["xml:space"] = space
        items.update(attrs)
        key = (tname, *items.items())
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = _xml.set_attrs(f"<{tname}>", items)
        return tag, tname

    # units
    def check_unit(self, unit: Unit) -> None:
        if unit.protected:
            why = "locked" if unit.locked else "approved/final" if unit.final else "marked translate=\"no\""
            raise TowerCatError(f"the unit is {why} and must not be changed, but it has a new target or QE score",
                                path=self.doc.path, line=unit.line, unit=unit.id,
                                hint="leave protected units alone (the pipeline skips them)")

    def state_attrs(self, edits: list[TargetEdit], others: list[str | None] = ()) -> dict[str, str | None]:
        if not self.h.dialect.writes_state or not edits:
            return {}
        if len(edits) == 1 and not others:
            e = edits[0]
            if e.status_only:  # provenance (state-qualifier) stays as the file has it
                return {"state": STATUS_TO_STATE[e.status]}
            return {"state": STATUS_TO_STATE[e.status], "state-qualifier": ORIGIN_TO_QUALIFIER.get(e.origin)}
        statuses = [e.status for e in edits] + [s for s in others if s]
        status = min(statuses, key=lambda s: STATUS_RANK[s])
        if all(e.status_only for e in edits):
            return {"state": STATUS_TO_STATE[status]}
        quals = {ORIGIN_TO_QUALIFIER.get(e.origin) for e in edits if not e.status_only}
        qual = quals.pop() if len(quals) == 1 else None
        return {"state": STATUS_TO_STATE[status], "state-qualifier": qual}

    def plain(self, tu: TuRec) -> None:
        unit = tu.unit
        content = render(unit.edit.segment, unit.source, unit, self.doc.path, self.nl) \
            if unit.edit is not None and not unit.edit.status_only else None
        attrs = self.state_attrs([unit.edit]) if unit.edit else {}
        holder = tu.target if tu.target is not None else tu.el
        if unit.qe_edit is not None and self.h.dialect.writes_its:
            existing = tu.target.get(f"{{{ITS_NS}}}annotatorsRef") if tu.target is not None else None
            attrs.update(self.its_attrs(holder, unit.qe_edit, existing))
        if tu.target is None:
            if content is None:
                return  # a QE score without any target: nothing to annotate
            tag, name = self.new_target_tag(tu, attrs)
            self.insert_after(tu.segsource if tu.segsource is not None else tu.source, f"{tag}{content}</{name}>")
        elif content is not None:
            self.replace_content(tu.target, content, attrs)
        else:
            self.replace_start(tu.target, attrs)

    def segmented(self, tu: TuRec) -> None:
        xf = self.xf
        contents: dict[str, str] = {}
        mrk_attrs: dict[str, dict[str, str | None]] = {}
        for s in tu.segs:
            u = s.unit
            if u.edit is not None and not u.edit.status_only:
                contents[s.mid] = render(u.edit.segment, u.source, u, self.doc.path, self.nl)
            if u.qe_edit is not None and self.h.dialect.writes_its and (s.tgt is not None or u.edit is not None):
                holder = s.tgt if s.tgt is not None else (tu.target if tu.target is not None else tu.el)
                existing = s.tgt.get(f"{{{ITS_NS}}}annotatorsRef") if s.tgt is not None else None
                mrk_attrs[s.mid] = self.its_attrs(holder, u.qe_edit, existing)
        for s in tu.segs:
            if (s.unit.findings_edit is not None and s.tgt is not None) or s.mid in contents:
                content = self.h.dialect.segment_with_findings(self, tu, s, contents.get(s.mid))
                if content is not None:
                    contents[s.mid] = content
        edits = [s.unit.edit for s in tu.segs if s.unit.edit is not None]
        others = []
        if edits and len(edits) < len(tu.segs):
            current = state_to_status(tu.target.get("state")) if tu.target is not None else None
            others.append(current)
        tattrs = self.state_attrs(edits, others)
        rebuild = tu.target is None or any(s.tgt is None and s.mid in contents for s in tu.segs) \
            or (bool(contents) and self._codes_outside_segments(tu))
        if not rebuild:
            for s in tu.segs:
                if s.mid in contents:
                    self.replace_content(s.tgt, contents[s.mid], mrk_attrs.get(s.mid))
                elif s.mid in mrk_attrs:
                    self.replace_start(s.tgt, mrk_attrs[s.mid])
            if tattrs:
                self.replace_start(tu.target, tattrs)
        else:
            if not contents and tu.target is None:
                return
            # mirror <seg-source>: its markup outside the segments, each segment filled with the new content, the
            # existing target segment, or nothing
            ss = xf.spans[tu.segsource]
            out, pos = [], ss.tag_end
            for s in tu.segs:
                span = xf.spans[s.src]
                out.append(xf.text[pos:span.start])
                if s.tgt is not None:
                    tag, inner = xf.start_tag(s.tgt), xf.inner(s.tgt)
                else:
                    tag, inner = xf.start_tag(s.src), ""
                if s.mid in mrk_attrs:
                    tag = _xml.set_attrs(tag, mrk_attrs[s.mid])
                inner = contents.get(s.mid, inner)
                out.append(f"{open_form(tag)}{inner}</{element_name(tag)}>")
                pos = span.end
            out.append(xf.text[pos:ss.close])
            inner = "".join(out)
            if tu.target is None:
                tag, name = self.new_target_tag(tu, tattrs)
                self.insert_after(tu.segsource, f"{tag}{inner}</{name}>")
            else:
                self.replace_content(tu.target, inner, tattrs)

    def _codes_outside_segments(self, tu: TuRec) -> bool:
        """True when the target holds, outside its ``<mrk mtype="seg">`` s, an inline code that a source segment
        holds inside: a tool (Okapi's SDLXLIFF writer) moved a leading code out of the segment. Writing new
        segment content, which carries the code, would then have it twice; the target is rebuilt from
        ``<seg-source>`` instead."""
        prefix = f"{{{self.h.ns}}}" if self.h.ns else ""
        mrk = prefix + "mrk"
        inside = set()
        for s in tu.segs:
            for el in s.src.iterdescendants():
                if isinstance(el.tag, str):
                    inside.add((el.tag, el.get("id") or el.get("mid") or el.get("rid")))
        if not inside:
            return False

        def outside(el) -> bool:
            for ch in el:
                if not isinstance(ch.tag, str) or (ch.tag == mrk and ch.get("mtype") == "seg"):
                    continue
                if (ch.tag, ch.get("id") or ch.get("mid") or ch.get("rid")) in inside or outside(ch):
                    return True
            return False

        return outside(tu.target)

    # candidates: the targets edits replace
    def _ns_decls(self, el, tu: TuRec) -> dict[str, str]:
        """xmlns declarations in scope at ``el`` but not at the trans-unit: what a copy of ``el``'s content needs
        when it is written elsewhere in the trans-unit."""
        outer = tu.el.nsmap or {}
        return {("xmlns" if p is None else f"xmlns:{p}"): uri for p, uri in (el.nsmap or {}).items()
                if outer.get(p) != uri}

    def _has_previous(self, tu: TuRec, mid: str | None, previous: Segment) -> bool:
        """An ``alt-trans alttranstype="previous-version"`` with this mid and this target is already there."""
        want = [p if isinstance(p, str) else ("code", p.xml) for p in previous.parts]
        found = self._previous.get(tu.el)
        if found is None:  # read once per trans-unit, not once per segment (segments x alt-trans)
            found = self._previous[tu.el] = {}
            reader = _ContentReader(self.xf, self.h.ns)
            prefix = f"{{{self.h.ns}}}" if self.h.ns else ""
            for alt in tu.el:
                if alt.tag != prefix + "alt-trans" or alt.get("alttranstype") != "previous-version":
                    continue
                t = alt.find(prefix + "target")
                if t is not None:
                    found.setdefault(alt.get("mid"), []).append(
                        [p if isinstance(p, str) else ("code", p.xml) for p in reader.segment(t).parts])
        return want in found.get(mid, ())

    def previous_versions(self, tu: TuRec) -> None:
        """``<alt-trans alttranstype="previous-version">`` for every edit that replaces a target: a copy of the
        source and the replaced target (codes verbatim), after the trans-unit's last XLIFF element (before
        extension elements such as ``sdl:seg-defs``, as the schema orders them)."""
        if tu.segs is None:
            edit = tu.unit.edit
            if edit is None or edit.replaced is None:
                return
            items = [(tu.unit, None)]
        else:
            items = [(s.unit, s) for s in tu.segs]
        items = [(u, s, u.edit.replaced) for u, s in items
                 if u.edit is not None and not u.edit.status_only and u.edit.replaced is not None]
        if not items:
            return
        xf = self.xf
        src_tag = xf.start_tag(tu.source)
        sname = element_name(src_tag)
        p = sname[: -len("source")] if sname.endswith("source") else ""
        ns_prefix = f"{{{self.h.ns}}}" if self.h.ns else ""
        xliff_children = {ns_prefix + n for n in ("source", "seg-source", "target", "context-group", "count-group",
                                                  "prop-group", "note", "alt-trans")}
        anchor = tu.source
        for ch in tu.el:
            if ch.tag in xliff_children:
                anchor = ch
        lang = self.h.dialect.new_target_lang(self.h, tu, tu.file.target_language or self.doc.target_lang)
        nsmap = {("xmlns" if k is None else f"xmlns:{k}"): v for k, v in (tu.el.nsmap or {}).items()}
        for unit, seg, previous in items:
            mid = seg.mid if seg is not None else None
            if self._has_previous(tu, mid, previous):
                continue
            attrs: dict[str, str | None] = {"mid": mid, "alttranstype": "previous-version",
                                            "origin": unit.origin or "previous-version"}
            if unit.match_score is not None:
                attrs["match-quality"] = _num(unit.match_score)
            if seg is None:
                source = xf.outer(tu.source)
                old_target = tu.target
            else:
                sattrs: dict[str, str | None] = dict(self._ns_decls(seg.src, tu))
                if seg.src.get(XML_SPACE) is not None:
                    sattrs["xml:space"] = seg.src.get(XML_SPACE)
                source = f"{_xml.set_attrs(f'<{p}source>', sattrs)}{xf.inner(seg.src)}</{p}source>"
                old_target = seg.tgt if seg.tgt is not None else tu.target
            tattrs: dict[str, str | None] = {}
            if lang:
                tattrs["xml:lang"] = lang
            space_from = old_target if old_target is not None else tu.source
            if space_from.get(XML_SPACE) is not None:
                tattrs["xml:space"] = space_from.get(XML_SPACE)
            if old_target is not None:
                tattrs.update(self._ns_decls(old_target, tu))
            content = "".join(escape_content(part).replace("\n", self.nl) if isinstance(part, str) else part.xml
                              for part in previous.parts)
            target = f"{_xml.set_attrs(f'<{p}target>', tattrs)}{content}</{p}target>"
            markup = f"{_xml.set_attrs(f'<{p}alt-trans>', attrs)}{source}{target}</{p}alt-trans>"
            decls = "".join(f' {k}="{_xml.escape_attr(v)}"' for k, v in nsmap.items())
            try:
                etree.fromstring(f"<w{decls}>{markup}</w>".encode("utf-8"))
            except etree.XMLSyntaxError as exc:
                raise CodeMismatchError(f"the previous target's codes do not nest ({exc.msg}); not written",
                                        path=self.doc.path, line=unit.line, unit=unit.id,
                                        hint="pass the target as loaded (unit.target) as previous=") from None
            self.insert_after(anchor, markup)

    # findings: <note from="tower-cat">
    def xliff_anchor(self, tu: TuRec):
        """The trans-unit's last XLIFF child: new notes and alt-trans go after it, before extension elements."""
        ns_prefix = f"{{{self.h.ns}}}" if self.h.ns else ""
        names = {ns_prefix + n for n in ("source", "seg-source", "target", "context-group", "count-group",
                                         "prop-group", "note", "alt-trans")}
        anchor = tu.source
        for ch in tu.el:
            if ch.tag in names:
                anchor = ch
        return anchor

    def remove_element(self, el) -> None:
        """Cut an element out, with the line break and indentation before it when it sits on a line of its own."""
        self.sp.replace(*self.xf.removal_range(el), "")

    def finding_notes(self, tu: TuRec) -> None:
        """Replace tower-cat's notes of the units that carry findings (only those segments' notes in a segmented
        trans-unit) with one ``<note from="tower-cat" priority=… annotates="target">`` per finding."""
        items = [(s.unit, s.mid) for s in tu.segs] if tu.segs is not None else [(tu.unit, None)]
        items = [(u, mid) for u, mid in items if u.findings_edit is not None]
        if not items:
            return
        segmented = tu.segs is not None
        mids = {mid for _, mid in items}
        ns_prefix = f"{{{self.h.ns}}}" if self.h.ns else ""
        for ch in tu.el:
            if ch.tag == ns_prefix + "note" and ch.get("from") == FINDINGS_AUTHOR:
                _, seg = Finding.parse("".join(ch.itertext()))
                if not segmented or seg in mids:
                    self.remove_element(ch)
        name = element_name(self.xf.start_tag(tu.source))
        p = name[: -len("source")] if name.endswith("source") else ""
        notes = []
        for unit, mid in items:
            for f in unit.findings_edit:
                attrs = {"from": FINDINGS_AUTHOR, "priority": "1" if f.severity == "error" else "5",
                         "annotates": "target"}
                notes.append(f"{_xml.set_attrs(f'<{p}note>', attrs)}{escape_content(f.text(mid))}</{p}note>")
        anchor = self.xliff_anchor(tu)
        for markup in notes:  # same insertion point: the splicer keeps them in insertion order
            self.insert_after(anchor, markup)

    def run(self) -> str:
        for tu in self.h.tus:
            self.write_tu(tu)
        self.h.dialect.finish(self)
        for f in self.h.files:
            self.file_language(f)
        self.declarations()
        return self.sp.result()

    def forget_elements(self) -> None:
        """Drop what is cached per trans-unit element (a streaming writer frees them window by window)."""
        self._previous.clear()

    def write_tu(self, tu: TuRec) -> None:
        """The edits of one trans-unit's changed units (none when nothing changed)."""
        if tu.segs is None:
            u = tu.unit
            if not u.changed:
                return
            self.check_unit(u)
            self.plain(tu)
        else:
            units = tu.units()
            if not any(u.changed for u in units):
                return
            for u in units:
                if u.changed:
                    self.check_unit(u)
            self.segmented(tu)
        self.previous_versions(tu)  # after a new target, before the dialect's extension elements
        if self.h.dialect.notes_for_findings(tu):
            self.finding_notes(tu)
        self.h.dialect.write_tu(self, tu)

    def file_language(self, f: FileRec) -> None:
        """``target-language`` on a ``<file>`` that has none, when the document's target language was set."""
        lang = self.doc.target_lang
        if lang and lang != self.h.target_lang and not f.target_language:
            self.replace_start(f.el, {"target-language": lang})

    def declarations(self) -> None:
        """Namespace declarations new attributes need (ITS), on the root element."""
        if self.declare:
            root = self.xf.root
            changes: dict[str, str | None] = {f"xmlns:{p}": uri for p, uri in self.declare.items()}
            if ITS_NS in self.declare.values() and root.get(f"{{{ITS_NS}}}version") is None:
                prefix = next(p for p, uri in self.declare.items() if uri == ITS_NS)
                changes[f"{prefix}:version"] = "2.0"
            self.replace_start(root, changes)


def save(doc: Document, path: Path) -> None:
    h = doc.handle
    if not isinstance(h, Handle):
        raise TowerCatError("this document was not loaded by the XLIFF 1.2 reader", path=path)
    with _xml.gc_paused():
        text = Writer(doc).run()
    _xml.atomic_write(Path(path), h.xf.encode(text))
