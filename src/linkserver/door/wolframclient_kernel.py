"""``linkserver-kernel``: a kernel executable that wolframclient can launch.

wolframclient's ``WolframLanguageSession(kernel=PATH)`` starts ``PATH`` as::

    PATH -noprompt -initfile .../initkernel.m \\
         -run 'ClientLibrary`Private`KernelPrivateStart["tcp://A", "tcp://B"(, "tcp://C", level)];'

and then speaks ZeroMQ. wolframclient *binds* every socket; the kernel
connects a PULL to A (requests), a PUSH to B (replies) and, when a log level
is given, a PUB to C (log lines, JSON ``{"msg": ..., "level": 1..4}``). The
kernel's first message on B is the two bytes ``OK``. Each request is the WXF
of one expression; each reply is the WXF of an ``EvaluationData``-style
association::

    <|"Result" -> ByteArray[WXF of the value], "Success" -> True|False,
      "FailureType" -> None | "MessageFailure" | ..., "Messages" -> {MessageName[s, "tag"], ...},
      "MessagesText" -> {"text", ...}, "Output" -> {"printed", ...}, "AbsoluteTiming" -> t|>

``Quit[]`` (sent as ``8:f\\x00s\\x04Quit`` by ``session.stop()``) ends the
process. This module speaks that contract (learnt from wolframclient's
``kernelcontroller.py`` and ``initkernel.m``) and evaluates with Mathics3:

* locally (default): in this very process, with linkserver's own Mathics3
  evaluator (:class:`linkserver.kernel.evaluator.MathicsEvaluator`) in the
  main thread -- so messages, ``Print``, ``Quit[]``,
  ``$ProcessID`` and the conversions are the ones a linkserver kernel has;
* ``--server NAME`` (``31415@host``, ``31415@host/pool``): on a kernel of a
  running linkserver, through :class:`linkserver.Client` (key and TLS from
  ``$LINKSERVER_KEY`` and the connection file, as the client finds them by
  itself). ``$ProcessID`` is this process's id there too, and ``Quit[]``
  ends this process, never the server's kernel.

The executable never writes to stdout or stderr (wolframclient gives it
pipes it never reads): both go to ``/dev/null``, or to ``--log-file``. It
exits when ``Quit[]`` arrives and, within a second, when its parent dies.
The ``OK`` is sent as soon as the sockets are connected, before Mathics3 has
loaded (seconds): requests wait in ZeroMQ's queue meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import zmq
from wolframclient.language.expression import WLFunction, WLSymbol

from .. import gather, wxf
from ..errors import LinkError
from ..install import pack_arrays
from ..protocol.packets import EvaluatePacket, short_head

__all__ = ["KernelArgs", "main", "parse_args", "evaluation_data"]

log = logging.getLogger("linkserver.door.wolframclient")

#: Exit codes: 0 after Quit[] or a dead parent; Quit[n]'s n.
EXIT_USAGE = 2
EXIT_STARTUP_FAILED = 3
EXIT_LINK_FAILED = 4

#: wolframclient's log levels on the PUB socket (initkernel.m's $DEBUG ... $ERROR).
DEBUG, INFO, WARN, ERROR = 1, 2, 3, 4

#: A result that is a full array of machine numbers with at least this many
#: elements travels as a packed array (WL's own auto-packing length for Table
#: and Map); shorter ones as lists, as most WL functions return them.
PACK_MIN = 250

#: How often the parent is checked (seconds).
PARENT_POLL = 0.25

_URL = re.compile(r'"((?:tcp|ipc|inproc)://[^"]*)"')
_LEVEL = re.compile(r',\s*(\d+)\s*\]\s*;?\s*$')
_QUIT_TEXT = re.compile(r"\s*(?:Quit|Exit)\s*(?:\[\s*(\d*)\s*\])?\s*;?\s*$")
_QUIT_NAMES = frozenset({"Quit", "Exit", "System`Quit", "System`Exit"})

_NULL = WLSymbol("Null")
_MESSAGE_NAME = WLSymbol("MessageName")


# ------------------------------------------------------------ command line


@dataclass
class KernelArgs:
    """What the command line asked for."""

    request_url: str = ""  # the kernel's PULL connects here
    reply_url: str = ""  # the kernel's PUSH connects here
    log_url: str | None = None  # the kernel's PUB connects here
    log_level: int | None = None  # 1..4 (DEBUG..ERROR); None: logging off
    server: str | None = None
    pool: str | None = None
    log_file: str | None = None
    initfiles: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def parse_args(argv: Sequence[str]) -> KernelArgs:
    """Parse wolframclient's command line (and ours).

    wolframclient passes ``-noprompt``, ``-initfile PATH`` (repeatable) and
    ``-run CODE``; the ZeroMQ addresses are the ``"tcp://..."`` strings in
    CODE, the log level its last integer argument. Other kernel flags
    (``-mathlink``, ``-wstp``, ``-nopaclet`` ...) are accepted and ignored.
    Our own flags: ``--server NAME``, ``--pool NAME``, ``--log-file PATH``.

    Raises:
        ValueError: no ``-run`` with two addresses (the text says what is missing).
    """
    out = KernelArgs()
    run = ""
    items = list(argv)
    i = 0

    def value(flag: str) -> str:
        nonlocal i
        if i + 1 >= len(items):
            raise ValueError(f"{flag} needs a value")
        i += 1
        return items[i]

    while i < len(items):
        arg = items[i]
        key, eq, inline = arg.partition("=")
        if key in ("--server", "--pool", "--log-file"):
            text = inline if eq else value(key)
            if key == "--server":
                out.server = text
            elif key == "--pool":
                out.pool = text
            else:
                out.log_file = text
        elif arg in ("-run", "--run"):
            run = value(arg)
        elif arg in ("-initfile", "--initfile"):
            out.initfiles.append(value(arg))
        else:
            out.ignored.append(arg)
        i += 1
    urls = _URL.findall(run)
    if len(urls) < 2:
        raise ValueError(
            "this program is started by wolframclient "
            "(WolframLanguageSession(kernel=PATH)); its -run argument must name two "
            "ZeroMQ addresses, as ClientLibrary`Private`KernelPrivateStart[\"tcp://...\", \"tcp://...\"]"
        )
    out.request_url, out.reply_url = urls[0], urls[1]
    if len(urls) >= 3:
        out.log_url = urls[2]
        match = _LEVEL.search(run)
        out.log_level = int(match.group(1)) if match else WARN
    return out


# ------------------------------------------------------------ evaluating


@dataclass
class Outcome:
    """What one evaluation produced."""

    result: Any = None
    messages: list[tuple[str, Any, str]] = field(default_factory=list)  # (symbol, tag, text)
    printed: list[str] = field(default_factory=list)


class Backend(Protocol):
    def evaluate(self, expr: Any) -> Outcome: ...


def _outcome(answer: gather.Outcome) -> Outcome:
    """The door's outcome of a gathered answer: messages as wolframclient reports them."""
    return Outcome(
        _NULL if answer.result is None else answer.result,
        [(m.symbol, m.tag, m.body) for m in answer.messages],
        answer.printed,
    )


def _side_logger(on_side: Callable[[int, str], None] | None) -> gather.EventHandler | None:
    """Send ``Print`` output and messages to wolframclient's kernel log as they come."""
    if on_side is None:
        return None
    log_side = on_side

    def side(event: gather.Event) -> None:
        if isinstance(event, gather.Printed):
            log_side(INFO, event.text)
        elif isinstance(event, gather.Issued):
            log_side(WARN, event.message.body)

    return side


class PacketBackend:
    """Evaluate over a linkserver link: ``EvaluatePacket`` out, packets back (``--server``)."""

    def __init__(self, link: Any, *, on_side: Callable[[int, str], None] | None = None) -> None:
        self.link = link
        self.on_side = _side_logger(on_side)

    def evaluate(self, expr: Any) -> Outcome:
        link = self.link
        link.put(EvaluatePacket(expr).to_expr())
        # A kernel started by wolframclient has nobody to ask: Input[] reads EndOfFile.
        answer = gather.read_answer(gather.Gatherer(), link.get, link.put,
                                    on_event=self.on_side, on_input=lambda _: "EndOfFile")
        return _outcome(answer)


class LocalBackend:
    """Evaluate in this process with linkserver's Mathics3 kernel (default mode)."""

    def __init__(self, kernel: Any, *, on_side: Callable[[int, str], None] | None = None) -> None:
        self.kernel = kernel  # a _wolframclient_local.DirectKernel
        self.on_side = _side_logger(on_side)

    def evaluate(self, expr: Any) -> Outcome:
        from ._wolframclient_local import KernelExit

        try:
            packets = self.kernel.evaluate_packets(expr)
        except KernelExit as end:  # Quit[] inside an evaluation
            log.info("Quit[] evaluated: exiting with %d", end.code)
            _exit(end.code)
        gatherer = gather.Gatherer()
        for packet in packets:
            for event in gatherer.feed(packet):
                if self.on_side is not None:
                    self.on_side(event)
            if gatherer.done:
                break
        return _outcome(gatherer.outcome)


def _system_short(name: str) -> str:
    return name[7:] if name.startswith("System`") else name


def _kernel_error_as_message(outcome: Outcome) -> None:
    """``linkserver`KernelError[code, text]`` -> ``$Failed`` with a ``LinkServer::code`` message.

    wolframclient handles only message failures (any other ``FailureType``
    makes ``session.evaluate`` raise a ``TypeError`` inside wolframclient).
    """
    result = outcome.result
    if isinstance(result, WLFunction) and short_head(result) == "KernelError":
        args = list(result.args) + ["", ""]
        outcome.messages.append(("LinkServer", str(args[0]), str(args[1])))
        outcome.result = WLSymbol("$Failed")


def evaluation_data(outcome: Outcome, seconds: float = 0.0) -> bytes:
    """The WXF reply for one evaluation: ``EvaluationData``'s association.

    ``Result`` is the WXF of the value as a ``ByteArray`` (what initkernel.m's
    ``BinarySerialize[expr["Result"]]`` gives); symbols of ``System``` travel
    without their context, as ``BinarySerialize`` writes them. ``Success`` is
    False exactly when a message was issued (``FailureType`` is then
    ``"MessageFailure"``): the only failure wolframclient's sessions handle.
    """
    _kernel_error_as_message(outcome)
    failure = "MessageFailure" if outcome.messages else None
    names = [
        WLFunction(_MESSAGE_NAME, WLSymbol(_system_short(symbol)), str(tag))
        for symbol, tag, _ in outcome.messages
    ]
    result = outcome.result
    if type(result) is tuple and result:
        packed = pack_arrays(result)
        if packed is not result and packed.size >= PACK_MIN:
            result = packed
    data: dict[str, Any] = {
        "Result": wxf.dumps(result),
        "Success": failure is None,
        "FailureType": failure,
        "OutputLog": [],
        "Messages": names,
        "MessagesText": [text for _, _, text in outcome.messages],
        "Output": list(outcome.printed),
        "AbsoluteTiming": float(seconds),
    }
    return wxf.dumps(data)


def _quit_code(expr: Any) -> int | None:
    """The exit code if ``expr`` is ``Quit[]``/``Exit[n]`` (also as input text); else None."""
    if isinstance(expr, WLSymbol) and expr.name in _QUIT_NAMES:
        return 0
    if isinstance(expr, WLFunction) and isinstance(expr.head, WLSymbol):
        name = expr.head.name
        if name in _QUIT_NAMES:
            args = expr.args
            return args[0] if len(args) == 1 and isinstance(args[0], int) else 0
        if name in ("ToExpression", "System`ToExpression") and len(expr.args) == 1:
            text = expr.args[0]
            if isinstance(text, str):
                match = _QUIT_TEXT.match(text)
                if match:
                    return int(match.group(1) or 0)
    return None


def client_library_setup(log_level: int | None) -> str:
    """Wolfram Language input defining what initkernel.m defines for its users.

    ``ClientLibrary`Private`$LogLevel`` and the level constants, the
    ``ClientLibrary`Set*LogLevel[]`` setters (no-ops when logging is off, as
    in initkernel.m) and ``ClientLibrary`disconnect[]``. ``ClientLibrary``` is
    not put on ``$ContextPath``, so ``info`` and the like stay in ``Global```.
    """
    p = "ClientLibrary`Private`"
    level = "Infinity" if log_level is None else str(log_level)
    lines = [
        f"{p}$DEBUG = 1; {p}$INFO = 2; {p}$WARN = 3; {p}$ERROR = 4; {p}$NOTSET = Infinity;",
        f"{p}$LogLevel = {level};",
    ]
    for fn, constant in (("SetDebugLogLevel", "$DEBUG"), ("SetInfoLogLevel", "$INFO"),
                         ("SetWarnLogLevel", "$WARN"), ("SetErrorLogLevel", "$ERROR")):
        body = "Null" if log_level is None else f"({p}$LogLevel = {p}{constant};)"
        lines.append(f"ClientLibrary`{fn}[] := {body};")
    lines.append(f"ClientLibrary`DisableKernelLogging[] := ({p}$LogLevel = Infinity;);")
    lines.append("ClientLibrary`disconnect[] := Quit[];")
    lines.append("Null")
    return "\n".join(lines)


# ------------------------------------------------------------ the door


class Door:
    """The ZeroMQ end: read requests, evaluate them on a backend, reply."""

    def __init__(self, args: KernelArgs, *, remote_pid: bool = False) -> None:
        self.args = args
        self.remote_pid = remote_pid  # evaluate $ProcessID as this process's id
        self.context = zmq.Context()
        self.requests = self.context.socket(zmq.PULL)
        self.replies = self.context.socket(zmq.PUSH)
        self.logs: Any = None
        self.requests.connect(args.request_url)
        self.replies.connect(args.reply_url)
        if args.log_url is not None:
            self.logs = self.context.socket(zmq.PUB)
            self.logs.connect(args.log_url)
        self.level: float = args.log_level if args.log_level is not None else float("inf")
        self._log_lock = threading.Lock()
        self.backend: Backend | None = None
        self.ready = threading.Event()

    def send_ok(self) -> None:
        self.replies.send(b"OK")

    def kernel_log(self, level: int, text: str) -> None:
        """Send one log line to wolframclient's logger (if it asked for them)."""
        if self.logs is None or level < self.level:
            return
        line = json.dumps({"msg": text, "level": level}, separators=(",", ":"))
        with self._log_lock:
            try:
                self.logs.send(line.encode("latin-1", "replace"), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    def set_backend(self, backend: Backend) -> None:
        self.backend = backend
        self.ready.set()

    def run(self) -> int:
        """Serve requests until ``Quit[]``; return the exit code."""
        while True:
            payload = self.requests.recv(copy=True)
            assert isinstance(payload, bytes)
            code = self.handle(payload)
            if code is not None:
                return code

    def handle(self, payload: bytes) -> int | None:
        """Answer one request; return an exit code to stop instead."""
        try:
            expr = wxf.loads(payload)
        except Exception as exc:  # bad bytes: answer, as a kernel would, with $Failed
            log.warning("bad request: %s", exc)
            outcome = Outcome(WLSymbol("$Failed"), [("LinkServer", "badwxf", str(exc))])
            self.replies.send(evaluation_data(outcome))
            return None
        code = _quit_code(expr)
        if code is not None:
            log.info("Quit[] asked: exiting with %d", code)
            return code
        self.ready.wait()
        backend = self.backend
        assert backend is not None
        if self.remote_pid and b"ProcessID" in payload:
            # On a server's kernel, $ProcessID is this process's id (wolframclient
            # compares it with the pid of the process it started).
            expr = WLFunction(
                WLSymbol("Block"),
                [WLFunction(WLSymbol("Set"), WLSymbol("$ProcessID"), os.getpid())],
                expr,
            )
        start = time.perf_counter()
        outcome = backend.evaluate(expr)
        self.replies.send(evaluation_data(outcome, time.perf_counter() - start))
        return None


# ------------------------------------------------------------ process plumbing


def _quiet(log_file: str | None) -> None:
    """Send stdout and stderr to /dev/null (or the log file); log there with --log-file."""
    sys.stdout.flush()
    sys.stderr.flush()
    if log_file:
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    else:
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    root = logging.getLogger()
    if log_file:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    else:
        root.addHandler(logging.NullHandler())
        root.setLevel(logging.CRITICAL + 1)


def _exit(code: int) -> NoReturn:
    """Leave now, from any thread: nothing left to say to anyone."""
    logging.shutdown()
    os._exit(code if 0 <= code < 256 else 1)


def watch_parent(poll: float = PARENT_POLL) -> threading.Thread | None:
    """Exit the process when its parent dies (its parent pid changes)."""
    parent = os.getppid()
    if parent <= 1:
        return None

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                log.info("parent %d died: exiting", parent)
                _exit(0)

    thread = threading.Thread(target=watch, name="linkserver-kernel-parent", daemon=True)
    thread.start()
    return thread


def _serve_door(door: Door) -> None:
    try:
        code = door.run()
    except BaseException:
        log.exception("the door failed")
        code = 1
    _exit(code)


def _run_local(door: Door, args: KernelArgs) -> int:
    """Evaluate in this process, with Mathics3, in the door's thread."""
    thread = threading.Thread(target=_serve_door, args=(door,), name="linkserver-kernel-door",
                              daemon=True)
    thread.start()  # a Quit[] is obeyed even while Mathics3 loads
    try:
        from ._wolframclient_local import DirectKernel

        backend = LocalBackend(DirectKernel(), on_side=door.kernel_log)
        _define_client_library(backend, args)
    except BaseException:
        log.exception("the local kernel did not start")
        return EXIT_STARTUP_FAILED
    door.set_backend(backend)
    thread.join()  # the door exits the process
    return 0


def _define_client_library(backend: Backend, args: KernelArgs) -> None:
    text = client_library_setup(args.log_level)
    backend.evaluate(WLFunction(WLSymbol("ToExpression"), text))


def _run_remote(door: Door, args: KernelArgs) -> int:
    """Evaluate on a kernel of a running linkserver."""
    from ..client import Client

    assert args.server is not None
    try:
        client = Client(args.server, pool=args.pool)
    except (LinkError, OSError) as exc:
        log.error("cannot reach the linkserver at %s: %s", args.server, exc)
        return EXIT_STARTUP_FAILED
    backend = PacketBackend(client.link, on_side=door.kernel_log)
    try:
        _define_client_library(backend, args)
    except LinkError as exc:
        log.error("the linkserver at %s failed: %s", args.server, exc)
        return EXIT_STARTUP_FAILED
    door.set_backend(backend)
    door.send_ok()
    try:
        return door.run()
    except LinkError as exc:
        log.error("the link to %s failed: %s", args.server, exc)
        return EXIT_LINK_FAILED
    finally:
        try:
            client.close()
        except (LinkError, OSError):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """The ``linkserver-kernel`` console script (wolframclient starts it)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except ValueError as exc:
        print(f"linkserver-kernel: {exc}", file=sys.stderr)  # asked: run by hand
        return EXIT_USAGE
    _quiet(args.log_file)
    watch_parent()
    log.info("linkserver-kernel pid %d: %s", os.getpid(), " ".join(argv))
    door = Door(args, remote_pid=args.server is not None)
    try:
        if args.server is not None:
            code = _run_remote(door, args)
        else:
            door.send_ok()  # before Mathics3 loads: requests wait in the queue
            code = _run_local(door, args)
    except BaseException:
        log.exception("linkserver-kernel failed")
        code = 1
    _exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
