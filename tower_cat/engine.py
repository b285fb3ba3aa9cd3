"""The inference engine: Tower-family models on CTranslate2 (or Hugging Face transformers), nothing about files.

One class, `Engine`, around a model directory made by `tower-cat convert`. It turns prompts (chat messages or
raw text) into token lists with the tokenizer's own chat template — exactly one BOS — and generates with the
family's end tokens. Work is deduplicated, batched by length under a token budget, and results are kept in a
SQLite cache keyed by model fingerprint + prompt, so a re-run or an interrupted job only generates what is
missing. The CTranslate2 generator is loaded lazily: a fully cached run never loads the weights.

Llama/Mistral (TowerInstruct) and Qwen2 (Tower+ 72B) on CT2 reproduce Hugging Face exactly in float32 (tested).
Gemma 2 (Tower+ 2B/9B) does not: CT2 implements neither its logit soft-capping nor its sliding window, so
greedy output can drift (above all past 4096 tokens) and scores are approximate; loading one warns, and
backend="transformers" runs the exact model. Seq2seq models (Marian, NLLB, M2M-100) run on ct2.Translator.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
import warnings
import weakref
from dataclasses import asdict, dataclass, replace as _replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, Union

from tower_cat.convert import BASE, BAYLING, SEQ2SEQ, ModelInfo, inspect_model
from tower_cat.devices import (BatchBudget, DeviceFacts, ModelFacts, choose_batch_budget,
                               choose_compute_type, cpu_cores, hf_model_facts, probe_device, read_ct2_model_facts)
from tower_cat.errors import InvalidArgument, ModelError, TowerCatError

if TYPE_CHECKING:  # the remote backend is imported only when used
    from tower_cat.engine_remote import RemoteOptions

log = logging.getLogger(__name__)

Message = Mapping[str, str]


@dataclass(frozen=True)
class SourceText:
    """Input of a seq2seq model (NLLB, M2M-100, Marian): the text and, where the model needs them, languages."""

    text: str
    source_lang: str | None = None
    target_lang: str | None = None


Prompt = Union[str, Sequence[Message], SourceText]  # raw text, chat messages, or a seq2seq source

BACKENDS = ("ct2", "transformers", "openai")  # openai: a remote server (tower_cat.engine_remote)


@dataclass(frozen=True)
class GenerationOptions:
    """How to decode. Greedy by default; beam, sampling and n-best are there for reranking."""

    max_new_tokens: int = 512          # hard cap on new tokens per prompt
    min_new_tokens: int = 0
    length_ratio: float = 3.0          # with `sources`: budget = ratio * source tokens + length_extra
    length_extra: int = 16
    beam_size: int = 1
    num_hypotheses: int = 1
    length_penalty: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    sampling_topk: int = 1             # 1 = greedy; 0 = whole vocabulary
    sampling_topp: float = 1.0
    sampling_temperature: float = 1.0
    end_tokens: tuple[str, ...] | None = None  # None: the family's end tokens (sidecar)
    max_batch_tokens: int | None = None  # padded prompt + new tokens per batch; None: Engine.batch_budget
    max_batch_size: int | None = None    # prompts per batch; None: Engine.batch_budget
    use_cache: bool = True

    @property
    def sampling(self) -> bool:
        return self.sampling_topk != 1

    def decoding_key(self) -> dict[str, Any]:
        """The fields that change a result (not batching or caching)."""
        skip = {"max_batch_tokens", "max_batch_size", "use_cache", "max_new_tokens", "length_ratio",
                "length_extra"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


@dataclass(frozen=True)
class Hypothesis:
    text: str
    tokens: tuple[str, ...]            # generated tokens, end token excluded
    log_prob: float | None             # mean log-prob per generated token (end token included)
    truncated: bool                    # stopped by the token budget, not by an end token


@dataclass(frozen=True)
class Generation:
    """Result for one prompt: the best hypothesis first; `cached` when it came from the SQLite cache."""

    hypotheses: tuple[Hypothesis, ...]
    cached: bool = False

    @property
    def text(self) -> str:
        return self.hypotheses[0].text

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.hypotheses[0].tokens

    @property
    def log_prob(self) -> float | None:
        return self.hypotheses[0].log_prob

    @property
    def truncated(self) -> bool:
        return self.hypotheses[0].truncated


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    tokens: tuple[str, ...]
    ids: tuple[int, ...]
    target_prefix: tuple[str, ...] = ()  # seq2seq: forced first target tokens (NLLB/M2M language code)


@dataclass(frozen=True)
class TokenEvent:
    """One streamed token; `text` is the new text it adds (may be empty mid-character)."""

    token: str
    token_id: int
    text: str
    log_prob: float | None


@dataclass
class EngineStats:
    """Counters (not timings) that tests and reports read."""

    generator_loads: int = 0
    prompts_requested: int = 0
    prompts_generated: int = 0        # distinct prompts sent to the model
    cache_hits: int = 0
    batches: int = 0
    prompt_tokens: int = 0            # prompt tokens of the generated prompts
    padded_prompt_tokens: int = 0     # batch width x prompts, summed: prompt_tokens / this = how full batches were


# --------------------------------------------------------------------------------------------------------
# Device and compute type


def resolve_device(device: str | int | Sequence[int] = "auto", backend: str = "ct2") -> tuple[str, list[int]]:
    """'auto' | 'cpu' | 'cuda' | 'cuda:1' | [0, 1] -> (device, device indices)."""
    if isinstance(device, int):
        return "cuda", [device]
    if not isinstance(device, str):
        indices = [int(i) for i in device]
        if not indices:
            raise ModelError("an empty list of GPUs was given", hint="pass e.g. device='cuda' or [0, 1]", param="device_list")
        return "cuda", indices
    device = device.strip().lower()
    if device == "auto":
        return ("cuda", [0]) if _cuda_count(backend) > 0 else ("cpu", [0])
    if device.startswith("cuda"):
        if _cuda_count(backend) == 0:
            raise ModelError("CUDA was requested but no GPU is visible", hint="use device='cpu'", param="device")
        _, _, rest = device.partition(":")
        return "cuda", [int(i) for i in rest.split(",")] if rest else [0]
    if device == "cpu":
        return "cpu", [0]
    if all(part.strip().isdigit() for part in device.split(",")):
        return resolve_device([int(p) for p in device.split(",")], backend)
    raise ModelError(f"unknown device {device!r}", hint="use auto, cpu, cuda, cuda:1 or a list like 0,1")


def _cuda_count(backend: str) -> int:
    if backend == "transformers":
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    import ctranslate2

    return ctranslate2.get_cuda_device_count()


def auto_compute_type(device: str, device_index: int = 0, model: ModelFacts | None = None,
                      backend: str = "ct2", replicas: int = 1) -> str:
    """The default compute type for this device (see :func:`tower_cat.devices.choose_compute_type`): int8 on
    the CPU; on a GPU the fastest measured type whose weights fit (bfloat16 where supported), int8 only when
    memory demands it."""
    return choose_compute_type(probe_device(device, [device_index], backend), model, replicas).value


def default_threads() -> int:
    return cpu_cores()


def cpu_layout(threads: int | None, replicas: int | None, backend: str = "ct2") -> tuple[int, int]:
    """(threads per replica, replicas) on the CPU. With neither given, CTranslate2 gets one single-threaded
    replica per core and the engine splits work so every replica decodes its own batch: measured on the 2-core
    development machine, that is 1.8x the tokens/s of one 2-thread replica at batch 16 and faster at batch 1
    too (small per-step GEMMs pay more for thread synchronisation than they gain). Given ``replicas`` alone:
    that many single-threaded replicas; ``threads`` alone: one replica with that many threads (the latency
    set-up for a big model on many cores)."""
    if backend != "ct2":  # PyTorch: one model, intra-op threads
        return threads or default_threads(), 1
    if threads is None and replicas is None:
        return 1, default_threads()
    return threads or 1, replicas or 1


def _file_digest(path: Path, h) -> None:
    """Size + first and last MiB: content-based, but cheap for 15 GB weight files."""
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())


def model_fingerprint(directory: Path, weight_files: Sequence[str]) -> str:
    h = hashlib.sha256()
    for name in sorted(set(weight_files) | {"config.json", "vocabulary.json", "tokenizer.json",
                                            "tokenizer_config.json", "chat_template.jinja"}):
        path = directory / name
        if path.is_file():
            _file_digest(path, h)
    return h.hexdigest()[:32]


# --------------------------------------------------------------------------------------------------------
# Cache


class GenerationCache:
    """SQLite store of finished generations; committed per batch so an interrupted job keeps its work."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
            with self._lock:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
                                 " created REAL NOT NULL)")
                self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> TowerCatError:
        """One line naming the cache file: it cannot be created, is not a database, is locked or read-only."""
        if isinstance(exc, OSError) and exc.strerror:
            reason = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
        else:
            reason = str(exc)
        return TowerCatError(f"the generation cache cannot be used: {reason}", path=self.path, param="cache",
                             hint="give a writable cache file, or run without the cache")

    def get_many(self, keys: Sequence[str]) -> dict[str, tuple[Hypothesis, ...]]:
        found: dict[str, tuple[Hypothesis, ...]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(
                        f"SELECT key, value FROM generations WHERE key IN ({marks})", chunk):
                    found[key] = tuple(Hypothesis(h["text"], tuple(h["tokens"]), h["log_prob"], h["truncated"])
                                       for h in json.loads(value))
        return found

    def put_many(self, items: Mapping[str, tuple[Hypothesis, ...]]) -> None:
        now = time.time()
        rows = [(key, json.dumps([asdict(h) for h in hyps], ensure_ascii=False), now)
                for key, hyps in items.items()]
        with self._lock:
            try:
                self._db.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?, ?)", rows)
                self._db.commit()
            except sqlite3.Error as exc:
                self._db.rollback()
                raise self._error(exc) from None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------------------------------------
# Backends: token lists in, token lists out. The Engine does everything else.


def _need_cublas() -> None:
    """CTranslate2's wheel needs libcublas.so.12 on a GPU; find it (system or the nvidia-cublas-cu12 wheel) or
    say how to get it, instead of CTranslate2's bare 'cannot load libcublas' at the first batch."""
    from tower_cat.devices import CUBLAS, load_cublas

    where, tried = load_cublas()
    if where is None:
        raise ModelError(f"CTranslate2 needs {CUBLAS} on a GPU and it cannot be loaded ({tried})",
                         hint="pip install nvidia-cublas-cu12 (tower-cat loads it from there), or install the "
                              "CUDA 12 runtime; `tower-cat doctor` shows what is found")
    log.debug("%s: %s", CUBLAS, where)


@dataclass
class _RawHyp:
    tokens: list[str]      # end token included when the model produced one
    log_prob: float | None


class _CT2Backend:
    name = "ct2"

    def __init__(self, path: Path, device: str, device_index: list[int], compute_type: str, threads: int,
                 replicas: int, seed: int | None):
        import ctranslate2

        if seed is not None:  # CT2 seeds its worker threads when they start, not per call
            ctranslate2.set_random_seed(seed)
        if device == "cuda":
            _need_cublas()
        self.generator = ctranslate2.Generator(str(path), device=device, device_index=device_index,
                                               compute_type=compute_type, intra_threads=threads,
                                               inter_threads=replicas)
        self.parallel = max(1, len(device_index) * replicas)

    @staticmethod
    def _kwargs(opts: GenerationOptions, max_new: int, end_tokens: list[str]) -> dict[str, Any]:
        return dict(beam_size=opts.beam_size, num_hypotheses=opts.num_hypotheses,
                    length_penalty=opts.length_penalty, repetition_penalty=opts.repetition_penalty,
                    no_repeat_ngram_size=opts.no_repeat_ngram_size, sampling_topk=opts.sampling_topk,
                    sampling_topp=opts.sampling_topp, sampling_temperature=opts.sampling_temperature,
                    end_token=end_tokens, max_length=max_new, min_length=min(opts.min_new_tokens, max_new))

    def generate(self, batches: list[list[RenderedPrompt]], opts: GenerationOptions, max_news: list[int],
                 end_tokens: list[str], max_batch_tokens: int) -> Iterator[list[list[_RawHyp]]]:
        """Submit batches asynchronously (so every replica works) and yield their results in order."""
        window = 2 * self.parallel
        pending: list[list] = []
        submitted = 0
        for i in range(len(batches)):
            while submitted < len(batches) and submitted < i + window:
                pending.append(self.generator.generate_batch(
                    [list(r.tokens) for r in batches[submitted]], asynchronous=True, include_prompt_in_result=False, return_scores=True,
                    return_end_token=True, max_batch_size=max_batch_tokens, batch_type="tokens",
                    **self._kwargs(opts, max_news[submitted], end_tokens)))
                submitted += 1
            results = pending.pop(0)
            yield [[_RawHyp(list(seq), score) for seq, score in
                    zip(r.result().sequences, r.result().scores or [None] * len(r.result().sequences))]
                   for r in results]

    def score(self, batch: list[list[str]]) -> list[list[float]]:
        return [list(r.log_probs) for r in self.generator.score_batch(batch, max_input_length=0)]

    def stream(self, tokens: list[str], opts: GenerationOptions, max_new: int,
               end_tokens: list[str]) -> Iterator[tuple[str, int, float | None]]:
        kwargs = self._kwargs(opts, max_new, end_tokens)
        for key in ("beam_size", "num_hypotheses", "length_penalty"):
            kwargs.pop(key)
        steps = self.generator.generate_tokens(tokens, return_log_prob=True, **kwargs)
        try:
            for step in steps:
                yield step.token, step.token_id, step.log_prob
        finally:
            steps.close()  # stops the decoding thread; breaking out of the loop alone does not


class _CT2TranslatorBackend:
    """Seq2seq models (NLLB, M2M-100, Marian) on ctranslate2.Translator."""

    name = "ct2"

    def __init__(self, path: Path, device: str, device_index: list[int], compute_type: str, threads: int,
                 replicas: int, seed: int | None):
        import ctranslate2

        if seed is not None:
            ctranslate2.set_random_seed(seed)
        if device == "cuda":
            _need_cublas()
        self.translator = ctranslate2.Translator(str(path), device=device, device_index=device_index,
                                                 compute_type=compute_type, intra_threads=threads,
                                                 inter_threads=replicas)
        self.parallel = max(1, len(device_index) * replicas)

    @staticmethod
    def _kwargs(opts: GenerationOptions, max_new: int, end_tokens: list[str], prefix_len: int) -> dict[str, Any]:
        # Translator defaults bite (beam 2, 256 tokens): set everything explicitly.
        return dict(beam_size=opts.beam_size, num_hypotheses=opts.num_hypotheses,
                    length_penalty=opts.length_penalty, repetition_penalty=opts.repetition_penalty,
                    no_repeat_ngram_size=opts.no_repeat_ngram_size, sampling_topk=opts.sampling_topk,
                    sampling_topp=opts.sampling_topp, sampling_temperature=opts.sampling_temperature,
                    end_token=end_tokens, max_decoding_length=max_new + prefix_len,
                    min_decoding_length=min(opts.min_new_tokens, max_new) + prefix_len, max_input_length=0)

    def generate(self, batches, opts: GenerationOptions, max_news: list[int], end_tokens: list[str],
                 max_batch_tokens: int) -> Iterator[list[list[_RawHyp]]]:
        for batch, max_new in zip(batches, max_news):
            prefixes = [list(r.target_prefix) or None for r in batch]
            width = max(len(r.target_prefix) for r in batch)
            results = self.translator.translate_batch(
                [list(r.tokens) for r in batch], prefixes, return_scores=True, return_end_token=True,
                **self._kwargs(opts, max_new, end_tokens, width))
            yield [[_RawHyp(list(h)[len(r.target_prefix):], s)
                    for h, s in zip(res.hypotheses, res.scores or [None] * len(res.hypotheses))]
                   for r, res in zip(batch, results)]

    def score(self, batch):
        raise ModelError("scoring continuations is not available for seq2seq models",
                         hint="use a decoder-only (Tower) model for reranking and log-prob QE")

    def stream(self, rendered: "RenderedPrompt", opts: GenerationOptions, max_new: int,
               end_tokens: list[str]) -> Iterator[tuple[str, int, float | None]]:
        kwargs = self._kwargs(opts, max_new, end_tokens, len(rendered.target_prefix))
        for key in ("beam_size", "num_hypotheses", "length_penalty"):
            kwargs.pop(key)
        steps = self.translator.generate_tokens(list(rendered.tokens), list(rendered.target_prefix) or None,
                                                **kwargs)
        try:
            skip = len(rendered.target_prefix)
            for step in steps:
                if step.step < skip:
                    continue
                yield step.token, step.token_id, step.log_prob
        finally:
            steps.close()


class _HFBackend:
    """Hugging Face transformers on the same model: the reference, the baseline, and exact Gemma 2."""

    name = "transformers"

    def __init__(self, hf_path: str, tokenizer, device: str, device_index: list[int], compute_type: str,
                 threads: int | None, seed: int | None):
        import torch
        import transformers

        if seed is not None:
            torch.manual_seed(seed)
        if threads:
            torch.set_num_threads(threads)
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            compute_type, torch.float32)
        config = transformers.AutoConfig.from_pretrained(hf_path)
        attn = "eager" if getattr(config, "model_type", "") == "gemma2" else None  # soft-capping needs eager
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            hf_path, dtype=dtype, attn_implementation=attn)
        self.device = torch.device(f"cuda:{device_index[0]}" if device == "cuda" else "cpu")
        self.model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.vocab_size = int(self.model.config.vocab_size)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.parallel = 1

    def _ids(self, tokens: Sequence[str]) -> list[int]:
        return _tokens_to_ids(self.tokenizer, tokens)

    def _tokens(self, ids: Sequence[int]) -> list[str]:
        return _ids_to_tokens(self.tokenizer, ids)

    def generate(self, batches, opts: GenerationOptions, max_news: list[int], end_tokens: list[str],
                 max_batch_tokens: int) -> Iterator[list[list[_RawHyp]]]:
        import torch

        end_ids = self._ids(end_tokens)
        for batch, max_new in zip(batches, max_news):
            ids = [list(r.ids) for r in batch]
            width = max(map(len, ids))
            input_ids = torch.tensor([[self.pad_id] * (width - len(x)) + x for x in ids], device=self.device)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
            n = opts.num_hypotheses
            kwargs: dict[str, Any] = dict(
                max_new_tokens=max_new, min_new_tokens=min(opts.min_new_tokens, max_new),
                num_beams=opts.beam_size, num_return_sequences=n, eos_token_id=end_ids,
                pad_token_id=self.pad_id, repetition_penalty=opts.repetition_penalty,
                no_repeat_ngram_size=opts.no_repeat_ngram_size, length_penalty=opts.length_penalty,
                do_sample=opts.sampling, output_scores=True, return_dict_in_generate=True)
            if opts.sampling:
                kwargs.update(temperature=opts.sampling_temperature, top_k=opts.sampling_topk or None,
                              top_p=opts.sampling_topp)
            else:
                kwargs.update(temperature=None, top_k=None, top_p=None)
            with torch.inference_mode():
                out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
                if opts.beam_size > 1:
                    step_scores = self.model.compute_transition_scores(out.sequences, out.scores,
                                                                       out.beam_indices, normalize_logits=False)
                else:
                    step_scores = self.model.compute_transition_scores(out.sequences, out.scores,
                                                                       normalize_logits=True)
            new = out.sequences[:, width:].tolist()
            step_scores = step_scores.tolist()
            results = []
            for b in range(len(batch)):
                hyps = []
                for k in range(n):
                    seq, scores = new[b * n + k], step_scores[b * n + k]
                    cut = next((i + 1 for i, t in enumerate(seq) if t in end_ids), len(seq))
                    seq, scores = seq[:cut], scores[:cut]
                    hyps.append(_RawHyp(self._tokens(seq), sum(scores) / len(scores) if scores else None))
                results.append(hyps)
            yield results

    def score(self, batch: list[list[str]]) -> list[list[float]]:
        import torch

        ids = [self._ids(t) for t in batch]
        width = max(map(len, ids))
        input_ids = torch.tensor([x + [self.pad_id] * (width - len(x)) for x in ids], device=self.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]
        return [logp[i, :len(x) - 1].tolist() for i, x in enumerate(ids)]

    def stream(self, tokens: list[str], opts: GenerationOptions, max_new: int,
               end_tokens: list[str]) -> Iterator[tuple[str, int, float | None]]:
        import torch

        end_ids = set(self._ids(end_tokens))
        ids = torch.tensor([self._ids(tokens)], device=self.device)
        past = None
        with torch.inference_mode():
            for step in range(max_new):
                out = self.model(input_ids=ids if past is None else ids[:, -1:], past_key_values=past,
                                 use_cache=True)
                past = out.past_key_values
                logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
                if step < opts.min_new_tokens:
                    logp[list(end_ids)] = -math.inf
                if opts.sampling:
                    scaled = logp / max(opts.sampling_temperature, 1e-6)
                    if opts.sampling_topk > 1:
                        kth = torch.topk(scaled, opts.sampling_topk).values[-1]
                        scaled = scaled.masked_fill(scaled < kth, -math.inf)
                    next_id = int(torch.multinomial(torch.softmax(scaled, -1), 1))
                else:
                    next_id = int(torch.argmax(logp))
                yield self._tokens([next_id])[0], next_id, float(logp[next_id])
                if next_id in end_ids:
                    return
                ids = torch.cat([ids, torch.tensor([[next_id]], device=self.device)], dim=1)


_VOCABS: "weakref.WeakKeyDictionary[Any, tuple[list[str], dict[str, int], int]]" = weakref.WeakKeyDictionary()


def _vocab(tokenizer) -> tuple[list[str], dict[str, int], int] | None:
    """A fast tokenizer's id -> token list, token -> id dict and length, built once per tokenizer: one call into
    the tokenizer per token cost more than the rest of prompt rendering (0.57 of 0.91 ms per prompt, measured
    on 1 015 bench prompts). None for slow tokenizers, whose vocabularies may map several ids to one string."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    try:
        return _VOCABS[tokenizer]
    except KeyError:
        pass
    n = len(tokenizer)
    entry = (list(tokenizer.convert_ids_to_tokens(list(range(n)))), dict(tokenizer.get_vocab()), n)
    _VOCABS[tokenizer] = entry
    return entry


def _tokens_to_ids(tokenizer, tokens: Sequence[str]) -> list[int]:
    vocab = _vocab(tokenizer)
    token_ids, n = (vocab[1], vocab[2]) if vocab else ({}, len(tokenizer))
    out = []
    for t in tokens:
        i = token_ids.get(t)
        if i is not None:
            out.append(i)
        elif t.startswith("<extra_id_") and tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id):
            out.append(n + int(t[len("<extra_id_"):-1]))  # CT2's names for padded vocabulary rows
        else:
            out.append(tokenizer.convert_tokens_to_ids(t))
    return out


def _ids_to_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    vocab = _vocab(tokenizer)
    if vocab is None:
        n = len(tokenizer)
        return [tokenizer.convert_ids_to_tokens(i) if i < n else f"<extra_id_{i - n}>" for i in ids]
    by_id, _, n = vocab
    return [by_id[i] if i < n else f"<extra_id_{i - n}>" for i in ids]


def _cut_in_order(order: Sequence[int], lengths: Sequence[int], budgets: Sequence[int], max_tokens: int,
                  max_size: int) -> list[list[int]]:
    """Greedy cut of `order` into consecutive batches of at most `max_size` prompts whose padded size (widest
    prompt + widest new-token budget, times prompts) stays within `max_tokens`; a prompt that alone exceeds it
    gets a batch of its own."""
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        w = max(width, lengths[i] + budgets[i])
        if current and (w * (len(current) + 1) > max_tokens or len(current) >= max_size):
            batches.append(current)
            current, w = [], lengths[i] + budgets[i]
        current.append(i)
        width = w
    if current:
        batches.append(current)
    return batches


def read_context_length(path: str | Path, hf_model: str | None, tokenizer) -> int:
    """A model's context window in tokens: max_position_embeddings (or its aliases) of the converted or
    original config, else the tokenizer's model_max_length when it is a real number, else 4096."""
    for folder in filter(None, (Path(path), Path(hf_model) if hf_model else None)):
        try:
            data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = data.get(key) or (data.get("text_config") or {}).get(key)
            if isinstance(value, int) and value > 0:
                return value
    n = getattr(tokenizer, "model_max_length", None)
    return n if isinstance(n, int) and 0 < n < 1_000_000 else 4096


def _model_facts(path: Path, info: ModelInfo, backend: str, hf_model: str | None,
                 context_length: int) -> ModelFacts | None:
    """ModelFacts for the memory decisions; None (defaults without model size) when the files cannot tell."""
    try:
        if backend == "ct2":
            return read_ct2_model_facts(path, context_length)
        folder = Path(hf_model) if hf_model else path
        return hf_model_facts(json.loads((folder / "config.json").read_text(encoding="utf-8")), context_length)
    except (ModelError, OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("cannot size the model for the GPU defaults (%s): using the fastest type and a conservative "
                    "batch budget", exc)
        return None


# --------------------------------------------------------------------------------------------------------


class Engine:
    """A loaded model: render prompts, generate (deduplicated, batched, cached), stream, score."""

    def __init__(self, path: Path, info: ModelInfo, tokenizer, *, backend: str, device: str,
                 device_index: list[int], compute_type: str, threads: int, replicas: int,
                 hf_model: str | None, cache: GenerationCache | None, fingerprint: str, seed: int | None = None,
                 device_facts: DeviceFacts | None = None, compute_type_reason: str = "given"):
        self.path = path
        self.info = info
        self.tokenizer = tokenizer
        self.backend_name = backend
        self.device = device
        self.device_index = device_index
        self.compute_type = compute_type
        self.threads = threads
        self.replicas = replicas
        self.hf_model = hf_model
        self.cache = cache
        self.seed = seed
        self.stats = EngineStats()
        self.fingerprint = f"{fingerprint}:{backend}:{compute_type}"
        self._backend: _CT2Backend | _HFBackend | None = None
        self._load_lock = threading.Lock()
        self._bos = tokenizer.bos_token if self._uses_bos(tokenizer) else None
        self._device_facts = device_facts
        self.compute_type_reason = compute_type_reason

    # -- loading ------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, device: str | int | Sequence[int] = "auto", compute_type: str = "auto",
             threads: int | None = None, replicas: int | None = None, *, backend: str = "ct2",
             hf_model: str | Path | None = None, cache: str | Path | GenerationCache | None = None,
             seed: int | None = None, endpoint: str | None = None, api_key: str | None = None,
             served_model: str | None = None, remote: "RemoteOptions | None" = None) -> "Engine":
        """Open a model folder (weights load on first use). `path` may be an HF folder for backend=transformers.

        `seed` makes sampling reproducible from one load to the next (CT2 seeds its threads at load time).
        `threads`/`replicas`: on the CPU, see :func:`cpu_layout` (default: one single-threaded replica per core);
        on GPUs, `replicas` per device (default 1).
        backend="openai": `path` is the local folder with the model's tokenizer files and family (a converted or a
        Hugging Face folder; no weights are read), generation runs on the OpenAI-compatible server at `endpoint`
        (vLLM, SGLang, TGI, llama.cpp); `remote` sets every other knob (tower_cat.engine_remote.RemoteOptions).
        """
        import transformers

        if backend not in BACKENDS:
            raise ModelError(f"unknown backend {backend!r}", hint="use ct2, transformers or openai")
        if backend == "openai" and not (endpoint or (remote and remote.endpoint)):
            raise ModelError("the openai backend needs the inference server's URL",
                             hint="pass endpoint=", param="endpoint")
        path = Path(path).expanduser()
        if not path.is_dir():
            raise ModelError("model folder not found", path=path,
                             hint="convert a model first with `tower-cat convert SRC OUT`")
        is_ct2 = (path / "model.bin").is_file()
        if is_ct2:
            info = ModelInfo.load(path)
        elif (path / "config.json").is_file():
            if backend == "ct2":
                raise ModelError("this is a Hugging Face model folder, not a converted one", path=path,
                                 hint="convert it first (tower_cat.convert), or use backend='transformers'",
                                 param="backend_hf")
            info = inspect_model(path)
            info.hf_model = str(path)
        else:
            raise ModelError("no model here: expected model.bin (converted) or config.json (Hugging Face)",
                             path=path, hint="convert a model with `tower-cat convert SRC OUT`")
        if info.family == SEQ2SEQ and backend != "ct2":
            raise ModelError(f"the transformers backend serves decoder-only models; this is a "
                             f"{info.seq2seq_kind or 'seq2seq'} model", path=path, hint="use backend='ct2'",
                             param="backend_ct2")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise ModelError(f"the tokenizer files are missing or broken: {exc}", path=path,
                             hint="re-run `tower-cat convert`, which copies tokenizer.json next to model.bin") from None
        if backend == "openai":
            return cls._remote(path, info, tokenizer, cache=cache, seed=seed, remote=remote, endpoint=endpoint,
                               api_key=api_key, served_model=served_model)

        hf = str(hf_model) if hf_model else info.hf_model
        if backend == "transformers" and (not hf or (Path(hf).is_absolute() and not Path(hf).is_dir())):
            raise ModelError("the transformers backend needs the original Hugging Face model folder",
                             path=hf or path, hint="pass hf_model=DIR", param="hf_model")
        dev, indices = resolve_device(device, backend)
        # GPU facts are read now, before the weights take their share of the free memory
        facts = probe_device(dev, indices, backend) if dev == "cuda" else None
        if dev == "cpu":
            threads, replicas = cpu_layout(threads, replicas, backend)
        else:
            threads, replicas = threads or default_threads(), max(1, replicas or 1)
        reason = "given"
        if compute_type == "auto":
            if backend == "transformers" and dev == "cpu":
                compute_type, reason = "float32", "transformers on the CPU: float32"
            elif dev == "cpu":
                choice = choose_compute_type(probe_device("cpu", indices, backend), None)
                compute_type, reason = choice.value, choice.reason
            else:
                sizes = _model_facts(path, info, backend, hf, read_context_length(path, hf, tokenizer))
                choice = choose_compute_type(facts, sizes, replicas)
                compute_type, reason = choice.value, choice.reason
                log.info("compute type %s", reason)
        if info.architecture == "gemma2" and backend == "ct2":
            warnings.warn("Gemma 2 on CTranslate2 is approximate (no logit soft-capping, no sliding window): "
                          "output can differ from Hugging Face, above all past 4096 tokens. "
                          "Use backend='transformers' for the exact model.", RuntimeWarning, stacklevel=2)
        if isinstance(cache, (str, Path)):
            cache = GenerationCache(cache)
        if backend == "ct2":
            fingerprint = model_fingerprint(path, ["model.bin"])
        else:
            hf_dir = Path(hf)
            fingerprint = model_fingerprint(hf_dir, [p.name for p in hf_dir.glob("*.safetensors")]
                                            + [p.name for p in hf_dir.glob("*.bin")]) if hf_dir.is_dir() else hf
        return cls(path, info, tokenizer, backend=backend, device=dev, device_index=indices,
                   compute_type=compute_type, threads=threads, replicas=max(1, replicas),
                   hf_model=hf, cache=cache, fingerprint=fingerprint, seed=seed, device_facts=facts,
                   compute_type_reason=reason)

    @classmethod
    def _remote(cls, path: Path, info: ModelInfo, tokenizer, *, cache, seed, remote, endpoint, api_key,
                served_model) -> "Engine":
        """An Engine whose generation runs on an OpenAI-compatible server; the prompt is rendered here."""
        import dataclasses

        from tower_cat.engine_remote import OpenAICompletionsBackend, RemoteOptions

        options = remote or RemoteOptions(endpoint=endpoint or "")
        changes = {k: v for k, v in dict(endpoint=endpoint, api_key=api_key, served_model=served_model).items()
                   if v is not None}
        options = dataclasses.replace(options, **changes)
        server = OpenAICompletionsBackend(options, tokenizer, seed=seed)
        if isinstance(cache, (str, Path)):
            cache = GenerationCache(cache)
        engine = cls(path, info, tokenizer, backend="openai", device="remote", device_index=[0],
                     compute_type="remote", threads=1, replicas=1, hf_model=info.hf_model, cache=cache,
                     fingerprint=server.fingerprint, seed=seed)
        engine.attach_backend(server)
        return engine

    def attach_backend(self, backend) -> None:
        """Decode through another backend (a remote server, Ray actors): rendering, deduplication and the
        generation cache stay in this process; the backend only turns token batches into hypotheses."""
        with self._load_lock:
            self._backend = backend

    @property
    def family(self) -> str:
        return self.info.family

    @property
    def end_tokens(self) -> list[str]:
        return list(self.info.end_tokens)

    @property
    def is_loaded(self) -> bool:
        return self._backend is not None

    @functools.cached_property
    def context_length(self) -> int:
        """The model's context window in tokens (see :func:`read_context_length`)."""
        return read_context_length(self.path, self.hf_model, self.tokenizer)

    @property
    def device_facts(self) -> DeviceFacts:
        """The device the model runs on (for GPUs: as read before the weights loaded)."""
        if self._device_facts is None:
            self._device_facts = probe_device(self.device, self.device_index, self.backend_name)
        return self._device_facts

    @functools.cached_property
    def model_facts(self) -> ModelFacts | None:
        """Parameters, layers and widths (from model.bin's headers or the HF config); None when unreadable."""
        return _model_facts(self.path, self.info, self.backend_name, self.hf_model, self.context_length)

    @functools.cached_property
    def batch_budget(self) -> BatchBudget:
        """Default padded tokens and prompts per batch (used when GenerationOptions leave them None): the
        measured 8192 tokens / 64 prompts on the CPU; on a GPU what its free memory holds next to the weights,
        up to 256 prompts. See :func:`tower_cat.devices.choose_batch_budget`."""
        if self.device == "cpu":  # no model facts needed: the CPU budget is a measured constant
            return choose_batch_budget(DeviceFacts("cpu"), None, self.compute_type, self.replicas)
        if self.device != "cuda":  # a remote server batches by itself: requests of the CPU's size
            cpu = choose_batch_budget(DeviceFacts("cpu"), None, self.compute_type, self.replicas)
            return _replace(cpu, reason=f"{self.device}: {cpu.max_batch_tokens} tokens / "
                                        f"{cpu.max_batch_size} prompts per request")
        budget = choose_batch_budget(self.device_facts, self.model_facts, self.compute_type, self.replicas)
        log.info("batch budget: %s", budget.reason)
        return budget

    @property
    def preferred_chunk(self) -> int:
        """How many distinct prompts a caller should hand to one `generate` call so batches are full: one full
        batch per replica (128 on the 2-core CPU default, as the pipeline's chunk size was), on a GPU two
        (the second is submitted while the first decodes)."""
        rounds = 2 if self.device == "cuda" else 1
        return max(1, self.batch_budget.max_batch_size * self.parallel * rounds)

    @property
    def backend(self):
        """The model itself, loaded on first use (a fully cached run never gets here)."""
        if self._backend is None:
            with self._load_lock:
                if self._backend is None:
                    self._backend = self._load_backend()
                    self.stats.generator_loads += 1
        return self._backend

    def _load_backend(self):
        try:
            if self.backend_name == "ct2" and self.family == SEQ2SEQ:
                return _CT2TranslatorBackend(self.path, self.device, self.device_index, self.compute_type,
                                             self.threads, self.replicas, self.seed)
            if self.backend_name == "ct2":
                return _CT2Backend(self.path, self.device, self.device_index, self.compute_type, self.threads,
                                   self.replicas, self.seed)
            return _HFBackend(self.hf_model, self.tokenizer, self.device, self.device_index, self.compute_type,
                              self.threads, self.seed)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot load the model: {exc}", path=self.path,
                             hint="check the folder is a complete conversion and the device/compute type "
                                  "are available") from None

    def unload(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None and hasattr(backend, "close"):
            backend.close()

    def close(self) -> None:
        self.unload()
        if self.cache is not None:
            self.cache.close()

    # -- prompts ------------------------------------------------------------------------------------------

    @staticmethod
    def _uses_bos(tokenizer) -> bool:
        """Does this tokenizer put a BOS in front of text? (Llama, Gemma: yes; Qwen: no.)"""
        if tokenizer.bos_token_id is None:
            return False
        ids = tokenizer("a", add_special_tokens=True)["input_ids"]
        return bool(ids) and ids[0] == tokenizer.bos_token_id

    def render(self, prompt: Prompt) -> RenderedPrompt:
        """Prompt -> exact token list: chat template for messages, raw text for base models; one BOS."""
        tok = self.tokenizer
        if self.family == SEQ2SEQ or isinstance(prompt, SourceText):
            return self._render_source(prompt)
        if isinstance(prompt, str):
            text = prompt
        else:
            messages = [dict(m) for m in prompt]
            if self.family == BAYLING:  # BayLing ships no chat template: its repository's conversation format
                from tower_cat.prompts import bayling_conversation

                text = bayling_conversation(messages)
            elif self.family == BASE or not tok.chat_template:
                text = "\n".join(m["content"] for m in messages)
            else:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if self._bos is not None:
            bos_id = tok.bos_token_id
            while ids and ids[0] == bos_id:  # templates that write BOS themselves (Gemma)
                ids = ids[1:]
            ids = [bos_id] + ids
            if ids.count(bos_id) != 1:
                raise ModelError(f"the prompt contains the text {self._bos!r}, which this model reads as a "
                                 "second start-of-sequence token", hint="remove or escape it in the source")
        tokens = tuple(_ids_to_tokens(tok, ids))
        return RenderedPrompt(text=text, tokens=tokens, ids=tuple(ids))

    def _render_source(self, prompt: Prompt) -> RenderedPrompt:
        """Seq2seq input: source tokens with the tokenizer's own specials, target language as prefix."""
        from tower_cat.languages import m2m_code, nllb_code

        if self.family != SEQ2SEQ:
            raise ModelError("a SourceText prompt needs a seq2seq model; this one takes chat messages",
                             path=self.path, hint="give it chat messages (tower_cat.core builds them)")
        if isinstance(prompt, str):
            prompt = SourceText(prompt)
        if not isinstance(prompt, SourceText):
            raise ModelError("seq2seq models translate source text, not chat messages", path=self.path,
                             hint="pass SourceText(text, source_lang, target_lang)")
        tok, kind = self.tokenizer, self.info.seq2seq_kind
        prefix: tuple[str, ...] = ()
        if kind in ("nllb", "m2m100"):
            if not (prompt.source_lang and prompt.target_lang):
                raise ModelError(f"{kind} models need the source and target language", path=self.path,
                                 hint="pass SourceText(text, source_lang, target_lang)")
            code = nllb_code if kind == "nllb" else (lambda c: m2m_code(c).strip("_"))
            tok.src_lang = code(prompt.source_lang)
            prefix = (nllb_code(prompt.target_lang),) if kind == "nllb" else (m2m_code(prompt.target_lang),)
        ids = tok(prompt.text)["input_ids"]
        return RenderedPrompt(text=prompt.text, tokens=tuple(_ids_to_tokens(tok, ids)), ids=tuple(ids),
                              target_prefix=prefix)

    def _decode(self, tokens: Sequence[str]) -> str:
        n = len(self.tokenizer)  # not per token: len() of a fast tokenizer recounts its vocabulary
        ids = [i for i in _tokens_to_ids(self.tokenizer, tokens) if i is not None and i < n]
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- generation ---------------------------------------------------------------------------------------

    def _key(self, tokens: Sequence[str], budget: int, opts: GenerationOptions, ends: list[str]) -> str:
        payload = json.dumps([self.fingerprint, list(tokens), budget, opts.decoding_key(), ends],
                             ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def budget(self, source: str | None, opts: GenerationOptions) -> int:
        """Max new tokens: proportional to the source (when known), never above opts.max_new_tokens."""
        if source is None:
            return max(opts.max_new_tokens, opts.min_new_tokens)
        n = math.ceil(opts.length_ratio * self.count_tokens(source)) + opts.length_extra
        return max(min(n, opts.max_new_tokens), opts.min_new_tokens, 1)

    def generate(self, prompts: Sequence[Prompt], options: GenerationOptions | None = None, *,
                 sources: Sequence[str | None] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[Generation]:
        """Generate for every prompt; identical prompts run once, cached ones not at all.

        `sources` (the texts being translated) set each prompt's new-token budget. `progress(done, total)` is
        called after each batch, counting distinct prompts.
        """
        opts = options or GenerationOptions()
        if sources is not None and len(sources) != len(prompts):
            raise InvalidArgument("sources must have one entry per prompt")
        ends = list(opts.end_tokens) if opts.end_tokens is not None else self.end_tokens
        self.stats.prompts_requested += len(prompts)
        full = [self.render(p) for p in prompts]
        rendered = [r.tokens for r in full]
        budgets = [self.budget(sources[i] if sources else None, opts) for i in range(len(prompts))]
        keys = [self._key(r.tokens + ("\x00",) + r.target_prefix, b, opts, ends) for r, b in zip(full, budgets)]

        unique: dict[str, int] = {}
        for i, key in enumerate(keys):
            unique.setdefault(key, i)
        done: dict[str, Generation] = {}
        use_cache = self.cache is not None and opts.use_cache and not opts.sampling
        if use_cache:
            for key, hyps in self.cache.get_many(list(unique)).items():
                done[key] = Generation(hyps, cached=True)
            self.stats.cache_hits += len(done)

        todo = sorted((i for k, i in unique.items() if k not in done), key=lambda i: -len(rendered[i]))
        if todo:
            max_tokens = opts.max_batch_tokens or self.batch_budget.max_batch_tokens
            max_size = opts.max_batch_size or self.batch_budget.max_batch_size
            batches = self._cut_batches(todo, [len(r) for r in rendered], budgets, max_tokens, max_size)
            backend = self.backend
            results = backend.generate([[full[i] for i in b] for b in batches], opts,
                                       [max(budgets[i] for i in b) for b in batches], ends, max_tokens)
            for batch, raw in zip(batches, results):
                self.stats.batches += 1
                self.stats.prompts_generated += len(batch)
                self.stats.prompt_tokens += sum(len(rendered[i]) for i in batch)
                self.stats.padded_prompt_tokens += len(batch) * max(len(rendered[i]) for i in batch)
                new = {keys[i]: tuple(self._finish(h, ends, budgets[i]) for h in hyps)
                       for i, hyps in zip(batch, raw)}
                if use_cache:
                    self.cache.put_many(new)
                done.update({k: Generation(v, cached=False) for k, v in new.items()})
                if progress is not None:
                    progress(len(done), len(unique))
        return [done[k] for k in keys]

    @property
    def parallel(self) -> int:
        """How many batches the model decodes at once: CT2 replicas on every device; one for transformers; what an
        attached backend says (Ray actors, requests in flight to a server)."""
        if self._backend is not None and hasattr(self._backend, "parallel"):
            return int(self._backend.parallel)
        return len(self.device_index) * self.replicas if self.backend_name == "ct2" else 1

    def _cut_batches(self, order: list[int], lengths: Sequence[int], budgets: Sequence[int], max_tokens: int,
                     max_size: int) -> list[list[int]]:
        """Length-sorted prompts -> as few batches as the budget allows, evened out.

        Neighbours in length order share a batch, so padding stays low. A GPU decodes a batch of 256 in about
        the time of a batch of 16 (memory-bound), so the number of batches is what costs: first the fewest
        batches whose padded size (prompt + new tokens) fits `max_tokens` and `max_size`, rounded up to a
        multiple of the replicas (no replica idles in the last round); then the same number with the prompts
        spread evenly, so the last batch is not a small remainder that costs a full decoding loop."""
        n = len(order)
        size = min(max_size, max(1, -(-n // self.parallel)))
        fewest = _cut_in_order(order, lengths, budgets, max_tokens, size)
        count = -(-len(fewest) // self.parallel) * self.parallel
        if count > n:
            return fewest
        base, extra = divmod(n, count)  # equal counts, the extra prompts in the later (shorter) batches
        even, start = [], 0
        for k in range(count):
            step = base + (k >= count - extra)
            even.append(order[start:start + step])
            start += step
        if all(len(b) <= size and len(b) * max(lengths[i] + budgets[i] for i in b) <= max_tokens for b in even):
            return even
        capped = _cut_in_order(order, lengths, budgets, max_tokens, min(size, -(-n // count)))
        return capped if len(capped) <= count else fewest

    def _finish(self, hyp: _RawHyp, ends: list[str], budget: int) -> Hypothesis:
        tokens = list(hyp.tokens)
        stopped = bool(tokens) and tokens[-1] in ends
        if stopped:
            tokens.pop()
        truncated = not stopped
        if len(tokens) > budget:  # batch ran with a bigger budget: greedy output is prefix-consistent
            tokens, truncated = tokens[:budget], True
        return Hypothesis(self._decode(tokens), tuple(tokens), hyp.log_prob, truncated)

    def generate_tokens(self, prompt: Prompt, options: GenerationOptions | None = None, *,
                        source: str | None = None) -> Iterator[TokenEvent]:
        """Stream one prompt token by token. Close the iterator (or exhaust it) to stop the model."""
        opts = options or GenerationOptions()
        ends = list(opts.end_tokens) if opts.end_tokens is not None else self.end_tokens
        rendered = self.render(prompt)
        steps = self.backend.stream(rendered if self.family == SEQ2SEQ else list(rendered.tokens), opts,
                                    self.budget(source, opts), ends)
        ids: list[int] = []
        emitted = ""
        try:
            for token, token_id, log_prob in steps:
                if token in ends:
                    break
                ids.append(token_id)
                text = self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                delta = ""
                if not text.endswith("\ufffd"):  # hold back half a UTF-8 character
                    delta, emitted = text[len(emitted):], text
                yield TokenEvent(token, token_id, delta, log_prob)
        finally:
            steps.close()

    # -- scoring ------------------------------------------------------------------------------------------

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str | Sequence[str]], *,
              add_end_token: bool = True, max_batch_tokens: int | None = None) -> list[float]:
        """Mean log-prob of each continuation given its prompt (for reranking and QE).

        A continuation is text (tokenized without special tokens) or a token list such as
        `Generation.tokens`; the family's first end token is appended unless add_end_token=False.
        """
        if len(prompts) != len(continuations):
            raise InvalidArgument("one continuation per prompt")
        max_batch_tokens = max_batch_tokens or self.batch_budget.max_score_tokens
        seqs: list[tuple[list[str], int]] = []
        for prompt, cont in zip(prompts, continuations):
            if isinstance(cont, str):
                cont_tokens = _ids_to_tokens(self.tokenizer,
                                             self.tokenizer(cont, add_special_tokens=False)["input_ids"])
            else:
                cont_tokens = list(cont)
            if add_end_token:
                cont_tokens.append(self.end_tokens[0])
            if not cont_tokens:
                raise InvalidArgument("empty continuation with add_end_token=False: nothing to score")
            seqs.append((list(self.render(prompt).tokens) + cont_tokens, len(cont_tokens)))
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0]))
        out: list[float] = [0.0] * len(seqs)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and len(seqs[order[start]][0]) * (end - start + 1) <= max_batch_tokens:
                end += 1
            chunk = order[start:end]
            for i, logps in zip(chunk, self.backend.score([seqs[i][0] for i in chunk])):
                n = seqs[i][1]
                out[i] = sum(logps[-n:]) / n
            start = end
        return out
