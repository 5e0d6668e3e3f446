"""The ``linkserver`` command: ``serve``, ``connect``, ``eval``, ``map``, ``status``,
``services``, ``jupyter install``, ``mcp``.

The library never configures logging; this module does. Errors print one
sentence on stderr (a traceback only with ``--debug``) and exit non-zero.
Every ``serve`` option can also be set as ``LINKSERVER_<OPTION>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import ipaddress
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__, aio, discovery, map_command, records, wxf
from .aio.link import LinkSettings
from .aio.server import DEFAULT_MAX_LINKS
from .broker.worker import DEFAULT_MAX_QUEUED
from .demo import greet_and_echo
from .door import jupyter_install, mcp_command
from .errors import LinkError
from .kernel import BACKENDS
from .link import connect
from .names import DEFAULT_HOST, DEFAULT_PORT, LinkName, parse_name
from .protocol import VERSION
from .protocol.connection import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT
from .protocol.framing import DEFAULT_MAX_FRAME_SIZE
from .repl import repl
from .script import FORMATS, Script
from .client import Client
from .config import MODES, ServerConfig, check_pool, load_config
from .users import User
from .security import (
    ConnectionInfo,
    SecurityError,
    check_key,
    default_address,
    new_key,
    read_key_file,
    remove_connection_file,
    runtime_dir,
    self_signed,
    server_context,
    write_connection_file,
)
from .service import KernelService
from .sideport import SidePort
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


def _max_digits(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of digits") from None
    if value < 600:
        raise argparse.ArgumentTypeError(f"{value} is below 600 digits, the least allowed")
    return value


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
    serve.add_argument("--sandbox", action="store_true",
                       default=_env("SANDBOX", "") not in ("", "0"),
                       help="confine every kernel by the operating system (Linux Landlock and "
                       "seccomp): it writes files only in a scratch directory of its own, runs "
                       "no programs, opens no network connections (default: off)")
    serve.add_argument("--handshake-timeout", type=float,
                       default=float(_env("HANDSHAKE_TIMEOUT", str(DEFAULT_HANDSHAKE_TIMEOUT))),
                       help="seconds a new connection has to finish its handshake (default: %(default)s)")
    serve.add_argument("--idle-timeout", type=float,
                       default=float(_env("IDLE_TIMEOUT", str(DEFAULT_IDLE_TIMEOUT))),
                       help="seconds of silence before a link is closed (default: %(default)s)")
    serve.add_argument("--max-frame-size", type=int,
                       default=int(_env("MAX_FRAME_SIZE", str(DEFAULT_MAX_FRAME_SIZE))),
                       help="largest expression accepted, in encoded bytes (default: %(default)s)")
    serve.add_argument("--max-digits", type=_max_digits,
                       default=_max_digits(_env("MAX_DIGITS", str(wxf.DEFAULT_MAX_DIGITS))),
                       help="most decimal digits of a big integer or real in a result or a "
                       "request; more are refused with a clear error (default: %(default)s)")
    serve.add_argument("--max-links", type=int, default=int(_env("MAX_LINKS", str(DEFAULT_MAX_LINKS))),
                       help="client links at most; one more is refused with a reason "
                       "(default: %(default)s)")
    serve.add_argument("--max-queued", type=int, default=int(_env("MAX_QUEUED", str(DEFAULT_MAX_QUEUED))),
                       help="requests one link may have waiting; more are answered at once "
                       "with a queuefull failure (default: %(default)s)")
    serve.add_argument("--keepalive", type=float, default=float(_env("KEEPALIVE", "0")),
                       help="pool mode: seconds a persistent kernel waits for its client to come "
                       "back; 0 turns persistent kernels off (default: %(default)s)")
    serve.add_argument("--config", default=_env("CONFIG", "") or None, metavar="FILE",
                       help="named pools from a TOML or JSON file (see docs/configuration.md); "
                       "replaces --mode, --kernel, --pool-*, --keepalive, --eval-timeout, "
                       "--kernel-memory and --max-queued")
    serve.add_argument("--ray", default=_env("RAY", "") or None, metavar="ADDRESS",
                       help="place kernels on a Ray cluster: auto, HOST:PORT, ray://HOST:PORT, "
                       "or local (a private single-node Ray); pools choose with placement = "
                       "\"local\" or \"ray\" (README, Kernels on a cluster; needs "
                       "pip install 'linkserver[ray]')")
    serve.add_argument("--kernel-interface", default=_env("KERNEL_INTERFACE", "") or None,
                       metavar="HOST",
                       help="with --ray: the address kernels on the cluster's nodes dial back to "
                       "(default: this node's address as Ray knows it)")
    serve.add_argument("--key-file", default=_env("KEY_FILE", "") or None, metavar="PATH",
                       help="the admin key clients must prove, read from the first line of "
                       "PATH (default: a fresh random key, written to the connection file)")
    serve.add_argument("--user-key-file", default=_env("USER_KEY_FILE", "") or None,
                       metavar="PATH", help="also accept this key, for clients that may "
                       "evaluate but not stop the server or see its status")
    serve.add_argument("--no-key", action="store_true",
                       help="ask clients for no key (only sensible on a machine you alone use)")
    serve.add_argument("--tls", action="store_true",
                       help="speak TLS with a fresh self-signed certificate, pinned by "
                       "fingerprint in the connection file")
    serve.add_argument("--tls-cert", default=_env("TLS_CERT", "") or None, metavar="PEM",
                       help="speak TLS with this certificate (with --tls-key)")
    serve.add_argument("--tls-key", default=_env("TLS_KEY", "") or None, metavar="PEM",
                       help="the private key of --tls-cert")
    serve.add_argument("--insecure", action="store_true",
                       help="allow listening beyond this machine with neither a key nor TLS")
    serve.add_argument("--advertise", default=_env("ADVERTISE", "") or None, metavar="NAME",
                       help="announce the server on the local network by DNS-SD/mDNS as NAME "
                       f"({discovery.SERVICE_TYPE}), so clients connect to service:NAME; the "
                       "record says whether a key is needed and the TLS fingerprint, never the key")
    serve.add_argument("--demo", action="store_true",
                       help="no kernels: greet each link with Print[\"Hello client program.\"] "
                       "and echo what it sends")
    serve.add_argument("--log-level", choices=list(records.LEVELS),
                       default=_env("LOG_LEVEL", "info"),
                       help="how much to log, one key=value line per event; trace adds every "
                       "packet on every link (default: %(default)s)")
    serve.add_argument("--log-file", default=_env("LOG_FILE", "") or None, metavar="PATH",
                       help="append the log to this file instead of stderr")
    serve.add_argument("--cull-idle", type=float, default=float(_env("CULL_IDLE", "0")),
                       metavar="S", help="pool mode: end a kernel whose client sent nothing for "
                       "S seconds and tell the client (default: 0, never)")
    serve.add_argument("--http", type=int, default=_env("HTTP", "") or None, metavar="PORT",
                       help="also serve /healthz, /metrics and /status over HTTP on PORT, "
                       "same interface (docs/configuration.md)")
    serve.add_argument("--log-streams", default=_env("LOG_STREAMS", "") or None, metavar="DIR",
                       help="write every packet of each client link, both ways, to a file "
                       "of its own in DIR (see docs/logging.md)")

    connect_cmd = sub.add_parser(
        "connect", help="an interactive session (In[1]:= ... Out[1]= ...)",
        description="Open a notebook-style session with a server. Ctrl-C aborts the running "
        "evaluation; Ctrl-D or Quit leaves.",
    )
    connect_cmd.add_argument("name", nargs="?", default=None, help=_NAME_HELP)
    _client_options(connect_cmd)

    eval_cmd = sub.add_parser(
        "eval", help="run Wolfram Language code or a file, as wolframscript does",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run Wolfram Language code as a script, as wolframscript -code and -file\n"
        "do. stdout gets Print output, in order, then the result alone, so that\n"
        "x=$(linkserver eval '1+1') sets x to 2; messages go to stderr. The code is\n"
        "split into statements as in a notebook: a statement ends at the end of a\n"
        "line where it is complete.",
        epilog="exit codes: 0 done; 1 a message was issued, the input did not parse, or a\n"
        "result is $Failed or $Aborted (or has no JSON form); 2 a bad command line\n"
        "or an unreadable file; 3 no server, or it refused the connection.\n\n"
        "examples:\n"
        "  linkserver eval '1+1'                           prints 2\n"
        "  linkserver eval 'Expand[(x+1)^2]' --format TeXForm\n"
        "  echo 'Range[3]' | linkserver eval - --format JSON\n"
        "  linkserver eval -f script.wl                    only what the script Prints\n"
        "  linkserver eval -f script.wl --print            ...and its last result",
    )
    eval_cmd.add_argument("expr", nargs="?", default=None, metavar="CODE",
                          help="Wolfram Language code, e.g. '1+1'; - reads it from stdin")
    eval_cmd.add_argument("-f", "--file", default=None, metavar="FILE",
                          help="run the statements of FILE (- for stdin) instead; as with "
                          "wolframscript -file, only Print output is written unless --print "
                          "is given; a first line starting with #! is skipped")
    eval_cmd.add_argument("--format", choices=FORMATS, default=FORMATS[0], metavar="FORM",
                          help="how results are written: InputForm (a string result as its "
                          "characters, as wolframscript writes it), OutputForm (as "
                          "'linkserver connect' shows it), FullForm, TeXForm, or JSON (lists, "
                          "associations, strings, numbers, True, False and Null; anything "
                          "else is an error) (default: %(default)s)")
    eval_cmd.add_argument("--print", dest="print_results", action="store_const", const="last",
                          default=None, help="write the last statement's result (unless it "
                          "is Null): what CODE does by default, and -f FILE does not")
    eval_cmd.add_argument("--print-all", dest="print_results", action="store_const",
                          const="all", help="write every statement's result, in order with "
                          "the Print output")
    eval_cmd.add_argument("--name", default=None, help=_NAME_HELP)
    eval_cmd.set_defaults(command_parser=eval_cmd)  # for its own usage line on errors
    _client_options(eval_cmd)
    eval_cmd.add_argument("--timeout", type=float, default=30.0,
                          help="seconds to connect (default: %(default)s)")

    map_cmd = sub.add_parser(
        "map", help="evaluate a function on many items, spread over kernels of a pool",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate CODE[item] for every item, each kernel of the pool taking the\n"
        "next item when it is free. stdout gets one line per item, in the items' order:\n"
        "its result in InputForm (strings quoted), and nothing else; messages and\n"
        "failures go to stderr with the item's number, and a progress bar too when\n"
        "stderr is a terminal. Ctrl-C aborts the running items and stops.",
        epilog="exit codes: 0 done; 1 an item failed ($Failed, $Aborted) or issued a\n"
        "message, or the setup failed; 2 a bad command line or an unreadable file, or\n"
        "more kernels than the pool gives; 3 no server, or it refused the connection.\n\n"
        "examples:\n"
        "  linkserver map '#^2 &' 1 2 3                    prints 1, 4 and 9\n"
        "  linkserver map 'PrimeQ' --range 1,100 --kernels 4\n"
        "  seq 10 | linkserver map 'f[#] &' - --setup 'f[x_] := x!'\n"
        "  linkserver map 'Factor' -f polynomials.txt --name 31415@host/big",
    )
    map_cmd.add_argument("code", metavar="CODE",
                         help="a Wolfram Language function applied to each item, e.g. '#^2 &'")
    map_cmd.add_argument("items", nargs="*", metavar="ITEM",
                         help="Wolfram Language input, one item each; - reads items from "
                         "stdin, one per line (empty lines are skipped)")
    map_cmd.add_argument("-f", "--file", default=None, metavar="FILE",
                         help="read the items from FILE, one per line (- for stdin)")
    map_cmd.add_argument("--range", default=None, metavar="SPEC",
                         help="the items are whole numbers: N for 1..N, MIN,MAX or "
                         "MIN,MAX,STEP, as Range[...] counts")
    map_cmd.add_argument("--kernels", type=int, default=None, metavar="N",
                         help="kernels to use; more than the pool gives at once is an error "
                         "(default: as many as it gives)")
    map_cmd.add_argument("--pool", default=None,
                         help="the pool whose kernels to use (default: the server's default, "
                         "or the /POOL of --name)")
    map_cmd.add_argument("--setup", default=None, metavar="CODE",
                         help="evaluated on each kernel before its first item (definitions "
                         "CODE uses); it must succeed")
    map_cmd.add_argument("--no-progress", action="store_true",
                         help="no progress bar, even when stderr is a terminal")
    map_cmd.add_argument("--name", default=None, help=_NAME_HELP)
    map_cmd.set_defaults(command_parser=map_cmd)
    _client_options(map_cmd)
    map_cmd.add_argument("--timeout", type=float, default=30.0,
                         help="seconds to connect (default: %(default)s)")

    status = sub.add_parser("status", help="show a server's links, kernels and queue")
    status.add_argument("name", nargs="?", default=None, help=_NAME_HELP)
    _client_options(status)

    services = sub.add_parser(
        "services", help="list the servers advertised on the local network",
        description="List the linkservers advertised on the local network (serve --advertise "
        "NAME) that answer within the timeout: name, address, mode, kernel, whether a key is "
        "needed and whether TLS is used. Connect to one with service:NAME. Multicast DNS is "
        "spoken on every IPv4 interface, or on those in $LINKSERVER_MDNS_INTERFACES.",
    )
    services.add_argument("--timeout", type=float, default=discovery.DEFAULT_BROWSE_TIMEOUT,
                          help="seconds to listen for answers (default: %(default)s)")
    jupyter_install.add_command(sub)  # linkserver jupyter install (docs/jupyter.md)
    mcp_command.add_command(sub)  # linkserver mcp [install] (docs/agents.md)
    return parser


_NAME_HELP = ("the server, PORT@HOST[/POOL] or service:NAME[/POOL] (default: "
              "$LINKSERVER_ADDRESS, else the newest "
              f"server you run, from its connection file, else {DEFAULT_ADDRESS})")


def _client_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--key-file", default=None, metavar="PATH",
                         help="the server's key, from the first line of PATH (default: "
                         "$LINKSERVER_KEY, else the server's connection file)")
    command.add_argument("--tls", action="store_true", default=None,
                         help="connect over TLS (default: as the connection file says)")
    command.add_argument("--fingerprint", default=None, metavar="sha256:HEX",
                         help="trust exactly the TLS certificate with this fingerprint")


def _client_args(args: argparse.Namespace) -> tuple[str, dict[str, object]]:
    """The address and the key/TLS keyword arguments a client command connects with."""
    name = args.name or os.environ.get("LINKSERVER_ADDRESS") or default_address(DEFAULT_ADDRESS)
    key = read_key_file(args.key_file) if args.key_file else None
    return name, {"key": key, "tls": args.tls, "fingerprint": args.fingerprint}


class _Security:
    """What ``serve`` was told about keys and TLS, checked (protected mode included)."""

    def __init__(self, args: argparse.Namespace, users: tuple[User, ...] = ()) -> None:
        self.key: str | None = None
        keys: list[tuple[str, bytes]] = []
        if args.no_key and (args.key_file or args.user_key_file):
            raise SecurityError("--no-key contradicts --key-file/--user-key-file; choose one")
        if args.no_key and users:
            raise SecurityError(f"the configuration has users ({users[0].name}, ...), who are "
                                "told apart by their keys: drop --no-key")
        if not args.no_key:
            admin = read_key_file(args.key_file) if args.key_file else check_key(new_key())
            self.key = admin.decode("utf-8")
            keys.append(("admin", admin))
            if args.user_key_file:
                keys.append(("user", read_key_file(args.user_key_file)))
            for user in users:
                assert user.key_file is not None
                keys.append((user.name, read_key_file(user.key_file)))
        seen: dict[bytes, str] = {}
        for label, key in keys:
            if key in seen:
                raise SecurityError(f"{seen[key]} and {label} have the same key: give each "
                                    "user a key of their own")
            seen[key] = label
        self.keys = tuple(keys)
        if bool(args.tls_cert) != bool(args.tls_key):
            raise SecurityError("--tls-cert and --tls-key go together: give both")
        self.tls: ssl.SSLContext | None = None
        self.fingerprint: str | None = None
        self._made: tuple[Path, Path] | None = None
        if args.tls_cert:
            self.tls, self.fingerprint = server_context(args.tls_cert, args.tls_key)
        elif args.tls:
            self._made = self_signed(runtime_dir(), args.interface or "127.0.0.1")
            self.tls, self.fingerprint = server_context(*self._made)
        if not self.keys and self.tls is None and not args.insecure and not _loopback(args.interface):
            raise SecurityError(
                f"refusing to listen on {args.interface or 'every interface'} with neither a key "
                "nor TLS: anyone who reaches the port could run code as you; drop --no-key, "
                "add --tls, or pass --insecure if the network is yours alone"
            )
        self.connection_file: Path | None = None

    def publish(self, address: str, pools: list[str]) -> None:
        """Write the connection file clients find by themselves."""
        info = ConnectionInfo(address=address, key=self.key, tls=self.tls is not None,
                              fingerprint=self.fingerprint, pools=pools)
        self.connection_file = write_connection_file(info)

    def withdraw(self) -> None:
        """Remove the connection file and a self-signed pair made for this run."""
        remove_connection_file(self.connection_file)
        self.connection_file = None
        for path in self._made or ():
            remove_connection_file(path)


def _loopback(interface: str) -> bool:
    if interface in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(interface.strip("[]")).is_loopback
    except ValueError:
        return False


def _client_address(name: str) -> str:
    """The address a client on this machine uses for a server bound to ``name``."""
    parsed = parse_name(name)
    if parsed.kind == "tcp" and parsed.host in ("0.0.0.0", "::", ""):
        return str(LinkName("tcp", host=DEFAULT_HOST, port=parsed.port))
    return name


async def _serve(args: argparse.Namespace) -> int:
    # The kernels this server starts inherit the bound through the environment.
    wxf.set_max_digits(args.max_digits)
    os.environ["LINKSERVER_MAX_DIGITS"] = str(args.max_digits)
    advertiser = discovery.Advertiser(args.advertise, args.interface) if args.advertise else None
    config = None if args.demo else _server_config(args)
    security = _Security(args, config.users if config is not None else ())
    settings = LinkSettings(
        max_frame_size=args.max_frame_size,
        handshake_timeout=args.handshake_timeout,
        idle_timeout=args.idle_timeout,
        keys=security.keys,
    )
    try:
        return await _run_server(args, settings, security, config, advertiser)
    finally:
        if advertiser is not None:
            await advertiser.aclose()
        security.withdraw()


def _print_security(security: _Security) -> None:
    auth = "clients must prove the key" if security.keys else "no key asked (--no-key)"
    tls = f"TLS, certificate {security.fingerprint}" if security.tls else "no TLS"
    print(f"  security: {auth}; {tls}", flush=True)
    if security.connection_file is not None:
        print(f"  connection file: {security.connection_file} (clients on this machine "
              "find it by themselves)", flush=True)


def _advertise(advertiser: discovery.Advertiser | None, security: _Security, address: str,
               mode: str, kernel: str, pools: list[str]) -> None:
    """Start announcing the server on the local network (in the background)."""
    if advertiser is None:
        return
    properties = discovery.properties_for(
        protocol=f"{VERSION[0]}.{VERSION[1]}", version=__version__, mode=mode, kernel=kernel,
        pools=pools, key=bool(security.keys), tls=security.tls is not None,
        fingerprint=security.fingerprint,
    )
    advertiser.start(parse_name(address).port, properties)
    print(f"  advertised on the local network as service:{advertiser.name} "
          f"({discovery.SERVICE_TYPE}; the key is not advertised)", flush=True)


async def _run_server(args: argparse.Namespace, settings: LinkSettings, security: _Security,
                      config: ServerConfig | None,
                      advertiser: discovery.Advertiser | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.demo:
        server = aio.LinkServer(args.port, args.interface, settings=settings,
                                log_streams=args.log_streams, tls=security.tls,
                                max_links=args.max_links)
        await server.start()
        server.on_link(greet_and_echo)
        security.publish(_client_address(server.name), [])
        print(f"linkserver {__version__} listening on {server.name}", flush=True)
        print("  handler: demo (greets each link with Print[\"Hello client program.\"] and "
              "echoes what it sends)", flush=True)
        _print_security(security)
        _advertise(advertiser, security, server.name, "demo", "none", [])
        await stop.wait()
        await server.aclose()
        print("linkserver stopped", flush=True)
        return 0
    assert config is not None
    service = KernelService(args.port, args.interface, config=config, settings=settings,
                            log_streams=args.log_streams, tls=security.tls,
                            max_links=args.max_links, stop_allowed=config.stop_allowed,
                            status_allowed=config.status_allowed, ray=args.ray,
                            kernel_interface=args.kernel_interface)
    print(f"linkserver {__version__}: starting kernels for pool(s) "
          f"{', '.join(p.name for p in config.pools)}...", flush=True)
    # Made first so its counters see the first kernels start.
    side = SidePort(service, args.http, args.interface) if args.http is not None else None
    await service.start()
    security.publish(_client_address(service.name), [p.name for p in config.pools])
    print(f"linkserver {__version__} listening on {service.name}", flush=True)
    _print_security(security)
    default_pool = next(p for p in config.pools if p.name == config.default)
    _advertise(advertiser, security, service.name, default_pool.mode, default_pool.backend,
               [config.default] + [p.name for p in config.pools if p.name != config.default])
    for pool in config.pools:
        suffix = "" if pool.name == config.default else f"/{pool.name}"
        if pool.mode == "shared":
            what = "shared: one kernel, every client sees the same definitions"
        else:
            what = (f"pool: a kernel per client, at most {pool.max}, {pool.min} kept warm"
                    + (f", persistent kernels kept {pool.keepalive:g} s" if pool.keepalive else ""))
        limit = f", evaluations limited to {pool.eval_timeout:g} s" if pool.eval_timeout else ""
        limit += ", sandboxed (Landlock, seccomp)" if pool.sandbox else ""
        default = " (default)" if pool.name == config.default else ""
        where = (f", on Ray ({pool.ray.describe()} each, namespace {pool.ray.namespace})"
                 if pool.placed(args.ray) == "ray" else "")
        print(f"  pool {pool.name}{default}: {pool.backend} kernels, {what}{limit}{where}"
              f" -> {service.name}{suffix}", flush=True)
        problem = service.pools[pool.name].problem
        if problem:
            print(f"  pool {pool.name}: {problem}", flush=True)
    if side is not None:
        try:
            await side.start()
        except LinkError:
            await service.aclose()
            raise
        print(f"  http: {side.url}/healthz, /metrics and /status (the last two want the "
              "admin key as a bearer token)", flush=True)
    print(f"  connect: linkserver connect {service.name}", flush=True)
    asked = asyncio.ensure_future(service.wait_stop_requested())
    asked.add_done_callback(lambda _task: stop.set())
    print(f"           linkserver eval --name {service.name} '1+1'", flush=True)
    print(f"           python: linkserver.Client({service.name!r}).evaluate('1+1')", flush=True)
    print("  stop with Ctrl-C, SIGTERM, or $KeepRunning = False from an admin client", flush=True)
    await stop.wait()
    print("linkserver stopping: answering queued requests...", flush=True)
    if side is not None:
        await side.aclose()
    await service.aclose()
    print("linkserver stopped", flush=True)
    return 0


def _server_config(args: argparse.Namespace) -> ServerConfig:
    """The pools to serve: from --config, or one default pool from the options."""
    if args.config:
        config = load_config(args.config)
        if args.sandbox:  # --sandbox confines every pool of the file too
            pools = tuple(dataclasses.replace(pool, sandbox=True) for pool in config.pools)
            config = dataclasses.replace(config, pools=pools)
        return config
    values = {
        "mode": args.mode, "backend": args.kernel, "min": args.pool_min, "max": args.pool_size,
        "wait": args.pool_wait, "keepalive": args.keepalive,
        "eval_timeout": args.eval_timeout, "memory_mb": args.kernel_memory,
        "kernel_path": args.kernel_path, "max_queued": args.max_queued,
        "sandbox": args.sandbox or None,
        "cull_idle": args.cull_idle,
    }
    if args.mode == "shared":
        values.pop("keepalive")
        if not args.cull_idle:
            values.pop("cull_idle")  # else check_pool says it is for pool mode
    pool = check_pool("default", {k: v for k, v in values.items() if v is not None}, "options")
    return ServerConfig((pool,), "default")


def _read_source(source: str) -> str:
    """The text of file ``source``, or of stdin for ``-`` (one that cannot be read exits 2)."""
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"linkserver: cannot read {source}: {getattr(exc, 'strerror', None) or exc}",
              file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _script_code(args: argparse.Namespace) -> str:
    """The code ``eval`` runs: its argument, a file, or stdin (a bad command line exits 2)."""
    if (args.expr is None) == (args.file is None):
        args.command_parser.error("give CODE or -f FILE, one of them")
    source = args.expr if args.file is None else args.file
    if args.file is None and args.expr != "-":
        return str(args.expr)
    text = _read_source(source)
    if args.file is not None and text.startswith("#!"):
        text = text.partition("\n")[2]  # a script's interpreter line, as wolframscript skips it
    return text


def _eval(args: argparse.Namespace, code: str) -> int:
    name, credentials = _client_args(args)
    results = args.print_results or ("none" if args.file is not None else "last")
    with Client(name, timeout=args.timeout, **credentials) as client:  # type: ignore[arg-type]
        return Script(client.link, format=args.format, results=results).run(code)


def _map_items(args: argparse.Namespace) -> list[object]:
    """The items of ``map``: its arguments, stdin, a file or a range (a bad one exits 2)."""
    given = [bool(args.items), args.file is not None, args.range is not None]
    if sum(given) != 1:
        args.command_parser.error("give the items one way: ITEM..., - (stdin), -f FILE or --range")
    if args.range is not None:
        try:
            return list(map_command.parse_range(args.range))
        except ValueError as exc:
            args.command_parser.error(str(exc))
    source = args.file if args.file is not None else ("-" if args.items == ["-"] else None)
    if source is None:
        return list(args.items)
    text = _read_source(source)
    return [line for line in text.splitlines() if line.strip()]


def _map(args: argparse.Namespace) -> int:
    if args.kernels is not None and args.kernels < 1:
        args.command_parser.error(f"--kernels must be 1 or more, not {args.kernels}")
    items = _map_items(args)
    name, credentials = _client_args(args)
    with Client(name, timeout=args.timeout, **credentials) as client:  # type: ignore[arg-type]
        return map_command.run(client, args.code, items, pool=args.pool, kernels=args.kernels,
                               setup=args.setup,
                               progress=sys.stderr.isatty() and not args.no_progress)


def _connect(args: argparse.Namespace) -> int:
    name, credentials = _client_args(args)
    # Selecting even the default pool tells the status line the pool, kernel and mode.
    with Client(name, timeout=30, select=True, **credentials) as client:  # type: ignore[arg-type]
        print(f"linkserver {__version__}: connected to {name} (Ctrl-D to leave)", flush=True)
        return repl(client.link, server=name, pool=client.pool, kernel=client.kernel_id,
                    mode=client.mode)


def _status(args: argparse.Namespace) -> int:
    name, credentials = _client_args(args)
    with connect(name, 30, **credentials) as link:  # type: ignore[arg-type]
        link.send_message(STATUS_MESSAGE)
        answer = link.get(timeout=30)
    text = format_status(answer)
    if text.startswith("refused:"):
        print(f"linkserver: status {text}", file=sys.stderr)
        return EXIT_FAILED
    print(text)
    return 0


def _services(args: argparse.Namespace) -> int:
    found = discovery.browse(args.timeout)
    if not found:
        print(f"linkserver: no linkserver services answered within {args.timeout:g} s on this "
              "network (start one with 'linkserver serve --advertise NAME')", file=sys.stderr)
        return 0
    print(discovery.format_services(found))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        records.configure(getattr(args, "log_level", "warning"), getattr(args, "log_file", None))
        if args.command == "serve":
            return asyncio.run(_serve(args))
        if args.command == "eval":
            return _eval(args, _script_code(args))
        if args.command == "connect":
            return _connect(args)
        if args.command == "map":
            return _map(args)
        if args.command == "services":
            return _services(args)
        if args.command == "jupyter":
            return jupyter_install.run_command(args)
        if args.command == "mcp":
            return mcp_command.run_command(args)
        return _status(args)
    except (LinkError, ValueError) as exc:
        if args.debug:
            raise
        print(f"linkserver: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    except KeyboardInterrupt:
        return 130
