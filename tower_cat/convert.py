"""Hugging Face model -> tower-cat model directory (CTranslate2 weights + tokenizer files + family sidecar).

CTranslate2's output folder holds only config.json, model.bin and vocabulary.json, and its config carries
whatever `tokenizer.eos_token` was — `</s>` for TowerInstruct, `<eos>` for Gemma 2 — not the turn-end token
the chat models actually stop on. So the conversion also copies the tokenizer and chat template, and writes
`tower_cat.json` naming the family and every token generation must stop on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from tower_cat.errors import ModelError

log = logging.getLogger(__name__)

SIDECAR = "tower_cat.json"
SIDECAR_FORMAT = 1

# Files copied next to model.bin when they exist in the source model.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json",
    "special_tokens_map.json", "added_tokens.json", "generation_config.json",
    "tokenizer.model", "sentencepiece.bpe.model", "source.spm", "target.spm", "vocab.json", "merges.txt",
)

QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "bfloat16", "float16",
                 "float32")

# Families: how prompts are rendered, which wording the translate prompt uses, which tokens end a turn.
TOWER_INSTRUCT = "tower_instruct"      # Llama/Mistral + ChatML, no system prompt (TowerInstruct v0.1/v0.2)
TOWER_PLUS_GEMMA2 = "tower_plus_gemma2"  # Tower+ 2B/9B: Gemma 2 turns
TOWER_PLUS_QWEN2 = "tower_plus_qwen2"    # Tower+ 72B: Qwen 2.5 ChatML
CHAT = "chat"                          # any other model with a chat template
BASE = "base"                          # no chat template: plain completion (TowerBase)
SEQ2SEQ = "seq2seq"                    # NLLB, M2M-100, Marian: ctranslate2.Translator
BAYLING = "bayling"                    # BayLing 1/2 (Llama): the BayLing repository's own conversation format
FAMILIES = (TOWER_INSTRUCT, TOWER_PLUS_GEMMA2, TOWER_PLUS_QWEN2, CHAT, BASE, SEQ2SEQ, BAYLING)

# Languages the model cards list (the sidecar's ``languages``; a job warns when a file's language is not among
# them). TowerInstruct-7B-v0.2 / TowerBase card: "English, German, French, Dutch, Italian, Spanish, Portuguese,
# Korean, Russian, Chinese"; Tower-Plus-2B card: 22 languages / 27 variants (``../shared/notes/tower-ct2-comet.md``
# section 1.5, "Language coverage"). Other models: unknown unless ``convert --languages`` says.
TOWER_V1_LANGUAGES = ("en", "de", "fr", "nl", "it", "es", "pt", "ko", "ru", "zh")
TOWER_PLUS_LANGUAGES = ("de", "es", "fr", "it", "ko", "nl", "ru", "en", "pt-PT", "pt-BR", "es-419", "zh-Hans",
                        "zh-Hant", "cs", "uk", "hi", "is", "ja", "pl", "sv", "hu", "ro", "da", "nb", "nn", "fi")

_SEQ2SEQ_TYPES = {"marian": "marian", "m2m_100": "m2m100", "nllb_moe": "nllb", "mbart": "mbart",
                  "bart": "bart", "t5": "t5", "mt5": "t5", "pegasus": "pegasus"}
# Turn-end tokens that, when the vocabulary has them, always stop a chat model.
_TURN_ENDS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<turn|>")


@dataclass
class ModelInfo:
    """The sidecar: what tower-cat needs to know about a converted model."""

    family: str
    architecture: str
    end_tokens: list[str]
    bos_token: str | None = None
    eos_token: str | None = None
    wording: str = "instruct"          # which translate wording prompts.py uses
    seq2seq_kind: str | None = None    # nllb | m2m100 | marian | ...
    hf_model: str | None = None        # the source model, for the transformers backend
    quantization: str | None = None
    format: int = SIDECAR_FORMAT
    notes: list[str] = field(default_factory=list)
    languages: list[str] | None = None     # what the model knows (BCP 47 codes); None: unknown, never warned about
    languages_source: str | None = None    # where that list comes from (a model card, convert --languages)
    family_source: str = "detected"        # detected | given (convert --family)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / SIDECAR
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "ModelInfo":
        path = Path(directory) / SIDECAR
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError("this folder has no tower_cat.json, so it was not made by `tower-cat convert`",
                             path=directory, hint="convert the model with `tower-cat convert SRC OUT`") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read the model description: {exc}", path=path,
                             hint="re-run `tower-cat convert`") from None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def wording_for(family: str) -> str:
    """Tower+ (both bases) was trained on its own wording; everything else gets TowerInstruct's."""
    if family in (TOWER_PLUS_GEMMA2, TOWER_PLUS_QWEN2):
        return "plus"
    if family == BASE:
        return "base"
    if family == BAYLING:
        return "bayling"
    return "instruct"


def card_languages(name: str | None, family: str) -> tuple[list[str] | None, str | None]:
    """(languages, source) from the model's name when it is a Tower model whose card lists them."""
    low = (name or "").lower().replace("_", "-")
    if family in (TOWER_PLUS_GEMMA2, TOWER_PLUS_QWEN2) and ("tower-plus" in low or "towerplus" in low):
        return list(TOWER_PLUS_LANGUAGES), "Tower+ model card (Tower-Plus-2B: 22 languages / 27 variants)"
    if "towerinstruct" in low or "towerbase" in low or "tower-instruct" in low or "tower-base" in low:
        return list(TOWER_V1_LANGUAGES), "TowerInstruct-7B-v0.2 / TowerBase model card (10 languages)"
    return None, None


def _is_bayling(name: str | None) -> bool:
    """The BayLing repository's own rule (bayling/model_adapter.py, BayLingAdapter.match): "bayling" in the model
    path; its Llama-3 model ("bayling-llama-3", BayLing3Adapter) has another format, not this family."""
    low = (name or "").lower()
    return "bayling" in low and "bayling-llama-3" not in low


def detect_family(config, tokenizer, *, name: str | None = None, family: str | None = None) -> ModelInfo:
    """Tell the family from the HF config and tokenizer (no weights needed); ``name`` (the model's folder or hub
    id) tells Tower models' languages and BayLing apart; ``family`` overrides the guess (``convert --family``)."""
    info = _detect_family(config, tokenizer, name=name, family=family)
    if family is not None:
        info.family_source = "given"
    info.languages, info.languages_source = card_languages(name, info.family)
    return info


def _detect_family(config, tokenizer, *, name: str | None, family: str | None) -> ModelInfo:
    if family is not None and family not in FAMILIES:
        raise ModelError(f"unknown model family {family!r}", param="family",
                         hint="choose one of " + ", ".join(FAMILIES))
    model_type = getattr(config, "model_type", "") or ""
    vocab = tokenizer.get_vocab() if tokenizer is not None else {}
    bos = getattr(tokenizer, "bos_token", None)
    eos = getattr(tokenizer, "eos_token", None)
    seq2seq = getattr(config, "is_encoder_decoder", False) or model_type in _SEQ2SEQ_TYPES
    if family is not None and (family == SEQ2SEQ) != bool(seq2seq):
        raise ModelError(f"this {model_type or 'unknown'} model is {'a' if seq2seq else 'not a'} seq2seq model: it "
                         f"cannot be run as family {family!r}", param="family",
                         hint="seq2seq is for encoder-decoder models (Marian, NLLB, M2M-100) only")
    if seq2seq:
        kind = _SEQ2SEQ_TYPES.get(model_type, model_type)
        if "Nllb" in type(tokenizer).__name__ or "eng_Latn" in vocab:
            kind = "nllb"
        return ModelInfo(family=SEQ2SEQ, architecture=model_type, end_tokens=[eos] if eos else [],
                         bos_token=bos, eos_token=eos, wording="seq2seq", seq2seq_kind=kind)

    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # named templates: the default one renders chats
        template = template.get("default", "") or next(iter(template.values()), "")
    chatml = "<|im_start|>" in template and "<|im_start|>" in vocab
    given = family
    if given is not None:
        if given in (TOWER_INSTRUCT, TOWER_PLUS_GEMMA2, TOWER_PLUS_QWEN2, CHAT) and not template:
            raise ModelError(f"family {given!r} renders prompts with the tokenizer's chat template, and this model "
                             "has none", param="family",
                             hint="use base (plain completion) or bayling, or add a chat template to the tokenizer")
    elif not template and _is_bayling(name):
        family = BAYLING  # BayLing ships no chat template; its format lives in its repository
    elif not template:
        family = BASE
    elif model_type in ("llama", "mistral") and chatml:
        family = TOWER_INSTRUCT
    elif model_type == "gemma2" and "<start_of_turn>" in template:
        family = TOWER_PLUS_GEMMA2
    elif model_type == "qwen2" and chatml:
        family = TOWER_PLUS_QWEN2
    else:
        family = CHAT

    ends: list[str] = []
    preferred = {
        TOWER_INSTRUCT: ["<|im_end|>", "</s>"],
        TOWER_PLUS_GEMMA2: ["<end_of_turn>", "<eos>"],
        TOWER_PLUS_QWEN2: ["<|im_end|>", "<|endoftext|>"],
        BAYLING: ["</s>"],  # the conversation's sep2; its inference stops on the tokenizer's EOS
    }.get(family, [])
    if family == CHAT:
        preferred = [t for t in _TURN_ENDS if t in template]
    for token in preferred + ([eos] if eos else []):
        if token and token in vocab and token not in ends:
            ends.append(token)
    if not ends:
        raise ModelError(f"cannot tell which token ends a generation for this {model_type or 'unknown'} model "
                         "(the tokenizer has no end-of-sequence token)",
                         hint="check the model's tokenizer_config.json")
    notes = []
    if model_type == "gemma2":
        notes.append("CTranslate2 does not implement Gemma 2 logit soft-capping or the sliding window: greedy "
                     "output can differ from Hugging Face, above all past 4096 tokens; scores are approximate. "
                     "Use --backend transformers for the exact model.")
    return ModelInfo(family=family, architecture=model_type, end_tokens=ends, bos_token=bos, eos_token=eos,
                     wording=wording_for(family), notes=notes)


def inspect_model(src: str | Path, *, family: str | None = None) -> ModelInfo:
    """Detect the family of a Hugging Face model directory (or hub id) without loading its weights; ``family``
    overrides the guess."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(str(src))
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(src))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read a Hugging Face model here: {exc}", path=src,
                         hint="give a folder with config.json and tokenizer files, or a hub id when online") from None
    name = Path(src).resolve().name if Path(src).is_dir() else str(src)  # the folder's own name, or the hub id
    return detect_family(config, tokenizer, name=name, family=family)


def parse_languages(value: str | Sequence[str] | None) -> list[str] | None:
    """``"en,de,pt-BR"`` (or a list) -> checked, normalised BCP 47 codes; None stays None."""
    from tower_cat.languages import check_lang

    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    codes = [check_lang(v.strip(), "model language") for v in items if v.strip()]
    if not codes:
        raise ModelError("no language given", param="languages", hint="give codes such as en,de,pt-BR")
    return list(dict.fromkeys(codes))


def convert_model(src: str | Path, out: str | Path, *, quantization: str | None = None, force: bool = False,
                  low_cpu_mem_usage: bool = True, family: str | None = None,
                  languages: str | Sequence[str] | None = None) -> ModelInfo:
    """Convert SRC (HF folder or hub id) into OUT: CT2 weights, tokenizer files and tower_cat.json. ``family``
    overrides the detected family; ``languages`` (codes) are what the model knows (default: its model card's
    list for Tower models, else unknown)."""
    from ctranslate2.converters import TransformersConverter

    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ModelError(f"unknown quantization {quantization!r}", hint="choose one of " + ", ".join(QUANTIZATIONS))
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ModelError("the output folder already exists and is not empty", path=out,
                         param="force", hint="choose another folder or pass force=True to overwrite it")
    info = inspect_model(src, family=family)
    if languages is not None:
        info.languages, info.languages_source = parse_languages(languages), "convert --languages"
    local = Path(src).is_dir()
    copy_files = [name for name in TOKENIZER_FILES if (Path(src) / name).is_file()] if local else []

    # Convert into a temporary sibling folder and rename, so an interrupted conversion never leaves a
    # folder that looks complete.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        converter = TransformersConverter(str(src), copy_files=copy_files or None,
                                          low_cpu_mem_usage=low_cpu_mem_usage)
        try:
            converter.convert(str(tmp), quantization=quantization, force=True)
        except ValueError as exc:
            raise ModelError(f"CTranslate2 cannot convert this model: {exc}", path=src,
                             hint="supported: Llama, Mistral, Gemma 2, Qwen 2, Marian, M2M-100/NLLB") from None
        if not local:  # hub id: let the tokenizer write its own files
            import transformers

            transformers.AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(tmp))
        info.hf_model = str(Path(src).resolve()) if local else str(src)
        info.quantization = quantization
        info.save(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for note in info.notes:
        log.warning(note)
    return info
