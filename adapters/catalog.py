"""Which languages the served model translates, and how each protocol spells them.

Internally a language is a BCP-47-ish code as ``tower_cat.languages.normalize_lang`` writes it (``en``, ``pt-BR``,
``zh-Hant``). The model's family decides the default list (TowerInstruct: the 10 languages of its card;
Tower+: the 22 languages and variants of its card); ``tower-cat serve --languages`` overrides it.

Spellings: DeepL upper-case (``EN`` as a source, ``EN-GB``/``EN-US``/``PT-PT``/``PT-BR``/``ZH-HANS`` as targets,
since the official clients refuse bare ``EN``/``PT`` targets), LibreTranslate lower-case (``en``, ``pt-BR``,
``zh-Hant``), Apertium ISO 639-1 *and* 639-3 (``en``/``eng``; OmegaT sends locale codes like ``pt_BR``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tower_cat.errors import LanguageError  # noqa: F401  (one error family; importable from here as before)
from tower_cat.languages import NAMES, language_name
from tower_cat.languages import normalize_lang

TOWER_V1 = ["en", "de", "fr", "nl", "it", "es", "pt", "ko", "ru", "zh"]
TOWER_PLUS = ["en", "de", "es", "fr", "it", "ko", "nl", "ru", "pt", "zh", "cs", "uk", "hi", "is", "ja", "pl",
              "sv", "hu", "ro", "da", "nb", "nn", "fi"]
# target variants a client may ask for (the prompt names the variant where the model knows it)
VARIANTS = {"en": ["en-GB", "en-US"], "pt": ["pt-PT", "pt-BR"], "zh": ["zh-Hans", "zh-Hant"], "es": ["es-419"]}
ISO3 = {"en": "eng", "de": "deu", "fr": "fra", "nl": "nld", "it": "ita", "es": "spa", "pt": "por", "ko": "kor",
        "ru": "rus", "zh": "zho", "cs": "ces", "uk": "ukr", "hi": "hin", "is": "isl", "ja": "jpn", "pl": "pol",
        "sv": "swe", "hu": "hun", "ro": "ron", "da": "dan", "nb": "nob", "nn": "nno", "fi": "fin", "ca": "cat",
        "gl": "glg", "ar": "ara", "tr": "tur", "el": "ell", "bg": "bul", "et": "est", "lv": "lav", "lt": "lit",
        "sk": "slk", "sl": "slv", "id": "ind", "no": "nor", "oc": "oci", "eu": "eus", "he": "heb", "th": "tha",
        "vi": "vie"}
ISO3_ALT = {"ger": "de", "fre": "fr", "dut": "nl", "chi": "zh", "cze": "cs", "ice": "is", "rum": "ro",
            "spa": "es", "por": "pt", "gre": "el", "baq": "eu", "per": "fa"}
FROM_ISO3 = {v: k for k, v in ISO3.items()} | ISO3_ALT
_PLUS_WORDING = "plus"


@dataclass
class Catalog:
    bases: list[str]
    variants: dict[str, list[str]] = field(default_factory=dict)
    names_variant: bool = False  # Tower+ distinguishes variants in its prompt

    @classmethod
    def for_model(cls, wording: str | None, languages: list[str] | None = None) -> "Catalog":
        if languages:
            bases, variants = [], {}
            for code in languages:
                norm = normalize_lang(code)
                base = norm.split("-")[0]
                if base not in bases:
                    bases.append(base)
                if "-" in norm:
                    variants.setdefault(base, []).append(norm)
            for base in bases:
                if base in VARIANTS and base not in variants:
                    variants[base] = list(VARIANTS[base])
            return cls(bases, variants, wording == _PLUS_WORDING)
        plus = wording == _PLUS_WORDING
        bases = list(TOWER_PLUS if plus else TOWER_V1)
        variants = {b: list(v) for b, v in VARIANTS.items() if b in bases}
        if not plus:
            variants["zh"] = ["zh-Hans"]
            variants.pop("es", None)
        return cls(bases, variants, plus)

    # ------------------------------------------------------------------ lookups

    def name(self, code: str) -> str:
        try:
            return language_name(code, variant=True)
        except ValueError:
            return code

    def supports(self, code: str) -> bool:
        norm = normalize_lang(code)
        return bool(norm) and norm.split("-")[0] in self.bases

    def resolve(self, code: str | None, *, role: str = "target") -> str:
        """A client's code -> our normalised code; LanguageError when the model does not translate it."""
        if not code or not str(code).strip():
            raise LanguageError(f"missing {role} language")
        raw = str(code).strip()
        norm = normalize_lang(raw.replace("_", "-"))
        base = norm.split("-")[0].lower()
        if len(base) == 3 and base in FROM_ISO3:
            rest = norm.split("-")[1:]
            norm = "-".join([FROM_ISO3[base], *rest])
            base = FROM_ISO3[base]
        if base == "no" and "nb" in self.bases:
            norm, base = "nb", "nb"
        if base not in self.bases:
            raise LanguageError(f"{role} language {raw!r} is not supported by the served model")
        # OmegaT / Apertium spell variants as locale parts: 'oc_aran', 'ca_valencia' -> keep what we know
        parts = norm.split("-")
        if len(parts) > 1 and not (len(parts[1]) in (2, 3, 4)):
            norm = base
        return norm

    def all_codes(self) -> list[str]:
        out = []
        for b in self.bases:
            out.append(b)
            out.extend(self.variants.get(b, []))
        return out

    # ------------------------------------------------------------------ DeepL

    @staticmethod
    def deepl_code(code: str) -> str:
        return code.upper()

    def deepl_sources(self) -> list[dict]:
        return [{"language": b.upper(), "name": NAMES.get(b, b)} for b in self.bases]

    def deepl_targets(self) -> list[dict]:
        out = []
        for b in self.bases:
            variants = self.variants.get(b, [])
            codes = variants if b in ("en", "pt") and variants else [b] + variants
            for c in codes:
                out.append({"language": c.upper(), "name": self.name(c), "supports_formality": False})
        return out

    def deepl_v3(self, resource: str) -> list[dict]:
        """``GET /v3/languages?resource=…`` items: lang, name, usable_as_source/target, features."""
        out = []
        for b in self.bases:
            out.append({"lang": b, "name": NAMES.get(b, b), "usable_as_source": True, "usable_as_target": True,
                        "features": {"tag_handling": {}, "glossary": {}} if resource == "translate_text" else {}})
            for v in self.variants.get(b, []):
                out.append({"lang": v, "name": self.name(v), "usable_as_source": False, "usable_as_target": True,
                            "features": {"tag_handling": {}, "glossary": {}} if resource == "translate_text" else {}})
        return out

    def glossary_pairs(self) -> list[dict]:
        return [{"source_lang": s, "target_lang": t} for s in self.bases for t in self.bases if s != t]

    # ------------------------------------------------------------------ LibreTranslate

    def libretranslate(self) -> list[dict]:
        codes = self.all_codes()
        return [{"code": c, "name": self.name(c), "targets": [t for t in codes if t.split("-")[0] != c.split("-")[0]]}
                for c in codes]

    # ------------------------------------------------------------------ Apertium

    def apertium_pairs(self) -> list[dict]:
        out = []
        for style in (lambda c: c, lambda c: ISO3.get(c, c)):
            for s in self.bases:
                for t in self.bases:
                    if s != t:
                        out.append({"sourceLanguage": style(s), "targetLanguage": style(t)})
        for b, vs in self.variants.items():  # locale spellings OmegaT sends (pt_BR, en_US)
            for v in vs:
                loc = v.replace("-", "_")
                for s in self.bases:
                    if s != b:
                        out.append({"sourceLanguage": s, "targetLanguage": loc})
                        out.append({"sourceLanguage": loc, "targetLanguage": s})
        return out
