"""bench/gpu.py's smoke mode: every stage of the GPU benchmark on a tiny model on the CPU (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_bench_smoke_run_on_the_cpu(tmp_path):
    md = tmp_path / "bench-gpu.md"
    md.write_text("# Benchmark\n\nEarlier text stays.\n\n<!-- bench/gpu.py results: begin -->\nold\n"
                  "<!-- bench/gpu.py results: end -->\nAfter the results.\n", encoding="utf-8")
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--small",
                          "--units", "60", "--work", str(tmp_path / "work"), "--markdown", str(md),
                          "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    labels = [e["label"] for e in results["engines"]]
    assert labels[0] == "HF transformers float32" and "CT2 int8 (`auto`)" in labels and "CT2 float32" in labels
    for engine in results["engines"]:
        assert set(engine["rates"]) == {"1", "4", "16"}
        assert all(isinstance(r, float) and r > 0 for r in engine["rates"].values()), engine
    auto = next(e for e in results["engines"] if e.get("requested") == "auto")
    assert auto["compute_type"] == "int8" and "CPU" in auto["reason"]
    assert results["copy_bandwidth"] > 0 and results["parameters"] > 1_000_000
    assert results["batch_budget"]["max_batch_tokens"] == 8192  # the CPU default
    pipeline = results["pipeline"]
    # the pipeline's default chunk is the engine's preferred one (one full batch per replica on the CPU)
    assert [p["name"] for p in pipeline][0] == "default" and pipeline[0]["chunk_size"] == results["preferred_chunk"]
    straight = results["straight"]
    for p in pipeline:
        assert p["units"] == 60 and p["distinct_prompts"] == straight["prompts"] > 0
        assert p["engine_s"] <= p["wall_s"] and p["batches"] >= 1 and 0 < p["token_fill"] <= 1
        assert p["prompt_tokens_max"] >= p["prompt_tokens_mean"] > 20
        assert p["ratio"] == pytest.approx(p["wall_s"] / straight["best_s"])
    assert set(straight["runs"]) == {"16", "64"} and straight["best_s"] > 0
    text = md.read_text()
    assert text.startswith("# Benchmark\n\nEarlier text stays.") and text.rstrip().endswith("After the results.")
    assert "old\n" not in text and "| CT2 int8 (`auto`) |" in text and "engine alone" in text
    assert text.count("<!-- bench/gpu.py results: begin -->") == 1
