"""Training: continued pretraining (packed, every token) and instruction tuning (answer tokens only).

A plain torch loop rather than HF Trainer: fewer moving parts, fast on CPU for tiny test models, and the same
code drives a 7B model on a GPU. Features: full fine-tuning or LoRA (peft), gradient accumulation, bf16
autocast on GPUs that support it, gradient checkpointing, cosine schedule with warm-up, resumable
checkpoints (model/adapter + optimizer + scheduler + RNG, every `save_every` steps) and a progress bar with
the running loss.

SFT prompts are tokenized exactly as ``tower_cat.engine.Engine.render`` tokenizes them at runtime (chat
template rendered to text, tokenized without special tokens, exactly one BOS); the answer is the response's
tokens plus the family's first end token (``<|im_end|>`` for TowerInstruct, ``<end_of_turn>`` for Tower+
Gemma 2), and only those tokens carry labels — the prompt is masked with -100.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tower_cat import errors
from tower_cat.errors import TowerCatError

log = logging.getLogger(__name__)

IGNORE = -100
STAGES = ("cpt", "sft", "dpo")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


TrainError = errors.TrainError  # one error family (tower_cat.errors); importable from here as before


@dataclass
class TrainConfig:
    epochs: float = 1.0
    max_steps: int | None = None          # optimizer steps; overrides epochs
    batch_size: int = 8                   # sequences per micro-batch
    grad_accum: int = 1                   # micro-batches per optimizer step
    lr: float = 2e-5
    min_lr_ratio: float = 0.1             # cosine decays to lr * min_lr_ratio
    warmup: float = 0.03                  # share of steps (< 1) or a number of steps
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seq_len: int = 1024                   # CPT block length; SFT examples longer than this are dropped
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS
    precision: str = "auto"               # auto (bf16 on GPUs that have it) | bf16 | fp32
    gradient_checkpointing: bool = False
    device: str = "auto"
    threads: int | None = None            # CPU threads; None: 1 on CPU (small matrices: syncing costs more)
    seed: int = 0
    save_every: int = 0                   # steps between checkpoints (0: none but the final model)
    keep_checkpoints: int = 2
    resume: bool = True
    progress: bool = True
    log_every: int = 10
    dpo_beta: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d


@dataclass
class TrainResult:
    stage: str
    out_dir: Path
    steps: int
    examples: int
    tokens: int                           # tokens carrying a label, over the run
    first_loss: float | None
    last_loss: float | None
    seconds: float
    lora: bool
    dropped: int = 0                      # SFT examples longer than seq_len
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir)
        return d


# --------------------------------------------------------------------------------------------------------
# tokenization


def end_token_for(model_dir: str | Path, tokenizer=None) -> str:
    """The token a turn ends with, as the runtime stops on it (convert.detect_family's first end token)."""
    import transformers

    from tower_cat.convert import detect_family

    config = transformers.AutoConfig.from_pretrained(str(model_dir))
    tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(str(model_dir))
    return detect_family(config, tokenizer).end_tokens[0]


def _uses_bos(tokenizer) -> bool:
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def prompt_ids(tokenizer, messages: Sequence[dict[str, str]]) -> list[int]:
    """The runtime's prompt tokens (mirrors Engine.render): chat template as text, one BOS in front."""
    msgs = [dict(m) for m in messages]
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n".join(m["content"] for m in msgs)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if _uses_bos(tokenizer):
        bos = tokenizer.bos_token_id
        while ids and ids[0] == bos:
            ids = ids[1:]
        ids = [bos] + ids
    return list(ids)


def encode_sft(tokenizer, messages: Sequence[dict[str, str]], response: str, end_token: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels): the prompt masked with -100, the answer = response tokens + end token."""
    p = prompt_ids(tokenizer, messages)
    text = response.strip() if tokenizer.chat_template and "trim" in tokenizer.chat_template else response
    a = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    end_id = tokenizer.convert_tokens_to_ids(end_token)
    if end_id is None or end_id == tokenizer.unk_token_id and end_token != tokenizer.unk_token:
        raise TrainError(f"the tokenizer has no end token {end_token!r}")
    a.append(end_id)
    return p + a, [IGNORE] * len(p) + a


def pack_cpt(tokenizer, texts: Sequence[str], seq_len: int) -> list[list[int]]:
    """Documents as BOS + text + EOS, concatenated and cut into blocks of seq_len (the last one may be short)."""
    bos = tokenizer.bos_token_id if _uses_bos(tokenizer) else None
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        stream.extend(([bos] if bos is not None else []) + list(ids) + ([eos] if eos is not None else []))
    blocks = [stream[i:i + seq_len] for i in range(0, len(stream), seq_len)]
    return [b for b in blocks if len(b) >= 2]


# --------------------------------------------------------------------------------------------------------
# batches


def _pad_id(tokenizer) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if tid is not None:
            return tid
    return 0


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, :len(y)] = torch.tensor(y)
        mask[i, :len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def schedule_batches(lengths: Sequence[int], batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """Per epoch: a seeded shuffle, length-grouped in windows of 50 batches (less padding), batches shuffled."""
    out: list[list[int]] = []
    for epoch in range(epochs):
        rng = random.Random(seed * 1000 + epoch)
        order = list(range(len(lengths)))
        rng.shuffle(order)
        window = batch_size * 50
        batches = []
        for s in range(0, len(order), window):
            chunk = sorted(order[s:s + window], key=lambda i: lengths[i])
            batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        out += batches
    return out


# --------------------------------------------------------------------------------------------------------
# model


def resolve_precision(precision: str, device) -> str:
    import torch

    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision not in ("bf16", "fp32"):
        raise TrainError(f"unknown precision {precision!r}", hint="use auto, bf16 or fp32")
    return precision


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(model_dir: str | Path, config: TrainConfig, device, precision: str):
    """The model to train: LoRA adapters on frozen weights (bf16 on GPU), or all weights trainable (fp32)."""
    import torch
    import transformers

    # frozen LoRA base weights can live in bf16; fully trained weights stay fp32 (bf16 autocast does the math)
    dtype = torch.bfloat16 if (config.lora and precision == "bf16") else torch.float32
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot load the model to train: {exc}", path=model_dir,
                         hint="give a Hugging Face model folder (config.json + weights + tokenizer)") from None
    model.config.use_cache = False
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora:
        from peft import LoraConfig, get_peft_model

        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        targets = [t for t in config.lora_targets if t in present]
        if not targets:
            raise TrainError(f"none of the LoRA target modules {list(config.lora_targets)} is in this model")
        model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                 lora_dropout=config.lora_dropout, target_modules=targets,
                                                 task_type="CAUSAL_LM"))
    return model.to(device)


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def _lr_lambda(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def save_model(model, tokenizer, out_dir: Path) -> None:
    """An HF folder (or a LoRA adapter folder with the tokenizer, and the base recorded in adapter_config)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


# --------------------------------------------------------------------------------------------------------
# checkpoints


def _checkpoints(out_dir: Path) -> list[Path]:
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith("step-") and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _save_checkpoint(out_dir: Path, step: int, model, tokenizer, optimizer, scheduler, losses, keep: int,
                     fingerprint: str) -> Path:
    import torch

    root = out_dir / "checkpoints"
    tmp = root / f".step-{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(model, tokenizer, tmp / "model")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}, tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "losses": losses, "fingerprint": fingerprint}))
    final = root / f"step-{step}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in _checkpoints(out_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _load_checkpoint(ckpt: Path, model, optimizer, scheduler, lora: bool) -> tuple[int, list[float]]:
    import torch

    if lora:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(ckpt / "model" / "adapter_model.safetensors")))
    else:
        from safetensors.torch import load_file

        state = {}
        for f in sorted((ckpt / "model").glob("*.safetensors")):
            state.update(load_file(str(f)))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if "lm_head" not in m]:
            raise TrainError("the checkpoint does not fit this model", path=ckpt,
                             hint="delete the checkpoints folder to start over")
        if getattr(model.config, "tie_word_embeddings", False):
            model.tie_weights()
    trainer = torch.load(ckpt / "trainer.pt", weights_only=False)
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    torch.set_rng_state(trainer["torch_rng"])
    random.setstate(trainer["python_rng"])
    state = json.loads((ckpt / "state.json").read_text())
    return int(state["step"]), list(state.get("losses", []))


# --------------------------------------------------------------------------------------------------------
# the loop


def _fingerprint(stage: str, rows: Sequence, config: TrainConfig) -> str:
    import hashlib

    h = hashlib.sha256(json.dumps([stage, config.to_dict()], sort_keys=True, default=str).encode())
    h.update(str(len(rows)).encode())
    for r in rows[:64]:
        h.update(json.dumps(r, default=str).encode())
    return h.hexdigest()[:16]


def train(model_dir: str | Path, out_dir: str | Path, *, stage: str, data: Sequence[Any],
          config: TrainConfig | None = None, tokenizer=None,
          loss_fn: Callable | None = None) -> TrainResult:
    """Train MODEL_DIR on `data` and save the result in OUT_DIR (HF folder; adapter folder with LoRA).

    OUT_DIR belongs to the run: what else is in it is replaced by the final model.

    stage 'cpt': `data` are texts (or CptDoc); packed into seq_len blocks, every token trained.
    stage 'sft': `data` are SftExample (or (messages, response) tuples); loss on answer tokens only.
    A run whose checkpoints exist in OUT_DIR/checkpoints resumes from the latest (config.resume).
    """
    import torch

    config = config or TrainConfig()
    if stage not in ("cpt", "sft"):
        raise TrainError(f"unknown stage {stage!r}", hint="use cpt or sft (dpo: tower_cat.finetune.dpo)")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    started = time.time()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    threads_before = torch.get_num_threads()
    if config.threads or device.type == "cpu":
        torch.set_num_threads(config.threads or 1)
    try:
        return _train(model_dir, out_dir, stage, data, config, tokenizer, device, started)
    finally:
        torch.set_num_threads(threads_before)


def _train(model_dir: Path, out_dir: Path, stage: str, data: Sequence[Any], config: TrainConfig, tokenizer, device,
           started: float) -> TrainResult:
    import torch
    import transformers

    tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(str(model_dir))
    dropped = 0
    if stage == "cpt":
        texts = [d.text if hasattr(d, "text") else str(d) for d in data]
        rows = [(b, list(b)) for b in pack_cpt(tokenizer, texts, config.seq_len)]
    else:
        end = end_token_for(model_dir, tokenizer)
        rows = []
        for ex in data:
            messages, response = (ex.messages, ex.response) if hasattr(ex, "messages") else ex
            ids, labels = encode_sft(tokenizer, messages, response, end)
            if len(ids) > config.seq_len:
                dropped += 1
                continue
            rows.append((ids, labels))
    if not rows:
        raise TrainError(f"nothing to train on for stage {stage}"
                         + (f" ({dropped} examples longer than seq_len {config.seq_len})" if dropped else ""))

    precision = resolve_precision(config.precision, device)
    model = load_model(model_dir, config, device, precision)
    params = _trainable(model)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.999),
                                  eps=1e-8, fused=device.type == "cuda")

    lengths = [len(r[0]) for r in rows]
    micro_per_epoch = math.ceil(len(rows) / config.batch_size)
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / config.grad_accum))
    total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    epochs_needed = math.ceil(total * config.grad_accum / micro_per_epoch)
    batches = schedule_batches(lengths, config.batch_size, epochs_needed, config.seed)
    warmup = int(config.warmup * total) if config.warmup < 1 else int(config.warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, warmup, config.min_lr_ratio))

    fingerprint = _fingerprint(stage, rows, config)
    step, losses = 0, []
    ckpts = _checkpoints(out_dir) if config.resume else []
    if ckpts:
        state = json.loads((ckpts[-1] / "state.json").read_text())
        if state.get("fingerprint") == fingerprint:
            step, losses = _load_checkpoint(ckpts[-1], model, optimizer, scheduler, config.lora)
            log.info("resuming %s from %s (step %d of %d)", stage, ckpts[-1], step, total)
        else:
            log.warning("checkpoints in %s are from another run (data or settings differ); starting over", out_dir)

    pad = _pad_id(tokenizer)
    use_bf16 = precision == "bf16"
    model.train()
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc=stage.upper(), unit="step", dynamic_ncols=True)
    tokens = 0
    running: float | None = losses[-1] if losses else None
    try:
        while step < total:
            optimizer.zero_grad(set_to_none=True)
            micro = batches[step * config.grad_accum:(step + 1) * config.grad_accum]
            # the loss is the mean over every labelled token of the step, not a mean of micro-batch means
            n_tok = sum(sum(1 for y in rows[i][1][1:] if y != IGNORE) for b in micro for i in b)
            step_loss = 0.0
            for b in micro:
                batch = {k: v.to(device) for k, v in collate([rows[i] for i in b], pad).items()}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    mask = None if bool(batch["attention_mask"].all()) else batch["attention_mask"]
                    logits = model(input_ids=batch["input_ids"], attention_mask=mask).logits
                loss_sum = token_loss(logits, batch["labels"], reduction="sum")
                (loss_sum / max(1, n_tok)).backward()
                step_loss += loss_sum.item()
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            tokens += n_tok
            value = step_loss / max(1, n_tok)
            losses.append(round(value, 5))
            running = value if running is None else 0.9 * running + 0.1 * value
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            elif config.log_every and step % config.log_every == 0:
                log.info("%s step %d/%d loss %.4f", stage, step, total, running)
            if config.save_every and step % config.save_every == 0 and step < total:
                _save_checkpoint(out_dir, step, model, tokenizer, optimizer, scheduler, losses,
                                 config.keep_checkpoints, fingerprint)
    finally:
        if bar is not None:
            bar.close()

    model.eval()
    final_tmp = out_dir.parent / f".{out_dir.name}.final"
    if final_tmp.exists():
        shutil.rmtree(final_tmp)
    save_model(model, tokenizer, final_tmp)
    # keep the checkpoints folder out of the model folder's way only after the final model is written
    ckpt_dir = out_dir / "checkpoints"
    if out_dir.exists():
        for child in out_dir.iterdir():
            if child.name != "checkpoints":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    for child in final_tmp.iterdir():
        os.replace(child, out_dir / child.name)
    final_tmp.rmdir()
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    result = TrainResult(stage, out_dir, step, len(rows), tokens, losses[0] if losses else None,
                         losses[-1] if losses else None, time.time() - started, config.lora, dropped, losses)
    (out_dir / "training.json").write_text(json.dumps({"result": result.to_dict(), "config": config.to_dict()},
                                                      indent=2) + "\n")
    return result


def token_loss(logits, labels, reduction: str = "mean"):
    """Next-token cross-entropy over positions whose label is not -100."""
    import torch

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                                             shift_labels.reshape(-1), ignore_index=IGNORE, reduction=reduction)
