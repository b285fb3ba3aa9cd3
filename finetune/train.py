"""Training on TRL over accelerate: continued pretraining (packed, every token) and instruction tuning
(completion-only loss). One process or many: launched with ``accelerate launch`` (or ``tower-cat finetune
--accelerate-config FILE``), the same code runs DDP, FSDP or DeepSpeed ZeRO from the accelerate config.

What is ours and what TRL / transformers do:

- ours: the tokenization, because a tuned model must see exactly what the runtime sends. A prompt is the
  chat template rendered to text and tokenized without special tokens with exactly one BOS (mirrors
  ``tower_cat.engine.Engine.render``); the answer is tokenized *together with its prompt* (prompt text +
  response + the family's end token, ``<|im_end|>`` / ``<end_of_turn>``, as one string) and the labels are the
  tokens after the prompt's length, so they are the tokens the engine generates after the rendered prompt —
  no leading "▁" that a SentencePiece tokenizer adds to a text tokenized on its own. SFT rows are tokenized
  lazily, batch by batch, from the memory-mapped Arrow split (``datasets.Dataset.with_transform``); CPT
  documents are packed (BOS + text + EOS, cut into `seq_len` blocks) by a streamed ``Dataset.map`` into an
  on-disk Arrow cache.
- TRL's ``SFTTrainer`` (on HF ``Trainer`` and accelerate): the optimizer, the cosine schedule with warm-up and
  a floor, gradient accumulation with the loss averaged over every labelled token of the step (across
  processes too), bf16, gradient checkpointing, LoRA through peft, checkpoints and exact resumption
  (model, optimizer, scheduler, RNG, data position), the progress bar, and multi-device training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tower_cat import errors

log = logging.getLogger(__name__)

IGNORE = -100
STAGES = ("cpt", "sft", "dpo", "rl")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


TrainError = errors.TrainError  # one error family (tower_cat.errors); importable from here as before


@dataclass
class TrainConfig:
    epochs: float = 1.0
    max_steps: int | None = None          # optimizer steps; overrides epochs
    batch_size: int = 8                   # sequences per micro-batch (per process)
    grad_accum: int = 1                   # micro-batches per optimizer step
    lr: float = 2e-5
    min_lr_ratio: float = 0.1             # cosine decays to lr * min_lr_ratio
    warmup: float = 0.03                  # share of steps (< 1) or a number of steps
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seq_len: int = 1024                   # CPT block length; longer SFT examples are cut there
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
    tokens: int                           # input tokens seen over the run (all processes)
    first_loss: float | None
    last_loss: float | None
    seconds: float
    lora: bool
    dropped: int = 0                      # SFT examples cut at seq_len
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


def prompt_text(tokenizer, messages: Sequence[dict[str, str]]) -> str:
    """The runtime's prompt as text: the chat template with the generation prompt (plain lines without one)."""
    msgs = [dict(m) for m in messages]
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return "\n".join(m["content"] for m in msgs)


def _one_bos(tokenizer, ids: list[int], uses_bos: bool | None = None) -> list[int]:
    if uses_bos if uses_bos is not None else _uses_bos(tokenizer):
        bos = tokenizer.bos_token_id
        start = 0
        while start < len(ids) and ids[start] == bos:
            start += 1
        return [bos] + ids[start:]
    return ids


def prompt_ids(tokenizer, messages: Sequence[dict[str, str]]) -> list[int]:
    """The runtime's prompt tokens (mirrors Engine.render): chat template as text, one BOS in front."""
    return _one_bos(tokenizer, list(tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"]))


def answer_text(tokenizer, response: str, end_token: str) -> str:
    """What the model should write after the prompt: the response (trimmed where the template trims turns)
    and the end token the runtime stops on."""
    text = response.strip() if tokenizer.chat_template and "trim" in tokenizer.chat_template else response
    return text + end_token


def _check_end_token(tokenizer, end_token: str) -> int:
    end_id = tokenizer.convert_tokens_to_ids(end_token)
    if end_id is None or end_id == tokenizer.unk_token_id and end_token != tokenizer.unk_token:
        raise TrainError(f"the tokenizer has no end token {end_token!r}")
    return end_id


def encode_sft_batch(tokenizer, conversations: Sequence[tuple[Sequence[dict[str, str]], str]], end_token: str,
                     max_len: int | None = None) -> tuple[list[list[int]], list[list[int]], int]:
    """(input_ids, labels, cut) for (messages, response) pairs, tokenized as full sequences.

    The full text (prompt + answer) is tokenized once; the label mask is the runtime prompt's token count.
    When the prompt's tokens are not a prefix of the full sequence (a merge across the boundary), the answer
    starts where they diverge. Sequences longer than `max_len` are cut there (`cut` counts them).
    """
    _check_end_token(tokenizer, end_token)
    uses_bos = _uses_bos(tokenizer)
    prompts_ = [prompt_text(tokenizer, m) for m, _ in conversations]
    fulls = [p + answer_text(tokenizer, r, end_token) for p, (_, r) in zip(prompts_, conversations)]
    p_ids = tokenizer(prompts_, add_special_tokens=False)["input_ids"]
    f_ids = tokenizer(fulls, add_special_tokens=False)["input_ids"]
    out_ids, out_labels, cut = [], [], 0
    for p, f in zip(p_ids, f_ids):
        p, f = _one_bos(tokenizer, list(p), uses_bos), _one_bos(tokenizer, list(f), uses_bos)
        n = 0
        limit = min(len(p), len(f))
        while n < limit and p[n] == f[n]:
            n += 1
        labels = [IGNORE] * n + f[n:]
        if max_len is not None and len(f) > max_len:
            f, labels, cut = f[:max_len], labels[:max_len], cut + 1
        out_ids.append(f)
        out_labels.append(labels)
    return out_ids, out_labels, cut


def encode_sft(tokenizer, messages: Sequence[dict[str, str]], response: str, end_token: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one example: the prompt masked with -100, the answer = the tokens after it."""
    ids, labels, _ = encode_sft_batch(tokenizer, [(messages, response)], end_token)
    return ids[0], labels[0]


def pack_cpt(tokenizer, texts: Sequence[str], seq_len: int) -> list[list[int]]:
    """Documents as BOS + text + EOS, concatenated and cut into blocks of seq_len (the last one may be short)."""
    bos = tokenizer.bos_token_id if _uses_bos(tokenizer) else None
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []:
        stream.extend(([bos] if bos is not None else []) + list(ids) + ([eos] if eos is not None else []))
    blocks = [stream[i:i + seq_len] for i in range(0, len(stream), seq_len)]
    return [b for b in blocks if len(b) >= 2]


# --------------------------------------------------------------------------------------------------------
# datasets


def _as_dataset(data, stage: str):
    """A ``datasets.Dataset`` from a split folder, a Rows sequence, or a list of objects / texts / tuples."""
    from datasets import Dataset

    from tower_cat.finetune.store import Rows, is_split, open_split

    if isinstance(data, Dataset):
        return data
    if isinstance(data, Rows):
        return data.dataset
    if isinstance(data, (str, Path)) and is_split(data):
        return open_split(data)
    rows = list(data)
    if stage == "cpt":
        return Dataset.from_dict({"text": [d.text if hasattr(d, "text") else str(d) for d in rows]})
    convs = []
    for ex in rows:
        messages, response = (ex.messages, ex.response) if hasattr(ex, "messages") else ex
        convs.append([dict(m) for m in messages] + [{"role": "assistant", "content": response}])
    return Dataset.from_dict({"messages": convs})


class LazySft:
    """The SFT transform: a batch of Arrow rows (conversations ending with the answer) -> input_ids/labels."""

    def __init__(self, tokenizer, end_token: str, seq_len: int):
        self.tokenizer, self.end_token, self.seq_len = tokenizer, end_token, seq_len
        self.cut = 0

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        convs = [([dict(m) for m in msgs[:-1]], msgs[-1]["content"]) for msgs in batch["messages"]]
        ids, labels, cut = encode_sft_batch(self.tokenizer, convs, self.end_token, self.seq_len)
        self.cut += cut
        return {"input_ids": ids, "labels": labels}


def sft_dataset(data, tokenizer, end_token: str, seq_len: int):
    """(dataset, transform): the split memory-mapped, tokenized on access, batch by batch."""
    ds = _as_dataset(data, "sft")
    if not len(ds):
        raise TrainError("nothing to train on for stage sft")
    transform = LazySft(tokenizer, end_token, seq_len)
    return ds.with_transform(transform), transform


def cpt_dataset(data, tokenizer, seq_len: int, cache_dir: Path | None):
    """Packed CPT blocks: a streamed, batched map into an Arrow cache on disk (memory stays bounded)."""
    ds = _as_dataset(data, "cpt")

    def pack(batch):
        blocks = pack_cpt(tokenizer, batch["text"], seq_len)
        return {"input_ids": blocks, "labels": blocks}

    kwargs: dict[str, Any] = {}
    if cache_dir is not None and ds.cache_files:
        cache_dir.mkdir(parents=True, exist_ok=True)
        kwargs["cache_file_name"] = str(cache_dir / f"cpt-packed-{seq_len}.arrow")
    packed = ds.map(pack, batched=True, batch_size=1000, remove_columns=ds.column_names, desc="packing CPT",
                    **kwargs)
    if not len(packed):
        raise TrainError("nothing to train on for stage cpt")
    return packed


# --------------------------------------------------------------------------------------------------------
# model and trainer arguments


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


def load_model(model_dir: str | Path, config: TrainConfig, precision: str):
    """The model to train (LoRA is added by the trainer): frozen LoRA base weights may live in bf16; fully
    trained weights stay fp32 (bf16 autocast does the math)."""
    import torch
    import transformers

    dtype = torch.bfloat16 if (config.lora and precision == "bf16") else torch.float32
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    except (OSError, ValueError) as exc:
        raise TrainError(f"cannot load the model to train: {exc}", path=model_dir,
                         hint="give a Hugging Face model folder (config.json + weights + tokenizer)") from None
    model.config.use_cache = False
    return model


def lora_config(model, config: TrainConfig):
    if not config.lora:
        return None
    from peft import LoraConfig

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in config.lora_targets if t in present]
    if not targets:
        raise TrainError(f"none of the LoRA target modules {list(config.lora_targets)} is in this model")
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def trainer_args(config: TrainConfig, out_dir: Path, precision: str, device) -> dict[str, Any]:
    """The HF Trainer arguments every stage shares (TRL's configs take them as keywords)."""
    warmup = {"warmup_ratio": config.warmup} if config.warmup < 1 else {"warmup_steps": int(config.warmup)}
    return dict(
        output_dir=str(out_dir / "checkpoints"), overwrite_output_dir=False,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        **warmup, learning_rate=config.lr, weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm or 0.0,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": config.min_lr_ratio},
        bf16=precision == "bf16", gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        use_cpu=device.type == "cpu", seed=config.seed, data_seed=config.seed,
        save_strategy="steps" if config.save_every else "no", save_steps=config.save_every or 500,
        save_total_limit=config.keep_checkpoints or None, logging_steps=1, logging_first_step=True,
        report_to=[], disable_tqdm=not config.progress, dataloader_num_workers=0, remove_unused_columns=False,
        include_num_input_tokens_seen=True, save_only_model=False, ddp_find_unused_parameters=False,
    )


def _fingerprint(stage: str, config: TrainConfig, model_dir: Path, n: int) -> str:
    keep = {k: v for k, v in config.to_dict().items() if k not in ("progress", "log_every", "resume", "threads")}
    h = hashlib.sha256(json.dumps([stage, keep, str(model_dir.resolve()), n], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def last_checkpoint(out_dir: Path, fingerprint: str, resume: bool) -> str | None:
    """The checkpoint to resume from: the latest one of the same run (same stage, settings, data size)."""
    from transformers.trainer_utils import get_last_checkpoint

    root = out_dir / "checkpoints"
    if not root.is_dir():
        return None
    stamp = root / "fingerprint.json"
    same = stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint
    if not (resume and same):
        if not same and any(root.iterdir()):
            log.warning("checkpoints in %s are from another run (data or settings differ); starting over", root)
        shutil.rmtree(root, ignore_errors=True)
        return None
    return get_last_checkpoint(str(root))


def _stamp(out_dir: Path, fingerprint: str, is_main: bool) -> None:
    if is_main:
        root = out_dir / "checkpoints"
        root.mkdir(parents=True, exist_ok=True)
        (root / "fingerprint.json").write_text(json.dumps({"fingerprint": fingerprint}))


def losses_from(trainer) -> list[float]:
    """The per-step training losses of the run (one per optimizer step, averaged over processes)."""
    steps: dict[int, float] = {}
    for e in trainer.state.log_history:
        if "loss" in e and "step" in e:
            steps[int(e["step"])] = round(float(e["loss"]), 5)
    return [steps[s] for s in sorted(steps)]


def finish(trainer, tokenizer, out_dir: Path) -> None:
    """Save the final model (an HF folder, or a LoRA adapter folder) into OUT_DIR, replacing what was there;
    the checkpoints go once the final model is written. Main process only; everyone waits."""
    acc = trainer.accelerator
    final_tmp = out_dir.parent / f".{out_dir.name}.final"
    if acc.is_main_process and final_tmp.exists():
        shutil.rmtree(final_tmp)
    acc.wait_for_everyone()
    trainer.save_model(str(final_tmp))   # gathers FSDP / ZeRO-3 shards; writes on the main process
    if acc.is_main_process:
        tokenizer.save_pretrained(str(final_tmp))
        for name in ("training_args.bin",):
            (final_tmp / name).unlink(missing_ok=True)
        if out_dir.exists():
            for child in out_dir.iterdir():
                if child.name != "checkpoints":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        out_dir.mkdir(parents=True, exist_ok=True)
        for child in final_tmp.iterdir():
            os.replace(child, out_dir / child.name)
        final_tmp.rmdir()
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    acc.wait_for_everyone()


def quiet(trainer, progress: bool) -> None:
    """No log dicts printed to stdout when there is no progress bar (the losses are in training.json)."""
    from transformers.trainer_callback import PrinterCallback

    if not progress:
        trainer.remove_callback(PrinterCallback)


class _Threads:
    """CPU threads for the run (1 by default on CPU: tiny matrices, syncing costs more); restored after."""

    def __init__(self, config: TrainConfig, device):
        self.n = config.threads or (1 if device.type == "cpu" else None)

    def __enter__(self):
        import torch

        self.before = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)


# --------------------------------------------------------------------------------------------------------
# the stages


def train(model_dir: str | Path, out_dir: str | Path, *, stage: str, data, config: TrainConfig | None = None,
          tokenizer=None, callbacks: Sequence = ()) -> TrainResult:
    """Train MODEL_DIR on `data` and save the result in OUT_DIR (HF folder; adapter folder with LoRA).

    OUT_DIR belongs to the run: what else is in it is replaced by the final model.

    stage 'cpt': `data` are texts / CptDoc / a split folder; packed into seq_len blocks, every token trained.
    stage 'sft': `data` are SftExample / (messages, response) tuples / a split folder; loss on answer tokens.
    A run whose checkpoints exist in OUT_DIR/checkpoints resumes from the latest (config.resume).
    Under ``accelerate launch`` every process calls this; the data, the model and the steps are shared out
    by accelerate, and the main process writes OUT_DIR.
    """
    import torch
    import transformers
    from accelerate import PartialState
    from trl import SFTConfig, SFTTrainer

    config = config or TrainConfig()
    if stage not in ("cpt", "sft"):
        raise TrainError(f"unknown stage {stage!r}", hint="use cpt or sft (dpo: finetune.dpo, rl: finetune.rl)")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    started = time.time()
    device = resolve_device(config.device)
    state = PartialState(cpu=device.type == "cpu")
    tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    transform = None
    with state.main_process_first():
        if stage == "cpt":
            ds = cpt_dataset(data, tokenizer, config.seq_len, out_dir / "cache")
        else:
            ds, transform = sft_dataset(data, tokenizer, end_token_for(model_dir, tokenizer), config.seq_len)
    precision = resolve_precision(config.precision, device)
    fingerprint = _fingerprint(stage, config, model_dir, len(ds))
    resume_from = last_checkpoint(out_dir, fingerprint, config.resume) if state.is_main_process else None
    state.wait_for_everyone()
    if not state.is_main_process:
        from transformers.trainer_utils import get_last_checkpoint

        root = out_dir / "checkpoints"
        resume_from = get_last_checkpoint(str(root)) if config.resume and root.is_dir() else None
    _stamp(out_dir, fingerprint, state.is_main_process)
    with _Threads(config, device):
        torch.manual_seed(config.seed)
        model = load_model(model_dir, config, precision)
        args = SFTConfig(**trainer_args(config, out_dir, precision, device), max_length=None,
                         completion_only_loss=True, packing=False,
                         dataset_kwargs={"skip_prepare_dataset": True})
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                             peft_config=lora_config(model, config), callbacks=list(callbacks))
        quiet(trainer, config.progress)
        trainer.train(resume_from_checkpoint=resume_from)
        finish(trainer, tokenizer, out_dir)
    losses = losses_from(trainer)   # after a resume, the log restored from the checkpoint comes first
    result = TrainResult(stage, out_dir, trainer.state.global_step, len(ds),
                         int(trainer.state.num_input_tokens_seen or 0), losses[0] if losses else None,
                         losses[-1] if losses else None, time.time() - started, config.lora,
                         transform.cut if transform is not None else 0, losses)
    if state.is_main_process:
        (out_dir / "training.json").write_text(json.dumps({"result": result.to_dict(), "config": config.to_dict(),
                                                          "processes": state.num_processes}, indent=2) + "\n")
    return result
