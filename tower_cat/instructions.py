"""Instruction-following translation: a translator's free-text instructions -> checks a result can be held to.

Every instruction goes to the model as written (``prompts.add_instructions`` for a translation request,
``prompts.revision_request`` for a revision turn). Where an instruction says something a program can verify,
it also becomes a :class:`Check`, run on the plain text of each result (inline codes removed):

=========================== ================================================================ ==================
kind                        recognised phrasings (English, case-insensitive)                 verified as
=========================== ================================================================ ==================
``max_length``              "max 40 characters", "at most 40 chars", "no more than 40          ``len(text) <= n``
                            characters", "up to 40 characters", "40 characters max",
                            "maximum length 40"; strict: "shorter than / less than / under /
                            fewer than 30 chars" (= at most 29); the unit's own limit:
                            "fit the maxwidth", "respect the max length", "stay within the
                            length limit" (needs the unit's ``max_length``)
``required``                "use 'Notiz'", "say / write / include 'X'", "translate 'note'      the word is there
                            as 'Notiz'", "use 'A' instead of 'B'" (A required)                 (inflections ok)
``forbidden``               "don't use 'Vermerk'", "never use", "avoid 'X'", "avoid X" (one     the word is absent
                            unquoted word), "no 'X'", "without 'X'", "'A' instead of 'B'" /
                            "rather than 'B'" (B forbidden)
``keep``                    "keep 'Tower Notes' in English / untranslated / as is",            exact, case-
                            "don't translate 'X'", "leave 'X' untranslated"                    sensitive copy
``case``                    "title case", "all caps" / "upper case", "sentence case",          see ``_case_ok``
                            "lower case"
``no_trailing_punctuation`` "no trailing punctuation", "no final period", "don't end with a     last character is
                            period", "no full stop at the end"                                 not . , ; : ! ? …
=========================== ================================================================ ==================

Words to use or avoid must be quoted ('…', "…", ‘…’, “…”, „…“, «…»); several may follow one verb ("don't use
'Vermerk' or 'Anmerkung'"). Word presence is checked like glossary terms (``terminology``): case- and
accent-insensitive, with the same inflection tolerance (Notizen has Notiz), German compounds included.
Anything else ("more formal", "shorter", "friendlier tone") cannot be verified: it is passed to the model and
listed as ``unverifiable``.

A result that fails a check is retried once: the model gets its output back with the failed checks as a
further instruction (``prompts.instruction_feedback``), and the better of the two results is kept (fewer
failed checks, then less over a length limit; the retry on a full tie). :class:`InstructionReport` records the
checks per unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from tower_cat import prompts
from tower_cat.errors import InvalidArgument

__all__ = [
    "KINDS", "Check", "CheckResult", "InstructionSet", "InstructionReport", "parse_instruction",
    "parse_instructions", "verify", "merge_checks", "choose",
]

MAX_LENGTH, REQUIRED, FORBIDDEN, KEEP, CASE, NO_TRAILING = (
    "max_length", "required", "forbidden", "keep", "case", "no_trailing_punctuation")
KINDS = (MAX_LENGTH, REQUIRED, FORBIDDEN, KEEP, CASE, NO_TRAILING)
CASE_STYLES = ("title", "upper", "sentence", "lower")
TRAILING_PUNCTUATION = ".,;:!?…。，、；：！？‥"

# ---------------------------------------------------------------------------------------------------- parsing

_Q1 = r"""(?:'[^'\n]+'|"[^"\n]+"|‘[^’\n]+’|“[^”\n]+”|„[^“”\n]+[“”]|«[^»\n]+»|`[^`\n]+`)"""
_QLIST = rf"{_Q1}(?:\s*(?:,|\band\b|\bor\b|&|/)\s*{_Q1})*"
_QUOTED_RE = re.compile(r"""'([^'\n]+)'|"([^"\n]+)"|‘([^’\n]+)’|“([^”\n]+)”|„([^“”\n]+)[“”]|«([^»\n]+)»|`([^`\n]+)`""")
_UNQ = r"[^\W\d_][\w-]*(?=\s*(?:$|[,.;!?)]|\s(?:and|or|but|in|please)\b))"
_UNIT = r"(?:characters?|chars?|letters|symbols)\b"
_NEG = r"(?:do\s*n[o'’]?t|do\s+not|never|must\s*n[o'’]?t|must\s+not|should\s*n[o'’]?t|should\s+not|please\s+don[o'’]?t)"
_WORD_KIND = r"(?:the\s+)?(?:(?:word|term|expression|phrase)s?\s+)?"
_THE_LIMIT = (r"(?:the\s+)?(?:unit'?s\s+|field'?s\s+|segment'?s\s+)?"
              r"(?:max(?:imum)?[\s-]*(?:width|length)|maxwidth|max_length|length\s+limit|character\s+limit|"
              r"size\s+limit|field(?:\s+width)?|width)")

# Unquoted words after "avoid"/"don't use" that name a style, not a word to search for.
_GENERIC = {
    "jargon", "slang", "abbreviations", "abbreviation", "repetition", "repetitions", "contractions", "anglicisms",
    "anglicism", "passive", "idioms", "emojis", "emoji", "it", "them", "this", "that", "words", "terms", "capitals",
    "caps", "punctuation", "exclamation", "exclamations", "formality", "informality", "english", "loanwords",
    "acronyms", "acronym", "gender", "pronouns", "articles", "filler", "fillers", "ambiguity", "hyphens",
    "hyphenation", "quotes", "numbers", "digits",
}

_PATTERNS: list[tuple[str, str]] = [
    # order matters where two start at the same place: the first alternative wins
    ("keep", rf"(?:keep|leave)\s+(?P<keep>{_QLIST})\s+(?:in\s+English|in\s+the\s+source(?:\s+language)?|"
             rf"in\s+the\s+original(?:\s+language)?|in\s+[A-Z]?[a-z]+|untranslated|as[\s-]+is|unchanged|verbatim|"
             rf"as\s+written|intact)"),
    ("keep", rf"{_NEG}\s+translate\s+{_WORD_KIND}(?P<keep>{_QLIST})"),
    ("keep", rf"(?P<keep>{_QLIST})\s+(?:must|should|has\s+to|needs\s+to)\s+(?:stay|remain|be\s+kept|be\s+left)\s+"
             rf"(?:in\s+English|untranslated|as[\s-]+is|unchanged|verbatim)"),
    ("no_trailing", r"(?:no|without|remove\s+the|drop\s+the|omit\s+the)\s+(?:trailing|final|ending|end|closing)\s+"
                    r"(?:punctuation(?:\s+marks?)?|period|full[\s-]*stop|dot)"),
    ("no_trailing", rf"(?:{_NEG}|not)\s+end\s+(?:it\s+|the\s+\w+\s+)?(?:with|in)\s+(?:a\s+|any\s+)?"
                    r"(?:punctuation(?:\s+marks?)?|period|full[\s-]*stop|dot)"),
    ("no_trailing", r"no\s+(?:punctuation|period|full[\s-]*stop|dot)\s+at\s+the\s+end"),
    ("forbid", rf"{_NEG}\s+(?:use|say|write|include|put)\s+{_WORD_KIND}(?P<forb>{_QLIST}|{_UNQ})"),
    ("forbid", rf"(?:avoid|avoiding)\s+(?:using\s+)?{_WORD_KIND}(?P<forb>{_QLIST}|{_UNQ})"),
    ("forbid", rf"(?:\bno|without|instead\s+of|rather\s+than|\bnot)\s+{_WORD_KIND}(?P<forb>{_QLIST})"),
    ("require", rf"translate\s+{_Q1}\s+(?:as|with|by|to|into)\s+(?P<req>{_Q1})"),
    ("require", rf"(?:\buse|\bsay|\bwrite|\binclude|\bcontain|\bcall\s+it|\bname\s+it|\bprefer)\s+{_WORD_KIND}"
                rf"(?P<req>{_QLIST})"),
    ("unit_limit", rf"(?:fit(?:s)?(?:\s+(?:in(?:to)?|within))?|respect|obey|stay\s+(?:within|under)|"
                   rf"keep\s+(?:it\s+)?(?:within|under|to)|within|not\s+exceed|don'?t\s+exceed)\s+{_THE_LIMIT}"),
    ("len_le", rf"(?:max(?:imum)?\.?|at\s+most|no\s+(?:more|longer)\s+than|not\s+(?:more|longer)\s+than|up\s+to|"
               rf"within|limit(?:ed)?\s+(?:to|of)|length\s+limit\s+(?:of\s+)?|character\s+limit\s+(?:of\s+)?|"
               rf"maximum\s+of|a\s+max(?:imum)?\s+of)\s*:?\s*(?P<n>\d+)\s*-?\s*{_UNIT}"),
    ("len_le", r"(?:max(?:imum)?\.?\s+length|length\s+limit|character\s+limit|char\s+limit|max\s+chars?)"
               r"\s*(?:of|is|:|=)?\s*(?P<n>\d+)"),
    ("len_lt", rf"(?:shorter\s+than|less\s+than|fewer\s+than|under|below)\s*(?P<n>\d+)\s*-?\s*{_UNIT}"),
    ("len_le", rf"(?P<n>\d+)\s*-?\s*{_UNIT}\s*(?:max(?:imum)?|or\s+(?:less|fewer)|at\s+(?:the\s+)?most|tops|limit)"),
    ("case_title", r"title[\s-]*case[ds]?|(?:capitali[sz]e|capitalise)\s+(?:each|every)\s+(?:main\s+)?word"),
    ("case_upper", r"all[\s-]*caps|all\s+capitals|all\s+capital\s+letters|(?:all\s+)?upper[\s-]*case|"
                   r"in\s+capitals|in\s+capital\s+letters|block\s+capitals"),
    ("case_sentence", r"sentence[\s-]*case"),
    ("case_lower", r"(?:all\s+)?lower[\s-]*case"),
]

_SCANNER = re.compile("|".join(f"(?P<_k{i}>{rx})" for i, (_, rx) in enumerate(_PATTERNS)).replace(
    "(?P<keep>", "(?:").replace("(?P<forb>", "(?:").replace("(?P<req>", "(?:").replace("(?P<n>", "(?:"),
    re.IGNORECASE)
_EACH = [re.compile(rx, re.IGNORECASE) for _, rx in _PATTERNS]


def _quoted(text: str) -> list[str]:
    out = []
    for m in _QUOTED_RE.finditer(text):
        word = next(g for g in m.groups() if g is not None).strip()
        if word and word not in out:
            out.append(word)
    return out


@dataclass(frozen=True)
class Check:
    """One verifiable requirement: ``value`` is a character limit (max_length), a word (required, forbidden,
    keep), a style (case: title | upper | sentence | lower) or None (no_trailing_punctuation)."""

    kind: str
    value: Any = None
    instruction: str = ""

    def verify(self, text: str, target_lang: str | None = None) -> "CheckResult":
        return verify(self, text, target_lang)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "instruction": self.instruction}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Check":
        return cls(data["kind"], data.get("value"), data.get("instruction", ""))


@dataclass
class CheckResult:
    check: Check
    passed: bool
    message: str = ""          # why it failed (prompts.check_failure_text), '' when passed
    found: str | None = None   # the offending text (a forbidden word, a trailing mark), or the length

    @property
    def kind(self) -> str:
        return self.check.kind

    def as_dict(self) -> dict[str, Any]:
        return {**self.check.as_dict(), "passed": self.passed, "message": self.message, "found": self.found}


def parse_instruction(instruction: str, *, max_length: int | None = None) -> list[Check]:
    """The checks one instruction implies (empty: nothing in it can be verified).

    ``max_length`` is the unit's own limit (XLIFF ``maxwidth`` in characters, ``Unit.max_length``), used when
    the instruction refers to it ("fit the maxwidth").
    """
    text = " ".join(instruction.split())
    checks: list[Check] = []

    def add(kind: str, value: Any = None) -> None:
        c = Check(kind, value, instruction.strip())
        if all((x.kind, _norm(x.value)) != (kind, _norm(value)) for x in checks):
            checks.append(c)

    for m in _SCANNER.finditer(text):
        index = next(int(name[2:]) for name, v in m.groupdict().items() if v is not None and name.startswith("_k"))
        tag = _PATTERNS[index][0]
        sub = _EACH[index].fullmatch(m.group(0))
        if sub is None:  # pragma: no cover - the same pattern, anchored
            continue
        groups = sub.groupdict()
        if tag == "keep":
            for w in _quoted(groups["keep"]):
                add(KEEP, w)
        elif tag == "forbid":
            words = _quoted(groups["forb"]) or ([groups["forb"]] if groups["forb"].casefold() not in _GENERIC else [])
            for w in words:
                add(FORBIDDEN, w)
        elif tag == "require":
            for w in _quoted(groups["req"]):
                add(REQUIRED, w)
            rest = text[m.end():]
            alt = re.match(rf"\s*,?\s*(?:instead\s+of|rather\s+than|not)\s+{_WORD_KIND}({_QLIST})", rest, re.I)
            if alt:
                for w in _quoted(alt.group(1)):
                    add(FORBIDDEN, w)
        elif tag == "no_trailing":
            add(NO_TRAILING)
        elif tag == "unit_limit":
            if max_length:
                add(MAX_LENGTH, int(max_length))
        elif tag in ("len_le", "len_lt"):
            n = int(groups["n"])
            limit = n - 1 if tag == "len_lt" else n
            if limit > 0:
                add(MAX_LENGTH, limit)
        elif tag.startswith("case_"):
            add(CASE, tag[5:])
    return _tidy(checks)


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _tidy(checks: list[Check]) -> list[Check]:
    """Within one instruction: the tightest length limit, one case style (the last named)."""
    out: list[Check] = []
    limits = [c for c in checks if c.kind == MAX_LENGTH]
    cases = [c for c in checks if c.kind == CASE]
    for c in checks:
        if c.kind == MAX_LENGTH and c is not min(limits, key=lambda x: x.value):
            continue
        if c.kind == CASE and c is not cases[-1]:
            continue
        if c.kind == REQUIRED and any(f.kind == FORBIDDEN and _norm(f.value) == _norm(c.value) for f in checks):
            continue  # "use 'A' instead of 'A'"-like nonsense: trust the negation
        out.append(c)
    return out


def parse_instructions(instructions: Iterable[str], *, max_length: int | None = None) -> "InstructionSet":
    return InstructionSet.parse(instructions, max_length=max_length)


def merge_checks(older: Sequence[Check], newer: Sequence[Check]) -> list[Check]:
    """Checks in force after a newer instruction: a newer length limit, case style or trailing-punctuation rule
    replaces an older one; a word required now is no longer forbidden (and the reverse)."""
    out = list(older)
    for c in newer:
        def clashes(o: Check) -> bool:
            if c.kind in (MAX_LENGTH, CASE, NO_TRAILING):
                return o.kind == c.kind
            if c.kind in (REQUIRED, KEEP):
                return o.kind == FORBIDDEN and _norm(o.value) == _norm(c.value)
            if c.kind == FORBIDDEN:
                return o.kind in (REQUIRED, KEEP) and _norm(o.value) == _norm(c.value)
            return False

        out = [o for o in out if not clashes(o) and (o.kind, _norm(o.value)) != (c.kind, _norm(c.value))]
        out.append(c)
    return out


# ---------------------------------------------------------------------------------------------------- verifying

_MINOR = set("""a an the and or but nor of to in on at by for with from as via vs per into onto over up off out
und oder der die das des dem den ein eine einen einer mit von vom zu zum zur im am an auf aus für bei nach
de la le les du des et ou à au aux en el los las y o del al da do dos das e em no na nos nas ao il lo gli di
per con su het een van op te voor met och på av för til og af för""".split())
_WORD_RE = re.compile(r"[^\W\d_][\w'’-]*")
_NOUN_CAPITALS = {"de", "lb"}  # languages whose nouns start with a capital letter


def _case_ok(style: str, text: str, target_lang: str | None) -> bool:
    letters = [c for c in text if c.isalpha() and (c.isupper() or c.islower())]
    if not letters:
        return True
    if style == "upper":
        return not any(c.islower() and c != "ß" for c in letters)
    if style == "lower":
        return not any(c.isupper() for c in letters)
    words = [w for w in _WORD_RE.findall(text) if w[0].isupper() or w[0].islower()]
    if not words:
        return True
    first_upper = words[0][0].isupper()
    if style == "title":
        return first_upper and all(w[0].isupper() or w.casefold() in _MINOR for w in words[1:])
    # sentence case: a capital first letter, not shouted, not Title Case (proper nouns may keep capitals)
    if not first_upper:
        return False
    if len(letters) > 1 and not any(c.islower() for c in letters) and len(words) > 1:
        return False
    base = (target_lang or "").split("-")[0].split("_")[0].lower()
    if base in _NOUN_CAPITALS:
        return True
    rest = [w for w in words[1:] if w.casefold() not in _MINOR]
    return not (len(rest) >= 2 and all(w[0].isupper() for w in rest))


def _word_regex(word: str, target_lang: str | None) -> re.Pattern:
    from tower_cat.terminology import _target_regex

    return _target_regex(word, target_lang)


def verify(check: Check, text: str, target_lang: str | None = None) -> CheckResult:
    """Run one check on the plain text of a result (inline codes already removed)."""
    from tower_cat.terminology import fold

    kind, value = check.kind, check.value
    if kind == MAX_LENGTH:
        n = len(text)
        ok = n <= int(value)
        return CheckResult(check, ok, "" if ok else prompts.check_failure_text(kind, length=n, limit=int(value)),
                           str(n))
    if kind in (REQUIRED, FORBIDDEN):
        m = _word_regex(str(value), target_lang).search(fold(text))
        if kind == REQUIRED:
            return CheckResult(check, m is not None, "" if m else prompts.check_failure_text(kind, word=value))
        if m is None:
            return CheckResult(check, True)
        found = text[m.start():m.end()] if len(fold(text)) == len(text) else m.group(0)
        return CheckResult(check, False, prompts.check_failure_text(kind, word=value, found=found), found)
    if kind == KEEP:
        ok = str(value) in text
        return CheckResult(check, ok, "" if ok else prompts.check_failure_text(kind, word=value))
    if kind == CASE:
        ok = _case_ok(str(value), text, target_lang)
        return CheckResult(check, ok, "" if ok else prompts.check_failure_text(kind, style=value))
    if kind == NO_TRAILING:
        stripped = text.rstrip()
        last = stripped[-1:] if stripped else ""
        ok = last not in TRAILING_PUNCTUATION or not last
        return CheckResult(check, ok, "" if ok else prompts.check_failure_text(kind, found=last),
                           None if ok else last)
    raise InvalidArgument(f"unknown check kind {kind!r}")


def _badness(results: Sequence[CheckResult]) -> tuple[int, int]:
    """(failed checks, characters over the length limits): lower is better."""
    over = sum(int(r.found or 0) - int(r.check.value) for r in results
               if not r.passed and r.kind == MAX_LENGTH)
    return sum(not r.passed for r in results), over


def choose(first: Sequence[CheckResult], retry: Sequence[CheckResult]) -> bool:
    """After a retry: keep the retry (True) unless it fails more checks than the first result, or as many but
    further over a length limit."""
    return _badness(retry) <= _badness(first)


# ---------------------------------------------------------------------------------------------------- sets, reports

@dataclass
class InstructionSet:
    """Instructions for one translation (or one conversation turn): the text for the model and the checks."""

    instructions: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, instructions: Iterable[str], *, max_length: int | None = None) -> "InstructionSet":
        texts = [" ".join(i.split()) for i in instructions if i and i.strip()]
        checks: list[Check] = []
        unverifiable: list[str] = []
        for text in texts:
            found = parse_instruction(text, max_length=max_length)
            if not found:
                unverifiable.append(text)
            checks = merge_checks(checks, found)
        return cls(texts, checks, unverifiable)

    def __bool__(self) -> bool:
        return bool(self.instructions)

    def apply(self, messages: Sequence[dict], wording: str = "instruct") -> list[dict]:
        """Translation messages with these instructions in the request."""
        return prompts.add_instructions(messages, self.instructions, wording=wording)

    def verify(self, text: str, target_lang: str | None = None) -> list[CheckResult]:
        return [c.verify(text, target_lang) for c in self.checks]

    @staticmethod
    def feedback(results: Sequence[CheckResult]) -> str | None:
        """The extra instruction for a retry, or None when every check passed."""
        failed = [r.message for r in results if not r.passed]
        return prompts.instruction_feedback(failed) if failed else None

    def retry_messages(self, messages: Sequence[dict], previous_output: str,
                       results: Sequence[CheckResult]) -> list[dict] | None:
        """The conversation for the one retry: the model's output, then the failed checks; None if all passed."""
        fb = self.feedback(results)
        return None if fb is None else prompts.revision_messages(messages, previous_output, fb)


@dataclass
class InstructionReport:
    """Per unit: every check with its outcome on the kept result, what could not be verified, whether a retry ran."""

    results: list[CheckResult] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)
    retried: bool = False
    first_failed: list[str] = field(default_factory=list)  # messages of checks the first attempt failed

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "retried": self.retried, "checks": [r.as_dict() for r in self.results],
                "unverifiable": list(self.unverifiable), "first_failed": list(self.first_failed)}
