"""Which units a post-edit job may touch: the unit's origin, its status and its QE score, as the file says.

A CAT file already tells who made each target and whether someone confirmed it; post-editing must respect that.
What the formats read (``Unit.origin``, ``Unit.state``, ``Unit.match_score``, ``Unit.qe_score``, ``Unit.final``)
is turned into two small vocabularies here:

* **origin class** (:func:`origin_class`): ``mt`` | ``tm`` | ``human`` | ``other`` — from SDLXLIFF ``origin``
  (``mt``, ``nmt``, ``adaptive-mt``, ``tm``, ``document-match``, ``auto-propagated``, ``interactive``), XLIFF 1.2
  ``state-qualifier`` (``leveraged-mt``, ``mt-suggestion``, ``exact-match``, ``fuzzy-match``, ``leveraged-tm``,
  ...), Phrase ``m:trans-origin``, memoQ ``mq:status`` (``MachineTranslated``; ``Pretranslated`` with a
  ``mq:percent`` is a TM pre-translation) and tower-cat's own origins. ``other``: the file does not say
  (XLIFF 2, PO, a Trados ``source`` copy, ``not-translated``).
* **status** (:func:`unit_status`): ``new`` | ``needs-review`` | ``translated`` | ``reviewed`` | ``final``
  (``document.STATUSES``) — SDLXLIFF ``conf`` (Draft and the Rejected ones are needs-review, Translated is
  translated, ApprovedTranslation reviewed, ApprovedSignOff final), memoQ ``mq:status`` (NotStarted new;
  ManuallyConfirmed/Confirmed translated; Reviewer1Confirmed reviewed; Reviewer2Confirmed/Proofread final;
  everything else needs-review), XLIFF 1.2 ``state`` (``translated`` with an MT qualifier is needs-review:
  nobody confirmed machine output), XLIFF 2 ``state`` (``translated`` with tower-cat's needs-review subState is
  needs-review), PO (fuzzy is needs-review, a non-fuzzy msgstr translated). ``None``: the file gives no state.

**Confirmed** (:func:`is_confirmed`) means a person said the target is done: status translated, reviewed or final
in the formats whose tools have a separate draft state (SDLXLIFF, MQXLIFF, PO) and reviewed or final in XLIFF
1.2/2 (whose ``translated`` is what MT connectors write too; their confirmation is ``approved="yes"``,
``signed-off``/``final``, XLIFF 2 ``reviewed``/``final``).

The default scope (:class:`PostEditScope` with no filter) post-edits every unit with a target that is neither
protected (locked, final, ``translate="no"``: never touched), nor confirmed, nor a 100 % TM match (origin tm with
a score of 100 or more, or an exact/context-match origin). ``only`` picks origins (``any`` lifts the 100 % TM
rule, ``tm`` asks for TM segments, 100 % ones included); ``states`` replaces the confirmed rule with a list of
statuses or file state values (``Draft``, ``Translated``, ``needs-review`` ...); ``below`` keeps units whose
QE score (the QE backend's, else the file's ``qe_score``) is below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tower_cat.document import Unit
from tower_cat.errors import InvalidArgument

__all__ = ["ORIGIN_CLASSES", "PostEditScope", "origin_class", "unit_status", "is_confirmed", "is_full_tm_match",
           "parse_only"]

ORIGIN_CLASSES = ("mt", "tm", "human", "other")

_MT = {"mt", "nmt", "adaptive-mt", "leveraged-mt", "mt-suggestion", "machine-translation", "post-edit", "pseudo",
       "machinetranslated"}
_TM = {"tm", "tm-exact", "tm-context", "tm-fuzzy", "exact-match", "fuzzy-match", "id-match", "leveraged-tm",
       "leveraged-repository", "leveraged-inherited", "tm-suggestion", "document-match", "auto-propagated",
       "leveraged-glossary"}
_HUMAN = {"interactive", "human"}
# origins that are a 100 % (or context) match whatever the score says
_FULL_TM = {"tm-exact", "tm-context", "exact-match", "document-match", "id-match", "leveraged-inherited"}

_SDL_STATUS = {"draft": "needs-review", "translated": "translated", "rejectedtranslation": "needs-review",
               "rejectedsignoff": "needs-review", "approvedtranslation": "reviewed", "approvedsignoff": "final"}
_MQ_STATUS = {"notstarted": "new", "manuallyconfirmed": "translated", "confirmed": "translated",
              "reviewer1confirmed": "reviewed", "reviewer2confirmed": "final", "proofread": "final"}
_XLIFF12_STATUS = {"new": "new", "needs-translation": "new", "needs-adaptation": "new", "needs-l10n": "new",
                   "translated": "translated", "signed-off": "reviewed", "final": "final"}
_XLIFF2_STATUS = {"initial": "new", "translated": "translated", "reviewed": "reviewed", "final": "final"}
_CONFIRMED = {"sdlxliff": ("translated", "reviewed", "final"), "mqxliff": ("translated", "reviewed", "final"),
              "po": ("translated", "reviewed", "final")}
_CONFIRMED_DEFAULT = ("reviewed", "final")


def _raw_origin(unit: Unit) -> str:
    if unit.edit is not None:
        return unit.edit.origin
    return (unit.origin or "").strip().lower()


def origin_class(unit: Unit, fmt: str | None = None) -> str:
    """mt | tm | human | other: who made the unit's target, as the file (or this job) says."""
    origin = _raw_origin(unit)
    if origin in _MT or origin.startswith("machine"):
        return "mt"
    if origin in _TM:
        return "tm"
    if origin in _HUMAN:
        return "human"
    if not origin and fmt == "mqxliff":
        status = (unit.state or "").lower()
        if status == "machinetranslated":
            return "mt"
        if status == "pretranslated" and unit.match_score is not None:
            return "tm"
    return "other"


def is_full_tm_match(unit: Unit, fmt: str | None = None) -> bool:
    """A 100 % (or 101 % context) TM match: origin tm with a score of 100 or more, or an exact/context origin."""
    if origin_class(unit, fmt) != "tm":
        return False
    if _raw_origin(unit) in _FULL_TM:
        return True
    score = unit.edit.match_score if unit.edit is not None else unit.match_score
    return score is not None and score >= 100


def unit_status(unit: Unit, fmt: str | None = None) -> str | None:
    """The unit's status in ``document.STATUSES`` terms, from the file's own state value (None: no state)."""
    if unit.final:
        return "final"
    state = (unit.state or "").strip()
    low = state.lower()
    if not state:
        return None
    if fmt == "sdlxliff":
        return _SDL_STATUS.get(low, "needs-review")
    if fmt == "mqxliff":
        return _MQ_STATUS.get(low, "needs-review")
    if fmt == "po":
        return "needs-review" if low == "fuzzy" else "translated"
    if fmt == "xliff2":
        if low == "translated" and str(unit.meta.get("subState") or "") == "tower-cat:needs-review":
            return "needs-review"
        return _XLIFF2_STATUS.get(low, "needs-review")
    status = _XLIFF12_STATUS.get(low, "needs-review" if low.startswith("needs-review") else None)
    if status == "translated" and origin_class(unit, fmt) == "mt":
        return "needs-review"  # MT nobody confirmed (tower-cat's own confident MT is written this way too)
    return status


def is_confirmed(unit: Unit, fmt: str | None = None) -> bool:
    """A person confirmed the target (see the module docstring for what that means per format)."""
    return unit_status(unit, fmt) in _CONFIRMED.get(fmt or "", _CONFIRMED_DEFAULT)


def parse_only(value: str | None) -> tuple[str, ...] | None:
    """``origin=mt`` / ``origin=mt,tm`` / ``origin=any`` -> the origin classes (None: any, 100 % TM included)."""
    if value is None:
        return ()
    key, sep, rest = value.partition("=")
    if not sep or key.strip().lower() != "origin":
        raise InvalidArgument(f"cannot read the scope {value!r}: write origin=mt, origin=tm, origin=human, "
                              "origin=any or a list such as origin=mt,tm", param="only")
    names = tuple(dict.fromkeys(v.strip().lower() for v in rest.split(",") if v.strip()))
    if not names:
        raise InvalidArgument(f"the scope {value!r} names no origin", param="only")
    if "any" in names:
        return None
    bad = [n for n in names if n not in ORIGIN_CLASSES]
    if bad:
        raise InvalidArgument(f"unknown origin {bad[0]!r} in {value!r}; use mt, tm, human, other or any",
                              param="only")
    return names


@dataclass(frozen=True)
class PostEditScope:
    """Which units post-editing touches (see the module docstring).

    ``origins``: origin classes to take (``()``: the default — any origin but 100 % TM matches; ``None``: any
    origin, 100 % TM included). ``states``: statuses (``document.STATUSES``) or the file's own state values to
    take (``()``: the default — everything not confirmed). ``below``: only units whose QE score is below this.
    """

    origins: tuple[str, ...] | None = ()
    states: tuple[str, ...] = ()
    below: float | None = None

    @classmethod
    def parse(cls, only: str | None = None, states: str | Sequence[str] | None = None,
              below: float | None = None) -> "PostEditScope":
        """From the CLI's words: ``only="origin=mt"``, ``states="Draft,needs-review"``, ``below=70``."""
        if isinstance(states, str):
            states = [states]
        names = tuple(dict.fromkeys(s.strip() for part in (states or ()) for s in part.split(",") if s.strip()))
        if below is not None and not 0 <= below <= 100:
            raise InvalidArgument(f"a QE threshold of {below:g} is outside 0-100", param="below")
        return cls(parse_only(only), names, below)

    @property
    def default(self) -> bool:
        return self.origins == () and not self.states and self.below is None

    def describe(self) -> str:
        """One line for summaries and the README: what this scope takes."""
        if self.origins is None:
            origins = "any origin (100 % TM matches included)"
        elif self.origins:
            origins = "origin " + "/".join(self.origins) + (" (100 % TM matches included)" if "tm" in self.origins
                                                             else "")
        else:
            origins = "any origin but 100 % TM matches"
        states = ("states " + ", ".join(self.states)) if self.states else "not confirmed"
        below = f", QE below {self.below:g}" if self.below is not None else ""
        return f"{origins}; {states}{below}"

    def _state_ok(self, unit: Unit, fmt: str | None) -> bool:
        status = unit_status(unit, fmt)
        if not self.states:
            return not is_confirmed(unit, fmt)
        raw = (unit.state or "").strip().lower()
        wanted = {s.lower() for s in self.states}
        return (status is not None and status in wanted) or (bool(raw) and raw in wanted)

    def unmatched_states(self, units: Sequence[tuple[Unit, str | None]]) -> list[str]:
        """The ``states`` words that name neither a status nor a state value of any of ``units`` ((unit, format)
        pairs): most likely a typo (``Draf``) or another tool's word, worth a warning."""
        seen: set[str] = set()
        for unit, fmt in units:
            status = unit_status(unit, fmt)
            if status:
                seen.add(status)
            if unit.state:
                seen.add(unit.state.strip().lower())
        return [w for w in self.states if w.lower() not in seen]

    def excludes(self, unit: Unit, fmt: str | None = None) -> str | None:
        """Why this unit (with a target, not protected) is out of scope; None when it is in. The QE rule is
        checked separately (:meth:`qe_excludes`): the score may come from a backend run later."""
        origin = origin_class(unit, fmt)
        if self.origins == ():
            if is_full_tm_match(unit, fmt):
                return "out of scope: 100 % TM match (use --only origin=tm or origin=any)"
        elif self.origins is not None and origin not in self.origins:
            return f"out of scope: origin {origin} (--only origin={','.join(self.origins)})"
        if not self._state_ok(unit, fmt):
            status = unit_status(unit, fmt)
            shown = unit.state or status  # the file's own word (Translated, Proofread ...)
            if not self.states:
                return f"out of scope: confirmed ({shown}; use --states to include it)"
            return f"out of scope: state {shown or 'none'} (--states {','.join(self.states)})"
        return None

    def qe_excludes(self, score: float | None, *, scored_here: bool) -> str | None:
        """Why a unit with this QE score is out of scope (``below``); None when it is in."""
        if self.below is None:
            return None
        if score is None:
            return ("out of scope: no QE score" if scored_here
                    else "out of scope: the file has no QE score for it (score it with --qe-backend)")
        if score >= self.below:
            return f"out of scope: QE {score:.1f} is not below {self.below:g}"
        return None

