"""memoQ MQXLIFF: XLIFF 1.2 with memoQ's ``mq:`` attributes (namespace URI ``MQXliff``) on ``<trans-unit>``.

Read: ``mq:status`` is the unit's state (ManuallyConfirmed, Reviewer1Confirmed, Reviewer2Confirmed and Proofread
count as final), ``mq:locked="locked"`` locks it, ``mq:percent`` is the match rate, ``mq:maxlengthchars`` (> 0) the
length limit. Written back for changed units: ``mq:status`` and ``mq:percent`` (TM match or QE score). memoQ's
relative namespace URI makes C14N impossible; the splice writer never needs it. A replaced target
(``TargetEdit.previous``) becomes ``<alt-trans alttranstype="previous-version">`` after the trans-unit's XLIFF
children, before memoQ's own (the xliff12 writer; memoQ itself does not show it, as far as we know).
"""

from __future__ import annotations

import re
from pathlib import Path

from tower_cat.document import STATUSES, Document, Unit
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

    def write_tu(self, w: xliff12.Writer, tu: xliff12.TuRec) -> None:
        units = [u for u in tu.units() if u.changed]
        edits = [u.edit for u in units if u.edit is not None]
        changes: dict[str, str | None] = {}
        if edits:
            status = min((e.status for e in edits), key=STATUSES.index)
            changes[_xml.qname(tu.el, MQ_NS, "status", w.declare, "mq")] = STATUS_TO_MQ[status]
        scores = [xliff12.score_for(u.edit, u.qe_edit) for u in units]
        scores = [s for s in scores if s is not None]
        pname = _xml.qname(tu.el, MQ_NS, "percent", w.declare, "mq")
        if scores:
            changes[pname] = str(int(round(min(scores))))
        elif edits:
            changes[pname] = None
        w.replace_start(tu.el, changes)


def load(path: Path, strict: bool = True) -> Document:
    return xliff12.load(path, strict, MqDialect())


def save(doc: Document, path: Path) -> None:
    xliff12.save(doc, path)
