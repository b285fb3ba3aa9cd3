"""SDLXLIFF (Trados Studio): XLIFF 1.2 segmented with ``<mrk mtype="seg">`` plus per-segment ``<sdl:seg>`` records.

Read: ``conf`` (Draft, Translated, ApprovedTranslation, ApprovedSignOff, …) is the unit's state; ApprovedTranslation
and ApprovedSignOff are final; ``locked="true"`` locks the segment; ``origin``/``percent`` give provenance.
Written back for changed segments: ``conf``, ``origin`` (``mt`` / ``tm`` / ``interactive``), ``origin-system``
(the engine) and ``percent`` (TM match or QE score) on the segment's ``<sdl:seg>``; tracked changes
(``mrk mtype="x-sdl-added|x-sdl-deleted"``) are inline codes and kept verbatim. A replaced target
(``TargetEdit.previous``) becomes ``<alt-trans mid=… alttranstype="previous-version">`` before ``sdl:seg-defs``
(the xliff12 writer; Trados itself does not show it, as far as we know).
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from tower_cat.document import Document, Unit
from tower_cat.formats import _xml, xliff12

FORMAT = "sdlxliff"
SDL_NS = "http://sdl.com/FileTypes/SdlXliff/1.0"
APPROVED = ("ApprovedTranslation", "ApprovedSignOff")
STATUS_TO_CONF = {"new": None, "needs-review": "Draft", "translated": "Translated", "reviewed": "ApprovedTranslation",
                  "final": "ApprovedSignOff"}
ORIGIN_TO_SDL = {"mt": "mt", "post-edit": "mt", "pseudo": "mt", "tm-exact": "tm", "tm-context": "tm",
                 "tm-fuzzy": "tm", "human": "interactive"}


def sniff(head: bytes) -> bool:
    return SDL_NS.encode() in head and xliff12.sniff(head)


class SdlDialect(xliff12.Dialect):
    format = FORMAT
    writes_state = False  # Trados keeps segment status in sdl:seg conf, not in <target state>
    writes_its = False  # QE goes into sdl:seg percent

    def __init__(self) -> None:
        self._segs: dict[etree._Element, dict[str, etree._Element]] = {}
        self._defs: dict[etree._Element, etree._Element | None] = {}

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
            if edit is not None:
                changes["conf"] = STATUS_TO_CONF[edit.status]
                origin = ORIGIN_TO_SDL.get(edit.origin, "mt")
                changes["origin"] = origin
                changes["origin-system"] = edit.system if origin != "interactive" else None
                if edit.origin == "tm-context":
                    changes["text-match"] = "SourceAndTarget"
            score = xliff12.score_for(edit, u.qe_edit)
            if score is not None:
                changes["percent"] = str(int(round(score)))
            elif edit is not None:
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
