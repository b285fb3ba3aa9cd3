"""One exception family, with messages a translator can act on: which file, which line, which unit, what to do."""

from __future__ import annotations

from pathlib import Path


class TowerCatError(Exception):
    """Base of every error tower-cat raises on purpose.

    The message always says where (file, line, unit) and, where we know it, what to do next.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 unit: str | None = None, hint: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.unit = unit
        self.hint = hint
        super().__init__(self.__str__())

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
