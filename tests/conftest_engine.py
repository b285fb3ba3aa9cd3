"""Engine fixtures: tiny Tower-like models built once per test session (no downloads, ~1 s each).

Other test modules use `tiny_models` (arch -> TinyModel with `.hf_path` and `.ct2_path`), `tiny_llama`, or `engine`
(an Engine on it, per module).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

# (arch, token the model is rigged to emit): one per end token of each family.
END_TOKEN_CASES = [
    ("llama", "<|im_end|>"), ("llama", "</s>"),
    ("qwen2", "<|im_end|>"), ("qwen2", "<|endoftext|>"),
    ("gemma2", "<end_of_turn>"), ("gemma2", "<eos>"),
]


@pytest.fixture(scope="session")
def tiny_tokenizers():
    from tower_cat.testing import ARCHITECTURES, train_tokenizer

    return {arch: train_tokenizer(arch) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_tokenizers):
    """arch -> TinyModel (float32 HF folder + CT2 conversion), for llama, qwen2 and gemma2."""
    from tower_cat.testing import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: build_tiny_model(root / arch, arch, tokenizer=tok) for arch, tok in tiny_tokenizers.items()}


@pytest.fixture(scope="session")
def tiny_llama(tiny_models):
    return tiny_models["llama"]


@pytest.fixture(scope="module")
def tiny(tiny_llama):
    """The session's tiny Llama under the name the server and protocol tests use."""
    return tiny_llama


@pytest.fixture(scope="module")
def engine(tiny):
    """An Engine on the tiny Llama, one per test module (modules that need another engine define their own)."""
    from tower_cat.engine import Engine

    eng = Engine.load(tiny.ct2_path, device="cpu", compute_type="float32", threads=1)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def biased_models(tmp_path_factory, tiny_tokenizers):
    """(arch, token) -> TinyModel whose greedy output is always `token`."""
    from tower_cat.testing import build_tiny_model

    root = tmp_path_factory.mktemp("biased-models")
    return {(arch, token): build_tiny_model(root / f"{arch}-{i}", arch, tokenizer=tiny_tokenizers[arch],
                                            bias_token=token)
            for i, (arch, token) in enumerate(END_TOKEN_CASES)}
