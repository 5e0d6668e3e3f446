"""Connecting: every way it fails is said in one sentence, as ConnectFailed."""

from __future__ import annotations

import socket
import ssl

import pytest

from linkserver.errors import ConnectFailed
from linkserver.names import parse_name
from linkserver.transport.stream import _not_connected, open_socket


def test_each_failure_of_connecting_has_its_sentence() -> None:
    name = parse_name("31415@127.0.0.1")
    assert "within 2 s" in str(_not_connected(name, TimeoutError(), 2.0, None))
    tls_error = _not_connected(name, ssl.SSLError(1, "[SSL] wrong version number"), 2.0, None)
    assert "over TLS" in str(tls_error)
    refused = _not_connected(name, ConnectionRefusedError(111, "refused"), 2.0, None)
    assert "connection refused" in str(refused)
    assert all(isinstance(e, ConnectFailed) for e in (tls_error, refused))


def test_a_refused_blocking_connection_is_said_so() -> None:
    with socket.socket() as probe:  # a port nothing listens on, for the moment
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectFailed, match="connection refused") as failed:
        open_socket(parse_name(f"{port}@127.0.0.1"), timeout=2.0)
    assert isinstance(failed.value.__cause__, ConnectionRefusedError)
