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
import unicodedata
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from tower_cat import codes as codes_mod
from tower_cat import prompts
from tower_cat.document import Segment
from tower_cat import errors
from tower_cat.errors import TowerCatError
from tower_cat.languages import language_name

TASKS = ("translate", "fewshot", "terms", "context", "post_edit")


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
        d = asdict(self)
        d["context_before"], d["context_after"] = list(self.context_before), list(self.context_after)
        d["notes"] = list(self.notes)
        return d


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
        msgs = list(d["messages"])
        return cls(d.get("task", "translate"), msgs[:-1], msgs[-1]["content"], d.get("src_lang", ""),
                   d.get("tgt_lang", ""), d.get("source", ""))


@dataclass
class CptDoc:
    """One continued-pretraining document: plain text, trained on every token."""

    text: str
    kind: str  # "mono" | "parallel"
    lang: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    fewshot_rate: float = 0.4
    fewshot_max: int = 3                   # the pipeline's default --few-shot
    fewshot_min_score: float = 70.0        # the pipeline's default --fuzzy-min
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

    def to_dict(self) -> dict[str, Any]:
        return {"read": dict(self.read), "dropped": dict(self.dropped), "train": dict(self.train),
                "heldout": dict(self.heldout), "tasks": dict(self.tasks), "cpt": dict(self.cpt),
                "cpt_chars": self.cpt_chars, "sft_chars": self.sft_chars, "tokens": dict(self.tokens)}


@dataclass
class Datasets:
    train: list[Pair]
    heldout: list[Pair]
    cpt: list[CptDoc]
    sft: list[SftExample]
    stats: DataStats
    config: DataConfig


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
                        hint="pass --source and --target")
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


def read_mono(paths: Iterable[str | Path]) -> list[str]:
    """Monolingual documents from text files: paragraphs separated by blank lines (a folder: its *.txt)."""
    docs: list[str] = []
    for path in paths:
        path = Path(path)
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"cannot read monolingual text: {exc}", path=f) from None
            for para in re.split(r"\n\s*\n", text):
                para = para.strip()
                if para:
                    docs.append(para)
    return docs


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
            raise ValueError(f"target code {part.key} is not in the source")
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


def clean_pairs(raw: Iterable[RawPair], config: DataConfig, stats: DataStats) -> list[tuple[Pair, RawPair]]:
    """Drop what should not be trained on; count every reason in ``stats.dropped``."""
    seen: set[tuple[str, str, str, str]] = set()
    out: list[tuple[Pair, RawPair]] = []
    for rp in raw:
        stats.read[f"{rp.src_lang}-{rp.tgt_lang}"] += 1
        src_plain, tgt_plain = _plain(rp.source.text), _plain(rp.target.text)
        if not src_plain or not tgt_plain:
            stats.dropped["empty"] += 1
            continue
        if codes_mod.check(rp.source, rp.target):
            stats.dropped["code mismatch"] += 1
            continue
        try:
            src, tgt = render_pair(rp.source, rp.target)
        except ValueError:
            stats.dropped["code mismatch"] += 1
            continue
        if max(len(src), len(tgt)) > config.max_chars:
            stats.dropped["too long"] += 1
            continue
        key = (rp.src_lang, rp.tgt_lang, " ".join(src.split()), " ".join(tgt.split()))
        if key in seen:
            stats.dropped["duplicate"] += 1
            continue
        seen.add(key)
        if config.drop_identical and src_plain.casefold() == tgt_plain.casefold() and any(
                c.isalpha() for c in src_plain):
            stats.dropped["identical source/target"] += 1
            continue
        longer, shorter = max(len(src_plain), len(tgt_plain)), max(1, min(len(src_plain), len(tgt_plain)))
        if longer >= config.ratio_min_chars and longer / shorter > config.max_ratio:
            stats.dropped["length ratio"] += 1
            continue
        bad_script = False
        for text, lang in ((src, rp.src_lang), (tgt, rp.tgt_lang)):
            share = _script_share(text, lang)
            if share is not None and share < config.min_script_share:
                bad_script = True
        if bad_script:
            stats.dropped["wrong script for language tag"] += 1
            continue
        notes = rp.notes if len(rp.source.text.split()) <= config.short_words else ()
        out.append((Pair(src, tgt, rp.src_lang, rp.tgt_lang, rp.origin, notes=notes), rp))
    return out


def _add_context(items: list[tuple[Pair, RawPair]]) -> list[Pair]:
    """Neighbouring sources (file order, plain text as the pipeline gives them) as context_before / _after."""
    by_file: dict[str, dict[int, str]] = defaultdict(dict)
    for pair, rp in items:
        by_file[rp.file].setdefault(rp.position, rp.source.text.strip())
    out = []
    for pair, rp in items:
        sources = by_file[rp.file]
        before = sources.get(rp.position - 1)
        after = sources.get(rp.position + 1)
        out.append(Pair(pair.source, pair.target, pair.src_lang, pair.tgt_lang, pair.origin,
                        (before,) if before else (), (after,) if after else (), pair.notes))
    return out


def _hash_unit(*parts: Any) -> float:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2 ** 64


def split_heldout(pairs: Sequence[Pair], config: DataConfig) -> tuple[list[Pair], list[Pair]]:
    """(train, heldout): whole source groups go to one side, chosen by a seeded hash (stable across runs)."""
    groups: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        groups[normalize_source(p.source)].append(p)
    eligible = sorted((k for k in groups if len(k.split()) >= config.heldout_min_words),
                      key=lambda k: _hash_unit(config.seed, "heldout", k))
    if config.heldout <= 0:
        n = 0
    elif config.heldout < 1:
        n = max(1, round(config.heldout * len(groups)))
    else:
        n = int(config.heldout)
    n = min(n, config.heldout_max, len(eligible), max(0, len(groups) - 1))
    held = set(eligible[:n])
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


class _FewShot:
    """Fuzzy matches from the training split's own memory (never the query's own source)."""

    def __init__(self, pairs: Sequence[Pair], config: DataConfig):
        from tower_cat.tm import TranslationMemory

        self.config = config
        self.tm = TranslationMemory(":memory:")
        by_dir: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for p in pairs:
            by_dir[(p.src_lang, p.tgt_lang)].append((p.source, p.target))
        for (s, t), recs in by_dir.items():
            self.tm.add_many(recs, s, t, origin="training")

    def examples(self, pair: Pair, k: int) -> list[tuple[str, str]]:
        own = normalize_source(pair.source)
        out = []
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


def build_sft(pairs: Sequence[Pair], config: DataConfig, *, glossary=None, draft_fn: DraftFn | None = None,
              stats: DataStats | None = None) -> list[SftExample]:
    """Instruction examples in the runtime's prompt formats, seeded and reproducible."""
    rng = random.Random(config.seed)
    w = config.wording
    out: list[SftExample] = []
    vocab_by_lang: dict[str, list[str]] = defaultdict(list)
    for p in pairs:
        vocab_by_lang[p.tgt_lang].extend(x for x in p.target.split() if x.isalpha())
    fewshot = _FewShot(pairs, config) if config.fewshot_rate > 0 else None
    post_edit: list[tuple[Pair, list[tuple[str, str]]]] = []
    try:
        for p in pairs:
            terms = _glossary_terms(glossary, p)
            for _ in range(_chance(config.translate_rate, rng)):
                notes = p.notes if p.notes and w != "base" and rng.random() < config.notes_rate else ()
                out.append(SftExample("translate", prompts.translate_messages(p.source, p.src_lang, p.tgt_lang,
                                                                              wording=w, notes=notes),
                                      p.target, p.src_lang, p.tgt_lang, p.source))
            if fewshot is not None and _chance(config.fewshot_rate, rng):
                shots = fewshot.examples(p, rng.randint(1, max(1, config.fewshot_max)))
                if shots:
                    out.append(SftExample("fewshot", prompts.translate_messages(
                        p.source, p.src_lang, p.tgt_lang, wording=w, examples=shots, terms=terms if rng.random() < 0.3 else ()),
                        p.target, p.src_lang, p.tgt_lang, p.source))
            if terms and _chance(config.terms_rate, rng):
                out.append(SftExample("terms", prompts.translate_messages(p.source, p.src_lang, p.tgt_lang, wording=w,
                                                                          terms=terms),
                                      p.target, p.src_lang, p.tgt_lang, p.source))
            if (p.context_before or p.context_after) and w != "base" and _chance(config.context_rate, rng):
                out.append(SftExample("context", prompts.translate_messages(
                    p.source, p.src_lang, p.tgt_lang, wording=w, context_before=p.context_before,
                    context_after=p.context_after, notes=p.notes), p.target, p.src_lang, p.tgt_lang, p.source))
            if _chance(config.post_edit_rate, rng):
                post_edit.append((p, terms if rng.random() < 0.5 else []))
    finally:
        if fewshot is not None:
            fewshot.close()

    if post_edit:
        drafts = draft_fn([p for p, _ in post_edit]) if draft_fn is not None else None
        for j, (p, terms) in enumerate(post_edit):
            if drafts is not None:
                draft = drafts[j]
            elif rng.random() < config.post_edit_keep_rate:
                draft = p.target
            else:
                draft = noisy_draft(p.target, random.Random(_hash_unit(config.seed, "pe", p.source, p.target)),
                                    vocab_by_lang[p.tgt_lang], p.source)
            out.append(SftExample("post_edit", prompts.post_edit_messages(p.source, draft, p.src_lang, p.tgt_lang,
                                                                          terms=terms, wording=w),
                                  p.target, p.src_lang, p.tgt_lang, p.source))
    rng.shuffle(out)
    if stats is not None:
        stats.tasks.update(e.task for e in out)
        stats.sft_chars = sum(len(e.messages[-1]["content"]) + len(e.response) for e in out)
    return out


# --------------------------------------------------------------------------------------------------------
# CPT corpus


def parallel_text(source: str, target: str, src_lang: str, tgt_lang: str, wording: str = "instruct") -> str:
    """A pair as Tower's continued pretraining saw it: '{Src}: …\\n{Tgt}: …' (tags removed)."""
    s, t = _names(src_lang, tgt_lang, wording)
    return f"{s}: {_plain(source)}\n{t}: {_plain(target)}"


def build_cpt(pairs: Sequence[Pair], mono: Sequence[str] = (), config: DataConfig | None = None,
              stats: DataStats | None = None) -> list[CptDoc]:
    """Monolingual documents + parallel pairs in both directions, mixed to `config.parallel_share`.

    The scarcer kind is kept whole and the other sampled down (seeded) to reach the share.
    """
    config = config or DataConfig()
    rng = random.Random(config.seed + 1)
    parallel: list[CptDoc] = []
    for p in pairs:
        parallel.append(CptDoc(parallel_text(p.source, p.target, p.src_lang, p.tgt_lang, config.wording),
                               "parallel", p.direction))
        parallel.append(CptDoc(parallel_text(p.target, p.source, p.tgt_lang, p.src_lang, config.wording),
                               "parallel", f"{p.tgt_lang}-{p.src_lang}"))
    monos = [CptDoc(t, "mono") for t in mono]
    if config.tm_mono:
        seen: set[str] = set()
        for p in pairs:
            for text, lang in ((p.source, p.src_lang), (p.target, p.tgt_lang)):
                plain = _plain(text)
                if plain not in seen and len(plain.split()) >= 2:
                    seen.add(plain)
                    monos.append(CptDoc(plain, "mono", lang))
    share = min(max(config.parallel_share, 0.0), 1.0)
    if share >= 1 or not monos:
        chosen = parallel
    elif share <= 0 or not parallel:
        chosen = monos
    else:
        n_par, n_mono = len(parallel), len(monos)
        if n_par / (n_par + n_mono) > share:
            n_par = min(n_par, round(share * n_mono / (1 - share)))
        else:
            n_mono = min(n_mono, round((1 - share) * n_par / share))
        chosen = rng.sample(parallel, n_par) + rng.sample(monos, n_mono)
    rng.shuffle(chosen)
    if stats is not None:
        stats.cpt.update(d.kind for d in chosen)
        stats.cpt_chars = sum(len(d.text) for d in chosen)
    return chosen


# --------------------------------------------------------------------------------------------------------
# everything at once


def build_datasets(tm_paths: Sequence[str | Path], mono_paths: Sequence[str | Path] = (),
                   config: DataConfig | None = None, *, glossary=None, draft_fn: DraftFn | None = None,
                   tokenizer=None) -> Datasets:
    """Read, clean and split the memories; build the CPT corpus and the SFT examples from the training split.

    glossary: a ``tower_cat.terminology.Glossary`` (or a path) for terminology examples.
    draft_fn: post-editing drafts from a model (``model_drafts(engine)``); a seeded noise process otherwise.
    tokenizer: count tokens for the statistics.
    """
    config = config or DataConfig()
    if config.wording == "auto":
        from dataclasses import replace

        config = replace(config, wording="instruct")
    if config.source:
        _lang_ok(config.source)
    for t in config.targets:
        _lang_ok(t)
    if glossary is not None and not hasattr(glossary, "prompt_terms"):
        from tower_cat.terminology import Glossary

        glossary = Glossary.load(glossary, src_lang=config.source,
                                 tgt_lang=config.targets[0] if len(config.targets) == 1 else None)
    stats = DataStats()
    items = clean_pairs(read_pairs(tm_paths, config.source, config.targets), config, stats)
    if not items:
        raise DataError("no usable translation pairs in the memories "
                        f"(read {sum(stats.read.values())}, dropped {dict(stats.dropped)})",
                        hint="check --source/--target match the languages in the files")
    for _, rp in items:
        _lang_ok(rp.src_lang), _lang_ok(rp.tgt_lang)
    pairs = _add_context(items)
    train, heldout = split_heldout(pairs, config)
    stats.train.update(p.direction for p in train)
    stats.heldout.update(p.direction for p in heldout)
    mono = read_mono(mono_paths) if mono_paths else []
    cpt = build_cpt(train, mono, config, stats)
    sft = build_sft(train, config, glossary=glossary, draft_fn=draft_fn, stats=stats)
    if tokenizer is not None:
        stats.tokens["cpt"] = sum(len(tokenizer(d.text, add_special_tokens=False)["input_ids"]) + 2 for d in cpt)
        stats.tokens["sft_answer"] = sum(len(tokenizer(e.response, add_special_tokens=False)["input_ids"]) + 1
                                         for e in sft)
    return Datasets(train, heldout, cpt, sft, stats, config)


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
    """train.jsonl / heldout.jsonl (pairs), cpt.jsonl, sft.jsonl, stats.json in out_dir."""
    out = Path(out_dir)
    paths = {"train": write_jsonl(ds.train, out / "train.jsonl"),
             "heldout": write_jsonl(ds.heldout, out / "heldout.jsonl"),
             "cpt": write_jsonl(ds.cpt, out / "cpt.jsonl"),
             "sft": write_jsonl(ds.sft, out / "sft.jsonl")}
    stats = out / "stats.json"
    stats.write_text(json.dumps({"stats": ds.stats.to_dict(), "config": ds.config.to_dict()}, indent=2,
                                ensure_ascii=False) + "\n", encoding="utf-8")
    paths["stats"] = stats
    return paths


def load_pairs(path: str | Path) -> list[Pair]:
    rows = read_jsonl(path)
    return [Pair(r["source"], r["target"], r["src_lang"], r["tgt_lang"], r.get("origin", ""),
                 tuple(r.get("context_before", ())), tuple(r.get("context_after", ())), tuple(r.get("notes", ())))
            for r in rows]


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
    table.add_row("CPT characters", str(stats.cpt_chars))
    table.add_row("SFT prompt+answer characters", str(stats.sft_chars))
    for k, n in stats.tokens.items():
        table.add_row(f"tokens: {k}", str(n))
    return table
