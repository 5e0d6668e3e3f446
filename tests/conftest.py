"""Shared fixtures: servers on 127.0.0.1:0 and in-memory link pairs."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

import linkserver

# Connection files of servers the tests start (and the keys in them) stay in a
# directory of this run, never in the user's own runtime directory; servers
# started as subprocesses inherit it.
_RUNTIME = tempfile.TemporaryDirectory(prefix="linkserver-test-runtime-")
os.environ["LINKSERVER_RUNTIME_DIR"] = _RUNTIME.name
os.environ.pop("LINKSERVER_KEY", None)
# Nor does a test's `linkserver connect` add to the user's history of inputs.
os.environ["LINKSERVER_HISTORY"] = os.path.join(_RUNTIME.name, "history.sqlite")


@pytest.fixture
def server() -> Iterator[linkserver.LinkServer]:
    """A blocking LinkServer on 127.0.0.1 with a free port."""
    srv = linkserver.LinkServer(port=0, interface="127.0.0.1")
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def pair() -> Iterator[tuple[linkserver.Link, linkserver.Link]]:
    """Two links joined in this process."""
    a, b = linkserver.link_pair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()
