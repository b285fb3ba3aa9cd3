"""Cheap, honest language identification for ``source=auto`` and DeepL requests without ``source_lang``.

No model, no download: a score per candidate language from (1) the writing system and (2) short function
words and letters typical of the language. Only the languages the served model supports are candidates, so
the answer is always one the model can translate from. What it can and cannot do:

* Scripts decide on their own where one language owns the script among the candidates: Hangul -> ko,
  kana -> ja, Han without kana -> zh, Greek -> el, Devanagari -> hi, Arabic -> ar, Hebrew -> he, Thai -> th.
  Cyrillic: Ukrainian letters (і ї є ґ) -> uk, otherwise ru (or bg/sr when those are candidates and ru is not).
* Latin-script languages are told apart by stopwords (the, und, le, el, de, het, …) and letters (ß, ã, ñ, ø,
  ł, ő, ř, ș …). A sentence of five or more words is usually right; one or two words often are not, and the
  confidence says so (it is low when the best two languages are close or no cue was found).
* Mixed or code-only text (numbers, tags, URLs) gets the fallback language (``en`` when supported) with
  confidence 0, as LibreTranslate does for text it cannot identify.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable

STOPWORDS: dict[str, set[str]] = {
    "en": set("the and of to is are was were in that it for on with as be this you not have has by at from "
              "or an will can your all which their if do".split()),
    "de": set("der die das und ist nicht ein eine zu den mit sich des auf für im dem von sie es wir ich "
              "werden wird sind oder auch an bei kann ihre".split()),
    "fr": set("le la les et est des un une du pas que qui pour dans en sur avec au ce il elle nous vous "
              "sont être ou par plus cette".split()),
    "es": set("el la los las y es de que en un una no por con para del se al lo su como más está son "
              "pero sus este esta".split()),
    "pt": set("o a os as e é de que em um uma não por com para do da dos das no na se ao ser mais foi "
              "está são seu sua isso".split()),
    "it": set("il lo la gli le e è di che un una non per con del della in sono si al alla come più "
              "questo questa anche".split()),
    "nl": set("de het een en is van niet dat in op te met voor zijn er ook aan als maar om dit deze "
              "wordt worden kan".split()),
    "sv": set("och är att det en ett som på inte med för av till den har jag vi de om kan".split()),
    "da": set("og er at det en et som på ikke med for af til den har jeg vi de om kan".split()),
    "nb": set("og er at det en et som på ikke med for av til den har jeg vi de om kan ikkje".split()),
    "pl": set("i w nie jest się na że z do to jak co po od dla są oraz przez".split()),
    "cs": set("a je to v na se že s z do jako pro nebo jsou není by ale".split()),
    "ro": set("și în de la este nu cu un o pe care pentru sunt mai din".split()),
    "hu": set("a az és hogy nem egy is van meg ez azt csak de volt mint".split()),
    "fi": set("ja on ei se että oli hän ovat tai kun mutta ole myös tämä".split()),
    "is": set("og er að það ekki í á við til sem með um".split()),
    "tr": set("ve bir bu da de için ile değil olarak çok daha".split()),
    "ca": set("el la els les i és de que en un una no per amb del al com més són".split()),
}
# letters that point to one language (or a small family)
LETTERS: dict[str, str] = {
    "de": "ßäöü", "pt": "ãõç", "es": "ñ¿¡", "fr": "çèêëîïôœùûÿ", "it": "ìò", "nl": "ĳ",
    "sv": "åäö", "da": "æøå", "nb": "æøå", "pl": "łąęśźżćń", "cs": "řěůčšž", "ro": "șțăâî",
    "hu": "őűáéíóú", "fi": "äö", "is": "ðþæ", "tr": "ğışç", "ca": "ŀç",
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_MARKUP = re.compile(r"<[^>]{0,300}>|&[#\w]+;|https?://\S+")


@dataclass(frozen=True)
class Detection:
    language: str
    confidence: float  # 0-100

    def as_libretranslate(self) -> dict:
        return {"confidence": round(self.confidence, 1), "language": self.language}


def _script(ch: str) -> str | None:
    cp = ord(ch)
    if 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
        return "hangul"
    if 0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF:
        return "kana"
    if 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF:
        return "han"
    if 0x0400 <= cp <= 0x04FF:
        return "cyrillic"
    if 0x0370 <= cp <= 0x03FF:
        return "greek"
    if 0x0900 <= cp <= 0x097F:
        return "devanagari"
    if 0x0600 <= cp <= 0x06FF:
        return "arabic"
    if 0x0590 <= cp <= 0x05FF:
        return "hebrew"
    if 0x0E00 <= cp <= 0x0E7F:
        return "thai"
    if ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN"):
        return "latin"
    return None


_SCRIPT_LANGS = {"hangul": ["ko"], "kana": ["ja"], "greek": ["el"], "devanagari": ["hi", "mr", "ne"],
                 "arabic": ["ar", "fa", "ur"], "hebrew": ["he"], "thai": ["th"]}


class LanguageDetector:
    """Detect among ``candidates`` (base codes like ``en``, ``pt``; regions are ignored)."""

    def __init__(self, candidates: Iterable[str], fallback: str = "en"):
        self.candidates = sorted({c.split("-")[0].split("_")[0].lower() for c in candidates})
        self.fallback = fallback if fallback in self.candidates else (self.candidates[0] if self.candidates else "en")

    def detect(self, text: str) -> Detection:
        return self.rank(text)[0]

    def rank(self, text: str, limit: int = 3) -> list[Detection]:
        text = _MARKUP.sub(" ", text or "")
        counts: dict[str, int] = {}
        for ch in text:
            s = _script(ch)
            if s:
                counts[s] = counts.get(s, 0) + 1
        total = sum(counts.values())
        if not total:
            return [Detection(self.fallback, 0.0)]
        cands = set(self.candidates)
        # scripts that decide alone
        if counts.get("kana") and "ja" in cands:
            return [Detection("ja", 95.0)]
        if counts.get("hangul", 0) >= total / 3 and "ko" in cands:
            return [Detection("ko", 95.0)]
        if counts.get("han", 0) >= total / 3:
            for lang in ("zh", "ja"):
                if lang in cands:
                    return [Detection(lang, 90.0 if lang == "zh" else 50.0)]
        if counts.get("cyrillic", 0) >= total / 2:
            return [self._cyrillic(text, cands)]
        for script, langs in _SCRIPT_LANGS.items():
            if counts.get(script, 0) >= total / 2:
                for lang in langs:
                    if lang in cands:
                        return [Detection(lang, 90.0)]
        latin = [c for c in self.candidates if c in STOPWORDS or c in LETTERS]
        if not latin:
            return [Detection(self.fallback, 0.0)]
        return self._latin(text.lower(), latin, limit)

    def _cyrillic(self, text: str, cands: set[str]) -> Detection:
        low = text.lower()
        if "uk" in cands and re.search(r"[іїєґ]", low):
            return Detection("uk", 90.0)
        if "bg" in cands and "ru" not in cands:
            return Detection("bg", 70.0)
        if "sr" in cands and re.search(r"[ђјљњћџ]", low):
            return Detection("sr", 85.0)
        for lang in ("ru", "uk", "bg", "sr", "mk", "kk"):
            if lang in cands:
                return Detection(lang, 80.0 if lang == "ru" else 50.0)
        return Detection(self.fallback, 0.0)

    def _latin(self, text: str, langs: list[str], limit: int) -> list[Detection]:
        words = _WORD.findall(text)
        letters = set(text)
        scores: dict[str, float] = {}
        for lang in langs:
            stop = STOPWORDS.get(lang, set())
            s = sum(1.0 for w in words if w in stop)
            s += 0.75 * sum(1 for ch in LETTERS.get(lang, "") if ch in letters)
            scores[lang] = s
        ranked = sorted(langs, key=lambda lang: (-scores[lang], lang != self.fallback, lang))
        best = scores[ranked[0]]
        if best <= 0:
            return [Detection(self.fallback, 0.0)]
        second = scores[ranked[1]] if len(ranked) > 1 else 0.0
        margin = (best - second) / best
        cues = min(1.0, best / 4.0)  # four cues or more: as sure as this method gets
        out = []
        for lang in ranked[:limit]:
            if scores[lang] <= 0:
                break
            share = scores[lang] / best
            conf = 100.0 * cues * (0.5 + 0.5 * margin) * share if lang == ranked[0] else \
                100.0 * cues * 0.5 * share * (1 - margin)
            out.append(Detection(lang, round(min(conf, 99.0), 1)))
        return out
