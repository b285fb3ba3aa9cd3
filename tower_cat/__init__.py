"""tower-cat: translate, post-edit and quality-check localization files with Tower-family LLMs.

The shortest uses (README, "Python API")::

    import tower_cat
    translator = tower_cat.load("models/tower", tm="memory.tmx", glossary="glossary.tbx")
    translator.translate_text("Click <b>Save</b> to keep your note.", "en", "de", markup="html")

Everything here is the library the ``tower-cat`` command, the server's protocols and sessions are built on:
one translation core (:class:`Translator`) for every door.
"""

from __future__ import annotations

from tower_cat.core import (SegmentRequest, SegmentResult, TranslationOptions, Translator, default_cache_path,
                            load)
from tower_cat.document import Document, InlineCode, Segment, Unit
from tower_cat.errors import (CodeMismatchError, FormatError, GlossaryError, InvalidArgument, LanguageError,
                              ModelError, SegmentTooLong, ServiceError, SessionError, TMError, TowerCatError)
from tower_cat.protocols import GlossaryLike, QEBackendLike, TranslationEngine, TranslationMemoryLike

__all__ = [
    # the core
    "load", "Translator", "TranslationOptions", "SegmentRequest", "SegmentResult", "default_cache_path",
    # the data model
    "Document", "Unit", "Segment", "InlineCode", "open_document",
    # pluggable parts
    "TranslationEngine", "TranslationMemoryLike", "GlossaryLike", "QEBackendLike",
    # errors
    "TowerCatError", "FormatError", "CodeMismatchError", "ModelError", "SegmentTooLong", "TMError",
    "GlossaryError", "SessionError", "ServiceError", "LanguageError", "InvalidArgument",
]


def open_document(path) -> Document:
    """Load an XLIFF 1.2/2.x, SDLXLIFF, MQXLIFF, PO or TMX file (its format is sniffed)."""
    from tower_cat import formats

    return formats.load(path)
