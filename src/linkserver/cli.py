"""The ``linkserver`` command: ``serve``, ``connect``, ``eval``, ``status``.

The library never configures logging; this module does. Errors print one
sentence on stderr (a traceback only with ``--debug``) and exit non-zero.
Every ``serve`` option can also be set as ``LINKSERVER_<OPTION>``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from . import __version__, aio
from .aio.link import LinkSettings
from .demo import greet_and_echo
from .errors import LinkError
from .kernel.spec import BACKENDS
from .link import connect
from .names import DEFAULT_HOST, DEFAULT_PORT
from .protocol.connection import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT
from .protocol.framing import DEFAULT_MAX_FRAME_SIZE
from .repl import TextSession, repl
from .client import Client
from .config import MODES, ServerConfig, check_pool, load_config
from .service import KernelService
from .status import STATUS_MESSAGE, format_status

__all__ = ["main"]

EXIT_FAILED = 1  # eval: a message was issued or the result is $Failed/$Aborted
EXIT_USAGE = 2
EXIT_STARTUP_FAILED = 3  # the server could not start, or the client could not connect

DEFAULT_ADDRESS = f"{DEFAULT_PORT}@{DEFAULT_HOST}"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"LINKSERVER_{name}", default)


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("", "none", "0") else float(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linkserver",
        description="Serve Wolfram Language kernels to many clients at one address.",
    )
    parser.add_argument("--version", action="version", version=f"linkserver {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="start a server with kernels behind it",
        description="Start a link server with Wolfram Language kernels behind it. Every option "
        "can also be set with an environment variable LINKSERVER_<OPTION>, e.g. LINKSERVER_PORT=8000.",
    )
    serve.add_argument("--port", type=int, default=int(_env("PORT", str(DEFAULT_PORT))),
                       help="TCP port to listen on; 0 picks a free one (default: %(default)s)")
    serve.add_argument("--interface", default=_env("INTERFACE", DEFAULT_HOST),
                       help="address to bind; '' for every interface (default: %(default)s)")
    serve.add_argument("--mode", choices=MODES, default=_env("MODE", "shared"),
                       help="shared: one kernel whose state every client sees; pool: a kernel "
                       "per client (default: %(default)s)")
    serve.add_argument("--kernel", choices=sorted(BACKENDS), default=_env("KERNEL", "mathics"),
                       help="kernel backend (default: %(default)s)")
    serve.add_argument("--kernel-path", default=_env("KERNEL_PATH", "") or None, metavar="PATH",
                       help="--kernel wolfram: the WolframKernel program (default: looked for "
                       "on PATH)")
    serve.add_argument("--pool-size", type=int, default=int(_env("POOL_SIZE", "4")),
                       help="pool mode: most kernels at once (default: %(default)s)")
    serve.add_argument("--pool-min", type=int, default=int(_env("POOL_MIN", "1")),
                       help="pool mode: kernels kept warm for new clients (default: %(default)s)")
    serve.add_argument("--pool-wait", type=float, default=float(_env("POOL_WAIT", "30")),
                       help="pool mode: seconds a client waits for a free kernel before it is "
                       "refused (default: %(default)s)")
    serve.add_argument("--eval-timeout", type=_optional_float,
                       default=_optional_float(_env("EVAL_TIMEOUT", "")),
                       help="seconds one evaluation may run before it answers $Aborted "
                       "(default: no limit)")
    serve.add_argument("--kernel-memory", type=int, default=None,
                       help="address-space limit per kernel, in MB (default: no limit)")
    serve.add_argument("--handshake-timeout", type=float,
                       default=float(_env("HANDSHAKE_TIMEOUT", str(DEFAULT_HANDSHAKE_TIMEOUT))),
                       help="seconds a new connection has to finish its handshake (default: %(default)s)")
    serve.add_argument("--idle-timeout", type=float,
                       default=float(_env("IDLE_TIMEOUT", str(DEFAULT_IDLE_TIMEOUT))),
                       help="seconds of silence before a link is closed (default: %(default)s)")
    serve.add_argument("--max-frame-size", type=int,
                       default=int(_env("MAX_FRAME_SIZE", str(DEFAULT_MAX_FRAME_SIZE))),
                       help="largest expression accepted, in encoded bytes (default: %(default)s)")
    serve.add_argument("--keepalive", type=float, default=float(_env("KEEPALIVE", "0")),
                       help="pool mode: seconds a persistent kernel waits for its client to come "
                       "back; 0 turns persistent kernels off (default: %(default)s)")
    serve.add_argument("--config", default=_env("CONFIG", "") or None, metavar="FILE",
                       help="named pools from a TOML or JSON file (see docs/configuration.md); "
                       "replaces --mode, --kernel, --pool-*, --keepalive, --eval-timeout and "
                       "--kernel-memory")
    serve.add_argument("--demo", action="store_true",
                       help="no kernels: greet each link with Print[\"Hello client program.\"] "
                       "and echo what it sends")
    serve.add_argument("--log-level", choices=["error", "warning", "info", "debug"],
                       default=_env("LOG_LEVEL", "info"),
                       help="how much to log on stderr (default: %(default)s)")

    connect_cmd = sub.add_parser(
        "connect", help="an interactive session (In[1]:= ... Out[1]= ...)",
        description="Open a notebook-style session with a server. Ctrl-C aborts the running "
        "evaluation; Ctrl-D or Quit leaves.",
    )
    connect_cmd.add_argument("name", nargs="?", default=_env("ADDRESS", DEFAULT_ADDRESS),
                             help="the server, PORT@HOST (default: %(default)s)")

    eval_cmd = sub.add_parser(
        "eval", help="evaluate one input and print the result",
        description="Evaluate Wolfram Language input. The result goes to stdout, messages to "
        "stderr; the exit code is 1 if a message was issued or the result is $Failed or $Aborted.",
    )
    eval_cmd.add_argument("expr", help="Wolfram Language input, e.g. '1+1'")
    eval_cmd.add_argument("--name", default=_env("ADDRESS", DEFAULT_ADDRESS),
                          help="the server, PORT@HOST (default: %(default)s)")
    eval_cmd.add_argument("--timeout", type=float, default=30.0,
                          help="seconds to connect (default: %(default)s)")

    status = sub.add_parser("status", help="show a server's links, kernels and queue")
    status.add_argument("name", nargs="?", default=_env("ADDRESS", DEFAULT_ADDRESS),
                        help="the server, PORT@HOST (default: %(default)s)")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    settings = LinkSettings(
        max_frame_size=args.max_frame_size,
        handshake_timeout=args.handshake_timeout,
        idle_timeout=args.idle_timeout,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.demo:
        server = aio.LinkServer(args.port, args.interface, settings=settings)
        await server.start()
        server.on_link(greet_and_echo)
        print(f"linkserver {__version__} listening on {server.name}", flush=True)
        print("  handler: demo (greets each link with Print[\"Hello client program.\"] and "
              "echoes what it sends)", flush=True)
        await stop.wait()
        await server.aclose()
        print("linkserver stopped", flush=True)
        return 0
    config = _server_config(args)
    service = KernelService(args.port, args.interface, config=config, settings=settings)
    print(f"linkserver {__version__}: starting kernels for pool(s) "
          f"{', '.join(p.name for p in config.pools)}...", flush=True)
    await service.start()
    print(f"linkserver {__version__} listening on {service.name}", flush=True)
    for pool in config.pools:
        suffix = "" if pool.name == config.default else f"/{pool.name}"
        if pool.mode == "shared":
            what = "shared: one kernel, every client sees the same definitions"
        else:
            what = (f"pool: a kernel per client, at most {pool.max}, {pool.min} kept warm"
                    + (f", persistent kernels kept {pool.keepalive:g} s" if pool.keepalive else ""))
        limit = f", evaluations limited to {pool.eval_timeout:g} s" if pool.eval_timeout else ""
        default = " (default)" if pool.name == config.default else ""
        print(f"  pool {pool.name}{default}: {pool.backend} kernels, {what}{limit}"
              f" -> {service.name}{suffix}", flush=True)
    print(f"  connect: linkserver connect {service.name}", flush=True)
    asked = asyncio.ensure_future(service.wait_stop_requested())
    asked.add_done_callback(lambda _task: stop.set())
    print(f"           linkserver eval --name {service.name} '1+1'", flush=True)
    print(f"           python: linkserver.Client({service.name!r}).evaluate('1+1')", flush=True)
    print("  stop with Ctrl-C, SIGTERM, or $KeepRunning = False from a local client", flush=True)
    await stop.wait()
    print("linkserver stopping: answering queued requests...", flush=True)
    await service.aclose()
    print("linkserver stopped", flush=True)
    return 0


def _server_config(args: argparse.Namespace) -> ServerConfig:
    """The pools to serve: from --config, or one default pool from the options."""
    if args.config:
        return load_config(args.config)
    values = {
        "mode": args.mode, "backend": args.kernel, "min": args.pool_min, "max": args.pool_size,
        "wait": args.pool_wait, "keepalive": args.keepalive,
        "eval_timeout": args.eval_timeout, "memory_mb": args.kernel_memory,
        "kernel_path": args.kernel_path,
    }
    if args.mode == "shared":
        values.pop("keepalive")
    pool = check_pool("default", {k: v for k, v in values.items() if v is not None}, "options")
    return ServerConfig((pool,), "default")


def _eval(args: argparse.Namespace) -> int:
    with Client(args.name, timeout=args.timeout) as client:
        session = TextSession(client.link)
        session.run(args.expr)
        return EXIT_FAILED if session.failed else 0


def _connect(args: argparse.Namespace) -> int:
    with Client(args.name, timeout=30) as client:
        print(f"linkserver {__version__}: connected to {args.name} (Ctrl-D to leave)", flush=True)
        return repl(client.link)


def _status(args: argparse.Namespace) -> int:
    with connect(args.name, 30) as link:
        link.send_message(STATUS_MESSAGE)
        print(format_status(link.get(timeout=30)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    level = getattr(args, "log_level", "warning")
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "serve":
            return asyncio.run(_serve(args))
        if args.command == "eval":
            return _eval(args)
        if args.command == "connect":
            return _connect(args)
        return _status(args)
    except (LinkError, ValueError) as exc:
        if args.debug:
            raise
        print(f"linkserver: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    except KeyboardInterrupt:
        return 130
