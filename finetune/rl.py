"""Reinforcement learning with verifiable rewards (`tower-cat finetune rl`): GRPO on the client's TM sources.

The Tower+ recipe ends with RL on verifiable rewards; a client's own checks are exactly such rewards. The
model translates each training source with the runtime's prompt (glossary terms in it, sometimes a
translator's instruction, as ``translate --instruction`` sends it), samples `num_generations` answers, and
TRL's ``GRPOTrainer`` moves it toward the answers that score above their group's mean. The rewards are the
checks tower-cat runs on every translation anyway:

=============== ======================================================================== ==================
reward          what is checked                                                          on which examples
=============== ======================================================================== ==================
``terms``       glossary compliance (``terminology.Glossary.check``): share of the       sources with terms
                source's terms rendered with an allowed target, no forbidden variant
``tags``        inline tags restored intact (``codes.parse``): 1 when every source tag    sources with tags
                comes back once and well placed, 0.5 when a safe repair was needed, 0
                when they cannot be put back
``instructions`` the instruction's verifiable checks (``instructions.InstructionSet``):  examples given one
                share passed
``chrf``        sentence chrF against the TM target (``sacrebleu``, as ``metrics``), /100 every example
``comet``       COMET against the TM target (``metrics.evaluate`` with the checkpoint), with ``--comet``
                /100
=============== ======================================================================== ==================

A reward that does not apply to an example is None (TRL leaves it out of that example's sum). The tuned
model goes through the same export path (merge LoRA, HF folder, CTranslate2) and the same held-out
before/after evaluation and regression guard as ``finetune``.

Only the prompt tokens are ours (``RuntimeGRPOTrainer``: the runtime's rendering, one BOS), so the policy is
trained on exactly the prompts it will be sent.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tower_cat import codes as codes_mod
from tower_cat import prompts
from tower_cat.document import CodeKind, InlineCode, Segment
from tower_cat.finetune.train import (TrainConfig, TrainError, TrainResult, end_token_for, finish, load_model,
                                      lora_config, losses_from, prompt_ids, quiet, resolve_device, resolve_precision,
                                      trainer_args, _Threads)

REWARDS = ("terms", "tags", "instructions", "chrf", "comet")


@dataclass
class RLConfig:
    num_generations: int = 4              # sampled answers per prompt (the GRPO group)
    max_new_tokens: int = 128
    temperature: float = 0.9
    beta: float = 0.0                     # KL coefficient against the starting model (0: none, TRL's default)
    instruction_rate: float = 0.3         # share of prompts that carry a verifiable instruction
    weights: dict[str, float] = field(default_factory=lambda: {"terms": 1.0, "tags": 1.0, "instructions": 1.0,
                                                               "chrf": 1.0, "comet": 1.0})
    comet: str | None = None              # COMET checkpoint folder: add the COMET reward
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------------
# prompts and their checks


def markup_segment(markup: str) -> Segment:
    """A segment from numbered-tag markup (``<1>…</1>``, ``<2/>``): the codes the model must give back."""
    parts: list[Any] = []
    for tok in codes_mod.tokenize(markup):
        if isinstance(tok, str):
            parts.append(tok)
            continue
        kind = {"open": CodeKind.OPEN, "close": CodeKind.CLOSE, "single": CodeKind.STANDALONE}[tok.role]
        parts.append(InlineCode(str(tok.number), kind, str(tok)))
    return Segment(parts)


def _plain(markup: str) -> str:
    return " ".join(codes_mod.strip_tags(markup).split())


def instruction_for(pair, rng: random.Random) -> str | None:
    """A verifiable instruction the TM target satisfies: a length limit for short strings, or to keep a name
    that the target copies unchanged."""
    src, tgt = _plain(pair.source), _plain(pair.target)
    names = [w.strip(".,:;!?()") for w in src.split() if w[:1].isupper() and len(w) > 3]
    kept = [w for w in names[1:] if w and w in tgt]
    if kept and rng.random() < 0.5:
        return f"Keep '{kept[0]}' untranslated."
    if len(src.split()) <= 8:
        return f"Use at most {len(tgt) + max(3, len(tgt) // 4)} characters."
    return None


def rl_rows(pairs: Sequence, *, glossary=None, wording: str = "instruct", instruction_rate: float = 0.3,
            seed: int = 0) -> list[dict[str, Any]]:
    """One GRPO row per source: the runtime prompt (terms, an instruction) and what the rewards check."""
    from tower_cat.finetune.data import _glossary_terms
    from tower_cat.instructions import InstructionSet

    rng = random.Random(seed)
    rows = []
    for p in pairs:
        terms = _glossary_terms(glossary, p)
        messages = prompts.translate_messages(p.source, p.src_lang, p.tgt_lang, wording=wording, terms=terms)
        instructions: list[str] = []
        if rng.random() < instruction_rate:
            inst = instruction_for(p, rng)
            checks = InstructionSet.parse([inst]).verify(_plain(p.target), p.tgt_lang) if inst else []
            if checks and all(r.passed for r in checks):   # the TM target itself follows it
                instructions = [inst]
                messages = prompts.add_instructions(messages, instructions, wording=wording)
        rows.append({"prompt": messages, "source": p.source, "target": p.target, "src_lang": p.src_lang,
                     "tgt_lang": p.tgt_lang, "has_terms": bool(terms), "instructions": instructions})
    return rows


# --------------------------------------------------------------------------------------------------------
# rewards


def _text(completion) -> str:
    if isinstance(completion, list):   # conversational: [{"role": "assistant", "content": …}]
        completion = completion[-1]["content"] if completion else ""
    return prompts.clean_translation(completion)


def terms_reward(glossary) -> Callable:
    def terms(prompts=None, completions=(), source=(), tgt_lang=(), src_lang=(), has_terms=(), **_):
        out: list[float | None] = []
        for comp, src, sl, tl, has in zip(completions, source, src_lang, tgt_lang, has_terms):
            if glossary is None or not has:
                out.append(None)
                continue
            result = glossary.check(_plain(src), _plain(_text(comp)), sl, tl)
            hits = max(1, len(result.hits))
            errors = sum(1 for i in result.issues if i.severity == "error")
            out.append(max(0.0, 1.0 - errors / hits))
        return out
    return terms


def tags_reward(prompts=None, completions=(), source=(), **_) -> list[float | None]:
    out: list[float | None] = []
    for comp, src in zip(completions, source):
        seg = markup_segment(src)
        if not seg.codes:
            out.append(None)
            continue
        restored = codes_mod.parse(codes_mod.render(seg), _text(comp))
        out.append(0.0 if not restored.ok else 0.5 if restored.problems else 1.0)
    return out


def instructions_reward(prompts=None, completions=(), instructions=(), tgt_lang=(), **_) -> list[float | None]:
    from tower_cat.instructions import InstructionSet

    out: list[float | None] = []
    for comp, inst, tl in zip(completions, instructions, tgt_lang):
        if not inst:
            out.append(None)
            continue
        results = InstructionSet.parse(inst).verify(_plain(_text(comp)), tl)
        out.append(sum(r.passed for r in results) / len(results) if results else None)
    return out


def chrf_reward(prompts=None, completions=(), target=(), **_) -> list[float]:
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    return [chrf.sentence_score(_plain(_text(c)), [_plain(t)]).score / 100 for c, t in zip(completions, target)]


def comet_reward(checkpoint: str | Path, device: str = "auto") -> Callable:
    from tower_cat import metrics
    from tower_cat.qe import CometBackend

    backend = CometBackend(str(checkpoint), device=device)

    def comet(prompts=None, completions=(), source=(), target=(), **_):
        hyps = [_plain(_text(c)) for c in completions]
        scores = metrics.evaluate(hyps, [_plain(t) for t in target], [_plain(s) for s in source], comet=backend)
        return [max(0.0, min(1.0, s / 100)) for s in scores.comet_segments]

    comet.close = backend.close  # type: ignore[attr-defined]
    return comet


def reward_functions(config: RLConfig, glossary=None, device: str = "auto") -> tuple[list[Callable], list[float]]:
    funcs: list[Callable] = []
    weights: list[float] = []
    table = {"terms": lambda: terms_reward(glossary) if glossary is not None else None,
             "tags": lambda: tags_reward, "instructions": lambda: instructions_reward, "chrf": lambda: chrf_reward,
             "comet": lambda: comet_reward(config.comet, device) if config.comet else None}
    for name in REWARDS:
        w = config.weights.get(name, 0.0)
        fn = table[name]() if w else None
        if fn is not None:
            fn.__name__ = name  # type: ignore[attr-defined]
            funcs.append(fn)
            weights.append(w)
    return funcs, weights


# --------------------------------------------------------------------------------------------------------
# training


def _runtime_grpo_trainer():
    from trl import GRPOTrainer

    class RuntimeGRPOTrainer(GRPOTrainer):
        """TRL's GRPO with the runtime's prompt tokens (chat template as text, exactly one BOS)."""

        def _tokenize_prompts(self, prompts_):
            return [prompt_ids(self.processing_class, p) for p in prompts_], None, {}

    return RuntimeGRPOTrainer


def train_rl(model_dir: str | Path, out_dir: str | Path, rows: Sequence[dict[str, Any]],
             config: TrainConfig | None = None, rl: RLConfig | None = None, *, glossary=None) -> TrainResult:
    """GRPO on `rows` (``rl_rows``); saves an HF folder (or a LoRA adapter) in OUT_DIR; the per-step mean
    reward of each check goes to OUT_DIR/training.json."""
    import torch
    import transformers
    from datasets import Dataset
    from trl import GRPOConfig

    config = config or TrainConfig(lr=1e-6, epochs=1, batch_size=4)
    rl = rl or RLConfig()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not rows:
        raise TrainError("no sources to train on", hint="give a memory with training pairs")
    started = time.time()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    end = end_token_for(model_dir, tokenizer)
    end_ids = [tokenizer.convert_tokens_to_ids(end)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in end_ids:
        end_ids.append(tokenizer.eos_token_id)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    funcs, weights = reward_functions(rl, glossary, config.device)
    batch = max(config.batch_size, rl.num_generations)
    batch -= batch % rl.num_generations
    try:
        with _Threads(config, device):
            torch.manual_seed(config.seed)
            model = load_model(model_dir, config, precision)
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            args = GRPOConfig(**{**trainer_args(config, out_dir, precision, device), "per_device_train_batch_size": batch,
                                 "include_num_input_tokens_seen": False},
                              num_generations=rl.num_generations, max_completion_length=rl.max_new_tokens,
                              temperature=rl.temperature, beta=rl.beta, reward_weights=weights,
                              generation_kwargs={"eos_token_id": end_ids}, log_completions=False,
                              shuffle_dataset=True)
            trainer = _runtime_grpo_trainer()(model=model, reward_funcs=funcs, args=args,
                                              train_dataset=Dataset.from_list(list(rows)),
                                              processing_class=tokenizer, peft_config=lora_config(model, config))
            quiet(trainer, config.progress)
            trainer.train()
            finish(trainer, tokenizer, out_dir)
    finally:
        for fn in funcs:
            getattr(fn, "close", lambda: None)()
    history = trainer.state.log_history
    rewards = {f.__name__: [e.get(f"rewards/{f.__name__}/mean") for e in history if "step" in e and "loss" in e]
               for f in funcs}
    mean_reward = [e.get("reward") for e in history if "step" in e and "loss" in e]
    losses = losses_from(trainer)
    result = TrainResult("rl", out_dir, trainer.state.global_step, len(rows), 0, losses[0] if losses else None,
                         losses[-1] if losses else None, time.time() - started, config.lora, 0, losses)
    if trainer.accelerator.is_main_process:
        (out_dir / "training.json").write_text(json.dumps(
            {"result": result.to_dict(), "config": config.to_dict(), "rl": rl.to_dict(), "reward": mean_reward,
             "rewards": rewards}, indent=2) + "\n")
    return result
