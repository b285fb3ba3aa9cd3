"""Markup sent by CAT tools <-> the one data model (a Segment of text runs and InlineCodes).

The HTTP protocols carry inline markup inside plain strings: DeepL's ``tag_handling=xml|html`` (Weblate sends
its placeholders as ``<x id="3"></x>``), LibreTranslate's ``format=html``, and OmegaT's short tags (``<b0>``,
``</b0>``, ``<t1/>``) through the Apertium connector. Here every tag becomes an :class:`InlineCode` that keeps
its markup verbatim, so the model only ever sees numbered tags (``tower_cat.codes``) and the response carries
the original tags back, each exactly once and properly nested.

Modes
    ``xml``     every ``<name …>``, ``</name>``, ``<name …/>`` is a code; entities in text (``&amp;``, ``&lt;``,
                ``&#233;`` …) are decoded for the model and text is re-escaped (``& < >``) on the way out.
    ``html``    as ``xml`` plus HTML rules: void elements (``<br>``, ``<img>`` …) are standalone, ``<script>``,
                ``<style>`` and elements with ``translate="no"`` or class ``notranslate`` are kept whole,
                comments are kept as codes.
    ``omegat``  only OmegaT's tags (letters + a number: ``<b0>``, ``</b0>``, ``<t1/>``) are codes; all other
                text, including ``<``, ``&``, is literal.
    ``text``    no markup: the whole string is text.

``ignore_tags`` (DeepL): elements whose content must not be translated are kept whole as one standalone code.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from tower_cat.document import CodeKind, InlineCode, Segment
from tower_cat.errors import InvalidArgument

MODES = ("text", "xml", "html", "omegat")

_XML_TOKEN = re.compile(
    r"<!--.*?-->"                                   # comment
    r"|<!\[CDATA\[.*?\]\]>"                         # CDATA (kept as a code)
    r"|<\?.*?\?>"                                   # processing instruction
    r"|</\s*([A-Za-z_][\w:.-]*)\s*>"                # close tag: group 1
    r"|<([A-Za-z_][\w:.-]*)((?:\s+[^<>]*?)?)\s*(/?)>",  # open / self-closing: groups 2, 3, 4
    re.DOTALL,
)
_OMEGAT_TOKEN = re.compile(r"<(/?)([A-Za-z]+\d+)(/?)>")
VOID_HTML = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
             "wbr", "param", "keygen"}
KEEP_WHOLE_HTML = {"script", "style", "noscript", "template"}
_NO_TRANSLATE = re.compile(r"""\btranslate\s*=\s*["']?no\b|\bclass\s*=\s*["'][^"']*\bnotranslate\b""", re.I)


@dataclass(frozen=True)
class Markup:
    """A parsed string: the segment and how to write it back."""

    segment: Segment
    mode: str

    def render(self, segment: Segment | None = None) -> str:
        return to_markup(segment if segment is not None else self.segment, self.mode)


def _decode(text: str, mode: str) -> str:
    return html.unescape(text) if mode in ("xml", "html") else text


def _encode(text: str, mode: str) -> str:
    if mode in ("xml", "html"):
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def parse_markup(text: str, mode: str = "xml", ignore_tags: set[str] | frozenset[str] = frozenset()) -> Markup:
    """A string with inline markup -> a Segment whose codes keep every tag verbatim."""
    if mode not in MODES:
        raise InvalidArgument(f"unknown tag mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "text" or "<" not in text:
        return Markup(Segment.from_text(_decode(text, mode)), mode)
    if mode == "omegat":
        return Markup(_parse_omegat(text), mode)
    return Markup(_parse_xml(text, mode, {t.lower() for t in ignore_tags}), mode)


def _parse_omegat(text: str) -> Segment:
    parts: list = []
    pos = 0
    tokens = list(_OMEGAT_TOKEN.finditer(text))
    opened = {m.group(2) for m in tokens if not m.group(1) and not m.group(3)}
    closed = {m.group(2) for m in tokens if m.group(1)}
    for m in tokens:
        parts.append(text[pos:m.start()])
        pos = m.end()
        closing, name, single = m.group(1), m.group(2), m.group(3)
        if single or (not closing and name not in closed) or (closing and name not in opened):
            parts.append(InlineCode(id=name, kind=CodeKind.STANDALONE, xml=m.group(0), tag=name, display=m.group(0),
                                    isolated=not single))
        elif not closing:
            parts.append(InlineCode(id=name, kind=CodeKind.OPEN, xml=m.group(0), tag=name, display=m.group(0)))
        else:
            parts.append(InlineCode(id=name, kind=CodeKind.CLOSE, xml=m.group(0), tag=name, display=m.group(0)))
    parts.append(text[pos:])
    return Segment(parts)


def _parse_xml(text: str, mode: str, ignore: set[str]) -> Segment:
    """Tokenize, then pair opens and closes by name (stack); unpaired tags become isolated codes."""
    raw: list[tuple[str, str, str]] = []  # (kind, name, markup) with kind in text/open/close/single
    pos = 0
    for m in _XML_TOKEN.finditer(text):
        if m.start() > pos:
            raw.append(("text", "", text[pos:m.start()]))
        pos = m.end()
        if m.group(1) is not None:
            raw.append(("close", m.group(1).lower(), m.group(0)))
        elif m.group(2) is not None:
            name = m.group(2).lower()
            single = bool(m.group(4)) or (mode == "html" and name in VOID_HTML)
            raw.append(("single" if single else "open", name, m.group(0)))
        else:
            raw.append(("single", "#special", m.group(0)))
    if pos < len(text):
        raw.append(("text", "", text[pos:]))

    # pair opens with closes (same name, stack-wise); remember the partner index
    partner: dict[int, int] = {}
    stack: list[int] = []
    for i, (kind, name, _) in enumerate(raw):
        if kind == "open":
            stack.append(i)
        elif kind == "close":
            for depth in range(len(stack) - 1, -1, -1):
                if raw[stack[depth]][1] == name:
                    partner[stack[depth]] = i
                    partner[i] = stack[depth]
                    del stack[depth:]
                    break

    # ids come from the markup itself (k-th occurrence of the same tag), so the codes of a translation of
    # the same string compare equal to the source's (post-editing maps them by value)
    seen: dict[str, int] = {}
    ids: dict[int, str] = {}
    for i, (kind, name, markup) in enumerate(raw):
        if kind == "text" or (kind == "close" and i in partner):
            continue
        k = seen[markup] = seen.get(markup, 0) + 1
        ids[i] = f"{k}:{markup}"
        if kind == "open" and i in partner:
            ids[partner[i]] = ids[i]

    parts: list = []
    i = 0
    while i < len(raw):
        kind, name, markup = raw[i]
        if kind == "text":
            parts.append(_decode(markup, mode))
            i += 1
            continue
        whole = kind == "open" and i in partner and (
            name in ignore or (mode == "html" and (name in KEEP_WHOLE_HTML or _NO_TRANSLATE.search(markup))))
        if whole:  # the element and everything in it stay as they are
            j = partner[i]
            xml = "".join(r[2] for r in raw[i:j + 1])
            parts.append(InlineCode(id=ids[i], kind=CodeKind.STANDALONE, xml=xml, tag=name, display=xml))
            i = j + 1
            continue
        if kind == "open" and i in partner:
            code = InlineCode(id=ids[i], kind=CodeKind.OPEN, xml=markup, tag=name, display=markup)
        elif kind == "close" and i in partner:
            code = InlineCode(id=ids[i], kind=CodeKind.CLOSE, xml=markup, tag=name, display=markup)
        else:  # self-closing, void, comment, or a tag whose partner is missing
            code = InlineCode(id=ids[i], kind=CodeKind.STANDALONE, xml=markup, tag=name, display=markup,
                              isolated=kind in ("open", "close"))
        parts.append(code)
        i += 1
    return Segment(parts)


def to_markup(segment: Segment, mode: str) -> str:
    """A Segment back to a string: text escaped for the mode, codes written verbatim."""
    return "".join(_encode(p, mode) if isinstance(p, str) else p.xml for p in segment.parts)


def tags_of(text: str, mode: str = "xml") -> list[str]:
    """The tags of a string in order (what tests compare)."""
    if mode == "omegat":
        return [m.group(0) for m in _OMEGAT_TOKEN.finditer(text)]
    return [m.group(0) for m in _XML_TOKEN.finditer(text)]
