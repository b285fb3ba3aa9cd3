"""Optional preference stage (Tower+ style): sampled candidates ranked by QE -> chosen/rejected -> DPO.

``build_preferences`` samples N translations per source with the tuned model (tower-cat engine), scores
them with a QE backend (``tower_cat.qe``: COMET/CometKiwi, LLM judge, log-prob; or ``ChrfRanker`` — chrF
against the reference, when no QE model is at hand), optionally adds the human reference as a candidate,
and keeps (best, worst) when their scores differ by at least `min_gap`.

``train_dpo`` is DPO (Rafailov et al. 2023) with TRL's ``DPOTrainer`` (on accelerate, so it runs on several
devices like the other stages): the reference model's log-probs are computed once before training
(``precompute_ref_log_probs``: no second model in memory), then
``loss = -log σ(β·[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))])`` over answer tokens only. Only the
tokenization is ours (``RuntimeDPOTrainer``): the prompt as the runtime renders it, each answer tokenized
together with its prompt (``train.encode_sft``), so chosen/rejected tokens are what the engine would generate.
Tower+ used WPO (weighted on-policy preferences); plain DPO is the common, simpler relative.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from tower_cat import prompts
from tower_cat.finetune.train import (IGNORE, TrainConfig, TrainError, TrainResult, encode_sft_batch, end_token_for,
                                      finish, load_model, lora_config, losses_from, quiet, resolve_device,
                                      resolve_precision, trainer_args, _Threads)
from tower_cat.qe import QEBackend, QEItem, QEResult


@dataclass
class PreferencePair:
    messages: list[dict[str, str]]
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float
    src_lang: str = ""
    tgt_lang: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreferencePair":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class ChrfRanker(QEBackend):
    """Sentence chrF against the reference, 0-100: a cheap stand-in for QE when the reference is known."""

    name = "chrf-ref"
    requires_reference = True

    def score(self, items: Sequence[QEItem]) -> list[QEResult]:
        from sacrebleu.metrics import CHRF

        chrf = CHRF()
        return [QEResult(chrf.sentence_score(it.target, [it.reference or ""]).score) for it in items]


def sample_candidates(engine, pairs: Sequence, n: int = 4, *, temperature: float = 0.9, topk: int = 50,
                      max_new_tokens: int = 256) -> list[list[str]]:
    """N sampled translations per pair (distinct, cleaned), with the runtime prompt."""
    from tower_cat.engine import GenerationOptions

    msgs = [prompts.translate_messages(p.source, p.src_lang, p.tgt_lang, wording=engine.info.wording) for p in pairs]
    opts = GenerationOptions(max_new_tokens=max_new_tokens, sampling_topk=topk, sampling_temperature=temperature,
                             num_hypotheses=n, use_cache=False)
    gens = engine.generate(msgs, opts, sources=[p.source for p in pairs])
    out = []
    for g, p in zip(gens, pairs):
        seen: list[str] = []
        for h in g.hypotheses:
            text = prompts.clean_translation(h.text, p.tgt_lang)
            if text and text not in seen and not h.truncated:
                seen.append(text)
        out.append(seen)
    return out


def rank_candidates(pairs: Sequence, candidates: Sequence[Sequence[str]], qe: QEBackend | None = None, *,
                    include_reference: bool = True, min_gap: float = 5.0,
                    wording: str = "instruct") -> list[PreferencePair]:
    """(best, worst) per source by QE score; pairs whose best and worst are too close are skipped."""
    qe = qe or ChrfRanker()
    items, owners = [], []
    for i, (p, cands) in enumerate(zip(pairs, candidates)):
        cands = list(cands) + ([p.target] if include_reference and p.target not in cands else [])
        for c in cands:
            items.append(QEItem(p.source, c, reference=p.target, source_lang=p.src_lang, target_lang=p.tgt_lang))
            owners.append(i)
    results = qe.score(items) if items else []
    by_pair: dict[int, list[tuple[float, str]]] = {}
    for owner, item, res in zip(owners, items, results):
        if res.score is not None:
            by_pair.setdefault(owner, []).append((res.score, item.target))
    out = []
    for i, scored in sorted(by_pair.items()):
        if len(scored) < 2:
            continue
        scored.sort(key=lambda x: -x[0])
        (best, chosen), (worst, rejected) = scored[0], scored[-1]
        if best - worst < min_gap or chosen == rejected:
            continue
        p = pairs[i]
        out.append(PreferencePair(prompts.translate_messages(p.source, p.src_lang, p.tgt_lang, wording=wording),
                                  chosen, rejected, best, worst, p.src_lang, p.tgt_lang))
    return out


def build_preferences(engine, pairs: Sequence, qe: QEBackend | None = None, *, n: int = 4,
                      include_reference: bool = True, min_gap: float = 5.0, **sampling) -> list[PreferencePair]:
    cands = sample_candidates(engine, pairs, n, **sampling)
    return rank_candidates(pairs, cands, qe, include_reference=include_reference, min_gap=min_gap,
                           wording=engine.info.wording)


def dpo_rows(tokenizer, prefs: Sequence[PreferencePair], end_token: str, max_len: int) -> tuple[dict, int]:
    """TRL's tokenized DPO columns (prompt_ids, chosen_ids, rejected_ids) from full-sequence tokenization;
    pairs whose longer side does not fit `max_len` are left out (their count is returned)."""
    chosen_ids, chosen_labels, _ = encode_sft_batch(tokenizer, [(p.messages, p.chosen) for p in prefs], end_token)
    rejected_ids, rejected_labels, _ = encode_sft_batch(tokenizer, [(p.messages, p.rejected) for p in prefs],
                                                        end_token)
    cols: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    dropped = 0
    for ci, cl, ri, rl in zip(chosen_ids, chosen_labels, rejected_ids, rejected_labels):
        if max(len(ci), len(ri)) > max_len:
            dropped += 1
            continue
        n = min(sum(1 for t in cl if t == IGNORE), sum(1 for t in rl if t == IGNORE))
        cols["prompt_ids"].append(ci[:n])
        cols["chosen_ids"].append(ci[n:])
        cols["rejected_ids"].append(ri[n:])
    return cols, dropped


def _runtime_dpo_trainer():
    from trl import DPOTrainer

    class RuntimeDPOTrainer(DPOTrainer):
        """TRL's DPO with our tokenization: the dataset arrives already tokenized (``dpo_rows``)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    return RuntimeDPOTrainer


def train_dpo(model_dir: str | Path, out_dir: str | Path, prefs: Sequence[PreferencePair],
              config: TrainConfig | None = None, tokenizer=None) -> TrainResult:
    """DPO on preference pairs; saves an HF folder (or a LoRA adapter) in OUT_DIR."""
    import torch
    import transformers
    from datasets import Dataset
    from trl import DPOConfig

    config = config or TrainConfig(lr=5e-7, epochs=1)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not prefs:
        raise TrainError("no preference pairs to train on", hint="sample more candidates or lower min_gap")
    started = time.time()
    tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    cols, dropped = dpo_rows(tokenizer, prefs, end_token_for(model_dir, tokenizer), config.seq_len)
    if not cols["prompt_ids"]:
        raise TrainError(f"every preference pair is longer than seq_len {config.seq_len}")
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    with _Threads(config, device):
        torch.manual_seed(config.seed)
        model = load_model(model_dir, config, precision)
        args = DPOConfig(**trainer_args(config, out_dir, precision, device), beta=config.dpo_beta,
                         max_length=None, precompute_ref_log_probs=True)
        trainer = _runtime_dpo_trainer()(model=model, args=args, train_dataset=Dataset.from_dict(cols),
                                         processing_class=tokenizer, peft_config=lora_config(model, config))
        quiet(trainer, config.progress)
        trainer.train()
        finish(trainer, tokenizer, out_dir)
    losses = losses_from(trainer)
    accs = [float(e["rewards/accuracies"]) for e in trainer.state.log_history if "rewards/accuracies" in e]
    result = TrainResult("dpo", out_dir, trainer.state.global_step, len(cols["prompt_ids"]), 0,
                         losses[0] if losses else None, losses[-1] if losses else None, time.time() - started,
                         config.lora, dropped, losses)
    if trainer.accelerator.is_main_process:
        (out_dir / "training.json").write_text(json.dumps({"result": result.to_dict(), "config": config.to_dict(),
                                                           "reward_accuracy": accs}, indent=2) + "\n")
    return result
