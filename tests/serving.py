"""A Service behind the real app on 127.0.0.1 (uvicorn in a thread), for the server and protocol tests."""

from __future__ import annotations

import contextlib

from tower_cat.adapters.app import create_app
from tower_cat.adapters.cli import BackgroundServer


@contextlib.contextmanager
def serving(service, close: bool = True):
    """The running server, with ``.url`` and ``.service``; the service is closed afterwards unless ``close`` is
    False (a fixture that owns it closes it)."""
    with BackgroundServer(create_app(service)) as srv:
        srv.service = service
        yield srv
    if close:
        service.close()
