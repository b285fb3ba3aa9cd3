"""The whole recipe in one call: memories -> data -> CPT -> SFT -> export (HF + CT2) -> held-out evaluation.

Layout of OUT::

    data/        train/ heldout/ cpt/ sft/ (sharded Arrow), heldout.jsonl, stats.json
    stages/cpt   stages/sft      training outputs (HF folders, or LoRA adapters + a merged copy)
    baseline/    the base model converted, for the "before" scores
    hf/ ct2/     the tuned model: merged HF folder and tower-cat (CTranslate2) folder
    rejected/    instead of hf/ ct2/ when the held-out scores fell (the regression guard)
    eval.json    before/after scores; run.json: settings, statistics, timings

A stage whose output is complete (same base, data and settings) is not trained again, and an interrupted
stage resumes from its last checkpoint, so re-running the same command continues where it stopped.

Under ``accelerate launch`` (several processes) every process runs this: the main process builds the data
while the others wait, all processes train each stage together, and the main process exports and evaluates.

The regression guard: the tuned model is exported to a candidate folder and scored; when its held-out
chrF (COMET, when a checkpoint is given) is lower than the base model's, it is moved to OUT/rejected, the
run fails with ``RegressionError`` and OUT/hf, OUT/ct2 are not written — unless `allow_regression`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tower_cat.errors import InvalidArgument, TowerCatError
from tower_cat.finetune.data import DataConfig, Datasets, build_datasets, open_datasets, stats_table
from tower_cat.finetune.export import EvalResult, compare, evaluate_model, export_model, is_adapter, merge_lora
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
    allow_regression: bool = False      # export even when the held-out score fell
    regression_tolerance: float = 0.0   # a fall of at most this many points is not a regression


class RegressionError(TowerCatError):
    """The tuned model scores lower on the held-out split than the model it started from."""

    exit_code = 3


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
    regression: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "hf": str(self.hf_dir) if self.hf_dir else None,
                "ct2": str(self.ct2_dir) if self.ct2_dir else None,
                "stages": {k: v.to_dict() for k, v in self.stages.items()},
                "stats": self.datasets.stats.to_dict(),
                "before": self.before.to_dict() if self.before else None,
                "after": self.after.to_dict() if self.after else None, "seconds": round(self.seconds, 1),
                "regression": self.regression}


def _stage_key(base: Path, stage: str, config: TrainConfig, data_dir: Path | None) -> str:
    """Same base, stage, settings and data (the data folder's statistics and shard sizes) -> same key."""
    h = hashlib.sha256(json.dumps([str(base.resolve()), stage, config.to_dict()], sort_keys=True).encode())
    if data_dir is not None:
        h.update((data_dir / "stats.json").read_bytes())
        split = data_dir / stage
        for f in sorted(split.glob("shard-*.arrow")):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def _run_stage(base: Path, out: Path, stage: str, data, config: TrainConfig, tokenizer, log,
               data_dir: Path | None) -> tuple[TrainResult, Path]:
    """Train one stage unless a finished run with the same key is there; returns (result, HF folder)."""
    from accelerate import PartialState

    state = PartialState()
    key = _stage_key(base, stage, config, data_dir)
    done = out / "training.json"
    merged = out.parent / f"{out.name}-merged"
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("key") == key:
            log(f"{stage}: already trained in {out}, skipping")
            r = saved["result"]
            result = TrainResult(stage, out, r["steps"], r["examples"], r["tokens"], r["first_loss"],
                                 r["last_loss"], r["seconds"], r["lora"], r.get("dropped", 0), r.get("losses", []))
            return result, merged if is_adapter(out) else out
    state.wait_for_everyone()
    result = train(base, out, stage=stage, data=data, config=config, tokenizer=tokenizer)
    hf = out
    if state.is_main_process:
        saved = json.loads(done.read_text())
        saved["key"] = key
        if is_adapter(out):  # the next stage and the export start from merged weights
            merge_lora(out, merged)
        done.write_text(json.dumps(saved, indent=2) + "\n")
    state.wait_for_everyone()
    if is_adapter(out):
        hf = merged
    log(f"{stage}: {result.steps} steps, loss {result.first_loss:.3f} -> {result.last_loss:.3f}, "
        f"{result.seconds:.0f} s")
    return result, hf


def regression_of(before: EvalResult | None, after: EvalResult | None, tolerance: float = 0.0) -> dict | None:
    """What fell, or None: COMET when both runs have it, chrF otherwise."""
    if before is None or after is None:
        return None
    metric = "comet" if before.comet is not None and after.comet is not None else "chrf"
    b, a = getattr(before, metric), getattr(after, metric)
    if a < b - tolerance:
        return {"metric": metric, "before": b, "after": a, "delta": round(a - b, 2)}
    return None


def guard_and_publish(candidate: Path, out: Path, before: EvalResult | None, after: EvalResult | None, *,
                      allow_regression: bool, tolerance: float, log) -> tuple[Path | None, Path | None, dict | None]:
    """Move CANDIDATE/hf and CANDIDATE/ct2 to OUT/hf and OUT/ct2, or — when the held-out score fell and
    regressions are not allowed — to OUT/rejected, and raise ``RegressionError`` (after the caller's records)."""
    fell = regression_of(before, after, tolerance)
    if fell and not allow_regression:
        rejected = out / "rejected"
        if rejected.exists():
            shutil.rmtree(rejected)
        candidate.rename(rejected)
        return None, None, fell
    if fell:
        log(f"[bold red]held-out {fell['metric']} fell {fell['before']:.2f} -> {fell['after']:.2f} "
            f"({fell['delta']:+.2f}); exported anyway (--allow-regression)[/]")
    for name in ("hf", "ct2"):
        if (out / name).exists():
            shutil.rmtree(out / name)
        if (candidate / name).exists():
            (candidate / name).rename(out / name)
    shutil.rmtree(candidate, ignore_errors=True)
    (out / "rejected").exists() and shutil.rmtree(out / "rejected")
    return (out / "hf"), (out / "ct2") if (out / "ct2").exists() else None, fell


def regression_message(fell: dict, out: Path) -> str:
    return (f"held-out {fell['metric']} fell from {fell['before']:.2f} to {fell['after']:.2f} "
            f"({fell['delta']:+.2f}): the tuned model is worse than the model it started from; it was not "
            f"exported (kept in {out / 'rejected'})")


def evaluate_pair(base: Path, tuned_ct2: Path | None, heldout, out: Path, config: FinetuneConfig, log):
    """(before, after) on the held-out pairs: the base converted once into OUT/baseline, the tuned model."""
    before = after = None
    if not (config.evaluate and heldout and tuned_ct2 is not None):
        return None, None
    if config.baseline:
        from tower_cat.convert import convert_model

        baseline = out / "baseline"
        if not (baseline / "tower_cat.json").is_file():
            convert_model(base, baseline, quantization=config.quantization, force=True)
        before = evaluate_model(baseline, heldout, comet=config.comet, device=config.device, threads=config.threads)
    after = evaluate_model(tuned_ct2, heldout, comet=config.comet, device=config.device, threads=config.threads)
    table = compare(before, after, out / "eval.json")
    log(table)
    return before, after


def run_finetune(tm_paths: Sequence[str | Path], base: str | Path, out_dir: str | Path, *,
                 mono_paths: Sequence[str | Path] = (), glossary=None, config: FinetuneConfig | None = None,
                 draft_fn=None, console=None) -> FinetuneResult:
    """Build the data, train the requested stages, export to OUT/hf + OUT/ct2, evaluate before and after.

    Raises ``RegressionError`` (after writing eval.json and run.json) when the held-out score fell and
    `config.allow_regression` is off. Under ``accelerate launch``, processes other than the main one return
    after training with no export (``hf_dir``/``ct2_dir`` None).
    """
    import transformers
    from accelerate import PartialState

    config = config or FinetuneConfig()
    if config.stage not in STAGE_CHOICES:
        raise InvalidArgument(f"unknown stage {config.stage!r}; choose one of {', '.join(STAGE_CHOICES)}")
    started = time.time()
    base, out = Path(base), Path(out_dir)
    device = config.cpt.device if config.stage == "cpt" else config.sft.device
    state = PartialState(cpu=device == "cpu")
    main = state.is_main_process
    log = (lambda msg: console.print(msg)) if console is not None and main else (lambda msg: None)

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base))
    if config.data.wording == "auto":  # the wording the runtime will use for this model's family
        from dataclasses import replace

        from tower_cat.convert import inspect_model

        config.data = replace(config.data, wording=inspect_model(base).wording)
    data_dir = out / "data"
    if main:
        out.mkdir(parents=True, exist_ok=True)
        ds = build_datasets(tm_paths, mono_paths, config.data, glossary=glossary, draft_fn=draft_fn,
                            tokenizer=tokenizer, out_dir=data_dir)
        log(stats_table(ds.stats))
    state.wait_for_everyone()
    if not main:
        ds = open_datasets(data_dir)

    stages: dict[str, TrainResult] = {}
    current = base
    if config.stage in ("cpt", "both"):
        stages["cpt"], current = _run_stage(current, out / "stages" / "cpt", "cpt", data_dir / "cpt", config.cpt,
                                            tokenizer, log, data_dir)
    if config.stage in ("sft", "both"):
        stages["sft"], current = _run_stage(current, out / "stages" / "sft", "sft", data_dir / "sft", config.sft,
                                            tokenizer, log, data_dir)
    if not main:
        return FinetuneResult(out, ds, stages, None, None, None, None, time.time() - started)

    candidate = out / "candidate"
    if candidate.exists():
        shutil.rmtree(candidate)
    exported = export_model(current, candidate, quantization=config.quantization)
    heldout = list(ds.heldout[:config.eval_max])
    before, after = evaluate_pair(base, exported.ct2_dir, heldout, out, config, log)
    hf_dir, ct2_dir, fell = guard_and_publish(candidate, out, before, after, allow_regression=config.allow_regression,
                                              tolerance=config.regression_tolerance, log=log)
    if ct2_dir is not None:
        log(f"exported: {hf_dir} (Hugging Face), {ct2_dir} (tower-cat, {config.quantization or 'as trained'})")
    result = FinetuneResult(out, ds, stages, hf_dir, ct2_dir, before, after, time.time() - started, fell)
    (out / "run.json").write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n",
                                  encoding="utf-8")
    if fell and not config.allow_regression:
        raise RegressionError(regression_message(fell, out), hint="look at eval.json; lower the learning rate or "
                              "the number of steps, or pass allow_regression to export it anyway",
                              param="allow_regression")
    return result
