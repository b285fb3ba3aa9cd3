"""The demo model: a small Llama-family model trained on the sample memory through the real fine-tuning path.

``build_demo_model(cache_dir)`` builds a tokenizer on the sample files and a small random Llama model with
``tower_cat.testing``'s builder, then runs ``recipe.run_finetune`` on ``samples/tower-notes.tmx`` — the same
data building, CPT, SFT, export (int8 CTranslate2) and held-out evaluation a client's model goes through —
and returns the CT2 folder. The result is cached under ``cache_dir/<profile>-<fingerprint>``: a complete
model with a matching fingerprint (code version, sample data, settings) is returned without rebuilding.

It produces real German (and European Portuguese) words for the sample strings; it is not a translation
model worth using on anything else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tower_cat.testing import SAMPLES_DIR

log = logging.getLogger(__name__)

DEMO_VERSION = 1   # bump when the recipe changes in a way that should rebuild cached demo models
TM_FILE = "tower-notes.tmx"
GLOSSARY_FILE = "glossary.tbx"


@dataclass(frozen=True)
class DemoProfile:
    targets: tuple[str, ...] = ("de", "pt-PT")
    vocab_size: int = 1500
    hidden_size: int = 192
    layers: int = 3
    heads: int = 6
    kv_heads: int = 2
    cpt_steps: int = 100
    sft_steps: int = 400
    batch_size: int = 16
    cpt_lr: float = 3e-3
    sft_lr: float = 2e-3
    cpt_seq_len: int = 128
    sft_seq_len: int = 320
    heldout: int = 30
    heldout_min_words: int = 3
    post_edit_rate: float = 0.15
    seed: int = 0


PROFILES = {
    # `make demo`: about 3 minutes on a busy 2-core CPU (held-out chrF about 6 -> 38)
    "demo": DemoProfile(),
    # tests: one direction, a smaller model, fewer steps (about a minute)
    "test": DemoProfile(targets=("de",), vocab_size=1000, hidden_size=128, layers=2, heads=4, kv_heads=2,
                        cpt_steps=60, sft_steps=200, heldout=30),
}


# the code a demo model depends on: a change to any of these rebuilds it
_CODE = ("finetune/data.py", "finetune/store.py", "finetune/train.py", "finetune/recipe.py", "finetune/export.py",
         "finetune/demo.py", "tower_cat/prompts.py", "tower_cat/testing.py", "tower_cat/convert.py")


def _fingerprint(profile: DemoProfile, samples: Path) -> str:
    import tower_cat
    import tower_cat.finetune

    h = hashlib.sha256(json.dumps([DEMO_VERSION, asdict(profile)], sort_keys=True).encode())
    for name in (TM_FILE, GLOSSARY_FILE):
        path = samples / name
        if path.is_file():
            h.update(path.read_bytes())
    roots = {"finetune": Path(tower_cat.finetune.__file__).parent, "tower_cat": Path(tower_cat.__file__).parent}
    for rel in _CODE:
        top, name = rel.split("/")
        path = roots[top] / name
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _complete(model_dir: Path) -> bool:
    return all((model_dir / n).is_file() for n in ("model.bin", "tower_cat.json", "tokenizer.json")) and \
        (model_dir.parent.parent / "DONE").is_file()


def build_demo_model(cache_dir: Path, profile: str | DemoProfile = "demo", *, samples: Path | None = None,
                     console=None, threads: int | None = 1, force: bool = False) -> Path:
    """Build (or reuse) the demo model; returns its tower-cat (CTranslate2, int8) folder."""
    from tower_cat.finetune.data import DataConfig
    from tower_cat.finetune.recipe import FinetuneConfig, run_finetune
    from tower_cat.finetune.train import TrainConfig
    from tower_cat.testing import DEFAULT_TEXTS, build_tiny_hf_model, sample_texts, train_tokenizer

    prof = PROFILES[profile] if isinstance(profile, str) else profile
    samples = Path(samples or SAMPLES_DIR)
    name = profile if isinstance(profile, str) else "custom"
    root = Path(cache_dir) / f"{name}-{_fingerprint(prof, samples)}"
    ct2 = root / "run" / "ct2"
    if not force and _complete(ct2):
        return ct2
    started = time.time()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)

    tokenizer = train_tokenizer("llama", sample_texts(samples, limit=5000) + DEFAULT_TEXTS, prof.vocab_size)
    base = build_tiny_hf_model(root / "base", "llama", tokenizer=tokenizer, seed=prof.seed,
                               hidden_size=prof.hidden_size, layers=prof.layers, heads=prof.heads,
                               kv_heads=prof.kv_heads, init_range=0.02, max_positions=1024)
    common = dict(batch_size=prof.batch_size, warmup=0.05, seed=prof.seed, threads=threads, device="cpu",
                  progress=console is not None, min_lr_ratio=0.05)
    cfg = FinetuneConfig(
        stage="both",
        data=DataConfig(source="en", targets=prof.targets, heldout=prof.heldout,
                        heldout_min_words=prof.heldout_min_words, post_edit_rate=prof.post_edit_rate,
                        seed=prof.seed),
        cpt=TrainConfig(max_steps=prof.cpt_steps, lr=prof.cpt_lr, seq_len=prof.cpt_seq_len, **common),
        sft=TrainConfig(max_steps=prof.sft_steps, lr=prof.sft_lr, seq_len=prof.sft_seq_len, **common),
        quantization="int8", evaluate=True, baseline=True, device="cpu", threads=threads)
    glossary = samples / GLOSSARY_FILE
    result = run_finetune([samples / TM_FILE], base, root / "run", config=cfg,
                          glossary=glossary if glossary.is_file() else None, console=console)
    (root / "DONE").write_text(json.dumps({"seconds": round(time.time() - started, 1), "profile": asdict(prof),
                                           "chrf_before": result.before.chrf if result.before else None,
                                           "chrf_after": result.after.chrf if result.after else None}) + "\n")
    # the stage folders are only needed to resume an interrupted build
    shutil.rmtree(root / "run" / "stages", ignore_errors=True)
    return result.ct2_dir


def demo_report(ct2_dir: Path) -> dict:
    """What the build recorded: seconds, profile, chrF before/after (from DONE and run.json)."""
    root = Path(ct2_dir).parent.parent
    out = json.loads((root / "DONE").read_text())
    run = root / "run" / "run.json"
    if run.is_file():
        out["run"] = json.loads(run.read_text())
    return out


if __name__ == "__main__":  # python -m tower_cat.finetune.demo [CACHE_DIR] [profile]
    import sys

    from rich.console import Console

    t = time.time()
    path = build_demo_model(Path(sys.argv[1] if len(sys.argv) > 1 else ".cache/demo-model"),
                            sys.argv[2] if len(sys.argv) > 2 else "demo", console=Console())
    print(path, f"{time.time() - t:.0f} s")
