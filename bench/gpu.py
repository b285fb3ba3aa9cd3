"""Benchmark on one GPU: engine throughput per compute type, the decode bound, and the file pipeline's profile.

    .venv/bin/python bench/gpu.py                          # on a GPU machine: < 10 minutes, writes docs/bench-gpu.md
    .venv/bin/python bench/gpu.py --device cpu --small     # every stage on a tiny model in seconds (the test)

In one run:
1. builds a random Llama directly on the device (7B shape of TowerInstruct-7B: hidden 4096, 32 layers, MLP 11008,
   32 heads, vocabulary 32 000; bfloat16 on a GPU: seconds, no download) with the 8k BPE tokenizer that
   `bench/pipeline.py` trains on the samples, saves it, and converts it with `tower_cat.convert` in a child
   process while the transformers measurements run;
2. tokens/s at batch 1 / 16 / 64 / 256 with forced new tokens (128) for Hugging Face transformers (the project's
   `Engine(backend="transformers")`) and CTranslate2 in bfloat16, float16, int8_bfloat16 and `auto` (the
   engine's own choice, with its reason);
3. the decode bound: a device-to-device copy measures memory bandwidth; one sequence's decoding cannot beat
   bandwidth / weight bytes tokens/s;
4. the translate pipeline (`pipeline.run_files`) on bench/pipeline.py's 2 000-unit XLIFF with a per-stage
   profile — prompt tokens per segment, engine calls, batches and how full they were, prefill vs decode time,
   time outside the engine — once with the pipeline's default chunking and once with chunks of
   `Engine.preferred_chunk`; then the same prompts straight into `Engine.generate` at the best batch size with
   no cache, and the ratio pipeline / engine (issue 14's acceptance: within 2x).

CTranslate2's PyPI wheel loads libcublas.so.12. When a machine has only CUDA 13's libcublas.so.13, this script
links it (and libcublasLt) under the .so.12 names in a temporary folder and restarts itself with that folder on
LD_LIBRARY_PATH — the workaround every number of issue 14 was measured with. Users install nvidia-cublas-cu12.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import glob
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# bench/pipeline.py: the bench file (make_job), TM segments (_segments), tokenizer size — imported, not copied
_spec = importlib.util.spec_from_file_location("bench_pipeline", Path(__file__).with_name("pipeline.py"))
bench_pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_pipeline)

TOKENIZER_VOCAB = 8000   # bench/pipeline.py's 8k BPE: splits English about as finely as Llama's tokenizer
MODEL_VOCAB = 32000
SHAPES = {  # random Llama shapes
    "7b": dict(hidden_size=4096, layers=32, heads=32, kv_heads=32, intermediate_size=11008),
    "small": dict(hidden_size=128, layers=2, heads=4, kv_heads=2, intermediate_size=256),
}
MARK_BEGIN = "<!-- bench/gpu.py results: begin -->"
MARK_END = "<!-- bench/gpu.py results: end -->"
CUBLAS_LINKS_ENV = "TOWER_CAT_BENCH_CUBLAS_LINKED"


@dataclasses.dataclass
class Settings:
    device: str
    shape: str
    batches: tuple[int, ...]
    new_tokens: int
    units: int
    pipeline_new_tokens: int
    straight_sizes: tuple[int, ...]
    ct2_types: tuple[str, ...]
    hf_type: str
    budget_s: float


def settings(args) -> Settings:
    if args.small:
        return Settings(args.device, "small", (1, 4, 16), 8, args.units or 80, 8, (16, 64),
                        ("auto", "float32", "int8") if args.device == "cpu" else ("auto", "bfloat16", "int8_bfloat16"),
                        "float32" if args.device == "cpu" else "bfloat16", args.budget_s)
    return Settings(args.device, "7b", (1, 16, 64, 256), 128, args.units or 2000, 64, (128, 256, 512),
                    ("auto", "bfloat16", "float16", "int8_bfloat16"),
                    "bfloat16" if args.device == "cuda" else "float32", args.budget_s)


class Clock:
    """Wall time since the start, and whether an optional stage still fits in the budget."""

    def __init__(self, budget_s: float):
        self.t0 = time.perf_counter()
        self.budget = budget_s
        self.skipped: list[str] = []

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def allows(self, stage: str, need_s: float) -> bool:
        if self.now() + need_s <= self.budget:
            return True
        self.skipped.append(f"{stage} (needed ~{need_s:.0f} s, {self.budget - self.now():.0f} s left)")
        print(f"skipped: {self.skipped[-1]}", flush=True)
        return False


def log(clock: Clock, text: str) -> None:
    print(f"[{clock.now():6.1f} s] {text}", flush=True)


# --------------------------------------------------------------------------------------------------------
# cuBLAS 12 for CTranslate2


def find_cublas13() -> Path | None:
    """A folder holding libcublas.so.13 and libcublasLt.so.13 (CUDA toolkit, system, or NVIDIA's wheels)."""
    candidates = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    candidates += sorted(glob.glob("/usr/local/cuda*/lib64")) + ["/usr/lib/x86_64-linux-gnu", "/usr/lib64"]
    for site in sys.path:
        candidates += sorted(glob.glob(os.path.join(site, "nvidia", "**", "lib"), recursive=True))
    for folder in candidates:
        if (Path(folder) / "libcublas.so.13").exists() and (Path(folder) / "libcublasLt.so.13").exists():
            return Path(folder)
    return None


def ensure_cublas(clock: Clock) -> str:
    """libcublas.so.12 for CTranslate2: already loadable (system or nvidia-cublas-cu12), or CUDA 13's linked
    under the .so.12 names and this process restarted with them on LD_LIBRARY_PATH."""
    from tower_cat.devices import load_cublas

    where, tried = load_cublas()
    if where is not None:
        return f"libcublas.so.12 from {where}"
    if os.environ.get(CUBLAS_LINKS_ENV):
        raise SystemExit(f"libcublas.so.12 still does not load after linking CUDA 13's ({tried})")
    folder = find_cublas13()
    if folder is None:
        raise SystemExit(f"CTranslate2 needs libcublas.so.12 and neither it nor libcublas.so.13 was found ({tried}).\n"
                         "Fix: pip install nvidia-cublas-cu12")
    links = Path(tempfile.mkdtemp(prefix="tower-cat-cublas12-"))
    for name in ("libcublas", "libcublasLt"):
        (links / f"{name}.so.12").symlink_to(folder / f"{name}.so.13")
    env = dict(os.environ, LD_LIBRARY_PATH=f"{links}:{folder}:{os.environ.get('LD_LIBRARY_PATH', '')}".rstrip(":"))
    env[CUBLAS_LINKS_ENV] = str(folder)
    log(clock, f"no libcublas.so.12: linking {folder}/libcublas*.so.13 as .so.12 in {links} and restarting")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------------------
# Model


def build_model(root: Path, cfg: Settings, clock: Clock) -> tuple[Path, int, dict]:
    """Random Llama built on the device itself, saved with the 8k tokenizer; returns (folder, parameters, times)."""
    import torch
    import transformers

    from tower_cat.testing import make_config, train_tokenizer

    times = {}
    t = time.perf_counter()
    tokenizer = train_tokenizer("llama", vocab_size=TOKENIZER_VOCAB)
    times["tokenizer"] = time.perf_counter() - t
    config = make_config("llama", MODEL_VOCAB, tokenizer, max_positions=4096, init_range=0.02,
                         **SHAPES[cfg.shape])
    dtype = torch.bfloat16 if cfg.device == "cuda" else torch.float32
    torch.manual_seed(0)
    t = time.perf_counter()
    with torch.device(cfg.device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    if cfg.device == "cuda":
        torch.cuda.synchronize()
    times["build"] = time.perf_counter() - t
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    parameters = sum(p.numel() for p in model.parameters())
    folder = root / "hf"
    t = time.perf_counter()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    times["save"] = time.perf_counter() - t
    del model
    gc.collect()
    if cfg.device == "cuda":
        torch.cuda.empty_cache()
    log(clock, f"model: {parameters / 1e9:.2f} B parameters built in {times['build']:.1f} s, saved in "
               f"{times['save']:.1f} s")
    return folder, parameters, times


def start_conversion(hf: Path, out: Path) -> subprocess.Popen:
    """`tower_cat.convert` in a child process (CPU work) while the GPU measures transformers."""
    code = ("import sys; from tower_cat.convert import convert_model; "
            "convert_model(sys.argv[1], sys.argv[2], force=True)")
    return subprocess.Popen([sys.executable, "-c", code, str(hf), str(out)], cwd=str(ROOT))


# --------------------------------------------------------------------------------------------------------
# Measurements


def copy_bandwidth(device: str) -> float:
    """Bytes/s of a device-to-device copy (read + write), the ceiling of every memory-bound decoding step."""
    import torch

    n = (1 << 30) if device == "cuda" else (1 << 25)
    x = torch.ones(n, dtype=torch.bfloat16 if device == "cuda" else torch.float32, device=device)
    y = torch.empty_like(x)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    y.copy_(x)
    sync()
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        y.copy_(x)
    sync()
    seconds = time.perf_counter() - t
    rate = 2 * x.numel() * x.element_size() * reps / seconds
    del x, y
    if device == "cuda":
        torch.cuda.empty_cache()
    return rate


def bench_prompts(engine, count: int) -> list:
    """`count` distinct translate prompts from the bench file's sentences (no dedup, no cache hits)."""
    from tower_cat import codes, formats
    from tower_cat.core import quick_prompt

    xliff, _ = bench_pipeline.make_job(max(4 * count, 400), seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prompts.xlf"
        path.write_text(xliff, encoding="utf-8")
        texts = list(dict.fromkeys(codes.render(u.source).text for u in formats.load(path).units))
    texts = [f"{t} ({i})" for i, t in enumerate(texts)]  # distinct even past the file's distinct sentences
    while len(texts) < count:
        texts += [f"{t} [{len(texts)}]" for t in texts[:count - len(texts)]]
    return [quick_prompt(engine, t, "en-US", "de-DE") for t in texts[:count]]


def rates(engine, prompts, batches: tuple[int, ...], new_tokens: int, clock: Clock, label: str) -> dict:
    """tokens/s per batch size with exactly `new_tokens` new tokens per prompt (one batch per call)."""
    from tower_cat.engine import GenerationOptions

    out: dict[int, float | str] = {}
    warm = GenerationOptions(max_new_tokens=4, min_new_tokens=4, use_cache=False)
    engine.generate(prompts[:2], warm)
    for size in batches:
        opts = GenerationOptions(max_new_tokens=new_tokens, min_new_tokens=new_tokens, use_cache=False,
                                 max_batch_size=size, max_batch_tokens=1 << 24)
        before = engine.stats.batches
        try:
            t = time.perf_counter()
            gens = engine.generate(prompts[:size], opts)
            seconds = time.perf_counter() - t
        except Exception as exc:  # noqa: BLE001 - out of memory at one size is a result, not the end
            out[size] = f"failed: {type(exc).__name__}"
            log(clock, f"{label} batch {size}: {exc}".splitlines()[0][:200])
            _free_cuda()
            continue
        assert engine.stats.batches - before == 1, "one batch per measurement"
        out[size] = sum(len(g.tokens) for g in gens) / seconds
        log(clock, f"{label} batch {size}: {out[size]:,.0f} tok/s")
    return out


def _free_cuda() -> None:
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def measure_hf(hf: Path, cfg: Settings, clock: Clock) -> dict:
    from tower_cat.engine import Engine

    t = time.perf_counter()
    engine = Engine.load(hf, device=cfg.device, compute_type=cfg.hf_type, backend="transformers", cache=None,
                         threads=None if cfg.device == "cuda" else 1)
    engine.backend
    load = time.perf_counter() - t
    prompts = bench_prompts(engine, max(cfg.batches))
    result = {"label": f"HF transformers {cfg.hf_type}", "load_s": load,
              "rates": rates(engine, prompts, cfg.batches, cfg.new_tokens, clock, "transformers")}
    engine.close()
    del engine
    _free_cuda()
    return result


def measure_ct2(ct2: Path, compute_type: str, cfg: Settings, clock: Clock):
    from tower_cat.engine import Engine

    t = time.perf_counter()
    engine = Engine.load(ct2, device=cfg.device, compute_type=compute_type, cache=None,
                         threads=None if cfg.device == "cuda" else 1, replicas=None if cfg.device == "cuda" else 1)
    engine.backend
    load = time.perf_counter() - t
    prompts = bench_prompts(engine, max(cfg.batches))
    label = f"CT2 {engine.compute_type}" + (" (`auto`)" if compute_type == "auto" else "")
    result = {"label": label, "compute_type": engine.compute_type, "requested": compute_type, "load_s": load,
              "reason": engine.compute_type_reason,
              "rates": rates(engine, prompts, cfg.batches, cfg.new_tokens, clock, label)}
    return result, engine


# --------------------------------------------------------------------------------------------------------
# The pipeline


def make_bench_file(work: Path, units: int):
    """bench/pipeline.py's XLIFF and TM (same generator, same seed)."""
    from tower_cat.document import Segment
    from tower_cat.tm import TranslationMemory

    xliff_text, tm_pairs = bench_pipeline.make_job(units)
    xliff = work / "bench.xlf"
    xliff.write_text(xliff_text, encoding="utf-8")
    for stale in work.glob("tm.sqlite*"):
        stale.unlink()
    memory = TranslationMemory(work / "tm.sqlite")
    segments = bench_pipeline._segments([src for src, _ in tm_pairs], work)
    memory.add_many([(seg, Segment(["[de] "] + list(seg.parts))) for seg in segments], "en-US", "de-DE")
    return xliff, memory


def run_pipeline(engine, xliff: Path, memory, work: Path, name: str, new_tokens: int, chunk_size: int | None):
    """One `pipeline.run_files` with a fresh generation cache, every engine call recorded and timed."""
    from tower_cat import pipeline
    from tower_cat.engine import GenerationCache, GenerationOptions

    calls: list[dict] = []
    real = engine.generate

    def recorded(prompts, options=None, **kwargs):
        t = time.perf_counter()
        out = real(prompts, options, **kwargs)
        calls.append({"prompts": list(prompts), "sources": kwargs.get("sources"), "options": options,
                      "seconds": time.perf_counter() - t})
        return out

    gen = GenerationOptions(max_new_tokens=new_tokens, length_ratio=100.0)  # every prompt: the same budget
    extra = {"chunk_size": chunk_size} if chunk_size else {}
    opts = pipeline.PipelineOptions(generation=gen, **extra)
    for stale in work.glob(f"gen-{name}.sqlite*"):
        stale.unlink()
    engine.cache = GenerationCache(work / f"gen-{name}.sqlite")
    before = dataclasses.replace(engine.stats)
    engine.generate = recorded
    try:
        t = time.perf_counter()
        summary = pipeline.run_files("translate", [xliff], [work / f"out-{name}.xlf"], engine, tm=memory,
                                     options=opts)
        wall = time.perf_counter() - t
    finally:
        del engine.generate  # the instance attribute; the method is back
        engine.cache.close()
        engine.cache = None
    after = engine.stats
    batches = after.batches - before.batches
    prompts_generated = after.prompts_generated - before.prompts_generated
    lengths = [len(engine.render(p).tokens) for c in calls for p in c["prompts"]]
    inside = sum(c["seconds"] for c in calls)
    return {
        "name": name, "chunk_size": chunk_size or opts.chunk_size or engine.preferred_chunk, "wall_s": wall,
        "units": summary.totals()["units"], "distinct_prompts": summary.prompts, "engine_s": inside,
        "outside_s": wall - inside, "calls": len(calls), "batches": batches,
        "prompts_per_batch": prompts_generated / batches if batches else 0.0,
        "token_fill": ((after.prompt_tokens - before.prompt_tokens)
                       / max(1, after.padded_prompt_tokens - before.padded_prompt_tokens)),
        "prompt_tokens_mean": sum(lengths) / len(lengths) if lengths else 0.0,
        "prompt_tokens_max": max(lengths, default=0),
        "prompt_tokens_per_segment": sum(lengths) / max(1, summary.prompts),
    }, calls, gen


def prefill_seconds(engine, calls: list[dict]) -> float:
    """The same engine calls with one new token each: the prefill share of the pipeline's engine time."""
    total = 0.0
    for c in calls:
        opts = dataclasses.replace(c["options"], max_new_tokens=1, min_new_tokens=0, use_cache=False)
        t = time.perf_counter()
        engine.generate(c["prompts"], opts, sources=c["sources"])
        total += time.perf_counter() - t
    return total


def straight(engine, calls: list[dict], gen, sizes: tuple[int, ...], clock: Clock) -> dict:
    """The pipeline's prompts in one Engine.generate call per batch size, no cache: the engine's own time."""
    prompts = [p for c in calls if c["options"] == gen for p in c["prompts"]]
    sources = [s for c in calls if c["options"] == gen for s in (c["sources"] or [None] * len(c["prompts"]))]
    out: dict = {"prompts": len(prompts), "other_calls": sum(1 for c in calls if c["options"] != gen), "runs": {}}
    budget_tokens = engine.batch_budget.max_batch_tokens
    for size in sizes:
        opts = dataclasses.replace(gen, use_cache=False, max_batch_size=size, max_batch_tokens=budget_tokens)
        before = engine.stats.batches
        t = time.perf_counter()
        engine.generate(prompts, opts, sources=sources)
        seconds = time.perf_counter() - t
        out["runs"][size] = {"seconds": seconds, "batches": engine.stats.batches - before}
        log(clock, f"engine alone, {size} prompts/batch: {seconds:.2f} s, {out['runs'][size]['batches']} batches")
    best = min(out["runs"], key=lambda s: out["runs"][s]["seconds"])
    out["best_size"], out["best_s"] = best, out["runs"][best]["seconds"]
    opts = dataclasses.replace(gen, use_cache=False, max_batch_size=best, max_batch_tokens=budget_tokens,
                               max_new_tokens=1)
    t = time.perf_counter()
    engine.generate(prompts, opts, sources=sources)
    out["prefill_s"] = time.perf_counter() - t
    return out


# --------------------------------------------------------------------------------------------------------
# Report


def _rate(value) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else (value or "—")


def report(results: dict, cfg: Settings) -> str:
    env = results["environment"]
    lines = [f"Measured {env['date']} on **{env['device_name']}** ({env['device_memory']}), "
             f"{env['cpu_cores']} CPU cores; CTranslate2 {env['ctranslate2']}, torch {env['torch']}, "
             f"transformers {env['transformers']}; {env['cublas']}.", "",
             f"Model: random Llama, {results['parameters'] / 1e9:.2f} B parameters ({cfg.shape} shape: "
             + ", ".join(f"{k} {v}" for k, v in SHAPES[cfg.shape].items())
             + f", vocabulary {MODEL_VOCAB}), built on the device in {results['times']['build']:.1f} s, saved in "
               f"{results['times']['save']:.1f} s, converted in {results['times']['convert']:.1f} s "
               f"(overlapping the transformers run).", "",
             f"### Engine: tokens/s, {cfg.new_tokens} forced new tokens per prompt", "",
             "| engine | load s | " + " | ".join(f"batch {b}" for b in cfg.batches) + " | batch 1 vs bound |",
             "|---|---:|" + "---:|" * len(cfg.batches) + "---:|"]
    bw = results["copy_bandwidth"]
    for row in results["engines"]:
        ct = row.get("compute_type", cfg.hf_type)
        bound = bw / (results["parameters"] * (1 if ct.startswith("int8") else 4 if ct == "float32" else 2))
        first = row["rates"].get(cfg.batches[0])
        share = f"{100 * first / bound:.0f} %" if isinstance(first, float) else "—"
        lines.append(f"| {row['label']} | {row['load_s']:.1f} | "
                     + " | ".join(_rate(row["rates"].get(b)) for b in cfg.batches) + f" | {share} |")
    auto = next((r for r in results["engines"] if r.get("requested") == "auto"), None)
    if auto:
        lines += ["", f"`auto` chose {auto['compute_type']}: {auto['reason']}."]
    lines += ["", f"Device-to-device copy: {bw / 1e9:,.0f} GB/s, so one sequence decodes at most "
                  f"{bw / (2 * results['parameters']):,.0f} tok/s in 16-bit and "
                  f"{bw / results['parameters']:,.0f} in int8 (bandwidth / weight bytes)."]
    if results.get("pipeline"):
        lines += ["", f"### The pipeline on bench/pipeline.py's {cfg.units:,}-unit XLIFF "
                      f"(up to {cfg.pipeline_new_tokens} new tokens per prompt, `auto` compute type, fresh cache)", "",
                  "| run | wall s | units/s | in engine s | outside s | calls | batches | prompts/batch | "
                  "token fill | prompt tokens/segment (max) | 1-token replay s | decode s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p in results["pipeline"]:
            # decode = engine time - the same calls with one new token (never below 0 when timings are noisy)
            decode = max(0.0, p["engine_s"] - p["prefill_s"]) if p.get("prefill_s") is not None else None
            lines.append(
                f"| chunks of {p['chunk_size']} ({p['name']}) | {p['wall_s']:.1f} | {p['units'] / p['wall_s']:.0f} | "
                f"{p['engine_s']:.1f} | {p['outside_s']:.1f} | {p['calls']} | {p['batches']} | "
                f"{p['prompts_per_batch']:.0f} of {results['batch_budget']['max_batch_size']} | "
                f"{100 * p['token_fill']:.0f} % | {p['prompt_tokens_per_segment']:.0f} ({p['prompt_tokens_max']}) | "
                + (f"{p['prefill_s']:.1f} | {decode:.1f} |" if decode is not None else "— | — |"))
        s = results["straight"]
        lines += ["", f"The same {s['prompts']:,} prompts straight into `Engine.generate`, no cache, budget "
                      f"{results['batch_budget']['max_batch_tokens']:,} tokens:", "",
                  "| prompts per batch | seconds | batches |", "|---:|---:|---:|"]
        for size, run in s["runs"].items():
            lines.append(f"| {size} | {run['seconds']:.2f} | {run['batches']} |")
        lines += ["", f"Best: {s['best_size']} prompts per batch, {s['best_s']:.2f} s (prefill alone "
                      f"{s['prefill_s']:.2f} s)."]
        lines += ["", "1-token replay: the same engine calls with one new token each (prefill plus the engine's own "
                      "work: rendering, dedup, batching); decode = in engine − replay."]
        for p in results["pipeline"]:
            ratio = p["wall_s"] / s["best_s"]
            verdict = "within 2x: **pass**" if ratio <= 2 else "over 2x: **fail**"
            lines.append(f"- pipeline with chunks of {p['chunk_size']} / engine alone: **{ratio:.2f}x** ({verdict})")
    if results["skipped"]:
        lines += ["", "Skipped for time: " + "; ".join(results["skipped"]) + "."]
    lines += ["", f"Whole run: {results['total_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, section: str) -> None:
    """Replace the results section between the markers (the rest of the page stays), or append one."""
    block = f"{MARK_BEGIN}\n{section}{MARK_END}\n"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark: tower-cat on one GPU\n\n"
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + block + rest.split(MARK_END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def environment(cfg: Settings, cublas: str) -> dict:
    import ctranslate2
    import torch
    import transformers

    from tower_cat.devices import cpu_cores, probe_device

    facts = probe_device(cfg.device, [0], "ct2")
    name = facts.name or (torch.cuda.get_device_name(0) if cfg.device == "cuda" else platform.machine())
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device_name": name,
            "device_memory": f"{facts.total_memory / (1 << 30):.0f} GiB" if facts.total_memory else "memory ?",
            "cpu_cores": cpu_cores(), "ctranslate2": ctranslate2.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "cublas": cublas}


def profile_pipeline(engine, work: Path, cfg: Settings, clock: Clock, results: dict) -> None:
    """Pipeline runs (default chunks, Engine.preferred_chunk chunks), prefill replays, the engine alone."""
    budget = engine.batch_budget
    results["batch_budget"] = dataclasses.asdict(budget)
    results["preferred_chunk"] = engine.preferred_chunk
    results["pipeline"] = []
    log(clock, f"batch budget: {budget.reason}; preferred chunk {engine.preferred_chunk}")
    xliff, memory = make_bench_file(work, cfg.units)
    chunkings = [("default", None)]  # the pipeline's default: Engine.preferred_chunk
    if engine.preferred_chunk != 128:
        chunkings.append(("128 per call, the old CPU default", 128))
    first_calls = gen = None
    for name, chunk in chunkings:
        if not clock.allows(f"pipeline ({name} chunks)", 60 if cfg.device == "cuda" else 5):
            continue
        prof, calls, gen = run_pipeline(engine, xliff, memory, work, name, cfg.pipeline_new_tokens, chunk)
        log(clock, f"pipeline ({name}, chunks of {prof['chunk_size']}): {prof['wall_s']:.1f} s, engine "
                   f"{prof['engine_s']:.1f} s, {prof['batches']} batches")
        if clock.allows(f"prefill replay ({name})", 30 if cfg.device == "cuda" else 3):
            prof["prefill_s"] = prefill_seconds(engine, calls)
        results["pipeline"].append(prof)
        first_calls = first_calls or calls
    memory.close()
    if first_calls and clock.allows("engine alone", 90 if cfg.device == "cuda" else 5):
        results["straight"] = straight(engine, first_calls, gen, cfg.straight_sizes, clock)
        for p in results["pipeline"]:
            p["ratio"] = p["wall_s"] / results["straight"]["best_s"]
    else:
        results["pipeline"] = []


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny model, small batches: a smoke run of every stage")
    ap.add_argument("--units", type=int, default=None, help="units in the bench file (default 2000; 80 with --small)")
    ap.add_argument("--work", type=Path, default=None, help="model and files here (default: a temp folder)")
    ap.add_argument("--markdown", type=Path, default=None,
                    help="write the results section here (default: docs/bench-gpu.md on a GPU, none with --small)")
    ap.add_argument("--json", type=Path, default=None, help="also write every number as JSON")
    ap.add_argument("--budget-s", type=float, default=540.0, help="skip optional stages past this many seconds")
    ap.add_argument("--skip-hf", action="store_true", help="no transformers measurements")
    ap.add_argument("--ct2-types", default=None,
                    help="comma-separated CTranslate2 compute types to measure (default: auto and the GPU's 16-bit "
                         "and int8 types); the pipeline profile runs only when `auto` is among them")
    args = ap.parse_args(argv)
    cfg = settings(args)
    if args.ct2_types:
        cfg = dataclasses.replace(cfg, ct2_types=tuple(t.strip() for t in args.ct2_types.split(",") if t.strip()))
    clock = Clock(cfg.budget_s)
    if cfg.device == "cuda":
        cublas = ensure_cublas(clock)
        import ctranslate2

        if ctranslate2.get_cuda_device_count() == 0:
            raise SystemExit("CTranslate2 sees no GPU: run `tower-cat doctor`, or use --device cpu --small")
    else:
        cublas = "no GPU, cuBLAS not needed"
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"settings": dataclasses.asdict(cfg), "environment": environment(cfg, cublas), "engines": []}
    log(clock, f"{results['environment']['device_name']}; {cublas}; work folder {work}")

    hf, results["parameters"], results["times"] = build_model(work, cfg, clock)
    t_convert = time.perf_counter()
    conversion = start_conversion(hf, work / "ct2")
    results["copy_bandwidth"] = copy_bandwidth(cfg.device)
    log(clock, f"copy bandwidth {results['copy_bandwidth'] / 1e9:,.0f} GB/s")
    if not args.skip_hf and clock.allows("transformers measurements", 90 if cfg.device == "cuda" else 10):
        results["engines"].append(measure_hf(hf, cfg, clock))
    try:  # leave the CT2 measurements and the pipeline ~2.5 minutes of the budget
        code = conversion.wait(timeout=max(30.0, clock.budget - 150 - clock.now()))
    except subprocess.TimeoutExpired:
        conversion.kill()
        raise SystemExit(f"converting {hf} took past {clock.now():.0f} s of the {clock.budget:.0f} s budget; "
                         "nothing measured with CTranslate2 (raise --budget-s)") from None
    if code != 0:
        raise SystemExit(f"converting {hf} failed (exit {code})")
    results["times"]["convert"] = time.perf_counter() - t_convert
    log(clock, f"converted in {results['times']['convert']:.1f} s (from the start of the transformers run)")

    # `auto` first, on an empty GPU: its batch budget reads the free memory, and the pipeline runs on it
    for compute_type in cfg.ct2_types:
        if compute_type != "auto" and not clock.allows(f"CT2 {compute_type}", 45 if cfg.device == "cuda" else 5):
            continue
        try:
            row, engine = measure_ct2(work / "ct2", compute_type, cfg, clock)
        except Exception as exc:  # noqa: BLE001 - an unsupported type is a row, not the end
            results["engines"].append({"label": f"CT2 {compute_type}", "compute_type": compute_type,
                                       "load_s": 0.0, "rates": {b: f"failed: {exc}"[:60] for b in cfg.batches}})
            log(clock, f"CT2 {compute_type}: {exc}")
            continue
        results["engines"].append(row)
        if compute_type == "auto":
            profile_pipeline(engine, work, cfg, clock, results)
        engine.close()
        del engine
        _free_cuda()
    results["skipped"] = clock.skipped
    results["total_s"] = clock.now()
    section = report(results, cfg)
    print()
    print(section)
    markdown = args.markdown or (ROOT / "docs" / "bench-gpu.md" if not args.small else None)
    if markdown:
        write_markdown(markdown, section)
        log(clock, f"wrote {markdown}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
