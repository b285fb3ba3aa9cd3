"""Checks on a finished target, before it is written: what a reviewer would catch first.

:func:`check_unit` runs every check on one (source, target) pair and returns :class:`QAIssue` s; the pipeline
stores them in ``unit.qa_issues`` and keeps a unit with any ``error`` at status ``needs-review``.

Checks (``QAIssue.check``)
    ``codes``        the target's inline codes differ from the source's (missing, extra, broken pairs) — error
    ``empty``        the source has text, the target has none — error
    ``untranslated`` the target text equals the source text (a warning: ``OK``, ``PDF``, product names and
                     numbers are legitimately the same) — warning
    ``numbers``      a number of the source is missing from the target or the target adds one. Digits are
                     compared without separators, so ``2.5``/``2,5`` and ``1,000``/``1.000``/``1 000`` are equal
                     — error
    ``placeholders`` a placeholder written as plain text (``%s``, ``%1$d``, ``%(name)s``, ``{0}``, ``{name}``,
                     ``{{x}}``, ``${x}``) is missing, duplicated or invented — error
    ``terms``        glossary compliance (``Glossary.check``): a required term missing, a do-not-translate term
                     changed, a forbidden variant used — error; an admitted (not preferred) term — warning
    ``length``       the target is longer than the unit's ``max_length`` (characters; other size units are
                     not measured) — error
    ``whitespace``   leading/trailing whitespace differs from the source — warning
    ``charset``      the target has characters the file's legacy charset cannot store — error
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from tower_cat import codes
from tower_cat.document import Document, Segment, Unit

__all__ = ["QAIssue", "check_unit", "check_document", "numbers", "placeholders", "ERROR", "WARNING"]

ERROR, WARNING = "error", "warning"

_NUMBER = re.compile(r"(?<![\w])[-+−]?\d(?:[\d.,\u00a0\u202f']*\d)?")
_SEPARATORS = re.compile(r"[.,\u00a0\u202f'\s]")
_PLACEHOLDER = re.compile(
    r"""
      %(?:\([^)\s]*\)|[0-9]+\$)?[-+ #0']*(?:[0-9]+|\*)?(?:\.(?:[0-9]+|\*))?
        (?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGcsSaAp@]       # printf / Python %
    | \{\{[^{}]*\}\}                                         # {{mustache}}
    | \$\{[^{}]*\}                                           # ${template}
    | \{[A-Za-z0-9_.:,\[\]!<>^-]*\}                          # {0} {name} {name:fmt}
    """,
    re.X,
)


@dataclass
class QAIssue:
    check: str  # codes | empty | untranslated | numbers | placeholders | terms | length | whitespace | charset
    severity: str  # error | warning
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.severity}: {self.check}: {self.message}"


def numbers(text: str) -> Counter:
    """Numbers in a text, digits only (separators dropped, so 2.5 == 2,5 and 1,000 == 1.000)."""
    out: Counter = Counter()
    for m in _NUMBER.finditer(text):
        value = _SEPARATORS.sub("", m.group(0)).replace("−", "-").lstrip("+")
        out[value.lstrip("-")] += 1
    return out


def placeholders(text: str) -> Counter:
    """Plain-text placeholders of a text (%s, {0}, {{x}}, ${x}, ...), counted."""
    return Counter(m.group(0) for m in _PLACEHOLDER.finditer(text) if m.group(0) != "%%")


def _lead_trail(text: str) -> tuple[str, str]:
    stripped = text.strip()
    if not stripped:
        return text, ""
    start = text.index(stripped[0])
    return text[:start], text[start + len(stripped):]


def check_unit(source: Segment, target: Segment, *, max_length: int | None = None, size_unit: str | None = None,
               glossary: Any = None, src_lang: str | None = None, tgt_lang: str | None = None,
               doc: Document | None = None, terms: Any = None) -> list[QAIssue]:
    """Every check on one target. ``terms`` may be a precomputed ``UnitCompliance`` (else ``glossary`` is asked)."""
    issues: list[QAIssue] = []
    for msg in codes.check(source, target):
        issues.append(QAIssue("codes", ERROR, msg))
    src, tgt = source.text, target.text
    if src.strip() and not tgt.strip():
        issues.append(QAIssue("empty", ERROR, "the translation has no text"))
        return issues
    if src.strip() and tgt.strip() == src.strip() and any(c.isalpha() for c in src):
        issues.append(QAIssue("untranslated", WARNING, "the translation is the same as the source"))
    ns, nt = numbers(src), numbers(tgt)
    if ns != nt:
        missing, extra = sorted((ns - nt).elements()), sorted((nt - ns).elements())
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if extra:
            parts.append("not in the source " + ", ".join(extra))
        issues.append(QAIssue("numbers", ERROR, "numbers differ: " + "; ".join(parts)))
    ps, pt = placeholders(src), placeholders(tgt)
    if ps != pt:
        missing, extra = sorted((ps - pt).elements()), sorted((pt - ps).elements())
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if extra:
            parts.append("not in the source " + ", ".join(extra))
        issues.append(QAIssue("placeholders", ERROR, "placeholders differ: " + "; ".join(parts)))
    if terms is None and glossary is not None:
        terms = glossary.check(source, target, src_lang, tgt_lang)
    if terms is not None:
        for ti in terms.issues:
            issues.append(QAIssue("terms", ERROR if ti.severity == "error" else WARNING, ti.message))
    if max_length is not None and (size_unit or "char") == "char" and len(tgt) > max_length:
        issues.append(QAIssue("length", ERROR, f"{len(tgt)} characters, at most {max_length} allowed"))
    if _lead_trail(src) != _lead_trail(tgt) and tgt.strip():
        issues.append(QAIssue("whitespace", WARNING, "leading or trailing whitespace differs from the source"))
    if doc is not None and not doc.can_store(tgt):
        bad = "".join(sorted({c for c in tgt if not doc.can_store(c)}))
        issues.append(QAIssue("charset", ERROR, f"{doc.charset} cannot store {bad!r}"))
    return issues


def check(unit: Unit, target: Segment | None = None, *, glossary: Any = None, src_lang: str | None = None,
          tgt_lang: str | None = None, doc: Document | None = None, terms: Any = None) -> list[QAIssue]:
    """:func:`check_unit` for a unit (its own target unless one is given); an absent target is an ``empty`` error."""
    target = target if target is not None else unit.target
    if target is None:
        return [QAIssue("empty", ERROR, "no translation")] if unit.source.text.strip() else []
    return check_unit(unit.source, target, max_length=unit.max_length, size_unit=unit.size_unit,
                      glossary=glossary, src_lang=src_lang, tgt_lang=tgt_lang, doc=doc, terms=terms)


def check_document(doc: Document, *, glossary: Any = None, units: Iterable[Unit] | None = None,
                   store: bool = True) -> dict[str, list[QAIssue]]:
    """QA every unit with a target (or the given units); with ``store`` the issues go into ``unit.qa_issues``."""
    found: dict[str, list[QAIssue]] = {}
    for unit in (units if units is not None else doc.units):
        if not unit.has_target:
            continue
        issues = check(unit, glossary=glossary, src_lang=doc.source_lang, tgt_lang=doc.target_lang, doc=doc)
        if store:
            unit.qa_issues = issues
        if issues:
            found[unit.id] = issues
    return found


def has_errors(issues: Iterable[QAIssue]) -> bool:
    return any(i.severity == ERROR for i in issues)
