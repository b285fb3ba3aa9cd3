"""Export and evaluation: merge LoRA, save a Hugging Face folder, convert with tower-cat's converter, score.

``export_model(trained, out)`` gives ``out/hf`` (merged weights + tokenizer + chat template) and ``out/ct2``
(CTranslate2 weights + tokenizer files + tower_cat.json, loadable by ``tower_cat.engine.Engine``).
``evaluate_model`` translates held-out pairs with the runtime's own prompt and engine and scores them with
sacrebleu chrF/BLEU (and COMET when a checkpoint is given, through ``tower_cat.metrics``);
``compare`` prints the before/after table and writes it as JSON.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tower_cat.errors import TowerCatError


@dataclass
class ExportResult:
    hf_dir: Path
    ct2_dir: Path | None
    family: str | None
    quantization: str | None
    merged_lora: bool


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str | Path) -> str:
    cfg = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
    return cfg["base_model_name_or_path"]


def merge_lora(adapter_dir: str | Path, out_dir: str | Path, *, base: str | Path | None = None,
               dtype: str = "float32") -> Path:
    """Base model + LoRA adapter -> one plain HF folder (weights merged, tokenizer and chat template copied)."""
    import torch
    import transformers
    from peft import PeftModel

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    base = str(base or adapter_base(adapter_dir))
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(adapter_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.config.use_cache = True
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    gen = Path(base) / "generation_config.json"
    if gen.is_file() and not (out_dir / "generation_config.json").is_file():
        shutil.copy2(gen, out_dir / "generation_config.json")
    return out_dir


def save_hf(trained: str | Path, out_dir: str | Path) -> tuple[Path, bool]:
    """A self-contained HF folder from a training output: merged when it is a LoRA adapter."""
    trained, out_dir = Path(trained), Path(out_dir)
    if is_adapter(trained):
        return merge_lora(trained, out_dir), True
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(trained, out_dir, ignore=shutil.ignore_patterns("checkpoints", "training.json"))
    _enable_cache(out_dir)
    return out_dir, False


def _enable_cache(hf_dir: Path) -> None:
    """Training saves use_cache=False; generation wants it back on."""
    cfg_path = hf_dir / "config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.get("use_cache") is False:
        cfg["use_cache"] = True
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


def export_model(trained: str | Path, out_dir: str | Path, *, quantization: str | None = "int8",
                 convert: bool = True) -> ExportResult:
    """OUT/hf (merged HF model) and OUT/ct2 (tower-cat model folder, `quantization` weights)."""
    from tower_cat.convert import convert_model

    out_dir = Path(out_dir)
    hf, merged = save_hf(trained, out_dir / "hf")
    if not convert:
        return ExportResult(hf, None, None, quantization, merged)
    info = convert_model(hf, out_dir / "ct2", quantization=quantization, force=True)
    return ExportResult(hf, out_dir / "ct2", info.family, quantization, merged)


# --------------------------------------------------------------------------------------------------------
# evaluation


@dataclass
class EvalResult:
    """Scores of one model on the held-out pairs: overall and per direction."""

    model: str
    n: int
    chrf: float
    bleu: float
    comet: float | None = None
    directions: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "n": self.n, "chrf": self.chrf, "bleu": self.bleu, "comet": self.comet,
                "directions": self.directions, "samples": self.samples, "seconds": round(self.seconds, 2)}


def translate_pairs(engine, pairs: Sequence, *, max_new_tokens: int = 256, wording: str | None = None) -> list[str]:
    """Greedy translations of each pair's source with the runtime prompt (tags kept as the model wrote them)."""
    from tower_cat import prompts
    from tower_cat.engine import GenerationOptions

    msgs = [prompts.translate_messages(p.source, p.src_lang, p.tgt_lang, wording=wording or engine.info.wording)
            for p in pairs]
    opts = GenerationOptions(max_new_tokens=max_new_tokens, use_cache=False)
    gens = engine.generate(msgs, opts, sources=[p.source for p in pairs])
    return [prompts.clean_translation(g.text, p.tgt_lang) for g, p in zip(gens, pairs)]


def evaluate_model(model_dir: str | Path, pairs: Sequence, *, comet: str | Path | None = None,
                   device: str = "auto", threads: int | None = None, backend: str = "ct2",
                   max_new_tokens: int = 256, samples: int = 5, engine=None) -> EvalResult:
    """Translate the held-out pairs with MODEL_DIR and score them (tags stripped on both sides)."""
    import time

    from tower_cat import metrics
    from tower_cat.codes import strip_tags
    from tower_cat.engine import Engine

    if not pairs:
        raise TowerCatError("no held-out pairs to evaluate", hint="raise the held-out size", param="heldout")
    started = time.time()
    own = engine is None
    if own:
        engine = Engine.load(model_dir, device=device, threads=threads, backend=backend, cache=None)
    try:
        hyps = translate_pairs(engine, pairs, max_new_tokens=max_new_tokens)
    finally:
        if own:
            engine.close()
    clean = lambda s: " ".join(strip_tags(s).split())  # noqa: E731
    H = [clean(h) for h in hyps]
    R = [clean(p.target) for p in pairs]
    S = [clean(p.source) for p in pairs]
    by_dir: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_dir.setdefault(f"{p.src_lang}-{p.tgt_lang}", []).append(i)
    directions = {}
    comet_total = None
    for d, idx in sorted(by_dir.items()):
        tl = pairs[idx[0]].tgt_lang
        sc = metrics.evaluate([H[i] for i in idx], [R[i] for i in idx], [S[i] for i in idx], comet=comet,
                              target_lang=tl.split("-")[0])
        directions[d] = {"n": len(idx), "chrf": round(sc.chrf, 2), "bleu": round(sc.bleu, 2)}
        if sc.comet is not None:
            directions[d]["comet"] = round(sc.comet, 2)
    overall = metrics.evaluate(H, R, S, comet=None)
    if comet is not None:
        comet_total = sum(directions[d]["comet"] * directions[d]["n"] for d in directions) / len(pairs)
    picked = [{"source": S[i], "reference": R[i], "hypothesis": H[i]} for i in range(min(samples, len(pairs)))]
    return EvalResult(str(model_dir), len(pairs), round(overall.chrf, 2), round(overall.bleu, 2),
                      None if comet_total is None else round(comet_total, 2), directions, picked,
                      time.time() - started)


def compare(before: EvalResult | None, after: EvalResult, json_path: str | Path | None = None):
    """A rich Table of before/after scores (overall and per direction); also written as JSON when asked."""
    from rich.table import Table

    table = Table(title="held-out evaluation")
    for col in ("direction", "n", "metric", "before", "after", "delta"):
        table.add_column(col, justify="left" if col in ("direction", "metric") else "right")
    metrics_ = ["chrf", "bleu"] + (["comet"] if after.comet is not None else [])
    rows = [("all", after.n, {m: getattr(after, m) for m in metrics_},
             {m: getattr(before, m) for m in metrics_} if before else {})]
    for d, sc in after.directions.items():
        rows.append((d, sc["n"], sc, before.directions.get(d, {}) if before else {}))
    for d, n, a, b in rows:
        for m in metrics_:
            av, bv = a.get(m), b.get(m)
            delta = f"{av - bv:+.2f}" if av is not None and bv is not None else ""
            table.add_row(d, str(n), m, "" if bv is None else f"{bv:.2f}", "" if av is None else f"{av:.2f}",
                          delta)
    if json_path is not None:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"before": before.to_dict() if before else None, "after": after.to_dict()}
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return table
