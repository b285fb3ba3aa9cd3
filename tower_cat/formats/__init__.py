"""Format plug-ins. Each module offers ``sniff(head: bytes) -> bool``, ``load(path) -> Document`` and
``save(doc, path)``; the registry picks a module by content, never by extension."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType

from tower_cat.document import Document
from tower_cat.errors import FormatError, UnsupportedFormatError

# Most specific first: SDLXLIFF and MQXLIFF are XLIFF 1.2 underneath.
FORMAT_MODULES: dict[str, str] = {
    "sdlxliff": "tower_cat.formats.sdlxliff",
    "mqxliff": "tower_cat.formats.mqxliff",
    "xliff12": "tower_cat.formats.xliff12",
    "xliff2": "tower_cat.formats.xliff2",
    "tmx": "tower_cat.formats.tmx",
    "po": "tower_cat.formats.po",
}

HEAD_BYTES = 8192


def module(name: str) -> ModuleType:
    try:
        return importlib.import_module(FORMAT_MODULES[name])
    except KeyError:
        raise UnsupportedFormatError(f"unknown format {name!r}; known: {', '.join(FORMAT_MODULES)}") from None


def read_head(path: Path) -> bytes:
    """The first bytes of a file, decoded to UTF-8 when the file is UTF-16 or UTF-32 so sniffers see ASCII
    markup."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")) or head[:4] in (b"<\x00\x00\x00", b"\x00\x00\x00<"):
        enc = "utf-32-be" if head[:2] == b"\x00\x00" else "utf-32-le"
        head = head[: len(head) // 4 * 4].decode(enc, errors="ignore").lstrip("\ufeff").encode("utf-8")
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) > 1 and (head[0] == 0 or head[1] == 0)):
        enc = "utf-16-be" if head.startswith(b"\xfe\xff") or head[0] == 0 else "utf-16-le"
        head = head[: len(head) // 2 * 2].decode(enc, errors="ignore").lstrip("\ufeff").encode("utf-8")
    elif head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    return head


def detect(path: str | Path) -> str:
    """The format name of a file, from its content."""
    path = Path(path)
    if not path.is_file():
        raise FormatError("no such file", path=path)
    head = read_head(path)
    for name in FORMAT_MODULES:
        if module(name).sniff(head):
            return name
    raise UnsupportedFormatError(
        "not a format tower-cat reads (XLIFF 1.2/2.x, SDLXLIFF, MQXLIFF, PO/POT, TMX)", path=path)


def load(path: str | Path, format: str | None = None, *, strict: bool = True, lenient: bool = False) -> Document:
    """Load a file with the module its content calls for. ``lenient``: a PO whose declared charset does not fit
    its bytes loads with a warning instead of an error (formats without such a check ignore it)."""
    path = Path(path)
    name = format or detect(path)
    mod = module(name)
    if lenient and "lenient" in inspect.signature(mod.load).parameters:
        return mod.load(path, strict=strict, lenient=True)
    return mod.load(path, strict=strict)


def stream(path: str | Path, format: str | None = None, *, strict: bool = True, window: int | None = None):
    """A streaming reader/writer for formats that have one (XLIFF 1.2, MQXLIFF, SDLXLIFF: ``xliff12_stream``), else None
    (the caller loads the whole file). Memory follows a window of units instead of the file; the output is the
    same as ``load`` + ``save``."""
    path = Path(path)
    name = format or detect(path)
    if name not in ("xliff12", "mqxliff", "sdlxliff"):
        return None
    from tower_cat.formats import xliff12_stream

    dialect = None
    if name == "mqxliff":
        from tower_cat.formats.mqxliff import MqDialect

        dialect = MqDialect()
    elif name == "sdlxliff":
        from tower_cat.formats.sdlxliff import SdlDialect

        dialect = SdlDialect()
    return xliff12_stream.stream(path, strict=strict, dialect=dialect, window=window or xliff12_stream.DEFAULT_WINDOW)


def preflight(path: str | Path) -> str:
    """What can be refused from the first bytes alone, before a job loads a model: the format, an encoding that
    is not ASCII-compatible (UTF-7, EBCDIC), a PO header asking for more plural forms than any language has.
    Returns the format name; raises the ``FormatError`` that ``load`` would raise for those."""
    path = Path(path)
    name = detect(path)
    if name == "po":
        module(name).preflight(path)
    else:
        from tower_cat.formats import _xml

        with open(path, "rb") as fh:
            raw = fh.read(400)
        m = _xml._DECL_ENCODING.match(raw)
        if m:
            _xml.check_encoding(m.group(1).decode("ascii"), path, raw[:m.start(1)].count(b"\n") + 1)
    return name


def save(doc: Document, path: str | Path) -> None:
    module(doc.format).save(doc, Path(path))
