"""SDLXLIFF (Trados Studio): XLIFF 1.2 segmented with ``<mrk mtype="seg">`` plus per-segment ``<sdl:seg>`` records.

Read: ``conf`` (Draft, Translated, ApprovedTranslation, ApprovedSignOff, …) is the unit's state; ApprovedTranslation
and ApprovedSignOff are final; ``locked="true"`` locks the segment; ``origin``/``percent`` give provenance.
Written back for changed segments: ``conf``, ``origin`` (``mt`` / ``tm`` / ``interactive``), ``origin-system``
(the engine) and ``percent`` (TM match or QE score) on the segment's ``<sdl:seg>``; tracked changes
(``mrk mtype="x-sdl-added|x-sdl-deleted"``) are inline codes and kept verbatim. A replaced target
(``TargetEdit.previous``) becomes ``<alt-trans mid=… alttranstype="previous-version">`` before ``sdl:seg-defs``
(the xliff12 writer; Trados itself does not show it, as far as we know).

Findings (``Unit.findings_edit``: QA, terminology, QE) are Trados comments, which the Comments window lists: a
``<cmt-def id=…><Comments><Comment severity="High|Medium" user="tower-cat" date=… version="1.0">[error] numbers:
…</Comment></Comments></cmt-def>`` in ``<doc-info>``'s ``<cmt-defs>`` (both created when missing) and a
``<mrk mtype="x-sdl-comment" sdl:cid=…>`` around the segment's target content. A comment definition is ours when
every ``Comment`` in it has ``user="tower-cat"``; writing findings again replaces ours (marker and definition)
and never touches anyone else's. On load our marker is taken out of the target and the findings go to
``meta["findings"]``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

from lxml import etree

from tower_cat.document import FINDINGS_AUTHOR, Document, Finding, Segment, Unit
from tower_cat.formats import _xml, xliff12

FORMAT = "sdlxliff"
SDL_NS = "http://sdl.com/FileTypes/SdlXliff/1.0"
APPROVED = ("ApprovedTranslation", "ApprovedSignOff")
STATUS_TO_CONF = {"new": None, "needs-review": "Draft", "translated": "Translated", "reviewed": "ApprovedTranslation",
                  "final": "ApprovedSignOff"}
ORIGIN_TO_SDL = {"mt": "mt", "post-edit": "mt", "pseudo": "mt", "tm-exact": "tm", "tm-context": "tm",
                 "tm-fuzzy": "tm", "human": "interactive"}
COMMENT_SEVERITY = {"error": "High", "warning": "Medium"}  # Trados: Low | Medium | High
SEVERITY_FINDING = {"High": "error", "Medium": "warning", "Low": "warning"}
_CID = re.compile(r"""\s(?:[\w.-]+:)?cid\s*=\s*["']([^"']*)["']""")
_COMMENT_IDS = uuid.UUID("6f1d8e2a-3c4b-5d6e-8f90-a1b2c3d4e5f6")  # namespace of our deterministic comment ids


def sniff(head: bytes) -> bool:
    return SDL_NS.encode() in head and xliff12.sniff(head)


class SdlDialect(xliff12.Dialect):
    format = FORMAT
    writes_state = False  # Trados keeps segment status in sdl:seg conf, not in <target state>
    writes_its = False  # QE goes into sdl:seg percent

    def __init__(self) -> None:
        self._segs: dict[etree._Element, dict[str, etree._Element]] = {}
        self._defs: dict[etree._Element, etree._Element | None] = {}
        self._comments: dict[str, tuple[etree._Element, list[tuple[str | None, str | None, str]]]] | None = None
        self._docinfo: etree._Element | None = None
        self._cmtdefs: etree._Element | None = None

    # -- comments (cmt-defs in doc-info, x-sdl-comment markers in targets)
    def comment_defs(self, h: xliff12.Handle) -> dict:
        """cid -> (cmt-def element, [(user, severity, text)]) for every comment definition of the file."""
        if self._comments is None:
            self._comments = {}
            for child in h.xf.root:
                if child.tag == f"{{{SDL_NS}}}doc-info":
                    self._docinfo = child
                    for defs in child:
                        if defs.tag == f"{{{SDL_NS}}}cmt-defs":
                            self._cmtdefs = defs
                            for d in defs:
                                if d.tag != f"{{{SDL_NS}}}cmt-def":
                                    continue
                                comments = [(c.get("user"), c.get("severity"), "".join(c.itertext()))
                                            for c in d.iter(f"{{{SDL_NS}}}Comment")]
                                self._comments[d.get("id", "")] = (d, comments)
                    break
        return self._comments

    def ours(self, h: xliff12.Handle, cid: str | None) -> bool:
        """A comment definition tower-cat wrote: it exists and every comment in it is by tower-cat."""
        entry = self.comment_defs(h).get(cid or "")
        return entry is not None and bool(entry[1]) and all(user == FINDINGS_AUTHOR for user, _, _ in entry[1])

    @staticmethod
    def _findings(comments) -> list[Finding]:
        out = []
        for _, severity, text in comments:
            finding, _ = Finding.parse(text)
            if finding.check == "note":  # not in our one-line form: keep the text, take the severity attribute
                finding = Finding("note", SEVERITY_FINDING.get(severity or "", "warning"), text.strip())
            out.append(finding)
        return out

    def _our_markers(self, h, tgt: etree._Element) -> list[etree._Element]:
        return [ch for ch in tgt if isinstance(ch.tag, str) and etree.QName(ch).localname == "mrk"
                and ch.get("mtype") == "x-sdl-comment" and self.ours(h, ch.get(f"{{{SDL_NS}}}cid"))]

    def notes_for_findings(self, tu: xliff12.TuRec) -> bool:
        return tu.segs is None  # a trans-unit without segments has no target <mrk> to comment: XLIFF notes

    def segment_with_findings(self, w: xliff12.Writer, tu: xliff12.TuRec, seg: xliff12.SegRec,
                              content: str | None) -> str | None:
        """The segment's target content with our comment marker around it (our old markers taken out and their
        definitions dropped); ``content`` None: the current content."""
        unit = seg.unit
        findings = unit.findings_edit
        old = self._our_markers(w.h, seg.tgt) if seg.tgt is not None else []
        if (not findings and not old) or (findings is None and content is None):
            return None  # nothing of ours to replace, nothing to add: the target stays as it is
        state = w.__dict__.setdefault("_sdl_comments", {"drop": set(), "add": {}})
        state["drop"].update(m.get(f"{{{SDL_NS}}}cid") for m in old)
        if content is None:
            xf, text = w.xf, w.xf.text
            span = xf.spans[seg.tgt]
            if span.empty:
                content = ""
            else:
                out, pos = [], span.tag_end
                for m in old:
                    ms = xf.spans[m]
                    out.append(text[pos:ms.start])
                    if not ms.empty:
                        out.append(text[ms.tag_end:ms.close])
                    pos = ms.end
                out.append(text[pos:span.close])
                content = "".join(out)
        if not findings:
            return content
        texts = [f.text() for f in findings]
        cid = str(uuid.uuid5(_COMMENT_IDS, "\n".join([unit.id, *texts])))
        date = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        state["add"][cid] = "".join(
            f'<Comment severity="{COMMENT_SEVERITY.get(f.severity, "Low")}" user="{FINDINGS_AUTHOR}" '
            f'date="{date}" version="1.0">{xliff12.escape_content(t)}</Comment>' for f, t in zip(findings, texts))
        holder = seg.tgt if seg.tgt is not None else tu.el
        attr = _xml.qname(holder, SDL_NS, "cid", w.declare, "sdl")
        mrk = xliff12.element_name(w.xf.start_tag(seg.src))
        return f'<{mrk} mtype="x-sdl-comment" {attr}="{cid}">{content}</{mrk}>'

    def finish(self, w: xliff12.Writer) -> None:
        """Comment definitions: ours that were replaced or dropped go, new ones join ``<cmt-defs>`` (created in
        ``<doc-info>``, itself created as the root's first child when missing)."""
        state = w.__dict__.get("_sdl_comments")
        if not state:
            return
        defs = self.comment_defs(w.h)
        add: dict[str, str] = state["add"]
        xf = w.xf
        prefix = ""
        if self._docinfo is not None:
            name = xliff12.element_name(xf.start_tag(self._docinfo))
            prefix = name[: -len("doc-info")]

        def cmt_def(cid: str, comments: str) -> str:
            return (f'<{prefix}cmt-def id="{cid}"><{prefix}Comments>{comments.replace("<Comment", f"<{prefix}Comment").replace("</Comment>", f"</{prefix}Comment>")}'
                    f"</{prefix}Comments></{prefix}cmt-def>")

        drop = {cid for cid in state["drop"] if cid in defs}
        if self._cmtdefs is not None and not add and defs and drop == set(defs) \
                and sum(1 for c in self._cmtdefs if isinstance(c.tag, str)) == len(defs):
            info = self._docinfo  # a <doc-info> holding only these comments, as we create it, goes too
            if info is not None and sum(1 for c in info if isinstance(c.tag, str)) == 1 \
                    and xf.start_tag(info) == f'<doc-info xmlns="{SDL_NS}">' and not (info.text or "").strip():
                w.remove_element(info)
            else:
                w.remove_element(self._cmtdefs)  # every definition in it was ours and goes
            return
        replaced = set()
        for cid in drop:
            el = defs[cid][0]
            if cid in add:
                span = xf.spans[el]
                w.sp.replace(span.start, span.end, cmt_def(cid, add[cid]))
                replaced.add(cid)
            else:
                w.remove_element(el)
        new = "".join(cmt_def(cid, c) for cid, c in add.items() if cid not in replaced)
        if self._cmtdefs is not None:
            if new:
                span = xf.spans[self._cmtdefs]
                tag = xf.start_tag(self._cmtdefs)
                if span.empty:
                    w.sp.replace(span.start, span.end, f"{xliff12.open_form(tag)}{new}</{xliff12.element_name(tag)}>")
                else:
                    w.sp.insert(span.close, new)
            return
        if not new:
            return
        block = f"<{prefix}cmt-defs>{new}</{prefix}cmt-defs>"
        if self._docinfo is not None:
            before = next((c for c in self._docinfo if isinstance(c.tag, str)
                           and etree.QName(c).localname in ("cmt-meta-defs", "rev-defs")), None)
            if before is not None:
                w.sp.insert(xf.spans[before].start, block)
            else:
                span = xf.spans[self._docinfo]
                tag = xf.start_tag(self._docinfo)
                if span.empty:
                    w.sp.replace(span.start, span.end, f"{xliff12.open_form(tag)}{block}</{xliff12.element_name(tag)}>")
                else:
                    w.sp.insert(span.close, block)
            return
        root = xf.root
        first = next((c for c in root if isinstance(c.tag, str)), None)
        indent = xf.indent_before(first) if first is not None else ""
        sep = w.nl + indent if indent or (first is not None and xf.text[xf.spans[root].tag_end:xf.spans[first].start].startswith(("\n", "\r"))) else ""
        w.sp.insert(xf.spans[root].tag_end, f'{sep}<doc-info xmlns="{SDL_NS}">{block}</doc-info>')

    def forget_elements(self) -> None:
        self._segs.clear()
        self._defs.clear()

    def seg_defs(self, tu: xliff12.TuRec) -> etree._Element | None:
        if tu.el not in self._defs:
            defs = None
            segs: dict[str, etree._Element] = {}
            for ch in tu.el:
                if ch.tag == f"{{{SDL_NS}}}seg-defs":
                    defs = ch
                    for seg in ch:
                        if seg.tag == f"{{{SDL_NS}}}seg":
                            segs.setdefault(seg.get("id", ""), seg)
                    break
            self._defs[tu.el] = defs
            self._segs[tu.el] = segs
        return self._defs[tu.el]

    def seg_element(self, tu: xliff12.TuRec, mid: str) -> etree._Element | None:
        self.seg_defs(tu)
        return self._segs[tu.el].get(mid)

    def read_unit(self, h, tu, unit: Unit, seg) -> None:
        if seg is None:
            return
        self._read_findings(h, unit)
        el = self.seg_element(tu, seg.mid)
        if el is None:
            return
        conf = el.get("conf")
        unit.state = conf
        if conf in APPROVED:
            unit.final = True
        if el.get("locked") == "true":
            unit.locked = True
        unit.origin = el.get("origin") or unit.origin
        if el.get("origin-system"):
            unit.meta["origin_system"] = el.get("origin-system")
        score = xliff12._float(el.get("percent"))
        if score is not None:
            unit.match_score = score

    def _read_findings(self, h, unit: Unit) -> None:
        """Take our comment marker out of the target; its comments become ``meta["findings"]``."""
        target = unit.target
        if target is None or not any(c.tag == "mrk" and "x-sdl-comment" in c.xml for c in target.codes):
            return
        drop, findings = set(), []
        for c in target.codes:
            if c.tag == "mrk" and c.kind.value == "open" and "x-sdl-comment" in c.xml:
                m = _CID.search(c.xml)
                if m and self.ours(h, m.group(1)):
                    drop.add(c.id)
                    findings += self._findings(self.comment_defs(h)[m.group(1)][1])
        if drop:
            unit.target = Segment([p for p in target.parts if isinstance(p, str) or p.tag != "mrk" or p.id not in drop])
            unit.meta["findings"] = findings

    def new_target_lang(self, h, tu, lang):
        return None  # Trados writes no xml:lang on targets

    def write_tu(self, w: xliff12.Writer, tu: xliff12.TuRec) -> None:
        if tu.segs is None:
            return
        new_segs: list[str] = []
        for s in tu.segs:
            u = s.unit
            if not u.changed:
                continue
            edit = u.edit
            changes: dict[str, str | None] = {}
            if edit is not None and edit.status_only:  # QE review marking: origin, system, TM percent stay
                changes["conf"] = STATUS_TO_CONF[edit.status]
            elif edit is not None:
                changes["conf"] = STATUS_TO_CONF[edit.status]
                origin = ORIGIN_TO_SDL.get(edit.origin, "mt")
                changes["origin"] = origin
                changes["origin-system"] = edit.system if origin != "interactive" else None
                if edit.origin == "tm-context":
                    changes["text-match"] = "SourceAndTarget"
            score = xliff12.score_for(None if edit is not None and edit.status_only else edit, u.qe_edit)
            if (edit is None or edit.status_only) and _keeps_percent(u):
                score = None  # a TM/human segment keeps its match percentage; QE is in the comments and report
            if score is not None:
                changes["percent"] = str(int(round(score)))
            elif edit is not None and not edit.status_only:
                changes["percent"] = None
            el = self.seg_element(tu, s.mid)
            if el is not None:
                w.replace_start(el, changes)
            else:
                name = _prefixed(w, tu.el, "seg")
                new_segs.append(_xml.set_attrs(f'<{name} id="{_xml.escape_attr(s.mid)}"/>', changes))
        if not new_segs:
            return
        defs = self.seg_defs(tu)
        markup = "".join(new_segs)
        if defs is not None:
            span = w.xf.spans[defs]
            if span.empty:
                tag = w.xf.start_tag(defs)
                w.sp.replace(span.start, span.end, f"{xliff12.open_form(tag)}{markup}</{xliff12.element_name(tag)}>")
            else:
                w.sp.insert(span.close, markup)
        else:
            name = _prefixed(w, tu.el, "seg-defs")
            anchor = tu.target if tu.target is not None else tu.segsource
            w.insert_after(anchor, f"<{name}>{markup}</{name}>")


MACHINE_ORIGINS = ("mt", "nmt", "amt", "automatic-translation")


def _keeps_percent(unit: Unit) -> bool:
    """QE alone must not write this segment's ``percent``: Trados reads it as the TM match of a segment from a TM or
    a person (origin tm, document-match, interactive, ...); only machine translations carry a confidence there."""
    origin = unit.origin or ""
    return origin not in MACHINE_ORIGINS and (bool(origin) or unit.match_score is not None)


def _prefixed(w: xliff12.Writer, el: etree._Element, local: str) -> str:
    for prefix, uri in (el.nsmap or {}).items():
        if uri == SDL_NS and prefix:
            return f"{prefix}:{local}"
    w.declare["sdl"] = SDL_NS
    return f"sdl:{local}"


def load(path: Path, strict: bool = True) -> Document:
    return xliff12.load(path, strict, SdlDialect())


def save(doc: Document, path: Path) -> None:
    xliff12.save(doc, path)
