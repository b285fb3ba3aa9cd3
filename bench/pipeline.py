"""Benchmark: `tower-cat translate` on a generated 2 000-unit XLIFF vs a per-segment Hugging Face `generate` loop.

    .venv/bin/python bench/pipeline.py [--units 2000] [--threads 1] [--hf-sample 60] [--markdown docs/bench-pipeline.md]

The file: XLIFF 1.2, en-US -> de-DE, 30 % of the units repeat an earlier source, 20 % are exact TM matches, about
a quarter of the sources carry inline codes (<g>, <x/>), the rest are new sentences with fuzzy TM neighbours. The
model: a random Llama from `tower_cat.testing` (hidden 384, 6 layers, 32k-row vocabulary: ~34M parameters; an 8k
BPE tokenizer trained on the samples, which splits English about as finely as Llama's) so that the model dominates
the time; every prompt stops at a fixed token budget.

Measured in one run:
* tower-cat: `pipeline.run_files` (load, TM lookups, prompts with few-shot examples, engine batching + dedup +
  SQLite cache, code restoration, QA, save), CTranslate2 int8 (tower-cat's CPU default). Model time = time inside
  `engine.generate`; the decoder alone = time inside CTranslate2's generate. Then the same command again (cached).
* the alternative a user would write: for each unit, the same chat prompt through `tokenizer.apply_chat_template`
  and `model.generate` (transformers, float32, greedy, the same new-token budget per unit), one segment at a time,
  no dedup, no TM. Timed on a sample of units and reported as segments/s.
Both use the same number of CPU threads.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NEW_TOKENS = 32

ADJ = ["shared", "archived", "new", "old", "private", "pinned", "large", "empty", "locked", "recent", "daily",
       "weekly", "default", "custom", "hidden", "synced", "exported", "imported", "deleted", "selected"]
NOUN = ["note", "notebook", "board", "task", "project", "file", "tag", "template", "reminder", "comment",
        "attachment", "workspace", "folder", "calendar", "checklist", "sidebar", "invitation", "account",
        "report", "dashboard"]
VERB = ["was moved to", "cannot be opened from", "is stored in", "was copied into", "will be synced with",
        "was removed from", "is linked to", "was exported from", "is shared with", "was restored to"]
PLACE = ["the trash", "your workspace", "the sidebar", "another project", "the cloud", "this device", "the archive",
         "the team folder", "the shared space", "the desktop app"]


def sentence(rng: random.Random, n: int) -> tuple[str, str]:
    """(plain text, XLIFF source markup) of a new sentence; some carry inline codes."""
    a, b = rng.choice(ADJ), rng.choice(NOUN)
    c, d = rng.choice(VERB), rng.choice(PLACE)
    extra = rng.choice(["", f" after {n % 90 + 2} days", f" at {n % 12 + 1}:{n % 60:02d}", f" ({n} items)"])
    text = f"The {a} {b} {c} {d}{extra}."
    kind = rng.random()
    if kind < 0.15:
        markup = f'The <g id="1" ctype="bold">{a} {b}</g> {c} {escape(d)}{escape(extra)}.'
    elif kind < 0.25:
        markup = f'The {a} {b} {c} {escape(d)}{escape(extra)}.<x id="1" ctype="lb"/>'
    else:
        markup = escape(text)
    return text, markup


def make_job(units: int, seed: int = 0):
    """The XLIFF text, and the TM entries (source markup, target markup) for the exact and fuzzy matches."""
    rng = random.Random(seed)
    sources: list[str] = []
    tm_pairs: list[tuple[str, str]] = []
    fresh: list[str] = []
    n = 0
    for i in range(units):
        r = rng.random()
        if r < 0.30 and fresh:
            sources.append(rng.choice(fresh))  # a repeat of an earlier source
            continue
        n += 1
        _, markup = sentence(rng, n)
        sources.append(markup)
        if r < 0.50:  # 20 % of all units: exact TM match
            tm_pairs.append((markup, "[de] " + markup))
        else:
            fresh.append(markup)
            if rng.random() < 0.6:  # a fuzzy neighbour in the TM for few-shot
                tm_pairs.append((markup.replace("The ", "This ", 1).rstrip(".") + " now.", "[de-fuzzy] " + markup))
    body = "\n".join(f'      <trans-unit id="u{i}"><source>{s}</source></trans-unit>' for i, s in enumerate(sources))
    xliff = ('<?xml version="1.0" encoding="UTF-8"?>\n'
             '<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">\n'
             '  <file original="bench.json" source-language="en-US" target-language="de-DE" datatype="plaintext">\n'
             f'    <body>\n{body}\n    </body>\n  </file>\n</xliff>\n')
    return xliff, tm_pairs


def build_model(root: Path):
    from tower_cat.testing import build_tiny_model

    if (root / "ct2" / "model.bin").is_file():
        from tower_cat.testing import TinyModel

        return TinyModel("llama", root / "hf", root / "ct2", None)
    # an 8k BPE trained on the samples (5.4k tokens used) splits English about as finely as Llama's own tokenizer;
    # the 512-token default of the tests would make every prompt 2-3x longer than a real model sees it
    return build_tiny_model(root, "llama", vocab_size=8000, hidden_size=384, layers=6, heads=6, kv_heads=2,
                            intermediate_size=1024, model_vocab_size=32000, max_positions=2048)


def params(hf_path: Path) -> int:
    import math

    from safetensors import safe_open

    total = 0
    for f in hf_path.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return total


def run_towercat(model, xliff: Path, tm_pairs, work: Path, threads: int):
    from tower_cat import pipeline
    from tower_cat.document import Segment
    from tower_cat.engine import Engine, GenerationOptions
    from tower_cat.tm import TranslationMemory

    memory = TranslationMemory(work / "tm.sqlite")
    if len(memory) == 0:
        segments = _segments([src for src, _ in tm_pairs], work)  # as the XLIFF reader makes them: codes line up
        memory.add_many([(seg, Segment(["[de] "] + list(seg.parts))) for seg in segments], "en-US", "de-DE")
    engine = Engine.load(model.ct2_path, device="cpu", threads=threads, cache=work / "generations.sqlite")
    decoder = [0.0]
    backend = engine.backend  # load now: loading is not translation time
    real = backend.generate

    def timed(*args, **kwargs):
        it = real(*args, **kwargs)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                decoder[0] += time.perf_counter() - t0
                return
            decoder[0] += time.perf_counter() - t0
            yield item

    backend.generate = timed
    gen = GenerationOptions(max_new_tokens=NEW_TOKENS, length_ratio=100.0)  # every prompt: the same budget
    runs = {}
    for name, opts in (("default", pipeline.PipelineOptions(generation=gen)),
                       ("plain", pipeline.PipelineOptions(generation=gen, few_shot=0, context_window=0, notes=False))):
        decoder[0] = 0.0
        before = engine.stats.prompts_generated
        t0 = time.perf_counter()
        summary = pipeline.run_files("translate", [xliff], [work / f"out-{name}.xlf"], engine, tm=memory,
                                     options=opts)
        runs[name] = (summary, time.perf_counter() - t0, decoder[0], engine.stats.prompts_generated - before)
        if name == "default":  # the same command again: everything comes from the cache
            before = engine.stats.prompts_generated
            t0 = time.perf_counter()
            pipeline.run_files("translate", [xliff], [work / "out-again.xlf"], engine, tm=memory, options=opts)
            runs["again"] = (None, time.perf_counter() - t0, 0.0, engine.stats.prompts_generated - before)
    engine.close()
    memory.close()
    return runs


def _segments(markups: list[str], work: Path):
    """Segments for TM entries: the markups read through the XLIFF reader (one file, one load)."""
    from tower_cat import formats

    body = "".join(f'<trans-unit id="{i}"><source>{m}</source></trans-unit>' for i, m in enumerate(markups))
    path = work / "tm-sources.xlf"
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="1.2" '
                    'xmlns="urn:oasis:names:tc:xliff:document:1.2"><file original="x" source-language="en-US" '
                    f'target-language="de-DE" datatype="plaintext"><body>{body}</body></file></xliff>',
                    encoding="utf-8")
    return [u.source for u in formats.load(path).units]


def run_hf_loop(model, xliff: Path, sample: int, threads: int) -> tuple[float, int, float]:
    """The loop a user would write: one segment at a time through transformers' generate."""
    import torch
    import transformers

    from tower_cat import codes, formats, prompts

    torch.set_num_threads(threads)
    tok = transformers.AutoTokenizer.from_pretrained(str(model.hf_path))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(model.hf_path), dtype=torch.float32).eval()
    doc = formats.load(xliff)
    units = doc.units[:sample]
    t0 = time.perf_counter()
    new_tokens = 0
    for u in units:
        text = codes.render(u.source).text
        messages = prompts.translate_messages(text, "en-US", "de-DE")
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        with torch.inference_mode():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False,
                              pad_token_id=tok.eos_token_id)
        new_tokens += out.shape[1] - ids.shape[1]
        tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    seconds = time.perf_counter() - t0
    return seconds, len(units), new_tokens / len(units)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for both (default 1: stable on a shared box)")
    ap.add_argument("--hf-sample", type=int, default=60, help="units timed through the HF loop")
    ap.add_argument("--work", type=Path, default=None, help="keep the model and files here (default: temp dir)")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("tm.sqlite", "tm.sqlite-wal", "tm.sqlite-shm", "generations.sqlite", "generations.sqlite-wal",
                  "generations.sqlite-shm"):
        (work / stale).unlink(missing_ok=True)
    t = time.perf_counter()
    model = build_model(work / "model")
    n_params = params(model.hf_path)
    print(f"model: random Llama, {n_params / 1e6:.1f}M parameters ({time.perf_counter() - t:.0f} s to build)")
    xliff_text, tm_pairs = make_job(args.units)
    xliff = work / "bench.xlf"
    xliff.write_text(xliff_text, encoding="utf-8")

    runs = run_towercat(model, xliff, tm_pairs, work, args.threads)
    summary, wall, decoder, generated = runs["default"]
    plain, plain_wall, plain_decoder, plain_generated = runs["plain"]
    _, cached, _, cached_generated = runs["again"]
    tot = summary.totals()
    model_s = summary.model_seconds
    print(f"tower-cat: {tot['units']} units, {tot['tm_leveraged']} from the TM, {summary.prompts} distinct prompts "
          f"for {tot['units'] - tot['tm_leveraged']} model units; {wall:.1f} s")

    hf_s, hf_n, hf_tokens = run_hf_loop(model, xliff, args.hf_sample, args.threads)
    hf_rate = hf_n / hf_s
    tc_rate = tot["units"] / wall
    plain_rate = tot["units"] / plain_wall
    overhead = (wall - model_s) / wall
    plain_overhead = (plain_wall - plain.model_seconds) / plain_wall
    rows = [
        ("units in the file", f"{tot['units']:,}", ""),
        ("… filled from the TM (never reach the model)", f"{tot['tm_leveraged']:,}", ""),
        ("… repeats folded into one prompt", f"{tot['units'] - tot['tm_leveraged'] - summary.prompts:,}", ""),
        ("distinct prompts generated", f"{summary.prompts:,}", f"{NEW_TOKENS} new tokens each"),
        ("**tower-cat translate, default prompts** (3 fuzzy TM examples, ±1 neighbour)", f"{wall:.1f} s",
         f"{tc_rate:.1f} segments/s"),
        ("… inside engine.generate (model time)", f"{model_s:.1f} s", f"{100 * model_s / wall:.1f} % of total"),
        ("… CTranslate2 decoding alone", f"{decoder:.1f} s", f"{100 * decoder / wall:.1f} % of total"),
        ("… everything else (load, TM, prompts, codes, QA, save)", f"{wall - model_s:.2f} s",
         f"**{100 * overhead:.1f} %** (goal < 5 %)"),
        ("same command again (all from the cache)", f"{cached:.1f} s", f"{cached_generated} prompts generated"),
        ("**tower-cat translate, plain prompts** (`--few-shot 0 --context 0`: the loop's prompt)",
         f"{plain_wall:.1f} s", f"{plain_rate:.1f} segments/s; non-model {100 * plain_overhead:.1f} %"),
        (f"**HF `generate` loop**, plain prompt, one segment at a time ({hf_n} units timed)", f"{hf_s:.1f} s",
         f"{hf_rate:.2f} segments/s ({hf_tokens:.0f} new tokens/unit)"),
        ("HF loop for the whole file (extrapolated)", f"{tot['units'] / hf_rate:.0f} s", ""),
        ("**speed-up, same prompts** (plain tower-cat vs loop)", f"**{plain_rate / hf_rate:.1f}×**", "goal ≥ 10×"),
        ("speed-up, default tower-cat vs loop", f"{tc_rate / hf_rate:.1f}×",
         "richer prompts cost prefill time"),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for a, b, c in rows:
        print(f"{a.replace('**', ''):<{width}}  {b.replace('**', ''):>10}  {c.replace('**', '')}")
    if args.markdown:
        import platform

        lines = ["| measure | value | note |", "|---|---:|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
        header = (f"Model: random Llama, {n_params / 1e6:.1f}M parameters (hidden 384, 6 layers, 32k vocabulary), "
                  f"CTranslate2 int8 for tower-cat, transformers float32 for the loop; {args.threads} CPU thread(s), "
                  f"{platform.processor() or platform.machine()}, Python {platform.python_version()}.")
        args.markdown.write_text(header + "\n\n" + "\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
