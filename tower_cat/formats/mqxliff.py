"""memoQ MQXLIFF: XLIFF 1.2 with memoQ's ``mq:`` attributes (namespace URI ``MQXliff``) on ``<trans-unit>``.

Read: ``mq:status`` is the unit's state (ManuallyConfirmed, Reviewer1Confirmed, Reviewer2Confirmed and Proofread
count as final), ``mq:locked="locked"`` locks it, ``mq:percent`` is the match rate, ``mq:maxlengthchars`` (> 0) the
length limit. Written back for changed units: ``mq:status`` and ``mq:percent`` (TM match or QE score). memoQ's
relative namespace URI makes C14N impossible; the splice writer never needs it. A replaced target
(``TargetEdit.previous``) becomes ``<alt-trans alttranstype="previous-version">`` after the trans-unit's XLIFF
children, before memoQ's own (the xliff12 writer; memoQ itself does not show it, as far as we know).

Findings (``Unit.findings_edit``: QA, terminology, QE) are memoQ comments on the row: ``<mq:comments><mq:comment
id=… creatoruser="tower-cat" time=… deleted="false" category="0" appliesto="Target" origin="User">[error] numbers:
…</mq:comment></mq:comments>`` at the end of the trans-unit (the layout translate5 writes for memoQ to import).
Writing findings again removes our comments (``creatoruser="tower-cat"``) and nobody else's; on load ours go to
``meta["findings"]``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

from tower_cat.document import FINDINGS_AUTHOR, STATUSES, Document, Finding, Unit
from tower_cat.formats import _xml, xliff12

FORMAT = "mqxliff"
MQ_NS = "MQXliff"
CONFIRMED = ("ManuallyConfirmed", "Reviewer1Confirmed", "Reviewer2Confirmed", "Proofread")
STATUS_TO_MQ = {"new": "NotStarted", "needs-review": "Pretranslated", "translated": "Pretranslated",
                "reviewed": "Reviewer1Confirmed", "final": "Reviewer2Confirmed"}
_MQ_DECL = re.compile(rb"""xmlns:[A-Za-z_][\w.-]*\s*=\s*["']MQXliff["']""")


def sniff(head: bytes) -> bool:
    return bool(_MQ_DECL.search(head)) and xliff12.sniff(head)


def _mq(name: str) -> str:
    return f"{{{MQ_NS}}}{name}"


class MqDialect(xliff12.Dialect):
    format = FORMAT
    writes_state = False  # memoQ reads mq:status, not <target state>
    writes_its = False  # QE goes into mq:percent

    def read_unit(self, h, tu, unit: Unit, seg) -> None:
        el = tu.el
        status = el.get(_mq("status"))
        if status:
            unit.state = status
            if status in CONFIRMED:
                unit.final = True
        if el.get(_mq("locked")) == "locked":
            unit.locked = True
        score = xliff12._float(el.get(_mq("percent")))
        if score is not None:
            unit.match_score = score
        maxlen = el.get(_mq("maxlengthchars"))
        if maxlen and maxlen.lstrip("-").isdigit() and int(maxlen) > 0:
            unit.max_length, unit.size_unit = int(maxlen), "char"
        findings = [Finding.parse("".join(c.itertext()))[0] for c in self._our_comments(tu)]
        if findings:
            unit.meta["findings"] = findings

    @staticmethod
    def _comments_el(tu):
        return next((c for c in tu.el if c.tag == _mq("comments")), None)

    def _our_comments(self, tu) -> list:
        box = self._comments_el(tu)
        return [] if box is None else [c for c in box if c.tag == _mq("comment")
                                       and c.get("creatoruser") == FINDINGS_AUTHOR]

    def notes_for_findings(self, tu) -> bool:
        return False  # memoQ shows its own comments, not XLIFF notes

    def write_findings(self, w: xliff12.Writer, tu: xliff12.TuRec) -> None:
        units = [u for u in tu.units() if u.findings_edit is not None]
        if not units:
            return
        box = self._comments_el(tu)
        ours = self._our_comments(tu)
        theirs = [] if box is None else [c for c in box if isinstance(c.tag, str) and c not in ours]
        segmented = tu.segs is not None
        time = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        prefix = _xml.qname(tu.el, MQ_NS, "comments", w.declare, "mq").split(":", 1)[0]
        new = []
        for u in units:
            for f in u.findings_edit:
                text = f.text(u.meta.get("mid") if segmented else None)
                cid = uuid.uuid5(uuid.NAMESPACE_URL, f"tower-cat:{u.id}:{text}")
                new.append(f'<{prefix}:comment id="{cid}" creatoruser="{FINDINGS_AUTHOR}" time="{time}" '
                           f'deleted="false" category="0" appliesto="Target" origin="User">'
                           f"{xliff12.escape_content(text)}</{prefix}:comment>")
        if box is not None and not theirs and not new:
            w.remove_element(box)
            return
        for c in ours:
            w.remove_element(c)
        if not new:
            return
        markup = "".join(new)
        if box is not None:
            span = w.xf.spans[box]
            tag = w.xf.start_tag(box)
            if span.empty:
                w.sp.replace(span.start, span.end, f"{xliff12.open_form(tag)}{markup}</{xliff12.element_name(tag)}>")
            else:
                w.sp.insert(span.close, markup)
            return
        last = [c for c in tu.el if isinstance(c.tag, str)][-1]
        w.insert_after(last, f"<{prefix}:comments>{markup}</{prefix}:comments>")

    def write_tu(self, w: xliff12.Writer, tu: xliff12.TuRec) -> None:
        units = [u for u in tu.units() if u.changed]
        edits = [u.edit for u in units if u.edit is not None]
        changes: dict[str, str | None] = {}
        if edits:
            status = min((e.status for e in edits), key=STATUSES.index)
            changes[_xml.qname(tu.el, MQ_NS, "status", w.declare, "mq")] = STATUS_TO_MQ[status]
        # a unit whose file has a match rate (> 0: memoQ writes 0 for "no match") keeps it when only QE (or a QE
        # review marking) changes: the QE score then shows in the comments and the report, provenance stays memoQ's
        scores = [xliff12.score_for(None if u.edit is not None and u.edit.status_only else u.edit, u.qe_edit)
                  for u in units if not ((u.edit is None or u.edit.status_only) and (u.match_score or 0) > 0)]
        scores = [s for s in scores if s is not None]
        pname = _xml.qname(tu.el, MQ_NS, "percent", w.declare, "mq")
        if scores:
            changes[pname] = str(int(round(min(scores))))
        elif edits:
            changes[pname] = None
        w.replace_start(tu.el, changes)
        self.write_findings(w, tu)


def load(path: Path, strict: bool = True) -> Document:
    return xliff12.load(path, strict, MqDialect())


def save(doc: Document, path: Path) -> None:
    xliff12.save(doc, path)
