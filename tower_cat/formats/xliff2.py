"""XLIFF 2.0 / 2.1 / 2.2 (core namespaces ``urn:oasis:names:tc:xliff:document:2.0`` and ``…:2.2``).

Reading: every ``<segment>`` is a :class:`~tower_cat.document.Unit` (id ``<file id>/<unit id>/<segment id or
1-based index>``); ``<ignorable>`` elements are kept verbatim and are not units. Inline elements become
:class:`~tower_cat.document.InlineCode` with their original markup: ``<pc>`` → OPEN (raw start tag) + CLOSE (raw
end tag), ``<ph/>`` and ``<cp/>`` → STANDALONE, ``<sc/>``/``<ec/>`` → OPEN/CLOSE paired by ``startRef`` (isolated
when the partner is in another segment or ``isolated="yes"``), annotations ``<mrk>``/``<sm/>``/``<em/>`` → codes
too so they survive. ``originalData/data`` referenced by ``dataRef*`` gives the display text.

Validation (``doc.issues``): :mod:`tower_cat.formats.xliff2_rules` checks the core and module schemas and the
processing requirements (ids, references, fragment identifiers, module rules); the loader adds sc/ec and sm/em
pairing, dataRef, languages and reordering, which need its pairing of codes. Deviations real tools produce that
do not change meaning are warnings (e.g. ``<skeleton>`` or ``<originalData>`` out of schema order, ``<ec>``
without ``startRef`` that closes the ``<sc>`` opened just before it in the same element).

Writing goes through :class:`~tower_cat.formats._xml.Splicer`: new ``<target>`` content, ``state``/``subState``,
``trgLang`` on the root, and (for QE scores) an ``<mtc:match type="mt" origin="tower-cat" matchQuality=…>``
translation candidate in the unit; an edit that replaces a target (``TargetEdit.previous``) keeps the old one as
``<mtc:match type="mt" origin="previous-version" subType="tower-cat:previous">``; QA/terminology/QE findings
(``Unit.findings_edit``) are unit notes ``<note id="tc-f<segment index>-<n>" category="tower-cat" priority="1|5"
appliesTo="target">[error] numbers: …</note>`` in ``<notes>`` (created before ``<originalData>``/the first segment
when missing), replacing tower-cat's notes of that segment and nobody else's; on load they go to
``meta["findings"]``, not to the unit's notes. Everything else keeps its bytes. See docs/ARCHITECTURE.md for the
mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from tower_cat.document import (FINDINGS_AUTHOR, CodeKind, Document, Finding, InlineCode, Issue, Segment, Unit,
                                UnitContext)
from tower_cat.errors import CodeMismatchError, FormatError
from tower_cat.formats import _xml, xliff2_rules
from tower_cat.formats._xml import XML_NS, localname, namespace

NS20 = "urn:oasis:names:tc:xliff:document:2.0"
NS22 = "urn:oasis:names:tc:xliff:document:2.2"
CORE_NAMESPACES = (NS20, NS22)
MTC_NS = "urn:oasis:names:tc:xliff:matches:2.0"
SLR_NS = "urn:oasis:names:tc:xliff:sizerestriction:2.0"
ITS_NS = "http://www.w3.org/2005/11/its"

STATES = ("initial", "translated", "reviewed", "final")
# Abstract status (document.STATUSES) -> (state, subState). subState None removes a stale one.
STATE_FOR_STATUS = {
    "new": ("initial", None),
    "needs-review": ("translated", "tower-cat:needs-review"),
    "translated": ("translated", None),
    "reviewed": ("reviewed", None),
    "final": ("final", None),
}
MATCH_ORIGIN = "tower-cat"
PREVIOUS_ORIGIN = "previous-version"  # <mtc:match origin> of a target an edit replaced
PREVIOUS_SUBTYPE = "tower-cat:previous"

_INLINE = {"cp", "ph", "pc", "sc", "ec", "mrk", "sm", "em"}
_XML_LANG = f"{{{XML_NS}}}lang"
_XML_SPACE = f"{{{XML_NS}}}space"
_SNIFF_ROOT = re.compile(
    rb"""^\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*|<!DOCTYPE[^>]*>\s*)*<(?:[\w.-]+:)?xliff\b([^>]*)>""", re.S)
_SIZE_RESTRICTION = re.compile(r"^(?:\*|\d+|\d+,(?:\d+|\*))$")
_INVALID_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NON_REMOVABLE = re.compile(r"""\bcanDelete\s*=\s*["']no["']""")
_XMLNS_ATTR = re.compile(r"""\s(xmlns(?::[\w.-]+)?)\s*=\s*(["'])(.*?)\2""", re.S)
_FINDING_NOTE_ID = re.compile(r"^tc-f(\d+)-\d+$")  # our finding notes: tc-f<segment index>-<n>


def _our_note(note: dict) -> int | None:
    """The segment index of one of our finding notes (None: somebody else's note)."""
    m = _FINDING_NOTE_ID.match(note.get("id") or "")
    return int(m.group(1)) if m and note.get("category") == FINDINGS_AUTHOR else None


def sniff(head: bytes) -> bool:
    m = _SNIFF_ROOT.match(head)
    if not m:
        return False
    attrs = m.group(1)
    if re.search(rb"""(?<![\w:.-])version\s*=\s*["']2\.""", attrs):
        return True
    return re.search(rb"""urn:oasis:names:tc:xliff:document:2\.""", attrs) is not None


# --------------------------------------------------------------------------------------------------- reading


@dataclass
class _Entry:
    """Where one Unit lives in the file."""

    unit: Unit
    segment: etree._Element
    unit_el: etree._Element
    file_id: str
    seg_index: int


@dataclass
class _Handle:
    xf: _xml.XmlFile
    core: str
    entries: list[_Entry] = field(default_factory=list)


class _Loader:
    """Reads the units; :class:`~tower_cat.formats.xliff2_rules.Checker` validates the document first (schema
    structure and the module rules), the loader adds the checks that need its own pairing of codes."""

    def __init__(self, path: Path):
        self.path = path
        self.xf = _xml.parse(path)
        self.root = self.xf.root
        self.core = namespace(self.root)
        self._core_prefix = "{" + self.core + "}"
        self._inline_cache: dict = {}
        self.issues: list[Issue] = []
        self.units: list[Unit] = []
        self.entries: list[_Entry] = []
        self.src_lang: str | None = None
        self.trg_lang: str | None = None
        self.size_unit = "char"

    # -- helpers
    def issue(self, severity: str, message: str, el: etree._Element | None = None, unit: str | None = None) -> None:
        self.issues.append(Issue(severity, message, el.sourceline if el is not None else None, unit))

    def error(self, message: str, el=None, unit=None) -> None:
        self.issue("error", message, el, unit)

    def warn(self, message: str, el=None, unit=None) -> None:
        self.issue("warning", message, el, unit)

    def is_core(self, el, name: str | None = None) -> bool:
        tag = el.tag
        if not isinstance(tag, str) or not tag.startswith(self._core_prefix):
            return False
        return name is None or tag == self._core_prefix + name

    def children(self, el) -> list[etree._Element]:
        return [c for c in el if isinstance(c.tag, str)]

    # -- document
    def run(self) -> Document:
        root = self.root
        if localname(root) != "xliff" or self.core not in CORE_NAMESPACES:
            if localname(root) == "xliff" and self.core.startswith("urn:oasis:names:tc:xliff:document:2."):
                self.warn(f"unknown XLIFF 2 core namespace {self.core!r}; read as XLIFF 2.2", root)
            else:
                raise FormatError(f"not an XLIFF 2 document (root element {root.tag!r})", path=self.path,
                                  line=root.sourceline)
        version = root.get("version")
        if version is not None and not version.startswith("2."):
            self.error(f"version {version!r} is not an XLIFF 2 version", root)
        self.src_lang = root.get("srcLang")
        self.trg_lang = root.get("trgLang")
        xliff2_rules.Checker(root, self.core, self.issue, self.src_lang, self.trg_lang).run()
        files = [c for c in root if self.is_core(c, "file")]
        seen: set[str] = set()
        for f in files:
            fid = f.get("id")
            if fid is not None and fid in seen:
                self.error(f"file id {fid!r} is not unique", f)
            seen.add(fid or "")
            self._file(f)
        return Document(path=self.path, format="xliff2", units=self.units, source_lang=self.src_lang,
                        target_lang=self.trg_lang, issues=self.issues,
                        handle=_Handle(self.xf, self.core, self.entries))

    def _file(self, f) -> None:
        fid = f.get("id") or ""
        self.size_unit = "char"
        notes: list[dict] = []
        for child in self.children(f):
            if namespace(child) == SLR_NS and localname(child) == "profiles":
                prof = child.get("generalProfile", "xliff:codepoints")
                self.size_unit = "char" if prof == "xliff:codepoints" else prof
            elif self.is_core(child, "notes"):
                notes = self._notes(child)
        ids: dict[str, set[str]] = {"unit": set(), "group": set()}
        first = len(self.entries)
        self._container(f, fid, [notes], f.get("translate", "yes") != "no", ids)
        # context: previous / next source within the file
        file_units = [e.unit for e in self.entries[first:]]
        for i, u in enumerate(file_units):
            u.context.previous_source = file_units[i - 1].source.text if i else None
            u.context.next_source = file_units[i + 1].source.text if i + 1 < len(file_units) else None

    def _container(self, el, fid: str, notes_stack: list[list[dict]], translate: bool,
                   ids: dict[str, set[str]]) -> None:
        for child in self.children(el):
            if not (self.is_core(child, "unit") or self.is_core(child, "group")):
                continue
            name = localname(child)
            cid = child.get("id")
            if cid is not None:
                if cid in ids[name]:
                    self.error(f"{name} id {cid!r} is not unique in file {fid!r}", child,
                               cid if name == "unit" else None)
                ids[name].add(cid)
            t = child.get("translate")
            sub_translate = translate if t is None else t != "no"
            if name == "group":
                gnotes = next((self._notes(g) for g in self.children(child) if self.is_core(g, "notes")), [])
                self._container(child, fid, notes_stack + [gnotes], sub_translate, ids)
            else:
                self._unit(child, fid, notes_stack, sub_translate)

    def _notes(self, notes_el) -> list[dict]:
        return [{"id": n.get("id"), "text": "".join(n.itertext()), "appliesTo": n.get("appliesTo"),
                 "category": n.get("category"), "priority": n.get("priority")}
                for n in self.children(notes_el) if self.is_core(n, "note")]

    # -- unit
    def _unit(self, u, fid: str, notes_stack: list[list[dict]], translate: bool) -> None:
        uid = u.get("id") or ""
        notes, data, parts, matches = self._unit_children(u, uid)
        qe_by_ref = self._read_matches(matches, uid)
        sources, targets = self._sides(parts, uid)
        target_seq = self._target_sequence(targets, uid)
        present_sources = [s for s in sources if s is not None]
        src_pairs = self._pairing(present_sources, uid)
        tgt_pairs = self._pairing(target_seq, uid)
        for container in present_sources + target_seq:
            self._check_inline(container, data, uid)
        self._check_reorder(present_sources, target_seq, uid)
        t = u.get("translate")
        self._make_units(u, fid, uid, parts, sources, targets, (src_pairs, tgt_pairs), qe_by_ref,
                         [n for level in notes_stack for n in level] + notes, translate if t is None else t != "no")

    def _unit_children(self, u, uid) -> tuple[list[dict], dict | None, list, list]:
        """The unit's notes, its <data> by id (None without <originalData>), segments/ignorables, <mtc:matches>."""
        notes: list[dict] = []
        data: dict[str, etree._Element] | None = None
        parts: list[etree._Element] = []
        matches: list = []
        for child in self.children(u):
            if self.is_core(child, "notes"):
                notes = self._notes(child)
            elif self.is_core(child, "originalData"):
                data = {} if data is None else data
                for d in self.children(child):
                    did = d.get("id")
                    if not self.is_core(d, "data") or did is None:
                        continue
                    if did in data:
                        self.error(f"data id {did!r} is not unique in <originalData>", d, uid)
                    else:
                        data[did] = d
            elif self.is_core(child, "segment") or self.is_core(child, "ignorable"):
                parts.append(child)
            elif namespace(child) == MTC_NS and localname(child) == "matches":
                matches.append(child)
        seen_ids: set[str] = set()
        for p in parts:
            pid = p.get("id")
            if pid is not None:
                if pid in seen_ids:
                    self.error(f"{localname(p)} id {pid!r} is not unique in the unit", p, uid)
                seen_ids.add(pid)
        return notes, data, parts, matches

    def _read_matches(self, matches: list, uid) -> dict[str, float]:
        """Inline checks inside translation candidates; tower-cat's QE scores by segment id."""
        qe_by_ref: dict[str, float] = {}
        for m in matches:
            for match in self.children(m):
                mdata = None
                for c in self.children(match):
                    if self.is_core(c, "originalData"):
                        mdata = {d.get("id"): d for d in self.children(c) if d.get("id") is not None}
                for c in self.children(match):
                    if self.is_core(c, "source") or self.is_core(c, "target"):
                        self._pairing([c], uid)
                        self._check_inline(c, mdata, uid)
                ref = match.get("ref")
                if ref is not None and match.get("origin") == MATCH_ORIGIN and match.get("type") == "mt":
                    try:
                        qe_by_ref[ref.lstrip("#")] = float(match.get("matchQuality"))
                    except (TypeError, ValueError):
                        pass
        return qe_by_ref

    def _sides(self, parts: list, uid) -> tuple[list, list]:
        """Each part's first <source> and <target> (None when missing), with the checks on the part itself."""
        sources: list[etree._Element | None] = []
        targets: list[etree._Element | None] = []
        for p in parts:
            src = next((c for c in p if self.is_core(c, "source")), None)
            tgt = next((c for c in p if self.is_core(c, "target")), None)
            sources.append(src)
            targets.append(tgt)
            if localname(p) == "segment" and p.get("subState") is not None and p.get("state") is None:
                self.error("subState is used without an explicit state", p, uid)
            self._check_langs(src, tgt, uid)
        return sources, targets

    def _target_sequence(self, targets: list, uid) -> list:
        """The targets in the order the unit's translation reads (``order`` moves a target)."""
        n = len(targets)
        placed: list[tuple[int, int]] = []
        for i, t in enumerate(targets):
            if t is None:
                continue
            order = t.get("order")
            pos = i + 1
            if order is not None:
                if re.fullmatch(r"[0-9]+", order) and 1 <= int(order) <= n:
                    pos = int(order)
                else:
                    self.error(f"target order={order!r} must be an integer between 1 and {n}", t, uid)
            placed.append((pos, i))
        return [targets[i] for _, i in sorted(placed)]

    def _make_units(self, u, fid: str, uid: str, parts: list, sources: list, targets: list, pairs: tuple,
                    qe_by_ref: dict, notes_flat: list[dict], translatable: bool) -> None:
        src_pairs, tgt_pairs = pairs
        max_length = None
        sr = u.get(f"{{{SLR_NS}}}sizeRestriction")
        if sr and _SIZE_RESTRICTION.match(sr.strip()):
            last = sr.strip().split(",")[-1]
            max_length = int(last) if re.fullmatch(r"[0-9]+", last) else None
        file_el = u
        while file_el is not None and not self.is_core(file_el, "file"):
            file_el = file_el.getparent()
        file_name = (file_el.get("original") or fid) if file_el is not None else fid
        n_segments = sum(1 for p in parts if localname(p) == "segment")
        ours = [(_our_note(n), n) for n in notes_flat]
        notes_flat = [n for i, n in ours if i is None]
        seg_index = 0
        for i, p in enumerate(parts):
            if localname(p) != "segment":
                continue
            seg_index += 1
            src, tgt = sources[i], targets[i]
            sid = p.get("id")
            unit_id = f"{fid}/{uid}/{sid if sid is not None else seg_index}"
            source = self._segment(src, src_pairs) if src is not None else Segment()
            target = self._segment(tgt, tgt_pairs) if tgt is not None else None
            state = p.get("state")
            unit = Unit(
                id=unit_id, source=source, target=target, state=state,
                notes=[n["text"] for n in notes_flat],
                context=UnitContext(file=file_name, resname=u.get("name") or uid),
                final=state == "final", translatable=translatable, max_length=max_length,
                size_unit=self.size_unit if max_length is not None else None,
                line=p.sourceline,
                meta={"file_id": fid, "unit_id": uid, "segment_id": sid, "segment_index": seg_index,
                      "subState": p.get("subState"), "canResegment": p.get("canResegment"),
                      "notes": notes_flat, "segments_in_unit": n_segments},
            )
            if sid is not None and sid in qe_by_ref:
                unit.qe_score = qe_by_ref[sid]
            findings = [Finding.parse(n["text"])[0] for i, n in ours if i == seg_index]
            if findings:
                unit.meta["findings"] = findings
            _xml.check_units(len(self.units) + 1, self.path, p.sourceline, "segments")
            self.units.append(unit)
            self.entries.append(_Entry(unit, p, u, fid, seg_index))

    def _check_langs(self, src, tgt, uid) -> None:
        def inherited(el):
            while el is not None:
                v = el.get(_XML_LANG)
                if v is not None:
                    return v
                el = el.getparent()
            return None

        if src is not None and self.src_lang:
            lang = inherited(src)
            if lang is not None and lang.lower() != self.src_lang.lower():
                self.error(f"source xml:lang {lang!r} differs from srcLang {self.src_lang!r}", src, uid)
        if tgt is not None:
            if not self.trg_lang:
                self.error("a <target> is present but <xliff> has no trgLang", tgt, uid)
            else:
                lang = inherited(tgt)
                if lang is not None and lang.lower() != self.trg_lang.lower():
                    self.error(f"target xml:lang {lang!r} differs from trgLang {self.trg_lang!r}", tgt, uid)

    def _inline_elements(self, container) -> list[etree._Element]:
        found = self._inline_cache.get(container)
        if found is None:
            found = [el for el in container.iter() if el is not container and self.is_core(el)]
            self._inline_cache[container] = found
        return found

    def _pairing(self, containers: list, uid) -> dict:
        """Pair sc/ec and sm/em across one side of a unit (sources, or targets in target order).

        Returns {element: partner element or None}. Reports the OASIS pairing constraints.
        """
        pairs: dict = {}
        later_sc: dict[str, etree._Element] = {}
        later_sm: dict[str, etree._Element] = {}
        for c in containers:
            for el in self._inline_elements(c):
                if localname(el) == "sc" and el.get("id") is not None:
                    later_sc.setdefault(el.get("id"), el)
                elif localname(el) == "sm" and el.get("id") is not None:
                    later_sm.setdefault(el.get("id"), el)
        open_sc: dict[str, tuple[etree._Element, int]] = {}
        open_sm: dict[str, etree._Element] = {}
        stack: list[tuple[etree._Element, int]] = []  # non-isolated sc, for ec without startRef
        seen_ids: dict[str, etree._Element] = {}
        for ci, c in enumerate(containers):
            for el in self._inline_elements(c):
                name = localname(el)
                if name not in _INLINE:
                    continue  # the content model (xliff2_rules) reports it
                eid = el.get("id")
                if eid is not None and name in ("pc", "ph", "sc", "mrk", "sm") or (name == "ec" and eid):
                    if eid in seen_ids:
                        self.error(f"inline id {eid!r} is used twice in the unit's {localname(c)}", el, uid)
                    seen_ids[eid] = el
                if name == "sc":
                    pairs[el] = None
                    if eid is not None and el.get("isolated") != "yes":
                        open_sc[eid] = (el, ci)
                        stack.append((el, ci))
                elif name == "ec":
                    pairs[el] = None
                    ref = el.get("startRef")
                    if el.get("isolated") == "yes":
                        if ref is not None:
                            self.error("an isolated <ec> must not have startRef", el, uid)
                        if eid is None:
                            self.error("an isolated <ec> must have an id", el, uid)
                        continue
                    if ref is not None:
                        if ref in open_sc:
                            sc, _ = open_sc.pop(ref)
                            stack = [s for s in stack if s[0] is not sc]
                            pairs[el], pairs[sc] = sc, el
                        elif ref in later_sc and later_sc[ref] not in pairs:
                            self.error(f"<ec startRef={ref!r}> comes before its <sc>", el, uid)
                        else:
                            self.error(f"<ec startRef={ref!r}> has no matching <sc>", el, uid)
                        continue
                    # no startRef, not isolated: invalid, unless it closes the sc opened just before it
                    # in the same element (what some real exporters write) -> pair by position, warn
                    if stack and stack[-1][1] == ci:
                        sc, _ = stack.pop()
                        open_sc.pop(sc.get("id"), None)
                        pairs[el], pairs[sc] = sc, el
                        self.warn(f"<ec> without startRef paired by position with <sc id={sc.get('id')!r}>",
                                  el, uid)
                    else:
                        self.error("a non-isolated <ec> must have startRef (or isolated='yes')", el, uid)
                elif name == "sm":
                    pairs[el] = None
                    if eid is not None:
                        open_sm[eid] = el
                elif name == "em":
                    pairs[el] = None
                    ref = el.get("startRef")
                    if ref in open_sm:
                        sm = open_sm.pop(ref)
                        pairs[el], pairs[sm] = sm, el
                    elif ref in later_sm:
                        self.error(f"<em startRef={ref!r}> comes before its <sm>", el, uid)
                    else:
                        self.error(f"<em startRef={ref!r}> has no matching <sm>", el, uid)
        for sc, _ in open_sc.values():
            self.error(f"<sc id={sc.get('id')!r}> has no matching <ec> and is not marked isolated='yes'", sc, uid)
        for sm in open_sm.values():
            self.error(f"<sm id={sm.get('id')!r}> has no matching <em>", sm, uid)
        return pairs

    def _check_inline(self, container, data, uid) -> None:
        for el in self._inline_elements(container):
            for attr in ("dataRef", "dataRefStart", "dataRefEnd"):
                ref = el.get(attr)
                if ref is None:
                    continue
                if data is None:
                    self.error(f"{attr}={ref!r} but the unit has no <originalData>", el, uid)
                elif ref not in data:
                    self.error(f"{attr}={ref!r} refers to no <data> in <originalData>", el, uid)

    def _check_reorder(self, sources: list, targets: list, uid) -> None:
        """canReorder: a sequence (firstNo code + following 'no' codes) must stay together and in order; the end
        of a <pc> counts as a position, so a code may not move out of (or into) a <pc>."""
        if not any(el.get("canReorder") in ("no", "firstNo") for c in sources for el in self._inline_elements(c)):
            return

        def codes(containers):
            out = []
            for c in containers:
                for event, el in etree.iterwalk(c, events=("start", "end")):
                    if el is c or not self.is_core(el):
                        continue
                    name = localname(el)
                    if event == "start" and name in ("ph", "pc", "sc", "ec") and (el.get("id") or el.get("startRef")):
                        out.append((el, name))
                    elif event == "end" and name == "pc" and el.get("id"):
                        out.append((el, "/pc"))
            return out

        def key(item):
            el, name = item
            return (name, el.get("id") or el.get("startRef"))

        src_codes = codes(sources)
        sequences: list[list[tuple]] = []
        prev = None
        for item in src_codes:
            el, name = item
            if name == "/pc":
                if sequences and prev is not None and key(prev) in sequences[-1] \
                        and ("pc", el.get("id")) in sequences[-1] and sequences[-1][-1] != ("pc", el.get("id")):
                    sequences[-1].append(key(item))  # the end of a pc that is part of the sequence
                prev = item
                continue
            cr = el.get("canReorder", "yes")
            if cr == "firstNo":
                sequences.append([key(item)])
            elif cr == "no":
                if not sequences or not sequences[-1] or prev is None or sequences[-1][-1] != key(prev):
                    self.error(f"<{name} canReorder='no'> does not follow a code of its sequence "
                               "(canReorder='firstNo' or 'no')", el, uid)
                    sequences.append([key(item)])
                else:
                    sequences[-1].append(key(item))
            prev = item
        if not targets or not sequences:
            return
        all_keys = [key(item) for item in codes(targets)]
        tgt_keys = [k for k in all_keys if k[0] != "/pc"]
        for seq in sequences:
            codes_only = [k for k in seq if k[0] != "/pc"]
            if len(codes_only) < 2:
                continue
            present = [k for k in codes_only if k in tgt_keys]
            if not present:
                continue
            positions = [tgt_keys.index(k) for k in present]
            in_order = [all_keys.index(k) for k in seq if k in all_keys]
            if len(present) != len(codes_only) or positions != list(range(positions[0], positions[0] + len(present))) \
                    or in_order != sorted(in_order):
                el = targets[0]
                self.error(f"codes {', '.join(k[1] for k in seq if k[0] != '/pc')} have canReorder='no' and must "
                           "appear together and in the same order in the target", el, uid)

    def _segment(self, container, pairs) -> Segment:
        parts: list = []
        my = set(self._inline_elements(container))
        data = _unit_data(container, self.core)

        def display(el, attr_ref, attr_disp, attr_equiv):
            ref = el.get(attr_ref)
            if ref is not None and ref in data:
                return _data_text(data[ref], self.core)
            return el.get(attr_disp) or el.get(attr_equiv) or ""

        def walk(el):
            if el.text:
                parts.append(el.text)
            for child in el:
                if not isinstance(child.tag, str):
                    if child.tail:
                        parts.append(child.tail)
                    continue
                name = localname(child) if self.is_core(child) else ""
                outer = self.xf.outer(child)
                if name in ("pc", "mrk"):
                    cid = child.get("id") or ""
                    if name == "pc":
                        d_open = display(child, "dataRefStart", "dispStart", "equivStart")
                        d_close = display(child, "dataRefEnd", "dispEnd", "equivEnd")
                    else:
                        d_open = d_close = child.get("value") or child.get("type") or ""
                    if self.xf.span(child).empty:
                        parts.append(InlineCode(cid, CodeKind.OPEN, outer, name, d_open))
                        parts.append(InlineCode(cid, CodeKind.CLOSE, "", name, d_close))
                    else:
                        parts.append(InlineCode(cid, CodeKind.OPEN, self.xf.start_tag(child), name, d_open))
                        walk(child)
                        parts.append(InlineCode(cid, CodeKind.CLOSE, self.xf.end_tag(child), name, d_close))
                elif name in ("sc", "sm"):
                    partner = pairs.get(child)
                    isolated = child.get("isolated") == "yes" or partner is None or partner not in my
                    parts.append(InlineCode(child.get("id") or "", CodeKind.OPEN, outer, name,
                                            display(child, "dataRef", "disp", "equiv"), isolated))
                elif name in ("ec", "em"):
                    partner = pairs.get(child)
                    cid = (partner.get("id") if partner is not None else None) or child.get("startRef") \
                        or child.get("id") or ""
                    isolated = child.get("isolated") == "yes" or partner is None or partner not in my
                    parts.append(InlineCode(cid, CodeKind.CLOSE, outer, name,
                                            display(child, "dataRef", "disp", "equiv"), isolated))
                elif name == "ph":
                    parts.append(InlineCode(child.get("id") or "", CodeKind.STANDALONE, outer, name,
                                            display(child, "dataRef", "disp", "equiv")))
                elif name == "cp":
                    try:
                        disp = chr(int(child.get("hex", ""), 16))
                    except (ValueError, OverflowError):
                        disp = ""
                    parts.append(InlineCode(f"cp{len(parts)}", CodeKind.STANDALONE, outer, name, disp))
                else:  # unknown element: keep it as a standalone code so it survives
                    parts.append(InlineCode(f"x{len(parts)}", CodeKind.STANDALONE, outer, localname(child)))
                if child.tail:
                    parts.append(child.tail)

        walk(container)
        return Segment(parts)


def _unit_data(el, core) -> dict:
    while el is not None and not (namespace(el) == core and localname(el) == "unit"):
        if namespace(el) == MTC_NS and localname(el) == "match":
            break
        el = el.getparent()
    out = {}
    if el is None:
        return out
    for od in el:
        if isinstance(od.tag, str) and namespace(od) == core and localname(od) == "originalData":
            for d in od:
                if isinstance(d.tag, str) and d.get("id") is not None:
                    out.setdefault(d.get("id"), d)
    return out


def _data_text(d, core) -> str:
    out = [d.text or ""]
    for c in d:
        if isinstance(c.tag, str) and localname(c) == "cp":
            try:
                out.append(chr(int(c.get("hex", ""), 16)))
            except (ValueError, OverflowError):
                pass
        out.append(c.tail or "")
    return "".join(out)


def load(path: Path, strict: bool = True) -> Document:
    path = Path(path)
    doc = _Loader(path).run()
    if strict:
        for issue in doc.issues:
            if issue.severity == "error":
                raise FormatError(f"invalid XLIFF 2: {issue.message}", path=path, line=issue.line, unit=issue.unit,
                                  hint="run `tower-cat validate` to list every problem")
    return doc


# --------------------------------------------------------------------------------------------------- writing


def _prefix_of(start_tag: str) -> str:
    """'xlf:' for '<xlf:source ...>', '' for '<source ...>'."""
    name = re.match(r"<([^\s/>]+)", start_tag).group(1)
    return name.split(":", 1)[0] + ":" if ":" in name else ""


def _text_xml(text: str, prefix: str, newline: str = "\n") -> str:
    """Escape text; characters XML 1.0 cannot carry become <cp hex="…"/> (the XLIFF 2 way). Line feeds are written
    as ``newline`` ("\\r\\n" in a CRLF file: XML parsers read both as one line feed)."""
    out, pos = [], 0
    for m in _INVALID_XML_CHAR.finditer(text):
        out.append(_xml.escape_text(text[pos:m.start()]))
        out.append(f'<{prefix}cp hex="{ord(m.group(0)):04X}"/>')
        pos = m.end()
    out.append(_xml.escape_text(text[pos:]))
    written = "".join(out)
    return written.replace("\n", newline) if newline != "\n" and "\n" in written else written


def _render(segment: Segment, source: Segment, prefix: str, unit_id: str, path: Path, newline: str = "\n") -> str:
    """Target content: escaped text plus the verbatim markup of the source's codes."""
    by_key = {c.key: c for c in source.codes}
    out = []
    stack: list[str] = []  # <pc>/<mrk> are real elements: their open/close codes must nest
    for part in segment.parts:
        if isinstance(part, str):
            out.append(_text_xml(part, prefix, newline))
            continue
        src = by_key.get(part.key)
        if src is None:
            raise CodeMismatchError(f"the target has a code ({part.kind.value} {part.id!r}) that is not in the source",
                                    path=path, unit=unit_id, hint="repair the target's codes before saving")
        if src.tag in ("pc", "mrk") and not src.xml.endswith("/>"):
            if src.kind == CodeKind.OPEN:
                stack.append(src.id)
            elif src.kind == CodeKind.CLOSE and src.xml:
                if not stack or stack.pop() != src.id:
                    raise CodeMismatchError(f"the target's codes do not nest properly (<{src.tag} id={src.id!r}>)",
                                            path=path, unit=unit_id, hint="repair the target's codes before saving")
        out.append(src.xml)
    if stack:
        raise CodeMismatchError(f"the target leaves <pc>/<mrk> {', '.join(stack)} open", path=path, unit=unit_id,
                                hint="repair the target's codes before saving")
    return "".join(out)


def _check_fragment(fragment: str, nsmap: dict, path: Path, unit_id: str) -> None:
    decls = "".join(f' xmlns{":" + p if p else ""}="{_xml.escape_attr(u)}"' for p, u in nsmap.items())
    try:
        etree.fromstring(f"<w{decls}>{fragment}</w>".encode("utf-8"))
    except etree.XMLSyntaxError as exc:
        raise CodeMismatchError(f"the target's codes do not nest properly ({exc.msg})", path=path, unit=unit_id,
                                hint="repair the target's codes before saving") from None


def _fmt_score(score: float) -> str:
    s = f"{score:.2f}".rstrip("0").rstrip(".")
    return s or "0"


def save(doc: Document, path: Path) -> None:
    _xml.atomic_write(Path(path), _Writer(doc, Path(path)).run())


class _Writer:
    """Splices one document's edits into its original text: per changed unit the target, the segment's
    state/subState (and an id when a candidate needs one), and translation candidates; then the root."""

    def __init__(self, doc: Document, path: Path):
        self.doc = doc
        self.path = path
        self.h: _Handle = doc.handle
        self.xf = self.h.xf
        self.sp = _xml.Splicer(self.xf.text)
        self.nl = self.xf.newline()  # line breaks in new text: CRLF files keep CRLF
        self.root_changes: dict[str, str | None] = {}
        self.declare: dict[str, str] = {}
        self.unit_matches: dict = {}  # unit element -> list of _Match
        self.unit_findings: dict = {}  # unit element -> {segment index: [Finding]}
        self.trg_lang = self.xf.root.get("trgLang")
        if not self.trg_lang and doc.target_lang:
            self.root_changes["trgLang"] = doc.target_lang
            self.trg_lang = doc.target_lang
        self.by_identity = {id(e.unit): e for e in self.h.entries}
        self.by_id: dict[str, _Entry] = {}
        for e in self.h.entries:
            self.by_id.setdefault(e.unit.id, e)

    def run(self) -> bytes:
        for unit in self.doc.units:
            if unit.changed:
                self.unit(unit)
        for unit_el, items in self.unit_matches.items():
            _write_matches(self.xf, self.sp, unit_el, items, self.h.core, self.declare, self.nl)
        for unit_el, by_index in self.unit_findings.items():  # after the matches: notes follow module elements
            self.finding_notes(unit_el, by_index)
        for p, uri in self.declare.items():
            self.root_changes[f"xmlns:{p}"] = uri
        if self.root_changes:
            root = self.xf.root
            s = self.xf.span(root)
            self.sp.replace(s.start, s.tag_end, _xml.set_attrs(self.xf.start_tag(root), self.root_changes))
        return self.xf.encode(self.sp.result())

    def entry(self, unit: Unit) -> _Entry:
        entry = self.by_identity.get(id(unit)) or self.by_id.get(unit.id)
        if entry is None:
            raise FormatError("this unit is not in the file it was loaded from", path=self.path, unit=unit.id)
        return entry

    def sides(self, seg) -> tuple:
        src_el = tgt_el = None
        for c in seg:
            if isinstance(c.tag, str) and namespace(c) == self.h.core:
                if localname(c) == "source" and src_el is None:
                    src_el = c
                elif localname(c) == "target" and tgt_el is None:
                    tgt_el = c
        return src_el, tgt_el

    def unit(self, unit: Unit) -> None:
        entry = self.entry(unit)
        seg = entry.segment
        src_el, tgt_el = self.sides(seg)
        if src_el is None:
            raise FormatError("the segment has no <source>", path=self.path, line=seg.sourceline, unit=unit.id)
        prefix = _prefix_of(self.xf.start_tag(src_el))
        seg_changes: dict[str, str | None] = {}
        if unit.edit is not None:
            if not unit.edit.status_only:
                self.target(unit, seg, src_el, tgt_el, prefix)
            state, sub = STATE_FOR_STATUS[unit.edit.status]
            seg_changes["state"] = state
            if sub is not None or seg.get("subState") is not None:
                seg_changes["subState"] = sub
        self.candidates(unit, entry, src_el, tgt_el, prefix, seg_changes)
        if unit.findings_edit is not None:
            self.unit_findings.setdefault(entry.unit_el, {})[entry.seg_index] = unit.findings_edit
        if seg_changes:
            s = self.xf.span(seg)
            self.sp.replace(s.start, s.tag_end, _xml.set_attrs(self.xf.start_tag(seg), seg_changes))

    def target(self, unit: Unit, seg, src_el, tgt_el, prefix: str) -> None:
        """The new target content: between the existing <target> tags, or a new <target> after </source>."""
        xf = self.xf
        if not self.trg_lang:
            raise FormatError("cannot write a target: the file has no trgLang and no target language was given",
                              path=self.path, unit=unit.id, hint="set the document's target language")
        inner = _render(unit.edit.segment, unit.source, prefix, unit.id, self.path, self.nl)
        _check_fragment(inner, dict(seg.nsmap), self.path, unit.id)
        kept = {c.key for c in unit.edit.segment.codes}
        dropped = [c for c in unit.source.codes if _NON_REMOVABLE.search(c.xml) and c.key not in kept]
        if dropped:  # XLIFF 2: a code with canDelete="no" must stay in the target
            raise CodeMismatchError(f"the target drops non-removable code(s) {', '.join(c.xml for c in dropped)} "
                                    "(canDelete='no')", path=self.path, unit=unit.id,
                                    hint="keep every code the source marks canDelete='no'")
        if tgt_el is not None:
            s = xf.span(tgt_el)
            if s.empty:
                tag = xf.start_tag(tgt_el)
                self.sp.replace(s.start, s.end, tag[:-2].rstrip() + ">" + inner + f"</{prefix}target>")
            else:
                self.sp.replace(s.tag_end, s.close, inner)
            return
        new = f"<{prefix}target{self.new_target_attrs(seg, src_el)}>{inner}</{prefix}target>"
        indent = xf.indent_before(src_el)
        self.sp.insert(xf.span(src_el).end, (self.nl + indent if indent else "") + new)

    def new_target_attrs(self, seg, src_el) -> str:
        """The source's xmlns declarations and xml:space; xml:lang=trgLang when an inherited one would
        contradict it (or the source states its own)."""
        attrs = ""
        for m in _XMLNS_ATTR.finditer(self.xf.start_tag(src_el)):
            attrs += f' {m.group(1)}="{_xml.escape_attr(m.group(3))}"'
        space = src_el.get(_XML_SPACE)
        if space is not None:
            attrs += f' xml:space="{_xml.escape_attr(space)}"'
        inherited = None
        el = seg
        while el is not None and inherited is None:
            inherited = el.get(_XML_LANG)
            el = el.getparent()
        if src_el.get(_XML_LANG) is not None or (inherited is not None
                                                 and inherited.lower() != self.trg_lang.lower()):
            attrs += f' xml:lang="{_xml.escape_attr(self.trg_lang)}"'
        return attrs

    def candidates(self, unit: Unit, entry: _Entry, src_el, tgt_el, prefix: str, seg_changes: dict) -> None:
        """The replaced target and the QE score as <mtc:match> candidates (queued per unit element)."""
        seg = entry.segment
        sid = seg.get("id")
        spaces = []
        for el in (src_el, tgt_el if tgt_el is not None else src_el):
            v = el.get(_XML_SPACE)
            spaces.append(f' xml:space="{v}"' if v in ("preserve", "default") else "")
        previous = unit.edit.replaced if unit.edit is not None else None
        if previous is not None:
            if sid is None:
                sid = seg_changes["id"] = _new_segment_id(entry.unit_el, entry.seg_index)
            score = unit.match_score if unit.match_score is not None and 0 <= unit.match_score <= 100 else None
            self.unit_matches.setdefault(entry.unit_el, []).append(
                _Match("previous", sid, prefix, _match_content(unit.source, prefix, self.nl),
                       _match_content(previous, prefix, self.nl), score, spaces))
        if unit.qe_edit is not None:
            target_seg = unit.edit.segment if unit.edit is not None else (
                entry.unit.target if tgt_el is not None else None)
            if target_seg is not None:
                if sid is None:
                    sid = seg_changes["id"] = _new_segment_id(entry.unit_el, entry.seg_index)
                self.unit_matches.setdefault(entry.unit_el, []).append(
                    _Match("qe", sid, prefix, _match_content(unit.source, prefix, self.nl),
                           _match_content(target_seg, prefix, self.nl), unit.qe_edit, spaces))


    def finding_notes(self, unit_el, by_index: dict[int, list[Finding]]) -> None:
        """Our notes of the given segments replaced by the new findings, in the unit's <notes> (made when missing,
        before <originalData> and the segments, as the core schema orders a unit's children)."""
        xf, core = self.xf, self.h.core
        if any(isinstance(el.tag, str) and localname(el) == "revisions" and el.get("appliesTo") == "note"
               and el.get("ref") is None for el in unit_el.iter()):
            return  # change tracking of "the" note without ref: a second note would make the unit invalid (5.6.4.3)
        prefix = _prefix_of(xf.start_tag(unit_el))
        notes_el = next((c for c in unit_el if isinstance(c.tag, str) and namespace(c) == core
                         and localname(c) == "notes"), None)
        children = [] if notes_el is None else [c for c in notes_el if isinstance(c.tag, str)]
        drop = [c for c in children if _our_note({"id": c.get("id"), "category": c.get("category")}) in by_index]
        used = {c.get("id") for c in children if c not in drop}
        new = []
        for index, findings in sorted(by_index.items()):
            for n, f in enumerate(findings, start=1):
                nid = f"tc-f{index}-{n}"
                while nid in used:
                    nid += "x"
                used.add(nid)
                new.append(f'<{prefix}note id="{nid}" category="{FINDINGS_AUTHOR}" '
                           f'priority="{1 if f.severity == "error" else 5}" appliesTo="target">'
                           f"{_text_xml(f.text(), prefix, self.nl)}</{prefix}note>")
        if notes_el is not None and len(drop) == len(children) and not new:
            self._remove(notes_el)
            return
        for c in drop:
            self._remove(c)
        if not new:
            return
        if notes_el is not None:
            keep = [c for c in children if c not in drop]
            anchor = keep[-1] if keep else (drop[-1] if drop else None)
            if anchor is not None:
                ind = xf.indent_before(anchor)
                self.sp.insert(xf.span(anchor).end, "".join((self.nl + ind if ind else "") + m for m in new))
            else:
                s = xf.span(notes_el)
                tag = xf.start_tag(notes_el)
                if s.empty:
                    self.sp.replace(s.start, s.end, tag[:-2].rstrip() + ">" + "".join(new) + f"</{prefix}notes>")
                else:
                    self.sp.insert(s.close, "".join(new))
            return
        before = next((c for c in unit_el if isinstance(c.tag, str) and namespace(c) == core
                       and localname(c) in ("originalData", "segment", "ignorable")), None)
        if before is None:
            return
        ind = xf.indent_before(before)
        unit_ind = xf.indent_before(unit_el)
        step = ind[len(unit_ind):] if ind.startswith(unit_ind) else ""
        inner = "".join((self.nl + ind + (step or " ") if ind else "") + m for m in new)
        self.sp.insert(xf.span(before).start,
                       f"<{prefix}notes>{inner}{self.nl + ind if ind else ''}</{prefix}notes>{self.nl + ind if ind else ''}")

    def _remove(self, el) -> None:
        """Cut an element out with the line break and indentation before it when it is on a line of its own."""
        self.sp.replace(*self.xf.removal_range(el), "")


def _match_content(segment: Segment, prefix: str, newline: str = "\n") -> str:
    """A segment's content as a self-contained copy for an <mtc:match>: codes whose partner lies in another
    segment are written isolated (sc isolated="yes", ec id=… isolated="yes"); unpaired annotation markers are
    left out (an <sm> without its <em> would be invalid, and a candidate does not need the annotation)."""
    out = []
    for part in segment.parts:
        if isinstance(part, str):
            out.append(_text_xml(part, prefix, newline))
        elif part.isolated and part.tag in ("sm", "em"):
            continue
        elif part.isolated and part.tag == "sc" and 'isolated=' not in part.xml:
            out.append(_xml.set_attrs(part.xml, {"isolated": "yes"}))
        elif part.isolated and part.tag == "ec" and 'isolated=' not in part.xml:
            out.append(_xml.set_attrs(part.xml, {"startRef": None, "id": part.id, "isolated": "yes"}))
        else:
            out.append(part.xml)
    return "".join(out)


def _new_segment_id(unit_el, seg_index: int) -> str:
    used = {el.get("id") for el in unit_el.iter() if isinstance(el.tag, str) and el.get("id") is not None}
    n, sid = seg_index, f"tc-s{seg_index}"
    while sid in used:
        n += 1
        sid = f"tc-s{n}"
    return sid


@dataclass
class _Match:
    """A translation candidate to write: ``kind`` "qe" (the new target with its QE score) or "previous" (the
    target an edit replaces)."""

    kind: str
    sid: str
    prefix: str
    src_inner: str
    tgt_inner: str
    score: float | None
    spaces: list[str]


def _write_matches(xf, sp, unit_el, items: list[_Match], core, declare, nl) -> None:
    """Translation candidates in the unit's <mtc:matches> (created, and xmlns:mtc declared, when missing).

    QE score -> <mtc:match ref="#seg" type="mt" origin="tower-cat" matchQuality="…">: core <segment>/<target>
    accept no foreign attributes and ITS module attributes are only allowed on <mrk>/<sm>, so the
    translation-candidates module is where a score stays schema-valid. A second QE run replaces it.

    Replaced target -> <mtc:match ref="#seg" type="mt" origin="previous-version" subType="tower-cat:previous">
    with copies of the source and the old target; not written again when the same candidate is already there.
    """
    try:
        mtc = _xml.qname(unit_el, MTC_NS, "matches").split(":", 1)[0]
    except ValueError:
        mtc = "mtc"
        declare["mtc"] = MTC_NS
    existing = None
    for c in unit_el:
        if isinstance(c.tag, str) and namespace(c) == MTC_NS and localname(c) == "matches":
            existing = c
            break
    first_child = next((c for c in unit_el if isinstance(c.tag, str)), None)
    child_indent = xf.indent_before(first_child) if first_child is not None else ""
    used_ids = {m.get("id") for m in (existing if existing is not None else []) if isinstance(m.tag, str)}
    data = _unit_data(unit_el, core)
    new_matches: list[str] = []
    for item in items:
        sid, prefix, src_inner, tgt_inner, score = item.sid, item.prefix, item.src_inner, item.tgt_inner, item.score
        src_space, tgt_space = item.spaces
        ref = f"#{sid}"
        if item.kind == "previous" and existing is not None and any(
                isinstance(m.tag, str) and m.get("subType") == PREVIOUS_SUBTYPE and m.get("ref") == ref
                and any(isinstance(t.tag, str) and localname(t) == "target" and xf.inner(t) == tgt_inner for t in m)
                for m in existing):
            continue  # this previous version is already a candidate
        stem = "tc-prev" if item.kind == "previous" else "tc-mt"
        mid, n = f"{stem}-{sid}", 1
        while mid in used_ids:
            n += 1
            mid = f"{stem}-{sid}-{n}"
        used_ids.add(mid)
        refs = []
        for frag in (src_inner, tgt_inner):
            for m in re.finditer(r"""\bdataRef(?:Start|End)?\s*=\s*["']([^"']*)["']""", frag):
                if m.group(1) in data and m.group(1) not in refs:
                    refs.append(m.group(1))
        od = ""
        if refs:
            od = f"<{prefix}originalData>" + "".join(xf.outer(data[r]) for r in refs) + f"</{prefix}originalData>"
        if item.kind == "previous":
            attrs = f'origin="{PREVIOUS_ORIGIN}" subType="{PREVIOUS_SUBTYPE}"'
            if score is not None:
                attrs += f' matchQuality="{_fmt_score(score)}"'
        else:
            attrs = f'origin="{MATCH_ORIGIN}" matchQuality="{_fmt_score(score)}"'
        body = (f'<{mtc}:match id="{mid}" ref="{_xml.escape_attr(ref)}" type="mt" {attrs}>'
                f"{od}<{prefix}source{src_space}>{src_inner}</{prefix}source>"
                f"<{prefix}target{tgt_space}>{tgt_inner}</{prefix}target></{mtc}:match>")
        # replace an earlier tower-cat QE match for this segment instead of piling them up
        old = None
        if existing is not None and item.kind == "qe":
            for m in existing:
                if (isinstance(m.tag, str) and m.get("origin") == MATCH_ORIGIN and m.get("type") == "mt"
                        and m.get("ref") == f"#{sid}"):
                    old = m
                    break
        if old is not None:
            s = xf.span(old)
            sp.replace(s.start, s.end, body)
        else:
            new_matches.append(body)
    if not new_matches:
        return
    if existing is not None:
        last = [m for m in existing if isinstance(m.tag, str)]
        if last:
            ind = xf.indent_before(last[-1])
            sp.insert(xf.span(last[-1]).end, "".join((nl + ind if ind else "") + m for m in new_matches))
        else:
            sp.insert(xf.span(existing).close, "".join(new_matches))
        return
    s = xf.span(unit_el)
    unit_indent = xf.indent_before(unit_el)
    step = child_indent[len(unit_indent):] if child_indent.startswith(unit_indent) else ""
    sep = nl + child_indent if child_indent else ""
    inner_sep = nl + child_indent + (step or " ") if child_indent else ""
    block = (f"{sep}<{mtc}:matches>" + "".join(inner_sep + m for m in new_matches) + f"{sep}</{mtc}:matches>")
    sp.insert(s.tag_end, block)
