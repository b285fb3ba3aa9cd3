"""Safe XML reading and byte-preserving writing shared by the XML formats (XLIFF 1.2/2.x, SDLXLIFF, MQXLIFF, TMX).

Reading: lxml with entity resolution, DTD loading and network off; a DOCTYPE that declares entities is refused
(XXE, billion laughs). A light scanner then finds, for every element, where its start tag, content and end tag
lie in the decoded text, so a writer can splice new targets and attributes into the original text and leave
everything else exactly as it was: declaration, quoting, namespace prefixes, entity and whitespace choices.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from tower_cat.errors import FormatError, InvalidArgument, UnsafeXMLError

XML_NS = "http://www.w3.org/XML/1998/namespace"

# Limits on what input decides the size of. Generous: real CAT files stay far below them (the largest corpus
# files nest 12 deep, have start tags under 4 KB and text nodes under 1 MB); a file past one is refused with a
# FormatError naming the line, instead of costing unbounded memory, time or Python recursion. Module constants
# so a deployment can raise them (``tower_cat.formats._xml.MAX_DEPTH = 512``).
MAX_DEPTH = 256  # element nesting (libxml2's own default without XML_PARSE_HUGE)
MAX_ELEMENTS = 50_000_000  # elements per file (a 1.6 M-unit XLIFF has about 8 M)
MAX_UNITS = 5_000_000  # units (trans-units, tus, segments, PO messages) per file
MAX_ATTRIBUTE_CHARS = 1_000_000  # one attribute value
MAX_TEXT_CHARS = 100_000_000  # one run of text between two tags (SDLXLIFF embeds whole originals as base64)

_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
         (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
_DECL_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_DOCTYPE = re.compile(r"<!DOCTYPE(?:[^\[>]|\[.*?\])*>", re.S)
_TOKEN = re.compile(
    r"""<!--.*?-->
      |<!\[CDATA\[.*?\]\]>
      |<\?.*?\?>
      |<!DOCTYPE(?:[^\[>]|\[.*?\])*>
      |</(?P<end>[^\s>]+)\s*>
      |<(?P<start>[^\s/>!?]+)(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*(?P<empty>/)?>""",
    re.S | re.X,
)
_ATTR = re.compile(r"""(\s+)([^\s=/>]+)(\s*=\s*)(["'])(.*?)\4""", re.S)


_ASCII_PROBE = '<?xml version="1.0" encoding="x"?>\n<a b=\'c\'>&amp;+-/:;[]{}_.%#!09AZaz</a>'


def ascii_compatible(codec: str) -> bool:
    """True when the codec writes ASCII markup as ASCII bytes (UTF-8, Latin-1, windows-125x, Shift_JIS, ...).

    UTF-7 is not (``<`` can be written ``+ADw-``: the classic way to smuggle markup past filters), nor are EBCDIC
    code pages; both are refused. UTF-16 and UTF-32 are recognised by their BOM or zero bytes and allowed."""
    try:
        return _ASCII_PROBE.encode(codec) == _ASCII_PROBE.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def check_encoding(name: str, path: Path | None = None, line: int | None = None, where: str = "the XML declaration",
                   ) -> str:
    """The Python codec for an encoding a file declares, refusing unknown ones and those that are not
    ASCII-compatible (UTF-7, EBCDIC, ...); UTF-16 and UTF-32 are allowed."""
    import codecs

    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise FormatError(f"unknown character encoding {name!r} in {where}", path=path, line=line) from None
    if codec.startswith(("utf-16", "utf-32")) or ascii_compatible(codec):
        return codec
    raise FormatError(f"character encoding {name!r} in {where} is refused: it is not ASCII-compatible, so markup "
                      f"could hide in it", path=path, line=line, hint="convert the file to UTF-8")


def decode(raw: bytes, path: Path | None = None) -> tuple[str, str, bytes]:
    """Decode an XML file the way an XML parser would: BOM, then the declaration, then UTF-8.

    Returns (text without BOM, Python codec name, the BOM bytes to write back). Encodings that are not
    ASCII-compatible (UTF-7, EBCDIC) are refused (:func:`check_encoding`).
    """
    bom, encoding = b"", None
    for mark, enc in _BOMS:
        if raw.startswith(mark):
            bom, encoding = mark, enc
            break
    if encoding is None:
        if raw[:4] == b"<\x00\x00\x00":
            encoding = "utf-32-le"
        elif raw[:4] == b"\x00\x00\x00<":
            encoding = "utf-32-be"
        elif raw[:2] == b"<\x00":
            encoding = "utf-16-le"
        elif raw[:2] == b"\x00<":
            encoding = "utf-16-be"
        else:
            m = _DECL_ENCODING.match(raw[:400])
            encoding = m.group(1).decode("ascii").lower() if m else "utf-8"
            if encoding in ("utf-16", "utf16"):
                encoding = "utf-16-le"
            encoding = check_encoding(encoding, path, line=raw[:m.start(1)].count(b"\n") + 1 if m else None)
    try:
        text = raw[len(bom):].decode(encoding)
    except LookupError:
        raise FormatError(f"unknown character encoding {encoding!r} in the XML declaration", path=path) from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise FormatError(f"bytes that are not valid {encoding}", path=path, line=line,
                          hint="check the encoding declared in the XML declaration") from None
    return text, encoding, bom


def check_doctype(text: str, path: Path | None = None) -> None:
    """Refuse entity declarations: they are how XXE and billion-laughs attacks work, and no CAT format needs them."""
    idx = text.find("<!DOCTYPE", 0, 65536)
    m = _DOCTYPE.match(text, idx) if idx >= 0 else None
    if not m:
        return
    if "<!ENTITY" in m.group(0):
        line = text.count("\n", 0, m.start()) + 1
        raise UnsafeXMLError("the DOCTYPE declares entities, which tower-cat refuses for safety (XXE, entity "
                             "expansion)", path=path, line=line, hint="remove the internal DTD subset")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           remove_blank_text=False, strip_cdata=False, remove_comments=False, huge_tree=True)


@dataclass
class Span:
    """Offsets of one element in the decoded text: <start ...>content</end> = [start, tag_end)[tag_end, close)[close, end)."""

    start: int
    tag_end: int
    close: int = -1
    end: int = -1

    @property
    def empty(self) -> bool:
        return self.tag_end == self.end


class Spans:
    """Element -> :class:`Span`, stored as four parallel int lists (document order) and a dict from element to
    index: no object per element beyond lxml's own proxy, so the garbage collector has less to walk."""

    __slots__ = ("index", "starts", "tag_ends", "closes", "ends")

    def __init__(self, index: dict, starts: list[int], tag_ends: list[int], closes: list[int], ends: list[int]):
        self.index = index
        self.starts = starts
        self.tag_ends = tag_ends
        self.closes = closes
        self.ends = ends

    def __getitem__(self, el: etree._Element) -> Span:
        i = self.index[el]
        return Span(self.starts[i], self.tag_ends[i], self.closes[i], self.ends[i])

    def __contains__(self, el: object) -> bool:
        return el in self.index

    def __len__(self) -> int:
        return len(self.index)

    def get(self, el: etree._Element, default=None):
        i = self.index.get(el)
        return default if i is None else Span(self.starts[i], self.tag_ends[i], self.closes[i], self.ends[i])


@dataclass
class XmlFile:
    """A parsed XML file that remembers its own text, so unchanged parts are written back byte for byte."""

    path: Path
    text: str
    encoding: str
    bom: bytes
    root: etree._Element
    spans: Spans = field(repr=False, default=None)

    def span(self, el: etree._Element) -> Span:
        return self.spans[el]

    def outer(self, el: etree._Element) -> str:
        sp = self.spans
        i = sp.index[el]
        return self.text[sp.starts[i]:sp.ends[i]]

    def inner(self, el: etree._Element) -> str:
        sp = self.spans
        i = sp.index[el]
        return self.text[sp.tag_ends[i]:sp.closes[i]]

    def start_tag(self, el: etree._Element) -> str:
        sp = self.spans
        i = sp.index[el]
        return self.text[sp.starts[i]:sp.tag_ends[i]]

    def end_tag(self, el: etree._Element) -> str:
        sp = self.spans
        i = sp.index[el]
        return self.text[sp.closes[i]:sp.ends[i]]

    def indent_before(self, el: etree._Element) -> str:
        """The whitespace that precedes the element on its line (used to indent an inserted sibling)."""
        start = self.spans.starts[self.spans.index[el]]
        line_start = self.text.rfind("\n", 0, start) + 1
        prefix = self.text[line_start:start]
        return prefix if prefix.strip() == "" else ""

    def removal_range(self, el: etree._Element) -> tuple[int, int]:
        """The text to cut to remove an element: with the line break and indentation before it when it sits on a
        line of its own, so no blank line is left."""
        sp = self.spans
        i = sp.index[el]
        start, text = sp.starts[i], self.text
        line_start = text.rfind("\n", 0, start) + 1
        if line_start > 0 and not text[line_start:start].strip():
            start = line_start - 1
            if start > 0 and text[start - 1] == "\r":
                start -= 1
        return start, sp.ends[i]

    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text[:4096] else "\n"

    def encode(self, text: str) -> bytes:
        return self.bom + text.encode(self.encoding, errors="xmlcharrefreplace")


def parse(path: Path, raw: bytes | None = None) -> XmlFile:
    """Parse safely and map every element to its offsets in the decoded text."""
    if raw is None:
        raw = path.read_bytes()
    text, encoding, bom = decode(raw, path)
    check_doctype(text, path)
    try:
        root = etree.fromstring(raw, _parser(), base_url=None)
    except etree.XMLSyntaxError as exc:
        line = exc.position[0] if exc.position else None
        raise FormatError(f"not well-formed XML: {exc.msg}", path=path, line=line) from None
    for el in root.iter(etree.Entity):
        raise UnsafeXMLError(f"entity reference &{el.text.strip('&;')}; is not allowed", path=path,
                             line=el.sourceline)
    elements = list(root.iter(etree.Element))
    if len(elements) > MAX_ELEMENTS:
        raise FormatError(f"{len(elements)} elements: more than tower-cat reads in one file ({MAX_ELEMENTS})",
                          path=path, hint="split the file")
    starts, tag_ends, closes, ends = _scan(text, path)
    if len(starts) != len(elements):
        raise FormatError(f"could not locate {len(elements)} elements in the text (found {len(starts)})", path=path,
                          hint="please report this file to the tower-cat developers")
    spans = Spans(dict(zip(elements, range(len(elements)))), starts, tag_ends, closes, ends)
    return XmlFile(path=path, text=text, encoding=encoding, bom=bom, root=root, spans=spans)


_SPECIAL = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<!DOCTYPE(?:[^\[>]|\[.*?\])*>", re.S)


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def check_units(count: int, path: Path | None = None, line: int | None = None, what: str = "units") -> None:
    """Refuse a file with more than :data:`MAX_UNITS` units (called by each reader as it counts)."""
    if count > MAX_UNITS:
        raise FormatError(f"more than {MAX_UNITS} {what} in one file: more than tower-cat reads", path=path,
                          line=line, hint="split the file (or raise tower_cat.formats._xml.MAX_UNITS)")


def check_depth(depth: int, path: Path | None = None, line: int | None = None) -> None:
    if depth > MAX_DEPTH:
        raise FormatError(f"elements nested more than {MAX_DEPTH} deep", path=path, line=line,
                          hint="no CAT format needs this; raise tower_cat.formats._xml.MAX_DEPTH if it is real")


def check_text(length: int, path: Path | None = None, line: int | None = None) -> None:
    if length > MAX_TEXT_CHARS:
        raise FormatError(f"a text of {length} characters: longer than tower-cat reads ({MAX_TEXT_CHARS})",
                          path=path, line=line, hint="raise tower_cat.formats._xml.MAX_TEXT_CHARS if it is real")


def check_start_tag(tag: str, path: Path | None = None, line: int | None = None) -> None:
    """Refuse an attribute value longer than :data:`MAX_ATTRIBUTE_CHARS` (only called for long start tags)."""
    for m in _ATTR.finditer(tag):
        if len(m.group(5)) > MAX_ATTRIBUTE_CHARS:
            raise FormatError(f"attribute {m.group(2)!r} has a value of {len(m.group(5))} characters: longer than "
                              f"tower-cat reads ({MAX_ATTRIBUTE_CHARS})", path=path, line=line,
                              hint="raise tower_cat.formats._xml.MAX_ATTRIBUTE_CHARS if it is real")


def _scan(text: str, path: Path | None = None) -> tuple[list[int], list[int], list[int], list[int]]:
    """Offsets of every element of a well-formed document, in document order of the start tags: four parallel
    lists (start, tag_end, close, end). Relies on lxml having accepted the text: ``<`` only opens markup outside
    comments, CDATA and processing instructions, and attribute values never contain ``<``.

    Also enforces :data:`MAX_DEPTH`, :data:`MAX_TEXT_CHARS` and :data:`MAX_ATTRIBUTE_CHARS` on the way (a
    comparison per element)."""
    starts: list[int] = []
    tag_ends: list[int] = []
    closes: list[int] = []
    ends: list[int] = []
    stack: list[int] = []
    push, pop = stack.append, stack.pop
    find, count = text.find, text.count
    max_depth, max_text, max_attr = MAX_DEPTH, MAX_TEXT_CHARS, MAX_ATTRIBUTE_CHARS
    p = find("<")
    while p >= 0:
        c = text[p + 1]
        if c == "/":
            gt = find(">", p)
            i = pop()
            closes[i] = p
            ends[i] = gt + 1
        elif c == "!" or c == "?":
            m = _SPECIAL.match(text, p)
            if m is None:
                raise FormatError(f"unrecognised markup at offset {p}", path=path, line=_line(text, p))
            gt = m.end() - 1
            if gt - p > max_text:
                check_text(gt - p, path, _line(text, p))
        else:
            gt = find(">", p)
            if count('"', p, gt) & 1 or count("'", p, gt):
                m = _TOKEN.match(text, p)  # a '>' inside a quoted attribute value, or single quotes
                gt = m.end() - 1
            if gt - p > max_attr:
                check_start_tag(text[p:gt + 1], path, _line(text, p))
            i = len(starts)
            starts.append(p)
            tag_ends.append(gt + 1)
            if text[gt - 1] == "/":
                closes.append(gt + 1)
                ends.append(gt + 1)
            else:
                closes.append(-1)
                ends.append(-1)
                push(i)
                if len(stack) > max_depth:
                    check_depth(len(stack), path, _line(text, p))
        p = find("<", gt)
        if (p if p >= 0 else len(text)) - gt > max_text:
            check_text((p if p >= 0 else len(text)) - gt - 1, path, _line(text, gt))
    return starts, tag_ends, closes, ends


class StreamScanner:
    """:func:`_scan` one markup token at a time, for a streaming reader that follows lxml's ``iterparse``: the
    n-th element start event is the n-th start tag in the text, so the reader asks for the next start tag at each
    start event (:meth:`next_start`) and for the end tag at each end event (:meth:`close`). Offsets live in dicts
    keyed by the element's ordinal, which the reader deletes (:meth:`forget`) once it has written those elements:
    memory follows the window being worked on, not the file."""

    def __init__(self, text: str, path: Path | None = None):
        self.text = text
        self.path = path
        self.count = 0
        self.starts: dict[int, int] = {}
        self.tag_ends: dict[int, int] = {}
        self.closes: dict[int, int] = {}
        self.ends: dict[int, int] = {}
        self._stack: list[int] = []
        self._p = text.find("<")

    def _lost(self) -> FormatError:
        return FormatError(f"could not locate element {self.count + 1} in the text", path=self.path,
                           hint="please report this file to the tower-cat developers")

    def _step(self) -> int:
        """Read the markup token at the current position; the ordinal of a start tag, else -1."""
        text, p = self.text, self._p
        if p < 0:
            raise self._lost()
        c = text[p + 1]
        started = -1
        if c == "/":
            gt = text.find(">", p)
            i = self._stack.pop()
            self.closes[i] = p
            self.ends[i] = gt + 1
        elif c == "!" or c == "?":
            m = _SPECIAL.match(text, p)
            if m is None:
                raise FormatError(f"unrecognised markup at offset {p}", path=self.path, line=_line(text, p))
            gt = m.end() - 1
            if gt - p > MAX_TEXT_CHARS:
                check_text(gt - p, self.path, _line(text, p))
        else:
            gt = text.find(">", p)
            if text.count('"', p, gt) & 1 or text.count("'", p, gt):
                gt = _TOKEN.match(text, p).end() - 1  # a '>' inside a quoted attribute value, or single quotes
            if gt - p > MAX_ATTRIBUTE_CHARS:
                check_start_tag(text[p:gt + 1], self.path, _line(text, p))
            started = i = self.count
            self.count += 1
            if self.count > MAX_ELEMENTS:
                raise FormatError(f"more than {MAX_ELEMENTS} elements: more than tower-cat reads in one file",
                                  path=self.path, line=_line(text, p), hint="split the file")
            self.starts[i] = p
            self.tag_ends[i] = gt + 1
            if text[gt - 1] == "/":
                self.closes[i] = self.ends[i] = gt + 1
            else:
                self.closes[i] = self.ends[i] = -1
                self._stack.append(i)
                if len(self._stack) > MAX_DEPTH:
                    check_depth(len(self._stack), self.path, _line(text, p))
        nxt = text.find("<", gt)
        if (nxt if nxt >= 0 else len(text)) - gt > MAX_TEXT_CHARS:
            check_text((nxt if nxt >= 0 else len(text)) - gt - 1, self.path, _line(text, gt))
        self._p = nxt
        return started

    def next_start(self) -> int:
        """The ordinal of the next element's start tag."""
        while True:
            i = self._step()
            if i >= 0:
                return i

    def close(self, i: int) -> None:
        """Read on to element ``i``'s end tag."""
        ends = self.ends
        while ends[i] < 0:
            self._step()

    def forget(self, i: int) -> None:
        del self.starts[i], self.tag_ends[i], self.closes[i], self.ends[i]


class Splicer:
    """Collects replacements of text ranges and applies them in one pass."""

    def __init__(self, text: str):
        self.text = text
        self._edits: list[tuple[int, int, int, str]] = []

    def replace(self, start: int, end: int, new: str) -> None:
        self._edits.append((start, end, len(self._edits), new))

    def insert(self, pos: int, new: str) -> None:
        self.replace(pos, pos, new)

    def __bool__(self) -> bool:
        return bool(self._edits)

    def result(self) -> str:
        return _splice(self.text, self._edits, 0, len(self.text))


def _splice(text: str, edits: list[tuple[int, int, int, str]], lo: int, hi: int) -> str:
    """``text[lo:hi]`` with the edits (start, end, order, new) applied; every edit lies within [lo, hi]."""
    out, pos = [], lo
    for start, end, _, new in sorted(edits):
        if start < pos:
            raise AssertionError(f"overlapping edits at offset {start}")
        out.append(text[pos:start])
        out.append(new)
        pos = end
    out.append(text[pos:hi])
    return "".join(out)


class StreamSplicer(Splicer):
    """A :class:`Splicer` for a file written front to back in pieces: :meth:`flush` gives the text up to an offset
    with its edits and forgets them. The head (everything before the first unit) is given last (:meth:`head`),
    since edits to it (a ``<file>``'s target-language, namespace declarations on the root) are known only at the
    end; the caller writes it in front of the pieces."""

    def __init__(self, text: str, head_end: int):
        super().__init__(text)
        self.head_end = head_end
        self.pos = head_end
        self._head: list[tuple[int, int, int, str]] = []

    def replace(self, start: int, end: int, new: str) -> None:
        if end <= self.head_end:
            self._head.append((start, end, len(self._head), new))
        elif start < self.pos:
            raise AssertionError(f"an edit at offset {start}, behind the {self.pos} characters already written")
        else:
            self._edits.append((start, end, len(self._edits), new))

    def flush(self, upto: int) -> str:
        """The text from the last flush up to ``upto`` with its edits."""
        now = [e for e in self._edits if e[0] < upto]
        if now:
            self._edits = [e for e in self._edits if e[0] >= upto]
            upto = max(upto, max(e[1] for e in now))
        piece = _splice(self.text, now, self.pos, upto)
        self.pos = upto
        return piece

    def head(self) -> str:
        return _splice(self.text, self._head, 0, self.head_end)


def escape_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(s: str, quote: str = '"') -> str:
    s = escape_text(s).replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return s.replace('"', "&quot;") if quote == '"' else s.replace("'", "&apos;")


def set_attrs(start_tag: str, changes: dict[str, str | None]) -> str:
    """Change, add or remove (value None) attributes in a start tag's text, keeping the rest as written."""
    changes = dict(changes)
    out, pos = [], 0
    for m in _ATTR.finditer(start_tag):
        name = m.group(2)
        if name not in changes:
            continue
        value = changes.pop(name)
        out.append(start_tag[pos:m.start()])
        if value is not None:
            quote = m.group(4)
            out.append(f"{m.group(1)}{name}{m.group(3)}{quote}{escape_attr(value, quote)}{quote}")
        pos = m.end()
    out.append(start_tag[pos:])
    tag = "".join(out)
    added = "".join(f' {k}="{escape_attr(v)}"' for k, v in changes.items() if v is not None)
    if added:
        cut = len(tag) - (2 if tag.endswith("/>") else 1)
        while cut > 0 and tag[cut - 1].isspace():
            cut -= 1
        tag = tag[:cut] + added + tag[cut:]
    return tag


def qname(el: etree._Element, ns: str, local: str, declare: dict[str, str] | None = None,
          preferred: str | None = None) -> str:
    """The attribute name to write for {ns}local on this element: the prefix in scope, or a new one.

    When the namespace is not declared, ``preferred`` is used and recorded in ``declare`` (prefix -> uri) so
    the writer can add the declaration to the root element.
    """
    if ns == XML_NS:
        return f"xml:{local}"
    for prefix, uri in (el.nsmap or {}).items():
        if uri == ns and prefix:
            return f"{prefix}:{local}"
    if declare is not None and preferred:
        declare[preferred] = ns
        return f"{preferred}:{local}"
    raise InvalidArgument(f"namespace {ns} not declared")


def localname(el: etree._Element) -> str:
    tag = el.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def namespace(el: etree._Element) -> str:
    tag = el.tag
    return tag[1:].split("}", 1)[0] if isinstance(tag, str) and tag.startswith("{") else ""


def _temp_prefix(path: Path) -> str:
    # short enough that the temporary name fits where the final name fits (255 bytes with ".XXXXXXXX.tmp")
    return f".{path.name.encode('utf-8')[:100].decode('utf-8', 'ignore')}."


def remove_stale_temporaries(path: Path) -> int:
    """Remove temporary files a killed run left beside ``path`` (``.NAME.XXXXXXXX.tmp``). A writer holds an
    exclusive lock on its temporary file, so one that can be locked has no writer left. The number removed."""
    import fcntl

    removed = 0
    try:
        candidates = list(path.parent.glob(glob_escape(_temp_prefix(path)) + "*.tmp"))
    except OSError:
        return 0
    for tmp in candidates:
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # still being written by a live process
            os.close(fd)
            continue
        try:
            os.unlink(tmp)
            removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", **kwargs):
    """Open a temporary file beside ``path`` and rename it into place when the block ends without error:
    never a half-written file, and nothing left behind on failure. A symlink is followed: the file it points
    to is replaced and the link kept. Temporary files of a killed earlier run are removed first."""
    import fcntl

    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # this writer is alive (see remove_stale_temporaries)
        # mkstemp creates 0600; give the file the mode it had, or what the umask allows for a new file
        try:
            file_mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            file_mode = 0o666 & ~umask
        os.fchmod(fd, file_mode)
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write the whole file at once through :func:`atomic_open`."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while a reader or writer builds many small objects (lxml proxies,
    units, segments): its repeated full passes otherwise make loading a 100 000-unit file several times slower.

    On the way out, everything is moved into the oldest generation (``gc.freeze()`` + ``gc.unfreeze()``, a
    constant-time list move): the objects built in the block are long-lived, and the collector would otherwise walk
    all of them in a young-generation pass at the first allocation after ``gc.enable()``, again in the
    middle-generation pass, and once more in a full pass soon after. They are still collected in full passes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()
