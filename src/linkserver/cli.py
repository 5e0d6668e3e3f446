"""The ``linkserver`` command: ``linkserver serve`` (more subcommands come with kernels).

The library never configures logging; this module does. Errors print one
sentence on stderr (a traceback only with ``--debug``) and exit non-zero.
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
from .names import DEFAULT_HOST, DEFAULT_PORT
from .protocol.connection import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT
from .protocol.framing import DEFAULT_MAX_FRAME_SIZE

__all__ = ["main"]

EXIT_STARTUP_FAILED = 3  # the server could not start (address in use, bad option)


def _env(name: str, default: str) -> str:
    return os.environ.get(f"LINKSERVER_{name}", default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linkserver",
        description="Serve Wolfram Language links to many clients at one address.",
    )
    parser.add_argument("--version", action="version", version=f"linkserver {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="start a link server",
        description="Start a link server. Every option can also be set with an environment "
        "variable LINKSERVER_<OPTION>, e.g. LINKSERVER_PORT=8000.",
    )
    serve.add_argument(
        "--port", type=int, default=int(_env("PORT", str(DEFAULT_PORT))),
        help="TCP port to listen on; 0 picks a free one (default: %(default)s)",
    )
    serve.add_argument(
        "--interface", default=_env("INTERFACE", DEFAULT_HOST),
        help="address to bind; '' for every interface (default: %(default)s)",
    )
    serve.add_argument(
        "--handshake-timeout", type=float,
        default=float(_env("HANDSHAKE_TIMEOUT", str(DEFAULT_HANDSHAKE_TIMEOUT))),
        help="seconds a new connection has to finish its handshake (default: %(default)s)",
    )
    serve.add_argument(
        "--idle-timeout", type=float,
        default=float(_env("IDLE_TIMEOUT", str(DEFAULT_IDLE_TIMEOUT))),
        help="seconds of silence before a link is closed (default: %(default)s)",
    )
    serve.add_argument(
        "--max-frame-size", type=int,
        default=int(_env("MAX_FRAME_SIZE", str(DEFAULT_MAX_FRAME_SIZE))),
        help="largest expression accepted, in encoded bytes (default: %(default)s)",
    )
    serve.add_argument(
        "--log-level", choices=["error", "warning", "info", "debug"],
        default=_env("LOG_LEVEL", "info"), help="how much to log on stderr (default: %(default)s)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> int:
    settings = LinkSettings(
        max_frame_size=args.max_frame_size,
        handshake_timeout=args.handshake_timeout,
        idle_timeout=args.idle_timeout,
    )
    server = aio.LinkServer(args.port, args.interface, settings=settings)
    await server.start()
    server.on_link(greet_and_echo)
    print(f"linkserver {__version__} listening on {server.name}", flush=True)
    print(
        "  handler: demo (greets each link with Print[\"Hello client program.\"] and echoes "
        "what it sends; kernels come in a later version)",
        flush=True,
    )
    print(
        f"  connect from Python: import linkserver; link = linkserver.connect({server.name!r}); "
        "link.get()",
        flush=True,
    )
    print("  stop with Ctrl-C", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.aclose()
    print("linkserver stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(_serve(args))
    except LinkError as exc:
        if args.debug:
            raise
        print(f"linkserver: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    except KeyboardInterrupt:
        return 130
