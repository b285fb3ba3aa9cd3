"""Quality estimation: one interface, three backends.

``QEBackend.score(items) -> results`` turns (source, translation[, reference]) pairs into 0-100 scores, plus
error spans where the backend finds them:

- ``comet``   an unbabel-comet checkpoint folder (CometKiwi and other reference-free models for QE; wmt22-comet-da
              and other reference-based models when references are given; XCOMET error spans), loaded offline.
- ``llm``     a Tower model as a judge through the engine, with the QE prompts of ``tower_cat.prompts``.
- ``logprob`` the engine's mean token log-probability of the translation given the translation prompt, mapped to
              0-100 (``100 * exp(mean)``), or through a monotone calibration fitted on human scores.

``score_units`` and ``gate`` apply a backend to document units: the building blocks of ``tower-cat qe`` and of
QE-gated post-editing in the translate pipeline. Nothing here reads or writes files except calibration JSON.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

from tower_cat.errors import InvalidArgument, ModelError, TowerCatError

log = logging.getLogger(__name__)

BACKENDS = ("comet", "llm", "logprob")


# ---------------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class QEItem:
    """One translation to score. ``reference`` only for reference-based COMET models (evaluation)."""

    source: str
    target: str
    reference: str | None = None
    source_lang: str | None = None
    target_lang: str | None = None
    id: str | None = None


class QESpan(NamedTuple):
    """An error in the translation: character offsets into ``QEItem.target``, severity minor|major|critical."""

    start: int
    end: int
    severity: str
    text: str


@dataclass
class QEResult:
    """``score``: 0-100, higher is better; None when the backend could not score (an LLM reply without a number).
    ``raw``: the backend's own value (COMET score and metadata, the judge's reply, the mean log-prob)."""

    score: float | None
    error_spans: list[QESpan] = field(default_factory=list)
    raw: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "error_spans": [s._asdict() for s in self.error_spans], "raw": _jsonable(self.raw)}


class QEBackend:
    """Interface: ``score(items) -> list[QEResult]``, one result per item, in order."""

    name = "qe"
    #: True when every item must carry a reference (reference-based COMET models).
    requires_reference = False

    def score(self, items: Sequence[QEItem]) -> list[QEResult]:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        """A short name for reports and file annotations (e.g. ``comet:wmt22-cometkiwi-da``)."""
        return self.name

    def close(self) -> None:
        """Free the model (GPU memory); the backend loads it again on next use."""


def _clamp100(value: float) -> float:
    if value != value:  # NaN
        return 0.0
    return max(0.0, min(100.0, value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


# ---------------------------------------------------------------------------------------------------------
# COMET


COMET_HELP = (
    "A COMET model is a folder with hparams.yaml and checkpoints/model.ckpt plus its encoder (config.json and "
    "tokenizer files of the pretrained_model named in hparams.yaml, e.g. microsoft/infoxlm-large or "
    "xlm-roberta-large) in <model>/encoder/. On a machine with network: "
    "`huggingface-cli download Unbabel/wmt22-cometkiwi-da --local-dir wmt22-cometkiwi-da` (gated: accept the "
    "licence on huggingface.co first and `huggingface-cli login`; CC-BY-NC-SA) and "
    "`huggingface-cli download microsoft/infoxlm-large config.json tokenizer.json sentencepiece.bpe.model "
    "tokenizer_config.json special_tokens_map.json --local-dir wmt22-cometkiwi-da/encoder`, then copy the folder. "
    "See 'Getting COMET models' in the tower-cat README."
)

_ENCODER_SUBDIRS = ("encoder", "pretrained_model")
_TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model")


class quiet_lightning:
    """Silence PyTorch Lightning's banner lines, COMET's info logs and their deprecation warnings."""

    NAMES = ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "comet")

    def __enter__(self):
        self._levels = {}
        for name in self.NAMES:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.ERROR)
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        self._warn.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        return False


def _encoder_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / f).is_file() for f in _TOKENIZER_FILES)


def comet_checkpoint(path: str | Path) -> Path:
    """The ``checkpoints/model.ckpt`` of a COMET model folder (or the file itself); clear errors otherwise."""
    path = Path(path).expanduser()
    if path.is_file():
        ckpt = path
    elif path.is_dir():
        ckpt = path / "checkpoints" / "model.ckpt"
        if not ckpt.is_file():
            found = sorted(path.glob("checkpoints/*.ckpt"))
            if len(found) == 1:
                ckpt = found[0]
            else:
                raise ModelError("not a COMET model folder: checkpoints/model.ckpt is missing", path=path,
                                 hint=COMET_HELP)
    else:
        raise ModelError("COMET model folder not found", path=path, hint=COMET_HELP)
    with open(ckpt, "rb") as fh:
        head = fh.read(64)
    if head.startswith(b"version https://git-lfs"):
        raise ModelError("model.ckpt is a Git LFS pointer, not the weights", path=ckpt,
                         hint="download with huggingface-cli (or `git lfs pull`), not a plain git clone")
    if not (ckpt.parents[1] / "hparams.yaml").is_file():
        raise ModelError("hparams.yaml is missing next to checkpoints/", path=ckpt.parents[1], hint=COMET_HELP)
    return ckpt


def resolve_encoder(model_dir: Path, pretrained_model: str, encoder: str | Path | None = None) -> Path:
    """Where the encoder's config and tokenizer live, without any network access.

    In order: ``encoder`` when given; ``<model>/encoder`` or ``<model>/pretrained_model``; a folder named like the
    model's encoder inside or beside the model folder (``<model>/infoxlm-large``, ``<model>/../infoxlm-large``);
    ``pretrained_model`` itself when it is a folder; the Hugging Face cache.
    """
    tried: list[str] = []
    if encoder is not None:
        enc = Path(encoder).expanduser()
        if _encoder_complete(enc):
            return enc
        raise ModelError("the encoder folder needs config.json and tokenizer.json or sentencepiece.bpe.model",
                         path=enc, hint=COMET_HELP)
    base = pretrained_model.rstrip("/").split("/")[-1] if pretrained_model else ""
    candidates = [model_dir / d for d in _ENCODER_SUBDIRS]
    if base:
        candidates += [model_dir / base, model_dir.parent / base]
    if pretrained_model:
        p = Path(pretrained_model).expanduser()
        candidates += [p if p.is_absolute() else model_dir / p, p]
    for cand in candidates:
        tried.append(str(cand))
        if cand.is_dir() and _encoder_complete(cand):
            return cand
    if pretrained_model and not Path(pretrained_model).is_absolute():
        try:
            from huggingface_hub import snapshot_download

            cached = Path(snapshot_download(repo_id=pretrained_model, local_files_only=True))
            if _encoder_complete(cached):
                return cached
        except Exception:  # not cached, or not a valid repo id
            pass
        tried.append(f"Hugging Face cache ({pretrained_model})")
    raise ModelError(f"the encoder files of this COMET model ({pretrained_model or 'unknown'}: config.json and "
                     f"tokenizer) are missing; looked in {', '.join(tried)}", path=model_dir, hint=COMET_HELP)


def _import_comet():
    """``comet.models.str2model``, imported quietly: comet calls logging.basicConfig(level=INFO) on import and
    its dependencies warn about pkg_resources; keep the root logger's level as it was."""
    root = logging.getLogger()
    level = root.level
    try:
        with quiet_lightning():
            from comet.models import str2model
    except ImportError as exc:
        raise TowerCatError(f"COMET is not installed ({exc})",
                            hint='pip install "tower-cat[ml]" (unbabel-comet 2.2.7)') from None
    finally:
        root.setLevel(level)
    return str2model


def load_comet(path: str | Path, *, encoder: str | Path | None = None):
    """Load a COMET checkpoint offline: the model class from hparams.yaml, weights from model.ckpt, the encoder's
    config/tokenizer from a local folder (see ``resolve_encoder``). Returns the comet model (CPU, eval mode)."""
    ckpt = comet_checkpoint(path)
    model_dir = ckpt.parents[1]
    str2model = _import_comet()
    import torch
    import yaml

    hparams = yaml.safe_load((model_dir / "hparams.yaml").read_text(encoding="utf-8")) or {}
    class_id = hparams.get("class_identifier")
    if class_id not in str2model:
        raise ModelError(f"hparams.yaml names an unknown COMET model class {class_id!r}", path=model_dir,
                         hint=f"expected one of {', '.join(str2model)}")
    # Real COMET folders name the encoder in hparams.yaml as in the checkpoint; read the checkpoint's own
    # hyper-parameters (memory-mapped, no weights read) only when the YAML does not say.
    pretrained = str(hparams.get("pretrained_model") or "")
    if not pretrained:
        with quiet_lightning():
            try:
                raw = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
                pretrained = str((raw.get("hyper_parameters") or {}).get("pretrained_model") or "")
                del raw
            except Exception as exc:
                raise ModelError(f"cannot read the checkpoint: {exc}", path=ckpt,
                                 hint="re-download it; a partial download is not a checkpoint") from None
    enc_dir = resolve_encoder(model_dir, pretrained, encoder)
    kwargs: dict[str, Any] = dict(checkpoint_path=ckpt, load_pretrained_weights=False, hparams_file=None,
                                  map_location=torch.device("cpu"), strict=False, local_files_only=True,
                                  pretrained_model=str(enc_dir))
    # COMET >= 2.2.4 loads "sparsemax_patch" checkpoints (CometKiwi) with softmax (Unbabel/COMET#244).
    if hparams.get("layer_transformation") == "sparsemax_patch":
        kwargs["layer_transformation"] = "softmax"
    with quiet_lightning():
        try:
            model = str2model[class_id].load_from_checkpoint(**kwargs)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ModelError(f"cannot load the COMET model: {exc}", path=model_dir, hint=COMET_HELP) from None
    model.eval()
    return model


def _comet_devices(device: str) -> tuple[int, list[int] | None]:
    """(gpus, devices) for ``model.predict``: cpu -> CPU; auto -> GPU 0 when CUDA is visible; cuda / cuda:N -> that
    GPU. Never more than one: COMET's multi-GPU path exits its worker ranks (unusable inside a server)."""
    device = str(device).strip().lower()
    if device == "cpu":
        return 0, None
    import torch

    if device == "auto":
        return (1, None) if torch.cuda.is_available() else (0, None)
    if device in ("cuda", "gpu") or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise TowerCatError(f"device {device} was asked for, but no CUDA GPU is visible", param="device",
                                hint="use device='cpu'")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise TowerCatError(f"there is no GPU {index}", hint=f"{torch.cuda.device_count()} visible")
        return 1, [index]
    raise TowerCatError(f"unknown device {device!r}", hint="use auto, cpu, cuda or cuda:N")


class CometBackend(QEBackend):
    """unbabel-comet model from a local folder. Reference-free models (CometKiwi, XCOMET without ref) score
    src+mt; reference-based ones (wmt22-comet-da) need ``QEItem.reference``. COMET scores (about 0-1) are
    reported x100, clamped to 0-100; XCOMET error spans are surfaced per item."""

    name = "comet"

    def __init__(self, path: str | Path, *, encoder: str | Path | None = None, device: str = "auto",
                 batch_size: int = 16):
        self.path = Path(path)
        self.encoder = encoder
        self.device = device
        self.batch_size = batch_size
        self._model = None
        comet_checkpoint(self.path)  # fail early, before any scoring work

    @property
    def model(self):
        if self._model is None:
            self._model = load_comet(self.path, encoder=self.encoder)
        return self._model

    @property
    def requires_reference(self) -> bool:  # type: ignore[override]
        return bool(self.model.requires_references())

    def _uses_reference(self) -> bool:
        hp = self.model.hparams
        if self.model.requires_references():
            return True
        if hp.get("class_identifier") == "xcomet_metric":
            return True
        return "ref" in (hp.get("input_segments") or [])

    def describe(self) -> str:
        folder = comet_checkpoint(self.path).parents[1]
        return f"comet:{folder.name}"

    def close(self) -> None:
        self._model = None

    def samples(self, items: Sequence[QEItem]) -> list[dict[str, str]]:
        """The dicts passed to ``model.predict`` (what a direct COMET call would get)."""
        model = self.model
        with_ref = self._uses_reference()
        need_ref = bool(model.requires_references())
        out = []
        for i, item in enumerate(items):
            sample = {"src": item.source, "mt": item.target}
            if item.reference is not None and with_ref:
                sample["ref"] = item.reference
            elif need_ref:
                raise TowerCatError(
                    f"this COMET model is reference-based and item {item.id or i + 1} has no reference",
                    path=self.path, param="references",
                    hint="give references (QEItem.reference), or use a reference-free model such as "
                         "wmt22-cometkiwi-da for quality estimation")
            out.append(sample)
        if with_ref and not need_ref and out and any("ref" in s for s in out) and not all("ref" in s for s in out):
            for s in out:  # XCOMET / unified: one batch must be all with or all without references
                s.pop("ref", None)
        return out

    def predict(self, samples: list[dict[str, str]]):
        with quiet_lightning():
            gpus, devices = _comet_devices(self.device)
            return self.model.predict(samples, batch_size=self.batch_size, gpus=gpus, devices=devices,
                                      progress_bar=False)

    def score(self, items: Sequence[QEItem]) -> list[QEResult]:
        items = list(items)
        if not items:
            return []
        samples = self.samples(items)
        pred = self.predict(samples)
        meta = pred.get("metadata") or {}
        results = []
        for i, (item, raw) in enumerate(zip(items, pred.scores)):
            spans: list[QESpan] = []
            for span in (meta.get("error_spans") or [[]] * len(items))[i] or []:
                start, end = int(span.get("start", 0)), int(span.get("end", 0))
                start, end = max(0, min(start, len(item.target))), max(0, min(end, len(item.target)))
                if end > start:
                    spans.append(QESpan(start, end, str(span.get("severity", "minor")), item.target[start:end]))
            extra = {k: _jsonable(v[i]) for k, v in meta.items() if k != "error_spans" and len(v) == len(items)}
            results.append(QEResult(_clamp100(100.0 * float(raw)), spans, {"comet": float(raw), **extra}))
        return results


# ---------------------------------------------------------------------------------------------------------
# Engine-based backends


def _languages(item: QEItem, default_src: str | None, default_tgt: str | None) -> tuple[str, str]:
    src, tgt = item.source_lang or default_src, item.target_lang or default_tgt
    if not src or not tgt:
        raise TowerCatError(f"item {item.id or ''} has no source/target language: the LLM backends need them "
                            "in the prompt", param="languages",
                            hint="the file declares none; give source_lang and target_lang")
    return src, tgt


def _open_engine(model: Any, **engine_kwargs):
    """An ``Engine`` (or anything with its interface) as is; a model folder is opened with ``Engine.load``."""
    if not isinstance(model, (str, Path)):
        return model
    from tower_cat.engine import Engine

    return Engine.load(model, **engine_kwargs)


class LLMJudgeBackend(QEBackend):
    """A Tower model rates each translation 0-100 (``prompts.qe_messages(kind="score")``); with ``spans=True``
    it is also asked for error spans (``kind="spans"``), parsed in TowerEval's formats."""

    name = "llm"

    def __init__(self, model: Any, *, spans: bool = True, source_lang: str | None = None,
                 target_lang: str | None = None, max_new_tokens: int = 128, **engine_kwargs):
        self.engine = _open_engine(model, **engine_kwargs)
        self.spans = spans
        self.source_lang, self.target_lang = source_lang, target_lang
        self.max_new_tokens = max_new_tokens

    def describe(self) -> str:
        return f"llm:{Path(self.engine.path).name}"

    def prompt_sets(self, items: Sequence[QEItem]) -> list[tuple[str, list]]:
        """[(kind, one prompt per item)] this backend sends: the score prompts, then (``spans``) the span prompts.
        ``tower-cat qe --dry-run --show-prompts`` shows exactly these."""
        from tower_cat import prompts

        wording = self.engine.info.wording
        langs = [_languages(it, self.source_lang, self.target_lang) for it in items]
        kinds = ("score", "spans") if self.spans else ("score",)
        return [(kind, [prompts.qe_messages(it.source, it.target, s, t, kind=kind, wording=wording)
                        for it, (s, t) in zip(items, langs)]) for kind in kinds]

    def generation_options(self):
        from tower_cat.engine import GenerationOptions

        return GenerationOptions(max_new_tokens=self.max_new_tokens)

    def score(self, items: Sequence[QEItem]) -> list[QEResult]:
        from tower_cat import prompts

        items = list(items)
        if not items:
            return []
        sets = dict(self.prompt_sets(items))
        opts = self.generation_options()
        replies = self.engine.generate(sets["score"], opts)
        span_replies = [None] * len(items)
        if self.spans:
            span_replies = self.engine.generate(sets["spans"], opts)
        results = []
        for item, reply, span_reply in zip(items, replies, span_replies):
            value = prompts.parse_score(reply.text)
            spans = []
            if span_reply is not None:
                for s in prompts.parse_error_spans(span_reply.text, item.target):
                    if s.start is not None and s.end is not None:
                        spans.append(QESpan(s.start, s.end, s.severity, s.text))
            raw = {"reply": reply.text, **({"spans_reply": span_reply.text} if span_reply is not None else {})}
            results.append(QEResult(None if value is None else _clamp100(100.0 * value), spans, raw))
        return results

    def close(self) -> None:
        self.engine.unload()


@dataclass
class Calibration:
    """A monotone map from mean log-prob to 0-100, fitted on human scores (isotonic regression).

    ``x``/``y``: knots (mean log-prob ascending, score 0-100 non-decreasing); between knots the map is linear,
    outside them flat. ``human_range``: the human scale mapped onto 0-100 (e.g. MQM [-25, 0], DA [0, 100]).
    """

    x: list[float]
    y: list[float]
    human_range: tuple[float, float] = (0.0, 100.0)
    model: str | None = None
    n: int = 0
    spearman: float | None = None
    method: str = "isotonic"

    def __call__(self, value: float) -> float:
        xs, ys = self.x, self.y
        if not xs:
            return _clamp100(100.0 * math.exp(value))
        if value <= xs[0]:
            return ys[0]
        if value >= xs[-1]:
            return ys[-1]
        lo, hi = 0, len(xs) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if xs[mid] <= value:
                lo = mid
            else:
                hi = mid
        if xs[hi] == xs[lo]:
            return ys[hi]
        t = (value - xs[lo]) / (xs[hi] - xs[lo])
        return ys[lo] + t * (ys[hi] - ys[lo])

    def save(self, path: str | Path) -> None:
        data = {"format": "tower-cat-qe-calibration/1", "method": self.method, "model": self.model, "n": self.n,
                "spearman": self.spearman, "human_range": list(self.human_range), "x": self.x, "y": self.y}
        Path(path).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(x=[float(v) for v in data["x"]], y=[float(v) for v in data["y"]],
                       human_range=tuple(data.get("human_range", (0.0, 100.0))), model=data.get("model"),
                       n=int(data.get("n", 0)), spearman=data.get("spearman"), method=data.get("method", "isotonic"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TowerCatError(f"not a tower-cat QE calibration file ({exc})", path=path, param="calibration",
                                hint="fit one with qe.fit_calibration on held-out human scores") from None


def isotonic(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """Pool-adjacent-violators: the non-decreasing least-squares fit of ys on xs. Returns knots (x, y)."""
    pairs = sorted(zip(xs, ys))
    blocks: list[list[float]] = []  # [sum_y, count, x_min, x_max]
    for x, y in pairs:
        blocks.append([y, 1.0, x, x])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c, _, x_max = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
            blocks[-1][3] = x_max
    kx, ky = [], []
    for s, c, x_min, x_max in blocks:
        mean = s / c
        kx.append(x_min)
        ky.append(mean)
        if x_max != x_min:
            kx.append(x_max)
            ky.append(mean)
    return kx, ky


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra))
    vb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    return cov / (va * vb) if va and vb else None


#: A calibration whose log-probs rank the held-out set's human scores worse than this (Spearman) is refused: the
#: map would be noise (issue 17: a fit with 0.055 was accepted and then scored every unit 100). Segment-level QE
#: systems reach about 0.3-0.6 on WMT data; 0.2 refuses only fits that carry (almost) no ranking information.
MIN_SPEARMAN = 0.2


class CalibrationRefused(TowerCatError):
    """A fitted calibration that would not carry ranking information (too little rank correlation, or a flat map)."""


def check_calibration(cal: Calibration, *, min_spearman: float = MIN_SPEARMAN) -> str | None:
    """Why a fitted calibration should not be used (None: it may be): rank correlation on its own held-out data
    below ``min_spearman`` or unknown, or a map that gives every input the same score."""
    if cal.spearman is None or cal.spearman != cal.spearman:
        return "the rank correlation (Spearman) with the human scores cannot be computed (constant log-probs?)"
    if cal.spearman < min_spearman:
        return (f"Spearman {cal.spearman:.3f} between log-probs and human scores on {cal.n} held-out items is below "
                f"{min_spearman:g}: the map would rank translations by noise")
    if cal.y and max(cal.y) - min(cal.y) < 1e-9:
        return f"the fitted map gives every translation the same score ({cal.y[0]:.1f})"
    return None


def fit_calibration(logprobs: Sequence[float], human: Sequence[float], *,
                    human_range: tuple[float, float] | None = None, model: str | None = None) -> Calibration:
    """Fit the monotone log-prob -> 0-100 map on a held-out set with human scores (DA, MQM, ...).

    Human scores are first rescaled to 0-100 with ``human_range`` (default: their min and max in the set). The fit
    is returned whatever its quality; :func:`check_calibration` says whether to use it."""
    if len(logprobs) != len(human) or len(human) < 2:
        raise InvalidArgument("need at least two (log-prob, human score) pairs, one per item")
    lo, hi = human_range or (min(human), max(human))
    if hi <= lo:
        raise InvalidArgument("human scores are all equal: nothing to calibrate on")
    scaled = [_clamp100(100.0 * (h - lo) / (hi - lo)) for h in human]
    kx, ky = isotonic(list(logprobs), scaled)
    return Calibration(kx, ky, (float(lo), float(hi)), model, len(human), spearman(logprobs, human))


class LogprobBackend(QEBackend):
    """The engine's mean token log-prob of the translation under the model's own translate prompt (end token
    included). Mapped to 0-100 by ``100 * exp(mean)`` (the geometric-mean token probability), or by a fitted
    ``Calibration`` (given, or ``<model>/qe_calibration.json`` when present)."""

    name = "logprob"
    CALIBRATION_FILE = "qe_calibration.json"

    def __init__(self, model: Any, *, calibration: Calibration | str | Path | None = None,
                 source_lang: str | None = None, target_lang: str | None = None, **engine_kwargs):
        self.engine = _open_engine(model, **engine_kwargs)
        if calibration is None and (Path(self.engine.path) / self.CALIBRATION_FILE).is_file():
            calibration = Path(self.engine.path) / self.CALIBRATION_FILE
        if isinstance(calibration, (str, Path)):
            calibration = Calibration.load(calibration)
        self.calibration = calibration
        self.source_lang, self.target_lang = source_lang, target_lang

    def describe(self) -> str:
        return f"logprob:{Path(self.engine.path).name}" + (" (calibrated)" if self.calibration else "")

    def logprobs(self, items: Sequence[QEItem]) -> list[float]:
        from tower_cat.core import PromptFitter

        fitter = PromptFitter(self.engine)  # the core's bare translation prompt: the target is scored under it
        msgs = []
        for it in items:
            s, t = _languages(it, self.source_lang, self.target_lang)
            msgs.append(fitter.bare(it.source, s, t))
        return self.engine.score(msgs, [it.target for it in items])

    def map(self, mean_logprob: float) -> float:
        if self.calibration is not None:
            return _clamp100(self.calibration(mean_logprob))
        return _clamp100(100.0 * math.exp(mean_logprob))

    def score(self, items: Sequence[QEItem]) -> list[QEResult]:
        items = list(items)
        if not items:
            return []
        return [QEResult(self.map(lp), [], {"mean_logprob": lp}) for lp in self.logprobs(items)]

    def fit(self, items: Sequence[QEItem], human: Sequence[float], *,
            human_range: tuple[float, float] | None = None, min_spearman: float = MIN_SPEARMAN,
            force: bool = False) -> Calibration:
        """Fit and install a calibration from held-out items and their human scores. A fit whose rank correlation
        on these items is below ``min_spearman`` (or whose map is flat) raises :class:`CalibrationRefused` and is
        not installed, unless ``force``."""
        cal = fit_calibration(self.logprobs(items), human, human_range=human_range, model=str(self.engine.path))
        why = check_calibration(cal, min_spearman=min_spearman)
        if why is not None and not force:
            raise CalibrationRefused(f"calibration refused: {why}", param="force",
                                     hint="use a larger or more varied held-out set, or accept it with force")
        self.calibration = cal
        return cal

    def close(self) -> None:
        self.engine.unload()


def read_heldout_tsv(path: str | Path, *, source_lang: str | None = None,
                     target_lang: str | None = None) -> tuple[list[QEItem], list[float]]:
    """A held-out set for calibration: TSV with a header naming ``source``, ``mt`` and ``human_score`` columns
    (the layout of ../shared/corpus/wmt/*.tsv; ``reference`` is used when present)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise TowerCatError("empty held-out file", path=path)
    header = lines[0].split("\t")
    try:
        si, mi, hi = header.index("source"), header.index("mt"), header.index("human_score")
    except ValueError:
        raise TowerCatError("the held-out TSV needs a header with source, mt and human_score columns",
                            path=path, line=1) from None
    ri = header.index("reference") if "reference" in header else None
    items, human = [], []
    for n, line in enumerate(lines[1:], start=2):
        cols = line.split("\t")
        if len(cols) < len(header):
            continue
        try:
            human.append(float(cols[hi]))
        except ValueError:
            raise TowerCatError(f"human_score {cols[hi]!r} is not a number", path=path, line=n) from None
        items.append(QEItem(cols[si], cols[mi], cols[ri] if ri is not None else None, source_lang, target_lang,
                            id=str(n)))
    return items, human


# ---------------------------------------------------------------------------------------------------------
# Factory and document helpers


def get_backend(name: str, model: str | Path | Any, **kwargs) -> QEBackend:
    """``comet`` (model = COMET folder; kwargs encoder, device, batch_size), ``llm`` / ``logprob`` (model = a
    tower-cat model folder or an ``Engine``; kwargs go to ``Engine.load`` and the backend)."""
    if name == "comet":
        return CometBackend(model, **kwargs)
    if name == "llm":
        return LLMJudgeBackend(model, **kwargs)
    if name == "logprob":
        return LogprobBackend(model, **kwargs)
    raise TowerCatError(f"unknown QE backend {name!r}", hint=f"choose one of {', '.join(BACKENDS)}")


def segment_text(segment) -> str:
    """The text QE sees: text runs plus placeholders that are text themselves (PO's ``%d``, ``{name}``);
    markup codes (``<g>``, ``<x/>``, ``<ph>…</ph>``) are left out. Error-span offsets point into this text."""
    if segment is None:
        return ""
    out = []
    for part in segment.parts:
        if isinstance(part, str):
            out.append(part)
        elif part.xml and not part.xml.lstrip().startswith("<"):
            out.append(part.xml)
    return "".join(out)


def unit_item(unit, source_lang: str | None = None, target_lang: str | None = None) -> QEItem:
    """The QE item of a document unit (see ``segment_text``)."""
    return QEItem(segment_text(unit.source), segment_text(unit.target), None, source_lang, target_lang,
                  id=str(unit.id))


def scorable(unit) -> bool:
    """A unit QE looks at: it has a target, and no one asked us to keep our hands off it."""
    return unit.has_target and not unit.protected


def score_units(units: Iterable, backend: QEBackend, *, source_lang: str | None = None,
                target_lang: str | None = None, record: bool = True) -> list[tuple[Any, QEResult]]:
    """Score every unit with a target (locked/final/untranslatable ones are skipped) in one backend call.

    With ``record`` each scored unit gets ``unit.set_qe(score)`` (written by the format's save) and
    ``unit.meta["qe"]`` (backend, score, error spans: what reports show). Returns (unit, result) pairs."""
    todo = [u for u in units if scorable(u)]
    results = backend.score([unit_item(u, source_lang, target_lang) for u in todo])
    name = backend.describe()
    for unit, res in zip(todo, results):
        if record:
            if res.score is not None:
                unit.set_qe(round(res.score, 2))
            unit.meta["qe"] = {"backend": name, "score": res.score,
                               "error_spans": [list(s) for s in res.error_spans]}
    return list(zip(todo, results))


def check_units(units: Iterable, *, glossary: Any = None, doc: Any = None, source_lang: str | None = None,
                target_lang: str | None = None) -> dict[str, int]:
    """QA (``qa.check``) and, with a glossary, term compliance of each unit's target, as the translate job checks
    its own output: issues go to ``unit.qa_issues``, term counts to ``unit.meta["terms"]``. Returns totals."""
    from tower_cat import qa

    totals = {"checked": 0, "qa_errors": 0, "qa_warnings": 0, "terms_checked": 0, "terms_ok": 0}
    for unit in units:
        if not unit.has_target:
            continue
        terms = glossary.check(unit.source, unit.target, source_lang, target_lang) if glossary is not None else None
        issues = qa.check(unit, glossary=None, src_lang=source_lang, tgt_lang=target_lang, doc=doc, terms=terms)
        unit.qa_issues = issues
        totals["checked"] += 1
        totals["qa_errors"] += sum(1 for i in issues if i.severity == qa.ERROR)
        totals["qa_warnings"] += sum(1 for i in issues if i.severity != qa.ERROR)
        if terms is not None and terms.hits:
            unit.meta["terms"] = {"checked": len(terms.hits), "ok": terms.ok_hits}
            totals["terms_checked"] += len(terms.hits)
            totals["terms_ok"] += terms.ok_hits
    return totals


def findings(unit, result: "QEResult | None", *, threshold: float | None = None, backend: str = "qe") -> list:
    """What ``tower-cat qe`` writes into the file for a unit: its QA/terminology issues and, when it scored below
    the threshold (or could not be scored), the QE score itself, so a segment marked for review says why."""
    from tower_cat.document import Finding

    out = [Finding.of(i) for i in unit.qa_issues]
    if result is not None and threshold is not None:
        if result.score is None:
            out.append(Finding("qe", "warning", f"{backend} could not score this translation"))
        elif result.score < threshold:
            out.append(Finding("qe", "warning", f"QE {result.score:.1f} below {threshold:g} ({backend})"))
    return out


def gate(units: Iterable, backend: QEBackend, threshold: float, *, source_lang: str | None = None,
         target_lang: str | None = None, record: bool = True) -> list:
    """QE gate: score the units (as ``score_units``) and return those below ``threshold`` (0-100), in order.

    A unit the backend could not score (an LLM judge reply without a number) counts as below: it goes to the
    slow path (post-editing, review) rather than through. For scripts over loaded documents; ``tower-cat
    translate --ape-below`` gates inside the pipeline instead, where repeated sources are scored once::

        weak = gate(doc.translatable_units(), backend, 70, source_lang=doc.source_lang, target_lang=doc.target_lang)
    """
    pairs = score_units(units, backend, source_lang=source_lang, target_lang=target_lang, record=record)
    return [u for u, res in pairs if res.score is None or res.score < threshold]
