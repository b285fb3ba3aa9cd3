"""Inline codes <-> the numbered-tag markup the model sees; validation and repair of what comes back.

The model never sees original markup. :func:`render` turns a :class:`~tower_cat.document.Segment` into text with
simple numbered tags, numbered in order of appearance::

    Click <1>Save</1> to keep <2/> changes

An OPEN code whose CLOSE partner follows in the same segment (matched stack-wise by id, properly nested) becomes
the pair ``<n>…</n>``; every other code (standalone, isolated, an open or close without its partner) becomes
``<n/>``. :func:`parse` maps a model's output back onto the original :class:`~tower_cat.document.InlineCode`
objects, repairs what it safely can and flags the rest (``Restored.ok`` is False: the unit goes to review and
no target is written).

Escaping
--------
Source text can itself contain something that looks like one of our tags (a PO string ``"Press <1> to
continue"``). In rendered markup a ``<`` that would start a tag-like sequence (``<1>``, ``</ 2>``, ``<3 />`` —
the same whitespace-tolerant pattern :func:`parse` accepts) is written as ``&lt;``, and an ``&`` that would
otherwise be read as the start of an escape (``&lt;`` or ``&amp;`` in the text) is written as ``&amp;``.
Nothing else is escaped, so ordinary text (``Tom & Jerry``, ``a < b``, ``&nbsp;``) reaches the model
unchanged. When parsing, text between tags is unescaped in one left-to-right pass (``&lt;`` -> ``<``,
``&amp;`` -> ``&``). ``unescape(escape(s)) == s`` for every string.

Tolerated model variants: whitespace inside tags (``< 1 >``, ``</ 1>``, ``<1 />``), leading zeros, a pair
written as ``<n/>`` (read as an empty pair), a standalone code written as ``<n>`` or ``</n>``. Tag numbers are
ASCII digits only (``<١>`` is text).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple, Union

from tower_cat.document import CodeKind, InlineCode, Part, Segment

__all__ = [
    "Tag", "Rendered", "Restored", "render", "parse", "check", "strip_tags", "escape", "unescape",
    "tokenize", "join_tokens", "map_text", "pair_codes", "render_like", "TAG_RE",
]

# Whitespace-tolerant tag pattern: <1>, </1>, <1/>, < 1 >, </ 1>, <1 />, < / 1 / > ...
TAG_RE = re.compile(r"<\s*(/)?\s*([0-9]+)\s*(/)?\s*>")
_UNESCAPE_RE = re.compile(r"&(lt|amp);")
_ESCAPE_AMP_RE = re.compile(r"&(?=lt;|amp;)")


class Tag(NamedTuple):
    """One numbered tag in markup: ``role`` is "open" (``<n>``), "close" (``</n>``) or "single" (``<n/>``)."""

    number: int
    role: str

    def __str__(self) -> str:
        if self.role == "open":
            return f"<{self.number}>"
        if self.role == "close":
            return f"</{self.number}>"
        return f"<{self.number}/>"


Token = Union[str, Tag]


# --------------------------------------------------------------------------------------------------- escaping

def escape(text: str) -> str:
    """Escape literal text for rendered markup: only tag-like ``<`` and escape-like ``&`` change."""
    text = _ESCAPE_AMP_RE.sub("&amp;", text)
    if "<" not in text:
        return text
    return TAG_RE.sub(lambda m: "&lt;" + m.group(0)[1:], text)


def unescape(text: str) -> str:
    """Inverse of :func:`escape` (one pass, so ``&amp;lt;`` -> ``&lt;``)."""
    if "&" not in text:
        return text
    return _UNESCAPE_RE.sub(lambda m: "<" if m.group(1) == "lt" else "&", text)


def tokenize(markup: str) -> list[Token]:
    """Split markup into unescaped text runs and :class:`Tag` s (whitespace variants normalised).

    A tag written with both slashes (``</1/>``) counts as a single tag.
    """
    out: list[Token] = []
    pos = 0
    for m in TAG_RE.finditer(markup):
        if m.start() > pos:
            out.append(unescape(markup[pos:m.start()]))
        closing, number, selfclosing = m.group(1), int(m.group(2)), m.group(3)
        role = "single" if selfclosing else "close" if closing else "open"
        out.append(Tag(number, role))
        pos = m.end()
    if pos < len(markup):
        out.append(unescape(markup[pos:]))
    return out


def join_tokens(tokens: Iterable[Token]) -> str:
    """Markup from tokens: text runs are escaped, tags written in their canonical form."""
    return "".join(escape(t) if isinstance(t, str) else str(t) for t in tokens)


def map_text(markup: str, fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to every text run of the markup (unescaped), leave the tags alone, re-escape."""
    return join_tokens(fn(t) if isinstance(t, str) else t for t in tokenize(markup))


def strip_tags(markup: str) -> str:
    """Plain text of model output (for QE, metrics, TM): tags removed, escapes undone."""
    return "".join(t for t in tokenize(markup) if isinstance(t, str))


# --------------------------------------------------------------------------------------------------- pairing

def _pairing(parts: list[Part]) -> dict[int, int]:
    """Indices of OPEN parts -> index of their CLOSE partner, matched stack-wise by id.

    A close whose id is not on the stack is unmatched; a close whose id is deeper in the stack closes that open
    and leaves the opens above it unmatched (they would overlap). Isolated codes never pair.
    """
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for i, part in enumerate(parts):
        if not isinstance(part, InlineCode) or part.isolated:
            continue
        if part.kind is CodeKind.OPEN:
            stack.append(i)
        elif part.kind is CodeKind.CLOSE:
            for depth in range(len(stack) - 1, -1, -1):
                if parts[stack[depth]].id == part.id:  # type: ignore[union-attr]
                    pairs[stack[depth]] = i
                    del stack[depth:]
                    break
    return pairs


def pair_codes(segment: Segment) -> list[tuple[InlineCode, InlineCode]]:
    """The (open, close) code pairs of a segment, as :func:`render` pairs them."""
    parts = segment.parts
    return [(parts[o], parts[c]) for o, c in sorted(_pairing(parts).items())]  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------- render

@dataclass
class Rendered:
    """A segment as the model sees it.

    ``text`` is the markup; ``codes`` maps each tag number to the code written as ``<n>`` (an open code with its
    partner in the segment) or ``<n/>`` (anything else); ``closers`` maps the number of each pair to its close
    code (written ``</n>``). ``tokens`` is the markup as text runs and tags.
    """

    text: str
    codes: dict[int, InlineCode]
    closers: dict[int, InlineCode]
    source: Segment
    tokens: list[Token] = field(default_factory=list, repr=False)

    def paired(self, number: int) -> bool:
        return number in self.closers

    @property
    def plain(self) -> str:
        """The source text without tags (unescaped)."""
        return self.source.text

    def tag_count(self) -> int:
        return len(self.codes)

    def parse(self, model_output: str) -> "Restored":
        return parse(self, model_output)


def render(segment: Segment) -> Rendered:
    """Numbered-tag markup for a segment; see the module docstring."""
    parts = segment.parts
    pairing = _pairing(parts)
    closes_at = {c: o for o, c in pairing.items()}
    number_at: dict[int, int] = {}
    codes: dict[int, InlineCode] = {}
    closers: dict[int, InlineCode] = {}
    tokens: list[Token] = []
    n = 0
    for i, part in enumerate(parts):
        if isinstance(part, str):
            tokens.append(part)
        elif i in closes_at:
            num = number_at[closes_at[i]]
            closers[num] = part
            tokens.append(Tag(num, "close"))
        else:
            n += 1
            codes[n] = part
            if i in pairing:
                number_at[i] = n
                tokens.append(Tag(n, "open"))
            else:
                tokens.append(Tag(n, "single"))
    return Rendered(join_tokens(tokens), codes, closers, segment, tokens)


# --------------------------------------------------------------------------------------------------- parse

@dataclass
class Restored:
    """Model output mapped back to a segment with the original codes.

    ``ok`` False means the codes could not be put back safely: the segment still holds every source code exactly
    once and is well-formed (so it can be shown to a reviewer), but it must not be written as a target.
    ``problems`` lists every deviation found, repaired or not.
    """

    segment: Segment
    problems: list[str] = field(default_factory=list)
    ok: bool = True

    @property
    def repaired(self) -> bool:
        """True when the output needed changes that were safe to make."""
        return self.ok and bool(self.problems)


def _blocks(tokens: list[Token]) -> tuple[set[int], set[int]]:
    """Token indices before any non-blank text (leading) and after all of it (trailing)."""
    text_at = [i for i, t in enumerate(tokens) if isinstance(t, str) and t.strip()]
    if not text_at:
        every = set(range(len(tokens)))
        return every, every
    return set(range(text_at[0])), set(range(text_at[-1] + 1, len(tokens)))


def parse(rendered: Rendered, model_output: str) -> Restored:
    """Map model output back onto the source codes; repair what is safe, flag the rest.

    Safe repairs (``ok`` stays True, each is listed in ``problems``): invented tags and duplicates are dropped; a
    pair written ``<n/>`` becomes an empty pair; a standalone written ``<n>``/``</n>`` is accepted; a missing tag
    that stood before all text in the source goes to the start, one that stood after all text (or any missing
    ``<n/>``, or an empty pair) goes to the end — a pair that wrapped the whole source wraps the whole target.
    Anything else (a missing tag in the middle of a pair's text, a close before its open, overlapping pairs) is
    flagged: ``ok`` is False. The result always contains every source code exactly once, properly nested.
    """
    problems: list[str] = []
    flagged = False

    def flag(msg: str) -> None:
        nonlocal flagged
        flagged = True
        problems.append(msg)

    src = rendered.tokens
    src_pos = {(t.number, t.role): i for i, t in enumerate(src) if isinstance(t, Tag)}

    # --- B: classify and de-duplicate --------------------------------------------------------------------
    body: list[Token | None] = []
    seen_single: set[int] = set()
    open_at: dict[int, int] = {}
    close_at: dict[int, int] = {}
    for tok in tokenize(model_output):
        if isinstance(tok, str):
            body.append(tok)
            continue
        n = tok.number
        if n not in rendered.codes:
            problems.append(f"invented tag {tok} removed")
            continue
        if not rendered.paired(n):
            if n in seen_single:
                problems.append(f"duplicate tag {tok} removed")
                continue
            seen_single.add(n)
            if tok.role != "single":
                problems.append(f"tag <{n}/> was written as {tok}")
            body.append(Tag(n, "single"))
        elif tok.role == "open":
            if n in open_at:
                problems.append(f"duplicate tag {tok} removed")
                continue
            open_at[n] = len(body)
            body.append(tok)
        elif tok.role == "close":
            if n in close_at:
                if n in open_at and close_at[n] < open_at[n]:
                    # an earlier stray </n> came before <n>: this later one is the real partner
                    body[close_at[n]] = None
                    problems.append(f"duplicate tag </{n}> before <{n}> removed")
                else:
                    problems.append(f"duplicate tag {tok} removed")
                    continue
            close_at[n] = len(body)
            body.append(tok)
        else:  # <n/> written for a pair: an empty pair
            if n in open_at or n in close_at:
                problems.append(f"duplicate tag {tok} removed")
                continue
            i, j = src_pos[(n, "open")], src_pos[(n, "close")]
            if any(isinstance(t, str) and t.strip() for t in src[i + 1:j]):
                flag(f"pair <{n}>…</{n}> was written as <{n}/>: the text it covered is lost")
            else:
                problems.append(f"empty pair <{n}></{n}> was written as <{n}/>")
            open_at[n] = len(body)
            body.append(Tag(n, "open"))
            close_at[n] = len(body)
            body.append(Tag(n, "close"))

    # --- C: put back what is missing ---------------------------------------------------------------------
    leading, trailing = _blocks(src)
    prefix: list[tuple[int, Tag]] = []
    suffix: list[tuple[int, Tag]] = []
    before_close: dict[int, Tag] = {}
    for i, tok in enumerate(src):
        if not isinstance(tok, Tag):
            continue
        n = tok.number
        if tok.role == "single":
            if n in seen_single:
                continue
            if i in leading:
                prefix.append((i, tok))
                problems.append(f"missing tag {tok} added at the start")
            else:
                suffix.append((i, tok))
                problems.append(f"missing tag {tok} added at the end")
        elif tok.role == "open":
            j = src_pos[(n, "close")]
            has_open, has_close = n in open_at, n in close_at
            if has_open and has_close:
                continue
            textless = not any(isinstance(t, str) and t.strip() for t in src[i + 1:j])
            if not has_open and not has_close:
                if i in leading and j in trailing:
                    prefix.append((i, tok))
                    suffix.append((j, Tag(n, "close")))
                    problems.append(f"missing pair <{n}>…</{n}> put around the whole text")
                elif i in leading and j in leading:
                    prefix.extend([(i, tok), (j, Tag(n, "close"))])
                    problems.append(f"missing empty pair <{n}></{n}> added at the start")
                elif i in trailing or textless:
                    suffix.extend([(i, tok), (j, Tag(n, "close"))])
                    problems.append(f"missing empty pair <{n}></{n}> added at the end")
                else:
                    suffix.extend([(i, tok), (j, Tag(n, "close"))])
                    flag(f"missing pair <{n}>…</{n}>: cannot tell which text it covers")
            elif not has_open:
                if i in leading:
                    prefix.append((i, tok))
                    problems.append(f"missing tag <{n}> added at the start")
                else:
                    before_close[n] = tok
                    flag(f"missing tag <{n}>: cannot tell where it starts")
            else:  # close missing
                if j in trailing:
                    suffix.append((j, Tag(n, "close")))
                    problems.append(f"missing tag </{n}> added at the end")
                else:
                    flag(f"missing tag </{n}>: cannot tell where it ends")

    seq: list[Token] = [t for _, t in sorted(prefix)]
    for tok in body:
        if tok is None:
            continue
        if isinstance(tok, Tag) and tok.role == "close" and tok.number in before_close:
            seq.append(before_close.pop(tok.number))
        seq.append(tok)
    seq.extend(t for _, t in sorted(suffix))

    # --- D: enforce proper nesting -----------------------------------------------------------------------
    out: list[Part] = []
    stack: list[int] = []
    closed: set[int] = set()
    late_close: set[int] = set()
    for tok in seq:
        if isinstance(tok, str):
            out.append(tok)
            continue
        n = tok.number
        if tok.role == "single":
            out.append(rendered.codes[n])
        elif tok.role == "open":
            stack.append(n)
            out.append(rendered.codes[n])
        elif n in closed:
            continue  # already closed early because of an overlap
        elif stack and stack[-1] == n:
            stack.pop()
            closed.add(n)
            out.append(rendered.closers[n])
        elif n in stack:
            depth = stack.index(n)
            inner = stack[depth + 1:]
            flag(f"tags {', '.join(f'<{m}>' for m in inner)} overlap <{n}>: closed before </{n}>")
            for m in reversed(inner):
                closed.add(m)
                out.append(rendered.closers[m])
            del stack[depth:]
            closed.add(n)
            out.append(rendered.closers[n])
        else:
            flag(f"tag </{n}> comes before <{n}>")
            late_close.add(n)
    for n in reversed(stack):
        out.append(rendered.closers[n])
    segment = Segment(out)

    # --- final check against the source: the same codes, the same pairs ----------------------------------
    if not flagged:
        for msg in check(rendered.source, segment):
            flag(msg)
    return Restored(segment, problems, not flagged)


# --------------------------------------------------------------------------------------------------- check

def describe(code: InlineCode, limit: int = 40) -> str:
    text = code.display or code.xml or f"{code.kind.value} {code.id}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check(source: Segment, target: Segment) -> list[str]:
    """What differs in the codes of a target from its source: missing, extra, or pairs broken.

    Codes compare by value (id, kind, original markup, ...). A pair of the source must be a pair in the target
    (open before close, properly nested); codes that form a pair in the target but not in the source are
    reported too (the target's XML would nest differently). Empty list = the codes match.
    """
    msgs: list[str] = []
    src_codes, tgt_codes = Counter(source.codes), Counter(target.codes)
    for code, count in (src_codes - tgt_codes).items():
        msgs.append(f"missing code {describe(code)!r}" + (f" ({count}×)" if count > 1 else ""))
    for code, count in (tgt_codes - src_codes).items():
        msgs.append(f"extra code {describe(code)!r}" + (f" ({count}×)" if count > 1 else ""))
    bad = set((src_codes - tgt_codes) | (tgt_codes - src_codes))
    src_pairs, tgt_pairs = Counter(pair_codes(source)), Counter(pair_codes(target))
    for (o, c), _ in (src_pairs - tgt_pairs).items():
        if o in bad or c in bad:
            continue
        msgs.append(f"codes {describe(o)!r} … {describe(c)!r} are out of order or overlap another pair")
    for (o, c), _ in (tgt_pairs - src_pairs).items():
        if o in bad or c in bad:
            continue
        msgs.append(f"codes {describe(o)!r} … {describe(c)!r} form a pair that the source does not have")
    return msgs


def render_like(rendered: Rendered, segment: Segment) -> tuple[str, list[str]]:
    """Markup for another segment of the same unit (an existing target, a TM target, a revision) with the tag
    numbers of the rendered source, so the model sees one numbering for both.

    A code equal to the source's ``<n>`` / ``</n>`` / ``<n/>`` code gets that tag; a code the source lacks is
    left out and reported. Equal codes that occur twice are numbered in order of appearance.
    """
    slots: dict[InlineCode, list[Tag]] = {}
    for n, code in rendered.codes.items():
        slots.setdefault(code, []).append(Tag(n, "open" if rendered.paired(n) else "single"))
    for n, code in rendered.closers.items():
        slots.setdefault(code, []).append(Tag(n, "close"))
    tokens: list[Token] = []
    problems: list[str] = []
    for part in segment.parts:
        if isinstance(part, str):
            tokens.append(part)
            continue
        queue = slots.get(part)
        if not queue:
            problems.append(f"target code {describe(part)!r} is not in the source: left out")
            continue
        tokens.append(queue.pop(0))
    return join_tokens(tokens), problems
