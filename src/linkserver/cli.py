"""The ``linkserver`` command: ``serve``, ``connect``, ``eval``, ``status``, ``services``,
``jupyter install``.

The library never configures logging; this module does. Errors print one
sentence on stderr (a traceback only with ``--debug``) and exit non-zero.
Every ``serve`` option can also be set as ``LINKSERVER_<OPTION>``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__, aio, discovery, records, wxf
from .aio.link import LinkSettings
from .aio.server import DEFAULT_MAX_LINKS
from .broker.worker import DEFAULT_MAX_QUEUED
from .demo import greet_and_echo
from .door import jupyter_install
from .errors import LinkError
from .kernel import BACKENDS
from .link import connect
from .names import DEFAULT_HOST, DEFAULT_PORT, LinkName, parse_name
from .protocol import VERSION
from .protocol.connection import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT
from .protocol.framing import DEFAULT_MAX_FRAME_SIZE
from .repl import TextSession, repl
from .client import Client
from .config import MODES, ServerConfig, check_pool, load_config
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
        "eval", help="evaluate one input and print the result",
        description="Evaluate Wolfram Language input. The result goes to stdout, messages to "
        "stderr; the exit code is 1 if a message was issued or the result is $Failed or $Aborted.",
    )
    eval_cmd.add_argument("expr", help="Wolfram Language input, e.g. '1+1'")
    eval_cmd.add_argument("--name", default=None, help=_NAME_HELP)
    _client_options(eval_cmd)
    eval_cmd.add_argument("--timeout", type=float, default=30.0,
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

    def __init__(self, args: argparse.Namespace) -> None:
        self.key: str | None = None
        keys: list[tuple[str, bytes]] = []
        if args.no_key and (args.key_file or args.user_key_file):
            raise SecurityError("--no-key contradicts --key-file/--user-key-file; choose one")
        if not args.no_key:
            admin = read_key_file(args.key_file) if args.key_file else check_key(new_key())
            self.key = admin.decode("utf-8")
            keys.append(("admin", admin))
            if args.user_key_file:
                keys.append(("user", read_key_file(args.user_key_file)))
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
    security = _Security(args)
    settings = LinkSettings(
        max_frame_size=args.max_frame_size,
        handshake_timeout=args.handshake_timeout,
        idle_timeout=args.idle_timeout,
        keys=security.keys,
    )
    try:
        return await _run_server(args, settings, security, advertiser)
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
    config = _server_config(args)
    service = KernelService(args.port, args.interface, config=config, settings=settings,
                            log_streams=args.log_streams, tls=security.tls,
                            max_links=args.max_links, stop_allowed=config.stop_allowed,
                            status_allowed=config.status_allowed, ray=args.ray,
                            kernel_interface=args.kernel_interface)
    print(f"linkserver {__version__}: starting kernels for pool(s) "
          f"{', '.join(p.name for p in config.pools)}...", flush=True)
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
        default = " (default)" if pool.name == config.default else ""
        where = (f", on Ray ({pool.ray.describe()} each, namespace {pool.ray.namespace})"
                 if pool.placed(args.ray) == "ray" else "")
        print(f"  pool {pool.name}{default}: {pool.backend} kernels, {what}{limit}{where}"
              f" -> {service.name}{suffix}", flush=True)
        problem = service.pools[pool.name].problem
        if problem:
            print(f"  pool {pool.name}: {problem}", flush=True)
    print(f"  connect: linkserver connect {service.name}", flush=True)
    asked = asyncio.ensure_future(service.wait_stop_requested())
    asked.add_done_callback(lambda _task: stop.set())
    print(f"           linkserver eval --name {service.name} '1+1'", flush=True)
    print(f"           python: linkserver.Client({service.name!r}).evaluate('1+1')", flush=True)
    print("  stop with Ctrl-C, SIGTERM, or $KeepRunning = False from an admin client", flush=True)
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
        "kernel_path": args.kernel_path, "max_queued": args.max_queued,
    }
    if args.mode == "shared":
        values.pop("keepalive")
    pool = check_pool("default", {k: v for k, v in values.items() if v is not None}, "options")
    return ServerConfig((pool,), "default")


def _eval(args: argparse.Namespace) -> int:
    name, credentials = _client_args(args)
    with Client(name, timeout=args.timeout, **credentials) as client:  # type: ignore[arg-type]
        session = TextSession(client.link)
        session.run(args.expr)
        return EXIT_FAILED if session.failed else 0


def _connect(args: argparse.Namespace) -> int:
    name, credentials = _client_args(args)
    with Client(name, timeout=30, **credentials) as client:  # type: ignore[arg-type]
        print(f"linkserver {__version__}: connected to {name} (Ctrl-D to leave)", flush=True)
        return repl(client.link)


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
            return _eval(args)
        if args.command == "connect":
            return _connect(args)
        if args.command == "services":
            return _services(args)
        if args.command == "jupyter":
            return jupyter_install.run_command(args)
        return _status(args)
    except (LinkError, ValueError) as exc:
        if args.debug:
            raise
        print(f"linkserver: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    except KeyboardInterrupt:
        return 130
