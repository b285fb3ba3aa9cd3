"""Glossaries: loading (TBX v2 ``martif``, TBX v3 ``tbx``/``conceptEntry`` incl. DCT-style module elements, CSV/TSV),
finding terms in a source segment and checking that a target complies.

Loading
    * TBX: concepts (``termEntry`` / ``conceptEntry``) hold language sections (``langSet`` / ``langSec``) with term
      groups (``tig`` / ``ntig`` / ``termSec``). Parsed with the same safety as every XML format (no entities, no
      DTD, no network; a DOCTYPE declaring entities is refused).
      Term status from ``administrativeStatus`` (``preferredTerm-admn-sts``, ``admittedTerm-admn-sts``,
      ``deprecatedTerm-admn-sts``, ``supersededTerm-admn-sts``; TBX-Min/DCT ``min:administrativeStatus``),
      ``usageStatus`` (preferred/admitted/notRecommended/obsolete/deprecated) or ``normativeAuthorization``.
      **Deprecated, superseded, notRecommended and obsolete terms are forbidden** in a target; admitted terms are
      allowed (reported as ``admitted`` when the preferred one was not used).
      **Do not translate** (DNT): a concept where any term carries ``<termNote type="translationNote">no</termNote>``
      (the convention translate-toolkit and Weblate read as "untranslatable", used by samples/glossary.tbx).
    * CSV/TSV: a header naming the columns (``source``, ``target``, ``case_sensitive``, ``do_not_translate``
      (or ``dnt``), ``forbidden`` (``|``-separated variants), ``note``; language codes as column names work too),
      or two columns without a header. Tab-separated when the file is ``.tsv``/``.tab`` or its first line has a tab.
      Languages come from the header, from ``load(path, src_lang=, tgt_lang=)``, or from a file name like
      ``glossary.de.csv`` (target ``de``); otherwise the glossary serves any language pair.

Case
    A term is matched case-insensitively unless it is marked case-sensitive (CSV column) or it has a capital
    letter after its first character (``Tower Notes``, ``iPhone``, ``URL``), which is taken as deliberate.

Finding terms in a source (``Glossary.find``)
    Whole words only (never inside another word or a hyphenated compound), multi-word terms across any run of
    spaces/hyphens, the longest match wins where matches overlap. Inflection tolerance (``inflect=True``):
    English sources accept regular suffixes on every word of 3+ letters: -s, -es, -'s, -ed/-d, -ing, with the
    final -e dropped (archive -> archiving), -y -> -ies/-ied, and a doubled final consonant (tag -> tagged);
    a term whose part of speech is noun (TBX ``partOfSpeech``) only takes the plural and possessive forms
    (the noun "comment" does not match "commented"). Other source languages use the stem rule below.

Checking a target (``Glossary.check``)
    Compared case-insensitively and without diacritics (ä = a, ß = ss, ç = c). A target word matches a term word
    when it starts with the word's **stem** and adds at most 6 letters. Stem = the word, minus a Romance verb
    ending -ar/-er/-ir (pt, es, it, fr, ca, gl, ro; words of 6+ letters), a German/Dutch -en/-ern/-eln, or a
    final -a/-e/-o (words of 5+ letters); never shorter than 4 letters. Words under 4 letters must match
    exactly (plus -s/-es/-e/-n/-en/-er). German adds an optional ``ge-`` prefix (participles: geteilt) and,
    like the other compounding languages (de, nl, sv, da, nb, nn, no), accepts the stem inside a compound
    (Notizvorlagen contains Vorlage). For each term found in the source:
      * DNT concept: the source term must appear verbatim (case-sensitive) in the target;
      * otherwise one of the allowed target terms (preferred or admitted) must be present;
      * none of the concept's forbidden target variants may appear (a forbidden match lying inside an allowed
        term of another matched concept is ignored: pt ``arquivar`` for "archive" is not the forbidden
        ``arquivo`` for "file").
      Presence is checked, not counts.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lxml import etree
from rapidfuzz.distance import Levenshtein

from tower_cat.document import Document, Segment, Unit
from tower_cat import errors
from tower_cat.errors import TowerCatError
from tower_cat.formats import _xml
from tower_cat.languages import lang_base, lang_matches, normalize_lang

PREFERRED, ADMITTED, DEPRECATED, SUPERSEDED = "preferred", "admitted", "deprecated", "superseded"
FORBIDDEN_STATUSES = {DEPRECATED, SUPERSEDED, "notRecommended", "obsolete"}
_STATUS_VALUES = {
    "preferredterm-admn-sts": PREFERRED, "preferred": PREFERRED, "preferredterm": PREFERRED,
    "admittedterm-admn-sts": ADMITTED, "admitted": ADMITTED, "admittedterm": ADMITTED,
    "deprecatedterm-admn-sts": DEPRECATED, "deprecated": DEPRECATED, "deprecatedterm": DEPRECATED,
    "supersededterm-admn-sts": SUPERSEDED, "superseded": SUPERSEDED, "supersededterm": SUPERSEDED,
    "notrecommended": "notRecommended", "obsolete": "obsolete", "legalterm-admn-sts": PREFERRED,
    "regulatedterm-admn-sts": PREFERRED, "standardizedterm-admn-sts": PREFERRED,
}
_STATUS_TYPES = ("administrativestatus", "usagestatus", "normativeauthorization")
_DNT_VALUES = {"no", "false", "0", "donottranslate", "do not translate", "untranslatable"}
_TRUE = {"1", "true", "yes", "y", "x", "dnt"}
COMPOUNDING = {"de", "nl", "sv", "da", "nb", "nn", "no", "is", "fi"}
ROMANCE = {"pt", "es", "it", "fr", "ca", "gl", "ro"}
MIN_STEM = 4
MAX_TAIL = 6
SRC_ROLE, TGT_ROLE = "x-source", "x-target"  # language keys of a CSV glossary that names no languages


GlossaryError = errors.GlossaryError  # one error family (tower_cat.errors); importable from here as before


# ----------------------------------------------------------------------------------------------------------------
# data model


@dataclass
class Term:
    text: str
    lang: str
    status: str | None = None
    case_sensitive: bool = False
    part_of_speech: str | None = None
    note: str | None = None

    @property
    def forbidden(self) -> bool:
        return self.status in FORBIDDEN_STATUSES


@dataclass
class Concept:
    id: str
    terms: dict[str, list[Term]] = field(default_factory=dict)  # normalised language -> terms
    dnt: bool = False
    note: str | None = None
    definition: str | None = None
    subject: str | None = None

    def add(self, term: Term) -> None:
        self.terms.setdefault(term.lang, []).append(term)

    def terms_for(self, lang: str | None, role: str, fallback: bool = True) -> list[Term]:
        """Terms in ``lang`` (exact code first, then region/language fallback); the role key of a CSV without
        languages when nothing else matches."""
        if lang:
            exact = self.terms.get(lang)
            if exact:
                return exact
            found = [t for key, ts in self.terms.items() if key not in (SRC_ROLE, TGT_ROLE)
                     and lang_matches(lang, key, fallback) for t in ts]
            if found:
                return found
        return self.terms.get(role, [])


@dataclass
class TermHit:
    """A glossary term found in a source segment."""

    concept: Concept
    term: Term
    start: int
    end: int
    text: str  # as written in the source
    targets: list[str] = field(default_factory=list)  # allowed target terms (preferred first)
    forbidden: list[str] = field(default_factory=list)

    @property
    def dnt(self) -> bool:
        return self.concept.dnt


@dataclass
class TermIssue:
    kind: str  # 'missing' | 'dnt' | 'forbidden' | 'admitted'
    source_term: str
    expected: list[str]
    found: str | None
    concept_id: str
    message: str
    severity: str = "error"  # 'admitted' is a 'warning'

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "source_term": self.source_term,
                "expected": self.expected, "found": self.found, "concept": self.concept_id, "message": self.message}


@dataclass
class UnitCompliance:
    unit_id: str
    source: str
    target: str
    hits: list[TermHit] = field(default_factory=list)
    issues: list[TermIssue] = field(default_factory=list)
    ok_hits: int = 0

    @property
    def ok(self) -> bool:
        return not any(i.severity == "error" for i in self.issues)

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.unit_id, "source": self.source, "target": self.target,
                "terms": [{"term": h.text, "concept": h.concept.id, "targets": h.targets, "dnt": h.dnt}
                          for h in self.hits],
                "ok": self.ok, "issues": [i.as_dict() for i in self.issues]}


@dataclass
class ComplianceReport:
    units: list[UnitCompliance]
    checked_units: int = 0
    skipped_units: int = 0  # no target

    @property
    def terms_checked(self) -> int:
        return sum(len(u.hits) for u in self.units)

    @property
    def terms_ok(self) -> int:
        return sum(u.ok_hits for u in self.units)

    @property
    def compliance(self) -> float:
        """Percentage of source term occurrences whose target is right (allowed term present, DNT kept, no
        forbidden variant); 100.0 when no term occurs."""
        return 100.0 * self.terms_ok / self.terms_checked if self.terms_checked else 100.0

    @property
    def violations(self) -> list[UnitCompliance]:
        return [u for u in self.units if u.issues]

    def as_dict(self) -> dict[str, Any]:
        return {"compliance": round(self.compliance, 2), "terms_checked": self.terms_checked,
                "terms_ok": self.terms_ok, "units_checked": self.checked_units, "units_skipped": self.skipped_units,
                "units": [u.as_dict() for u in self.violations]}


# ----------------------------------------------------------------------------------------------------------------
# text helpers


def fold(text: str) -> str:
    """Lower case without diacritics (ä -> a, ç -> c, ß -> ss); one output char per input char except ß."""
    text = text.casefold()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _deliberate_case(text: str) -> bool:
    return any(c.isupper() for c in text[1:])


_VOWELS = set("aeiou")


def english_forms(word: str, noun: bool = False) -> set[str]:
    """Regular inflected forms of an English word (suffix rules, no stemmer); a noun gets no verb forms."""
    w = word
    forms = {w}
    if len(w) < 3 or not w.isalpha():
        return forms | {w + "s"} if w.isalpha() and len(w) >= 2 else forms
    lw = w.lower()
    forms |= {w + "s", w + "es", w + "'s", w + "\u2019s", w + "s'"}
    if noun:
        if lw.endswith("y") and lw[-2] not in _VOWELS:
            forms.add(w[:-1] + "ies")
        return forms
    if lw.endswith("e"):
        forms |= {w + "d", w[:-1] + "ing"}
    else:
        forms |= {w + "ed", w + "ing"}
    if lw.endswith("y") and lw[-2] not in _VOWELS:
        forms |= {w[:-1] + "ies", w[:-1] + "ied"}
    if (lw[-1] not in _VOWELS and lw[-1] not in "wxy" and lw[-2] in _VOWELS and lw[-3] not in _VOWELS):
        forms |= {w + w[-1] + "ed", w + w[-1] + "ing"}
    return forms


def _stem(folded: str, lang: str | None) -> str | None:
    """The stem a target word must start with (see the module docstring), None for short words."""
    if len(folded) < MIN_STEM or not folded.isalpha():
        return None
    base = lang_base(lang) if lang and lang not in (SRC_ROLE, TGT_ROLE) else ""
    stem = folded
    if base in ROMANCE and len(folded) >= 6 and folded[-2:] in ("ar", "er", "ir"):
        stem = folded[:-2]
    elif base in ("de", "nl") and len(folded) >= 7 and folded[-3:] in ("ern", "eln"):
        stem = folded[:-1]
    elif base in ("de", "nl") and len(folded) >= 6 and folded.endswith("en"):
        stem = folded[:-2]
    elif len(folded) >= 5 and folded[-1] in "aeo":
        stem = folded[:-1]
    return stem if len(stem) >= MIN_STEM else folded[:MIN_STEM]


def _target_regex(term: str, lang: str | None) -> re.Pattern:
    """Regex over ``fold(target)`` finding ``term`` with inflection tolerance."""
    words = [w for w in re.split(r"[\s\u00a0]+", fold(term).strip()) if w]
    base = lang_base(lang) if lang and lang not in (SRC_ROLE, TGT_ROLE) else ""
    compound = base in COMPOUNDING
    parts = []
    for n, w in enumerate(words):
        pieces = [re.escape(p) for p in w.split("-")]
        stem = _stem(w, lang) if len(pieces) == 1 else None
        if stem is None:
            rx = r"[-\s]?".join(pieces) + r"(?:s|es|e|n|en|er)?"
        else:
            rx = re.escape(stem) + rf"\w{{0,{MAX_TAIL}}}"
            if base == "de":
                rx = "(?:ge)?" + rx
            if compound:
                if n == 0:
                    rx = r"\w*?" + rx
                if n == len(words) - 1:
                    rx = rx + r"\w*"
        parts.append(rx)
    return re.compile(r"(?<!\w)" + r"[\s\u00a0-]+".join(parts) + r"(?!\w)")


def _source_regex(term: Term, src_lang: str | None, inflect: bool) -> re.Pattern:
    text = term.text.strip()
    english = not src_lang or src_lang in (SRC_ROLE, TGT_ROLE) or lang_base(src_lang) == "en"
    if inflect and not english:
        if term.case_sensitive:  # a stem rule on folded text would lose the case
            inflect = False
        else:
            return _target_regex(text, src_lang)  # over fold(text); the caller folds
    words = [w for w in re.split(r"[\s\u00a0]+", text) if w]
    parts = []
    for w in words:
        pieces = [re.escape(p) for p in w.split("-")]
        if inflect and len(pieces) == 1 and w.isalpha():
            noun = (term.part_of_speech or "").lower() in ("noun", "propernoun", "n")
            forms = sorted(english_forms(w, noun), key=len, reverse=True)
            parts.append("(?:" + "|".join(re.escape(f) for f in forms) + ")")
        else:
            parts.append(r"[-\s\u00a0]?".join(pieces))
    flags = 0 if term.case_sensitive else re.IGNORECASE
    return re.compile(r"(?<![\w-])" + r"[\s\u00a0-]+".join(parts) + r"(?![\w]|-\w)", flags)


# ----------------------------------------------------------------------------------------------------------------
# the glossary


class Glossary:
    def __init__(self, concepts: Iterable[Concept] = (), *, path: str | Path | None = None,
                 src_lang: str | None = None, tgt_lang: str | None = None, inflect: bool = True,
                 fallback: bool = True):
        self.concepts: list[Concept] = list(concepts)
        self.path = str(path) if path else None
        self.src_lang = normalize_lang(src_lang)
        self.tgt_lang = normalize_lang(tgt_lang)
        self.inflect = inflect
        self.fallback = fallback
        self._matchers: dict[tuple[str | None, str | None], _Matcher] = {}

    def __len__(self) -> int:
        return len(self.concepts)

    def __iter__(self):
        return iter(self.concepts)

    @property
    def languages(self) -> list[str]:
        return sorted({lang for c in self.concepts for lang in c.terms})

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | Path, *, src_lang: str | None = None, tgt_lang: str | None = None,
             inflect: bool = True, fallback: bool = True) -> "Glossary":
        path = Path(path)
        if not path.is_file():
            raise GlossaryError("no such file", path=path)
        with open(path, "rb") as fh:
            head = fh.read(4096)
        stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if stripped.startswith(b"<") or b"\x00<" in head[:4] or b"<\x00" in head[:4]:
            concepts = load_tbx(path)
        else:
            concepts, src_lang, tgt_lang = load_csv(path, src_lang, tgt_lang)
        return cls(concepts, path=path, src_lang=src_lang, tgt_lang=tgt_lang, inflect=inflect, fallback=fallback)

    # ------------------------------------------------------------------ matching

    def _matcher(self, src_lang: str | None, tgt_lang: str | None) -> "_Matcher":
        key = (normalize_lang(src_lang) or self.src_lang, normalize_lang(tgt_lang) or self.tgt_lang)
        m = self._matchers.get(key)
        if m is None:
            m = self._matchers[key] = _Matcher(self, *key)
        return m

    def find(self, source: str | Segment, src_lang: str | None = None, tgt_lang: str | None = None) -> list[TermHit]:
        """Terms of the glossary occurring in a source text, in text order (longest match wins)."""
        text = source.text if isinstance(source, Segment) else source
        return self._matcher(src_lang, tgt_lang).find(text)

    def check(self, source: str | Segment, target: str | Segment, src_lang: str | None = None,
              tgt_lang: str | None = None, unit_id: str = "") -> UnitCompliance:
        """Compliance of one target: per source term, allowed target present / DNT kept / no forbidden variant."""
        s = source.text if isinstance(source, Segment) else source
        t = target.text if isinstance(target, Segment) else target
        return self._matcher(src_lang, tgt_lang).check(s, t, unit_id)

    def check_document(self, doc: Document, src_lang: str | None = None, tgt_lang: str | None = None,
                       *, include_protected: bool = True) -> ComplianceReport:
        src = normalize_lang(src_lang) or normalize_lang(doc.source_lang) or self.src_lang
        tgt = normalize_lang(tgt_lang) or normalize_lang(doc.target_lang) or self.tgt_lang
        report = ComplianceReport(units=[])
        for unit in doc.units:
            if not unit.has_target or (not include_protected and unit.protected) or not unit.translatable:
                report.skipped_units += 1
                continue
            report.checked_units += 1
            report.units.append(self.check(unit.source, unit.target, src, tgt, unit_id=unit.id))
        return report

    def check_units(self, units: Iterable[Unit], src_lang: str | None, tgt_lang: str | None) -> ComplianceReport:
        report = ComplianceReport(units=[])
        for unit in units:
            if not unit.has_target:
                report.skipped_units += 1
                continue
            report.checked_units += 1
            report.units.append(self.check(unit.source, unit.target, src_lang, tgt_lang, unit_id=unit.id))
        return report

    def prompt_terms(self, source: str | Segment, src_lang: str | None = None,
                     tgt_lang: str | None = None) -> list[tuple[str, str]]:
        """(source term, target term) pairs to put in a prompt: DNT terms map to themselves."""
        out: list[tuple[str, str]] = []
        for hit in self.find(source, src_lang, tgt_lang):
            target = hit.term.text if hit.dnt else (hit.targets[0] if hit.targets else None)
            if target and (hit.term.text, target) not in out:
                out.append((hit.term.text, target))
        return out


class _Entry:
    __slots__ = ("concept", "term", "regex", "targets", "forbidden", "target_rx", "forbidden_rx")

    def __init__(self, concept: Concept, term: Term, regex: re.Pattern, targets: list[Term],
                 forbidden: list[Term], tgt_lang: str | None):
        self.concept, self.term, self.regex = concept, term, regex
        self.targets = [t.text for t in targets]
        self.forbidden = [t.text for t in forbidden]
        self.target_rx = [(t, _target_regex(t.text, tgt_lang)) for t in targets]
        self.forbidden_rx = [(t, _target_regex(t.text, tgt_lang)) for t in forbidden]


class _Matcher:
    """Terms of one language pair, indexed by the first letters of their first word."""

    def __init__(self, glossary: Glossary, src_lang: str | None, tgt_lang: str | None):
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        english = not src_lang or lang_base(src_lang) == "en"
        self.folded_source = glossary.inflect and not english
        self.index: dict[str, list[_Entry]] = {}
        for concept in glossary.concepts:
            sources = [t for t in concept.terms_for(src_lang, SRC_ROLE, glossary.fallback) if not t.forbidden]
            tgt_terms = concept.terms_for(tgt_lang, TGT_ROLE, glossary.fallback) if tgt_lang or \
                TGT_ROLE in concept.terms else []
            if concept.terms.get(SRC_ROLE) is not None and not tgt_lang:
                tgt_terms = concept.terms.get(TGT_ROLE, [])
            allowed = sorted((t for t in tgt_terms if not t.forbidden),
                             key=lambda t: 0 if t.status == PREFERRED else 1 if t.status is None else 2)
            forbidden = [t for t in tgt_terms if t.forbidden]
            for term in sources:
                text = term.text.strip()
                if not text:
                    continue
                case_sens = term.case_sensitive and not self.folded_source
                rx = _source_regex(term, src_lang, glossary.inflect)
                entry = _Entry(concept, term, rx, allowed, forbidden, tgt_lang)
                first = re.split(r"[\s\u00a0-]+", text)[0]
                key = (first if case_sens else fold(first))[:3]
                if self.folded_source:
                    key = fold(first)[:3]
                self.index.setdefault(key.lower(), []).append(entry)

    def find(self, text: str) -> list[TermHit]:
        return [hit for hit, _ in self._find(text)]

    def _find(self, text: str) -> list[tuple[TermHit, _Entry]]:
        hay = fold(text) if self.folded_source else text
        if len(hay) != len(text):  # ß -> ss: fall back to the unfolded text for offsets
            hay = text.lower()
        hits: list[tuple[int, int, _Entry]] = []
        for tok in re.finditer(r"\w+", hay):
            low = fold(tok.group(0))
            for entry in self.index.get(low[:3], ()):
                m = entry.regex.match(hay, tok.start())
                if m and m.end() > m.start():
                    hits.append((m.start(), m.end(), entry))
        # longest match wins, then the earliest; the same span may serve two concepts (homonyms): keep both
        hits.sort(key=lambda h: (-(h[1] - h[0]), h[0]))
        taken: list[tuple[int, int]] = []
        out: list[tuple[TermHit, _Entry]] = []
        seen: set[tuple[int, int, str]] = set()
        for start, end, entry in hits:
            if (start, end) not in taken and any(start < e and s < end for s, e in taken):
                continue
            if (start, end, entry.concept.id) in seen:
                continue
            seen.add((start, end, entry.concept.id))
            taken.append((start, end))
            out.append((TermHit(entry.concept, entry.term, start, end, text[start:end], list(entry.targets),
                                list(entry.forbidden)), entry))
        out.sort(key=lambda h: h[0].start)
        return out

    def check(self, source: str, target: str, unit_id: str = "") -> UnitCompliance:
        result = UnitCompliance(unit_id=unit_id, source=source, target=target)
        found_hits = self._find(source)
        result.hits = [h for h, _ in found_hits]
        if not found_hits:
            return result
        ftarget = fold(target)
        same_len = len(ftarget) == len(target)
        # every allowed / forbidden target term occurrence: [hit index, term, start, end, distance, alive]
        allowed: list[list] = []
        forbidden: list[list] = []
        for n, (hit, entry) in enumerate(found_hits):
            if hit.dnt:
                continue
            for bucket, pairs in ((allowed, entry.target_rx), (forbidden, entry.forbidden_rx)):
                for term, rx in pairs:
                    for m in rx.finditer(ftarget):
                        dist = Levenshtein.distance(fold(term.text), m.group(0))
                        bucket.append([n, term, m.start(), m.end(), dist, True])
        # a word matched by an allowed term of one concept and a forbidden variant of another goes to the
        # closer of the two (pt: "arquivar" is archive's allowed term, "arquivo" file's forbidden variant)
        for f in forbidden:
            rivals = [a for a in allowed if a[2] < f[3] and f[2] < a[3]]
            if not rivals:
                continue
            if min(a[4] for a in rivals) <= f[4]:
                f[5] = False
            else:
                for a in rivals:
                    a[5] = False
        for n, (hit, entry) in enumerate(found_hits):
            problems: list[TermIssue] = []
            if hit.dnt:
                if hit.term.text not in target and hit.text not in target:
                    problems.append(TermIssue("dnt", hit.text, [hit.term.text], None, hit.concept.id,
                                              f"do-not-translate term {hit.term.text!r} is not kept unchanged"))
            else:
                mine = [a for a in allowed if a[0] == n and a[5]]
                if entry.targets and not mine:
                    problems.append(TermIssue("missing", hit.text, list(entry.targets), None, hit.concept.id,
                                              f"{hit.text!r} should be translated as "
                                              + " / ".join(repr(t) for t in entry.targets)))
                elif mine:
                    preferred = [t for t, _ in entry.target_rx if t.status == PREFERRED]
                    if preferred and not any(a[1].status == PREFERRED for a in mine) and \
                            any(a[1].status == ADMITTED for a in mine):
                        used = next(a[1].text for a in mine if a[1].status == ADMITTED)
                        problems.append(TermIssue("admitted", hit.text, [t.text for t in preferred], used,
                                                  hit.concept.id, f"admitted term {used!r} used; preferred is "
                                                  + " / ".join(repr(t.text) for t in preferred),
                                                  severity="warning"))
                bad = next((f for f in forbidden if f[0] == n and f[5]), None)
                if bad is not None:
                    shown = target[bad[2]:bad[3]] if same_len else ftarget[bad[2]:bad[3]]
                    problems.append(TermIssue("forbidden", hit.text, list(entry.targets), shown, hit.concept.id,
                                              f"forbidden variant {bad[1].text!r} used for {hit.text!r}"
                                              + (f"; use {entry.targets[0]!r}" if entry.targets else "")))
            result.issues.extend(problems)
            if not any(p.severity == "error" for p in problems):
                result.ok_hits += 1
        return result


# ----------------------------------------------------------------------------------------------------------------
# TBX


def _local(el: etree._Element) -> str:
    return _xml.localname(el)


def _xml_lang(el: etree._Element) -> str | None:
    return el.get(f"{{{_xml.XML_NS}}}lang") or el.get("lang")


def _text(el: etree._Element) -> str:
    return " ".join("".join(el.itertext()).split())


def load_tbx(path: Path) -> list[Concept]:
    raw = path.read_bytes()
    text, _, _ = _xml.decode(raw, path)
    _xml.check_doctype(text, path)
    try:
        root = etree.fromstring(raw, _xml._parser())
    except etree.XMLSyntaxError as exc:
        raise GlossaryError(f"not well-formed XML: {exc.msg}", path=path,
                            line=exc.position[0] if exc.position else None) from None
    for el in root.iter(etree.Entity):
        raise GlossaryError(f"entity reference &{el.text.strip('&;')}; is not allowed", path=path,
                            line=el.sourceline)
    if _local(root) not in ("martif", "tbx"):
        raise GlossaryError(f"not a TBX file: the root element is <{_local(root)}>", path=path,
                            hint="expected <martif> (TBX v2) or <tbx> (TBX v3)")
    if _local(root) == "tbx":
        problems = validate_tbx3(root)
        if problems:
            line, message = problems[0]
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise GlossaryError(f"invalid TBX: {message}{more}", path=path, line=line,
                                hint="fix the file or export it again from your terminology tool")
    default_lang = normalize_lang(_xml_lang(root))
    concepts: list[Concept] = []
    for n, entry in enumerate(el for el in root.iter() if isinstance(el.tag, str)
                              and _local(el) in ("termEntry", "conceptEntry")):
        concept = Concept(id=entry.get("id") or f"c{n + 1}")
        for child in entry:
            if not isinstance(child.tag, str):
                continue
            name, typ = _local(child), (child.get("type") or "").lower()
            if name == "note" and concept.note is None:
                concept.note = _text(child)
            elif typ == "subjectfield" or name == "subjectField":
                concept.subject = _text(child)
            elif typ == "definition" and concept.definition is None:
                concept.definition = _text(child)
            elif typ == "translationnote" and _text(child).lower() in _DNT_VALUES:
                concept.dnt = True
        for lang_el in (el for el in entry.iter() if isinstance(el.tag, str) and _local(el) in ("langSet", "langSec")):
            lang = normalize_lang(_xml_lang(lang_el)) or default_lang
            if not lang:
                raise GlossaryError(f"<{_local(lang_el)}> without xml:lang", path=path, line=lang_el.sourceline,
                                    unit=concept.id)
            for group in (el for el in lang_el.iter() if isinstance(el.tag, str)
                          and _local(el) in ("tig", "ntig", "termSec")):
                term_el = next((el for el in group.iter() if isinstance(el.tag, str) and _local(el) == "term"), None)
                if term_el is None:
                    continue
                value = _text(term_el)
                if not value:
                    continue
                info: dict[str, str] = {}
                for el in group.iter():
                    if not isinstance(el.tag, str) or el is term_el:
                        continue
                    name = _local(el)
                    key = (el.get("type") or "") if name in ("termNote", "descrip", "admin") else name
                    if key and key not in info:
                        info[key] = _text(el)
                status = None
                for kind in _STATUS_TYPES:  # administrativeStatus first, then usageStatus, normativeAuthorization
                    val = next((v for k, v in info.items() if k.lower() == kind), None)
                    if val and status is None:
                        status = _STATUS_VALUES.get(val.strip().lower().replace(" ", ""))
                if info.get("translationNote", "").strip().lower() in _DNT_VALUES:
                    concept.dnt = True
                concept.add(Term(value, lang, status, _deliberate_case(value), info.get("partOfSpeech"),
                                 info.get("note")))
        if concept.terms:
            concepts.append(concept)
    return concepts


# TBX v3 (ISO 30042:2019) structure rules that change meaning when broken, and the TBX-Min dialect's closed
# list of data categories. Checked by hand rather than with the RELAX NG/Schematron files, which are not shipped.
_TYPED = {"admin", "adminNote", "descrip", "descripNote", "termNote", "transac", "transacNote", "ref", "xref"}
_MIN_TYPES = {"admin": {"customerSubset"}, "descrip": {"subjectField"},
              "termNote": {"partOfSpeech", "usageStatus"}}
_MIN_USAGE = {"preferred", "admitted", "notRecommended", "obsolete", "deprecated", "superseded"}
_HEADER_TEXT = {"sourceDesc", "encodingDesc", "revisionDesc", "publicationStmt", "titleStmt"}


def validate_tbx3(root: etree._Element) -> list[tuple[int | None, str]]:
    """(line, problem) for each broken rule of the TBX v3 core structure and, for TBX-Min, its dialect."""
    problems: list[tuple[int | None, str]] = []
    tbx_ns = _xml.namespace(root)
    dca = (root.get("style") or "dca").lower() == "dca"
    minimal = (root.get("type") or "").lower() == "tbx-min"
    for el in root.iter():
        if not isinstance(el.tag, str) or _xml.namespace(el) != tbx_ns:
            continue
        name = _local(el)
        children = [c for c in el if isinstance(c.tag, str)]
        if name == "termSec":
            terms = [c for c in children if _local(c) == "term"]
            if not children or _local(children[0]) != "term":
                problems.append((el.sourceline, "<term> must come first in <termSec>"))
            if len(terms) > 1:
                problems.append((terms[1].sourceline, "only one <term> is allowed per <termSec>"))
        elif name == "descripGrp" and dca:  # DCT style writes dialect elements (basic:definition, basic:source)
            if sum(_local(c) == "descrip" for c in children) != 1:
                problems.append((el.sourceline, "a <descripGrp> holds exactly one <descrip>"))
        elif name == "text":
            for c in children:
                if _local(c) not in ("body", "back"):
                    problems.append((c.sourceline, f"<{_local(c)}> may not be a direct child of <text>"))
        elif name in _HEADER_TEXT and (el.text or "").strip():
            problems.append((el.sourceline, f"text in <{name}> must be wrapped in <p>"))
        if dca and name in _TYPED and not el.get("type"):
            problems.append((el.sourceline, f"<{name}> needs a type attribute"))
        if minimal:
            if name in ("ref", "xref"):
                problems.append((el.sourceline, f"<{name}> is not allowed in TBX-Min"))
            elif name in _MIN_TYPES and el.get("type") and el.get("type") not in _MIN_TYPES[name]:
                problems.append((el.sourceline, f'<{name} type="{el.get("type")}"> is not a TBX-Min data category'))
            if name == "termNote" and el.get("type") == "usageStatus" and _text(el) not in _MIN_USAGE:
                problems.append((el.sourceline, f"usageStatus {_text(el)!r} is not one of {sorted(_MIN_USAGE)}"))
    return problems


# ----------------------------------------------------------------------------------------------------------------
# CSV / TSV

_HEADER_ALIASES = {
    "source": "source", "src": "source", "term": "source", "source term": "source", "source_term": "source",
    "target": "target", "tgt": "target", "translation": "target", "target term": "target",
    "target_term": "target",
    "case_sensitive": "case", "case-sensitive": "case", "case sensitive": "case", "case": "case",
    "do_not_translate": "dnt", "do-not-translate": "dnt", "do not translate": "dnt", "dnt": "dnt",
    "untranslatable": "dnt", "translate": "translate",
    "forbidden": "forbidden", "forbidden_targets": "forbidden", "forbidden variants": "forbidden",
    "deprecated": "forbidden",
    "note": "note", "notes": "note", "comment": "note", "description": "note", "definition": "note",
}
_LANG_CODE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


def load_csv(path: Path, src_lang: str | None = None,
             tgt_lang: str | None = None) -> tuple[list[Concept], str | None, str | None]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            text = raw.decode("utf-16")
        else:
            raise GlossaryError("not UTF-8 text", path=path, hint="save the glossary as UTF-8") from None
    first = text.split("\n", 1)[0]
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") or "\t" in first else (
        ";" if first.count(";") > first.count(",") else ",")
    # newline="": the csv module's own line handling (quoted fields may hold line breaks; a lone CR ends a row)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        rows = [r for r in reader if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise GlossaryError(f"not a valid CSV/TSV glossary: {exc}", path=path, line=reader.line_num) from None
    if not rows:
        return [], normalize_lang(src_lang), normalize_lang(tgt_lang)
    header = [c.strip().lower() for c in rows[0]]
    columns: dict[str, int] = {}
    langs: list[tuple[int, str]] = []
    for i, name in enumerate(header):
        if name in _HEADER_ALIASES and _HEADER_ALIASES[name] not in columns:
            columns[_HEADER_ALIASES[name]] = i
        elif _LANG_CODE.match(rows[0][i].strip()) and len(rows[0][i].strip()) in (2, 3, 5, 6, 7, 10):
            langs.append((i, normalize_lang(rows[0][i].strip())))
    has_header = ("source" in columns and "target" in columns) or len(langs) >= 2 or (
        "source" in columns and langs)
    if has_header:
        body = rows[1:]
        if "source" not in columns and langs:
            columns["source"], src_from_header = langs[0]
            src_lang = src_lang or src_from_header
            langs = langs[1:]
        if "target" not in columns and langs:
            columns["target"], tgt_from_header = langs[0]
            tgt_lang = tgt_lang or tgt_from_header
    else:
        body = rows
        columns = {"source": 0, "target": 1}
    if not src_lang and not tgt_lang:
        # glossary.de.csv / terms.en-de.tsv
        parts = path.name.split(".")
        if len(parts) >= 3:
            code = parts[-2].replace("_", "-")
            if "-" in code and len(code.split("-")) == 2 and all(len(p) in (2, 3) for p in code.split("-")) \
                    and code.split("-")[1].islower():
                src_lang, tgt_lang = code.split("-")
            elif _LANG_CODE.match(code):
                tgt_lang = code
    src = normalize_lang(src_lang) or SRC_ROLE
    tgt = normalize_lang(tgt_lang) or TGT_ROLE
    concepts = []
    for n, row in enumerate(body, start=2 if has_header else 1):
        def col(name: str) -> str:
            i = columns.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        source, target = col("source"), col("target")
        if not source:
            continue
        case = col("case").lower() in _TRUE if "case" in columns else _deliberate_case(source)
        dnt = col("dnt").lower() in _TRUE or (col("translate").lower() in ("no", "false", "0"))
        c = Concept(id=f"row{n}", dnt=dnt, note=col("note") or None)
        c.add(Term(source, src, None, case))
        if target:
            c.add(Term(target, tgt, PREFERRED, case if target == source else _deliberate_case(target)))
        elif dnt:
            c.add(Term(source, tgt, PREFERRED, True))
        for variant in col("forbidden").split("|"):
            if variant.strip():
                c.add(Term(variant.strip(), tgt, DEPRECATED, False))
        concepts.append(c)
    return concepts, (None if src == SRC_ROLE else src), (None if tgt == TGT_ROLE else tgt)
