"""Servers the benchmarks talk to, each in its own process.

    python bench/peers.py raw     # asyncio length-prefixed echo (the raw peer)
    python bench/peers.py link    # LinkServer echoing from the receive callback
    python bench/peers.py link-task  # LinkServer echoing with a get/put task per link
    python bench/peers.py idle    # linkserver LinkServer that keeps links idle
    python bench/peers.py link-key|link-tls|link-key-tls   # "link" with a key
        ($BENCH_KEY) and/or TLS ($BENCH_CERT, $BENCH_CERT_KEY)

Each prints its port on the first line and serves until terminated.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys

import linkserver.aio

HEADER = struct.Struct("<I")


class RawEcho(asyncio.Protocol):
    """Echo length-prefixed messages: the least a framed protocol can do."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = HEADER.unpack_from(buf, pos)
            if len(buf) - pos - 4 < n:
                break
            self.transport.write(bytes(buf[pos : pos + 4 + n]))  # type: ignore[attr-defined]
            pos += 4 + n
        del buf[:pos]


async def echo_task(link: linkserver.aio.Link) -> None:
    """Echo with a task per link: get, then put (what simple handlers do)."""
    try:
        while True:
            await link.put_payload(await link.get_payload())
    except linkserver.LinkError:
        pass


def echo_receiver(link: linkserver.aio.Link) -> None:
    """Echo from the receive callback: no task switch, as the raw peer."""
    link.set_receiver(link.put_payload_nowait)


async def main(kind: str) -> None:
    loop = asyncio.get_running_loop()
    if kind == "raw":
        server = await loop.create_server(RawEcho, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    else:
        settings, tls = None, None
        if "key" in kind:
            key = os.environ["BENCH_KEY"].encode()
            settings = linkserver.LinkSettings(keys=(("admin", key),))
        if "tls" in kind:
            from linkserver.security import server_context

            tls, _fingerprint = server_context(os.environ["BENCH_CERT"], os.environ["BENCH_CERT_KEY"])
        link_server = linkserver.aio.LinkServer(0, "127.0.0.1", settings=settings, tls=tls)
        await link_server.start()
        if kind.startswith("link-key") or kind.startswith("link-tls"):
            link_server.on_link(echo_receiver)
        elif kind == "link":
            link_server.on_link(echo_receiver)
        elif kind == "link-task":
            link_server.on_link(echo_task)
        port = link_server.port
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
