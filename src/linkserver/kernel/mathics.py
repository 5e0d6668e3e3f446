"""The Mathics3 kernel process: one Mathics3 session serving packets over a link.

A kernel is its own OS process (docs/protocol.md §8, DESIGN.md "Kernels"). It
connects to the server's kernel link, announces itself with
``KernelReady[<|"id" -> ..., "pid" -> ..., "backend" -> "mathics",
"version" -> ...|>]``, then answers one request packet at a time until it is
told to stop::

    python -m linkserver.kernel.mathics --connect 31416@127.0.0.1 --kernel-id k1

What each packet gets back is specified in docs/protocol.md §8 (the table is
also below, in :class:`MathicsKernel`). Expressions are converted straight
to Mathics3 objects and back (:mod:`.mathics_exprs`); results that travel as
expressions are never formatted, since formatting costs more than the
evaluation of small inputs (NOTES.md: 1.3 ms against 85 µs).

Start-up is split for the zygote (:mod:`.zygote`): :func:`prepare` does the
slow part (Mathics3's builtins and the session: 3.5 s and 180 MB here, after
0.7 s of imports) and starts no thread, so a prepared process can fork;
:func:`serve` connects and runs the loop in the child. Processes, restarts
and limits (rlimit, kill) are the business of whoever starts kernels.

Theory of operation
-------------------
The packet loop, the numbering of requests and the aiming of ABORT are
:mod:`.loop`'s (see its theory of operation); what a request evaluates
to is :mod:`.evaluator`'s (:class:`.evaluator.MathicsEvaluator`, whose host
this kernel is). This module adds what stopping a request means for
Mathics3, and what only a loop with a link can do for an evaluation:
``Input[]``, calls of installed functions, ``Pause``. Three threads
meet here. The *main thread* reads requests and evaluates them; it reads the
link itself whenever it waits (for a request, for input or a call's answer,
during ``Pause``). The wire's *watcher thread* (:mod:`.wire`) reads the link
while an evaluation lasts, and calls :meth:`.loop.KernelLoop._on_message`
for urgent messages; the main thread does the same for those it reads. A
*watchdog thread* fires the per-evaluation time limit and escalates stops
that were not obeyed.

Stopping an evaluation is Mathics3's own cooperative mechanism first: the
flag ``Evaluation.stopped``, which every ``Expression.evaluate`` checks and
answers with ``TimeoutInterrupt``; the evaluation unwinds and the request is
answered with ``$Aborted`` (also when Mathics3's pattern matcher swallowed
the interrupt and the evaluation came back "normally"). Code that does not
come back to the evaluator (a long sympy computation) is then
interrupted the way Mathics3's own Ctrl-C handler does it: after
:data:`ABORT_GRACE` seconds the watchdog sends SIGUSR1 to the main thread,
whose handler raises an exception there if -- checked in the main thread
itself, so without a race -- that request's evaluation is still running.
Code stuck inside one C call cannot be interrupted by any of this; the
process manager's kill is the last resort.

The kernel ends on TERMINATE (after answering the request in hand with
``$Aborted``), when the link closes or breaks (the wire's end callback
stops a running evaluation, since nobody could read its answer) and on
``Quit[]``.

Safe points and preemptive requests
-----------------------------------
Mathics3 calls ``Evaluation.check_stopped()`` at every step of an evaluation
(each ``Expression.evaluate``, each rule tried by the pattern matcher, loop
iterations): these are the kernel's *safe points*. Our ``Evaluation``
(:class:`_KernelEvaluation`) reads its ``stopped`` flag there as Mathics3's
does -- one attribute test, nothing more while nothing is asked -- but the
flag only means "look now": :meth:`MathicsKernel.safe_point` then decides.
If the evaluation must stop it raises ``TimeoutInterrupt`` and leaves the flag
set, so that every later check raises too (as Mathics3's own flag does); if
a preemptive request waits (the urgent message PREEMPT, docs/protocol.md
§8.9, set ``_preempt_pending``), it is served there and then, and the paused
evaluation goes on. A preemptive evaluation uses a second ``Evaluation`` on
the same ``Definitions``: it sees and makes the same definitions, but its
Print and messages, recursion depth and stop flag are its own. Its stop is
``_preempt_stop`` (PREEMPT_ABORT, its own time limit, TERMINATE), never the
paused request's: an ABORT for the paused request waits until the
preemptive one is answered, and the SIGUSR1 escalation is held meanwhile.
The paused request's time limit is held too (time spent serving someone
else is not its evaluation time), as while it waits for ``Input``, where a
preemptive request is also served. ``Input`` inside a preemptive evaluation
reads ``EndOfFile``: only the paused request may talk with its client.

Every request gets exactly one answer (DESIGN.md "What nothing lost means"):
evaluation interrupts are caught and answered as Mathics3's top level answers
them, and anything else that goes wrong -- bad bytes, an unknown packet, an
exception inside Mathics3 -- is answered with
``linkserver`KernelError[code, message]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import errno
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from mathics.core.atoms import String
from mathics.core.interrupt import AbortInterrupt, TimeoutInterrupt
from mathics.core.symbols import Symbol
from mathics.core.systemsymbols import SymbolFailed
from wolframclient.language.expression import WLFunction, WLSymbol

from .. import wxf
from ..errors import LimitError, LinkError, WXFDecodeError, WXFEncodeError
from ..install import check_name, pack_arrays
from ..protocol.packets import (
    CALL_ANSWER,
    CALL_FAILED,
    INSTALL,
    KERNEL_CALL,
    UNINSTALL,
    EvaluatePacket,
    EnterExpressionPacket,
    EnterTextPacket,
    InputPacket,
    InputStringPacket,
    Packet,
    ReturnPacket,
    ReturnTextPacket,
    PREEMPTIVE,
    packet_from_expr,
)
from . import sandbox
from .evaluator import HardStop, Host, MathicsEvaluator, PacketOutput, install_call_rule
from .loop import (
    CONNECT_TIMEOUT,
    EXIT_OK,
    EXIT_STARTUP_FAILED,
    KERNEL_ERROR,
    KernelExit,
    KernelLoop,
    KernelPolicy,
    Stop,
    bad_request,
    configure_logging,
    is_preemptive,
    kernel_error,
    kernel_parser,
    serve_kernel,
    short_repr,
)
from .mathics_exprs import ConversionError, from_mathics
from .wl_builtins import Absorb

__all__ = [
    "ABORT_GRACE",
    "KERNEL_ERROR",
    "MathicsKernel",
    "kernel_error",
    "main",
    "prepare",
    "serve",
]

log = logging.getLogger("linkserver.kernel")

#: Seconds between asking an evaluation to stop (Mathics3's cooperative flag)
#: and interrupting it by signal. Every Mathics3 evaluation step checks the
#: flag, so only code outside the evaluator (sympy, a C call) waits this long.
ABORT_GRACE = 0.5

#: Longest wait of a Pause between two looks at TimeConstrained's flag (the
#: kernel's own stops and preemptive requests wake it at once).
_PAUSE_SLICE = 0.02

# Exit codes of the process (loop.py's EXIT_OK: TERMINATE, the link closed,
# Quit[] / Exit[]).
EXIT_CONNECT_FAILED = EXIT_STARTUP_FAILED  # could not reach the server (as cli.py)

SymbolEndOfFile = Symbol("System`EndOfFile")
_PREEMPTIVE = WLSymbol(PREEMPTIVE)
_CALL_ANSWER = WLSymbol(CALL_ANSWER)
_CALL_FAILED = WLSymbol(CALL_FAILED)
_KERNEL_CALL = WLSymbol(KERNEL_CALL)
_RETURN_PACKET = WLSymbol("ReturnPacket")
#: The builtin an installed function's definition calls (docs/protocol.md §8.10).
_CALL = "LinkServer`Call"
_CALL_ARGS = WLSymbol("LinkServer`Private`args")

# Why the request in hand must stop (loop.py).
_Stop = Stop


class _Alarm(NamedTuple):
    serial: int  # the request it is for (the tag, for a nested preemptive request)
    when: float  # time.monotonic() deadline
    kind: str  # "timeout" or "escalate"; "preempt-timeout" or "preempt-escalate"


_HardStop = HardStop  # raised by the SIGUSR1/SIGINT handlers (evaluator.py)


#: The link ended, TERMINATE was asked or Quit[] evaluated: unwind and exit
#: (a BaseException, as :class:`_HardStop`).
_LinkGone = KernelExit


# ------------------------------------------------------------ entry points

_prepared: MathicsKernel | None = None


def prepare() -> MathicsKernel:
    """Load Mathics3's builtins and create the session, once per process.

    Slow (seconds) and thread-free, so that a zygote can call it and fork
    children that only call :func:`serve`.

    Returns:
        The process's kernel, ready to serve.
    """
    global _prepared
    if _prepared is None:
        _prepared = MathicsKernel()
    return _prepared


def serve(
    link_name: str,
    kernel_id: str = "",
    *,
    eval_timeout: float | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    policy: KernelPolicy | None = None,
) -> int:
    """Connect to ``link_name`` and serve requests until told to stop.

    Calls :func:`prepare` if it has not been called yet.

    Args:
        link_name: the server's kernel link, ``"PORT@HOST"`` or ``"unix:/path"``.
        kernel_id: the id to announce in ``KernelReady``.
        eval_timeout: seconds an evaluation may run before it answers
            ``$Aborted`` by itself; None for no limit.
        connect_timeout: seconds to connect and finish the handshake.
        policy: how the kernel may be used (a shared kernel refuses ``Quit[]``).

    Returns:
        The exit code for the process: 0 after TERMINATE, a closed link or
        ``Quit[]``; ``Quit[n]``'s n; 3 if the server could not be reached.
    """
    kernel = prepare()
    return serve_kernel(
        kernel, link_name, kernel_id, eval_timeout=eval_timeout,
        connect_timeout=connect_timeout, policy=policy,
    )


# ---------------------------------------------------- Input and InputString


class _LinkOutput(PacketOutput):
    """The kernel's output hook: side packets, and what only a loop with a link can do.

    Our ``Input`` builtins call ``read_input()``, ``LinkServer`Call`` calls
    ``call_installed()`` and ``Pause`` calls ``pause()`` (evaluator.py).
    """

    def __init__(self, evaluator: MathicsEvaluator, kernel: MathicsKernel) -> None:
        super().__init__(evaluator)
        self.kernel = kernel

    def read_input(self, evaluation: Any, prompt: str, kind: str) -> Any:
        if self.kernel._link is None or self.kernel._preempt_tag is not None:
            return SymbolEndOfFile  # no client to ask, or not this one's to ask
        return self.kernel._read_input(evaluation, prompt, kind)

    def call_installed(self, evaluation: Any, owner: int, index: int, args: Any) -> Any:
        return self.kernel._call_installed(evaluation, owner, index, args)

    def pause(self, evaluation: Any, seconds: float) -> None:
        self.kernel._pause(evaluation, seconds)


# ------------------------------------------------------------------ watchdog


class _Watchdog:
    """One thread that calls ``fire(alarm)`` when the armed alarm is due.

    There is at most one alarm (the request in hand has one deadline at a
    time). ``disarm`` is a plain store, so it costs nothing; the thread
    finds the alarm gone when it wakes. ``fire`` runs in this thread.
    """

    def __init__(self, fire: Callable[[_Alarm], None]) -> None:
        self._fire = fire
        self._cond = threading.Condition()
        self._alarm: _Alarm | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name="linkserver-kernel-watchdog", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def arm(self, alarm: _Alarm) -> None:
        with self._cond:
            self._alarm = alarm
            self._cond.notify()

    def disarm(self) -> None:
        self._alarm = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                alarm = self._alarm
                if alarm is None:
                    self._cond.wait()
                    continue
                delay = alarm.when - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                self._alarm = None
                self._cond.release()
                try:
                    self._fire(alarm)
                except Exception:  # our bug: log it, keep the time limits working
                    log.exception("! kernel watchdog failed")
                finally:
                    self._cond.acquire()


# ------------------------------------------------------------------ kernel


class MathicsKernel(KernelLoop, Host):
    """One Mathics3 session and the loop that serves it over a link.

    What each request gets back (docs/protocol.md §8):

    ============================  ===============================================
    request                       answer, in order
    ============================  ===============================================
    ``EvaluatePacket[e]``         side packets, ``ReturnPacket[result]``
    ``EnterTextPacket["t"]``      for each expression in t: side packets, then
                                  ``OutputNamePacket["Out[n]= "]`` and
                                  ``ReturnTextPacket["<OutputForm>"]`` unless the
                                  result is Null; then ``InputNamePacket["In[m]:= "]``.
                                  A syntax error: ``MessagePacket[Syntax, tag]``,
                                  ``TextPacket``, ``SyntaxPacket[pos]``, then
                                  ``InputNamePacket`` (the line is not used up)
    ``EnterExpressionPacket[e]``  side packets, ``ReturnExpressionPacket[result]``,
                                  ``InputNamePacket["In[m]:= "]``
    anything else                 ``ReturnPacket[linkserver`KernelError[code, msg]]``
    ============================  ===============================================

    Side packets: ``Print[...]`` sends ``TextPacket["<OutputForm>"]``; a
    message sends ``MessagePacket[symbol, "tag"]`` then
    ``TextPacket["symbol::tag: text"]``; ``Input[p]``/``InputString[p]``
    send ``InputPacket[p]``/``InputStringPacket[p]`` and wait for
    ``EnterTextPacket["answer"]`` (or ``EnterExpressionPacket[e]``); any
    other packet meanwhile is answered with a ``waiting-for-input`` error
    and the prompt is sent again.

    ``linkserver`KernelError[code, message]`` codes: ``bad-wxf`` (the bytes
    are not WXF), ``bad-request`` (not one of the three requests, or a
    malformed one), ``bad-expression`` (no Mathics3 form, e.g. a symbol name
    that is not a name; in the packet the request expects),
    ``waiting-for-input``, ``unconvertible`` and ``unsendable`` (a result
    with no WXF form or above the frame limit), and ``internal`` (Python
    raised inside Mathics3: the *result* is then ``KernelError``, formatted
    for ``EnterTextPacket`` like any result).

    ``LinkServer`Preemptive[n, EvaluatePacket[e]]`` (docs/protocol.md §8.9) is
    answered as ``EvaluatePacket[e]``, each packet wrapped as
    ``LinkServer`PreemptiveAnswer[n, packet]``; after the urgent message
    PREEMPT it is served inside the running evaluation (see "Safe points and
    preemptive requests" in the module's docstring).

    An ABORT or INTERRUPT urgent message makes the answer ``$Aborted`` (no
    interrupt menu); the ``--eval-timeout`` limit does the same after a
    ``General::timeout`` message; a syntax error in ``Input``'s answer asks
    again. Top-level ``Return[x]`` answers x, an uncaught ``Throw[x]``
    ``Hold[Throw[x]]`` (with ``Throw::nocatch``), ``Quit[]`` ends the process
    after ``LinkServer::quit`` -- except in a shared kernel (``--mode shared``),
    where it is refused with ``LinkServer::noquit`` and answers ``$Failed``.

    Create it with :func:`prepare`; run it with :func:`serve` or
    :meth:`serve_link` (:class:`.loop.KernelLoop`'s, which returns the exit
    code of :func:`serve` and leaves the link to the caller). Called in the
    main thread, :meth:`serve_link` installs handlers for SIGUSR1 (to
    interrupt a stuck evaluation) and SIGINT (aborts the running evaluation,
    as in Mathics3's terminal), and restores the old ones on return;
    elsewhere (an in-process link in a test or benchmark) only the
    cooperative stop works.
    """

    def __init__(self) -> None:
        #: The Mathics3 session and what it does with a request (evaluator.py).
        self.evaluator = MathicsEvaluator(self, lambda ev: _LinkOutput(ev, self))

        # Request state (loop.py), shared with the loop and watchdog threads.
        super().__init__()
        # Set (after the evaluation's stop flag) by every stop and PREEMPT: what
        # a Pause waits on (_pause).
        self._wake = threading.Event()
        self._call_serial = 0  # calls of installed functions made so far
        self._watchdog: _Watchdog | None = None
        self._in_wire_wait = False  # the main thread reads the link inside an evaluation
        self._can_signal = False
        self._main_ident = 0
        self._previous_signals: dict[int, Any] = {}

    @property
    def definitions(self) -> Any:
        """The session's Mathics3 ``Definitions`` (its symbols and rules)."""
        return self.evaluator.definitions

    @property
    def evaluation(self) -> Any:
        """The session's Mathics3 ``Evaluation``, whose output goes to the link."""
        return self.evaluator.evaluation

    # ------------------------------------------------------------ serving

    backend = "mathics"

    def _version(self) -> str:
        return self.evaluator.version()

    def _sandboxed(self, scratch: str) -> None:
        """Point Mathics3's temporary files at the scratch directory, and put the
        sandbox's refusals in words (``LinkServer::sandbox``) with an audit hook.

        The hook only speaks: the operating system refuses these things anyway
        (:mod:`.sandbox`), and code that removes or dodges the hook gains nothing.
        """
        for name, module in list(sys.modules.items()):
            if name.startswith("mathics") and isinstance(getattr(module, "TMP_DIR", None), str):
                setattr(module, "TMP_DIR", scratch)  # Mathics3 copies its temporary directory around
        directories = sys.modules.get("mathics.eval.directories")
        if directories is not None and hasattr(directories, "DIRECTORY_STACK"):
            directories.DIRECTORY_STACK[:] = [scratch]
        watched = sandbox.AUDITED
        reads = sandbox.allowed_reads()
        main = threading.get_ident()
        evaluator = self.evaluator

        def audit(event: str, args: tuple[Any, ...]) -> None:
            if event not in watched or threading.get_ident() != main or not evaluator.in_eval:
                return
            what = sandbox.refusal(event, args, scratch, reads)
            if what is None:
                return
            try:
                evaluator.evaluation.message("LinkServer", "sandbox", String(what))
            except Exception:  # a message is not worth the kernel
                log.exception("! kernel: could not issue LinkServer::sandbox")
            raise PermissionError(errno.EPERM, f"the sandbox of this server forbids {what}")

        sys.addaudithook(audit)

    def _start_serving(self) -> None:
        self._watchdog = _Watchdog(self._on_alarm)
        self._watchdog.start()
        self._previous_signals = self._install_signals()

    def _end_serving(self) -> None:
        self._restore_signals(self._previous_signals)
        self._previous_signals = {}
        if self._watchdog is not None:
            self._watchdog.close()
        self._watchdog = None

    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        self._can_signal = threading.current_thread() is threading.main_thread()
        if not self._can_signal:
            return previous
        self._main_ident = threading.get_ident()
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_stop_signal)
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _put(self, packet: Packet) -> None:
        """Send one packet (see :meth:`KernelLoop._put`).

        Raises:
            _LinkGone: the link is closed or broken.
        """
        # A hard stop (SIGUSR1) must not land inside the link's own code: it
        # waits until this put is done.
        evaluator = self.evaluator
        in_eval, evaluator.in_eval = evaluator.in_eval, False
        try:
            super()._put(packet)
        finally:
            evaluator.in_eval = in_eval

    # The evaluator's host (evaluator.Host): where its packets go, when it stops.

    def put(self, packet: Packet) -> None:
        self._put(packet)

    def put_together(self, packets: Sequence[Packet]) -> None:
        """Send packets that belong together as they happen, all or none, in one write."""
        link = self._link
        if link is None:
            return
        evaluator = self.evaluator
        in_eval, evaluator.in_eval = evaluator.in_eval, False  # all packets or none (see _put)
        try:
            with link.corked():
                for packet in packets:
                    super()._put(packet)
        except LinkError as exc:  # the write at the block's end broke: as _put_expr says it
            raise _LinkGone(EXIT_OK) from exc
        finally:
            evaluator.in_eval = in_eval

    def preempt_waits(self) -> bool:
        return self._preempt_pending and not self._preempt_nested

    def timeout_to_say(self) -> bool:
        if self._preempt_nested:
            if self._preempt_stop is _Stop.TIMEOUT:
                self._preempt_stop = _Stop.ABORT  # say it once
                return True
        elif self._stop_serial == self._serial and self._stop_reason is _Stop.TIMEOUT:
            self._stop_reason = _Stop.ABORT  # say it once per request
            return True
        return False

    def _finish_request(self) -> None:
        if self._watchdog is not None:
            self._watchdog.disarm()
        super()._finish_request()
        self.evaluator.finish_request()

    # ------------------------------------------------- stopping

    def _stop_in_hand(self, serial: int) -> None:
        # With _lock held. Written after _stop_serial: guarded() clears the
        # flag and then reads _stop_serial, so one of the two sees the stop.
        # A wait for input or for a call's answer looks again (_request_stop wakes the wire).
        self.evaluator.main_evaluation.stopped = True
        self._wake.set()
        # While a nested preemptive request runs, the stop waits for it (and
        # the watchdog keeps its alarm); _serve_nested escalates afterwards.
        if self._can_signal and self._watchdog is not None and not self._preempt_nested:
            self._watchdog.arm(_Alarm(serial, time.monotonic() + ABORT_GRACE, "escalate"))

    def _stop_nested_preemptive(self) -> None:
        # With _lock held, after _preempt_stop is written (as _stop_in_hand).
        self.evaluator.preempt_evaluation.stopped = True
        self._wake.set()
        tag = self._preempt_tag
        if self._can_signal and self._watchdog is not None and tag is not None:
            self._watchdog.arm(
                _Alarm(tag, time.monotonic() + ABORT_GRACE, "preempt-escalate")
            )

    def must_stop(self) -> bool:
        """True if the evaluation running now must stop (main thread)."""
        if self._preempt_nested:
            return self._preempt_stop is not None
        return self._stop_serial == self._serial

    def safe_point(self, ev: Any) -> None:
        """Main thread, at a safe point of ``ev`` whose flag is set: stop, preempt, or go on.

        Raises:
            TimeoutInterrupt: the evaluation must stop (``ev.stopped`` stays set).
        """
        if self.must_stop():
            if ev.abort_protect and self._stop_waits():
                return  # AbortProtect: the flag stays set, the stop comes after it
            raise TimeoutInterrupt
        # Cleared before the state is read again: a stop or PREEMPT written
        # after this sets the flag again (they write their state first).
        ev.stopped = False
        if self._preempt_pending and self._preempt_tag is None:
            self._preempt_now()
        if self.must_stop():
            ev.stopped = True
            raise TimeoutInterrupt

    def _stop_waits(self) -> bool:
        """True if the stop of the evaluation running now may wait for AbortProtect."""
        reason = self._preempt_stop if self._preempt_nested else self._stop_reason
        return reason is not _Stop.TERMINATE

    def absorb_abort(self, ev: Any) -> Absorb:
        """Main thread, from CheckAbort in ``ev``: take back the client's ABORT, if it is pending.

        In the Wolfram Language CheckAbort absorbs the abort it catches: the
        request then goes on and answers its own result. Only an ABORT of the
        request in hand is taken back; a time limit, TERMINATE and the stop of a
        nested preemptive request are :attr:`Absorb.PENDING` and go on up.
        """
        with self._lock:
            if self._preempt_nested:
                return Absorb.NONE if self._preempt_stop is None else Absorb.PENDING
            if self._stop_serial != self._serial or self._stop_reason is None:
                return Absorb.NONE
            if self._stop_reason is not _Stop.ABORT:
                return Absorb.PENDING
            self._stop_serial, self._stop_reason = -1, None
            ev.stopped = False
            watchdog = self._watchdog
            if watchdog is not None:  # the stop put its escalation in the time limit's place
                watchdog.disarm()
                if self._deadline is not None:
                    watchdog.arm(_Alarm(self._serial, self._deadline, "timeout"))
        return Absorb.ABSORBED

    def _preempt_hint(self) -> None:
        # The thread reading the wire, after _preempt_pending is set. Harmless when idle:
        # the evaluator's guarded() clears the flag before each request.
        self.evaluator.main_evaluation.stopped = True
        self._wake.set()

    def _pause(self, ev: Any, seconds: float) -> None:
        """Main thread: ``Pause[seconds]``, serving stops and preemptive requests at once.

        The pause reads the link itself (:meth:`.wire.KernelWire.wait`) until
        :attr:`_wake` is set, which every stop and PREEMPT does after the
        evaluation's flag; the safe point then does what the flag asks.
        ``TimeConstrained`` sets only Mathics3's ``timeout`` flag, so the wait
        looks at it every :data:`_PAUSE_SLICE` seconds.

        Raises:
            TimeoutInterrupt: the evaluation must stop (from the safe point).
        """
        deadline = time.monotonic() + seconds
        wake = self._wake

        def woken() -> bool:
            return wake.is_set() or bool(ev.stopped)

        while True:
            ev.check_stopped()
            if ev.timeout:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._link is None:
                wake.wait(min(remaining, _PAUSE_SLICE))
            else:
                self._wait_wire(woken, min(remaining, _PAUSE_SLICE))
            wake.clear()  # a wake-up after this leaves the flag set: check_stopped sees it

    def _wait_wire(self, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Main thread, inside an evaluation: read the link until ``done()`` (or ``timeout``).

        No hard stop lands inside the wire's code: a stop wakes the wait instead
        (and SIGINT too, :meth:`_on_sigint`).
        """
        link = self._link
        assert link is not None
        evaluator = self.evaluator
        in_eval, evaluator.in_eval = evaluator.in_eval, False
        self._in_wire_wait = True
        try:
            link.wait(done, timeout)
        finally:
            self._in_wire_wait = False
            evaluator.in_eval = in_eval

    def _preempt_now(self) -> None:
        """Main thread, at a safe point: serve every preemptive request waiting on the link."""
        self._preempt_pending = False
        link = self._link
        while link is not None:
            payload = link.take_nowait_if(is_preemptive)
            if payload is None:
                return  # none (served between requests already), or not arrived yet
            try:
                expr = wxf.loads(payload)
            except WXFDecodeError as exc:
                log.warning("! kernel: unreadable preemptive request dropped: %s", exc)
                continue
            self._serve_nested(expr)

    def _serve_nested(self, expr: Any) -> None:
        """Serve ``LinkServer`Preemptive[n, packet]`` inside the request in hand."""
        evaluator = self.evaluator
        main_evaluation, in_eval = evaluator.evaluation, evaluator.in_eval
        watchdog = self._watchdog
        remaining = None
        if self._deadline is not None and watchdog is not None:
            remaining = self._deadline - time.monotonic()  # held, as _read_input holds it
        if watchdog is not None:
            watchdog.disarm()
        evaluator.evaluation = evaluator.preempt_evaluation
        evaluator.in_eval = False  # no hard stop outside the preemptive one's guarded()
        try:
            self._serve_preemptive(expr, nested=True)
        finally:
            evaluator.evaluation, evaluator.in_eval = main_evaluation, in_eval
            evaluator.preempt_evaluation.out.clear()
            if watchdog is not None:
                watchdog.disarm()
                if self._stop_serial == self._serial:  # stopped meanwhile: escalate now
                    watchdog.arm(
                        _Alarm(self._serial, time.monotonic() + ABORT_GRACE, "escalate")
                    )
                elif remaining is not None:
                    self._deadline = time.monotonic() + remaining
                    watchdog.arm(_Alarm(self._serial, self._deadline, "timeout"))

    def _preemptive_started(self, tag: int, nested: bool) -> None:
        # A nested one has its own time limit (the request in hand's is held).
        if nested and self._eval_timeout is not None and self._watchdog is not None:
            when = time.monotonic() + self._eval_timeout
            self._watchdog.arm(_Alarm(tag, when, "preempt-timeout"))

    def _on_alarm(self, alarm: _Alarm) -> None:
        """Watchdog thread: the time limit passed, or a stop was not obeyed."""
        if alarm.kind == "timeout":
            self._request_stop(_Stop.TIMEOUT, serial=alarm.serial)
            return
        if alarm.kind == "preempt-timeout":
            self._stop_preemptive(alarm.serial, _Stop.TIMEOUT)
            return
        with self._lock:
            if alarm.kind == "preempt-escalate":
                stuck = (
                    self._preempt_nested
                    and self._preempt_tag == alarm.serial
                    and self._preempt_stop is not None
                    and self.evaluator.in_eval
                )
            else:
                stuck = (
                    self._busy
                    and self._serial == alarm.serial == self._stop_serial
                    and self.evaluator.in_eval
                    and not self._preempt_nested
                )
        if stuck and self._watchdog is not None:
            log.info("kernel: evaluation not stopped after %g s; interrupting it", ABORT_GRACE)
            signal.pthread_kill(self._main_ident, signal.SIGUSR1)
            when = time.monotonic() + ABORT_GRACE
            self._watchdog.arm(_Alarm(alarm.serial, when, alarm.kind))

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        # Main thread, between two bytecodes of whatever it was running --
        # as Mathics3's own Ctrl-C handler raises AbortInterrupt. in_eval is
        # written by this thread only, so the check cannot race.
        evaluator = self.evaluator
        if evaluator.in_eval and self.must_stop() and not (
            evaluator.evaluation.abort_protect and self._stop_waits()
        ):
            raise _HardStop

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # Ctrl-C in a terminal reaches every process of its group, kernels
        # too: abort the running evaluation, as Mathics3's terminal does, and
        # otherwise ignore it -- the server decides when kernels end.
        if self.evaluator.in_eval:
            self._stop_reason = _Stop.ABORT
            self._stop_serial = self._serial
            raise _HardStop
        if self._in_wire_wait and self._link is not None:
            # A Pause or an Input waits on the link: stop it there (no locks
            # taken in a handler; the flag and the pipe are enough).
            self._stop_reason = _Stop.ABORT
            self._stop_serial = self._serial
            self.evaluator.evaluation.stopped = True
            self._link.wake()

    # -------------------------------------------------------- requests

    def _evaluate_packet(self, expr: Any) -> None:
        self.evaluator.evaluate_packet(expr)

    def _enter_text(self, text: str) -> None:
        self.evaluator.enter_text(text)

    def _enter_expression(self, expr: Any) -> None:
        self.evaluator.enter_expression(expr)

    def _deadline_set(self) -> None:
        if self._watchdog is not None and self._deadline is not None:
            self._watchdog.arm(_Alarm(self._serial, self._deadline, "timeout"))

    def _read_input(self, evaluation: Any, prompt: str, kind: str) -> Any:
        """Ask the client for input (``Input``, ``InputString``) and wait for it.

        Raises:
            AbortInterrupt: the request was stopped while waiting.
            _LinkGone: the link ended while waiting.
        """
        ask: Packet = InputStringPacket(prompt) if kind == "string" else InputPacket(prompt)
        # Time spent waiting for a person is not evaluation time: hold the limit.
        remaining = None
        if self._deadline is not None and self._watchdog is not None:
            remaining = self._deadline - time.monotonic()
            self._deadline = None  # restored below; a nested preemptive keeps off it
            self._watchdog.disarm()
        try:
            ask_again = True
            while True:
                if ask_again:
                    self._put(ask)
                ask_again = True
                answer = self._receive_input()
                if isinstance(answer, WLFunction) and answer.head == _PREEMPTIVE:
                    # A preemptive request while we wait: serve it, wait on.
                    self._serve_nested(answer)
                    ask_again = False
                    continue
                if isinstance(answer, WLFunction) and answer.head == _CALL_ANSWER:
                    ask_again = False  # for a call given up on (aborted): dropped
                    continue
                packet = packet_from_expr(answer)
                if isinstance(packet, EnterTextPacket) and isinstance(packet.text, str):
                    if kind == "string":
                        return String(packet.text)
                    query = evaluation.parse(packet.text)
                    if query is not None:
                        return query  # Mathics3 evaluates what a builtin returns
                    continue  # a syntax error, reported: ask again
                if isinstance(packet, EnterExpressionPacket):
                    try:
                        value = self.evaluator.to_mathics(packet.expr)
                    except ConversionError as exc:
                        self._put(ReturnPacket(kernel_error("bad-expression", str(exc))))
                        continue
                    if kind == "string" and not isinstance(value, String):
                        return String(str(evaluation.format_output(value, "text")))
                    return value
                # Another request while we wait: it gets its answer, we ask again.
                self._put(ReturnPacket(_bad_request(answer, waiting=True)))
        except concurrent.futures.CancelledError:
            raise AbortInterrupt from None
        finally:
            if remaining is not None and self._watchdog is not None:
                self._deadline = time.monotonic() + remaining
                self._watchdog.arm(_Alarm(self._serial, self._deadline, "timeout"))

    # ------------------------------------------------ installed functions

    def _install_request(self, expr: Any) -> None:
        """Define or remove a function a client installed (docs/protocol.md §8.10).

        ``LinkServer`Install[owner, "name", index]`` defines
        ``name[args___] := LinkServer`Call[owner, index, {args}]`` (after
        ``ClearAll[name]``) and answers ``ReturnPacket[name]``;
        ``LinkServer`Uninstall[owner, "name"]`` clears it and answers
        ``ReturnPacket[Null]``.
        """
        args: tuple[Any, ...] = tuple(getattr(expr, "args", ()))
        install = expr.head.name == INSTALL
        if (
            len(args) != (3 if install else 2)
            or not all(type(a) is int for a in args[::2])
            or check_name(args[1]) is not None
        ):
            self._put(ReturnPacket(bad_request(expr)))
            return
        symbol = WLSymbol(args[1])
        clear = WLFunction(WLSymbol("ClearAll"), symbol)
        if install:
            pattern = WLFunction(
                WLSymbol("Pattern"), _CALL_ARGS, WLFunction(WLSymbol("BlankNullSequence"))
            )
            call = WLFunction(
                WLSymbol(_CALL), args[0], args[2], WLFunction(WLSymbol("List"), _CALL_ARGS)
            )
            define = WLFunction(WLSymbol("SetDelayed"), WLFunction(symbol, pattern), call)
            self._evaluate_packet(WLFunction(WLSymbol("CompoundExpression"), clear, define, symbol))
            install_call_rule(self.evaluator.definitions, args[1], args[0], args[2])
        else:
            self._evaluate_packet(
                WLFunction(WLSymbol("CompoundExpression"), clear, WLSymbol("Null"))
            )

    def _call_failed(self, evaluation: Any, tag: str, text: str) -> Any:
        """Issue ``LinkServer::tag`` with ``text``; return ``$Failed``."""
        evaluation.message("LinkServer", tag, String(text))
        return SymbolFailed

    def _call_installed(self, evaluation: Any, owner: int, index: int, args: Any) -> Any:
        """Call function ``index`` of client ``owner`` and wait for its answer.

        Sends ``LinkServer`CallPacket[n, owner, index, {args}]`` and waits, as
        ``Input`` does, for ``LinkServer`CallAnswer[n, answer]``. Meanwhile it
        serves preemptive requests and the requests the server passes on
        while the client computes (a callback that evaluates back into this
        kernel): each is answered in full, as if it came on its own.

        Raises:
            AbortInterrupt: the request was stopped while waiting.
            _LinkGone: the link ended while waiting.
        """
        if self._preempt_tag is not None:
            return self._call_failed(
                evaluation, "nocall",
                "a function installed by a client cannot be called from a preemptive evaluation",
            )
        try:
            values = [pack_arrays(from_mathics(arg, self.evaluator.definitions)) for arg in args.elements]
        except ConversionError as exc:
            return self._call_failed(evaluation, "callfailed", f"an argument cannot be sent: {exc}")
        self._call_serial += 1
        call = self._call_serial
        evaluator = self.evaluator
        in_eval, evaluator.in_eval = evaluator.in_eval, False  # no hard stop inside the link's code
        try:
            self._put_expr(WLFunction(_KERNEL_CALL, call, owner, index, values))
        except (WXFEncodeError, LimitError) as exc:
            return self._call_failed(evaluation, "callfailed", f"the arguments cannot be sent: {exc}")
        finally:
            evaluator.in_eval = in_eval
        while True:
            try:
                answer = self._receive_input()
            except concurrent.futures.CancelledError:
                raise AbortInterrupt from None
            head = answer.head if isinstance(answer, WLFunction) else None
            if head == _CALL_ANSWER and len(answer.args) == 2:
                if answer.args[0] != call:
                    continue  # the answer to a call given up on (aborted): dropped
                return self._call_result(evaluation, answer.args[1])
            if head == _PREEMPTIVE:
                self._serve_nested(answer)  # a preemptive request while we wait
                continue
            if isinstance(head, WLSymbol) and head.name in (INSTALL, UNINSTALL):
                self._install_request(answer)  # the callback installs another function
                continue
            packet = packet_from_expr(answer)
            if isinstance(packet, (EvaluatePacket, EnterTextPacket, EnterExpressionPacket)):
                self._serve_in_call(packet)
                continue
            log.warning("! kernel: %s while waiting for a call's answer; dropped",
                        short_repr(answer))

    def _call_result(self, evaluation: Any, packet: Any) -> Any:
        """Return the value of a call's answer: ``ReturnPacket[r]`` or ``LinkServer`CallFailed[...]``."""
        if isinstance(packet, WLFunction) and len(packet.args) == 1 and packet.head == _RETURN_PACKET:
            try:
                return self.evaluator.to_mathics(packet.args[0])
            except ConversionError as exc:
                return self._call_failed(
                    evaluation, "callfailed", f"the function's result cannot be used: {exc}"
                )
        if isinstance(packet, WLFunction) and len(packet.args) == 2 and packet.head == _CALL_FAILED:
            tag, text = packet.args
            if tag not in ("nocallee", "nocall", "callfailed"):
                tag = "callfailed"
            return self._call_failed(evaluation, str(tag), str(text))
        return self._call_failed(
            evaluation, "callfailed", f"the client answered a call with {short_repr(packet)}"
        )

    def _serve_in_call(self, packet: Packet) -> None:
        """Serve a request that came while a call waits for its answer (a callback's own).

        It shares the paused evaluation's Mathics3 ``Evaluation``, whose
        per-evaluation counters are saved around it, and its request's stop
        and time limit: an ABORT stops both.
        """
        evaluator = self.evaluator
        ev = evaluator.evaluation
        saved = (ev.recursion_depth, ev.iteration_count, ev.timeout, ev.start_time, ev.stopped)
        in_eval = evaluator.in_eval
        try:
            if isinstance(packet, EvaluatePacket):
                self._evaluate_packet(packet.expr)
            elif isinstance(packet, EnterExpressionPacket):
                self._enter_expression(packet.expr)
            elif isinstance(packet, EnterTextPacket) and isinstance(packet.text, str):
                self._enter_text(packet.text)
            else:
                self._put(ReturnTextPacket("$Failed"))
                self._put(evaluator.input_name())
        finally:
            ev.recursion_depth, ev.iteration_count, ev.timeout, ev.start_time, stopped = saved
            ev.stopped = stopped or self.must_stop() or self._preempt_pending
            evaluator.in_eval = in_eval

    def _receive_input(self) -> Any:
        """Return the next expression on the link, waited for inside an evaluation.

        Raises:
            concurrent.futures.CancelledError: the request was stopped.
            _LinkGone: the link ended.
        """
        link = self._link
        assert link is not None
        while True:
            if self._stop_serial == self._serial:
                raise concurrent.futures.CancelledError
            payload = link.take_nowait()
            if payload is not None:
                break
            if link.error is not None:
                raise _LinkGone(EXIT_OK) from link.error
            self._wait_wire(self._input_or_stop)
        try:
            return wxf.loads(payload)
        except WXFDecodeError as exc:
            return kernel_error("bad-wxf", str(exc))

    def _input_or_stop(self) -> bool:
        link = self._link
        return (
            link is None or link.ready() or link.error is not None
            or self._stop_serial == self._serial
        )


def _bad_request(expr: Any, waiting: bool = False) -> Any:
    if not waiting:
        return bad_request(expr)
    return kernel_error(
        "waiting-for-input",
        f"the kernel is waiting for input: answer its InputPacket with "
        f'EnterTextPacket["..."]; {short_repr(expr)} was not served',
    )


# --------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    return kernel_parser(
        "python -m linkserver.kernel.mathics",
        "Run a Mathics3 kernel that serves packets over a link to a linkserver.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the kernel process and return its exit code.

    The process's entry point, so it (not the library) configures logging.
    """
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    prepare()
    return serve(
        args.connect,
        args.kernel_id,
        eval_timeout=args.eval_timeout,
        connect_timeout=args.connect_timeout,
        policy=KernelPolicy.from_args(args),
    )


if __name__ == "__main__":
    sys.exit(main())
