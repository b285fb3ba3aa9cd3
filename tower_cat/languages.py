"""Language codes -> the English names Tower prompts use.

Tower's model cards write plain English names ("Portuguese", "German"); Tower+ also names the variants it
was trained on ("Portuguese (Portugal)", "Chinese (Traditional)"). So a region is only spelled out where it
changes the language a translator expects (pt-PT vs pt-BR, zh-Hans vs zh-Hant, Latin-American Spanish,
Bokmål vs Nynorsk); en-US, de-AT, fr-CA and the like stay plain, as the cards do.
"""

from __future__ import annotations

import functools
import re

from tower_cat.errors import InvalidArgument

# ISO 639-1/-3 primary subtags -> plain English names (Tower v1's 10 languages, Tower+'s 22, plus the usual
# CAT-tool languages so a prompt never shows a bare code).
NAMES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "az": "Azerbaijani", "be": "Belarusian",
    "bg": "Bulgarian", "bn": "Bengali", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish",
    "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fil": "Filipino", "fr": "French",
    "ga": "Irish", "gl": "Galician", "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian",
    "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian", "is": "Icelandic", "it": "Italian",
    "ja": "Japanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean",
    "lb": "Luxembourgish", "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam",
    "mn": "Mongolian", "mr": "Marathi", "ms": "Malay", "mt": "Maltese", "my": "Burmese", "nb": "Norwegian",
    "ne": "Nepali", "nl": "Dutch", "nn": "Norwegian", "no": "Norwegian", "pa": "Punjabi", "pl": "Polish",
    "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "si": "Sinhala", "sk": "Slovak",
    "sl": "Slovenian", "sq": "Albanian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu",
    "uz": "Uzbek", "vi": "Vietnamese", "zh": "Chinese", "zu": "Zulu",
}

# Variants Tower+ distinguishes (its card: pt-PT, pt-BR, es-LatAm, zh-Hans, zh-Hant, nb/nn).
_PT = {"pt": "Portugal", "br": "Brazil", "ao": "Portugal", "mz": "Portugal"}
_ZH_TRADITIONAL = {"hant", "tw", "hk", "mo"}
_ZH_SIMPLIFIED = {"hans", "cn", "sg", "my"}
_ES_LATAM = {"419", "latam", "mx", "ar", "co", "cl", "pe", "ve", "uy", "py", "bo", "ec", "gt", "cu", "do",
             "hn", "ni", "pa", "sv", "cr", "pr", "us"}

_CODE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")


def split_code(code: str) -> tuple[str, list[str]]:
    """'pt_BR' / 'pt-br' / 'zh-Hant-TW' -> ('pt', ['br']) / ('zh', ['hant', 'tw'])."""
    parts = re.split(r"[-_]", code.strip())
    return parts[0].lower(), [p.lower() for p in parts[1:] if p]


def language_name(code: str, *, variant: bool = True) -> str:
    """English name for a BCP-47-ish code; an English name passed in comes back unchanged.

    variant=False gives the plain card name ("Portuguese") that TowerInstruct was trained with;
    variant=True adds the region only where Tower+ distinguishes it ("Portuguese (Brazil)").
    """
    code = code.strip()
    if not code:
        raise InvalidArgument("empty language code")
    if not _CODE.match(code):
        return code  # already a name such as "German" or "Portuguese (Portugal)"
    primary, subtags = split_code(code)
    base = NAMES.get(primary)
    if base is None:
        raise InvalidArgument(f"unknown language code {code!r}; use a code like 'de', 'pt-BR' or an English name")
    if not variant:
        return base
    tags = set(subtags)
    if primary == "pt":
        region = next((_PT[t] for t in subtags if t in _PT), None)
        return f"Portuguese ({region})" if region else base
    if primary == "zh":
        if tags & _ZH_TRADITIONAL:
            return "Chinese (Traditional)"
        if tags & _ZH_SIMPLIFIED:
            return "Chinese (Simplified)"
        return base
    if primary == "es" and tags & _ES_LATAM:
        return "Spanish (Latin America)"
    if primary == "nb" or (primary == "no" and "nb" in tags):
        return "Norwegian (Bokmål)"
    if primary == "nn" or (primary == "no" and "nn" in tags):
        return "Norwegian (Nynorsk)"
    return base


# NLLB-200 (FLORES-200) codes for the languages above; a code already in that form passes through.
_NLLB = {
    "af": "afr_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "az": "azj_Latn", "be": "bel_Cyrl", "bg": "bul_Cyrl",
    "bn": "ben_Beng", "bs": "bos_Latn", "ca": "cat_Latn", "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn",
    "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn", "eo": "epo_Latn", "es": "spa_Latn", "et": "est_Latn",
    "eu": "eus_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fil": "tgl_Latn", "fr": "fra_Latn", "ga": "gle_Latn",
    "gl": "glg_Latn", "gu": "guj_Gujr", "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn", "hu": "hun_Latn",
    "hy": "hye_Armn", "id": "ind_Latn", "is": "isl_Latn", "it": "ita_Latn", "ja": "jpn_Jpan", "ka": "kat_Geor",
    "kk": "kaz_Cyrl", "km": "khm_Khmr", "kn": "kan_Knda", "ko": "kor_Hang", "lb": "ltz_Latn", "lt": "lit_Latn",
    "lv": "lvs_Latn", "mk": "mkd_Cyrl", "ml": "mal_Mlym", "mn": "khk_Cyrl", "mr": "mar_Deva", "ms": "zsm_Latn",
    "mt": "mlt_Latn", "my": "mya_Mymr", "nb": "nob_Latn", "ne": "npi_Deva", "nl": "nld_Latn", "nn": "nno_Latn",
    "no": "nob_Latn", "pa": "pan_Guru", "ps": "pbt_Arab", "pl": "pol_Latn", "pt": "por_Latn", "ro": "ron_Latn",
    "ru": "rus_Cyrl", "si": "sin_Sinh", "sk": "slk_Latn", "sl": "slv_Latn", "sq": "als_Latn", "sr": "srp_Cyrl",
    "sv": "swe_Latn", "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "th": "tha_Thai", "tl": "tgl_Latn",
    "tr": "tur_Latn", "uk": "ukr_Cyrl", "ur": "urd_Arab", "uz": "uzn_Latn", "vi": "vie_Latn", "zh": "zho_Hans",
    "zu": "zul_Latn",
}


def nllb_code(code: str) -> str:
    """'de' -> 'deu_Latn', 'zh-TW' -> 'zho_Hant'; 'deu_Latn' stays."""
    if re.match(r"^[a-z]{3}_[A-Z][a-z]{3}$", code):
        return code
    primary, subtags = split_code(code)
    if primary == "zh" and set(subtags) & _ZH_TRADITIONAL:
        return "zho_Hant"
    if primary not in _NLLB:
        raise InvalidArgument(f"no NLLB code known for {code!r}; pass one such as 'deu_Latn'")
    return _NLLB[primary]


def m2m_code(code: str) -> str:
    """M2M-100 language token: 'pt-BR' -> '__pt__'."""
    return f"__{split_code(code)[0]}__"


# --------------------------------------------------------------------------------------------------------
# language codes


@functools.lru_cache(maxsize=4096)
def normalize_lang(code: str | None) -> str | None:
    """'en_us' / 'EN-us' / 'en-US' -> 'en-US'; 'zh-hant-tw' -> 'zh-Hant-TW'; '' / None -> None."""
    if code is None:
        return None
    code = code.strip().replace("_", "-")
    if not code:
        return None
    parts = [p for p in code.split("-") if p]
    out = [parts[0].lower()]
    for p in parts[1:]:
        if len(p) == 4 and p.isalpha():
            out.append(p.title())  # script
        elif len(p) in (2, 3) and (p.isalpha() or p.isdigit()):
            out.append(p.upper())  # region
        else:
            out.append(p.lower())  # variant / private use
    return "-".join(out)


def lang_base(code: str) -> str:
    return code.split("-", 1)[0].lower()


def lang_matches(query: str, stored: str, fallback: bool = True) -> bool:
    """Whether an entry stored as ``stored`` serves a query for ``query`` (both normalised)."""
    if query == stored:
        return True
    if not fallback or lang_base(query) != lang_base(stored):
        return False
    q, s = query.split("-")[1:], stored.split("-")[1:]
    # de-DE <-> de; zh-Hant-TW <-> zh-Hant; never pt-PT <-> pt-BR
    return q[: len(s)] == s or s[: len(q)] == q


# ISO 639-1: every two-letter primary language subtag (three-letter ones are ISO 639-2/3: too many to list)
ISO_639_1 = frozenset("""aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy
da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik
in io is it iu iw ja ji jv jw ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml
mn mo mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg sh
si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo
za zh zu""".split())


@functools.lru_cache(maxsize=4096)
def check_lang(code: str | None, what: str = "language") -> str:
    """``code`` normalised (``normalize_lang``) when it is a well-formed BCP 47 tag whose primary subtag is a
    language (two letters: ISO 639-1; three letters: accepted as ISO 639-2/3); InvalidArgument otherwise. For
    what is stored (TM entries): '../x', 'xx' or 'en us' never become a language pair."""
    norm = normalize_lang(code) if isinstance(code, str) else None
    if not norm or not _CODE.match(norm) or any(len(p) > 8 for p in norm.split("-")):
        raise InvalidArgument(f"{what} {code!r} is not a language code (BCP 47, e.g. en, de-DE, pt-BR)")
    primary = norm.split("-", 1)[0]
    if len(primary) == 2 and primary not in ISO_639_1:
        raise InvalidArgument(f"{what} {code!r}: {primary!r} is not an ISO 639 language")
    return norm


# --------------------------------------------------------------------------------------------------------
# the model's languages


_SAME_LANGUAGE = {"nb": "no", "nn": "no", "no": "no"}


def _primary(code: str) -> str:
    primary = split_code(code)[0]
    return _SAME_LANGUAGE.get(primary, primary)


def outside_model(known, code: str | None) -> bool:
    """Whether ``code`` is outside a model's known languages (``ModelInfo.languages``; None: unknown, never
    outside). Languages are compared by their primary subtag (pt-BR is known to a model that lists pt-PT; nb, nn
    and no are one language): a card's list says which languages the model was trained on, not which regions."""
    if not known or not code:
        return False
    return _primary(code) not in {_primary(k) for k in known}


def model_language_warning(info, code: str | None, role: str) -> str | None:
    """A warning for a job whose ``role`` (source/target) language the model does not know (None: it does, or the
    model's languages are unknown)."""
    known = getattr(info, "languages", None)
    if not outside_model(known, code):
        return None
    where = getattr(info, "languages_source", None)
    return (f"the {role} language {code} is not among the model's languages ({', '.join(known)}"
            + (f"; {where}" if where else "") + "): expect unusable output, or convert the model with --languages "
            "if it does know it")
