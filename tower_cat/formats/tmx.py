"""TMX 1.4b (and 1.1): a Document view for round trips, a streaming reader for TM import, a streaming writer
for TM export.

Document view (``load`` / ``save``)
    A unit per ``<tu>`` (id = ``tuid``, or ``tu<n>`` counting from 1; a repeated tuid gets ``#2``, ``#3``…).
    Source = the ``<tuv>`` whose ``xml:lang`` (TMX 1.1: ``lang``) equals the tu's or header's ``srclang``
    (case-insensitive; the first tuv when srclang is ``*all*`` or none matches). Target = the tuv of
    ``doc.target_lang``: ``load(path, target_lang=None)`` picks the first other language of the file. Inline
    codes as in XLIFF 1.2: ``<bpt>``/``<ept>`` (id = ``x``, else ``i``) are OPEN/CLOSE, ``<it pos=begin|end>`` an
    isolated OPEN/CLOSE, ``<ph>``/``<ut>`` STANDALONE, ``<hi>`` an OPEN (start tag) / CLOSE (end tag) pair around
    translatable text; ``xml`` is the markup verbatim (``<sub>`` text stays inside its code). tu/tuv ``<prop>`` s
    go to ``unit.meta`` (``props``, ``source_props``, ``target_props``); ``<note>`` s to ``unit.notes``.
    ``save`` splices only the target ``<seg>`` content of edited units (or adds ``<tuv xml:lang=…><seg>…</seg>
    </tuv>`` after the last tuv, laid out like it); TMX has no status or score attributes, so statuses,
    provenance and QE scores are not written. An unchanged document is saved byte for byte.

Streaming reader (``iter_tmx``)
    ``for tu in iter_tmx(path): ...`` yields ``TmxUnit`` s one by one with lxml ``iterparse`` and clears each
    ``<tu>`` after use, so memory stays bounded for a TMX of millions of units. Same safety as ``_xml.parse``:
    no entity resolution, no DTD, no network; a DOCTYPE that declares entities is refused. Code ``xml`` here is
    lxml's serialisation of the element (same meaning as the file's markup, not necessarily the same bytes).

Streaming writer (``write_tmx``)
    ``write_tmx(path, units, srclang)`` writes a TMX 1.4b file while iterating (UTF-8, a temporary file renamed
    into place at the end). Codes that are TMX markup are written verbatim; codes from other formats become
    ``<bpt>``/``<ept>`` (pairs), ``<it>`` (isolated) or ``<ph>`` with the original markup escaped as content.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from lxml import etree

from tower_cat.document import CodeKind, Document, InlineCode, Issue, Part, Segment, Unit, UnitContext
from tower_cat.errors import CodeMismatchError, FormatError
from tower_cat.formats import _xml

FORMAT = "tmx"
XML_LANG = f"{{{_xml.XML_NS}}}lang"
CODE_TAGS = ("bpt", "ept", "it", "ph", "hi", "ut")
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def sniff(head: bytes) -> bool:
    return re.search(rb"<tmx[\s>]", head) is not None


def _lang(el: etree._Element) -> str | None:
    return el.get(XML_LANG) or el.get("lang")


def _same_lang(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


def escape_content(s: str) -> str:
    return _xml.escape_text(_INVALID_XML_CHARS.sub("", s)).replace("\r", "&#13;")


# --- seg content -> Segment ----------------------------------------------------------------------------------------

def _segment(seg: etree._Element, raw_of, path: Path | None = None) -> Segment:
    """The content of a ``<seg>`` as a Segment. ``raw_of(el, part)`` gives an element's markup: part is "outer",
    "start" or "end".

    Code ids: ``x`` when present (it links the codes of the tuvs of one tu); ``<bpt>``/``<ept>`` otherwise pair
    by ``i``; other codes without ``x`` get an id derived from the element (tag, attributes, content), so the
    same code has the same id in every tuv even when a translation reorders codes.
    """
    parts: list[Part] = []
    seen: dict[str, int] = {}
    i_to_id: dict[str, str] = {}
    counter = [0]

    def derived(el: etree._Element, local: str) -> str:
        key = local + "\x00" + "\x00".join(f"{k}={v}" for k, v in sorted(el.attrib.items()))
        if local != "hi":
            key += "\x00" + "".join(el.itertext())
        base = f"{local}-{hashlib.blake2s(key.encode('utf-8'), digest_size=3).hexdigest()}"
        seen[base] = seen.get(base, 0) + 1
        return base if seen[base] == 1 else f"{base}.{seen[base]}"

    def walk(el: etree._Element, depth: int = 0) -> None:
        if depth > _xml.MAX_DEPTH:  # the streaming reader has no _xml.parse to check it
            _xml.check_depth(depth, path, el.sourceline)
        if el.text:
            if len(el.text) > _xml.MAX_TEXT_CHARS:
                _xml.check_text(len(el.text), path, el.sourceline)
            parts.append(el.text)
        for child in el:
            tag = child.tag
            if not isinstance(tag, str):
                counter[0] += 1
                kind = "comment" if isinstance(child, etree._Comment) else "pi"
                parts.append(InlineCode(f"{kind}{counter[0]}", CodeKind.STANDALONE,
                                        etree.tostring(child, with_tail=False, encoding="unicode"), tag=kind))
            else:
                local = _local(tag)
                get = child.get
                x = get("x")
                if local == "hi":
                    cid = x or derived(child, local)
                    display = get("type") or "hi"
                    if len(child) == 0 and not child.text and raw_of(child, "outer").endswith("/>"):
                        parts.append(InlineCode(cid, CodeKind.STANDALONE, raw_of(child, "outer"), "hi", display))
                    else:
                        parts.append(InlineCode(cid, CodeKind.OPEN, raw_of(child, "start"), "hi", display))
                        walk(child, depth + 1)
                        parts.append(InlineCode(cid, CodeKind.CLOSE, raw_of(child, "end"), "hi", display))
                else:
                    raw = raw_of(child, "outer")
                    display = _display(child)
                    isolated = False
                    if local == "bpt":
                        i = get("i") or ""
                        cid = x or i or derived(child, local)
                        i_to_id[i] = cid
                        kind = CodeKind.OPEN
                    elif local == "ept":
                        i = get("i") or ""
                        cid = i_to_id.get(i) or i or derived(child, local)
                        kind = CodeKind.CLOSE
                    elif local == "it":
                        cid = x or derived(child, local)
                        kind = {"begin": CodeKind.OPEN, "end": CodeKind.CLOSE}.get(get("pos") or "",
                                                                                 CodeKind.STANDALONE)
                        isolated = True
                    else:  # ph, ut, and anything unknown: one standalone code
                        cid = x or derived(child, local)
                        kind = CodeKind.STANDALONE
                    parts.append(InlineCode(cid, kind, raw, tag=local, display=display, isolated=isolated))
            if child.tail:
                if len(child.tail) > _xml.MAX_TEXT_CHARS:
                    _xml.check_text(len(child.tail), path, child.sourceline)
                parts.append(child.tail)

    walk(seg)
    return Segment(parts)


def _display(el: etree._Element) -> str:
    text = "".join(el.itertext())
    return (text[:40] if text else (el.get("type") or ""))


# --- Document view ---------------------------------------------------------------------------------------------------

@dataclass
class _TuRec:
    el: etree._Element
    tuvs: list[etree._Element]
    source: etree._Element | None
    target: etree._Element | None


@dataclass
class TmxHandle:
    xf: _xml.XmlFile
    srclang: str | None
    uses_xml_lang: bool
    tus: dict[str, _TuRec] = field(default_factory=dict)


def _local(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[1] if tag[:1] == "{" else tag


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if c.tag == name or _local(c.tag) == name]


def _props(el: etree._Element) -> list[tuple[str, str]]:
    return [(p.get("type") or "", p.text or "") for p in _children(el, "prop")]


def _notes(el: etree._Element) -> list[str]:
    return [n.text or "" for n in _children(el, "note")]


def _root_and_body(root: etree._Element, path: Path) -> tuple[etree._Element | None, etree._Element]:
    if etree.QName(root).localname != "tmx":
        raise FormatError(f"the root element is <{etree.QName(root).localname}>, not <tmx>", path=path,
                          line=root.sourceline)
    header = next(iter(_children(root, "header")), None)
    body = next(iter(_children(root, "body")), None)
    if body is None:
        raise FormatError("<tmx> has no <body>", path=path, line=root.sourceline)
    return header, body


def load(path: Path, strict: bool = True, target_lang: str | None = None) -> Document:
    """Read a TMX file as a Document: source = srclang, target = ``target_lang`` (default: the first other
    language in the file)."""
    with _xml.gc_paused():  # as in xliff12: the collector's passes over many small objects cost more than the load
        return _load(Path(path), strict, target_lang)


def _load(path: Path, strict: bool, target_lang: str | None) -> Document:
    xf = _xml.parse(path)
    header, body = _root_and_body(xf.root, path)
    issues: list[Issue] = []
    srclang = header.get("srclang") if header is not None else None
    if header is None:
        issues.append(Issue("warning", "no <header>", line=xf.root.sourceline))
    elif not srclang:
        issues.append(Issue("warning", "the header has no srclang; the first tuv of each tu is the source",
                            line=header.sourceline))
    tus = _children(body, "tu")
    _xml.check_units(len(tus), path, body.sourceline, "<tu> elements")
    uses_xml_lang = True
    recs: list[tuple[etree._Element, list[etree._Element], str | None]] = []
    langs: list[str] = []
    seen_langs: set[str] = set()
    for tu in tus:
        tuvs = _children(tu, "tuv")
        tu_src = tu.get("srclang") or srclang
        for tuv in tuvs:
            lang = _lang(tuv)
            if lang is None:
                issues.append(Issue("error", "<tuv> without xml:lang", line=tuv.sourceline))
                continue
            if tuv.get(XML_LANG) is None:
                uses_xml_lang = False
            if not _children(tuv, "seg"):
                issues.append(Issue("error", "<tuv> without <seg>", line=tuv.sourceline))
        recs.append((tu, tuvs, tu_src))
        src_tuv = _pick_source(tuvs, tu_src)
        for tuv in tuvs:
            lang = _lang(tuv)
            if tuv is not src_tuv and lang and lang.lower() not in seen_langs \
                    and not (src_tuv is not None and _same_lang(lang, _lang(src_tuv))):
                langs.append(lang)
                seen_langs.add(lang.lower())  # a set: a file with a language per tu must not be quadratic
    if target_lang is None and langs:
        target_lang = langs[0]
    handle = TmxHandle(xf=xf, srclang=srclang, uses_xml_lang=uses_xml_lang)
    raw_of = _raw_getter(xf)
    units: list[Unit] = []
    used: dict[str, int] = {}
    for n, (tu, tuvs, tu_src) in enumerate(recs):
        tuid = tu.get("tuid")
        base = tuid or f"tu{n + 1}"
        used[base] = used.get(base, 0) + 1
        uid = base if used[base] == 1 else f"{base}#{used[base]}"
        src_tuv = _pick_source(tuvs, tu_src)
        if src_tuv is None:
            issues.append(Issue("error", "<tu> without <tuv>", line=tu.sourceline, unit=uid))
            continue
        if tu_src and tu_src != "*all*" and _primary(_lang(src_tuv)) != _primary(tu_src):
            issues.append(Issue("warning", f"no tuv in the source language {tu_src}; the first tuv is the source",
                                line=tu.sourceline, unit=uid))
        tgt_tuv = next((t for t in tuvs if t is not src_tuv and _same_lang(_lang(t), target_lang)), None)
        src_seg = next(iter(_children(src_tuv, "seg")), None)
        tgt_seg = next(iter(_children(tgt_tuv, "seg")), None) if tgt_tuv is not None else None
        handle.tus[uid] = _TuRec(tu, tuvs, src_tuv, tgt_tuv)
        notes = _notes(tu) + _notes(src_tuv) + (_notes(tgt_tuv) if tgt_tuv is not None else [])
        props = _props(tu)
        meta: dict[str, Any] = {
            "tuid": tuid, "index": n, "props": props, "source_props": _props(src_tuv),
            "target_props": _props(tgt_tuv) if tgt_tuv is not None else [],
            "source_lang": _lang(src_tuv), "langs": [_lang(t) for t in tuvs],
            "attrs": {k: v for k, v in tu.attrib.items()},
        }
        context = UnitContext(resname=tuid)
        ctx = [v for t, v in props if t == "x-context"]
        if ctx:
            context.msgctxt = ctx[0]
        units.append(Unit(
            id=uid,
            source=_segment(src_seg, raw_of, path) if src_seg is not None else Segment(),
            target=_segment(tgt_seg, raw_of, path) if tgt_seg is not None else None,
            notes=notes, context=context, line=tu.sourceline, meta=meta,
        ))
    source_lang = srclang if srclang and srclang != "*all*" else (units[0].meta["source_lang"] if units else None)
    doc = Document(path=path, format=FORMAT, units=units, source_lang=source_lang, target_lang=target_lang,
                   issues=issues, handle=handle)
    errors = [i for i in issues if i.severity == "error"]
    if strict and errors:
        raise FormatError(errors[0].message, path=path, line=errors[0].line, unit=errors[0].unit)
    return doc


def _primary(lang: str | None) -> str:
    return re.split(r"[-_]", lang or "", maxsplit=1)[0].lower()


def _pick_source(tuvs: list[etree._Element], srclang: str | None) -> etree._Element | None:
    """The tuv in srclang; else one of the same language (EN-US for srclang EN-GB); else the first."""
    if srclang and srclang != "*all*":
        for t in tuvs:
            if _same_lang(_lang(t), srclang):
                return t
        for t in tuvs:
            if _primary(_lang(t)) == _primary(srclang):
                return t
    return tuvs[0] if tuvs else None


def _raw_getter(xf: _xml.XmlFile):
    def raw_of(el: etree._Element, part: str) -> str:
        if part == "start":
            return xf.start_tag(el)
        if part == "end":
            return xf.end_tag(el)
        return xf.outer(el)

    return raw_of


def render(segment: Segment, source: Segment, unit: Unit | None = None, path: Path | None = None,
           newline: str = "\n") -> str:
    """A target segment as ``<seg>`` content: escaped text plus the source's codes, verbatim. A code the source
    does not have raises ``CodeMismatchError``; ``<hi>`` halves must nest. Line breaks in the text are written
    as ``newline`` (CRLF files keep CRLF)."""
    codes = {c.key: c for c in source.codes}
    out: list[str] = []
    stack: list[str] = []
    uid = unit.id if unit else None
    line = unit.line if unit else None
    for part in segment.parts:
        if isinstance(part, str):
            text = escape_content(part)
            out.append(text.replace("\n", newline) if newline != "\n" and "\n" in text else text)
            continue
        code = codes.get(part.key)
        if code is None:
            raise CodeMismatchError(f"the target has inline code {part.kind.value} {part.id!r} that the source does "
                                    "not have; not written", path=path, line=line, unit=uid,
                                    hint="repair the codes (tower_cat.codes) before saving")
        if code.tag == "hi" and code.kind is not CodeKind.STANDALONE:
            if code.kind is CodeKind.OPEN:
                stack.append(code.id)
            elif not stack or stack.pop() != code.id:
                raise CodeMismatchError(f"<hi> {code.id!r} closes out of order in the target; not written",
                                        path=path, line=line, unit=uid)
        out.append(code.xml)
    if stack:
        raise CodeMismatchError(f"<hi> {stack[-1]!r} is opened but never closed in the target; not written",
                                path=path, line=line, unit=uid)
    return "".join(out)


def save(doc: Document, path: Path) -> None:
    """Write the TMX back: only the target ``<seg>`` of edited units changes (or a new target ``<tuv>``)."""
    h: TmxHandle = doc.handle
    xf = h.xf
    sp = _xml.Splicer(xf.text)
    lang_attr = "xml:lang" if h.uses_xml_lang else "lang"
    nl = xf.newline()
    for unit in doc.units:
        if unit.edit is None:
            continue
        rec = h.tus.get(unit.id)
        if rec is None:
            raise FormatError("unit not from this file", path=path, unit=unit.id)
        content = render(unit.edit.segment, unit.source, unit, path, nl)
        if rec.target is not None and _same_lang(_lang(rec.target), doc.target_lang):
            seg = _children(rec.target, "seg")[0]
            span = xf.span(seg)
            if span.empty:
                tag = xf.start_tag(seg)
                sp.replace(span.start, span.end, tag[:-2].rstrip() + ">" + content + "</seg>")
            else:
                sp.replace(span.tag_end, span.close, content)
        else:
            if not doc.target_lang:
                raise FormatError("no target language: set doc.target_lang before saving new targets", path=path,
                                  unit=unit.id)
            sp.insert(xf.span(rec.tuvs[-1]).end, _new_tuv(xf, rec, lang_attr, doc.target_lang, content))
    text = sp.result() if sp else xf.text
    _xml.atomic_write(path, xf.encode(text))


def _ws(s: str) -> str | None:
    return s if s.strip() == "" else None


def _new_tuv(xf: _xml.XmlFile, rec: _TuRec, lang_attr: str, lang: str, content: str) -> str:
    """``<tuv lang><seg>content</seg></tuv>`` laid out like the tu's last tuv, with the whitespace before it."""
    last = rec.tuvs[-1]
    span = xf.span(last)
    prev = last.getprevious()
    while prev is not None and not isinstance(prev.tag, str):
        prev = prev.getprevious()
    before_start = xf.span(prev).end if prev is not None else xf.span(rec.el).tag_end
    sep = _ws(xf.text[before_start:span.start])
    if sep is None or sep == "":
        sep = ""
    seg = _children(last, "seg")
    inner_before = inner_after = ""
    if seg:
        s = xf.span(seg[0])
        kids = [c for c in last if isinstance(c.tag, str)]
        if kids and kids[0] is seg[0]:
            inner_before = _ws(xf.text[span.tag_end:s.start]) or ""
        inner_after = _ws(xf.text[s.end:span.close]) or ""
    return (f'{sep}<tuv {lang_attr}="{_xml.escape_attr(lang)}">{inner_before}<seg>{content}</seg>{inner_after}'
            f'</tuv>')


# --- streaming reader ------------------------------------------------------------------------------------------------

@dataclass
class TmxUnit:
    """One ``<tu>`` as the streaming reader yields it and the writer accepts it.

    ``variants`` maps each language (as written in the file) to its segment; when a tu has two tuvs of one
    language the first is kept. ``props`` and ``notes`` are the tu's own; ``variant_props`` /
    ``variant_notes`` those of each tuv. ``attrs`` holds the other tu attributes (creationdate, changedate,
    usagecount, ...).
    """

    index: int  # 0-based position of the tu in the file
    line: int | None
    tuid: str | None
    variants: dict[str, Segment]
    srclang: str | None = None
    props: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    variant_props: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    variant_notes: dict[str, list[str]] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)

    def lang(self, code: str | None) -> str | None:
        """The variant key matching ``code`` case-insensitively (``en-us`` finds ``en-US``)."""
        if code is None:
            return None
        for k in self.variants:
            if k.lower() == code.lower():
                return k
        return None

    @property
    def source(self) -> Segment | None:
        """The segment in ``srclang`` (the first variant when srclang is ``*all*`` or absent)."""
        key = self.lang(self.srclang) if self.srclang and self.srclang != "*all*" else None
        if key is None:
            return next(iter(self.variants.values()), None)
        return self.variants[key]

    def get(self, lang: str) -> Segment | None:
        key = self.lang(lang)
        return self.variants[key] if key is not None else None


def _head_text(path: Path) -> tuple[str, str]:
    """The first 64 KiB decoded (enough to see the XML declaration and any DOCTYPE) and the file's encoding.
    A declared encoding that is not ASCII-compatible (UTF-7, EBCDIC) is refused, as by ``_xml.parse``."""
    with open(path, "rb") as fh:
        raw = fh.read(65536)
    for mark, enc in _xml._BOMS:
        if raw.startswith(mark):
            return raw[len(mark):].decode(enc, errors="ignore"), enc
    if raw[:4] in (b"<\x00\x00\x00", b"\x00\x00\x00<"):
        enc = "utf-32-le" if raw[0] else "utf-32-be"
        return raw.decode(enc, errors="ignore"), enc
    if raw[:2] == b"<\x00":
        return raw.decode("utf-16-le", errors="ignore"), "utf-16-le"
    if raw[:2] == b"\x00<":
        return raw.decode("utf-16-be", errors="ignore"), "utf-16-be"
    m = _xml._DECL_ENCODING.match(raw[:400])
    enc = _xml.check_encoding(m.group(1).decode("ascii"), path, raw[:m.start(1)].count(b"\n") + 1) if m else "utf-8"
    return raw.decode("latin-1"), enc


_TU_OR_SKIP = re.compile(r"<!--|<!\[CDATA\[|<(?:[A-Za-z_][\w.-]*:)?tu(?=[\s/>]|$)")


def _tu_index_at(path: Path, encoding: str, line: int | None, column: int | None) -> int | None:
    """The 0-based index of the ``<tu>`` a syntax error at (line, column) lies in or after: the number of
    ``<tu`` start tags before that position (comments and CDATA skipped), minus one (None when there is none).
    Counted in the file's text, line by line in constant memory, so the answer does not depend on how far lxml's
    streaming parser had read when it met the error."""
    if not line:
        return None
    count = 0
    skip_to = None  # "-->" or "]]>" while inside a comment or CDATA section
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        for n, text in enumerate(fh, 1):
            if n == line and column:
                text = text[:max(column - 1, 0)]
            pos = 0
            while True:
                if skip_to is not None:
                    end = text.find(skip_to, pos)
                    if end < 0:
                        break
                    pos, skip_to = end + 3, None
                    continue
                m = _TU_OR_SKIP.search(text, pos)
                if m is None:
                    break
                token = m.group(0)
                if token == "<!--":
                    skip_to = "-->"
                elif token.startswith("<!["):
                    skip_to = "]]>"
                else:
                    count += 1
                pos = m.end()
            if n >= line:
                break
    return count - 1 if count else None


def _serialized(el: etree._Element, part: str) -> str:
    if part == "outer":
        return etree.tostring(el, with_tail=False, encoding="unicode")
    name = el.prefix + ":" + etree.QName(el).localname if el.prefix else etree.QName(el).localname
    if part == "end":
        return f"</{name}>"
    attrs = "".join(f' {_attr_name(el, k)}="{_xml.escape_attr(v)}"' for k, v in el.attrib.items())
    return f"<{name}{attrs}>"


def _attr_name(el: etree._Element, key: str) -> str:
    if key.startswith("{"):
        ns, local = key[1:].split("}", 1)
        if ns == _xml.XML_NS:
            return f"xml:{local}"
        for p, uri in (el.nsmap or {}).items():
            if uri == ns and p:
                return f"{p}:{local}"
    return key


def iter_tmx(path: str | Path) -> Iterator[TmxUnit]:
    """Yield the ``<tu>`` s of a TMX file one at a time, in file order, in bounded memory.

    Raises ``FormatError`` (file, line, tu index) for a malformed file or a tu without usable tuvs, and
    ``UnsafeXMLError`` for a DOCTYPE that declares entities.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError("no such file", path=path)
    head, encoding = _head_text(path)
    _xml.check_doctype(head, path)
    m = _FIRST_ELEMENT.search(_PROLOG_NOISE.sub("", head))
    if m and _local(m.group(1).split(":")[-1]) != "tmx":
        raise FormatError(f"the root element is <{m.group(1)}>, not <tmx>", path=path,
                          line=head.count("\n", 0, head.find("<" + m.group(1))) + 1)
    srclang: str | None = None
    index = 0
    with open(path, "rb") as fh:  # libxml2's push parser does not detect UTF-32 by its BOM: name it
        utf32_bom = fh.read(4) in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")
    context = etree.iterparse(str(path), events=("end",), tag=("header", "tu", "{*}header", "{*}tu"),
                              encoding="UTF-32" if utf32_bom else None,
                              resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                              huge_tree=True, remove_blank_text=False, remove_comments=False)
    try:
        for _, el in context:
            parent = el.getparent()
            if _local(el.tag) == "header":
                if parent is not None and parent.getparent() is None:
                    srclang = el.get("srclang")
                    el.clear(keep_tail=False)
                continue
            if parent is None or _local(parent.tag) != "body":
                continue  # a stray <tu> somewhere else: not part of the body
            if index >= _xml.MAX_UNITS:
                _xml.check_units(index + 1, path, el.sourceline, "<tu> elements")
            yield _tu_unit(el, index, srclang, path)
            index += 1
            # free what we have read: this tu and every earlier sibling (comments, whitespace tails)
            el.clear(keep_tail=False)
            while el.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (None, None)
        at = _tu_index_at(path, encoding, line, column)
        where = f" (in tu #{at}, 0-based, or after it)" if at is not None else ""
        raise FormatError(f"not well-formed XML: {exc.msg}{where}", path=path, line=line,
                          unit=f"tu #{at}" if at is not None else None) from None
    finally:
        del context


_PROLOG_NOISE = re.compile(r"<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^\[>]|\[.*?\])*>", re.S)
_FIRST_ELEMENT = re.compile(r"<([A-Za-z_][\w:.-]*)")


def _tu_unit(tu: etree._Element, index: int, srclang: str | None, path: Path) -> TmxUnit:
    variants: dict[str, Segment] = {}
    vprops: dict[str, list[tuple[str, str]]] = {}
    vnotes: dict[str, list[str]] = {}
    tuvs = _children(tu, "tuv")
    if not tuvs:
        raise FormatError("<tu> without <tuv>", path=path, line=tu.sourceline, unit=f"tu #{index}")
    for tuv in tuvs:
        lang = _lang(tuv)
        if not lang:
            raise FormatError("<tuv> without xml:lang", path=path, line=tuv.sourceline, unit=f"tu #{index}")
        segs = _children(tuv, "seg")
        if not segs:
            raise FormatError("<tuv> without <seg>", path=path, line=tuv.sourceline, unit=f"tu #{index}")
        if any(k.lower() == lang.lower() for k in variants):
            continue
        variants[lang] = _segment(segs[0], _serialized, path)
        vprops[lang] = _props(tuv)
        vnotes[lang] = _notes(tuv)
    attrs = {k: v for k, v in tu.attrib.items() if k not in ("tuid", "srclang")}
    return TmxUnit(index=index, line=tu.sourceline, tuid=tu.get("tuid"), variants=variants,
                   srclang=tu.get("srclang") or srclang, props=_props(tu), notes=_notes(tu), variant_props=vprops,
                   variant_notes=vnotes, attrs=attrs)


# --- streaming writer ------------------------------------------------------------------------------------------------

_CODE_ATTRS = {"bpt": ({"i"}, {"i", "x", "type"}), "ept": ({"i"}, {"i"}), "it": ({"pos"}, {"pos", "x", "type"}),
               "ph": (set(), {"x", "type", "assoc"}), "hi": (set(), {"x", "type"}), "ut": (set(), {"x"})}


def _tmx_native(code: InlineCode) -> bool:
    """True when the code's markup is already a valid TMX inline element (so it can be written verbatim)."""
    tag = code.tag
    if tag not in _CODE_ATTRS:
        return False
    xml = code.xml
    if tag == "hi" and code.kind is not CodeKind.STANDALONE:
        if code.kind is CodeKind.CLOSE:
            return xml.strip() == "</hi>"
        xml = xml.rstrip()[:-1] + "/>" if xml.rstrip().endswith(">") and not xml.rstrip().endswith("/>") else xml
    try:
        el = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError:
        return False
    if etree.QName(el).localname != tag or el.prefix or etree.QName(el).namespace:
        return False
    required, allowed = _CODE_ATTRS[tag]
    names = set(el.attrib.keys())
    if not required <= names or not names <= allowed:
        return False
    if tag in ("bpt", "ept", "it", "ph", "ut"):
        return all(etree.QName(c).localname == "sub" for c in el if isinstance(c.tag, str))
    return True


def render_tmx(segment: Segment | str) -> str:
    """A Segment as TMX ``<seg>`` content for export (see the module docstring for how codes are written)."""
    if isinstance(segment, str):
        return escape_content(segment)
    codes = segment.codes
    native = {id(c): _tmx_native(c) for c in codes}
    # i numbers for converted pairs: after any i used by native bpt/ept
    used_i = set()
    for c in codes:
        if native[id(c)] and c.tag in ("bpt", "ept"):
            m = re.search(r'\si\s*=\s*["\'](\d+)', c.xml)
            if m:
                used_i.add(int(m.group(1)))
    next_i = max(used_i, default=0) + 1
    opens = {c.id for c in codes if c.kind is CodeKind.OPEN}
    closes = {c.id for c in codes if c.kind is CodeKind.CLOSE}
    pair_i: dict[str, int] = {}
    out: list[str] = []
    for part in segment.parts:
        if isinstance(part, str):
            out.append(escape_content(part))
            continue
        if native[id(part)]:
            out.append(part.xml)
            continue
        data = escape_content(part.xml)
        if part.kind is CodeKind.STANDALONE:
            out.append(f"<ph>{data}</ph>")
        elif part.id in opens and part.id in closes and not part.isolated:
            if part.id not in pair_i:
                pair_i[part.id] = next_i
                next_i += 1
            tag = "bpt" if part.kind is CodeKind.OPEN else "ept"
            out.append(f'<{tag} i="{pair_i[part.id]}">{data}</{tag}>')
        else:
            pos = "begin" if part.kind is CodeKind.OPEN else "end"
            out.append(f'<it pos="{pos}">{data}</it>')
    return "".join(out)


def _attrs(d: Mapping[str, Any]) -> str:
    return "".join(f' {k}="{_xml.escape_attr(str(v))}"' for k, v in d.items() if v is not None)


def _props_xml(props: Iterable[tuple[str, str]], indent: str) -> str:
    return "".join(f'{indent}<prop type="{_xml.escape_attr(t)}">{escape_content(v)}</prop>\n' for t, v in props)


def _notes_xml(notes: Iterable[str], indent: str) -> str:
    return "".join(f"{indent}<note>{escape_content(n)}</note>\n" for n in notes)


def write_tmx(path: str | Path, units: Iterable[Any], srclang: str, *, creationtool: str = "tower-cat",
              creationtoolversion: str | None = None, datatype: str = "plaintext", segtype: str = "sentence",
              adminlang: str = "en-US", o_tmf: str = "tower-cat", creationdate: str | None = None,
              header_props: Iterable[tuple[str, str]] = (), header_notes: Iterable[str] = ()) -> int:
    """Write a TMX 1.4b file from ``units`` while iterating over them; returns the number of ``<tu>`` written.

    Each unit is a ``TmxUnit`` or anything with a ``variants`` mapping (language -> ``Segment`` or ``str``) and,
    optionally, ``tuid``, ``srclang``, ``props``, ``notes``, ``variant_props``, ``variant_notes`` and ``attrs``
    (written as tu attributes, e.g. ``creationdate``). Variants are written source language first. The file
    is UTF-8 and appears at ``path`` only when complete (temporary file + rename).
    """
    path = Path(path)
    if creationtoolversion is None:
        try:
            from importlib.metadata import version

            creationtoolversion = version("tower-cat")
        except Exception:  # not installed (running from a checkout)
            creationtoolversion = "0"
    if creationdate is None:
        import datetime

        creationdate = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    count = 0
    with _xml.atomic_open(path, "w", encoding="utf-8", newline="\n") as fh:
        header = {"creationtool": creationtool, "creationtoolversion": creationtoolversion,
                  "datatype": datatype, "segtype": segtype, "adminlang": adminlang, "srclang": srclang,
                  "o-tmf": o_tmf, "creationdate": creationdate}
        hp = list(header_props)
        hn = list(header_notes)
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4">\n')
        if hp or hn:
            fh.write(f"  <header{_attrs(header)}>\n{_notes_xml(hn, '    ')}{_props_xml(hp, '    ')}  </header>\n")
        else:
            fh.write(f"  <header{_attrs(header)}/>\n")
        fh.write("  <body>\n")
        for unit in units:
            fh.write(_tu_xml(unit, srclang))
            count += 1
        fh.write("  </body>\n</tmx>\n")
    return count


def _tu_xml(unit: Any, srclang: str) -> str:
    variants: Mapping[str, Segment | str] = getattr(unit, "variants")
    tu_src = getattr(unit, "srclang", None)
    attrs: dict[str, Any] = {"tuid": getattr(unit, "tuid", None)}
    if tu_src and not _same_lang(tu_src, srclang):
        attrs["srclang"] = tu_src
    attrs.update({k: v for k, v in (getattr(unit, "attrs", None) or {}).items() if k not in ("tuid", "srclang")})
    vprops = getattr(unit, "variant_props", None) or {}
    vnotes = getattr(unit, "variant_notes", None) or {}
    src = tu_src if tu_src and tu_src != "*all*" else srclang
    order = sorted(variants, key=lambda lang: 0 if _same_lang(lang, src) else 1)
    out = [f"    <tu{_attrs(attrs)}>\n", _notes_xml(getattr(unit, "notes", None) or (), "      "),
           _props_xml(getattr(unit, "props", None) or (), "      ")]
    for lang in order:
        seg = variants[lang]
        if seg is None:
            continue
        inner = _notes_xml(vnotes.get(lang, ()), "        ") + _props_xml(vprops.get(lang, ()), "        ")
        if inner:
            out.append(f'      <tuv xml:lang="{_xml.escape_attr(lang)}">\n{inner}        <seg>{render_tmx(seg)}</seg>\n'
                       f"      </tuv>\n")
        else:
            out.append(f'      <tuv xml:lang="{_xml.escape_attr(lang)}"><seg>{render_tmx(seg)}</seg></tuv>\n')
    out.append("    </tu>\n")
    return "".join(out)
