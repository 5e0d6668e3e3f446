"""An in-process transport pair: two asyncio protocols joined without sockets.

This is the WSTP "IntraProcess" idea: both ends live in one event loop and
bytes pass by reference. Writes are delivered on the next loop iteration
(``call_soon``), never re-entrantly, so the glue behaves exactly as it does
over a socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["MemoryTransport", "memory_pair"]


class MemoryTransport(asyncio.Transport):
    """One end of an in-process byte pipe.

    Args:
        loop: the event loop both ends run in.
        protocol: the protocol that owns this end (receives ``connection_lost``).
        name: what ``get_extra_info("peername")`` reports.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, protocol: asyncio.BaseProtocol, name: str
    ) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._name = name
        self._peer: MemoryTransport | None = None
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._name
        return default

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        peer = self._peer
        if self._closing or peer is None or peer._closing:
            return
        self._loop.call_soon(_deliver, peer._protocol, bytes(data))

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        # Bytes already written reach the peer first (call_soon is FIFO).
        self._loop.call_soon(self._protocol.connection_lost, None)
        peer = self._peer
        if peer is not None and not peer._closing:
            peer._closing = True
            self._loop.call_soon(peer._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


def _deliver(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Hand ``data`` to ``protocol`` as a socket transport would, buffered or not."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view)))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]
    else:
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(data)


def memory_pair(
    loop: asyncio.AbstractEventLoop, a: asyncio.BaseProtocol, b: asyncio.BaseProtocol
) -> tuple[MemoryTransport, MemoryTransport]:
    """Join protocols ``a`` and ``b`` and call their ``connection_made``.

    Returns:
        the transports of ``a`` and of ``b``.
    """
    ta = MemoryTransport(loop, a, "memory")
    tb = MemoryTransport(loop, b, "memory")
    ta._peer, tb._peer = tb, ta
    a.connection_made(ta)
    b.connection_made(tb)
    return ta, tb
