"""CAT-style analysis: words per TM match band, internal repetitions, per file and in total.

This is the first thing a project manager runs: quotes and deadlines are made from it. The numbers follow the
conventions of Trados Studio's and memoQ's analyses so that they can be compared with what a vendor sends:

Word counting (``count_words``)
    * a word is a run of letters, digits and joining marks between whitespace; ``/`` also separates words
      ("he/she" = 2, as in Trados Studio and memoQ);
    * hyphenated and apostrophe-joined words count once ("up-to-date" = 1, "don't" = 1), as in Trados Studio
      (Trados 2007 counted 2+) and memoQ;
    * numbers count as words ("Revenue rose by 1.2 million" = 5; "8%" = 1): translators check, format and
      sometimes convert them, and Studio counts them since 2009 — a segment of only numbers counts too;
    * inline codes (tags, placeholders) are never words; they are counted separately as ``tags`` (a pair is 2);
    * punctuation and symbols alone are not words (a lone "—" or "•" = 0);
    * every CJK ideograph, kana and Hangul syllable counts as one word (Studio's rule for ideograms); Thai,
      Lao, Khmer and Myanmar have no spaces and are counted as one word per run (no dictionary segmentation).
    Characters: all characters of the translatable text except whitespace; codes excluded (Studio's rule).

Match bands (``Bands``)
    Each unit falls into exactly one category, decided in this order:
    1. ``locked``: locked, approved/final or translate="no" units (not to be translated; listed, not billed);
    2. ``context`` (101 %): a TM match with the same context (resname / msgctxt / neighbours);
    3. ``repetition``: the same source (whitespace-normalised, same codes) as a unit earlier in the analysis,
       across all files in the order given (Trados' "repetitions" + "cross-file repetitions"; memoQ's
       "repetitions"). The first occurrence is counted in its TM band; later ones are repetitions, even when
       the TM has them: once translated, the repeat is propagated for free in every CAT tool;
    4. the TM bands by the best match score: ``100``, then each band's lower bound (default 95, 85, 75, 50);
    5. ``new``: no match at or above the lowest band.

Weights give the weighted word count used for quotes (``weighted_words``); the defaults are a common LSP grid
(context 0 %, repetitions and 100 % 10 %, 95–99 % 30 %, 85–94 % 60 %, below 85 % and new 100 %) and are
meant to be replaced by the client's own.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from tower_cat.document import Document, Segment, Unit
from tower_cat.errors import TowerCatError


class AnalysisError(TowerCatError):
    """Bad analysis settings (bands, weights) or files without the languages the analysis needs."""


# ----------------------------------------------------------------------------------------------- counting

_JOINERS = "-\u2010\u2011'\u2019"  # hyphens and apostrophes keep a word together
_NO_SPACE_SCRIPTS = ("THAI", "LAO", "KHMER", "MYANMAR")


def _is_ideograph(ch: str) -> bool:
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2EBEF or
            0xF900 <= cp <= 0xFAFF or 0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or
            0xAC00 <= cp <= 0xD7AF or 0xFF66 <= cp <= 0xFF9D)


def _is_wordy(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LNM" or ch in "_"


def _no_space_script(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(_NO_SPACE_SCRIPTS)


def count_words(text: str) -> int:
    """Words in a plain text, by the conventions in the module docstring."""
    words = 0
    in_word = False
    no_space_run = False
    prev = ""
    n = len(text)
    for i, ch in enumerate(text):
        if _is_ideograph(ch):
            words += 1
            in_word = False
        elif _is_wordy(ch):
            script_run = _no_space_script(ch)
            if not in_word or (no_space_run != script_run):
                words += 1
            in_word, no_space_run = True, script_run
        elif ch in _JOINERS and in_word and i + 1 < n and _is_wordy(text[i + 1]) and not _is_ideograph(text[i + 1]):
            pass  # "up-to-date", "don't": the word goes on
        elif ch in ".,:" and in_word and prev.isdigit() and i + 1 < n and text[i + 1].isdigit():
            pass  # 1.2 / 1,000 / 10:30: one number
        else:
            in_word = False
        prev = ch
    return words


def count_characters(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def segment_counts(segment: Segment) -> tuple[int, int, int]:
    """(words, characters, tags) of a segment: words and characters of its text runs only."""
    words = chars = 0
    for part in segment.parts:
        if isinstance(part, str):
            words += count_words(part) if part else 0
            chars += count_characters(part)
    # text runs split by a code ("up<1/>date") are counted as separate runs: a code is a word boundary
    return words, chars, len(segment.codes)


# ------------------------------------------------------------------------------------------------- bands


@dataclass(frozen=True)
class Bands:
    """Fuzzy band lower bounds (descending, each 1-99) and a weight per category."""

    lower: tuple[int, ...] = (95, 85, 75, 50)
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self):
        low = tuple(sorted({int(b) for b in self.lower}, reverse=True))
        if not low or any(not 1 <= b <= 99 for b in low):
            raise AnalysisError(f"fuzzy bands must be between 1 and 99, got {list(self.lower)}")
        object.__setattr__(self, "lower", low)
        unknown = set(self.weights) - set(self.categories) - {"fuzzy"} - set(DEFAULT_WEIGHTS)
        if unknown:
            raise AnalysisError(f"weights for unknown categories {sorted(unknown)}; categories are "
                                f"{', '.join(self.categories)}")
        for name, w in self.weights.items():
            if not 0 <= w <= 10:
                raise AnalysisError(f"weight of {name!r} must be between 0 and 10, got {w}")

    @property
    def categories(self) -> list[str]:
        """Category names in report order."""
        return ["context", "repetition", "100"] + [self.band_name(i) for i in range(len(self.lower))] + [
            "new", "locked"]

    def band_name(self, i: int) -> str:
        upper = 99 if i == 0 else self.lower[i - 1] - 1
        return f"{self.lower[i]}-{upper}"

    def category(self, score: float | None) -> str:
        if score is None:
            return "new"
        if score >= 100:
            return "100"
        for i, low in enumerate(self.lower):
            if score >= low:
                return self.band_name(i)
        return "new"

    def weight(self, category: str) -> float:
        if category in self.weights:
            return self.weights[category]
        if category not in ("context", "repetition", "100", "new", "locked"):
            # a fuzzy band: its own weight, else the generic "fuzzy" one, else the nearest default band
            if "fuzzy" in self.weights:
                return self.weights["fuzzy"]
            low = int(category.split("-")[0])
            return 0.3 if low >= 95 else 0.6 if low >= 85 else 1.0
        return DEFAULT_WEIGHTS.get(category, 1.0)

    @classmethod
    def parse(cls, bands: str | None = None, weights: str | None = None) -> "Bands":
        """From CLI strings: ``"95,85,75,50"`` and ``"context=0,repetition=0.1,100=0.1,95-99=0.3,new=1"``."""
        lower: tuple[int, ...] = (95, 85, 75, 50)
        if bands:
            try:
                lower = tuple(int(b) for b in bands.replace(" ", "").split(",") if b)
            except ValueError:
                raise AnalysisError(f"--bands must be comma-separated integers, got {bands!r}") from None
        w = dict(DEFAULT_WEIGHTS)
        known = set(cls(lower).categories) | {"fuzzy"}
        if weights:
            for item in weights.split(","):
                if not item.strip():
                    continue
                name, sep, value = item.partition("=")
                try:
                    w[name.strip()] = float(value)
                except ValueError:
                    raise AnalysisError(f"weights are name=number pairs, got {item!r}") from None
                if not sep:
                    raise AnalysisError(f"weights are name=number pairs, got {item!r}")
                if name.strip() not in known:
                    raise AnalysisError(f"no category {name.strip()!r} to weigh; categories are "
                                        f"{', '.join(sorted(known))}")
        return cls(lower, w)


DEFAULT_WEIGHTS: dict[str, float] = {"context": 0.0, "repetition": 0.1, "100": 0.1, "95-99": 0.3,
                                     "85-94": 0.6, "75-84": 1.0, "50-74": 1.0, "new": 1.0, "locked": 0.0}


# ------------------------------------------------------------------------------------------------ results


@dataclass
class Counts:
    segments: int = 0
    words: int = 0
    characters: int = 0
    tags: int = 0

    def add(self, words: int, characters: int, tags: int) -> None:
        self.segments += 1
        self.words += words
        self.characters += characters
        self.tags += tags

    def merge(self, other: "Counts") -> None:
        self.segments += other.segments
        self.words += other.words
        self.characters += other.characters
        self.tags += other.tags


@dataclass
class FileAnalysis:
    """The analysis of one file (or the total): counts per category, in ``bands.categories`` order."""

    name: str
    bands: Bands
    categories: dict[str, Counts] = field(default_factory=dict)
    source_lang: str | None = None
    target_lang: str | None = None

    def __post_init__(self):
        for c in self.bands.categories:
            self.categories.setdefault(c, Counts())

    @property
    def total(self) -> Counts:
        t = Counts()
        for c in self.categories.values():
            t.merge(c)
        return t

    @property
    def weighted_words(self) -> float:
        return round(sum(self.bands.weight(name) * c.words for name, c in self.categories.items()), 2)

    def as_dict(self) -> dict[str, Any]:
        total = self.total
        return {
            "file": self.name, "source_lang": self.source_lang, "target_lang": self.target_lang,
            "categories": {name: {"segments": c.segments, "words": c.words, "characters": c.characters,
                                  "tags": c.tags, "weight": self.bands.weight(name),
                                  "percent_words": round(100 * c.words / total.words, 1) if total.words else 0.0}
                           for name, c in self.categories.items()},
            "total": {"segments": total.segments, "words": total.words, "characters": total.characters,
                      "tags": total.tags},
            "weighted_words": self.weighted_words,
        }


@dataclass
class Analysis:
    files: list[FileAnalysis]
    total: FileAnalysis
    bands: Bands
    tm: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"tm": self.tm, "bands": list(self.bands.lower),
                "weights": {c: self.bands.weight(c) for c in self.bands.categories},
                "files": [f.as_dict() for f in self.files], "total": self.total.as_dict()}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["file", "category", "segments", "words", "characters", "tags", "weight", "weighted_words"])
        for fa in [*self.files, self.total]:
            for name, c in fa.categories.items():
                wt = self.bands.weight(name)
                w.writerow([fa.name, name, c.segments, c.words, c.characters, c.tags, wt,
                            round(wt * c.words, 2)])
            t = fa.total
            w.writerow([fa.name, "total", t.segments, t.words, t.characters, t.tags, "", fa.weighted_words])
        return out.getvalue()

    def to_html(self) -> str:
        """A self-contained HTML page: one table per file and the total, with a bar per category."""
        parts = ["<!doctype html><html><head><meta charset='utf-8'><title>tower-cat analysis</title><style>",
                 "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
                 "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th:first-child,td:first-child"
                 "{text-align:left}.bar{background:#4a7fb0;height:10px}</style></head><body>",
                 "<h1>Analysis</h1>", f"<p>TM: {html.escape(self.tm or '(none)')}</p>"]
        for fa in [*self.files, self.total]:
            total = fa.total
            parts.append(f"<h2>{html.escape(fa.name)}</h2><table><tr><th>category</th><th>segments</th>"
                         "<th>words</th><th>characters</th><th>tags</th><th>% words</th><th></th>"
                         "<th>weight</th></tr>")
            for name, c in fa.categories.items():
                pct = 100 * c.words / total.words if total.words else 0.0
                parts.append(f"<tr><td>{html.escape(name)}</td><td>{c.segments}</td><td>{c.words}</td>"
                             f"<td>{c.characters}</td><td>{c.tags}</td><td>{pct:.1f}</td>"
                             f"<td><div class='bar' style='width:{2 * pct:.0f}px'></div></td>"
                             f"<td>{self.bands.weight(name):g}</td></tr>")
            parts.append(f"<tr><th>total</th><th>{total.segments}</th><th>{total.words}</th>"
                         f"<th>{total.characters}</th><th>{total.tags}</th><th>100.0</th><th></th><th></th></tr>"
                         f"<tr><td>weighted words</td><td colspan='7'>{fa.weighted_words:g}</td></tr></table>")
        parts.append("</body></html>")
        return "".join(parts)


# -------------------------------------------------------------------------------------------------- running


def _repetition_key(segment: Segment) -> tuple:
    text = re.sub(r"\s+", " ", segment.text).strip()
    return (text, tuple((c.kind.value, c.tag) for c in segment.codes))


def analyze_documents(docs: Sequence[Document], *, tm=None, bands: Bands | None = None,
                      source_lang: str | None = None, target_lang: str | None = None,
                      tm_name: str | None = None) -> Analysis:
    """Analyse documents in the order given (repetitions count across files in that order).

    ``source_lang``/``target_lang`` serve files that name no language of their own (PO often has no source).

    ``tm``: anything with ``lookup(unit, src, tgt, limit=, min_score=)`` returning matches with ``score``
    (a ``TranslationMemory``); without one every first occurrence is ``new``.
    """
    bands = bands or Bands()
    seen: set[tuple] = set()
    files: list[FileAnalysis] = []
    total = FileAnalysis("total", bands)
    min_score = float(bands.lower[-1])
    for doc in docs:
        src = doc.source_lang or source_lang
        tgt = doc.target_lang or target_lang
        if tm is not None and (not src or not tgt):
            raise AnalysisError(f"{doc.path}: the file names no {'source' if not src else 'target'} language; "
                                f"give the languages to analyse against the TM")
        fa = FileAnalysis(str(doc.path), bands, source_lang=src, target_lang=tgt)
        for unit in doc.units:
            fa.categories[_categorise(unit, tm, bands, src, tgt, seen, min_score)].add(*segment_counts(unit.source))
        for name, c in fa.categories.items():
            total.categories[name].merge(c)
        files.append(fa)
    return Analysis(files, total, bands, tm_name)


def _categorise(unit: Unit, tm, bands: Bands, src, tgt, seen: set, min_score: float) -> str:
    if unit.protected:
        return "locked"
    if unit.source.is_empty():
        return "locked" if not unit.source.codes else "new"
    score = None
    if tm is not None:
        matches = tm.lookup(unit, src, tgt, limit=1, min_score=min_score)
        if matches:
            score = matches[0].score
    if score is not None and score > 100:
        seen.add(_repetition_key(unit.source))
        return "context"
    key = _repetition_key(unit.source)
    if key in seen:
        return "repetition"
    seen.add(key)
    return bands.category(score)


def analyze_files(paths: Iterable, *, tm=None, bands: Bands | None = None, source_lang: str | None = None,
                  target_lang: str | None = None, tm_name: str | None = None) -> Analysis:
    from tower_cat import formats

    docs = [formats.load(p) for p in paths]
    return analyze_documents(docs, tm=tm, bands=bands, source_lang=source_lang, target_lang=target_lang,
                             tm_name=tm_name)
