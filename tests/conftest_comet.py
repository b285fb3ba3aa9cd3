"""Tiny COMET checkpoints for the QE/metrics/report tests, built once per test session (about a second each).

Test modules import the fixture: ``from tests.conftest_comet import tiny_comet  # noqa: F401``. Checkpoints are
memoised process-wide, so modules share them.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

_BUILT: dict[tuple[str, str], object] = {}


@pytest.fixture(scope="session")
def tiny_comet(tmp_path_factory):
    """``tiny_comet(kind, encoder="absolute"|"inside") -> Path`` of a COMET model folder."""
    pytest.importorskip("comet")
    from tower_cat.testing_comet import build_tiny_comet

    def get(kind: str = "unified", encoder: str = "absolute"):
        key = (kind, encoder)
        if key not in _BUILT:
            _BUILT[key] = build_tiny_comet(tmp_path_factory.mktemp(f"comet-{kind}-{encoder}"), kind, encoder=encoder)
        return _BUILT[key]

    return get
