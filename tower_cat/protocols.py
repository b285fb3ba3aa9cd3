"""The pluggable parts of tower-cat as ``typing.Protocol``s: bring your own engine, TM, glossary or QE backend.

Anything with these methods works where tower-cat's own classes do (``Translator(engine, tm=..., glossary=...)``,
``translate_file(..., qe=...)``); nothing needs to inherit from anything. tower-cat's implementations:
``engine.Engine``, ``tm.TranslationMemory`` (SQLite) / ``tm_postgres.PostgresTranslationMemory``,
``terminology.Glossary``, ``qe.CometBackend`` / ``qe.LLMJudgeBackend`` / ``qe.LogprobBackend``.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from tower_cat.document import Segment, Unit

__all__ = ["TranslationEngine", "TranslationMemoryLike", "GlossaryLike", "QEBackendLike", "TMMatch",
           "TermCompliance"]

Messages = list[dict[str, str]]


@runtime_checkable
class TranslationEngine(Protocol):
    """What the core asks of a model: chat messages in, generations out, and enough of the tokenizer to fit
    prompts into the context window."""

    @property
    def info(self) -> Any:
        """Has ``wording``: ``instruct`` | ``plus`` | ``base`` (which prompt wording the model was trained on)."""

    @property
    def context_length(self) -> int: ...

    def generate(self, prompts: Sequence[Messages], options: Any = None, *,
                 sources: Sequence[str | None] | None = None) -> list[Any]:
        """One result per prompt with ``text``, ``log_prob``, ``truncated`` and ``hypotheses`` (n-best, each
        with ``text``, ``log_prob``, ``truncated``). ``options`` is an ``engine.GenerationOptions``."""

    def render(self, messages: Messages) -> Any:
        """The prompt as the model reads it: has ``tokens`` (and ``text``)."""

    def count_tokens(self, text: str) -> int: ...

    def budget(self, source: str | None, options: Any) -> int:
        """New tokens allowed for the answer to ``source``."""


class TMMatch(Protocol):
    source: Segment
    target: Segment
    score: float            # 0-101: 101 context, 100 exact, below: fuzzy
    kind: str               # context | exact | fuzzy


@runtime_checkable
class TranslationMemoryLike(Protocol):
    def lookup(self, query: str | Segment | Unit, src_lang: str, tgt_lang: str, *, limit: int = 5,
               min_score: float = 70.0, fuzzy: bool = True) -> list[TMMatch]:
        """Best matches first. A Unit query carries its context (101 % matches)."""

    def add(self, source: str | Segment, target: str | Segment, src_lang: str, tgt_lang: str, **kw) -> Any: ...


class TermCompliance(Protocol):
    hits: list
    issues: list            # each with severity ("error" | "warning") and message
    ok_hits: int

    @property
    def ok(self) -> bool: ...

    def as_dict(self) -> dict: ...


@runtime_checkable
class GlossaryLike(Protocol):
    def prompt_terms(self, source: str | Segment, src_lang: str | None = None,
                     tgt_lang: str | None = None) -> list[tuple[str, str]]:
        """(source term, target term) pairs found in the source, for the prompt."""

    def check(self, source: str | Segment, target: str | Segment, src_lang: str | None = None,
              tgt_lang: str | None = None, unit_id: str = "") -> TermCompliance: ...


@runtime_checkable
class QEBackendLike(Protocol):
    def score(self, items: Sequence[Any]) -> list[Any]:
        """``qe.QEItem`` (source, target, reference, source_lang, target_lang) in, ``qe.QEResult`` (score 0-100
        or None, error_spans) out, one per item."""

    def describe(self) -> str: ...
