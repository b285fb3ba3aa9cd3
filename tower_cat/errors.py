"""One exception family, with messages a translator can act on: which file, which line, which unit, what to do."""

from __future__ import annotations

from pathlib import Path


class TowerCatError(Exception):
    """Base of every error tower-cat raises on purpose.

    The message always says where (file, line, unit) and, where we know it, what to do next — in the library's
    words (parameter names); ``param`` names the parameter so a door can say it in its own (a CLI flag).
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 unit: str | None = None, hint: str | None = None, param: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.unit = unit
        self.hint = hint
        self.param = param  # the library parameter the hint is about: a door (the CLI) words it its own way
        super().__init__(self.__str__())

    def with_hint(self, hint: str | None) -> "TowerCatError":
        """The same error with another hint (the CLI names its flag where the library named a parameter)."""
        self.hint = hint
        self.args = (self.__str__(),)
        return self

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(self.path + (f":{self.line}" if self.line else ""))
        elif self.line:
            where.append(f"line {self.line}")
        if self.unit is not None:
            where.append(f"unit {self.unit!r}")
        text = (", ".join(where) + ": " if where else "") + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class FormatError(TowerCatError):
    """The file is not what its format requires (malformed XML, broken PO syntax, invalid XLIFF)."""


class UnsafeXMLError(FormatError):
    """The file tries something we never do: entity declarations, external DTDs, network access."""


class UnsupportedFormatError(FormatError):
    """No format module recognises the content."""


class CodeMismatchError(TowerCatError):
    """A target's inline codes do not match its source: written only after repair, never silently."""


class ModelError(TowerCatError):
    """A model directory is missing, incomplete or of an unknown family."""


class InvalidArgument(TowerCatError, ValueError):
    """A value a library function cannot use (an unknown wording, task, language code ...). Also a ValueError, so
    code that caught the bare ValueError raised before keeps working."""


class SegmentTooLong(TowerCatError):
    """A segment whose prompt cannot fit the model's context window (with room for the answer): refused before
    any engine work."""


class TMError(TowerCatError):
    """A translation memory cannot be opened, read or written."""


class GlossaryError(TowerCatError):
    """A glossary (TBX, CSV/TSV) cannot be read."""


class SessionError(TowerCatError):
    """A session operation that cannot be done (nothing to undo, a flagged result to accept, ...)."""


class SessionNotFound(SessionError):
    pass


class OutputError(TowerCatError):
    """An output file cannot be written as asked."""


class DataError(TowerCatError):
    """Fine-tuning data cannot be built from the given memories."""


class TrainError(TowerCatError):
    """A fine-tuning run cannot start or finish."""


class LanguageError(TowerCatError, ValueError):
    """A language code the server does not translate (or cannot read)."""


class ServiceError(TowerCatError):
    """A request the server refuses; every protocol maps it to its own wire shape with ``status``."""

    status = 400

    def __init__(self, message: str, status: int | None = None, **where):
        super().__init__(message, **where)
        if status is not None:
            self.status = status
