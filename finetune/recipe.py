"""The whole recipe in one call: memories -> data -> CPT -> SFT -> export (HF + CT2) -> held-out evaluation.

Layout of OUT::

    data/        train.jsonl heldout.jsonl cpt.jsonl sft.jsonl stats.json
    stages/cpt   stages/sft      training outputs (HF folders, or LoRA adapters + a merged copy)
    baseline/    the base model converted, for the "before" scores
    hf/ ct2/     the tuned model: merged HF folder and tower-cat (CTranslate2) folder
    eval.json    before/after scores; run.json: settings, statistics, timings

A stage whose output is complete (same base, data and settings) is not trained again, and an interrupted
stage resumes from its last checkpoint, so re-running the same command continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tower_cat.finetune.data import DataConfig, Datasets, build_datasets, save_datasets, stats_table
from tower_cat.finetune.export import EvalResult, compare, evaluate_model, export_model, merge_lora, is_adapter
from tower_cat.finetune.train import TrainConfig, TrainResult, train

STAGE_CHOICES = ("cpt", "sft", "both")


@dataclass
class FinetuneConfig:
    stage: str = "both"
    data: DataConfig = field(default_factory=DataConfig)
    cpt: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-4))
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(lr=2e-5))
    quantization: str | None = "int8"
    evaluate: bool = True
    baseline: bool = True               # also score the base model ("before")
    eval_max: int = 200                 # held-out pairs translated per evaluation
    comet: str | None = None            # COMET checkpoint folder for the evaluation
    device: str = "auto"                # for evaluation (training: TrainConfig.device)
    threads: int | None = None


@dataclass
class FinetuneResult:
    out_dir: Path
    datasets: Datasets
    stages: dict[str, TrainResult]
    hf_dir: Path | None
    ct2_dir: Path | None
    before: EvalResult | None
    after: EvalResult | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "hf": str(self.hf_dir) if self.hf_dir else None,
                "ct2": str(self.ct2_dir) if self.ct2_dir else None,
                "stages": {k: v.to_dict() for k, v in self.stages.items()},
                "stats": self.datasets.stats.to_dict(),
                "before": self.before.to_dict() if self.before else None,
                "after": self.after.to_dict() if self.after else None, "seconds": round(self.seconds, 1)}


def _stage_key(base: Path, stage: str, config: TrainConfig, rows: Sequence) -> str:
    h = hashlib.sha256(json.dumps([str(base.resolve()), stage, config.to_dict()], sort_keys=True).encode())
    for r in rows:
        h.update(json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def _run_stage(base: Path, out: Path, stage: str, data: Sequence, config: TrainConfig, tokenizer,
               log) -> tuple[TrainResult, Path]:
    """Train one stage unless a finished run with the same key is there; returns (result, HF folder)."""
    key = _stage_key(base, stage, config, data)
    done = out / "training.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("key") == key:
            log(f"{stage}: already trained in {out}, skipping")
            r = saved["result"]
            result = TrainResult(stage, out, r["steps"], r["examples"], r["tokens"], r["first_loss"],
                                 r["last_loss"], r["seconds"], r["lora"], r.get("dropped", 0), r.get("losses", []))
            return result, (out.parent / f"{out.name}-merged") if is_adapter(out) else out
    result = train(base, out, stage=stage, data=data, config=config, tokenizer=tokenizer)
    saved = json.loads(done.read_text())
    saved["key"] = key
    done.write_text(json.dumps(saved, indent=2) + "\n")
    hf = out
    if is_adapter(out):  # the next stage and the export start from merged weights
        hf = merge_lora(out, out.parent / f"{out.name}-merged")
    log(f"{stage}: {result.steps} steps, loss {result.first_loss:.3f} -> {result.last_loss:.3f}, "
        f"{result.seconds:.0f} s")
    return result, hf


def run_finetune(tm_paths: Sequence[str | Path], base: str | Path, out_dir: str | Path, *,
                 mono_paths: Sequence[str | Path] = (), glossary=None, config: FinetuneConfig | None = None,
                 draft_fn=None, console=None) -> FinetuneResult:
    """Build the data, train the requested stages, export to OUT/hf + OUT/ct2, evaluate before and after."""
    import transformers

    config = config or FinetuneConfig()
    if config.stage not in STAGE_CHOICES:
        raise ValueError(f"unknown stage {config.stage!r}; choose one of {', '.join(STAGE_CHOICES)}")
    started = time.time()
    base, out = Path(base), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = (lambda msg: console.print(msg)) if console is not None else (lambda msg: None)

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base))
    if config.data.wording == "auto":  # the wording the runtime will use for this model's family
        from dataclasses import replace

        from tower_cat.convert import inspect_model

        config.data = replace(config.data, wording=inspect_model(base).wording)
    ds = build_datasets(tm_paths, mono_paths, config.data, glossary=glossary, draft_fn=draft_fn,
                        tokenizer=tokenizer)
    save_datasets(ds, out / "data")
    if console is not None:
        console.print(stats_table(ds.stats))

    stages: dict[str, TrainResult] = {}
    current = base
    if config.stage in ("cpt", "both"):
        stages["cpt"], current = _run_stage(current, out / "stages" / "cpt", "cpt", ds.cpt, config.cpt, tokenizer, log)
    if config.stage in ("sft", "both"):
        stages["sft"], current = _run_stage(current, out / "stages" / "sft", "sft", ds.sft, config.sft, tokenizer, log)

    exported = export_model(current, out, quantization=config.quantization)
    log(f"exported: {exported.hf_dir} (Hugging Face), {exported.ct2_dir} (tower-cat, {config.quantization or 'as trained'})")

    before = after = None
    heldout = ds.heldout[:config.eval_max]
    if config.evaluate and heldout:
        if config.baseline:
            from tower_cat.convert import convert_model

            baseline = out / "baseline"
            if not (baseline / "tower_cat.json").is_file():
                convert_model(base, baseline, quantization=config.quantization, force=True)
            before = evaluate_model(baseline, heldout, comet=config.comet, device=config.device,
                                    threads=config.threads)
        after = evaluate_model(exported.ct2_dir, heldout, comet=config.comet, device=config.device,
                               threads=config.threads)
        table = compare(before, after, out / "eval.json")
        if console is not None:
            console.print(table)
    result = FinetuneResult(out, ds, stages, exported.hf_dir, exported.ct2_dir, before, after, time.time() - started)
    (out / "run.json").write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n",
                                  encoding="utf-8")
    return result
