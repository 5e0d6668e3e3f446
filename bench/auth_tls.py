"""What a key and TLS cost: handshake time and steady-state round trip.

Four echo servers in their own processes -- plain, with a key, with TLS
(self-signed, pinned by fingerprint), with both -- and one client here.
Reports the median time to connect and finish the handshake, and the median
round trip of a 20-byte expression once connected, each with its ratio to the
plain server measured in this run.
Targets (issue 4): handshake cost reported; round trip with a key within 10%
of without; with TLS within 1.5x.

    .venv/bin/python bench/auth_tls.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from harness import cpu_placement, peer_process, report
from wolframclient.language import wl

import linkserver.aio
from linkserver import security

EXPR = wl.f("abcdefghijk")  # 20 bytes of WXF
HANDSHAKES = 300
ROUNDS = 3000
KINDS = ("link", "link-key", "link-tls", "link-key-tls")


def credentials(kind: str, key: str, fingerprint: str) -> dict[str, object]:
    return {
        "key": key if "key" in kind else None,
        "tls": "tls" in kind,
        "fingerprint": fingerprint if "tls" in kind else None,
    }


BLOCKS = 10  # the variants take turns, so drift in machine load hits all alike


async def measure(names: dict[str, str], options: dict[str, dict[str, object]]) -> dict[str, tuple[float, float]]:
    handshakes: dict[str, list[float]] = {kind: [] for kind in names}
    trips: dict[str, list[float]] = {kind: [] for kind in names}
    links = {}
    for kind, name in names.items():
        links[kind] = await linkserver.aio.connect(name, 10, **options[kind])  # type: ignore[arg-type]
        for _ in range(200):  # warm up
            await links[kind].put(EXPR)
            await links[kind].get()
    for _ in range(BLOCKS):
        for kind, name in names.items():
            for _ in range(HANDSHAKES // BLOCKS):
                t = time.perf_counter()
                link = await linkserver.aio.connect(name, 10, **options[kind])  # type: ignore[arg-type]
                handshakes[kind].append(time.perf_counter() - t)
                await link.aclose()
            link = links[kind]
            for _ in range(ROUNDS // BLOCKS):
                t = time.perf_counter()
                await link.put(EXPR)
                await link.get()
                trips[kind].append(time.perf_counter() - t)
    for link in links.values():
        await link.aclose()
    return {k: (statistics.median(handshakes[k]), statistics.median(trips[k])) for k in names}


def main() -> None:
    print(f"# cpus allowed: {cpu_placement()}; {HANDSHAKES} handshakes, {ROUNDS} round trips "
          f"per variant, in {BLOCKS} interleaved blocks")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        cert, cert_key = security.self_signed(Path(tmp))
        _context, fingerprint = security.server_context(cert, cert_key)
        key = security.new_key()
        os.environ.update(BENCH_KEY=key, BENCH_CERT=str(cert), BENCH_CERT_KEY=str(cert_key))
        os.environ["LINKSERVER_RUNTIME_DIR"] = tmp  # no connection file is consulted
        names = {}
        for kind in KINDS:
            _proc, port = stack.enter_context(peer_process(kind))
            names[kind] = f"{port}@127.0.0.1"
        options = {kind: credentials(kind, key, fingerprint) for kind in KINDS}
        results = asyncio.run(measure(names, options))
    plain_handshake, plain_rt = results["link"]
    for kind in KINDS:
        label = {"link": "plain", "link-key": "key", "link-tls": "tls", "link-key-tls": "key_tls"}[kind]
        hs, rt = results[kind]
        report(f"handshake.{label}", hs * 1e6, "us")
        report(f"roundtrip.{label}", rt * 1e6, "us")
        if kind != "link":
            report(f"handshake.{label}.ratio", hs / plain_handshake, "x plain")
            report(f"roundtrip.{label}.ratio", rt / plain_rt, "x plain")


if __name__ == "__main__":
    main()
