"""Translation memories (+ monolingual text) -> continued-pretraining corpus and instruction-tuning examples.

Everything a tuned model is taught comes out of ``tower_cat.prompts``: the SFT examples are the exact
messages the runtime sends (sentence translation, few-shot with TM fuzzy matches, terminology, context,
post-editing), so a tuned model and the pipeline always speak the same prompts. Inline codes are rendered
the way the pipeline shows them to a model (``codes.render``: ``<1>…</1>``, ``<2/>``), the target with the
source's numbering, so the model learns to carry tags over.

The continued-pretraining (CPT) corpus follows Tower's mixture: monolingual documents plus parallel pairs
rendered as ``{Src}: …\\n{Tgt}: …`` in both directions, with a configurable parallel share.

Cleaning drops empty, over-long, duplicated and identical pairs, pairs with an implausible length ratio,
text in the wrong script for its language tag, and pairs whose inline codes differ. The held-out split is
made of whole source groups, so no held-out source ever occurs in the training split (nor in the CPT corpus
or among the few-shot examples).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import unicodedata
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from tower_cat import codes as codes_mod
from tower_cat import prompts
from tower_cat.document import Segment
from tower_cat import errors
from tower_cat.languages import language_name

TASKS = ("translate", "runtime", "fewshot", "terms", "context", "post_edit")
SPLITS = ("train", "heldout", "cpt", "sft")


DataError = errors.DataError  # one error family (tower_cat.errors); importable from here as before


# --------------------------------------------------------------------------------------------------------
# data model


@dataclass(frozen=True)
class Pair:
    """One cleaned translation pair, inline codes as numbered-tag markup (the target uses the source's numbers)."""

    source: str
    target: str
    src_lang: str
    tgt_lang: str
    origin: str = ""                       # "file.tmx#12"
    context_before: tuple[str, ...] = ()   # neighbouring sources in the file (rendered), for context prompts
    context_after: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()            # what the pipeline adds for short strings: msgctxt, key, notes

    @property
    def direction(self) -> str:
        return f"{self.src_lang}-{self.tgt_lang}"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "src_lang": self.src_lang, "tgt_lang": self.tgt_lang,
                "origin": self.origin, "context_before": list(self.context_before),
                "context_after": list(self.context_after), "notes": list(self.notes)}


@dataclass
class SftExample:
    """A prompt as the runtime sends it and the answer the model should give."""

    task: str
    messages: list[dict[str, str]]
    response: str
    src_lang: str
    tgt_lang: str
    source: str = ""       # the source being translated (grouping, statistics)

    def conversation(self) -> list[dict[str, str]]:
        return prompts.training_messages(self.messages, self.response)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "messages": self.conversation(), "src_lang": self.src_lang,
                "tgt_lang": self.tgt_lang, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SftExample":
        msgs = [dict(m) for m in d["messages"]]
        return cls(d.get("task", "translate"), msgs[:-1], msgs[-1]["content"], d.get("src_lang", ""),
                   d.get("tgt_lang", ""), d.get("source", ""))


@dataclass
class CptDoc:
    """One continued-pretraining document: plain text, trained on every token."""

    text: str
    kind: str  # "mono" | "parallel"
    lang: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "kind": self.kind, "lang": self.lang}


@dataclass
class DataConfig:
    """What to build and how. Rates are per training pair (expected number of extra examples)."""

    source: str | None = None              # source language (default: the memory's source language)
    targets: tuple[str, ...] = ()          # target languages (default: every other language in the memory)
    wording: str = "instruct"              # prompts.py wording: instruct | plus | base | auto (recipe: from the model)
    heldout: float = 0.05                  # < 1: share of source groups; >= 1: number of source groups
    heldout_min_words: int = 1             # held-out sources have at least this many words
    heldout_max: int = 500                 # cap on held-out groups (evaluation cost)
    max_ratio: float = 3.0                 # longer/shorter character ratio allowed ...
    ratio_min_chars: int = 12              # ... once the longer side has this many characters
    max_chars: int = 2000
    min_script_share: float = 0.5          # letters in the language's script, once a side has >= 5 letters
    drop_identical: bool = True
    parallel_share: float = 1 / 3          # CPT: share of parallel documents (Tower: about a third)
    tm_mono: bool = True                   # CPT: use the memory's own sides as monolingual text too
    translate_rate: float = 1.0
    runtime_share: float = 0.5             # of the translate examples: built as `translate` builds its prompt by
                                           # default (context + notes + terms + few-shot, whatever the pair has)
    fewshot_rate: float = 0.4
    fewshot_max: int = 3                   # the pipeline's default --few-shot
    fewshot_min_score: float = 70.0        # the pipeline's default --fuzzy-min
    fewshot_memory: int = 20000            # training pairs (a seeded sample) searched for few-shot examples;
                                           # bounds the cost of a search, so building stays linear (0: all)
    terms_rate: float = 1.0                # of the pairs with glossary terms in them
    context_rate: float = 0.15
    notes_rate: float = 0.5                # translate examples of short strings that show their notes
    short_words: int = 8                   # the pipeline's "short string" (notes are only shown for these)
    post_edit_rate: float = 0.3
    post_edit_keep_rate: float = 0.15      # share of post-edit examples whose draft is already right
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d


@dataclass
class DataStats:
    read: Counter = field(default_factory=Counter)           # direction -> pairs read
    dropped: Counter = field(default_factory=Counter)        # reason -> pairs
    train: Counter = field(default_factory=Counter)          # direction -> pairs
    heldout: Counter = field(default_factory=Counter)
    tasks: Counter = field(default_factory=Counter)          # task -> SFT examples
    cpt: Counter = field(default_factory=Counter)            # mono | parallel -> documents
    cpt_chars: int = 0
    sft_chars: int = 0
    tokens: dict[str, int] = field(default_factory=dict)     # with a tokenizer: cpt / sft tokens
    mix: Counter = field(default_factory=Counter)            # translation prompts by extras: "context+terms+few-shot"

    def to_dict(self) -> dict[str, Any]:
        return {"read": dict(self.read), "dropped": dict(self.dropped), "train": dict(self.train),
                "heldout": dict(self.heldout), "tasks": dict(self.tasks), "cpt": dict(self.cpt),
                "cpt_chars": self.cpt_chars, "sft_chars": self.sft_chars, "tokens": dict(self.tokens),
                "mix": dict(self.mix)}


@dataclass
class Datasets:
    """The built splits: sequences read from memory-mapped Arrow shards in `directory` (never loaded whole)."""

    train: Sequence[Pair]
    heldout: Sequence[Pair]
    cpt: Sequence[CptDoc]
    sft: Sequence[SftExample]
    stats: DataStats
    config: DataConfig
    directory: Path | None = None


# --------------------------------------------------------------------------------------------------------
# reading


@dataclass
class RawPair:
    source: Segment
    target: Segment
    src_lang: str
    tgt_lang: str
    origin: str
    position: int   # order inside its file (context neighbours)
    file: str
    notes: tuple[str, ...] = ()


def _norm_lang(code: str | None) -> str | None:
    from tower_cat.languages import normalize_lang

    return normalize_lang(code)


def _lang_ok(code: str) -> str:
    try:
        language_name(code)
    except ValueError as exc:
        raise DataError(str(exc), hint="use language codes such as en, de, pt-PT") from None
    return code


def _matches(query: str, stored: str | None) -> bool:
    from tower_cat.languages import lang_matches

    return stored is not None and lang_matches(_norm_lang(query), _norm_lang(stored))


def read_pairs(paths: Iterable[str | Path], source: str | None = None,
               targets: Sequence[str] = ()) -> Iterator[RawPair]:
    """Pairs from TMX (streamed), XLIFF and PO files: units with a target that is not fuzzy.

    A TMX yields one pair per requested target language (every language but the source by default).
    """
    from tower_cat.tm import is_tm_database

    for path in paths:
        if is_tm_database(path):
            yield from _tm_database_pairs(path, source, targets)
            continue
        path = Path(path)
        if not path.is_file():
            raise DataError("no such file", path=path)
        head = path.read_bytes()[:4096].lower()
        if b"<tmx" in head:
            yield from _tmx_pairs(path, source, targets)
        else:
            yield from _doc_pairs(path, source, targets)


def _tm_database_pairs(spec: str | Path, source: str | None, targets: Sequence[str]) -> Iterator[RawPair]:
    """Entries of a TM database (SQLite file or postgresql:// URL), in the order they were added."""
    from tower_cat.tm import open_translation_memory

    with open_translation_memory(spec, readonly=True) as memory:
        name = memory.path
        for n, (s, t, src_seg, tgt_seg, info) in enumerate(memory.iter_entries(source)):
            tgt = next((want for want in targets if _matches(want, t)), None) if targets else t
            if tgt is None:
                continue
            yield RawPair(src_seg, tgt_seg, _norm_lang(source or s), _norm_lang(tgt), f"{name}#{info['id']}", n,
                          name)


def _tmx_pairs(path: Path, source: str | None, targets: Sequence[str]) -> Iterator[RawPair]:
    from tower_cat.formats.tmx import iter_tmx

    for unit in iter_tmx(path):
        srclang = source or (unit.srclang if unit.srclang and unit.srclang != "*all*" else None)
        if srclang is None:
            srclang = next(iter(unit.variants))
        skey = next((k for k in unit.variants if _matches(srclang, k)), None)
        if skey is None:
            continue
        src_seg = unit.variants[skey]
        want = list(targets) or [k for k in unit.variants if k != skey]
        for tgt in want:
            tkey = next((k for k in unit.variants if k != skey and _matches(tgt, k)), None)
            if tkey is None:
                continue
            yield RawPair(src_seg, unit.variants[tkey], _norm_lang(source or skey), _norm_lang(tgt if targets else tkey),
                          f"{path.name}#{unit.tuid or unit.index}", unit.index, str(path), _tmx_notes(unit))


def _doc_pairs(path: Path, source: str | None, targets: Sequence[str]) -> Iterator[RawPair]:
    from tower_cat import formats

    doc = formats.load(path)
    src = source or doc.source_lang or ("en" if doc.format == "po" else None)
    tgt = doc.target_lang or (targets[0] if len(targets) == 1 else None)
    if not src or not tgt:
        raise DataError(f"the {doc.format} file does not say its languages", path=path,
                        hint="pass the source and target languages", param="tm_languages")
    if targets:
        wanted = [t for t in targets if _matches(t, tgt)]
        if not wanted:
            return
        tgt = wanted[0]  # name the direction as asked, like the TMX reader does
    for n, unit in enumerate(doc.units):
        state = (unit.state or "").lower()
        if not unit.has_target or state == "fuzzy" or unit.meta.get("fuzzy"):
            continue
        yield RawPair(unit.source, unit.target, _norm_lang(src), _norm_lang(tgt), f"{path.name}#{unit.id}", n,
                      str(path), _unit_notes(unit))


def _unit_notes(unit) -> tuple[str, ...]:
    return tuple(prompts.unit_notes(unit.context.msgctxt, unit.context.resname, unit.notes))


def _tmx_notes(unit) -> tuple[str, ...]:
    """A TMX tu's x-context prop reads like a msgctxt; its notes like unit notes."""
    ctx = next((v for k, v in unit.props if k.lower() in ("x-context", "x-msgctxt") and v.strip()), None)
    return tuple(prompts.unit_notes(ctx, None, unit.notes))


# --------------------------------------------------------------------------------------------------------
# codes and cleaning


def render_pair(source: Segment, target: Segment) -> tuple[str, str]:
    """Numbered-tag markup for a pair: the target's codes carry the numbers the source got."""
    rendered = codes_mod.render(source)
    number: dict[tuple[str, str], tuple[int, str]] = {}
    for n, code in rendered.codes.items():
        number[code.key] = (n, "open" if rendered.paired(n) else "single")
    for n, code in rendered.closers.items():
        number[code.key] = (n, "close")
    out: list[str] = []
    for part in target.parts:
        if isinstance(part, str):
            out.append(codes_mod.escape(part))
            continue
        num, role = number.get(part.key, (None, None))
        if num is None:
            raise errors.InvalidArgument(f"target code {part.key} is not in the source")
        out.append(f"<{num}>" if role == "open" else f"</{num}>" if role == "close" else f"<{num}/>")
    return rendered.text, "".join(out)


_SCRIPTS = {
    "CYRILLIC": {"ru", "uk", "bg", "be", "mk", "sr", "kk", "mn", "ky", "tg"},
    "GREEK": {"el"},
    "ARABIC": {"ar", "fa", "ur", "ps"},
    "HEBREW": {"he", "yi"},
    "HANGUL": {"ko"},
    "CJK": {"zh", "ja", "ko"},
    "HIRAGANA": {"ja"},
    "KATAKANA": {"ja"},
    "DEVANAGARI": {"hi", "mr", "ne"},
    "THAI": {"th"},
    "GEORGIAN": {"ka"},
    "ARMENIAN": {"hy"},
}
_NON_LATIN = set().union(*_SCRIPTS.values()) - {"sr"}  # Serbian: either script


def _script_share(text: str, lang: str) -> float | None:
    """Share of letters written in a script of `lang`; None when there are too few letters to tell."""
    base = lang.split("-")[0].lower()
    letters = [c for c in codes_mod.strip_tags(text) if c.isalpha()]
    if len(letters) < 5:
        return None
    ok = 0
    for c in letters:
        script = unicodedata.name(c, "UNKNOWN").split(" ")[0]
        if script == "LATIN":
            ok += base not in _NON_LATIN
        elif base in _SCRIPTS.get(script, ()):
            ok += 1
        elif base == "sr" and script == "CYRILLIC":
            ok += 1
    return ok / len(letters)


def _plain(markup: str) -> str:
    return " ".join(codes_mod.strip_tags(markup).split())


def normalize_source(text: str) -> str:
    """Grouping key of a source: tags removed, whitespace collapsed, case folded."""
    return _plain(text).casefold()


def clean_pair(rp: RawPair, config: DataConfig, stats: DataStats, seen: set[int]) -> Pair | None:
    """The cleaned pair, or None with the reason counted in ``stats.dropped``.

    `seen` holds 64-bit hashes of the pairs kept so far (exact duplicates are dropped): 1 million pairs cost
    about 60 MB here, not the text.
    """
    stats.read[f"{rp.src_lang}-{rp.tgt_lang}"] += 1
    src_plain, tgt_plain = _plain(rp.source.text), _plain(rp.target.text)
    if not src_plain or not tgt_plain:
        stats.dropped["empty"] += 1
        return None
    if codes_mod.check(rp.source, rp.target):
        stats.dropped["code mismatch"] += 1
        return None
    try:
        src, tgt = render_pair(rp.source, rp.target)
    except ValueError:
        stats.dropped["code mismatch"] += 1
        return None
    if max(len(src), len(tgt)) > config.max_chars:
        stats.dropped["too long"] += 1
        return None
    key = _hash64(rp.src_lang, rp.tgt_lang, " ".join(src.split()), " ".join(tgt.split()))
    if key in seen:
        stats.dropped["duplicate"] += 1
        return None
    seen.add(key)
    if config.drop_identical and src_plain.casefold() == tgt_plain.casefold() and any(
            c.isalpha() for c in src_plain):
        stats.dropped["identical source/target"] += 1
        return None
    longer, shorter = max(len(src_plain), len(tgt_plain)), max(1, min(len(src_plain), len(tgt_plain)))
    if longer >= config.ratio_min_chars and longer / shorter > config.max_ratio:
        stats.dropped["length ratio"] += 1
        return None
    for text, lang in ((src, rp.src_lang), (tgt, rp.tgt_lang)):
        share = _script_share(text, lang)
        if share is not None and share < config.min_script_share:
            stats.dropped["wrong script for language tag"] += 1
            return None
    notes = rp.notes if len(rp.source.text.split()) <= config.short_words else ()
    return Pair(src, tgt, rp.src_lang, rp.tgt_lang, rp.origin, notes=notes)


def clean_pairs(raw: Iterable[RawPair], config: DataConfig, stats: DataStats) -> Iterator[tuple[Pair, RawPair]]:
    """Drop what should not be trained on; count every reason in ``stats.dropped`` (a stream)."""
    seen: set[int] = set()
    for rp in raw:
        pair = clean_pair(rp, config, stats, seen)
        if pair is not None:
            yield pair, rp


def with_context(items: Iterable[tuple[Pair, RawPair]]) -> Iterator[Pair]:
    """Neighbouring sources (file order, plain text as the pipeline gives them) as context_before / _after.

    A stream with one file position of look-ahead: the pairs of a unit (one per target language) arrive
    together, and a neighbour is the first kept pair's source at the position before / after in that file.
    """
    pending: tuple[str, int, str, list[Pair], str | None] | None = None

    def emit(group, after):
        _, _, _, pairs, before = group
        for p in pairs:
            yield replace(p, context_before=(before,) if before else (), context_after=(after,) if after else ())

    for pair, rp in items:
        if pending is not None and pending[0] == rp.file and pending[1] == rp.position:
            pending[3].append(pair)
            continue
        text = rp.source.text.strip()
        before = None
        if pending is not None:
            adjacent = pending[0] == rp.file and pending[1] == rp.position - 1
            yield from emit(pending, text if adjacent else None)
            before = pending[2] if adjacent else None
        pending = (rp.file, rp.position, text, [pair], before)
    if pending is not None:
        yield from emit(pending, None)


def _hash_unit(*parts: Any) -> float:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2 ** 64


def _hash64(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest(), "big")


class HeldoutChooser:
    """Chooses the held-out source groups while the pairs stream past, in bounded memory.

    The rule (stable across runs): among source groups with at least `heldout_min_words` words, the `n` whose
    seeded hash is smallest, `n` = the share (or number) of all groups, capped at `heldout_max`. Only a hash
    per group and a heap of `heldout_max` candidates are kept.
    """

    def __init__(self, config: DataConfig):
        import heapq

        self.config = config
        self.heapq = heapq
        self.groups: set[int] = set()
        self.eligible = 0
        self.heap: list[tuple[float, str]] = []     # (-hash, key): the largest of the smallest on top
        self.cap = max(0, int(config.heldout_max))

    def add(self, source: str) -> None:
        key = normalize_source(source)
        gid = _hash64(key)
        if gid in self.groups:
            return
        self.groups.add(gid)
        if len(key.split()) < self.config.heldout_min_words:
            return
        self.eligible += 1
        if not self.cap:
            return
        item = (-_hash_unit(self.config.seed, "heldout", key), key)
        if len(self.heap) < self.cap:
            self.heapq.heappush(self.heap, item)
        elif item > self.heap[0]:
            self.heapq.heapreplace(self.heap, item)

    def chosen(self) -> set[str]:
        c, total = self.config, len(self.groups)
        if c.heldout <= 0:
            n = 0
        elif c.heldout < 1:
            n = max(1, round(c.heldout * total))
        else:
            n = int(c.heldout)
        n = min(n, c.heldout_max, self.eligible, max(0, total - 1))
        return {key for _, key in sorted(self.heap, reverse=True)[:n]}


def split_heldout(pairs: Sequence[Pair], config: DataConfig) -> tuple[list[Pair], list[Pair]]:
    """(train, heldout): whole source groups go to one side, chosen by a seeded hash (stable across runs)."""
    chooser = HeldoutChooser(config)
    for p in pairs:
        chooser.add(p.source)
    held = chooser.chosen()
    train = [p for p in pairs if normalize_source(p.source) not in held]
    heldout = [p for p in pairs if normalize_source(p.source) in held]
    return train, heldout


# --------------------------------------------------------------------------------------------------------
# post-editing drafts


_TOKEN = re.compile(r"<\s*/?\s*\d+\s*/?\s*>|\S+")


def noisy_draft(target: str, rng: random.Random, vocabulary: Sequence[str] = (), source: str = "") -> str:
    """A plausible machine-translation draft of `target`: 1-3 word-level edits (tags are never touched).

    Edits: drop a word, swap neighbours, repeat a word, a wrong word from `vocabulary`, a source word left
    untranslated, a changed number, a lost capital or accent.
    """
    words = target.split(" ")
    src_words = [w for w in source.split() if w.isalpha()]
    editable = lambda i: bool(words[i]) and not codes_mod.TAG_RE.search(words[i])  # noqa: E731
    for _ in range(rng.choice((1, 1, 2, 3))):
        idx = [i for i in range(len(words)) if editable(i)]
        if not idx:
            break
        i = rng.choice(idx)
        op = rng.choice(("drop", "swap", "repeat", "replace", "untranslated", "number", "case"))
        w = words[i]
        if op == "drop" and len(idx) > 1:
            del words[i]
        elif op == "swap" and i + 1 < len(words) and editable(i + 1):
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == "repeat":
            words.insert(i, w)
        elif op == "replace" and vocabulary:
            words[i] = rng.choice(vocabulary)
        elif op == "untranslated" and src_words:
            words[i] = rng.choice(src_words)
        elif op == "number" and re.search(r"\d", w):
            words[i] = re.sub(r"\d", lambda m: str((int(m.group(0)) + rng.randint(1, 8)) % 10), w, count=1)
        else:
            stripped = "".join(c for c in unicodedata.normalize("NFD", w) if not unicodedata.combining(c))
            words[i] = stripped if stripped != w else (w.lower() if w[:1].isupper() else w.capitalize())
    return " ".join(words)


DraftFn = Callable[[Sequence[Pair]], list[str]]


def model_drafts(engine, wording: str | None = None, max_new_tokens: int = 256) -> DraftFn:
    """Drafts from a model's own translations (the base model's output: realistic post-editing input)."""
    from tower_cat.engine import GenerationOptions

    def drafts(pairs: Sequence[Pair]) -> list[str]:
        msgs = [prompts.translate_messages(p.source, p.src_lang, p.tgt_lang, wording=wording or engine.info.wording)
                for p in pairs]
        gens = engine.generate(msgs, GenerationOptions(max_new_tokens=max_new_tokens), sources=[p.source for p in pairs])
        return [prompts.clean_translation(g.text, p.tgt_lang) for g, p in zip(gens, pairs)]

    return drafts


# --------------------------------------------------------------------------------------------------------
# SFT examples


def _names(src: str, tgt: str, wording: str) -> tuple[str, str]:
    variant = wording == "plus"
    return language_name(src, variant=variant), language_name(tgt, variant=variant)


def _glossary_terms(glossary, pair: Pair) -> list[tuple[str, str]]:
    """Glossary terms in the source whose preferred target the reference actually uses."""
    if glossary is None:
        return []
    src, tgt = _plain(pair.source), _plain(pair.target)
    terms = glossary.prompt_terms(src, pair.src_lang, pair.tgt_lang)
    if not terms:
        return []
    issues = glossary.check(src, tgt, pair.src_lang, pair.tgt_lang).issues
    bad = {i.source_term.casefold() for i in issues if i.severity == "error"}
    return [(s, t) for s, t in terms if s.casefold() not in bad and t.casefold() in tgt.casefold()]


class FewShotMemory:
    """Fuzzy matches from the training split's own memory (never the query's own source), as the runtime finds
    them (``TranslationMemory.lookup`` with the pipeline's limit and threshold). On disk for a large split."""

    def __init__(self, config: DataConfig, path: str | Path = ":memory:"):
        from tower_cat.tm import TranslationMemory

        self.config = config
        self.path = path
        self.tm = TranslationMemory(path)
        self._buffer: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        self._buffered = 0

    def add(self, pair: Pair) -> None:
        self._buffer[(pair.src_lang, pair.tgt_lang)].append((pair.source, pair.target))
        self._buffered += 1
        if self._buffered >= 5000:
            self.flush()

    def flush(self) -> None:
        for (s, t), recs in self._buffer.items():
            self.tm.add_many(recs, s, t, origin="training")
        self._buffer.clear()
        self._buffered = 0

    def examples(self, pair: Pair, k: int) -> list[tuple[str, str]]:
        own = normalize_source(pair.source)
        out: list[tuple[str, str]] = []
        if k <= 0:
            return out
        for m in self.tm.lookup(pair.source, pair.src_lang, pair.tgt_lang, limit=k + 4,
                                min_score=self.config.fewshot_min_score):
            if normalize_source(m.source_text) == own or (m.source_text, m.target_text) in out:
                continue
            out.append((m.source_text, m.target_text))
            if len(out) >= k:
                break
        return out

    def close(self) -> None:
        self.tm.close()


def _chance(rate: float, rng: random.Random) -> int:
    """How many examples a rate gives: its integer part, plus one with the fractional part's probability."""
    n = int(rate)
    return n + (rng.random() < rate - n)


def _mix_key(context: bool, notes: bool, terms: bool, shots: bool) -> str:
    parts = [name for name, on in (("context", context), ("notes", notes), ("terms", terms), ("few-shot", shots))
             if on]
    return "+".join(parts) or "plain"


class Vocabulary:
    """A seeded reservoir of target words per language (wrong-word edits for synthetic post-editing drafts)."""

    def __init__(self, seed: int, size: int = 5000):
        self.rng = random.Random(seed + 7)
        self.size = size
        self.words: dict[str, list[str]] = defaultdict(list)
        self.seen: Counter = Counter()

    def add(self, lang: str, text: str) -> None:
        bucket = self.words[lang]
        for w in text.split():
            if not w.isalpha():
                continue
            self.seen[lang] += 1
            if len(bucket) < self.size:
                bucket.append(w)
            else:
                j = self.rng.randrange(self.seen[lang])
                if j < self.size:
                    bucket[j] = w


class SftBuilder:
    """Instruction examples in the runtime's prompt formats, one pair at a time, seeded and reproducible.

    Per training pair: `translate_rate` translation examples, of which `runtime_share` are built as
    ``tower-cat translate`` builds its prompt by default (``pipeline._add_prompt``/``build``: neighbouring
    sources as context, short-string notes, glossary terms and up to `fewshot_max` TM matches together —
    whatever of these the pair has) and the rest plain (notes on short strings at `notes_rate`); then
    few-shot-only, terms-only and context-only variants at their rates (the runtime sends such prompts when a
    job has no TM, no glossary, or its prompt had to be shortened), and post-editing examples.
    """

    def __init__(self, config: DataConfig, *, glossary=None, fewshot: FewShotMemory | None = None,
                 vocabulary: Vocabulary | None = None, draft_fn: DraftFn | None = None,
                 stats: DataStats | None = None, draft_chunk: int = 256):
        self.config, self.glossary, self.fewshot = config, glossary, fewshot
        self.vocabulary = vocabulary or Vocabulary(config.seed)
        self.draft_fn, self.draft_chunk = draft_fn, draft_chunk
        self.stats = stats if stats is not None else DataStats()
        self.rng = random.Random(config.seed)
        self.post_edit: list[tuple[Pair, list[tuple[str, str]]]] = []

    def _example(self, task: str, p: Pair, *, examples=(), terms=(), context=False, notes=()) -> SftExample:
        w = self.config.wording
        before, after = (p.context_before, p.context_after) if context else ((), ())
        msgs = prompts.translate_messages(p.source, p.src_lang, p.tgt_lang, wording=w, examples=examples,
                                          terms=terms, context_before=before, context_after=after, notes=notes)
        self.stats.mix[_mix_key(bool(before or after), bool(notes), bool(terms), bool(examples))] += 1
        return self._count(SftExample(task, msgs, p.target, p.src_lang, p.tgt_lang, p.source))

    def _count(self, ex: SftExample) -> SftExample:
        self.stats.tasks[ex.task] += 1
        self.stats.sft_chars += len(ex.messages[-1]["content"]) + len(ex.response)
        return ex

    def add(self, p: Pair) -> Iterator[SftExample]:
        c, rng, w = self.config, self.rng, self.config.wording
        terms = _glossary_terms(self.glossary, p)
        found: list[list[tuple[str, str]]] = []

        def shots() -> list[tuple[str, str]]:  # one TM search per pair, shared by its examples
            if not found:
                found.append(self.fewshot.examples(p, max(1, c.fewshot_max)) if self.fewshot is not None else [])
            return found[0]

        for _ in range(_chance(c.translate_rate, rng)):
            if rng.random() < c.runtime_share:
                runtime_ok = w != "base"
                yield self._example("runtime", p, examples=shots()[:c.fewshot_max], terms=terms,
                                    context=runtime_ok, notes=p.notes if runtime_ok else ())
            else:
                notes = p.notes if p.notes and w != "base" and rng.random() < c.notes_rate else ()
                yield self._example("translate", p, notes=notes)
        if self.fewshot is not None and c.fewshot_rate > 0 and _chance(c.fewshot_rate, rng):
            k = rng.randint(1, max(1, c.fewshot_max))
            with_terms = rng.random() < 0.3
            if shots():
                yield self._example("fewshot", p, examples=shots()[:k], terms=terms if with_terms else ())
        if terms and _chance(c.terms_rate, rng):
            yield self._example("terms", p, terms=terms)
        if (p.context_before or p.context_after) and w != "base" and _chance(c.context_rate, rng):
            yield self._example("context", p, context=True, notes=p.notes)
        if _chance(c.post_edit_rate, rng):
            self.post_edit.append((p, terms if rng.random() < 0.5 else []))
            if len(self.post_edit) >= self.draft_chunk:
                yield from self._post_edits()

    def _post_edits(self) -> Iterator[SftExample]:
        batch, self.post_edit = self.post_edit, []
        if not batch:
            return
        c = self.config
        drafts = self.draft_fn([p for p, _ in batch]) if self.draft_fn is not None else None
        for j, (p, terms) in enumerate(batch):
            if drafts is not None:
                draft = drafts[j]
            elif self.rng.random() < c.post_edit_keep_rate:
                draft = p.target
            else:
                draft = noisy_draft(p.target, random.Random(_hash_unit(c.seed, "pe", p.source, p.target)),
                                    self.vocabulary.words.get(p.tgt_lang, ()), p.source)
            yield self._count(SftExample("post_edit", prompts.post_edit_messages(
                p.source, draft, p.src_lang, p.tgt_lang, terms=terms, wording=c.wording),
                p.target, p.src_lang, p.tgt_lang, p.source))

    def finish(self) -> Iterator[SftExample]:
        yield from self._post_edits()


def build_sft(pairs: Sequence[Pair], config: DataConfig, *, glossary=None, draft_fn: DraftFn | None = None,
              stats: DataStats | None = None) -> list[SftExample]:
    """Instruction examples for an in-memory list of pairs (the few-shot memory is built from `pairs`)."""
    fewshot = None
    if config.fewshot_max > 0 and (config.fewshot_rate > 0 or (config.runtime_share > 0 and config.translate_rate > 0)):
        fewshot = FewShotMemory(config)
        for p in pairs:
            fewshot.add(p)
        fewshot.flush()
    vocab = Vocabulary(config.seed)
    for p in pairs:
        vocab.add(p.tgt_lang, p.target)
    builder = SftBuilder(config, glossary=glossary, fewshot=fewshot, vocabulary=vocab, draft_fn=draft_fn,
                         stats=stats)
    try:
        out = [e for p in pairs for e in builder.add(p)]
        out += list(builder.finish())
    finally:
        if fewshot is not None:
            fewshot.close()
    return out


# --------------------------------------------------------------------------------------------------------
# CPT corpus


def parallel_text(source: str, target: str, src_lang: str, tgt_lang: str, wording: str = "instruct") -> str:
    """A pair as Tower's continued pretraining saw it: '{Src}: …\\n{Tgt}: …' (tags removed)."""
    s, t = _names(src_lang, tgt_lang, wording)
    return f"{s}: {_plain(source)}\n{t}: {_plain(target)}"


def iter_mono(paths: Iterable[str | Path]) -> Iterator[str]:
    """Monolingual documents from text files: paragraphs separated by blank lines (a folder: its *.txt).
    Read line by line (a file of any size); a line that is not UTF-8 is an error naming file and line."""
    for path in paths:
        path = Path(path)
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        for f in files:
            try:
                fh = f.open("rb")
            except OSError as exc:
                raise DataError(f"cannot read monolingual text: {exc}", path=f) from None
            para: list[str] = []
            with fh:
                for line_no, raw in enumerate(fh, 1):
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise DataError(f"monolingual text is not UTF-8 ({exc.reason} at byte {exc.start})",
                                        path=f, line=line_no) from None
                    if line.strip():
                        para.append(line.rstrip("\r\n"))
                    elif para:
                        yield "\n".join(para).strip()
                        para = []
            if para:
                yield "\n".join(para).strip()


def read_mono(paths: Iterable[str | Path]) -> list[str]:
    return list(iter_mono(paths))


def _cpt_counts(n_par: int, n_mono: int, share: float) -> tuple[int, int]:
    """How many parallel / monolingual documents to keep for the `share` of parallel ones: the scarcer kind
    whole, the other sampled down."""
    share = min(max(share, 0.0), 1.0)
    if share >= 1 or not n_mono:
        return n_par, 0 if share >= 1 else n_mono
    if share <= 0 or not n_par:
        return 0 if share <= 0 else n_par, n_mono
    if n_par / (n_par + n_mono) > share:
        return min(n_par, round(share * n_mono / (1 - share))), n_mono
    return n_par, min(n_mono, round((1 - share) * n_par / share))


def _keep_mask(total: int, keep: int, rng) -> "Any":
    import numpy as np

    mask = np.zeros(total, dtype=bool)
    if keep >= total:
        mask[:] = True
    elif keep > 0:
        mask[rng.choice(total, keep, replace=False)] = True
    return mask


def build_cpt(pairs: Sequence[Pair], mono: Sequence[str] = (), config: DataConfig | None = None,
              stats: DataStats | None = None) -> list[CptDoc]:
    """Monolingual documents + parallel pairs in both directions, mixed to `config.parallel_share`
    (in memory; ``build_datasets`` does the same as a stream)."""
    import numpy as np

    config = config or DataConfig()
    parallel, monos = list(_parallel_docs(pairs, config)), [CptDoc(t, "mono") for t in mono]
    seen: set[int] = set()
    if config.tm_mono:
        for p in pairs:
            monos.extend(_tm_mono_docs(p, seen))
    n_par, n_mono = _cpt_counts(len(parallel), len(monos), config.parallel_share)
    rng = np.random.default_rng(config.seed + 1)
    keep_p, keep_m = _keep_mask(len(parallel), n_par, rng), _keep_mask(len(monos), n_mono, rng)
    chosen = [d for d, k in zip(parallel, keep_p) if k] + [d for d, k in zip(monos, keep_m) if k]
    random.Random(config.seed + 1).shuffle(chosen)
    if stats is not None:
        stats.cpt.update(d.kind for d in chosen)
        stats.cpt_chars = sum(len(d.text) for d in chosen)
    return chosen


def _parallel_docs(pairs: Iterable[Pair], config: DataConfig) -> Iterator[CptDoc]:
    for p in pairs:
        yield CptDoc(parallel_text(p.source, p.target, p.src_lang, p.tgt_lang, config.wording), "parallel",
                     p.direction)
        yield CptDoc(parallel_text(p.target, p.source, p.tgt_lang, p.src_lang, config.wording), "parallel",
                     f"{p.tgt_lang}-{p.src_lang}")


def _tm_mono_docs(p: Pair, seen: set[int]) -> Iterator[CptDoc]:
    for text, lang in ((p.source, p.src_lang), (p.target, p.tgt_lang)):
        plain = _plain(text)
        if len(plain.split()) >= 2:
            key = _hash64(plain)
            if key not in seen:
                seen.add(key)
                yield CptDoc(plain, "mono", lang)


# --------------------------------------------------------------------------------------------------------
# everything at once, as a stream into sharded Arrow files


def _schemas():
    import pyarrow as pa

    strings = pa.list_(pa.string())
    pair = pa.schema([("source", pa.string()), ("target", pa.string()), ("src_lang", pa.string()),
                      ("tgt_lang", pa.string()), ("origin", pa.string()), ("context_before", strings),
                      ("context_after", strings), ("notes", strings)])
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    sft = pa.schema([("task", pa.string()), ("messages", pa.list_(message)), ("src_lang", pa.string()),
                     ("tgt_lang", pa.string()), ("source", pa.string())])
    cpt = pa.schema([("text", pa.string()), ("kind", pa.string()), ("lang", pa.string())])
    return {"pair": pair, "sft": sft, "cpt": cpt}


def pair_from_row(r: dict[str, Any]) -> Pair:
    return Pair(r["source"], r["target"], r["src_lang"], r["tgt_lang"], r.get("origin") or "",
                tuple(r.get("context_before") or ()), tuple(r.get("context_after") or ()), tuple(r.get("notes") or ()))


def cpt_from_row(r: dict[str, Any]) -> CptDoc:
    return CptDoc(r["text"], r["kind"], r.get("lang") or "")


def open_datasets(directory: str | Path) -> Datasets:
    """The splits a `finetune data --out DIR` run wrote, memory-mapped (statistics from stats.json)."""
    from tower_cat.finetune.store import Rows

    directory = Path(directory)
    meta = json.loads((directory / "stats.json").read_text(encoding="utf-8"))
    s = meta["stats"]
    stats = DataStats(Counter(s["read"]), Counter(s["dropped"]), Counter(s["train"]), Counter(s["heldout"]),
                      Counter(s["tasks"]), Counter(s["cpt"]), s["cpt_chars"], s["sft_chars"], dict(s["tokens"]),
                      Counter(s.get("mix", {})))
    cfg = dict(meta["config"])
    cfg["targets"] = tuple(cfg.get("targets", ()))
    config = DataConfig(**{k: v for k, v in cfg.items() if k in DataConfig.__dataclass_fields__})
    return Datasets(Rows(directory / "train", pair_from_row), Rows(directory / "heldout", pair_from_row),
                    Rows(directory / "cpt", cpt_from_row), Rows(directory / "sft", SftExample.from_dict),
                    stats, config, directory)


class _TokenCounter:
    """Token counts for the statistics, tokenized in batches (never the whole corpus at once)."""

    def __init__(self, tokenizer, extra: int):
        self.tokenizer, self.extra = tokenizer, extra
        self.texts: list[str] = []
        self.total = 0

    def add(self, text: str) -> None:
        if self.tokenizer is None:
            return
        self.texts.append(text)
        if len(self.texts) >= 1000:
            self.flush()

    def flush(self) -> int:
        if self.texts:
            ids = self.tokenizer(self.texts, add_special_tokens=False)["input_ids"]
            self.total += sum(len(x) + self.extra for x in ids)
            self.texts = []
        return self.total


def build_datasets(tm_paths: Sequence[str | Path], mono_paths: Sequence[str | Path] = (),
                   config: DataConfig | None = None, *, glossary=None, draft_fn: DraftFn | None = None,
                   tokenizer=None, out_dir: str | Path | None = None, shard_rows: int = 200_000) -> Datasets:
    """Read, clean and split the memories; build the CPT corpus and the SFT examples from the training split.

    Everything streams: the memories are read once into a sharded Arrow scratch split, the held-out groups
    are chosen by hash on the way, and the train / heldout / cpt / sft splits are written shard by shard into
    OUT_DIR (a temporary folder when None, removed with the returned object). Memory grows only by the
    hashes kept for de-duplication and grouping (≈ 0.3 KB per pair as Python sets), not by the text.

    glossary: a ``tower_cat.terminology.Glossary`` (or a path) for terminology examples.
    draft_fn: post-editing drafts from a model (``model_drafts(engine)``); a seeded noise process otherwise.
    tokenizer: count tokens for the statistics.
    """
    import numpy as np

    from tower_cat.finetune.store import Rows, ShardWriter, iter_rows

    config = config or DataConfig()
    if config.wording == "auto":
        config = replace(config, wording="instruct")
    if config.source:
        _lang_ok(config.source)
    for t in config.targets:
        _lang_ok(t)
    if glossary is not None and not hasattr(glossary, "prompt_terms"):
        from tower_cat.terminology import Glossary

        glossary = Glossary.load(glossary, src_lang=config.source,
                                 tgt_lang=config.targets[0] if len(config.targets) == 1 else None)
    if out_dir is None:
        import tempfile
        import weakref

        out = Path(tempfile.mkdtemp(prefix="tower-cat-data-"))
    else:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
    work = out / ".work"
    if work.exists():
        shutil.rmtree(work)
    schemas = _schemas()
    stats = DataStats()
    langs_ok: set[str] = set()
    chooser = HeldoutChooser(config)

    # pass 1: read, clean, add context -> scratch pairs; held-out groups chosen on the way
    with ShardWriter(work / "pairs", schemas["pair"], shard_rows=shard_rows) as scratch:
        for pair in with_context(clean_pairs(read_pairs(tm_paths, config.source, config.targets), config, stats)):
            for lang in (pair.src_lang, pair.tgt_lang):
                if lang not in langs_ok:
                    langs_ok.add(_lang_ok(lang))
            chooser.add(pair.source)
            scratch.write(pair.to_dict())
    if not scratch.rows:
        shutil.rmtree(work, ignore_errors=True)
        raise DataError("no usable translation pairs in the memories "
                        f"(read {sum(stats.read.values())}, dropped {dict(stats.dropped)})",
                        hint="check the source/target languages match the files", param="data_languages")
    held = chooser.chosen()

    # pass 2: split; the few-shot memory, the draft vocabulary and the CPT candidates from the training side
    wants_shots = config.fewshot_max > 0 and (
        config.fewshot_rate > 0 or (config.runtime_share > 0 and config.translate_rate > 0))
    fewshot = FewShotMemory(config, work / "fewshot.sqlite") if wants_shots else None
    vocab = Vocabulary(config.seed)
    keep_share = 1.0 if config.fewshot_memory <= 0 else config.fewshot_memory / scratch.rows
    seen_mono: set[int] = set()
    try:
        with ShardWriter(out / "train", schemas["pair"], shard_rows=shard_rows) as train_w, \
                ShardWriter(out / "heldout", schemas["pair"], shard_rows=shard_rows) as held_w, \
                ShardWriter(work / "cpt-parallel", schemas["cpt"], shard_rows=shard_rows) as par_w, \
                ShardWriter(work / "cpt-mono", schemas["cpt"], shard_rows=shard_rows) as mono_w:
            for row in iter_rows(work / "pairs"):
                pair = pair_from_row(row)
                if normalize_source(pair.source) in held:
                    held_w.write(row)
                    stats.heldout[pair.direction] += 1
                    continue
                train_w.write(row)
                stats.train[pair.direction] += 1
                if fewshot is not None and (keep_share >= 1 or _hash_unit(config.seed, "fewshot", pair.source,
                                                                           pair.target) < keep_share):
                    fewshot.add(pair)
                vocab.add(pair.tgt_lang, pair.target)
                for doc in _parallel_docs((pair,), config):
                    par_w.write(doc.to_dict())
                if config.tm_mono:
                    for doc in _tm_mono_docs(pair, seen_mono):
                        mono_w.write(doc.to_dict())
            for text in iter_mono(mono_paths):
                mono_w.write(CptDoc(text, "mono").to_dict())
        seen_mono.clear()
        shutil.rmtree(work / "pairs")

        # the CPT mixture: exact counts, chosen by a seeded mask (8 bits per candidate)
        n_par, n_mono = _cpt_counts(par_w.rows, mono_w.rows, config.parallel_share)
        rng = np.random.default_rng(config.seed + 1)
        cpt_tokens = _TokenCounter(tokenizer, 2)
        with ShardWriter(out / "cpt", schemas["cpt"], shard_rows=shard_rows) as cpt_w:
            for part, total, keep in ((work / "cpt-parallel", par_w.rows, n_par), (work / "cpt-mono", mono_w.rows, n_mono)):
                mask = _keep_mask(total, keep, rng)
                for i, row in enumerate(iter_rows(part)):
                    if mask[i]:
                        cpt_w.write(row)
                        stats.cpt[row["kind"]] += 1
                        stats.cpt_chars += len(row["text"])
                        cpt_tokens.add(row["text"])
                shutil.rmtree(part)

        # pass 3: SFT examples from the training split
        if fewshot is not None:
            fewshot.flush()
        builder = SftBuilder(config, glossary=glossary, fewshot=fewshot, vocabulary=vocab, draft_fn=draft_fn,
                             stats=stats)
        sft_tokens = _TokenCounter(tokenizer, 1)
        with ShardWriter(out / "sft", schemas["sft"], shard_rows=shard_rows) as sft_w:
            def put(ex: SftExample) -> None:
                sft_w.write(ex.to_dict())
                sft_tokens.add(ex.response)

            for row in iter_rows(out / "train"):
                for ex in builder.add(pair_from_row(row)):
                    put(ex)
            for ex in builder.finish():
                put(ex)
    finally:
        if fewshot is not None:
            fewshot.close()
        shutil.rmtree(work, ignore_errors=True)
    if tokenizer is not None:
        stats.tokens["cpt"] = cpt_tokens.flush()
        stats.tokens["sft_answer"] = sft_tokens.flush()
    _write_stats(out, stats, config)
    write_jsonl((pair_from_row(r) for r in iter_rows(out / "heldout")), out / "heldout.jsonl")
    ds = Datasets(Rows(out / "train", pair_from_row), Rows(out / "heldout", pair_from_row),
                  Rows(out / "cpt", cpt_from_row), Rows(out / "sft", SftExample.from_dict), stats, config, out)
    if out_dir is None:
        weakref.finalize(ds, shutil.rmtree, str(out), True)
    return ds


def _write_stats(out: Path, stats: DataStats, config: DataConfig) -> Path:
    path = out / "stats.json"
    path.write_text(json.dumps({"stats": stats.to_dict(), "config": config.to_dict()}, indent=2,
                               ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_jsonl(rows: Iterable[Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row.to_dict() if hasattr(row, "to_dict") else row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def save_datasets(ds: Datasets, out_dir: str | Path) -> dict[str, Path]:
    """The splits (Arrow shard folders train/ heldout/ cpt/ sft/), heldout.jsonl and stats.json in out_dir
    (copied when the datasets were built elsewhere)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    same = ds.directory is not None and ds.directory.resolve() == out.resolve()
    paths: dict[str, Path] = {}
    for name in SPLITS:
        if not same:
            src = ds.directory / name
            if (out / name).exists():
                shutil.rmtree(out / name)
            shutil.copytree(src, out / name)
        paths[name] = out / name
    if not same:
        shutil.copy2(ds.directory / "heldout.jsonl", out / "heldout.jsonl")
    paths["heldout.jsonl"] = out / "heldout.jsonl"
    paths["stats"] = _write_stats(out, ds.stats, ds.config)
    return paths


def load_pairs(path: str | Path) -> list[Pair]:
    """Pairs from a .jsonl file or a split folder (``OUT/data/train``)."""
    from tower_cat.finetune.store import is_split, iter_rows

    path = Path(path)
    if is_split(path):
        return [pair_from_row(r) for r in iter_rows(path)]
    rows = read_jsonl(path)
    return [pair_from_row(r) for r in rows]


def stats_table(stats: DataStats, title: str = "fine-tuning data"):
    """A rich Table of the statistics."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for d, n in sorted(stats.read.items()):
        table.add_row(f"pairs read {d}", str(n))
    for reason, n in sorted(stats.dropped.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  dropped: {reason}", str(n))
    for d, n in sorted(stats.train.items()):
        table.add_row(f"train pairs {d}", str(n))
    for d, n in sorted(stats.heldout.items()):
        table.add_row(f"held-out pairs {d}", str(n))
    for kind, n in sorted(stats.cpt.items()):
        table.add_row(f"CPT documents: {kind}", str(n))
    for task in TASKS:
        if stats.tasks.get(task):
            table.add_row(f"SFT examples: {task}", str(stats.tasks[task]))
    prompts_total = sum(stats.mix.values())
    for combo, n in sorted(stats.mix.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  translation prompts with {combo}", f"{n} ({100 * n / max(1, prompts_total):.0f} %)")
    table.add_row("CPT characters", str(stats.cpt_chars))
    table.add_row("SFT prompt+answer characters", str(stats.sft_chars))
    for k, n in stats.tokens.items():
        table.add_row(f"tokens: {k}", str(n))
    return table
