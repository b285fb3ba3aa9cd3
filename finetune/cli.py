"""``tower-cat finetune``: tune a Tower-family model on a client's translation memories.

    tower-cat finetune --tm client.tmx [--tm more.xlf] [--mono texts/] --base HF_DIR --out DIR
                       [--lora] [--stage cpt|sft|both] [--epochs N] [--source en --target de]
    tower-cat finetune data --tm client.tmx [--source en --target de] [--out DIR] [--json]
    tower-cat finetune evaluate --model OUT/ct2 --heldout OUT/data/heldout.jsonl [--baseline DIR]
    tower-cat finetune dpo --model OUT --out DPO_DIR [--qe chrf|comet:DIR] [-n 4]   (optional preference stage)
    tower-cat finetune rl --model OUT --out RL_DIR [--glossary G] [--comet DIR]    (GRPO, verifiable rewards)
    tower-cat finetune train --data OUT/data --stage sft --base HF_DIR --out DIR     (one stage, prepared data)

Several GPUs (DDP, FSDP, DeepSpeed ZeRO from an accelerate config)::

    tower-cat finetune --accelerate-config finetune/accelerate/ddp.yaml --tm … --base … --out …
    accelerate launch --config_file finetune/accelerate/fsdp.yaml -m tower_cat.finetune --tm … --base … --out …

Group options (``--tm``, ``--base``, ...) come before a subcommand name; ``--tm``, ``--mono`` and
``--target`` repeat (``--mono`` also takes a folder of .txt files).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import click

from tower_cat.finetune.recipe import STAGE_CHOICES
from tower_cat.outputs import refuse_output_folder_overlaps, refuse_overlaps


def _data_options(func: Callable) -> Callable:
    options = [
        click.option("--tm", "tm_paths", multiple=True, metavar="FILE|DB|URL",
                     help="Translation memory: TMX, XLIFF or PO, a TM database or a postgresql:// URL (repeat for "
                          "several)."),
        click.option("--mono", "mono_paths", multiple=True, type=click.Path(exists=True, path_type=Path),
                     help="Monolingual text for CPT: a .txt file or a folder of them (repeatable)."),
        click.option("--glossary", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="TBX or CSV/TSV glossary: terminology-aware examples."),
        click.option("--source", "source_lang", default=None, help="Source language (default: the TM's)."),
        click.option("--target", "target_langs", multiple=True,
                     help="Target language (repeatable; default: every other language in the TM)."),
        click.option("--wording", type=click.Choice(["auto", "instruct", "plus", "base"]), default="auto",
                     show_default=True, help="Prompt wording; auto: from the model's family."),
        click.option("--heldout", type=float, default=0.05, show_default=True,
                     help="Held-out sources: a share (<1) or a number (>=1)."),
        click.option("--parallel-share", type=float, default=1 / 3, show_default=True,
                     help="Share of parallel documents in the CPT corpus."),
        click.option("--post-edit-rate", type=float, default=0.3, show_default=True,
                     help="Post-editing examples per training pair."),
        click.option("--few-shot", "few_shot", type=int, default=3, show_default=True,
                     help="Most TM examples in a prompt, as `translate --few-shot` (0: no TM search at all)."),
        click.option("--runtime-share", type=float, default=0.5, show_default=True,
                     help="Share of translation examples built as `translate` sends its prompt by default: "
                          "context + notes + terms + few-shot together."),
        click.option("--draft-model", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
                     help="A tower-cat model whose translations become the post-editing drafts "
                          "(default: seeded synthetic errors)."),
        click.option("--seed", type=int, default=0, show_default=True),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _data_config(source_lang, target_langs, wording, heldout, parallel_share, post_edit_rate, few_shot,
                 runtime_share, seed):
    from tower_cat.finetune.data import DataConfig

    return DataConfig(source=source_lang, targets=tuple(target_langs), wording=wording, heldout=heldout,
                      parallel_share=parallel_share, post_edit_rate=post_edit_rate, fewshot_max=few_shot,
                      fewshot_rate=0.4 if few_shot > 0 else 0.0, runtime_share=runtime_share, seed=seed)


def _argv_of(ctx: click.Context, skip: tuple[str, ...]) -> list[str]:
    """The command line that gives these parameter values (to relaunch the same run under accelerate)."""
    argv: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in skip:
            continue
        value = ctx.params.get(param.name)
        if value is None or value == () or value == param.default and not param.multiple:
            continue
        if param.is_flag:
            if param.secondary_opts:
                argv.append(param.opts[0] if value else param.secondary_opts[0])
            elif value:
                argv.append(param.opts[0])
            continue
        for v in (value if param.multiple else (value,)):
            argv += [param.opts[0], str(v)]
    return argv


def launch_with_accelerate(config_file: Path, argv: list[str]) -> int:
    """Run ``accelerate launch --config_file FILE -m tower_cat.finetune ARGV`` and wait; its exit status."""
    import subprocess

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
           "-m", "tower_cat.finetune", *argv]
    return subprocess.call(cmd)


def _fail_regression(console, exc) -> None:
    console.print(f"[bold red]regression: {exc.message}[/]")
    if exc.hint:
        console.print("[red]  --allow-regression exports it anyway; or lower the learning rate / steps[/]")
    raise SystemExit(exc.exit_code)


def _wording(wording: str, model_dir: Path | None) -> str:
    if wording != "auto":
        return wording
    if model_dir is None:
        return "instruct"
    from tower_cat.convert import ModelInfo, inspect_model

    try:
        return ModelInfo.load(model_dir).wording if (model_dir / "tower_cat.json").is_file() \
            else inspect_model(model_dir).wording
    except Exception:  # noqa: BLE001 - an unreadable folder fails later with a clear message
        return "instruct"


def _draft_fn(draft_model: Path | None, device: str, threads: int | None):
    if draft_model is None:
        return None, None
    from tower_cat.engine import Engine
    from tower_cat.finetune.data import model_drafts

    engine = Engine.load(draft_model, device=device, threads=threads, cache=None)
    return model_drafts(engine), engine


@click.group("finetune", invoke_without_command=True)
@_data_options
@click.option("--base", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The Hugging Face model folder to start from (e.g. TowerInstruct-7B-v0.2).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder: data/, stages/, hf/, ct2/, eval.json.")
@click.option("--stage", type=click.Choice(STAGE_CHOICES), default="both", show_default=True)
@click.option("--lora/--full", default=False, show_default=True, help="LoRA adapters or all weights.")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--lora-alpha", type=int, default=32, show_default=True)
@click.option("--epochs", type=float, default=None, help="Epochs for both stages (default: CPT 1, SFT 2).")
@click.option("--max-steps", type=int, default=None, help="Optimizer steps per stage (overrides --epochs).")
@click.option("--lr", type=float, default=None, help="SFT learning rate (default 2e-5 full, 2e-4 LoRA).")
@click.option("--cpt-lr", type=float, default=None, help="CPT learning rate (default 1e-5 full, 1e-4 LoRA).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Sequences per micro-batch.")
@click.option("--grad-accum", type=int, default=4, show_default=True, help="Micro-batches per step.")
@click.option("--seq-len", type=int, default=1024, show_default=True, help="CPT block / longest SFT example.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True)
@click.option("--gradient-checkpointing", is_flag=True, help="Trade compute for memory (large models).")
@click.option("--save-every", type=int, default=200, show_default=True, help="Checkpoint every N steps (0: off).")
@click.option("--quantization", default="int8", show_default=True, help="CT2 weights: int8, bfloat16, ...")
@click.option("--no-eval", is_flag=True, help="Skip the held-out evaluation.")
@click.option("--no-baseline", is_flag=True, help="Do not score the base model (saves a conversion).")
@click.option("--comet", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="COMET checkpoint folder: add COMET to the evaluation.")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads.")
@click.option("--allow-regression", is_flag=True,
              help="Export the tuned model even when its held-out chrF (COMET with --comet) is lower than the "
                   "base model's (default: fail with exit status 3 and keep it in OUT/rejected).")
@click.option("--accelerate-config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Run under `accelerate launch` with this config (DDP / FSDP / DeepSpeed, e.g. "
                   "finetune/accelerate/ddp.yaml).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_context
def finetune(ctx, tm_paths, mono_paths, glossary, source_lang, target_langs, wording, heldout, parallel_share,
             post_edit_rate, few_shot, runtime_share, draft_model, seed, base, out_dir, stage, lora, lora_r, lora_alpha, epochs,
             max_steps, lr, cpt_lr, batch_size, grad_accum, seq_len, precision, gradient_checkpointing, save_every,
             quantization, no_eval, no_baseline, comet, device, threads, allow_regression, accelerate_config,
             as_json) -> int | None:
    """Continued pretraining + instruction tuning on translation memories, exported for tower-cat."""
    if ctx.invoked_subcommand is not None:
        return None
    missing = [name for name, v in (("--tm", tm_paths), ("--base", base), ("--out", out_dir)) if not v]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use a subcommand: data, train, evaluate, dpo, rl)")
    refuse_output_folder_overlaps({"--out": out_dir}, {
        "--tm": tm_paths, "--mono": mono_paths, "--glossary": glossary, "--base": base, "--draft-model": draft_model,
        "--comet": comet, "--accelerate-config": accelerate_config})
    if accelerate_config is not None:
        ctx.exit(launch_with_accelerate(accelerate_config, _argv_of(ctx, ("accelerate_config",))))
    from rich.console import Console

    from tower_cat.finetune.recipe import FinetuneConfig, RegressionError, run_finetune
    from tower_cat.finetune.train import TrainConfig

    console = Console(stderr=as_json)
    common = dict(batch_size=batch_size, grad_accum=grad_accum, seq_len=seq_len, lora=lora, lora_r=lora_r,
                  lora_alpha=lora_alpha, precision=precision, gradient_checkpointing=gradient_checkpointing,
                  device=device, threads=threads, seed=seed, save_every=save_every, max_steps=max_steps,
                  progress=sys.stderr.isatty())
    cfg = FinetuneConfig(
        stage=stage,
        data=_data_config(source_lang, target_langs, _wording(wording, base), heldout, parallel_share,
                          post_edit_rate, few_shot, runtime_share, seed),
        cpt=TrainConfig(epochs=epochs or 1.0, lr=cpt_lr or (1e-4 if lora else 1e-5), **common),
        sft=TrainConfig(epochs=epochs or 2.0, lr=lr or (2e-4 if lora else 2e-5), **common),
        quantization=None if quantization in ("none", "") else quantization, evaluate=not no_eval,
        baseline=not no_baseline, comet=str(comet) if comet else None, device=device, threads=threads,
        allow_regression=allow_regression)
    draft, engine = _draft_fn(draft_model, device, threads)
    try:
        result = run_finetune(tm_paths, base, out_dir, mono_paths=mono_paths, glossary=glossary, config=cfg,
                              draft_fn=draft, console=console)
    except RegressionError as exc:
        _fail_regression(Console(stderr=True), exc)
    finally:
        if engine is not None:
            engine.close()
    if result.ct2_dir is None:   # a process other than the main one under accelerate: nothing to report
        return 0
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        console.print(f"tuned model: {result.ct2_dir}  (translate with: tower-cat translate FILE --model "
                      f"{result.ct2_dir})")
    return 0


@finetune.command("data")
@_data_options
@click.option("--tokenizer", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="HF model folder whose tokenizer counts tokens (and whose family picks the wording).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the train/heldout/cpt/sft splits (sharded Arrow), heldout.jsonl and stats.json here.")
@click.option("--show", type=int, default=0, help="Print N SFT examples.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def data_cmd(tm_paths, mono_paths, glossary, source_lang, target_langs, wording, heldout, parallel_share,
             post_edit_rate, few_shot, runtime_share, draft_model, seed, tokenizer, out_dir, show, as_json) -> int:
    """Only build the datasets: statistics, and JSONL files with --out."""
    refuse_output_folder_overlaps({"--out": out_dir}, {
        "--tm": tm_paths, "--mono": mono_paths, "--glossary": glossary, "--tokenizer": tokenizer,
        "--draft-model": draft_model})
    from rich.console import Console

    from tower_cat.finetune.data import build_datasets, save_datasets, stats_table

    if not tm_paths:
        raise click.UsageError("give at least one --tm file")
    tok = None
    if tokenizer is not None:
        import transformers

        tok = transformers.AutoTokenizer.from_pretrained(str(tokenizer))
    cfg = _data_config(source_lang, target_langs, _wording(wording, tokenizer), heldout, parallel_share,
                       post_edit_rate, few_shot, runtime_share, seed)
    draft, engine = _draft_fn(draft_model, "auto", None)
    try:
        ds = build_datasets(tm_paths, mono_paths, cfg, glossary=glossary, draft_fn=draft, tokenizer=tok,
                            out_dir=out_dir)
    finally:
        if engine is not None:
            engine.close()
    paths = save_datasets(ds, out_dir) if out_dir else {}
    if as_json:
        click.echo(json.dumps({"stats": ds.stats.to_dict(), "config": cfg.to_dict(),
                               "files": {k: str(v) for k, v in paths.items()}}, indent=2, ensure_ascii=False))
        return 0
    console = Console()
    console.print(stats_table(ds.stats))
    for ex in ds.sft[:show]:
        console.rule(ex.task)
        console.print(ex.messages[-1]["content"], markup=False, highlight=False)
        console.print("→ " + ex.response, markup=False, highlight=False)
    if paths:
        console.print(f"written: {', '.join(str(p) for p in paths.values())}", markup=False)
    return 0


@finetune.command("evaluate")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The tuned model (tower-cat folder).")
@click.option("--heldout", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="heldout.jsonl written by `finetune data --out` or a finetune run.")
@click.option("--baseline", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A model to compare with (e.g. OUT/baseline).")
@click.option("--comet", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
@click.option("--max", "limit", type=int, default=500, show_default=True)
@click.option("--backend", type=click.Choice(["ct2", "transformers"]), default="ct2", show_default=True,
              help="transformers: score a Hugging Face folder (e.g. OUT/hf) without converting it.")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=None)
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JSON here.")
@click.option("--json", "as_json", is_flag=True)
def evaluate_cmd(model_dir, heldout, baseline, comet, limit, backend, device, threads, save, as_json) -> int:
    """Score a model (and optionally a baseline) on held-out pairs: chrF, BLEU, COMET."""
    refuse_overlaps({"--save": save}, {"--heldout": heldout})
    from rich.console import Console

    from tower_cat.finetune.data import load_pairs
    from tower_cat.finetune.export import compare, evaluate_model

    pairs = load_pairs(heldout)[:limit]
    kw = dict(comet=str(comet) if comet else None, device=device, threads=threads, backend=backend)
    before = evaluate_model(baseline, pairs, **kw) if baseline else None
    after = evaluate_model(model_dir, pairs, **kw)
    table = compare(before, after, save)
    if as_json:
        click.echo(json.dumps({"before": before.to_dict() if before else None, "after": after.to_dict()},
                              indent=2, ensure_ascii=False))
    else:
        Console().print(table)
    return 0


@finetune.command("dpo")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A finetune output folder (OUT, with hf/ and ct2/): samples with ct2, trains hf.")
@click.option("--pairs", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Source/reference pairs (.jsonl or a split folder; default: OUT/data/train).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--qe", default="chrf", show_default=True,
              help="Ranking: chrf (against the reference), comet:DIR (COMET/CometKiwi folder), llm:MODEL_DIR.")
@click.option("-n", "--candidates", type=int, default=4, show_default=True, help="Samples per source.")
@click.option("--max-pairs", type=int, default=2000, show_default=True)
@click.option("--min-gap", type=float, default=5.0, show_default=True, help="Least score gap best-worst.")
@click.option("--lora/--full", default=True, show_default=True)
@click.option("--lr", type=float, default=None, help="Default 5e-6 (LoRA) / 5e-7 (full).")
@click.option("--beta", type=float, default=0.1, show_default=True)
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--grad-accum", type=int, default=8, show_default=True)
@click.option("--quantization", default="int8", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
def dpo_cmd(model_dir, pairs, out_dir, qe, candidates, max_pairs, min_gap, lora, lr, beta, epochs, batch_size,
            grad_accum, quantization, device, threads, seed) -> int:
    """Preference stage: sample candidates, rank them by QE, DPO, export to OUT/hf + OUT/ct2."""
    qe_dir = qe.partition(":")[2]   # comet:DIR or llm:MODEL_DIR; a hub id is no folder here
    refuse_output_folder_overlaps({"--out": out_dir}, {
        "--model": [model_dir, model_dir / "hf", model_dir / "ct2"] + ([] if pairs else [model_dir / "data" / "train"]),
        "--pairs": pairs, "--qe": qe_dir if qe_dir and Path(qe_dir).exists() else None})
    import random as _random

    from rich.console import Console

    from tower_cat.engine import Engine
    from tower_cat.finetune.data import load_pairs, write_jsonl
    from tower_cat.finetune.dpo import ChrfRanker, build_preferences, train_dpo
    from tower_cat.finetune.export import export_model
    from tower_cat.finetune.train import TrainConfig

    console = Console(stderr=True)
    rows = load_pairs(pairs or model_dir / "data" / "train")
    _random.Random(seed).shuffle(rows)
    rows = rows[:max_pairs]
    if qe == "chrf":
        ranker = ChrfRanker()
    else:
        from tower_cat.qe import get_backend

        kind, _, path = qe.partition(":")
        if not path:
            raise click.UsageError("--qe takes chrf, comet:DIR or llm:MODEL_DIR")
        ranker = get_backend(kind, path)
    engine = Engine.load(model_dir / "ct2", device=device, threads=threads, cache=None)
    try:
        prefs = build_preferences(engine, rows, ranker, n=candidates, min_gap=min_gap)
    finally:
        engine.close()
        ranker.close()
    out_dir = Path(out_dir)
    write_jsonl(prefs, out_dir / "preferences.jsonl")
    console.print(f"{len(prefs)} preference pairs from {len(rows)} sources")
    cfg = TrainConfig(lora=lora, lr=lr or (5e-6 if lora else 5e-7), dpo_beta=beta, epochs=epochs,
                      batch_size=batch_size, grad_accum=grad_accum, device=device, threads=threads, seed=seed,
                      progress=sys.stderr.isatty())
    result = train_dpo(model_dir / "hf", out_dir / "trained", prefs, cfg)
    exported = export_model(out_dir / "trained", out_dir, quantization=None if quantization == "none" else quantization)
    console.print(f"DPO: {result.steps} steps, loss {result.first_loss:.3f} -> {result.last_loss:.3f}; "
                  f"model: {exported.ct2_dir}")
    return 0


def _train_config(**kw):
    from tower_cat.finetune.train import TrainConfig

    return TrainConfig(progress=sys.stderr.isatty(), **{k: v for k, v in kw.items() if v is not None})


@finetune.command("train")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder written by `finetune data --out` (its cpt/ or sft/ split is used).")
@click.option("--stage", type=click.Choice(["cpt", "sft"]), required=True)
@click.option("--base", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--lora/--full", default=False, show_default=True)
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-steps", type=int, default=None)
@click.option("--lr", type=float, default=2e-5, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True, help="Sequences per micro-batch per process.")
@click.option("--grad-accum", type=int, default=1, show_default=True)
@click.option("--seq-len", type=int, default=1024, show_default=True)
@click.option("--warmup", type=float, default=0.03, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True)
@click.option("--gradient-checkpointing", is_flag=True)
@click.option("--save-every", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result (with the per-step losses) as JSON.")
def train_cmd(data_dir, stage, base, out_dir, lora, lora_r, epochs, max_steps, lr, batch_size, grad_accum, seq_len,
              warmup, precision, gradient_checkpointing, save_every, device, threads, seed, as_json) -> int:
    """Train one stage on prepared data (the building block for `accelerate launch -m tower_cat.finetune train`)."""
    # train clears --out before moving the final model in: it must hold neither the data nor the base model
    refuse_output_folder_overlaps({"--out": out_dir}, {"--data": [data_dir, data_dir / stage], "--base": base})
    from tower_cat.finetune.train import train

    cfg = _train_config(lora=lora, lora_r=lora_r, lora_alpha=2 * lora_r, epochs=epochs, max_steps=max_steps, lr=lr,
                        batch_size=batch_size, grad_accum=grad_accum, seq_len=seq_len, warmup=warmup,
                        precision=precision, gradient_checkpointing=gradient_checkpointing, save_every=save_every,
                        device=device, threads=threads, seed=seed)
    result = train(base, out_dir, stage=stage, data=data_dir / stage, config=cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=2))
        else:
            click.echo(f"{stage}: {result.steps} steps, loss {result.first_loss} -> {result.last_loss}; {out_dir}")
    return 0


@finetune.command("rl")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A finetune output folder (OUT, with hf/ ct2/ data/): trains OUT/hf, evaluates on OUT/data.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--glossary", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="TBX or CSV/TSV glossary: the terminology reward (and terms in the prompts).")
@click.option("--comet", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="COMET checkpoint folder: a COMET reward, and COMET in the evaluation (and the guard).")
@click.option("--max-sources", type=int, default=2000, show_default=True, help="Training sources used.")
@click.option("-n", "--generations", type=int, default=4, show_default=True, help="Samples per prompt (the group).")
@click.option("--max-new-tokens", type=int, default=128, show_default=True)
@click.option("--temperature", type=float, default=0.9, show_default=True)
@click.option("--beta", type=float, default=0.0, show_default=True, help="KL coefficient (0: none).")
@click.option("--instruction-rate", type=float, default=0.3, show_default=True,
              help="Share of prompts with a verifiable instruction (length limit, a name kept as is).")
@click.option("--reward", "reward_weights", multiple=True,
              help="NAME=WEIGHT for terms, tags, instructions, chrf, comet (repeatable; 0 turns one off).")
@click.option("--lora/--full", default=True, show_default=True)
@click.option("--lr", type=float, default=None, help="Default 1e-5 (LoRA) / 1e-6 (full).")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-steps", type=int, default=None)
@click.option("--batch-size", type=int, default=8, show_default=True, help="Completions per micro-batch.")
@click.option("--grad-accum", type=int, default=1, show_default=True)
@click.option("--quantization", default="int8", show_default=True)
@click.option("--allow-regression", is_flag=True, help="Export even when the held-out score fell.")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
def rl_cmd(model_dir, out_dir, glossary, comet, max_sources, generations, max_new_tokens, temperature, beta,
           instruction_rate, reward_weights, lora, lr, epochs, max_steps, batch_size, grad_accum, quantization,
           allow_regression, device, threads, seed) -> int:
    """RL with verifiable rewards (GRPO): glossary, tags, instructions, chrF/COMET against the TM target."""
    refuse_output_folder_overlaps({"--out": out_dir}, {
        "--model": [model_dir, model_dir / "hf", model_dir / "ct2", model_dir / "data"], "--glossary": glossary,
        "--comet": comet})
    import random as _random
    import shutil

    from rich.console import Console

    from tower_cat.convert import ModelInfo
    from tower_cat.finetune.data import load_pairs, open_datasets
    from tower_cat.finetune.export import compare, evaluate_model, export_model
    from tower_cat.finetune.recipe import RegressionError, guard_and_publish, regression_message
    from tower_cat.finetune.rl import REWARDS, RLConfig, rl_rows, train_rl

    console = Console(stderr=True)
    weights = dict(RLConfig().weights)
    for item in reward_weights:
        name, _, value = item.partition("=")
        if name not in REWARDS or not value:
            raise click.BadParameter(f"{item!r}: use NAME=WEIGHT with NAME one of {', '.join(REWARDS)}",
                                     param_hint="--reward")
        weights[name] = float(value)
    gloss = None
    if glossary is not None:
        from tower_cat.terminology import Glossary

        gloss = Glossary.load(glossary)
    data = model_dir / "data"
    train_pairs = open_datasets(data).train if (data / "stats.json").is_file() else load_pairs(data / "train.jsonl")
    sources = list(train_pairs)
    _random.Random(seed).shuffle(sources)
    sources = sources[:max_sources]
    wording = ModelInfo.load(model_dir / "ct2").wording
    rows = rl_rows(sources, glossary=gloss, wording=wording, instruction_rate=instruction_rate, seed=seed)
    rl = RLConfig(num_generations=generations, max_new_tokens=max_new_tokens, temperature=temperature, beta=beta,
                  instruction_rate=instruction_rate, weights=weights, comet=str(comet) if comet else None, seed=seed)
    cfg = _train_config(lora=lora, lr=lr or (1e-5 if lora else 1e-6), epochs=epochs, max_steps=max_steps,
                        batch_size=batch_size, grad_accum=grad_accum, device=device, threads=threads, seed=seed)
    out_dir = Path(out_dir)
    result = train_rl(model_dir / "hf", out_dir / "trained", rows, cfg, rl, glossary=gloss)
    from accelerate import PartialState

    if not PartialState().is_main_process:   # under accelerate: the main process exports and evaluates
        return 0
    heldout = load_pairs(data / "heldout.jsonl")[:200]
    candidate = out_dir / "candidate"
    if candidate.exists():
        shutil.rmtree(candidate)
    exported = export_model(out_dir / "trained", candidate, quantization=None if quantization == "none" else quantization)
    kw = dict(comet=str(comet) if comet else None, device=device, threads=threads)
    before = evaluate_model(model_dir / "ct2", heldout, **kw) if heldout else None
    after = evaluate_model(exported.ct2_dir, heldout, **kw) if heldout else None
    if after is not None:
        console.print(compare(before, after, out_dir / "eval.json"))
    _, ct2_dir, fell = guard_and_publish(candidate, out_dir, before, after, allow_regression=allow_regression,
                                         tolerance=0.0, log=console.print)
    rewards = json.loads((out_dir / "trained" / "training.json").read_text())["reward"]
    console.print(f"RL: {result.steps} steps, mean reward {rewards[0] if rewards else None} -> "
                  f"{rewards[-1] if rewards else None}")
    if fell and not allow_regression:
        _fail_regression(console, RegressionError(regression_message(fell, out_dir), hint="allow_regression",
                                                  param="allow_regression"))
    console.print(f"model: {ct2_dir}")
    return 0

