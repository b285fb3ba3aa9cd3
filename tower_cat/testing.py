"""Tiny Tower-like models built on the spot: a real tokenizer, chat template and architecture, random weights.

Tests and benchmarks need every code path of a real Tower model (chat template, BOS handling, end tokens,
CT2 conversion) without downloading gigabytes. A model here is built in about a second: a byte-level BPE
tokenizer trained on a little text, a Llama / Qwen2 / Gemma2 config with seeded random weights, saved with
`save_pretrained` and converted with tower-cat's own `convert_model`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from tower_cat.convert import ModelInfo, convert_model

ARCHITECTURES = ("llama", "qwen2", "gemma2")  # decoder-only (Tower families)
SEQ2SEQ_ARCHITECTURES = ("marian",)            # encoder-decoder, served by ctranslate2.Translator
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"

# ChatML as TowerInstruct uses it: no system prompt, BOS added by the tokenizer (not by the template).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Gemma's own template: BOS written by the template *and* added by the tokenizer — the double-BOS trap.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Per architecture: special tokens (in id order), bos / eos / pad / unk, template.
_SPECIALS = {
    "llama": dict(tokens=["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"],
                  bos="<s>", eos="</s>", pad=None, unk="<unk>", template=CHATML_TEMPLATE),
    "qwen2": dict(tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                  bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None, template=CHATML_TEMPLATE),
    "gemma2": dict(tokens=["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
                   bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>", template=GEMMA_TEMPLATE),
}

DEFAULT_TEXTS = [
    "Translate the following text from English into German.",
    "Translate the following English source text to Portuguese (Portugal):",
    "English: The printer is out of paper.", "German: Der Drucker hat kein Papier mehr.",
    "Portuguese: Um grupo de investigadores lançou um novo modelo para tarefas relacionadas com tradução.",
    "English: A group of researchers has launched a new model for translation-related tasks.",
    "French: Le chat dort sur le canapé.", "Spanish: El gato duerme en el sofá.",
    "Italian: Il gatto dorme sul divano.", "Dutch: De kat slaapt op de bank.",
    "Click Save to keep your changes.", "Klicken Sie auf Speichern, um Ihre Änderungen zu behalten.",
    "The file could not be opened because it is locked by another user.",
    "Die Datei konnte nicht geöffnet werden, da sie von einem anderen Benutzer gesperrt ist.",
    "Post-edit the translation. Rate the quality of the translation on a scale from 0 to 100.",
    "Identify the errors in the translation: \"span\" - minor, \"span\" - major. No errors.",
    "Context: the previous sentence. Terminology: printer = Drucker; paper = Papier.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 50% €20 $5.",
    "Chinese: 打印机没有纸了。 Russian: В принтере закончилась бумага. Korean: 프린터에 용지가 없습니다.",
    "Portuguese (Brazil): A impressora está sem papel. Chinese (Traditional): 印表機沒有紙了。",
]


@dataclass(frozen=True)
class TinyModel:
    """A built model: the Hugging Face folder and the tower-cat (CT2) folder made from it."""

    arch: str
    hf_path: Path
    ct2_path: Path | None
    info: ModelInfo | None


def sample_texts(directory: Path = SAMPLES_DIR, limit: int = 2000) -> list[str]:
    """Lines of text from the project's sample files (markup stripped), for tokenizer training."""
    lines: list[str] = []
    if directory.is_dir():
        for path in sorted(directory.rglob("*")):
            if not path.is_file() or path.stat().st_size > 2_000_000:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            text = re.sub(r"<[^>]{0,400}>", " ", text)
            for line in text.splitlines():
                line = " ".join(line.split())
                if len(line) > 3:
                    lines.append(line)
                if len(lines) >= limit:
                    return lines
    return lines


def train_tokenizer(arch: str = "llama", texts: Iterable[str] | None = None, vocab_size: int = 512):
    """A byte-level BPE `PreTrainedTokenizerFast` with the family's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    spec = _SPECIALS[_check_arch(arch)]
    corpus = list(texts) if texts is not None else (sample_texts() + DEFAULT_TEXTS)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=spec["tokens"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    if spec["bos"]:  # Llama and Gemma tokenizers put BOS in front of every encoded text
        bos_id = tok.token_to_id(spec["bos"])
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A {spec['bos']} $B",
            special_tokens=[(spec["bos"], bos_id)])
    extra = [t for t in spec["tokens"] if t not in (spec["bos"], spec["eos"], spec["pad"], spec["unk"])]
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=spec["bos"], eos_token=spec["eos"],
                                   pad_token=spec["pad"], unk_token=spec["unk"],
                                   additional_special_tokens=extra, clean_up_tokenization_spaces=False)
    fast.chat_template = spec["template"]
    return fast


def _check_arch(arch: str) -> str:
    if arch not in ARCHITECTURES + SEQ2SEQ_ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of "
                         f"{', '.join(ARCHITECTURES + SEQ2SEQ_ARCHITECTURES)}")
    return arch


def train_marian_tokenizer(texts: Iterable[str] | None = None, vocab_size: int = 512):
    """Marian-style tokenizer: `</s>` appended to every source, `<pad>` as the last id (CT2 drops it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(texts) if texts is not None else (sample_texts() + DEFAULT_TEXTS)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["</s>", "<unk>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens(["<pad>"])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                   clean_up_tokenization_spaces=False)


def _marian_model(tokenizer, hidden_size: int = 64, layers: int = 2, heads: int = 4, init_range: float = 0.1,
                  **_ignored):
    import transformers

    pad = tokenizer.pad_token_id
    config = transformers.MarianConfig(
        vocab_size=len(tokenizer), d_model=hidden_size, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=2 * hidden_size,
        decoder_ffn_dim=2 * hidden_size, max_position_embeddings=512, pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=pad, forced_eos_token_id=None,
        init_std=init_range, share_encoder_decoder_embeddings=True, scale_embedding=True)
    return transformers.MarianMTModel(config)


def make_config(arch: str, vocab_size: int, tokenizer=None, *, hidden_size: int = 64, layers: int = 2,
                heads: int = 4, kv_heads: int = 2, intermediate_size: int | None = None,
                max_positions: int = 1024, tie_embeddings: bool | None = None, init_range: float = 0.1):
    """A transformers config for a small model of the given architecture."""
    import transformers

    ids = {}
    if tokenizer is not None:
        ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    common = dict(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
                  num_attention_heads=heads, num_key_value_heads=kv_heads,
                  intermediate_size=intermediate_size or 2 * hidden_size, max_position_embeddings=max_positions,
                  initializer_range=init_range, rms_norm_eps=1e-6, **ids)
    if arch == "llama":
        return transformers.LlamaConfig(tie_word_embeddings=bool(tie_embeddings), **common)
    if arch == "qwen2":
        return transformers.Qwen2Config(tie_word_embeddings=bool(tie_embeddings),
                                        use_sliding_window=False, **common)
    head_dim = hidden_size // heads
    return transformers.Gemma2Config(head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=4096,
                                     attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                                     hidden_activation="gelu_pytorch_tanh", **common)


def build_tiny_hf_model(out_dir: str | Path, arch: str = "llama", *, texts: Sequence[str] | None = None,
                        vocab_size: int = 512, seed: int = 0, bias_token: str | None = None,
                        tokenizer=None, model_vocab_size: int | None = None, **config_kwargs) -> Path:
    """Save a seeded random model + tokenizer as a Hugging Face folder; returns its path.

    bias_token: make the model predict this token after any input (to test stopping on end tokens).
    model_vocab_size: embedding rows beyond the tokenizer's (as real checkpoints pad theirs; the benchmark
    uses it to get a 32k-row, Llama-sized output layer).
    """
    import torch
    import transformers

    _check_arch(arch)
    out_dir = Path(out_dir)
    if arch in SEQ2SEQ_ARCHITECTURES:
        tokenizer = tokenizer if tokenizer is not None else train_marian_tokenizer(texts, vocab_size)
        torch.manual_seed(seed)
        model = _marian_model(tokenizer, **config_kwargs)
        model.generation_config = transformers.GenerationConfig(
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            decoder_start_token_id=tokenizer.pad_token_id)
    else:
        tokenizer = tokenizer if tokenizer is not None else train_tokenizer(arch, texts, vocab_size)
        config = make_config(arch, max(model_vocab_size or 0, len(tokenizer)), tokenizer, **config_kwargs)
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        if bias_token is not None:
            _bias_towards(model, tokenizer.convert_tokens_to_ids(bias_token), arch)
        model.generation_config = transformers.GenerationConfig(
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _bias_towards(model, token_id: int, arch: str) -> None:
    """Rig the weights so `token_id` is the argmax after any input.

    The final norm keeps only hidden dimension 0; every embedding has a large positive value there, and the
    output row of `token_id` the largest, so its logit wins whatever the (small) layers add.
    """
    import torch

    with torch.no_grad():
        norm = model.model.norm.weight
        if arch == "gemma2":  # Gemma's RMSNorm scales by (1 + weight)
            norm.fill_(-1.0)
            norm[0] = 0.0
        else:
            norm.zero_()
            norm[0] = 1.0
        emb = model.model.embed_tokens.weight
        emb[:, 0] = 10.0
        head = model.lm_head.weight
        head[:, 0] = 10.0  # same tensor as emb when embeddings are tied
        head[token_id, 0] = 100.0


def build_tiny_model(out_dir: str | Path, arch: str = "llama", *, quantization: str | None = None,
                     texts: Sequence[str] | None = None, vocab_size: int = 512, seed: int = 0,
                     bias_token: str | None = None, tokenizer=None, convert: bool = True,
                     model_vocab_size: int | None = None, **config_kwargs) -> TinyModel:
    """Build `out_dir/hf` (Hugging Face) and convert it into `out_dir/ct2` (tower-cat model folder)."""
    out_dir = Path(out_dir)
    hf = build_tiny_hf_model(out_dir / "hf", arch, texts=texts, vocab_size=vocab_size, seed=seed,
                             bias_token=bias_token, tokenizer=tokenizer, model_vocab_size=model_vocab_size,
                             **config_kwargs)
    if not convert:
        return TinyModel(arch, hf, None, None)
    info = convert_model(hf, out_dir / "ct2", quantization=quantization, force=True)
    return TinyModel(arch, hf, out_dir / "ct2", info)
