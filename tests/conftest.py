"""Shared test set-up: offline hub, paths to our samples and to the third-party corpus beside the checkout."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CORPUS = ROOT.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is absent (third-party test files are not shipped)")
    return CORPUS


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES

from tests.conftest_engine import *  # noqa: E402,F401,F403  (engine fixtures: tiny models)
from tests.conftest_pg import *  # noqa: E402,F401,F403  (a real PostgreSQL: postgres_server, pg_tm_url)
