"""Benchmark: the same translate job run locally, on Ray (two CPU actors) and through a remote backend.

    .venv/bin/python bench/scale.py [--units 300] [--markdown docs/bench-scale.md]

One file (bench/pipeline.py's generator: repeats, exact TM matches, codes), one tiny random Llama (hidden 256,
4 layers), every prompt with the same new-token budget, no generation cache. Measured in one run, side by side:

* local: `pipeline.run_files` with the engine's CPU default (CTranslate2 int8, one single-threaded replica per
  core);
* Ray: the same, model batches decoded by two Ray actors (CTranslate2 int8, one thread each) in a private local
  Ray (`ray.init(num_cpus=2)`); the driver does everything else;
* remote: `--backend openai` against llama.cpp's server (llama-cpp-python, the same weights as GGUF f32, two
  threads), prompts sent as token ids.

On one 2-core machine none of the three can beat the others by spreading work: this measures the overhead of
each road (Ray's serialisation and scheduling; HTTP + the server's own scheduling) on the same hardware. The
gain of Ray is more machines; the gain of a remote server is tensor parallelism and exact Gemma 2 on GPUs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

NEW_TOKENS = 24


def _job(engine, xliff: Path, out: Path) -> tuple[float, int, int]:
    from tower_cat import formats, pipeline
    from tower_cat.engine import GenerationOptions

    gen = GenerationOptions(max_new_tokens=NEW_TOKENS, length_ratio=100.0, use_cache=False)
    opts = pipeline.PipelineOptions(generation=gen)
    t0 = time.perf_counter()
    summary = pipeline.run_files("translate", [xliff], [out], engine, options=opts)
    seconds = time.perf_counter() - t0
    if summary.failed:
        raise SystemExit(summary.to_json())
    units = len(formats.load(xliff).units)
    return seconds, units, engine.stats.prompts_generated


def main() -> None:
    from pipeline import make_job  # bench/pipeline.py

    from tower_cat.engine import Engine
    from tower_cat.testing import build_tiny_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=300)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tower-cat-bench-scale-"))
    text, _ = make_job(args.units)
    xliff = work / "bench.xlf"
    xliff.write_text(text, encoding="utf-8")
    model = build_tiny_model(work / "model", "llama", hidden_size=256, layers=4, heads=4, kv_heads=2,
                             intermediate_size=768, max_positions=2048)
    rows = []

    engine = Engine.load(model.ct2_path, device="cpu")
    rows.append(("local (CT2 int8, 2 replicas)",) + _job(engine, xliff, work / "local.xlf"))
    engine.close()

    if importlib.util.find_spec("ray"):
        import ray

        from tower_cat.distributed import RayOptions, use_ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        engine = use_ray(Engine.load(model.ct2_path, device="cpu"), RayOptions(actors=2))
        start = time.perf_counter() - t0
        rows.append((f"Ray, 2 actors (start-up {start:.1f} s not counted)",) + _job(engine, xliff, work / "ray.xlf"))
        engine.close()
        ray.shutdown()
    else:
        print("ray is not installed: Ray row skipped")

    if importlib.util.find_spec("llama_cpp"):
        from tower_cat.testing_gguf import LlamaServer, convert_to_gguf, converter_dir

        conv = converter_dir()
        if conv is None:
            print("llama.cpp converter missing (make remote-deps): remote row skipped")
        else:
            gguf = convert_to_gguf(model.hf_path, work / "model.gguf", conv)
            server = LlamaServer(gguf, threads=2).start()
            try:
                engine = Engine.load(model.ct2_path, backend="openai", endpoint=server.url)
                rows.append(("remote: llama.cpp server (GGUF f32)",) + _job(engine, xliff, work / "remote.xlf"))
                engine.close()
            finally:
                server.stop()
    else:
        print("llama-cpp-python is not installed: remote row skipped")

    # local again, last: the spread between the two local rows is the noise of this machine during the run
    engine = Engine.load(model.ct2_path, device="cpu")
    rows.append(("local again (noise check)",) + _job(engine, xliff, work / "local2.xlf"))
    engine.close()

    base = rows[0][1]
    lines = ["| road | seconds | units | prompts generated | segments/s | vs local |", "|---|---:|---:|---:|---:|---:|"]
    for name, seconds, units, generated in rows:
        lines.append(f"| {name} | {seconds:.1f} | {units} | {generated} | {units / seconds:.1f} | "
                     f"{base / seconds:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        args.markdown.write_text("# Local vs Ray vs remote backend (bench/scale.py)\n\n" + __doc__.split("\n\n", 2)[2]
                                 + "\n\n" + table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
