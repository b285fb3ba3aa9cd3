"""Pseudo-translation: the standard localization-readiness check, and tower-cat's model-free end-to-end path.

``Save changes`` becomes ``[Šáṽé çĥáñĝéš ~~~~]``: every letter accented (encoding and font problems show), the
text longer by ``expansion`` (truncation and layout problems show), brackets around it (concatenated or
hard-coded strings show). Placeholders (``%s``, ``{0}``, ``%(name)s``, ``{{x}}``, ``${x}``, HTML tags,
entities, URLs) and inline codes are left untouched.

:func:`pseudo_document` goes through the same path a model translation takes: render the codes to numbered tags
(``codes.render``), transform only the text between the tags, parse the result back with ``codes.parse`` and
write it with ``unit.set_target(..., origin="pseudo")``. A result that ``codes.parse`` flags is counted, never
written.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

from tower_cat import codes
from tower_cat.document import Document
from tower_cat.errors import InvalidArgument

__all__ = ["PSEUDO_LOCALE", "PseudoSummary", "accent", "pseudo_text", "pseudo_markup", "pseudo_document",
           "pseudo_units", "start_summary"]

PSEUDO_LOCALE = "qps-ploc"  # Microsoft's pseudo-locale with accented, padded text

_UPPER = "ÅƁÇÐÉƑĜĤÎĴĶĻṀÑÖÞǪŔŠŢÛṼŴẊÝŽ"
_LOWER = "áƀçðéƒĝĥíĵķļɱñöþǫŕšţúṽŵẋýž"
_ACCENTS = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", _UPPER + _LOWER)

# Things that must survive verbatim: they are code, not language.
_PROTECTED = re.compile(
    r"""
      https?://[^\s<>"]+                                   # URLs
    | [\w.+-]+@[\w-]+(?:\.[\w-]+)+                         # e-mail addresses
    | <\s*/?\s*[0-9]+\s*/?\s*>                             # our numbered tags (plain-text use)
    | </?[A-Za-z][\w:.-]*(?:\s[^<>]*)?/?>                  # HTML/XML tags
    | &(?:[A-Za-z][A-Za-z0-9]*|\#[0-9]+|\#x[0-9A-Fa-f]+);  # entities and character references
    | %%                                                   # printf percent
    | %(?:\([^)\s]*\)|[0-9]+\$)?[-+ #0']*(?:[0-9]+|\*)?(?:\.(?:[0-9]+|\*))?
        (?:hh|h|ll|l|L|q|j|z|t|I64|I32)?[diouxXeEfFgGcCrsSaApn@]   # printf / Python %
    | \{\{[^{}]*\}\}                                       # {{mustache}}
    | \$\{[^{}]*\}                                         # ${template}
    | \{[A-Za-z0-9_.:,\[\]-]*\}                            # {0} {name} {name:fmt}
    | \$[A-Za-z_][A-Za-z0-9_]*                             # $var
    | \\[nrt"'\\]                                          # escape sequences written as text
    """,
    re.X,
)


@functools.lru_cache(maxsize=None)
def _accents_for(charset: str | None) -> dict[int, int]:
    """The accent table, less the accented letters a legacy charset (cp1251 PO) cannot store."""
    if charset is None:
        return _ACCENTS
    table = {}
    for plain, accented in _ACCENTS.items():
        try:
            chr(accented).encode(charset)
            table[plain] = accented
        except UnicodeEncodeError:
            pass
    return table


def accent(text: str, charset: str | None = None) -> str:
    """Accent every ASCII letter outside placeholders: ``Save %s`` -> ``Šáṽé %s``."""
    table = _accents_for(charset)
    out, pos = [], 0
    for m in _PROTECTED.finditer(text):
        out.append(text[pos:m.start()].translate(table))
        out.append(m.group(0))
        pos = m.end()
    out.append(text[pos:].translate(table))
    return "".join(out)


def _padding(length: int, expansion: float, pad: str) -> str:
    n = math.ceil(length * expansion) if length else 0
    return (" " + pad * (n - 1)) if n > 1 else pad * n


def pseudo_text(text: str, expansion: float = 0.3, pad: str = "~") -> str:
    """Pseudo-translate plain text: accents, padding to ``len(text) * (1 + expansion)`` (brackets not counted),
    brackets. Placeholders and numbered tags stay as they are. Empty or blank text is returned unchanged.
    """
    if expansion < 0:
        raise InvalidArgument("expansion must be >= 0")
    if not text.strip():
        return text
    return "[" + accent(text) + _padding(len(text), expansion, pad) + "]"


def pseudo_markup(markup: str, expansion: float = 0.3, pad: str = "~", charset: str | None = None) -> str:
    """Pseudo-translate rendered markup (``codes.render(...).text``): only the text between tags changes; the
    brackets go around the whole segment, outside any tag, so the result parses back with every code in place.
    """
    if expansion < 0:
        raise InvalidArgument("expansion must be >= 0")
    tokens = codes.tokenize(markup)
    plain = "".join(t for t in tokens if isinstance(t, str))
    if not plain.strip():
        return markup
    body = [accent(t, charset) if isinstance(t, str) else t for t in tokens]
    return codes.join_tokens(["["] + body + [_padding(len(plain), expansion, pad) + "]"])


@dataclass
class PseudoSummary:
    """What :func:`pseudo_document` did."""

    units: int = 0
    translated: int = 0
    skipped_protected: int = 0  # locked, final/approved, translate="no"
    skipped_empty: int = 0  # nothing to translate (blank source, codes only)
    flagged: int = 0  # codes could not be restored: not written
    problems: dict[str, list[str]] = field(default_factory=dict)  # unit id -> codes.parse problems
    target_lang: str | None = None

    def line(self) -> str:
        return (f"{self.translated} of {self.units} units pseudo-translated ({self.target_lang}); "
                f"{self.skipped_protected} protected, {self.skipped_empty} empty, {self.flagged} flagged")


def pseudo_document(doc: Document, expansion: float = 0.3, target_lang: str | None = None,
                    pad: str = "~") -> PseudoSummary:
    """Pseudo-translate every unit that may be changed, through the real render -> parse path.

    ``target_lang`` sets ``doc.target_lang``; when neither it nor the file gives one, ``qps-ploc`` is used.
    Targets are written with status ``needs-review`` and origin ``pseudo``.
    """
    summary = start_summary(doc, expansion, target_lang)
    pseudo_units(doc.units, summary, expansion, pad, doc.charset)
    return summary


def start_summary(doc, expansion: float = 0.3, target_lang: str | None = None) -> PseudoSummary:
    """Check the options and settle the target language (``doc``: a Document or a streamed document)."""
    if expansion < 0:
        raise InvalidArgument("expansion must be >= 0")
    if target_lang:
        doc.target_lang = target_lang
    elif not doc.target_lang:
        doc.target_lang = PSEUDO_LOCALE
    return PseudoSummary(target_lang=doc.target_lang)


def pseudo_units(units, summary: PseudoSummary, expansion: float = 0.3, pad: str = "~",
                 charset: str | None = None) -> None:
    """Pseudo-translate these units, adding to ``summary`` (a streaming caller passes one window at a time)."""
    for unit in units:
        summary.units += 1
        if unit.protected:
            summary.skipped_protected += 1
            continue
        if not unit.source.text.strip():
            summary.skipped_empty += 1
            continue
        rendered = codes.render(unit.source)
        restored = codes.parse(rendered, pseudo_markup(rendered.text, expansion, pad, charset))
        if restored.problems:
            summary.problems[unit.id] = restored.problems
        if not restored.ok:
            summary.flagged += 1
            continue
        unit.set_target(restored.segment, status="needs-review", origin="pseudo")
        summary.translated += 1
