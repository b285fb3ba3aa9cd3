"""Optional preference stage (Tower+ style): sampled candidates ranked by QE -> chosen/rejected -> DPO.

``build_preferences`` samples N translations per source with the tuned model (tower-cat engine), scores
them with a QE backend (``tower_cat.qe``: COMET/CometKiwi, LLM judge, log-prob; or ``ChrfRanker`` — chrF
against the reference, when no QE model is at hand), optionally adds the human reference as a candidate,
and keeps (best, worst) when their scores differ by at least `min_gap`.

``train_dpo`` is a small DPO (Rafailov et al. 2023) on the same loop pieces as ``train.py``: the reference
model's log-probs are computed once before training (no second model in memory), then
``loss = -log σ(β·[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))])`` over answer tokens only.
Tower+ used WPO (weighted on-policy preferences); plain DPO is the common, simpler relative. `trl` is not
used: its DPOTrainer needs `datasets` (+ pyarrow) and HF Trainer, heavy for one loss function.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from tower_cat import prompts
from tower_cat.finetune.train import (IGNORE, TrainConfig, TrainError, TrainResult, collate, encode_sft,
                                      end_token_for, load_model, resolve_device, resolve_precision, save_model)
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


def _seq_logps(model, rows, pad: int, device, use_bf16: bool):
    """Sum of answer-token log-probs per row."""
    import torch

    batch = {k: v.to(device) for k, v in collate(rows, pad).items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1, :].float()
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)


def dpo_loss(pc, pr, rc, rr, beta: float):
    """DPO loss and reward accuracy from policy/reference sequence log-probs of chosen (c) / rejected (r)."""
    import torch

    margin = beta * ((pc - rc) - (pr - rr))
    return -torch.nn.functional.logsigmoid(margin).mean(), (margin > 0).float().mean()


def train_dpo(model_dir: str | Path, out_dir: str | Path, prefs: Sequence[PreferencePair],
              config: TrainConfig | None = None, tokenizer=None) -> TrainResult:
    """DPO on preference pairs; saves an HF folder (or a LoRA adapter) in OUT_DIR. No mid-run checkpoints."""
    import torch
    import transformers

    config = config or TrainConfig(lr=5e-7, epochs=1)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not prefs:
        raise TrainError("no preference pairs to train on", hint="sample more candidates or lower min_gap")
    started = time.time()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(str(model_dir))
    end = end_token_for(model_dir, tokenizer)
    rows = [(encode_sft(tokenizer, p.messages, p.chosen, end), encode_sft(tokenizer, p.messages, p.rejected, end))
            for p in prefs]
    rows = [r for r in rows if max(len(r[0][0]), len(r[1][0])) <= config.seq_len]
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    use_bf16 = precision == "bf16"
    model = load_model(model_dir, config, device, precision)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    model.eval()
    ref: list[tuple[float, float]] = []
    with torch.no_grad():
        for s in range(0, len(rows), config.batch_size):
            chunk = rows[s:s + config.batch_size]
            lp = _seq_logps(model, [c for c, _ in chunk] + [r for _, r in chunk], pad, device, use_bf16)
            ref += list(zip(lp[:len(chunk)].tolist(), lp[len(chunk):].tolist()))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(rows) / config.batch_size)
    total = config.max_steps or max(1, math.ceil(config.epochs * per_epoch / config.grad_accum))
    order: list[int] = []
    epoch = 0
    while len(order) < total * config.grad_accum * config.batch_size:
        idx = list(range(len(rows)))
        random.Random(config.seed + epoch).shuffle(idx)
        order += idx
        epoch += 1
    model.train()
    losses, accs = [], []
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="DPO", unit="step", dynamic_ncols=True)
    pos = 0
    for _ in range(total):
        optimizer.zero_grad(set_to_none=True)
        step_loss = step_acc = 0.0
        for _ in range(config.grad_accum):
            b = order[pos:pos + config.batch_size]
            pos += config.batch_size
            lp = _seq_logps(model, [rows[i][0] for i in b] + [rows[i][1] for i in b], pad, device, use_bf16)
            rc = torch.tensor([ref[i][0] for i in b], device=device)
            rr = torch.tensor([ref[i][1] for i in b], device=device)
            loss, acc = dpo_loss(lp[:len(b)], lp[len(b):], rc, rr, config.dpo_beta)
            (loss / config.grad_accum).backward()
            step_loss += loss.item() / config.grad_accum
            step_acc += acc.item() / config.grad_accum
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        losses.append(round(step_loss, 5))
        accs.append(step_acc)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", acc=f"{step_acc:.2f}")
    if bar is not None:
        bar.close()
    model.eval()
    save_model(model, tokenizer, out_dir)
    result = TrainResult("dpo", out_dir, total, len(rows), 0, losses[0], losses[-1], time.time() - started,
                         config.lora, len(prefs) - len(rows), losses)
    (out_dir / "training.json").write_text(json.dumps({"result": result.to_dict(), "config": config.to_dict(),
                                                       "reward_accuracy": accs}, indent=2) + "\n")
    return result
