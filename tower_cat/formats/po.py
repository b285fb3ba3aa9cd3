"""Gettext PO/POT: our own small line parser, so that saving changes only the lines of edited entries.

translate-toolkit re-wraps every string on save; we keep the decoded text of the file instead, and for every
entry the line ranges of its parts (comments, ``#,`` flags, msgctxt, msgid, msgid_plural, msgstr/msgstr[n]).
Saving splices new msgstr lines, the ``fuzzy`` flag, one translator comment (``# tower-cat: ...``), findings
(``# tower-cat qa[n]: [error] numbers: ...``, replacing our earlier ones for that form) into
those ranges, plus ``# tower-cat previous: "..."`` / ``# tower-cat previous[n]: "..."`` lines holding the target an
edit replaced (``TargetEdit.previous``; gettext has no candidate field); every other byte — header, wrapping,
comments, obsolete entries, line endings, encoding and BOM — comes back as it was.

Units
    One per message; one per plural form of a plural message (id ``<msgctxt>\\x04<msgid>[n]``, source = msgid
    for n=0 and msgid_plural for n>=1). The header is not a unit. Obsolete ``#~`` entries are units with
    ``translatable=False`` and an id prefixed with ``#~``. A plural message with fewer msgstr[n] than the header's
    ``nplurals`` gets units for the missing forms (their msgstr[n] lines are added on save).

State
    ``fuzzy`` flag -> ``unit.state = "fuzzy"``; a non-empty msgstr otherwise -> ``"translated"``; else None.
    PO has no approved state, so no unit is ``final``. Writing: status ``needs-review`` / ``new`` sets
    ``#, fuzzy``; ``translated`` / ``reviewed`` / ``final`` clear it (see docs/ARCHITECTURE.md).

Placeholders
    Exposed as standalone ``InlineCode`` s (``tag="placeholder"``, ``xml`` = ``display`` = the placeholder text),
    so the model cannot break them:

    * ``c-format``, ``objc-format``, ``php-format``, ``gcc-internal-format`` …: full printf syntax
      (``%s``, ``%5.2f``, ``%1$s``, ``%'d``, ``%lld``, ``% d``) and ``%%``;
    * ``python-format``: printf plus ``%(name)s``;
    * ``python-brace-format``: ``{}``, ``{0}``, ``{name}``, ``{name!r:>10}`` and ``{{`` / ``}}``;
    * ``qt-format`` / ``kde-format``: ``%1`` … ``%99`` (``%L1``);
    * no format flag: a conservative default — printf without the space flag (``%s``, ``%d``, ``%1$s``,
      ``%(name)s``, ``%%``) and plain braces ``{name}`` / ``{0}``;
    * ``no-<lang>-format`` switches that family off.

C escapes (``\\n``, ``\\t``, ``\\"``, ``\\\\``, ``\\a`` … octal and hex) are unescaped in segments and escaped
again on write. Lines are written like msgcat: width 79, a first ``""`` line when the string has an inner
``\\n`` or does not fit, breaks after ``\\n`` and after spaces; a file whose own string lines exceed 79
columns is treated as unwrapped (``--no-wrap`` style).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path

from tower_cat.document import CodeKind, Document, Finding, InlineCode, Issue, Segment, Unit, UnitContext
from tower_cat.errors import FormatError
from tower_cat.formats._xml import MAX_UNITS, Splicer, atomic_write, check_encoding, check_units

FORMAT = "po"
WIDTH = 79
COMMENT_TAG = "tower-cat:"
# The most plural forms a header may declare. Real languages need at most 6 (CLDR and gettext's own plural table:
# Arabic, Welsh); gettext only checks that ``plural`` stays below ``nplurals`` for n = 0..1000, so a header can
# ask for any number, and every plural message then gets that many units. Past this, the file is refused.
MAX_NPLURALS = 20

# --- sniffing -------------------------------------------------------------------------------------------------

_SNIFF = re.compile(rb'^[ \t]*(?:msgctxt|msgid)[ \t]+"', re.M)


def sniff(head: bytes) -> bool:
    """PO/POT: a ``msgid "`` (or ``msgctxt "``) keyword at the start of a line, and no XML."""
    stripped = head.lstrip()
    if stripped.startswith(b"<"):
        return False
    return _SNIFF.search(head) is not None


# --- escapes ----------------------------------------------------------------------------------------------------

_UNESC = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\\": "\\", '"': '"',
          "'": "'", "?": "?"}
_ESC = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v", "\\": "\\\\",
        '"': '\\"'}
_ESC_RE = re.compile(r'[\x00-\x1f"\\]')
_UNESC_RE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]+)|(.)|$)", re.S)


def unescape(s: str, bad: list[str] | None = None) -> str:
    """C escapes of a PO string (without its quotes) -> text. Unknown escapes keep the character (gettext
    reports them; translate-toolkit drops the backslash) and are listed in ``bad``."""
    if "\\" not in s:
        return s

    def repl(m: re.Match) -> str:
        if m.group(1) is not None:
            return chr(int(m.group(1), 8))
        if m.group(2) is not None:
            return chr(int(m.group(2), 16) & 0xFF)
        ch = m.group(3)
        if ch is None:
            if bad is not None:
                bad.append("\\")
            return "\\"
        if ch in _UNESC:
            return _UNESC[ch]
        if bad is not None:
            bad.append("\\" + ch)
        return ch

    return _UNESC_RE.sub(repl, s)


def escape(s: str) -> str:
    """Text -> the content of a PO string (C escapes; other control characters as octal)."""
    return _ESC_RE.sub(lambda m: _ESC.get(m.group(0)) or f"\\{ord(m.group(0)):03o}", s)


# --- wrapping (msgcat style) -------------------------------------------------------------------------------------



def _width(s: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def format_string(keyword: str, value: str, *, prefix: str = "", wrap: bool = True, width: int = WIDTH,
                  newline: str = "\n") -> str:
    """The PO lines for ``keyword "value"`` the way msgcat writes them, each ending with ``newline``.

    gettext's rules (write-po.c ``wrap``): the value is cut after every ``\\n``; a portion is broken where a
    line would exceed ``width`` columns (at spaces, after a hyphen inside a word; never inside an escape, never
    before the final ``\\n``); the first line is ``keyword ""`` when there is more than one portion or the
    first portion would need a break. ``prefix`` is ``"#~ "`` for obsolete entries; ``wrap=False`` only cuts
    after ``\\n`` (msgcat --no-wrap).
    """
    portions = _portions(value)
    room = width - 1 - (len(prefix) + 1)  # gettext: page width, minus closing quote, minus prefix and opening quote
    lines: list[str] = []
    first = True
    for k, pieces in enumerate(portions):
        more = k + 1 < len(portions)
        start = len(keyword) + 1 if first else 0
        breaks = _breaks(pieces, room, start) if wrap else []
        if first and pieces and (more or start > room or breaks):
            lines.append(f'{prefix}{keyword} ""')
            first = False
            start = 0
            breaks = _breaks(pieces, room, start) if wrap else []
        cuts = [0, *breaks, len(pieces)]
        for j in range(len(cuts) - 1):
            chunk = "".join(pieces[cuts[j]:cuts[j + 1]])
            if first:
                lines.append(f'{prefix}{keyword} "{chunk}"')
                first = False
            else:
                lines.append(f'{prefix}"{chunk}"')
    return newline.join(lines) + newline


def _portions(value: str) -> list[list[str]]:
    """The escaped value as pieces (one character or one escape each), cut after each newline."""
    out: list[list[str]] = [[]]
    for ch in value:
        out[-1].append(escape(ch))
        if ch == "\n":
            out.append([])
    if len(out) > 1 and not out[-1]:
        out.pop()
    return out


_NO_BREAK_BEFORE = set("!?,.:;)]}»%/")


def _breaks(pieces: list[str], room: int, start: int) -> list[int]:
    """Greedy line breaking (a small part of UAX #14, as gettext uses it): indexes of pieces that start a line."""
    breaks: list[int] = []
    col = start
    last_opp = -1
    n = len(pieces)
    for i, piece in enumerate(pieces):
        if i > 0 and _may_break(pieces, i, n):
            last_opp = i
        w = _width(piece)
        if col + w > room and last_opp > (breaks[-1] if breaks else 0):
            breaks.append(last_opp)
            col = sum(_width(p) for p in pieces[last_opp:i])
        col += w
    return breaks


def _is_wide(ch: str) -> bool:
    import unicodedata

    return len(ch) == 1 and unicodedata.east_asian_width(ch) in "WF" and ch.isalpha()


def _may_break(pieces: list[str], i: int, n: int) -> bool:
    prev, cur = pieces[i - 1], pieces[i]
    if i == n - 1 and cur == "\\n":
        return False  # never before the final newline
    if cur in _NO_BREAK_BEFORE or cur == " ":
        return False
    if prev == " ":
        if cur == "(":  # UAX #14 LB15: no break in '" (' even across spaces
            j = i - 1
            while j > 0 and pieces[j] == " ":
                j -= 1
            if pieces[j] == '\\"':
                return False
        return True
    if _is_wide(prev) or _is_wide(cur):  # ideographs: a break is allowed on either side
        return cur not in "、。，．：；！？」』）" and prev not in "「『（"
    if prev in "-/:.,;" and i >= 2 and pieces[i - 2].isalnum() and cur.isalpha():
        return True
    return False


# --- placeholders ------------------------------------------------------------------------------------------------

_PRINTF = (r"%(?:\d+\$)?[-+ #0']*(?:\d+|\*(?:\d+\$)?)?(?:\.(?:\d+|\*(?:\d+\$)?))?"
           r"(?:hh|h|ll|l|L|q|j|z|Z|t|I64|I32|I)?[diouxXeEfFgGaAcspnCS]")
_PRINTF_SAFE = r"%(?:\d+\$)?[-+#0']*\d*(?:\.\d+)?(?:hh|h|ll|l|L|z|j|t)?[diouxXeEfFgGcs]"
_PY_NAMED = r"%\([^)\s]+\)[-+ #0]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]"
_BRACE_FULL = r"\{\{|\}\}|\{(?:[A-Za-z_][\w.]*|\d+)?(?:\[[^\]{}]*\])?(?:![rsa])?(?::[^{}]*)?\}"
_BRACE_SAFE = r"\{(?:[A-Za-z_]\w*|\d+)\}"
_QT = r"%L?\d{1,2}"

_PRINTF_FLAGS = {"c-format", "objc-format", "php-format", "gcc-internal-format", "gfc-internal-format",
                 "sh-format", "awk-format", "object-pascal-format", "perl-format", "boost-format"}


def placeholder_pattern(flags: list[str]) -> re.Pattern | None:
    """The regex of placeholders to protect for an entry with these ``#,`` flags (see the module docstring)."""
    fl = set(flags)
    alts: list[str] = []
    if fl & _PRINTF_FLAGS:
        alts += ["%%", _PRINTF]
    if "python-format" in fl:
        alts += ["%%", _PY_NAMED, _PRINTF]
    if "python-brace-format" in fl:
        alts.append(_BRACE_FULL)
    if fl & {"qt-format", "kde-format", "qt-plural-format"}:
        alts.append(_QT)
    if not alts:
        explicit_off = {f[3:] for f in fl if f.startswith("no-") and f.endswith("-format")}
        if not any(f.endswith("-format") and not f.startswith("no-") for f in fl):
            if not explicit_off & {"c-format", "python-format", "php-format", "objc-format"}:
                alts += ["%%", _PY_NAMED, _PRINTF_SAFE]
            if "python-brace-format" not in explicit_off:
                alts.append(_BRACE_SAFE)
    if not alts:
        return None
    seen: list[str] = []
    for a in alts:
        if a not in seen:
            seen.append(a)
    return re.compile("|".join(f"(?:{a})" for a in seen))


def to_segment(text: str, pattern: re.Pattern | None, ref: Segment | None = None) -> Segment:
    """Text -> Segment with placeholders as standalone codes. With ``ref`` (the source), a placeholder takes the
    id of the same placeholder text in the source (k-th occurrence -> k-th occurrence)."""
    if pattern is None or not text:
        return Segment.from_text(text)
    ref_ids: dict[str, list[str]] = {}
    next_id = 1
    if ref is not None:
        for c in ref.codes:
            ref_ids.setdefault(c.xml, []).append(c.id)
            if c.id.isdigit():
                next_id = max(next_id, int(c.id) + 1)
    parts: list = []
    pos = 0
    used: dict[str, int] = {}
    for m in pattern.finditer(text):
        if m.start() > pos:
            parts.append(text[pos:m.start()])
        ph = m.group(0)
        k = used.get(ph, 0)
        used[ph] = k + 1
        ids = ref_ids.get(ph, [])
        if k < len(ids):
            cid = ids[k]
        else:
            cid = str(next_id)
            next_id += 1
        parts.append(InlineCode(id=cid, kind=CodeKind.STANDALONE, xml=ph, tag="placeholder", display=ph))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    return Segment(parts)


def from_segment(segment: Segment) -> str:
    """Segment -> PO text: runs as they are, codes as their placeholder text (``InlineCode.xml``)."""
    return "".join(p if isinstance(p, str) else p.xml for p in segment.parts)


# --- parsing -----------------------------------------------------------------------------------------------------

@dataclass
class Field:
    """A keyword and its strings: lines [first, last) of the file (0-based)."""

    key: str  # msgctxt, msgid, msgid_plural, msgstr, msgstr[n]
    first: int
    last: int
    value: str = ""
    index: int | None = None  # plural index of msgstr[n]


@dataclass
class Entry:
    first: int  # first line (comments included), 0-based
    last: int = -1  # one past the last line of the entry's keywords
    obsolete: bool = False
    comments: list[tuple[int, str]] = field(default_factory=list)  # (line, text without line end)
    ctxt: Field | None = None
    msgid: Field | None = None
    plural: Field | None = None
    msgstr: list[Field] = field(default_factory=list)
    previous: dict[str, str] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        out: list[str] = []
        for _, text in self.comments:
            if text.startswith(("#,", "#=")):
                out += [f.strip() for f in text[2:].split(",") if f.strip()]
        return out

    @property
    def is_header(self) -> bool:
        return (not self.obsolete and self.ctxt is None and self.msgid is not None and self.msgid.value == ""
                and self.plural is None)

    def key(self) -> str:
        base = self.msgid.value if self.msgid else ""
        return (self.ctxt.value + "\x04" + base) if self.ctxt is not None else base


@dataclass
class PoHandle:
    """What ``save`` needs: the decoded text, its lines, the parsed entries, and how to encode it back."""

    text: str
    lines: list[str]
    offsets: list[int]
    entries: list[Entry]
    encoding: str
    bom: bytes
    newline: str
    wrap: bool
    header: Entry | None
    nplurals: int | None
    language: str | None
    units: dict[str, tuple[Entry, int | None]] = field(default_factory=dict)  # unit id -> (entry, plural index)


_KEYWORD = re.compile(r"(msgctxt|msgid_plural|msgid|msgstr\[(\d+)\]|msgstr|domain)(?=[\s\"]|$)")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r|$)")
_CHARSET = re.compile(rb"charset=\s*([A-Za-z0-9_.:-]+)")
_FIRST_MSGID = re.compile(rb'^[ \t]*msgid[ \t]+("(?:[^"\\\r\n]|\\.)*")', re.M)
_BLANK_LINE = re.compile(rb"\n[ \t]*\r?\n")


def _split_lines(text: str) -> list[str]:
    lines = _LINE.findall(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _strip_eol(line: str) -> str:
    return line.rstrip("\r\n")


def _detect(raw: bytes, path: Path) -> tuple[str, str, bytes, int | None]:
    """(text, codec, bom, line of the header's charset): BOM, UTF-16 without BOM, then the header's charset, then
    UTF-8. A charset that does not decode the bytes is an error naming the header line."""
    line = None
    if raw.startswith(b"\xef\xbb\xbf"):
        enc, bom = "utf-8", raw[:3]
    elif raw.startswith(b"\xfe\xff"):
        enc, bom = "utf-16-be", raw[:2]
    elif raw.startswith(b"\xff\xfe"):
        enc, bom = "utf-16-le", raw[:2]
    elif len(raw) > 1 and raw[0] == 0 and raw[1] != 0:
        enc, bom = "utf-16-be", b""
    elif len(raw) > 1 and raw[1] == 0 and raw[0] != 0:
        enc, bom = "utf-16-le", b""
    else:
        bom = b""
        enc = "utf-8"
        # the header is the first entry: look for its charset before the first non-header msgid
        head = raw[:65536]
        m = None
        first = _FIRST_MSGID.search(head)
        if first and first.group(1) == b'""':  # the header: the first message, with an empty msgid
            blank = _BLANK_LINE.search(head, first.end())
            m = _CHARSET.search(head, first.end(), blank.start() if blank else len(head))
        if m:
            line = head[: m.start()].count(b"\n") + 1
            name = m.group(1).decode("ascii")
            if name.upper() != "CHARSET":
                try:
                    codecs.lookup(name)
                except LookupError:
                    raise FormatError(f"unknown charset {name!r} in the Content-Type header", path=path, line=line,
                                      hint="use a charset name Python knows, e.g. UTF-8") from None
                enc = check_encoding(name, path, line, where="the Content-Type header")
            else:
                line = None
    try:
        text = raw[len(bom):].decode(enc)
    except UnicodeDecodeError as exc:
        bad = raw[: len(bom) + exc.start].count(b"\n") + 1
        declared = f"the charset {enc} declared in the Content-Type header (line {line})" if line else enc
        raise FormatError(f"bytes that are not valid {declared}", path=path, line=bad,
                          hint="fix the charset in the Content-Type header, or convert the file "
                               "(msgconv -t UTF-8)") from None
    return text, enc, bom, line


_NPLURALS = re.compile(rb"nplurals\s*=\s*(\d+)")


def preflight(path: Path) -> None:
    """The cheap part of :func:`load` (the first 64 KiB): the header's charset and ``nplurals``, so a job can
    refuse a file before it loads a model. Raises the same ``FormatError`` as ``load``."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if head.startswith((b"\xfe\xff", b"\xff\xfe")) or (len(head) > 1 and 0 in head[:2]):
        return  # UTF-16: load decodes it
    first = _FIRST_MSGID.search(head)
    if not first or first.group(1) != b'""':
        return
    blank = _BLANK_LINE.search(head, first.end())
    end = blank.start() if blank else len(head)
    m = _CHARSET.search(head, first.end(), end)
    if m and m.group(1).upper() != b"CHARSET":
        try:
            codecs.lookup(m.group(1).decode("ascii"))
        except LookupError:
            pass  # load names it
        else:
            check_encoding(m.group(1).decode("ascii"), path, head[:m.start()].count(b"\n") + 1,
                           where="the Content-Type header")
    m = _NPLURALS.search(head, first.end(), end)
    if m and not 1 <= (int(m.group(1)) if len(m.group(1)) < 10 else 10 ** 9) <= MAX_NPLURALS:
        raise FormatError(f"the Plural-Forms header says nplurals={m.group(1)[:20].decode()}: "
                          f"not 1 to {MAX_NPLURALS} plural forms", path=path,
                          line=head[:m.start()].count(b"\n") + 1,
                          hint="real languages need 1 to 6 (e.g. nplurals=2; plural=(n != 1);)")


# letters of scripts that are written with spaces between words: Latin mixed with one of them inside a word is what
# Latin-1 text read as KOI8-R, windows-1251/1253/1255/1256 ... looks like ("CafИ"), never real text
_MOJIBAKE_SCRIPTS = ("CYRILLIC", "GREEK", "HEBREW", "ARABIC", "ARMENIAN", "GEORGIAN")
_WORD = re.compile(r"[^\W\d_]+")


def _mixed_script_words(text: str) -> tuple[int, int, str | None]:
    """(words mixing ASCII Latin letters with letters of another alphabet, words with non-ASCII letters, the first
    mixed word)."""
    import unicodedata

    mixed = nonascii = 0
    first = None
    for m in _WORD.finditer(text):
        w = m.group(0)
        if w.isascii():
            continue
        nonascii += 1
        if not any(c.isascii() for c in w):
            continue
        if any(not c.isascii() and unicodedata.name(c, "").split(" ", 1)[0] in _MOJIBAKE_SCRIPTS for c in w):
            mixed += 1
            first = first or w
    return mixed, nonascii, first


def charset_problems(raw: bytes, text: str, encoding: str, bom: bytes, words: str | None = None) -> list[str]:
    """Why the text decoded with the header's (legacy, non-Unicode) charset is probably not what the file holds:
    bytes that do not come back the same when re-encoded, bytes that are UTF-8 (non-ASCII) while the header
    declares something else, or words that mix Latin letters with another alphabet (Latin-1 read as KOI8-R).

    ``words``: the text the mixed-script test looks at (default: all of it). ``load`` passes everything but the
    translations, which a job replaces: a file tower-cat wrote must read back the same way."""
    if encoding.startswith(("utf", "ascii")):
        return []
    problems = []
    body = raw[len(bom):]
    try:
        same = text.encode(encoding) == body
    except UnicodeEncodeError:
        same = False
    if not same:
        problems.append(f"the bytes decoded as {encoding} do not encode back to the same bytes")
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            problems.append(f"the text is UTF-8, not {encoding}")
    mixed, nonascii, first = _mixed_script_words(text if words is None else words)
    if mixed and mixed * 4 >= nonascii:
        problems.append(f"read as {encoding}, {mixed} of {nonascii} words with non-ASCII letters mix Latin letters "
                        f"with another alphabet (e.g. {first!r}): the bytes are in another charset")
    return problems


def _parse(text: str, path: Path, issues: list[Issue]) -> tuple[list[str], list[Entry]]:
    lines = _split_lines(text)
    entries: list[Entry] = []
    cur: Entry | None = None
    state = "start"  # start | comments | msgctxt | msgid | msgid_plural | msgstr | msgstr_n
    fld: Field | None = None
    continued: dict[int, tuple[Field, list[str]]] = {}  # id(field) -> (field, its strings so far)

    def err(i: int, msg: str, hint: str | None = None) -> FormatError:
        return FormatError(msg, path=path, line=i + 1, hint=hint)

    def finish() -> None:
        nonlocal cur, state, fld
        if cur is not None and cur.msgid is not None:
            entries.append(cur)
        cur, state, fld = None, "start", None

    def strings(rest: str, i: int) -> str:
        """The concatenated value of the quoted strings making up ``rest`` (which must be only strings)."""
        out, pos = [], 0
        rest = rest.rstrip()
        while pos < len(rest):
            if rest[pos] in " \t":
                pos += 1
                continue
            m = _STRING.match(rest, pos)
            if not m:
                if rest[pos] == '"':
                    raise err(i, "string not terminated: a closing \" is missing on this line")
                raise err(i, f"unexpected text {rest[pos:pos + 30]!r}: expected a quoted string")
            bad: list[str] = []
            value = unescape(m.group(1), bad)
            if "\x00" in value:
                raise err(i, "a NUL character in a string (gettext strings end at NUL: the rest would be lost)",
                          hint="remove the NUL byte or the \\0 escape")
            out.append(value)
            for b in bad:
                issues.append(Issue("warning", f"unknown escape sequence {b!r}", line=i + 1))
            pos = m.end()
        return "".join(out)

    for i, raw_line in enumerate(lines):
        line = _strip_eol(raw_line)
        s = line.strip()
        if not s:
            continue
        obsolete = False
        body = s
        if s.startswith("#~"):
            after = s[2:].lstrip()
            if not after or after.startswith(("|", "#")) or not (after.startswith('"') or _KEYWORD.match(after)):
                # obsolete previous-msgid (#~|) or a stray "#~" line: a comment of the obsolete entry
                body = None
            else:
                obsolete = True
                body = after
        if body is None or (not obsolete and s.startswith("#")):
            if state in ("msgctxt", "msgid", "msgid_plural"):
                raise err(i, f"comment inside a message: {state} is not followed by msgstr",
                          hint="every msgid needs a msgstr line")
            if state in ("msgstr", "msgstr_n"):
                finish()
            if cur is None:
                cur = Entry(first=i)
                state = "comments"
            cur.comments.append((i, s))
            continue
        # a keyword or a string continuation
        if body.startswith('"'):
            if fld is None:
                raise err(i, "a string that belongs to no keyword (msgid, msgstr, ...)")
            if obsolete != (cur.obsolete if cur else False):
                raise err(i, "obsolete (#~) and active lines mixed in one entry")
            slot = continued.get(id(fld))  # joined once at the end: += per line is quadratic in a long string
            if slot is None:
                slot = continued[id(fld)] = (fld, [fld.value])
            slot[1].append(strings(body, i))
            fld.last = i + 1
            cur.last = i + 1
            continue
        m = _KEYWORD.match(body)
        if not m:
            word = body.split(None, 1)[0] if body.split() else body
            raise err(i, f"unexpected {word[:40]!r}: expected a comment, msgctxt, msgid, msgstr or a quoted string")
        kw = m.group(1)
        rest = body[m.end():]
        if not rest.strip().startswith('"'):
            raise err(i, f"{kw.split('[')[0]} must be followed by a quoted string", hint=f'write {kw} "..."')
        value = strings(rest, i)
        if kw == "domain":
            if state in ("msgctxt", "msgid", "msgid_plural"):
                raise err(i, f"domain directive inside a message: {state} is not followed by msgstr")
            finish()
            issues.append(Issue("warning", f"domain directive {value!r} ignored", line=i + 1))
            continue
        if kw in ("msgctxt", "msgid"):
            if state in ("msgstr", "msgstr_n"):
                finish()
            if kw == "msgctxt" and state not in ("start", "comments"):
                raise err(i, f"msgctxt after {state}")
            if kw == "msgid" and state not in ("start", "comments", "msgctxt"):
                raise err(i, f"msgid after {state}: the previous message has no msgstr")
            if cur is None:
                cur = Entry(first=i)
            if state in ("start", "comments"):
                cur.obsolete = obsolete
            elif cur.obsolete != obsolete:
                raise err(i, "obsolete (#~) and active lines mixed in one entry")
            fld = Field(kw, i, i + 1, value)
            if kw == "msgctxt":
                cur.ctxt = fld
            else:
                cur.msgid = fld
            state = kw
        else:
            if cur is None or cur.obsolete != obsolete:
                raise err(i, f"{kw} without a msgid before it" if cur is None else
                          "obsolete (#~) and active lines mixed in one entry")
            if kw == "msgid_plural":
                if state != "msgid":
                    raise err(i, f"msgid_plural after {state}")
                fld = Field(kw, i, i + 1, value)
                cur.plural = fld
                state = "msgid_plural"
            elif kw == "msgstr":
                if state != "msgid":
                    raise err(i, "msgstr after msgid_plural: a plural message needs msgstr[0], msgstr[1], ..."
                              if state == "msgid_plural" else f"msgstr after {state}")
                fld = Field(kw, i, i + 1, value)
                cur.msgstr.append(fld)
                state = "msgstr"
            else:  # msgstr[n]
                n = int(m.group(2))
                if state == "msgid":
                    raise err(i, f"{kw} in a message without msgid_plural", hint="use msgstr or add msgid_plural")
                if state not in ("msgid_plural", "msgstr_n"):
                    raise err(i, f"{kw} after {state}")
                expected = len(cur.msgstr)
                if n != expected:
                    raise err(i, f"{kw} out of order: expected msgstr[{expected}]")
                fld = Field(kw, i, i + 1, value, index=n)
                cur.msgstr.append(fld)
                state = "msgstr_n"
        cur.last = i + 1
    if state in ("msgctxt", "msgid", "msgid_plural"):
        where = (cur.msgid or cur.ctxt).first if cur else len(lines) - 1
        raise err(where, f"the file ends inside a message: {state} is not followed by msgstr")
    finish()
    for f, parts in continued.values():
        f.value = "".join(parts)
    for e in entries:
        _parse_previous(e)
    return lines, entries


def _parse_previous(e: Entry) -> None:
    """``#| msgctxt/msgid/msgid_plural`` lines -> e.previous (values unescaped)."""
    key = None
    for _, text in e.comments:
        t = text[2:] if text.startswith("#~") else text
        t = t.lstrip()
        if not t.startswith("#|") and not (text.startswith("#~") and t.startswith("|")):
            continue
        body = t[2:] if t.startswith("#|") else t[1:]
        body = body.strip()
        m = re.match(r"(msgctxt|msgid_plural|msgid)\s*(.*)$", body)
        if m:
            key = m.group(1)
            body = m.group(2)
            e.previous[key] = ""
        if key is None:
            continue
        for sm in _STRING.finditer(body):
            e.previous[key] += unescape(sm.group(1))


def _header_line(header: Entry, lines: list[str], name: str) -> int | None:
    """The 1-based line of the header's ``name:`` field (the msgstr line when not found on its own line)."""
    if not header.msgstr:
        return None
    f = header.msgstr[0]
    for i in range(f.first, f.last):
        if name.lower() + ":" in lines[i].lower():
            return i + 1
    return f.first + 1


def _header_value(header: Entry | None, name: str) -> str | None:
    if header is None or not header.msgstr:
        return None
    for line in header.msgstr[0].value.split("\n"):
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == name.lower():
            return v.strip()
    return None


# --- load --------------------------------------------------------------------------------------------------------

_OUR_COMMENT = re.compile(r"^#\s+tower-cat:\s*(.*)$")
# the target an edit replaced (gettext has no candidate field): ``# tower-cat previous[n]: "<C-escaped text>"``,
# quoted like a PO string (and like gettext's own ``#| msgid "…"``) so that edge spaces survive editors
_OUR_PREVIOUS = re.compile(r"^#\s+tower-cat previous(?:\[(\d+)\])?:\s*(.*?)\s*$")
PREVIOUS_TAG = "tower-cat previous"
# QA/terminology/QE findings (Unit.findings_edit), one per line: ``# tower-cat qa[n]: [error] numbers: …``; read back
# into meta["findings"], never into notes or translator comments
_OUR_QA = re.compile(r"^#\s+tower-cat qa(?:\[(\d+)\])?:\s*(.*?)\s*$")
QA_TAG = "tower-cat qa"


def load(path: Path, strict: bool = True, lenient: bool = False) -> Document:
    """Read a PO/POT file. With ``strict`` a broken file raises ``FormatError`` (file, line, what is wrong).

    A legacy charset in the header that does not fit the bytes (:func:`charset_problems`) is an error naming
    the header line; with ``lenient`` it is a warning and the file is read as the header says."""
    path = Path(path)
    raw = path.read_bytes()
    text, encoding, bom, charset_line = _detect(raw, path)
    issues: list[Issue] = []
    lines, entries = _parse(text, path, issues)
    check_units(len(entries), path, None, "messages")
    if charset_line is not None and not encoding.startswith(("utf", "ascii")):
        translations = {i for e in entries if not e.is_header for f in e.msgstr for i in range(f.first, f.last)}
        words = "".join(ln for i, ln in enumerate(lines) if i not in translations)
        for problem in charset_problems(raw, text, encoding, bom, words):
            message = f"the charset in the Content-Type header is wrong: {problem}"
            if lenient:
                issues.insert(0, Issue("warning", message + " (read as declared: lenient)", line=charset_line))
            elif strict:
                raise FormatError(message, path=path, line=charset_line,
                                  hint="fix the header's charset, or load it with lenient=True to read it as declared",
                                  param="lenient")
            else:
                issues.insert(0, Issue("error", message, line=charset_line))
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln))
    header = entries[0] if entries and entries[0].is_header else None
    nplurals = None
    pf = _header_value(header, "Plural-Forms")
    if pf:
        m = re.search(r"nplurals\s*=\s*(\d+)", pf)
        if m:
            nplurals = int(m.group(1)) if len(m.group(1)) < 10 else 10 ** 9
            if not 1 <= nplurals <= MAX_NPLURALS:
                pf_line = _header_line(header, lines, "Plural-Forms")
                message = (f"the Plural-Forms header says nplurals={m.group(1)[:20]}: "
                           + ("not a positive number" if nplurals < 1 else
                              f"more plural forms than any language has (tower-cat reads up to {MAX_NPLURALS})"))
                # refused even when not strict: every plural message would get this many units
                raise FormatError(message, path=path, line=pf_line,
                                  hint="real languages need 1 to 6 (e.g. nplurals=2; plural=(n != 1);)")
    language = _header_value(header, "Language") or None
    newline = "\r\n" if "\r\n" in text[:8192] else ("\r" if "\r" in text[:8192] and "\n" not in text[:8192]
                                                     else "\n")
    wrap = True
    for e in entries:
        for f in [e.msgid, e.plural, *e.msgstr]:
            if f is not None and f.last - f.first == 1 and len(_strip_eol(lines[f.first]).rstrip()) > WIDTH:
                wrap = False
                break
        if not wrap:
            break
    handle = PoHandle(text=text, lines=lines, offsets=offsets, entries=entries, encoding=encoding, bom=bom,
                      newline=newline, wrap=wrap, header=header, nplurals=nplurals, language=language)
    units: list[Unit] = []
    seen: dict[str, int] = {}
    for e in entries:
        if e is header:
            continue
        key = e.key()
        if not e.obsolete:
            if key in seen:
                issues.append(Issue("error", f"duplicate message definition (first at line {seen[key]})",
                                    line=e.msgid.first + 1, unit=key))
            seen.setdefault(key, e.msgid.first + 1)
        if e.plural is not None and nplurals is not None and len(e.msgstr) > nplurals:
            issues.append(Issue("warning", f"{len(e.msgstr)} plural forms but the header says nplurals={nplurals}",
                                line=e.msgstr[0].first + 1, unit=key))
        units.extend(_units_of(e, handle))
        if len(units) > MAX_UNITS:
            check_units(len(units), path, e.msgid.first + 1)
    for u in units:
        handle.units[u.id] = (u.meta.pop("_entry"), u.meta.get("plural_index"))
    doc = Document(path=path, format=FORMAT, units=units, source_lang=None, target_lang=language, issues=issues,
                   handle=handle, charset=None if handle.encoding.lower().startswith("utf") else handle.encoding)
    errors = [i for i in issues if i.severity == "error"]
    if strict and errors:
        first = errors[0]
        raise FormatError(first.message, path=path, line=first.line, unit=first.unit)
    return doc


def _units_of(e: Entry, h: PoHandle) -> list[Unit]:
    flags = e.flags
    pattern = placeholder_pattern(flags)
    fuzzy = "fuzzy" in flags
    notes: list[str] = []
    locations: list[str] = []
    translator: list[str] = []
    origin = match_score = qe = None
    previous_targets: dict[int | None, str] = {}
    findings: dict[int | None, list[Finding]] = {}
    for _, text in e.comments:
        t = text[2:].lstrip() if text.startswith("#~") and not text.startswith("#~|") else text
        if t.startswith("#."):
            notes.append(t[2:].strip())
        elif t.startswith("#:"):
            locations += t[2:].split()
        elif t.startswith(("#,", "#=", "#|", "#~")):
            continue
        elif t.startswith("#"):
            pm = _OUR_PREVIOUS.match(t)
            if pm:
                body = pm.group(2)
                if len(body) >= 2 and body[0] == body[-1] == '"':
                    body = body[1:-1]
                previous_targets[int(pm.group(1)) if pm.group(1) is not None else None] = unescape(body)
                continue
            qm = _OUR_QA.match(t)
            if qm:
                findings.setdefault(int(qm.group(1)) if qm.group(1) is not None else None, []).append(
                    Finding.parse(qm.group(2))[0])
                continue
            m = _OUR_COMMENT.match(t)
            if m:
                words = m.group(1).split()
                if words and not words[0].startswith(("score=", "qe=")):
                    origin = words[0]
                for w in words:
                    if w.startswith("score="):
                        match_score = _num(w[6:])
                    elif w.startswith("qe="):
                        qe = _num(w[3:])
                continue
            translator.append(t[1:].strip() if t[1:2] in (" ", "\t") else t[1:])
    base = e.key()
    prefix = "#~" if e.obsolete else ""
    context = UnitContext(msgctxt=e.ctxt.value if e.ctxt is not None else None, locations=locations,
                          previous_source=e.previous.get("msgid"))
    meta = {"flags": flags, "translator_comments": [t for t in translator if t]}
    for k, v in e.previous.items():
        meta[f"previous_{k}"] = v
    if e.plural is not None:
        meta["msgid_plural"] = e.plural.value
    forms: list[int | None]
    if e.plural is None:
        forms = [None]
    else:
        forms = list(range(max(len(e.msgstr), h.nplurals or 0, 1)))
    src0 = to_segment(e.msgid.value, pattern)
    src1 = to_segment(e.plural.value, pattern) if e.plural is not None else None
    out = []
    for n in forms:
        source = src0 if n in (None, 0) else src1
        msgstr = e.msgstr[n if n is not None else 0].value if (n or 0) < len(e.msgstr) else ""
        target = to_segment(msgstr, pattern, ref=source) if msgstr else None
        unit = Unit(
            id=prefix + base + (f"[{n}]" if n is not None else ""),
            source=source,
            target=target,
            state="fuzzy" if fuzzy else ("translated" if msgstr else None),
            notes=notes + [t for t in translator if t],
            context=UnitContext(**vars(context)) if n else context,
            translatable=not e.obsolete,
            origin=origin,
            match_score=match_score,
            qe_score=qe,
            line=e.msgid.first + 1,
            meta=dict(meta, plural_index=n, obsolete=e.obsolete, fuzzy=fuzzy, _entry=e),
        )
        if n in previous_targets:
            unit.meta["previous_target"] = previous_targets[n]
        if n in findings:
            unit.meta["findings"] = findings[n]
        out.append(unit)
    return out


def _num(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


# --- save --------------------------------------------------------------------------------------------------------

def save(doc: Document, path: Path) -> None:
    """Write the file back: only edited entries change (msgstr lines, ``fuzzy``, our translator comment)."""
    h: PoHandle = doc.handle
    sp = Splicer(h.text)
    by_entry: dict[int, list[Unit]] = {}
    entry_of: dict[int, Entry] = {}
    for u in doc.units:
        if not u.changed:
            continue
        if u.id not in h.units:
            raise FormatError("unit not from this file", path=path, unit=u.id)
        e, _ = h.units[u.id]
        by_entry.setdefault(id(e), []).append(u)
        entry_of[id(e)] = e
    for key, units in by_entry.items():
        _splice_entry(entry_of[key], units, h, sp, path)
    if doc.target_lang and not h.language and h.header is not None:
        _splice_language(h, doc.target_lang, sp)
    text = sp.result() if sp else h.text
    try:
        data = h.bom + text.encode(h.encoding)
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        raise FormatError(f"a translation has characters that {h.encoding} cannot store ({text[exc.start:exc.end]!r})",
                          path=path, line=line, hint="convert the file to UTF-8 (msgconv -t UTF-8)") from None
    atomic_write(path, data)


def _line_nl(h: PoHandle, i: int) -> str:
    ln = h.lines[i] if 0 <= i < len(h.lines) else ""
    for nl in ("\r\n", "\n", "\r"):
        if ln.endswith(nl):
            return nl
    return h.newline


def _splice_entry(e: Entry, units: list[Unit], h: PoHandle, sp: Splicer, path: Path) -> None:
    nl = _line_nl(h, e.msgid.first)
    prefix = "#~ " if e.obsolete else ""
    edits = [u for u in units if u.edit is not None]
    # 1. msgstr lines (a status-only edit keeps the msgstr as written)
    if any(not u.edit.status_only for u in edits):
        new_values: dict[int | None, str] = {}
        for u in (u for u in edits if not u.edit.status_only):
            _, n = h.units[u.id]
            new_values[n] = from_segment(u.edit.segment)
            if "\x00" in new_values[n]:
                raise FormatError("the new target has a NUL character, which a PO string cannot hold; not written",
                                  path=path, line=u.line, unit=u.id)
        if e.plural is None:
            f = e.msgstr[0]
            sp.replace(h.offsets[f.first], h.offsets[f.last],
                       format_string("msgstr", new_values[None], prefix=prefix, wrap=h.wrap, newline=nl))
        else:
            appended = []
            for n, value in sorted(new_values.items()):
                if n < len(e.msgstr):
                    f = e.msgstr[n]
                    sp.replace(h.offsets[f.first], h.offsets[f.last],
                               format_string(f"msgstr[{n}]", value, prefix=prefix, wrap=h.wrap, newline=nl))
            # missing forms (fewer msgstr[n] than nplurals): written after the last one, empty when not edited
            missing = range(len(e.msgstr), max(n for n in new_values) + 1)
            for n in missing:
                appended.append(format_string(f"msgstr[{n}]", new_values.get(n, ""), prefix=prefix, wrap=h.wrap,
                                              newline=nl))
            if appended:
                _insert_after_line(h, sp, e.msgstr[-1].last - 1, "".join(appended), nl)
    # 2. fuzzy flag
    if edits:
        want_fuzzy = any(u.edit.status in ("needs-review", "new") for u in edits)
        _splice_fuzzy(e, want_fuzzy, h, sp, nl)
    # findings: our "# tower-cat qa" lines of the forms that have new findings are replaced
    qa_lines = ""
    qa_forms = {h.units[u.id][1]: u.findings_edit for u in units if u.findings_edit is not None}
    if qa_forms:
        for i, t in e.comments:
            qm = _OUR_QA.match(t)
            if qm and (int(qm.group(1)) if qm.group(1) is not None else None) in qa_forms:
                sp.replace(h.offsets[i], h.offsets[i + 1], "")
        for n, found in sorted(qa_forms.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
            tag = QA_TAG if n is None else f"{QA_TAG}[{n}]"
            qa_lines += "".join(f"# {tag}: {f.text()}" + nl for f in found)
    if not edits and all(u.qe_edit is None for u in units):  # findings only: our main comment stays as it is
        if qa_lines:
            old = _our_comment(e)
            if old is not None:
                i = old[0]
                last = max([i] + [j for j, t in e.comments if _OUR_PREVIOUS.match(t)])
                if not h.lines[last].endswith(("\n", "\r")):
                    qa_lines = nl + qa_lines[:-len(nl)]
                sp.insert(h.offsets[last + 1], qa_lines)
            else:
                tc = [i for i, t in e.comments if t.startswith("#") and (len(t) == 1 or t[1] in " \t")]
                sp.insert(h.offsets[tc[-1] + 1] if tc else h.offsets[e.first], qa_lines)
        return
    # 3. our translator comment
    last_edit = next((u.edit for u in reversed(edits) if not u.edit.status_only), None)
    qe = next((u.qe_edit for u in reversed(units) if u.qe_edit is not None), None)
    if qe is None:
        qe = next((u.qe_score for u in units if u.qe_score is not None), None) if edits else None
    words = []
    if last_edit is not None:
        words += [last_edit.origin, last_edit.system]
        if last_edit.match_score is not None:
            words.append(f"score={_fmt(last_edit.match_score)}")
    else:
        u0 = units[0]
        if u0.origin:
            words.append(u0.origin)
        old = _our_comment(e)
        if old is not None:
            m = _OUR_COMMENT.match(old[1])
            words = [w for w in (m.group(1).split() if m else []) if not w.startswith("qe=")]
    if qe is not None:
        words.append(f"qe={_fmt(qe)}")
    comment = f"# {COMMENT_TAG} {' '.join(words)}".rstrip() + nl
    # 4. the targets the edits replace, right after our comment; an older line of ours for the same form goes
    previous: dict[int | None, str] = {}
    for u in edits:
        replaced = u.edit.replaced
        if replaced is not None:
            previous[h.units[u.id][1]] = from_segment(replaced)
    if previous:
        for i, t in e.comments:
            pm = _OUR_PREVIOUS.match(t)
            if pm and (int(pm.group(1)) if pm.group(1) is not None else None) in previous:
                sp.replace(h.offsets[i], h.offsets[i + 1], "")
        for n, value in sorted(previous.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
            tag = PREVIOUS_TAG if n is None else f"{PREVIOUS_TAG}[{n}]"
            comment += f'# {tag}: "{escape(value)}"' + nl
    comment += qa_lines
    old = _our_comment(e)
    if old is not None:
        i = old[0]
        sp.replace(h.offsets[i], h.offsets[i + 1], comment if h.lines[i].endswith(("\n", "\r")) else comment[:-len(nl)])
    else:
        # after the last translator comment, else at the top of the entry
        tc = [i for i, t in e.comments if t.startswith("#") and (len(t) == 1 or t[1] in " \t")]
        pos = h.offsets[tc[-1] + 1] if tc else h.offsets[e.first]
        sp.insert(pos, comment)


def _fmt(x: float) -> str:
    return str(int(round(x))) if abs(x - round(x)) < 1e-9 else f"{x:.1f}"


def _our_comment(e: Entry) -> tuple[int, str] | None:
    for i, t in e.comments:
        if _OUR_COMMENT.match(t):
            return i, t
    return None


def _splice_fuzzy(e: Entry, want: bool, h: PoHandle, sp: Splicer, nl: str) -> None:
    flag_lines = [(i, t) for i, t in e.comments if t.startswith(("#,", "#="))]
    has = any("fuzzy" in [f.strip() for f in t[2:].split(",")] for _, t in flag_lines)
    if has == want:
        return
    if want:
        if flag_lines:
            i, t = flag_lines[0]
            flags = [f.strip() for f in t[2:].split(",") if f.strip()]
            _replace_line(h, sp, i, "#, " + ", ".join(["fuzzy", *flags]))
        else:
            # gettext order: translator, extracted, references, flags, previous, msgctxt/msgid
            prev = [i for i, t in e.comments if t.startswith(("#|", "#~|"))]
            if prev:
                pos = h.offsets[prev[0]]
            else:
                first_kw = (e.ctxt or e.msgid).first
                pos = h.offsets[first_kw]
            sp.insert(pos, "#, fuzzy" + nl)
        return
    for i, t in flag_lines:
        flags = [f.strip() for f in t[2:].split(",") if f.strip()]
        if "fuzzy" not in flags:
            continue
        rest = [f for f in flags if f != "fuzzy"]
        if rest:
            _replace_line(h, sp, i, t[:2] + " " + ", ".join(rest))
        else:
            sp.replace(h.offsets[i], h.offsets[i + 1], "")


def _replace_line(h: PoHandle, sp: Splicer, i: int, content: str) -> None:
    line = h.lines[i]
    eol = line[len(_strip_eol(line)):]
    indent = line[: len(line) - len(line.lstrip())]
    sp.replace(h.offsets[i], h.offsets[i + 1], indent + content + eol)


def _splice_language(h: PoHandle, lang: str, sp: Splicer) -> None:
    """Set the header's ``Language:`` when the file had none (or an empty one)."""
    f = h.header.msgstr[0] if h.header.msgstr else None
    if f is None:
        return
    nl = _line_nl(h, f.first)
    for i in range(f.first, f.last):
        line = _strip_eol(h.lines[i])
        m = re.search(r'"Language:[^"\\]*(\\n)?"', line)
        if m and not line.lstrip().startswith("#"):
            new = line[: m.start()] + f'"Language: {escape(lang)}\\n"' + line[m.end():]
            _replace_line(h, sp, i, new.strip())
            return
    # no Language line: add one after Language-Team (or at the end of the header)
    if f.value and not f.value.endswith("\n"):
        return  # the header's last field is not terminated: adding a line would glue the two
    after = f.last - 1
    for i in range(f.first, f.last):
        if '"Language-Team:' in h.lines[i]:
            after = i
            break
    _insert_after_line(h, sp, after, f'"Language: {escape(lang)}\\n"' + nl, nl)


def _insert_after_line(h: PoHandle, sp: Splicer, i: int, new: str, nl: str) -> None:
    """Insert ``new`` (complete lines, each ending with ``nl``) after line i, also when i is the last line of a
    file without a final newline."""
    if h.lines[i].endswith(("\n", "\r")):
        sp.insert(h.offsets[i + 1], new)
    else:
        sp.insert(h.offsets[i + 1], nl + new[: -len(nl)])
