"""Fixtures for the protocol tests (test_protocols_*.py, test_deepl_node.py): `tower-cat serve` on 127.0.0.1.

A tiny random Llama (tower_cat.testing) behind the real app in uvicorn (a thread, free port): translations are
garbage, what the tests check is the wire protocol the real clients speak. ``server`` is open (no keys, like a
loopback install); ``keyed`` has an API key and a character quota. Import the fixtures by name into a module.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest_engine import engine, tiny  # noqa: F401  (re-exported: the protocol modules import them here)
from tests.serving import serving
from tower_cat.adapters.service import ServerConfig, Service

KEY = "protocol-test-key"
NEW_TOKENS = 8


TM_SOURCE, TM_TARGET = "The printer is out of paper.", "Der Drucker hat kein Papier mehr."


@pytest.fixture(scope="module")
def tm(tmp_path_factory):
    """One approved pair: an exact TM hit comes back verbatim, which only the translation core does."""
    from tower_cat.tm import TranslationMemory

    mem = TranslationMemory(tmp_path_factory.mktemp("protocol-tm") / "tm.db")
    mem.add(TM_SOURCE, TM_TARGET, "en", "de")
    yield mem
    mem.close()


@pytest.fixture(scope="module")
def service(engine, tm):
    svc = Service(engine, ServerConfig(max_new_tokens=NEW_TOKENS, batch_window=0.015), tm=tm)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def server(service):
    with serving(service, close=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def keyed(engine):
    svc = Service(engine, ServerConfig(max_new_tokens=4, api_keys=[KEY], character_limit=200))
    with serving(svc) as srv:
        yield srv


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client
