"""``linkserver mcp``: the command that runs the MCP door, and ``mcp install``'s snippets.

This module imports no MCP SDK (``linkserver --help`` must work without the
``mcp`` extra); :mod:`linkserver.door.mcp` is imported only to serve.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import sys
from typing import Any

from ..names import DEFAULT_HOST, DEFAULT_PORT
from ..security import SecurityError, credentials_for, default_address, read_key_file
from .mcp_sessions import Limits, Sessions

__all__ = ["HOSTS", "add_command", "run_command", "snippet"]

DEFAULT_ADDRESS = f"{DEFAULT_PORT}@{DEFAULT_HOST}"
EXIT_STARTUP_FAILED = 3

#: agent hosts ``mcp install`` knows, and where each keeps its MCP configuration
HOSTS = {
    "claude-desktop": "claude_desktop_config.json (Settings > Developer > Edit Config)",
    "claude-code": "a command to run (or .mcp.json in the project)",
    "cursor": "~/.cursor/mcp.json, or .cursor/mcp.json in the project",
    "vscode": ".vscode/mcp.json in the workspace",
    "generic": "the host's MCP server configuration",
}

#: the :class:`Limits` an ``mcp`` option sets, each with its option and help;
#: the option's type and default are the field's
_LIMIT_OPTIONS = {
    "default_timeout": ("--timeout", "seconds an evaluation may run when the agent names no "
                        "timeout"),
    "max_timeout": ("--max-timeout", "the longest timeout an agent may ask for"),
    "grace": ("--grace", "seconds an aborted evaluation has to stop before its kernel is "
              "ended and the session restarted"),
    "max_result_chars": ("--max-result-chars", "characters of a result's text kept"),
    "max_print_chars": ("--max-print-chars", "characters of printed text, and of message "
                        "text, kept"),
    "max_image_pixels": ("--max-image-pixels", "pixels (width x height) of an image at most"),
}


def add_command(sub: Any) -> None:
    """Add ``mcp`` to the ``linkserver`` command's subparsers."""
    limits = Limits()
    cmd = sub.add_parser(
        "mcp", help="an MCP server for AI agents, whose sessions are this server's kernels",
        description="Serve the Model Context Protocol (stdio by default, streamable HTTP with "
        "--http) with tools to evaluate Wolfram Language on a linkserver, one kernel per "
        "session; 'linkserver mcp install' prints the configuration an agent host needs "
        "(see docs/agents.md). Needs pip install 'linkserver[mcp]'.",
    )
    cmd.add_argument("action", nargs="?", choices=["serve", "install"], default="serve",
                     help="serve (the default) or install: print a host's configuration")
    cmd.add_argument("--server", default=None, metavar="PORT@HOST[/POOL]",
                     help="the linkserver whose kernels serve the sessions (default: "
                     "$LINKSERVER_ADDRESS, else the newest server you run)")
    cmd.add_argument("--key-file", default=None, metavar="PATH",
                     help="the server's key, from the first line of PATH (default: "
                     "$LINKSERVER_KEY, else the server's connection file); with --http it "
                     "is also the bearer token clients must send")
    cmd.add_argument("--http", type=int, default=None, metavar="PORT",
                     help="serve MCP's streamable HTTP transport at http://INTERFACE:PORT/mcp "
                     "instead of stdio; 0 picks a free port")
    cmd.add_argument("--interface", default="127.0.0.1",
                     help="with --http: the address to bind (default: %(default)s)")
    cmd.add_argument("--insecure", action="store_true",
                     help="with --http: allow listening beyond this machine with no key")
    for field, (option, text) in _LIMIT_OPTIONS.items():
        default = getattr(limits, field)
        cmd.add_argument(option, dest=field, metavar=option[2:].replace("-", "_").upper(),
                         type=type(default), default=default,
                         help=f"{text} (default: %(default)s)")
    cmd.add_argument("--host", choices=sorted(HOSTS), default="generic",
                     help="install: the agent host to print the configuration for "
                     "(default: %(default)s)")
    cmd.add_argument("--name", default="linkserver",
                     help="install: the server's name in the host's configuration "
                     "(default: %(default)s)")


def _command_line(args: argparse.Namespace) -> list[str]:
    """How a host starts this door: the installed ``linkserver`` script, else this Python."""
    program = shutil.which("linkserver")
    argv = [program] if program else [sys.executable, "-m", "linkserver"]
    argv.append("mcp")
    if args.server:
        argv += ["--server", args.server]
    if args.key_file:
        argv += ["--key-file", os.path.abspath(args.key_file)]
    return argv


def snippet(host: str, name: str, argv: list[str]) -> str:
    """The configuration text ``host`` needs to start the door with ``argv``."""
    command, rest = argv[0], argv[1:]
    if host == "claude-code":
        return f"claude mcp add {shlex.quote(name)} -- {shlex.join(argv)}"
    if host == "vscode":
        return json.dumps({"servers": {name: {"type": "stdio", "command": command,
                                              "args": rest}}}, indent=2)
    return json.dumps({"mcpServers": {name: {"command": command, "args": rest}}}, indent=2)


def run_command(args: argparse.Namespace) -> int:
    """Run ``linkserver mcp [install]``; return the exit code."""
    if args.action == "install":
        print(f"# {args.host}: put this in {HOSTS[args.host]}")
        print(snippet(args.host, args.name, _command_line(args)))
        return 0
    try:
        from . import mcp as door
    except ImportError as exc:
        print(f"linkserver: the MCP door needs the MCP SDK ({exc}): "
              "pip install 'linkserver[mcp]'", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    server = args.server or os.environ.get("LINKSERVER_ADDRESS") or default_address(
        DEFAULT_ADDRESS)
    key = read_key_file(args.key_file) if args.key_file else None
    limits = Limits(**{field: getattr(args, field) for field in _LIMIT_OPTIONS})
    sessions = Sessions(server, limits=limits, key=key)
    if args.http is None:
        asyncio.run(door.run_stdio(sessions))
        return 0
    token = key if key is not None else credentials_for(server).key
    if token is None and not args.insecure and not _loopback(args.interface):
        raise SecurityError(
            f"refusing to serve MCP on {args.interface} with no key: anyone who reaches the "
            "port could run code as you; give the server a key (--key-file), or pass "
            "--insecure if the network is yours alone")
    if token is None:
        print("linkserver mcp: the server has no key, so HTTP clients need no token "
              "(this machine only)", file=sys.stderr)

    def listening(url: str) -> None:
        print(f"linkserver mcp listening on {url} for {server}",
              flush=True)
        if token is not None:
            print("  clients send: Authorization: Bearer <the server's key>", flush=True)

    asyncio.run(door.run_http(sessions, port=args.http, host=args.interface, key=token,
                              on_listening=listening))
    return 0


def _loopback(interface: str) -> bool:
    import ipaddress

    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface.strip("[]")).is_loopback
    except ValueError:
        return False
