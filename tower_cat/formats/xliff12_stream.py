"""XLIFF 1.2 (and MQXLIFF, SDLXLIFF) read and rewritten a window of trans-units at a time, in memory that follows the window.

``xliff12.load`` keeps the whole file (its text, lxml tree, element offsets and every Unit): about 25-40 bytes of
memory per byte of file, which is 6-9 GB for a 235 MB XLIFF. Commands that look at each unit once (``validate``,
``pseudo``) use this instead: lxml's ``iterparse`` builds the tree as the file is read, the same per-trans-unit
reader (``xliff12._Loader._trans_unit``) and writer (``xliff12.Writer.write_tu``) as the whole-file path work on
each trans-unit, and a window's elements, offsets and units are dropped once its part of the output is written.
What stays is the decoded text (about one byte per byte of an ASCII-heavy file: the writer copies unchanged
bytes from it) and one id per trans-unit (duplicate ids are reported and renamed across the whole file).

    with StreamedXliff(path) as doc:
        doc.write_to(out)                # optional: an edited copy, written atomically at finish()
        for units in doc.windows():      # lists of Units, in file order, context linked
            ...                          # edit them as usual (unit.set_target, ...)
        doc.finish()

The output is byte-identical to ``load`` + ``save`` with the same edits (tests/test_xliff12_stream.py checks that on
the samples and the third-party corpus, and on fuzzed files). One thing the whole-file reader decides from the whole
file is decided from what was read so far: ``target_lang`` when the first ``<file>`` has no target-language but a
later one has (the whole-file reader takes the later one; this reader knows only the first when the caller sets
the target language).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from lxml import etree

from tower_cat.document import Document, Unit
from tower_cat.errors import FormatError, UnsafeXMLError
from tower_cat.formats import _xml, xliff12

DEFAULT_WINDOW = 2000  # units per window: large enough that per-window work is amortised, small in memory
class StreamedXliff:
    """One XLIFF 1.2 file, read (and optionally rewritten) front to back. Not reusable: one pass."""

    def __init__(self, path: str | Path, dialect: xliff12.Dialect | None = None, strict: bool = True,
                 window: int = DEFAULT_WINDOW):
        self.path = path = Path(path)
        self.strict = strict
        self.window = max(1, window)
        raw = path.read_bytes()
        text, encoding, bom = _xml.decode(raw, path)
        del raw
        _xml.check_doctype(text, path)
        self.scanner = _xml.StreamScanner(text, path)
        sc = self.scanner
        self._index: dict = {}  # element -> ordinal for the elements not yet freed; insertion order is ordinal order
        spans = _xml.Spans(self._index, sc.starts, sc.tag_ends, sc.closes, sc.ends)
        self.xf = _xml.XmlFile(path=path, text=text, encoding=encoding, bom=bom, root=None, spans=spans)
        self.loader = xliff12._Loader(path, dialect or xliff12.Dialect())
        self.doc = Document(path=path, format=self.loader.dialect.format, units=[], issues=self.loader.issues)
        self._fh = open(path, "rb")
        self._events = etree.iterparse(self._fh, events=("start", "end"), resolve_entities=False, no_network=True,
                                       load_dtd=False, dtd_validation=False, remove_blank_text=False,
                                       strip_cdata=False, remove_comments=False, huge_tree=True)
        self._stack: list[etree._Element] = []  # open elements, root first
        self._file: xliff12._FileState | None = None
        self._files_written = 0  # h.files[:n] have had their target-language edit
        self._used_ids: dict[str, int] = {}
        self._checked_issues = 0
        self._writer: xliff12.Writer | None = None
        self._body = None  # the output after the head, written as windows are done
        self._output: Path | None = None
        self._file_starts: list[int] = []  # offset of each <file> start tag, in file order
        self._head_end = 0
        self._head_last = 0  # ordinal of the last element that starts in the head (kept to the end: root, <file>)
        self._records = self._read()
        next(self._records, None)  # primes: the root and the first <file> start tag are read
        self._reading = False
        self._done = False

    # --- the document's face ----------------------------------------------------------------------------------
    @property
    def format(self) -> str:
        return self.doc.format

    @property
    def issues(self):
        return self.doc.issues

    @property
    def source_lang(self) -> str | None:
        return self.doc.source_lang

    @property
    def target_lang(self) -> str | None:
        return self.doc.target_lang

    @target_lang.setter
    def target_lang(self, value: str | None) -> None:
        if self._reading:
            raise RuntimeError("set the target language before reading the first window")
        self.doc.target_lang = value

    def __enter__(self) -> "StreamedXliff":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()
        if self._body is not None:
            self._body.close()
            self._body = None

    # --- reading ----------------------------------------------------------------------------------------------
    def _iter_events(self):
        try:
            yield from self._events
        except etree.XMLSyntaxError as exc:
            line = max(exc.position[0], 1) if exc.position else None  # an empty file: line 0 here, 1 in parse()
            raise FormatError(f"not well-formed XML: {exc.msg}", path=self.path, line=line) from None

    def _read(self) -> Iterator[tuple[list[xliff12.TuRec], int] | None]:
        """Trans-units with units, in file order (one at a time, or one with those nested in it), each with the
        ordinal of its last element; the units of one ``<file>`` are context-linked as they come."""
        loader, sc, index, stack = self.loader, self.scanner, self._index, self._stack
        previous: tuple[Unit, str] | None = None
        nested: list[etree._Element] = []
        t_file = t_tu = None
        for event, el in self._iter_events():
            if event == "start":
                i = sc.next_start()
                index[el] = i
                stack.append(el)
                if len(stack) == 1:
                    self.xf.root = el
                    self._head_end = 0
                    loader.begin(self.xf)
                    t_file, t_tu = loader.T["file"], loader.T["trans-unit"]
                elif len(stack) == 2 and el.tag == t_file:
                    self._file_starts.append(sc.starts[i])
                    if not self._head_end:
                        self._head_end = sc.tag_ends[i]
                        self._head_last = i
                    frec = loader.add_file(el)
                    self._file = xliff12._FileState(frec)
                    previous = None
                    if len(loader.h.files) == 1:
                        self.doc.source_lang, self.doc.target_lang = loader.src_lang, loader.tgt_lang
                        loader.h.target_lang = loader.tgt_lang
                        yield None  # primed: the first file's languages are known
                continue
            i = index[el]
            sc.close(i)
            stack.pop()
            if el.tag == t_tu and self._file is not None and len(stack) >= 2 and stack[1] is self._file.file.el:
                if any(a.tag == t_tu for a in stack):  # a trans-unit inside one (invalid, but read): after it,
                    nested.append(el)                    # in document order, as the whole-file reader does
                    continue
                group = []  # the trans-unit and those inside it: one window holds them all
                for tu in [el, *sorted(nested, key=index.__getitem__)]:
                    for bad in tu.iter(etree.Entity):
                        raise UnsafeXMLError(f"entity reference &{bad.text.strip('&;')}; is not allowed",
                                             path=self.path, line=bad.sourceline)
                    rec = loader._trans_unit(tu, self._file, self._used_ids)
                    self._check_issues()
                    if rec is not None:
                        previous = xliff12.link_context(rec.units(), previous)
                        group.append(rec)
                nested.clear()
                if group:
                    yield group, sc.count - 1
            elif len(stack) == 1 and self._file is not None and el is self._file.file.el:
                self._file = None
        if self.xf.root is None:
            raise FormatError("no root element", path=self.path)
        if not loader.h.files:
            loader.issue("error", "no <file> element", self.xf.root.sourceline)
            self._check_issues()
            yield None

    def _check_issues(self) -> None:
        if not self.strict:
            return
        issues = self.loader.issues
        for issue in issues[self._checked_issues:]:
            if issue.severity == "error":
                raise FormatError(issue.message, path=self.path, line=issue.line, unit=issue.unit,
                                  hint="run `tower-cat validate` to see every finding")
        self._checked_issues = len(issues)

    def windows(self, size: int | None = None) -> Iterator[list[Unit]]:
        """Lists of about ``size`` units (whole trans-units), in file order. When the caller asks for the next
        list, the edits made to the previous one are written (see :meth:`write_to`) and its elements freed."""
        if self._reading:
            raise RuntimeError("windows() reads the file once")
        self._reading = True
        size = size or self.window
        pending: list[xliff12.TuRec] = []
        count = 0
        last = -1
        for item in self._records:
            if item is None:
                continue
            group, ordinal = item
            if count >= size:  # the next trans-unit is read (and linked) before a window is handed out
                yield [u for r in pending for u in r.units()]
                self._flush(pending, last)
                pending, count = [], 0
            pending += group
            count += sum(len(r.units()) for r in group)
            last = ordinal
        if pending:
            yield [u for r in pending for u in r.units()]
            self._flush(pending, last)
        self._done = True

    def units(self) -> Iterator[Unit]:
        for window in self.windows():
            yield from window

    # --- writing ----------------------------------------------------------------------------------------------
    def write_to(self, output: str | Path) -> None:
        """Write the file with the edits made to its units to ``output`` (atomically, at :meth:`finish`)."""
        if self._reading:
            raise RuntimeError("call write_to() before reading the first window")
        self._output = Path(output)
        self.doc.handle = self.loader.h
        self._writer = xliff12.Writer(self.doc)
        head_end = self._head_end or (self.scanner.tag_ends[0] if self.scanner.count else 0)
        self._writer.sp = _xml.StreamSplicer(self.xf.text, head_end)
        parent = self._output.parent
        parent.mkdir(parents=True, exist_ok=True)
        self._body = tempfile.TemporaryFile(dir=parent, prefix=".tower-cat-body.")  # anonymous: gone if killed

    def _flush(self, recs: list[xliff12.TuRec], last: int) -> None:
        """Write the edits of these trans-units and everything before their end; free their elements."""
        upto = max(self.scanner.ends[self._index[r.el]] for r in recs)
        w = self._writer
        if w is not None:
            for rec in recs:
                w.write_tu(rec)
            self._file_languages(upto)
            self._write(w.sp.flush(upto))
        self._free(last)

    def _file_languages(self, upto: int) -> None:
        """target-language on each ``<file>`` whose start tag is written now (set before the first window)."""
        files, starts = self.loader.h.files, self._file_starts
        while self._files_written < len(files) and starts[self._files_written] < upto:
            self._writer.file_language(files[self._files_written])
            self._files_written += 1

    def _write(self, text: str) -> None:
        if text:
            self._body.write(text.encode(self.xf.encoding, errors="xmlcharrefreplace"))

    def _free(self, last: int) -> None:
        """Drop every element up to ordinal ``last`` that is not still open: from the tree, the offsets and the
        caches that hold elements."""
        index, sc = self._index, self.scanner
        keep = self._head_last
        open_now = set(map(id, self._stack))
        for k, parent in enumerate(self._stack):
            child_open = self._stack[k + 1] if k + 1 < len(self._stack) else None
            j = 0
            while j < len(parent):
                child = parent[j]
                probe = child
                while probe is not None and not isinstance(probe.tag, str):  # comments, PIs: go with what follows
                    probe = probe.getnext()
                if probe is None or probe is child_open:
                    break
                i = index.get(probe, last + 1)
                if i > last:
                    break
                if i <= keep:  # the head's elements stay (SDLXLIFF's <doc-info> is read and written at the end)
                    j += 1
                    continue
                del parent[j]
        done = []
        for el, i in index.items():
            if i > last:
                break
            if i > keep and id(el) not in open_now:
                done.append((i, el))
        for i, el in done:
            del index[el]
            sc.forget(i)
        h = self.loader.h
        h.tus.clear()
        h.recs.clear()
        if self._file is not None:
            self._file.forget_elements()
        self.loader.reader.forget()
        self.loader.dialect.forget_elements()
        if self._writer is not None:
            self._writer.forget_elements()

    def finish(self) -> None:
        """Read what is left (unchanged), then write the output, if any, atomically: head, then the pieces."""
        if not self._done:
            if not self._reading:
                for _ in self.windows():
                    pass
            else:
                raise RuntimeError("finish() before the last window was read")
        w = self._writer
        if w is None:
            return
        self.loader.h.dialect.finish(w)
        self._file_languages(len(self.xf.text) + 1)
        w.declarations()
        self._write(w.sp.flush(len(self.xf.text)))
        head = w.sp.head()
        self._body.flush()
        self._body.seek(0)
        with _xml.atomic_open(self._output, "wb") as out:
            out.write(self.xf.bom + head.encode(self.xf.encoding, errors="xmlcharrefreplace"))
            shutil.copyfileobj(self._body, out, 1 << 20)
        self._body.close()
        self._body = None


def stream(path: str | Path, strict: bool = True, dialect: xliff12.Dialect | None = None,
           window: int = DEFAULT_WINDOW) -> StreamedXliff:
    return StreamedXliff(path, dialect=dialect, strict=strict, window=window)
