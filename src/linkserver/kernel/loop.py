"""The packet loop every kernel backend shares: link plumbing, request serials, aborts.

A kernel (docs/protocol.md §8, DESIGN.md "Kernels") connects to the server's
kernel link, announces itself with ``KernelReady[<|"id" -> ..., "pid" -> ...,
"backend" -> ..., "version" -> ...|>]`` and answers one request packet at a
time until it is told to stop. This module holds what does not depend on
what evaluates: :class:`KernelLoop` (sending packets and ``KernelReady``,
taking requests off the link and numbering them, urgent messages, aiming
ABORT and TERMINATE at the right request, the loop of
:meth:`KernelLoop.serve_link`, dispatching a request to its packet),
:func:`kernel_error`, :func:`serve_kernel` (connect, serve, close) and the
command-line arguments every backend takes (:func:`kernel_parser`).

The backends (:mod:`.mathics`, :mod:`.wolfram`) add the evaluating: what
each request packet does, and what stopping the request in hand means --
Mathics3 is stopped cooperatively, then by SIGUSR1; a Wolfram Engine is
terminated and restarted. They do it through the hook methods of
:class:`KernelLoop`.

Theory of operation
-------------------
The *main thread* reads requests and serves them. It reads the link itself
while it waits (:class:`.wire.KernelWire`); while it computes for longer than
a moment, the wire's *watcher thread* reads instead and calls
:meth:`KernelLoop._on_message` for urgent messages (backends may add
threads of their own: a watchdog, an engine's controller).

Requests are numbered (``_serial``) at the moment the main thread takes a
payload off the wire's queue, under ``_lock``; the thread that reads puts
payloads on that queue and delivers urgent messages in the order they came,
so an urgent message read after a payload finds it queued. Whoever handles an
urgent message therefore always knows whether a request is in hand
(``_busy``) and which one, and an ABORT is aimed precisely:

- at the request in hand, if there is one;
- else at the next request, if one has already arrived and waits in the
  link's queue (the abort overtook the kernel, not the request);
- else nowhere: the kernel is idle, the answer it aimed at has already gone,
  and aborting a later request would be wrong. (To abort a request you have
  just put, flush the link before sending ABORT: urgent messages overtake
  unsent expressions, docs/protocol.md §5.)

A stop is recorded as ``_stop_serial`` (the request that must stop) and
``_stop_reason``; the backend checks them while it serves that request. A
link that ends (closed or broken) calls the wire's end callback, which stops
the request in hand as TERMINATE does; TERMINATE also wakes the main
thread's wait for the next request. Either ends the loop with
:class:`KernelExit`.

Preemptive requests (docs/protocol.md §8.9) come from the server as
``LinkServer`Preemptive[n, EvaluatePacket[e]]``, n a tag; every packet of
their answer is wrapped as ``LinkServer`PreemptiveAnswer[n, packet]``
(:meth:`KernelLoop._put` does it while ``_preempt_tag`` is set), so that the
server can route it to the link that asked. One taken off the link between
requests is served as an ordinary request (numbered, time-limited), except
that a plain ABORT is never aimed at it: an ABORT is the running ordinary
request's, and the server stops preemptive request n with PREEMPT_ABORT n. A
backend that can preempt (:mod:`.mathics`) also serves them *nested*, inside
a running evaluation, when the urgent message PREEMPT sets
``_preempt_pending`` (:meth:`KernelLoop._preempt_hint` tells the backend);
a nested one has its own stop (``_preempt_stop``), so that an ABORT for the
paused request waits for it and PREEMPT_ABORT does not reach the paused one.
Preemptive requests are never nested in one another. Tags are taken in
order, so a PREEMPT_ABORT for a tag not yet taken is remembered
(``_preempt_aborted``) and answered ``$Aborted`` when it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from wolframclient.language.expression import WLFunction, WLSymbol

from .. import wxf
from ..errors import LimitError, LinkError, WXFDecodeError, WXFEncodeError
from ..protocol import LinkMode, UrgentMessage
from . import redial, sandbox
from .wire import KernelWire, connect_wire
from ..protocol.packets import (
    CALL_ANSWER,
    INSTALL,
    UNINSTALL,
    EnterExpressionPacket,
    EnterTextPacket,
    PREEMPTIVE,
    PREEMPTIVE_ANSWER,
    EvaluatePacket,
    MessagePacket,
    Packet,
    ReturnPacket,
    TextPacket,
    packet_from_expr,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "EXIT_GUARDIAN_GONE",
    "EXIT_OK",
    "WATCH_PID_ENV",
    "EXIT_STARTUP_FAILED",
    "KERNEL_ERROR",
    "KernelExit",
    "KernelLoop",
    "KernelPolicy",
    "Stop",
    "bad_request",
    "configure_logging",
    "is_preemptive",
    "kernel_error",
    "kernel_parser",
    "serve_kernel",
    "short_repr",
]

log = logging.getLogger("linkserver.kernel")

#: The head of the answer to a request the kernel could not serve:
#: ``linkserver`KernelError["code", "message"]``.
KERNEL_ERROR = "linkserver`KernelError"

#: Default seconds to connect to the server.
CONNECT_TIMEOUT = 30.0

# Exit codes of the process (backends add their own).
EXIT_OK = 0  # TERMINATE, the link closed
EXIT_STARTUP_FAILED = 3  # could not start, or could not reach the server (as cli.py)
EXIT_GUARDIAN_GONE = 4  # the process this kernel lives for (its Ray actor) ended

#: The environment variable naming a process whose end must end this kernel too:
#: a kernel forked on a cluster node for a Ray actor is not that actor's child,
#: so nothing else would stop it when Ray kills the actor (see watch_guardian).
WATCH_PID_ENV = "LINKSERVER_WATCH_PID"
#: The environment variable that pins the certificate of a kernel endpoint that speaks
#: TLS (``sha256:<hex>``): a kernel placed on Ray by a server with TLS dials its
#: endpoint over TLS and accepts only that certificate (docs/protocol.md §8.12).
FINGERPRINT_ENV = "LINKSERVER_KERNEL_FINGERPRINT"

# Field names of each packet class, in order (see KernelLoop._put).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}

# How the server's LinkServer`Preemptive[n, packet] starts on the wire: no
# decoding to recognise one.
_PREEMPTIVE_PREFIX = wxf.dumps(WLFunction(WLSymbol(PREEMPTIVE), 0, 0))[:-4]
_PREEMPTIVE_ANSWER = WLSymbol(PREEMPTIVE_ANSWER)
_ABORTED = WLSymbol("$Aborted")
# Requests about installed functions (docs/protocol.md §8.10).
_INSTALL_HEADS = frozenset({INSTALL, UNINSTALL, CALL_ANSWER})


def is_preemptive(payload: bytes) -> bool:
    """True if ``payload`` is the server's ``LinkServer`Preemptive[n, packet]``."""
    return payload.startswith(_PREEMPTIVE_PREFIX)


class Stop(enum.Enum):
    """Why the request in hand must stop."""

    ABORT = "abort"  # an ABORT (or INTERRUPT) message, or SIGINT
    TIMEOUT = "timeout"  # the --eval-timeout limit (as the backend enforces it)
    TERMINATE = "terminate"  # a TERMINATE message, or the link ended: answer, then exit


class KernelExit(BaseException):
    """Unwind the loop and end the kernel with ``code``.

    A BaseException, so that code that catches ``Exception`` (an evaluator's
    own) does not swallow it.
    """

    def __init__(self, code: int = EXIT_OK) -> None:
        super().__init__(code)
        self.code = code


@dataclasses.dataclass(frozen=True, slots=True)
class KernelPolicy:
    """How a kernel may be used, as its command line says (``KernelSpec.policy_options``).

    Attributes:
        mode: ``"shared"`` (every client of a pool shares this kernel) or ``"pool"``.
        quit_allowed: who may end a shared kernel with ``Quit[]``: ``"nobody"`` or
            ``"anyone"``. The kernel cannot tell who asked, so an admin stops a
            shared kernel by stopping the server (``$KeepRunning = False``).
        scratch: the kernel's scratch directory when it runs sandboxed
            (``--sandbox DIR``, :mod:`.sandbox`): the only place it may write.
    """

    mode: str = "pool"
    quit_allowed: str = "nobody"
    scratch: str | None = None

    @property
    def refuses_quit(self) -> bool:
        """True if ``Quit[]`` must be refused rather than end the kernel."""
        return self.mode == "shared" and self.quit_allowed != "anyone"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> KernelPolicy:
        """The policy of a parsed :func:`kernel_parser` (or :func:`policy_parser`) command line."""
        scratch = os.path.realpath(args.sandbox) if args.sandbox else None
        return cls(mode=args.mode, quit_allowed=args.quit_allowed, scratch=scratch)


#: What a kernel says when a shared kernel refuses ``Quit[]`` (``LinkServer::noquit``).
QUIT_REFUSED = (
    "Quit[] and Exit[] would end the kernel every client of this server shares, so they are "
    "refused; an admin stops it by stopping the server ($KeepRunning = False, or SIGTERM)"
)
#: What a client's own kernel says as ``Quit[]`` ends it (``LinkServer::quit``).
QUIT_ENDS = (
    "Quit[] ended this client's kernel: every definition made in it is gone, and the next "
    "request starts a fresh kernel"
)


def _add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", default="pool", choices=["shared", "pool"],
        help="shared: every client of the pool shares this kernel (default: %(default)s)",
    )
    parser.add_argument(
        "--quit-allowed", default="nobody", choices=["nobody", "anyone"],
        help="who may end a shared kernel with Quit[] (default: %(default)s)",
    )
    parser.add_argument(
        "--sandbox", default=None, metavar="DIR",
        help="confine the kernel by the operating system: write only beneath DIR, "
        "run no programs, open no network connections (default: not confined)",
    )


def policy_parser() -> argparse.ArgumentParser:
    """The policy options alone: what a kernel template passes on to a kernel it forks."""
    parser = argparse.ArgumentParser(prog="kernel policy", add_help=False)
    _add_policy_arguments(parser)
    return parser


def kernel_error(code: str, message: str) -> Any:
    """Return the answer expression ``linkserver`KernelError[code, message]``."""
    return WLFunction(WLSymbol(KERNEL_ERROR), code, message)


def short_repr(expr: Any) -> str:
    """Return ``repr(expr)``, cut to 200 characters."""
    text = repr(expr)
    if len(text) > 200:
        text = text[:197] + "..."
    return text


def bad_request(expr: Any) -> Any:
    """Return the answer to ``expr``, which is not a request a kernel serves."""
    return kernel_error(
        "bad-request",
        f"{short_repr(expr)} is not a request this kernel serves; send EvaluatePacket[expr], "
        f'EnterTextPacket["text"] or EnterExpressionPacket[expr]',
    )


class KernelLoop:
    """The packet loop of a kernel, without the evaluating.

    Subclasses set :attr:`backend`, implement :meth:`_version`,
    :meth:`_evaluate_packet`, :meth:`_enter_text` and
    :meth:`_enter_expression`, and may override the hooks
    :meth:`_start_serving`, :meth:`_end_serving`, :meth:`_before_request`,
    :meth:`_deadline_set`, :meth:`_finish_request`, :meth:`_stop_in_hand`,
    :meth:`_stop_requested` and :meth:`_put_expr`; a backend that can
    preempt also :meth:`_preempt_hint`, :meth:`_stop_nested_preemptive` and
    :meth:`_preemptive_started`, and calls :meth:`_serve_preemptive` with
    ``nested=True`` at its safe points.
    """

    #: The ``"backend"`` announced in ``KernelReady``.
    backend = ""

    def __init__(self) -> None:
        # Request state, shared with the thread reading the wire (see "Theory of
        # operation"); _lock guards the decisions made on it. No thread is
        # started here: a prepared kernel may be forked.
        self._lock = threading.Lock()
        self._serial = 0  # requests taken so far; the one in hand if _busy
        self._busy = False
        self._stop_serial = -1  # the request that must stop ...
        self._stop_reason: Stop | None = None  # ... and why
        self._terminating = False
        self._deadline: float | None = None  # of the request in hand (monotonic)
        # Preemptive requests (see "Theory of operation"); written under _lock.
        self._taken_preemptive = False  # the request in hand is a preemptive one
        self._preempt_tag: int | None = None  # tag of the preemptive request in hand
        self._preempt_nested = False  # ... served inside another request's evaluation
        self._preempt_stop: Stop | None = None  # the nested one must stop, and why
        self._preempt_pending = False  # PREEMPT came: look on the link at a safe point
        self._preempt_last = 0  # the last tag taken
        self._preempt_aborted: set[int] = set()  # tags aborted before they were taken

        self._link: KernelWire | None = None
        self._eval_timeout: float | None = None
        self._debug = False
        #: how this kernel may be used; set before serve_link (serve_kernel does)
        self.policy = KernelPolicy()

    # ------------------------------------------------------------ serving

    def serve_link(
        self, link: KernelWire, kernel_id: str = "", *, eval_timeout: float | None = None
    ) -> int:
        """Serve requests on an open link until TERMINATE or the link ends.

        Sends ``KernelReady`` first. The backend's docstring says what more
        it does (signals, starting an engine).

        Args:
            link: an open link to the server (:func:`.wire.connect_wire`).
            kernel_id: the id to announce in ``KernelReady``.
            eval_timeout: seconds an evaluation may run; None for no limit.

        Returns:
            The process exit code. The link is left for the caller to close.

        Raises:
            RuntimeError: this kernel is already serving a link.
        """
        if self._link is not None:
            raise RuntimeError("this kernel is already serving a link")
        self._start_serving()
        self._link = link
        self._eval_timeout = eval_timeout if eval_timeout and eval_timeout > 0 else None
        self._terminating = False
        self._debug = log.isEnabledFor(logging.DEBUG)
        link.start(self._on_message, self._link_ended)
        log.info("kernel.start %s pid %d on %s", kernel_id, os.getpid(), link.name)
        try:
            self._put_ready(kernel_id)
            while True:
                self._before_request()
                payload = self._next_request()
                try:
                    self._serve_request(payload)
                finally:
                    self._finish_request()
        except KernelExit as end:
            log.info("kernel.exit %s (code %d)", kernel_id, end.code)
            return end.code
        finally:
            try:
                self._end_serving()
            finally:
                self._link = None

    def _start_serving(self) -> None:
        """Hook: called by :meth:`serve_link` before it takes the link."""

    def _end_serving(self) -> None:
        """Hook: called by :meth:`serve_link` when it returns, before it drops the link."""

    def _sandboxed(self, scratch: str) -> None:
        """Hook: the process is now sandboxed to ``scratch`` (say so in words, point temporary
        files there); called by :func:`serve_kernel` before :meth:`serve_link`."""

    def _before_request(self) -> None:
        """Hook: called before each request is waited for.

        Raises:
            KernelExit: the kernel must end instead.
        """

    def _version(self) -> str:
        """The ``"version"`` announced in ``KernelReady``."""
        raise NotImplementedError

    def _put_ready(self, kernel_id: str) -> None:
        ready = {
            "id": kernel_id,
            "pid": os.getpid(),
            "backend": self.backend,
            "version": self._version(),
        }
        self._put_expr(WLFunction(WLSymbol("KernelReady"), ready))

    def _put_expr(self, expr: Any) -> None:
        """Send one expression.

        Raises:
            KernelExit: the link is closed or broken.
            WXFEncodeError: ``expr`` has no WXF form.
            LimitError: ``expr`` is larger than a frame may be.
        """
        link = self._link
        assert link is not None
        try:
            link.put(expr)
        except (WXFEncodeError, LimitError):
            raise  # this answer cannot travel; the link is fine (see _put)
        except LinkError as exc:
            raise KernelExit(EXIT_OK) from exc

    def _put(self, packet: Packet) -> None:
        """Send one packet; an answer that cannot travel is replaced by an error.

        Raises:
            KernelExit: the link is closed or broken.
        """
        # Not dataclasses.astuple(): it deep-copies the whole result (0.57 s
        # for a 20k-part list here); fields are shallow.
        cls = type(packet)
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(packet))
        expr = WLFunction(WLSymbol(packet.head), *[getattr(packet, name) for name in names])
        tag = self._preempt_tag
        if tag is not None:
            expr = WLFunction(_PREEMPTIVE_ANSWER, tag, expr)
        try:
            self._put_expr(expr)
        except (WXFEncodeError, LimitError) as exc:
            # The answer cannot travel (no WXF form, above the frame limit):
            # say so in the same kind of packet.
            log.warning("! kernel answer not sendable: %s", exc)
            first = dataclasses.fields(packet)[0].name  # every answer packet has one
            self._put(dataclasses.replace(packet, **{first: kernel_error("unsendable", str(exc))}))

    # ------------------------------------------------- taking requests

    def _taken(self, payload: bytes) -> None:
        # With _lock held, in whichever thread took the payload.
        self._serial += 1
        self._busy = True
        self._taken_preemptive = payload.startswith(_PREEMPTIVE_PREFIX)

    def _next_request(self) -> bytes:
        """Return the next request's payload, numbering it (see theory of operation).

        Raises:
            KernelExit: TERMINATE, or the link ended.
        """
        link = self._link
        assert link is not None
        while True:
            with self._lock:
                if self._terminating:
                    raise KernelExit(EXIT_OK)
                payload = link.take_nowait()
                if payload is not None:
                    self._taken(payload)
                    return payload
            if link.error is not None:
                log.info("kernel link ended: %s", link.error)
                raise KernelExit(EXIT_OK)
            link.wait(self._request_or_end)

    def _request_or_end(self) -> bool:
        link = self._link
        return link is None or link.ready() or self._terminating or link.error is not None

    def _finish_request(self) -> None:
        """Hook (call it when overriding): the request in hand has been answered."""
        self._deadline = None
        with self._lock:
            self._busy = False
            self._taken_preemptive = False

    # ------------------------------------------------- urgent messages

    def _link_ended(self, error: LinkError) -> None:
        """The wire's end callback: a link that ends stops the request in hand and the kernel."""
        log.info("kernel link ended: %s", error)
        self._request_stop(Stop.TERMINATE)

    def _on_message(self, message: UrgentMessage | int, argument: int) -> None:
        """Handle an urgent message (whichever thread reads the wire: flags and futures only)."""
        if message in (UrgentMessage.ABORT, UrgentMessage.INTERRUPT):
            # There is no interrupt menu (MenuPacket) here: an interrupt
            # aborts, the choice most users make from that menu.
            self._request_stop(Stop.ABORT)
        elif message == UrgentMessage.TERMINATE:
            self._request_stop(Stop.TERMINATE)
        elif message == UrgentMessage.PREEMPT:
            self._preempt_pending = True  # before the hint: see _preempt_hint
            self._preempt_hint()
        elif message == UrgentMessage.PREEMPT_ABORT:
            self._stop_preemptive(argument, Stop.ABORT)
        elif self._debug:
            log.debug("< kernel ignores urgent message %r %d", message, argument)

    def _request_stop(self, reason: Stop, serial: int | None = None) -> None:
        """Stop the request in hand, or the next one if it is queued already.

        Args:
            reason: why.
            serial: stop only if this request is in hand (for alarms).
        """
        link = self._link
        if link is None:
            return
        with self._lock:
            if reason is Stop.TERMINATE:
                self._terminating = True
            # A plain ABORT is never the preemptive request's (see theory of operation).
            plain = serial is None and reason is Stop.ABORT
            if self._busy and not (plain and self._taken_preemptive):
                target = self._serial
            elif serial is None and link.ready():
                target = self._serial + 1
            else:
                target = -1
            if target >= 0 and (serial is None or serial == target):
                if self._stop_serial != target or reason is Stop.TERMINATE:
                    self._stop_reason = reason
                    self._stop_serial = target
                if target == self._serial:
                    self._stop_in_hand(target)
            elif self._debug:
                log.debug("= kernel idle: %s ignored", reason.value)
            if reason is Stop.TERMINATE and self._preempt_nested:
                self._preempt_stop = reason
                self._stop_nested_preemptive()
        self._stop_requested()
        link.wake()  # a wait of the main thread looks again

    def _stop_in_hand(self, serial: int) -> None:
        """Hook, with ``_lock`` held: the request in hand (``serial``) must stop.

        Called after ``_stop_serial`` and ``_stop_reason`` are written; the
        main thread's wait on the wire is woken once the lock is released.
        """

    def _stop_requested(self) -> None:
        """Hook, without the lock: a stop was asked (aimed somewhere or not)."""

    # ------------------------------------------------- preemptive requests

    def _preempt_hint(self) -> None:
        """Hook (the thread reading the wire): a preemptive request waits on the link.

        ``_preempt_pending`` has just been set. A backend that can preempt
        makes the running evaluation look at its next safe point; the
        default does nothing: the request waits first in line on the link.
        """

    def _stop_preemptive(self, tag: int, reason: Stop) -> None:
        """Stop preemptive request ``tag``: nested, in hand as a request, or still waiting."""
        serial = None
        with self._lock:
            if self._preempt_tag == tag:
                if self._preempt_nested:
                    if self._preempt_stop is None or reason is Stop.TERMINATE:
                        self._preempt_stop = reason
                    self._stop_nested_preemptive()
                else:
                    serial = self._serial
            elif tag > self._preempt_last:
                self._preempt_aborted.add(tag)  # answered $Aborted when taken
        if serial is not None:
            self._request_stop(reason, serial=serial)  # which wakes the wire
        elif self._link is not None:
            self._link.wake()

    def _stop_nested_preemptive(self) -> None:
        """Hook, with ``_lock`` held: the nested preemptive request must stop.

        Called after ``_preempt_stop`` is written; the wire is woken as for
        :meth:`_stop_in_hand`.
        """

    def _serve_preemptive(self, expr: Any, *, nested: bool) -> None:
        """Serve ``LinkServer`Preemptive[n, EvaluatePacket[e]]``, its answers tagged n.

        Args:
            expr: the decoded request.
            nested: served inside the evaluation of the request in hand (the
                backend has set itself up for that), not as a request of its own.
        """
        args: tuple[Any, ...] = tuple(getattr(expr, "args", ()))
        if len(args) != 2 or not isinstance(args[0], int) or isinstance(args[0], bool):
            self._put(ReturnPacket(bad_request(expr)))  # untagged: nobody to route it to
            return
        tag, inner = args
        with self._lock:
            aborted = tag in self._preempt_aborted
            self._preempt_aborted = {t for t in self._preempt_aborted if t > tag}
            self._preempt_last = max(self._preempt_last, tag)
            self._preempt_tag = tag
            self._preempt_nested = nested
            self._preempt_stop = None
        try:
            if self._debug:
                log.debug("< kernel preemptive request %d%s", tag, " (nested)" if nested else "")
            packet = packet_from_expr(inner)
            if aborted:
                self._put(ReturnPacket(_ABORTED))
            elif isinstance(packet, EvaluatePacket):
                self._preemptive_started(tag, nested)
                self._evaluate_packet(packet.expr)
            else:
                self._put(ReturnPacket(bad_request(inner)))
        finally:
            with self._lock:
                self._preempt_tag = None
                self._preempt_nested = False
                self._preempt_stop = None

    def _preemptive_started(self, tag: int, nested: bool) -> None:
        """Hook: preemptive request ``tag`` is about to be evaluated."""

    # -------------------------------------------------------- requests

    def _serve_request(self, payload: bytes) -> None:
        try:
            expr = wxf.loads(payload)
        except WXFDecodeError as exc:
            self._put(ReturnPacket(kernel_error("bad-wxf", str(exc))))
            return
        if self._debug:
            log.debug("< kernel request %d: %.200r", self._serial, expr)
        if self._eval_timeout is not None:
            self._deadline = time.monotonic() + self._eval_timeout
            self._deadline_set()
        if self._taken_preemptive:
            self._serve_preemptive(expr, nested=False)
            return
        head = getattr(getattr(expr, "head", None), "name", None)
        if head in _INSTALL_HEADS:
            if head != CALL_ANSWER:
                self._install_request(expr)
            # else the answer to a call this kernel gave up on (it was aborted): dropped
            return
        packet = packet_from_expr(expr)
        if isinstance(packet, EvaluatePacket):
            self._evaluate_packet(packet.expr)
        elif isinstance(packet, EnterTextPacket) and isinstance(packet.text, str):
            self._enter_text(packet.text)
        elif isinstance(packet, EnterExpressionPacket):
            self._enter_expression(packet.expr)
        else:
            self._put(ReturnPacket(bad_request(expr)))

    def _install_request(self, expr: Any) -> None:
        """Serve ``LinkServer`Install[owner, "name", index]`` or ``LinkServer`Uninstall[owner, "name"]``.

        The default refuses, in the shape of docs/protocol.md §8.3: a backend
        that can call the functions clients install (docs/protocol.md §8.10)
        overrides it.
        """
        self._put(MessagePacket(WLSymbol("LinkServer"), "noinstall"))
        self._put(TextPacket(
            f"LinkServer::noinstall: the {self.backend or 'this'} kernel cannot call functions "
            "installed by clients; use a server with Mathics3 kernels for that"
        ))
        self._put(ReturnPacket(WLSymbol("$Failed")))

    def _deadline_set(self) -> None:
        """Hook: ``_deadline`` of the request in hand has just been set."""

    def _evaluate_packet(self, expr: Any) -> None:
        raise NotImplementedError

    def _enter_text(self, text: str) -> None:
        raise NotImplementedError

    def _enter_expression(self, expr: Any) -> None:
        raise NotImplementedError


# ------------------------------------------------------------ entry points


def watch_guardian(pid: int) -> threading.Thread:
    """End this process as soon as process ``pid`` ends (a daemon thread watches it).

    A kernel placed by Ray runs for one actor; when Ray kills that actor or
    loses its node the kernel must not live on, unwatched and still holding
    its client's state. A pidfd wakes the thread the moment ``pid`` exits;
    where there is none, it polls twice a second. The kernel then exits at
    once: its socket closes, and the server answers the request in hand.
    """

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            os._exit(EXIT_GUARDIAN_GONE)
        except (AttributeError, OSError):  # no pidfds here: poll
            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    os._exit(EXIT_GUARDIAN_GONE)
                except PermissionError:
                    pass  # it exists, under another user
                time.sleep(0.5)
        select.select([fd], [], [])
        os._exit(EXIT_GUARDIAN_GONE)

    thread = threading.Thread(target=watch, name="linkserver-guardian", daemon=True)
    thread.start()
    return thread


def serve_kernel(
    kernel: KernelLoop,
    link_name: str,
    kernel_id: str,
    *,
    eval_timeout: float | None,
    connect_timeout: float,
    policy: KernelPolicy | None = None,
) -> int:
    """Connect ``kernel`` to ``link_name``, serve, and close the link.

    ``policy`` (the default: a pool kernel's) is set on the kernel first. A
    kernel given a rendezvous in ``$LINKSERVER_REDIAL`` (a kept kernel of a Ray
    pool, :mod:`.redial`) keeps its session when the server's end of its link
    goes, and serves the server its actor names next.

    Returns:
        The exit code of :meth:`KernelLoop.serve_link`, or
        :data:`EXIT_STARTUP_FAILED` if the server could not be reached.
    """
    if policy is not None:
        kernel.policy = policy
    scratch = policy.scratch if policy is not None else None
    if scratch is not None:
        # Landlock first, while the process has one thread (serving starts
        # the wire's watcher); seccomp, which reaches every thread, once connected.
        try:
            sandbox.enter(scratch, _tcp_port(link_name))
        except OSError as exc:
            log.error("kernel.sandbox.failed: %s", exc.strerror or exc)
            return EXIT_STARTUP_FAILED
    guardian = os.environ.get(WATCH_PID_ENV)
    if guardian:
        watch_guardian(int(guardian))
    # A kept kernel of a Ray pool redials when its server goes (kernel/redial.py).
    rendezvous = os.environ.get(redial.REDIAL_ENV)
    key: str | None = None  # the first time: $LINKSERVER_KEY
    pinned = os.environ.get(FINGERPRINT_ENV) or None
    while True:
        try:
            link = connect_wire(link_name, connect_timeout, mode=LinkMode.DIRECT, key=key,
                                tls=True if pinned else None, fingerprint=pinned)
        except LinkError as exc:
            log.error("kernel.connect.failed: %s", exc)
            return EXIT_STARTUP_FAILED
        try:
            if scratch is not None:
                try:
                    sandbox.confine_syscalls()
                except OSError as exc:
                    log.error("kernel.sandbox.failed: %s", exc.strerror or exc)
                    return EXIT_STARTUP_FAILED
                kernel._sandboxed(scratch)
                scratch = None  # confined once, for good
            code = kernel.serve_link(link, kernel_id, eval_timeout=eval_timeout)
            # Ended by the server's going, not by TERMINATE or Quit[] (the link is open then).
            gone = link.closed
        finally:
            try:
                link.close()  # polite and bounded; nothing to do on a link already ended
            except LinkError:
                pass
        endpoint = (redial.ask(rendezvous, int(guardian) if guardian else None)
                    if rendezvous and gone else None)
        if endpoint is None:
            return code
        log.info("kernel.redial %s to %s", kernel_id, endpoint.connect)
        link_name, key, pinned = endpoint.connect, endpoint.key, endpoint.fingerprint


def _tcp_port(link_name: str) -> int | None:
    """The server's TCP port in ``PORT@HOST`` (a sandboxed kernel may connect to it only)."""
    port, at, _host = link_name.partition("@")
    if at and port.isdigit():
        return int(port)
    return None


def kernel_parser(
    prog: str,
    description: str,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.ArgumentParser:
    """Return the command line every kernel takes; ``extra`` adds a backend's own.

    ``extra``'s arguments come after ``--connect`` and ``--kernel-id``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--connect", required=True, metavar="NAME",
        help="the link to connect to: PORT@HOST or unix:/path",
    )
    parser.add_argument(
        "--kernel-id", default="", metavar="ID",
        help="the id announced in KernelReady (default: empty)",
    )
    if extra is not None:
        extra(parser)
    _add_policy_arguments(parser)
    timeout = os.environ.get("LINKSERVER_EVAL_TIMEOUT")  # as cli.py: LINKSERVER_<OPTION>
    parser.add_argument(
        "--eval-timeout", type=float, default=float(timeout) if timeout else None,
        metavar="SECONDS",
        help="seconds an evaluation may run before it answers $Aborted; also "
        "LINKSERVER_EVAL_TIMEOUT (default: %(default)s, no limit)",
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=CONNECT_TIMEOUT, metavar="SECONDS",
        help="seconds to connect to the server (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level on stderr (default: %(default)s)",
    )
    return parser


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``, as a kernel process does (not the library)."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s kernel %(process)d %(levelname)s %(message)s",
    )
