"""The one data model every format loads into and every job works on.

Okapi's idea, not translate-toolkit's: a segment is text runs plus inline codes, and each code keeps the exact
markup it came from, so a target can be written back with the original codes verbatim while the model only ever
sees numbered placeholders (see ``codes.py``).
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Union

from tower_cat.errors import InvalidArgument


class CodeKind(str, enum.Enum):
    OPEN = "open"
    CLOSE = "close"
    STANDALONE = "standalone"


@dataclass(frozen=True)
class InlineCode:
    """A piece of markup inside a segment that the translation must carry over unchanged.

    ``id`` pairs an opening code with its closing code (``<g id=1>``/``</g>``, ``<bpt i=1>``/``<ept i=1>``,
    ``<sc id=1/>``/``<ec startRef=1/>``). ``xml`` is the original markup, byte for byte as in the file (for a
    PO placeholder: the placeholder text itself). ``isolated`` marks a code whose partner lies outside the
    segment (``<it>``, an isolated ``<sc>``, a ``<g>`` cut by segmentation).
    """

    id: str
    kind: CodeKind
    xml: str
    tag: str = ""
    display: str = ""
    isolated: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """Identity of the code inside a segment: an open and a close share the id, never the kind."""
        return (self.kind.value, self.id)


Part = Union[str, InlineCode]


@dataclass
class Segment:
    """Text runs and inline codes in reading order. Adjacent strings are merged on construction."""

    parts: list[Part] = field(default_factory=list)

    def __post_init__(self) -> None:
        merged: list[Part] = []
        for part in self.parts:
            if isinstance(part, str):
                if not part:
                    continue
                if merged and isinstance(merged[-1], str):
                    merged[-1] = merged[-1] + part
                    continue
            merged.append(part)
        self.parts = merged

    @classmethod
    def from_text(cls, text: str) -> "Segment":
        return cls([text] if text else [])

    @classmethod
    def merged(cls, parts: list[Part]) -> "Segment":
        """A segment over ``parts`` as given (the list is taken, not copied), for readers whose parts are already
        merged: no empty strings and no two strings in a row. Skips the merging pass of the constructor."""
        seg = cls.__new__(cls)
        seg.parts = parts
        return seg

    @property
    def text(self) -> str:
        """The text without any code: what word counts, TM keys and QE see."""
        parts = self.parts
        if len(parts) == 1 and type(parts[0]) is str:
            return parts[0]
        return "".join([p for p in parts if isinstance(p, str)])

    @property
    def codes(self) -> list[InlineCode]:
        return [p for p in self.parts if isinstance(p, InlineCode)]

    def is_empty(self) -> bool:
        return not self.text.strip() and not self.codes

    def words(self) -> int:
        return len(self.text.split())

    def __iter__(self) -> Iterator[Part]:
        return iter(self.parts)

    def __len__(self) -> int:
        return len(self.parts)


# Statuses a job asks for; each format maps them to its own vocabulary (XLIFF 1.2 state, XLIFF 2 state,
# SDLXLIFF conf, mq:status, PO fuzzy flag) as described in DESIGN.md "Writing results back".
STATUSES = ("new", "needs-review", "translated", "reviewed", "final")
# Where a target came from; mapped to state-qualifier / sdl origin / mtc type / PO comment.
ORIGINS = ("mt", "tm-exact", "tm-context", "tm-fuzzy", "post-edit", "pseudo", "human")


@dataclass
class TargetEdit:
    """A new target a job wants written, with the provenance CAT tools show the translator."""

    segment: Segment
    status: str = "needs-review"
    origin: str = "mt"
    match_score: float | None = None  # 0-100: TM match percentage or MT confidence
    system: str = "tower-cat"
    # The target this edit replaces (post-editing vendor MT, re-translating with --overwrite): written back as a
    # translation candidate (XLIFF 1.2 alt-trans, XLIFF 2 mtc:match, PO comment) so the translator can compare.
    previous: Segment | None = None
    # A status change only (QE marking a unit for review): the target and the file's provenance (origin, origin
    # system, TM match percentage, state-qualifier) stay as they are; only the status is written.
    status_only: bool = False

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise InvalidArgument(f"unknown status {self.status!r}; expected one of {STATUSES}")
        if self.origin not in ORIGINS:
            raise InvalidArgument(f"unknown origin {self.origin!r}; expected one of {ORIGINS}")

    @property
    def replaced(self) -> Segment | None:
        """``previous`` when it is worth keeping as a candidate: not empty and not the new target itself."""
        prev = self.previous
        if prev is None or prev.is_empty() or prev.parts == self.segment.parts:
            return None
        return prev


FINDINGS_AUTHOR = "tower-cat"  # the author name our findings carry in files (note from=, Comment user=, ...)
_FINDING_TEXT = re.compile(r"^\[(\w+)\] ([\w.-]+)(?:, segment (.+?))?: (.*)$", re.S)


@dataclass(frozen=True)
class Finding:
    """A QA, terminology or QE finding about a target, written into the file where CAT tools show comments
    (XLIFF notes, Trados comments, memoQ comments, PO translator comments) so the translator sees why a segment
    needs review. ``check`` names the check (``numbers``, ``terms``, ``qe``, ...), ``severity`` error|warning."""

    check: str
    severity: str
    message: str

    def text(self, segment: str | None = None) -> str:
        """The one-line form files carry: ``[error] numbers: numbers differ: missing 12`` (with ``, segment N``
        when one element holds findings of several segments)."""
        where = f", segment {segment}" if segment else ""
        return f"[{self.severity}] {self.check}{where}: {' '.join(self.message.split())}"

    @classmethod
    def parse(cls, text: str) -> tuple["Finding", str | None]:
        """Inverse of :meth:`text`: the finding and its segment (None when the text names none). A text that is
        not in that form is kept whole as the message of a ``note`` warning."""
        m = _FINDING_TEXT.match(text.strip())
        if m is None:
            return cls("note", "warning", text.strip()), None
        return cls(m.group(2), m.group(1), m.group(4)), m.group(3)

    @classmethod
    def of(cls, issue: Any) -> "Finding":
        """From anything with ``check``/``severity``/``message`` (a ``qa.QAIssue``) or a dict of them."""
        if isinstance(issue, Finding):
            return issue
        if isinstance(issue, dict):
            return cls(str(issue["check"]), str(issue["severity"]), str(issue["message"]))
        return cls(str(issue.check), str(issue.severity), str(issue.message))


@dataclass
class UnitContext:
    """What a translator (or a model) sees around a unit."""

    file: str | None = None  # <file original> / file id
    resname: str | None = None
    msgctxt: str | None = None
    locations: list[str] = field(default_factory=list)
    previous_source: str | None = None
    next_source: str | None = None


@dataclass
class Unit:
    """One translatable segment: a trans-unit, an ``mrk mtype="seg"`` segment, an XLIFF 2 segment, a PO
    message or plural form, a TMX translation unit."""

    id: str
    source: Segment
    target: Segment | None = None
    state: str | None = None  # the file's own state value, as written there
    notes: list[str] = field(default_factory=list)
    context: UnitContext = field(default_factory=UnitContext)
    locked: bool = False
    final: bool = False  # approved / final / signed-off: a person has confirmed it
    translatable: bool = True
    max_length: int | None = None
    size_unit: str | None = None
    origin: str | None = None  # provenance read from the file (sdl origin, state-qualifier, ...)
    match_score: float | None = None
    qe_score: float | None = None  # 0-100, as read from or to be written into the file
    line: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    qa_issues: list[Any] = field(default_factory=list)
    edit: TargetEdit | None = None
    qe_edit: float | None = None
    # findings to write into the file (replacing tower-cat's earlier ones; [] removes them); None: leave the file's
    # findings alone. Findings read from a file are in meta["findings"] (never in ``notes``: not for the model).
    findings_edit: list[Finding] | None = None

    @property
    def protected(self) -> bool:
        """Units no job may change unless asked: locked, approved/final, or marked not translatable."""
        return self.locked or self.final or not self.translatable

    @property
    def has_target(self) -> bool:
        return self.target is not None and not self.target.is_empty()

    def set_target(self, segment: Segment, *, status: str = "needs-review", origin: str = "mt",
                   match_score: float | None = None, system: str = "tower-cat",
                   previous: Segment | None = None) -> None:
        """Record a new target to be written into the file.

        ``previous``: the target this edit replaces (usually ``unit.target`` before the call), written back as a
        candidate so the translator can compare: ``<alt-trans alttranstype="previous-version">`` in XLIFF 1.2
        (SDLXLIFF, MQXLIFF), ``<mtc:match origin="previous-version">`` in XLIFF 2, a ``# tower-cat previous:``
        translator comment in PO; TMX has no candidates and ignores it. An empty previous target, or one equal to
        the new target, writes nothing.
        """
        self.edit = TargetEdit(segment, status, origin, match_score, system, previous)
        self.target = segment

    def set_status(self, status: str) -> None:
        """Change only the unit's status (e.g. to needs-review after QE); its target and provenance are kept."""
        if self.target is None:
            raise InvalidArgument(f"unit {self.id!r} has no target whose status could change")
        origin = self.origin if self.origin in ORIGINS else "human"
        self.edit = TargetEdit(self.target, status, origin, self.match_score, status_only=True)

    def set_qe(self, score: float) -> None:
        """Record a 0-100 quality estimate to be written into the file."""
        if not 0.0 <= score <= 100.0:
            raise InvalidArgument(f"QE score {score} outside 0-100")
        self.qe_edit = float(score)
        self.qe_score = float(score)

    def set_findings(self, issues: Iterable[Any]) -> None:
        """Record QA/terminology/QE findings to be written into the file where the CAT tool shows comments;
        tower-cat's earlier findings on this unit are replaced (an empty list removes them), nobody else's."""
        self.findings_edit = [Finding.of(i) for i in issues]

    @property
    def changed(self) -> bool:
        return self.edit is not None or self.qe_edit is not None or self.findings_edit is not None


@dataclass
class Issue:
    """A validation finding: errors change meaning and stop a job; warnings are harmless deviations."""

    severity: str  # "error" | "warning"
    message: str
    line: int | None = None
    unit: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        unit = f"unit {self.unit!r}: " if self.unit else ""
        return f"{self.severity}: {where}{unit}{self.message}"


@dataclass
class Document:
    """Units in file order, plus what the format needs to write the file back unchanged except for edits."""

    path: Path
    format: str
    units: list[Unit]
    source_lang: str | None = None
    target_lang: str | None = None
    issues: list[Issue] = field(default_factory=list)
    handle: Any = None  # format-private state (raw text, lxml tree, element spans)
    # Set when the file cannot escape characters outside a legacy charset (a cp1251 PO file): jobs must
    # write only text this codec can store. None: anything goes (Unicode, or XML character references).
    charset: str | None = None

    def can_store(self, text: str) -> bool:
        if self.charset is None:
            return True
        try:
            text.encode(self.charset)
        except UnicodeEncodeError:
            return False
        return True

    def __iter__(self) -> Iterator[Unit]:
        return iter(self.units)

    def __len__(self) -> int:
        return len(self.units)

    def translatable_units(self) -> Iterable[Unit]:
        return (u for u in self.units if not u.protected)

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def save(self, path: str | Path) -> None:
        from tower_cat import formats

        formats.save(self, Path(path))


# --------------------------------------------------------------------------------------------------------
# segments <-> JSON


def segment_to_json(seg: Segment) -> str:
    if len(seg.parts) == 1 and isinstance(seg.parts[0], str):  # plain text: the common case, fast
        return json.dumps(seg.parts, ensure_ascii=False)
    parts: list[Any] = []
    for p in seg.parts:
        if isinstance(p, str):
            parts.append(p)
        else:
            d = {"id": p.id, "k": p.kind.value, "x": p.xml}
            if p.tag:
                d["t"] = p.tag
            if p.display:
                d["d"] = p.display
            if p.isolated:
                d["i"] = 1
            parts.append(d)
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


def segment_from_json(data: str) -> Segment:
    parts: list[Any] = []
    for p in json.loads(data):
        if isinstance(p, str):
            parts.append(p)
        else:
            parts.append(InlineCode(id=p["id"], kind=CodeKind(p["k"]), xml=p["x"], tag=p.get("t", ""),
                                    display=p.get("d", ""), isolated=bool(p.get("i"))))
    return Segment(parts)
