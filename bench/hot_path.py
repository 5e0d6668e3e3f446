"""Where the time of one ``1+1`` goes: each path against the floor of its own shape.

The floor is a 20-byte ping-pong from this process through a *relay* process
to an *echo* process and back, over loopback TCP with blocking sockets: the
shape of a request through linkserver (client -> server -> kernel), with no
work at all. The evaluation's own cost is Mathics3's
``session.evaluate("1+1")`` in this process. Every path is measured against
``chain + eval`` (shared NOTES and issue 10):

* ``string``: blocking ``Client.evaluate("1+1")`` (a client as a new user makes it)
* ``expr``: blocking ``Client.evaluate(wl.Plus(1, 1))``, the same client
* ``installed``: the same, on a client that has installed a function (its call
  server reads the link, so the answer comes through the client's loop thread)
* ``aio``: ``await aio Client.evaluate(wl.Plus(1, 1))`` (no thread hop in the client)
* ``enter``: ``EnterTextPacket["1+1"]`` up to its ``InputNamePacket`` (a blocking link)
* ``call``: ``PyId[1]``, a Python function the client installed, minus ``Identity[1]``
  (the cost of one call beyond its evaluation, against the chain alone)
* ``echo``: a blocking link round trip through ``linkserver serve --demo`` (which
  echoes in the server: the link cost without a kernel)

On 2-vCPU machines a round trip costs 10-20 us when both ends share a CPU and
60-90 us across CPUs: the figures are sampled in blocks, interleaved, so that
placement drifts alike for all, and each is the median of its blocks' medians.

Run: ``.venv/bin/python bench/hot_path.py [--blocks N] [--json FILE] [--svg FILE]``.
Prints ``hotpath.<path>: X us`` and ``hotpath.<path>.ratio: Y x (chain + eval)``;
``--json`` keeps the figures, ``--svg`` draws a stacked bar per path (floor, eval,
linkserver's own work), and ``--compare BEFORE.json AFTER.json --svg FILE`` draws two
runs side by side (docs/performance.md's picture).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness import cpu_placement, median_time, report
from wolframclient.language import wl

import linkserver
import linkserver.aio

PAYLOAD = b"x" * 20
ROUNDS = 200  # round trips per block


# ------------------------------------------------------------ the floor


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _recv_message(sock: socket.socket) -> bytes:
    (n,) = struct.unpack("<I", _recv_exact(sock, 4))
    return _recv_exact(sock, n)


def _listen() -> socket.socket:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    return srv


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def run_echo() -> None:
    srv = _listen()
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            msg = _recv_message(conn)
            conn.sendall(struct.pack("<I", len(msg)) + msg)
    except (EOFError, OSError):
        return


def run_relay(echo_port: int) -> None:
    upstream = _connect(echo_port)
    srv = _listen()
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            msg = _recv_message(conn)
            upstream.sendall(struct.pack("<I", len(msg)) + msg)
            back = _recv_message(upstream)
            conn.sendall(struct.pack("<I", len(back)) + back)
    except (EOFError, OSError):
        return


def _start(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--no-key", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if " listening on " in line:
            return proc, line.split(" listening on ")[1].split()[0]
    raise RuntimeError("the server did not start")


# ------------------------------------------------------------ measuring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--svg", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--compare", type=Path, nargs=2, default=None,
                        metavar=("BEFORE", "AFTER"))
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="RUN",
                        help="report the median of each figure over saved runs (--json of each)")
    args = parser.parse_args()
    if args.compare is not None:
        runs = [(path.stem, json.loads(path.read_text())) for path in args.compare]
        (args.svg or Path("hot_path.svg")).write_text(stacked_bars(runs), encoding="utf-8")
        return
    if args.merge is not None:
        saved = [json.loads(path.read_text()) for path in args.merge]
        merged = {key: statistics.median(run[key] for run in saved) for key in saved[0]}
        print(f"# median of {len(saved)} saved runs")
        _report(merged, args)
        return

    from mathics.core.load_builtin import import_and_load_builtins
    from mathics.session import MathicsSession

    import_and_load_builtins()
    session = MathicsSession()

    echo_proc, echo_port = _start("--role", "echo")
    relay_proc, relay_port = _start("--role", "relay", str(echo_port))
    chain = _connect(relay_port)
    frame = struct.pack("<I", len(PAYLOAD)) + PAYLOAD

    def floor() -> None:
        chain.sendall(frame)
        _recv_message(chain)

    server, name = _start_server()
    demo, demo_name = _start_server("--demo")
    client = linkserver.Client(name)
    installer = linkserver.Client(name)
    echo_link = linkserver.connect(demo_name)
    echo_link.get()  # the demo's greeting
    enter_link = linkserver.connect(name)
    installer.install("PyId", lambda x: x)
    loop = asyncio.new_event_loop()
    aio_client = loop.run_until_complete(linkserver.aio.Client(name).start())

    plus = wl.Plus(1, 1)
    enter = wl.EnterTextPacket("1+1")
    echo_expr = wl.f("abcdefghijk")

    def enter_text() -> None:
        enter_link.put(enter)
        while True:
            packet = enter_link.get()
            if getattr(getattr(packet, "head", None), "name", "") == "InputNamePacket":
                return

    def echo() -> None:
        echo_link.put(echo_expr)
        echo_link.get()

    paths: dict[str, Callable[[], object]] = {
        "floor": floor,
        "eval": lambda: session.evaluate("1+1"),
        "string": lambda: client.evaluate("1+1"),
        "expr": lambda: client.evaluate(plus),
        "installed": lambda: installer.evaluate(plus),
        "aio": lambda: loop.run_until_complete(aio_client.evaluate(plus)),
        "enter": enter_text,
        "call_total": lambda: installer.evaluate(wl.PyId(1)),
        "call_base": lambda: installer.evaluate(wl.Identity(1)),
        "echo": echo,
    }
    for fn in paths.values():  # warm up
        for _ in range(50):
            fn()
    blocks: dict[str, list[float]] = {key: [] for key in paths}
    try:
        for _ in range(args.blocks):
            for key, fn in paths.items():
                blocks[key].append(median_time(fn, repeat=ROUNDS))
    finally:
        client.close()
        installer.close()
        echo_link.close()
        enter_link.close()
        loop.run_until_complete(aio_client.aclose())
        chain.close()
        for proc in (server, demo, relay_proc, echo_proc):
            proc.terminate()
            proc.wait(10)

    us = {key: statistics.median(values) * 1e6 for key, values in blocks.items()}
    us["call"] = us.pop("call_total") - us.pop("call_base")
    print(f"# cpus {cpu_placement()}; {args.blocks} blocks of {ROUNDS} round trips each")
    _report(us, args)


def _report(us: dict[str, float], args: argparse.Namespace) -> None:
    """Print the figures and their ratios; save them (--json) and draw them (--svg)."""
    base = us["floor"] + us["eval"]
    for key in ("floor", "eval", "string", "expr", "installed", "aio", "enter", "call", "echo"):
        report(f"hotpath.{key}", us[key], "us")
    for key in ("string", "expr", "installed", "aio", "enter"):
        report(f"hotpath.{key}.ratio", us[key] / base, "x (chain + eval)")
    report("hotpath.call.ratio", us["call"] / us["floor"], "x chain")
    report("hotpath.echo.ratio", us["echo"] / us["floor"], "x chain")
    if args.json is not None:
        args.json.write_text(json.dumps(us, indent=1) + "\n", encoding="utf-8")
    if args.svg is not None:
        args.svg.write_text(stacked_bars([("this run", us)]), encoding="utf-8")
        print(f"# picture: {args.svg}")


def stacked_bars(runs: list[tuple[str, dict[str, float]]]) -> str:
    """An SVG with a bar per path and run: the floor, the evaluation, and the rest (ours)."""
    rows = [("string", "Client.evaluate(\"1+1\")"), ("expr", "Client.evaluate(Plus[1, 1])"),
            ("aio", "aio Client.evaluate(Plus[1, 1])"), ("enter", "EnterTextPacket[\"1+1\"]")]
    colours = {"floor": "#9ecae1", "eval": "#fdae6b", "ours": "#e34a33"}
    width, left, bar, gap = 900, 300, 22, 16
    scale = (width - left - 60) / max(us[key] for _, us in runs for key, _ in rows)
    height = 60 + len(rows) * (len(runs) * bar + gap) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="13">',
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="22" font-size="15">Where one 1+1 goes (median us)</text>']
    y = 45
    for key, label in rows:
        for name, us in runs:
            parts = [("floor", us["floor"]), ("eval", us["eval"]),
                     ("ours", max(0.0, us[key] - us["floor"] - us["eval"]))]
            text = f"{label} ({name})" if len(runs) > 1 else label
            out.append(f'<text x="10" y="{y + bar * 0.7:.0f}">{text}</text>')
            x = float(left)
            for part, value in parts:
                w = value * scale
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar}" '
                           f'fill="{colours[part]}"><title>{part}: {value:.0f} us</title></rect>')
                x += w
            out.append(f'<text x="{x + 6:.1f}" y="{y + bar * 0.7:.0f}">{us[key]:.0f} us</text>')
            y += bar
        y += gap
    legend = [("floor", "chain floor (3 processes, 20 bytes)"), ("eval", "Mathics3 evaluate"),
              ("ours", "linkserver's own work")]
    x = 10
    for part, text in legend:
        out.append(f'<rect x="{x}" y="{y + 6}" width="14" height="14" fill="{colours[part]}"/>')
        out.append(f'<text x="{x + 20}" y="{y + 18}">{text}</text>')
        x += 20 + 8 * len(text) + 20
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--role":
        if sys.argv[2] == "echo":
            run_echo()
        else:
            run_relay(int(sys.argv[3]))
    else:
        main()
