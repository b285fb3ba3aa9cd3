"""Tiny COMET checkpoints built on the spot, in the exact layout Unbabel publishes.

A real COMET model folder (``Unbabel/wmt22-comet-da``, ``wmt22-cometkiwi-da``, ``XCOMET-XL``) holds
``hparams.yaml`` and ``checkpoints/model.ckpt`` (a PyTorch Lightning checkpoint whose ``hyper_parameters``
name the encoder, e.g. ``pretrained_model: xlm-roberta-large``). The encoder's config and tokenizer are not in
the folder: COMET fetches them from the Hub by that name. Tests, docs and benchmarks need every code path of
such a folder without gigabytes or a network, so this module writes one with:

- a tiny XLM-R encoder folder (``XLMRobertaConfig`` with 2 layers of width 32 + a Unigram tokenizer trained on
  a few hundred words, wrapped as ``XLMRobertaTokenizerFast``), and
- a COMET model class (regression, referenceless, unified/CometKiwi, XCOMET) with seeded random weights,
  saved as a Lightning checkpoint + ``hparams.yaml``.

``encoder="inside"`` (default) stores the encoder in ``<dir>/encoder`` and names it by a Hub-like id in the
checkpoint — the situation of a user who copied a real model folder and its encoder next to it;
``encoder="absolute"`` writes the encoder folder's absolute path into the checkpoint, which plain
``comet.load_from_checkpoint`` can load offline as is (used by the equality tests).

Build time: about a second per checkpoint on one CPU core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

KINDS = ("regression", "referenceless", "unified", "xcomet")
CLASS_IDENTIFIERS = {
    "regression": "regression_metric",
    "referenceless": "referenceless_regression_metric",
    "unified": "unified_metric",
    "xcomet": "xcomet_metric",
}
# The Hub id written into an "inside" checkpoint; resolved by tower_cat.qe to <dir>/encoder.
TINY_ENCODER_ID = "tower-cat/tiny-xlmr"

_TEXTS = [
    "The printer is out of paper.", "Der Drucker hat kein Papier mehr.",
    "Click Save to keep your changes.", "Klicken Sie auf Speichern, um Ihre Änderungen zu behalten.",
    "The file could not be opened because it is locked by another user.",
    "Die Datei konnte nicht geöffnet werden, da sie von einem anderen Benutzer gesperrt ist.",
    "Le chat dort sur le canapé.", "El gato duerme en el sofá.", "Il gatto dorme sul divano.",
    "A group of researchers has launched a new model for translation-related tasks.",
    "Um grupo de investigadores lançou um novo modelo para tarefas relacionadas com tradução.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 50% €20 $5.",
    "打印机没有纸了。 В принтере закончилась бумага. 프린터에 용지가 없습니다.",
    "Open the settings menu and select a language.", "Öffnen Sie das Einstellungsmenü und wählen Sie eine Sprache.",
    "Your session has expired. Please sign in again.", "Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.",
]


def build_encoder(out_dir: str | Path, *, texts: Sequence[str] | None = None, vocab_size: int = 300,
                  hidden_size: int = 32, layers: int = 2, heads: int = 2) -> Path:
    """Write a tiny XLM-R encoder folder (config.json + tokenizer files) and return its path."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaTokenizerFast

    out_dir = Path(out_dir)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R ids 0..3
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False)
    corpus = list(texts or _TEXTS)
    tok.train_from_iterator(corpus * 3, trainer=trainer)
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=512)
    assert fast.pad_token_id == 1 and fast.cls_token_id == 0 and fast.sep_token_id == 2
    config = XLMRobertaConfig(vocab_size=len(fast), hidden_size=hidden_size, num_hidden_layers=layers,
                              num_attention_heads=heads, intermediate_size=hidden_size * 2,
                              max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                              bos_token_id=0, eos_token_id=2)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return out_dir


def build_tiny_comet(out_dir: str | Path, kind: str = "regression", *, seed: int = 0,
                     encoder: str = "inside", encoder_dir: str | Path | None = None) -> Path:
    """Write ``out_dir/hparams.yaml`` + ``out_dir/checkpoints/model.ckpt`` for a tiny COMET model.

    kind: ``regression`` (wmt22-comet-da: src+mt+ref), ``referenceless`` (wmt20-comet-qe style: src+mt),
    ``unified`` (wmt22-cometkiwi-da: src+mt), ``xcomet`` (XCOMET: src+mt[+ref], error spans).
    encoder: ``inside`` (encoder in ``out_dir/encoder``, named ``TINY_ENCODER_ID`` in the checkpoint) or
    ``absolute`` (the encoder folder's absolute path in the checkpoint). ``encoder_dir`` reuses a built
    encoder folder (absolute mode only).
    Returns ``out_dir``.
    """
    import pytorch_lightning as ptl
    import torch
    import yaml

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    if encoder not in ("inside", "absolute"):
        raise ValueError("encoder must be 'inside' or 'absolute'")
    out_dir = Path(out_dir).resolve()
    if encoder == "inside" or encoder_dir is None:
        enc_dir = build_encoder(out_dir / "encoder")
    else:
        enc_dir = Path(encoder_dir).resolve()

    common = dict(pretrained_model=str(enc_dir), encoder_model="XLM-RoBERTa", load_pretrained_weights=False,
                  local_files_only=True, nr_frozen_epochs=0.3, keep_embeddings_frozen=True, dropout=0.1,
                  batch_size=4, train_data=[], validation_data=[])
    torch.manual_seed(seed)
    if kind == "regression":
        from comet.models import RegressionMetric
        model = RegressionMetric(**common, pool="avg", layer="mix", layer_transformation="sparsemax",
                                 layer_norm=False, hidden_sizes=[16], activations="Tanh",
                                 final_activation="Sigmoid")
    elif kind == "referenceless":
        from comet.models import ReferencelessRegression
        model = ReferencelessRegression(**common, pool="avg", layer="mix", layer_transformation="sparsemax",
                                        layer_norm=False, hidden_sizes=[16], activations="Tanh",
                                        final_activation="Sigmoid")
    elif kind == "unified":
        from comet.models import UnifiedMetric
        model = UnifiedMetric(**common, sent_layer="mix", layer_transformation="sparsemax_patch",
                              layer_norm=True, word_layer=2, hidden_sizes=[16], activations="Tanh",
                              final_activation="Sigmoid", input_segments=["mt", "src"], word_level_training=False,
                              loss_lambda=0.65, error_labels=["minor", "major"], cross_entropy_weights=None)
    else:
        from comet.models import XCOMETMetric
        model = XCOMETMetric(**common, sent_layer="mix", layer_transformation="sparsemax", layer_norm=False,
                             word_layer=2, hidden_sizes=[16], activations="Tanh", final_activation="Sigmoid",
                             word_level_training=True, error_labels=["minor", "major", "critical"],
                             loss_lambda=0.055, cross_entropy_weights=[0.08, 0.486, 0.505, 0.533])
        _rig_error_tags(model)
    _spread_scores(model)
    model.train(False)

    hparams = dict(model.hparams)
    for key in ("load_pretrained_weights", "local_files_only"):
        hparams.pop(key, None)
    hparams["class_identifier"] = CLASS_IDENTIFIERS[kind]
    if encoder == "inside":
        hparams["pretrained_model"] = TINY_ENCODER_ID
    ckpt = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": ptl.__version__,
        "state_dict": model.state_dict(),
        "hyper_parameters": hparams,
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out_dir / "checkpoints" / "model.ckpt")
    (out_dir / "hparams.yaml").write_text(yaml.safe_dump(_plain(hparams), sort_keys=True), encoding="utf-8")
    return out_dir


def _plain(value):
    """hparams as YAML-safe plain types (Lightning's AttributeDict and tuples are not)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _spread_scores(model) -> None:
    """Random tiny encoders give almost the same score to every input. Rescale the estimator's last layer so
    that, on a few probe pairs, the scores (0-1 after the sigmoid, like COMET-DA scores) spread over roughly
    0.2-0.8: the tests need thresholds that split segments."""
    import math

    import torch

    probes = [{"src": s, "mt": m, "ref": m} for s, m in zip(_TEXTS[0::2], _TEXTS[1::2])]
    probes += [{"src": s, "mt": s[::-1], "ref": s} for s in _TEXTS[0::3]]
    if not model.requires_references():
        for p in probes:
            p.pop("ref")
    from tower_cat.qe import quiet_lightning

    with quiet_lightning():
        out = model.predict(probes, batch_size=16, gpus=0, progress_bar=False)
    src_scores = getattr(out, "metadata", None) and out.metadata.get("src_scores")
    raw = [float(x) for x in (src_scores if src_scores is not None else out.scores)]
    z = torch.tensor([math.log(max(p, 1e-6) / max(1 - p, 1e-6)) for p in raw])
    scale = 1.2 / max(float(z.std()), 1e-6)
    with torch.no_grad():
        last = [m for m in model.estimator.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(scale)
        last.bias.sub_(float(z.mean())).mul_(scale)


def _rig_error_tags(model) -> None:
    """Make the word-level head tag some subwords as errors, so XCOMET error spans are not always empty."""
    import torch

    with torch.no_grad():
        model.hidden2tag.weight.mul_(30.0)
        model.hidden2tag.bias.copy_(torch.tensor([0.5, 0.0, 0.0, -0.5])[: model.hidden2tag.bias.numel()])
