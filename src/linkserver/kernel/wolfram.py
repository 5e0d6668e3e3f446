"""The Wolfram Engine kernel process: a real Wolfram Engine serving packets over a link.

The same kind of process as :mod:`.mathics` (docs/protocol.md §8, DESIGN.md
"Kernels"), with the evaluating done by a Wolfram Engine that wolframclient
drives (``WolframLanguageSession``: the engine runs as a child process and
talks WXF over ZeroMQ). The kernel connects to the server's kernel link,
announces itself with ``KernelReady[<|"id" -> ..., "pid" -> ...,
"backend" -> "wolfram", "version" -> "14.1.0"|>]`` and answers one request
at a time::

    python -m linkserver.kernel.wolfram --connect 31416@127.0.0.1 --kernel-id k1 \\
        [--kernel-path /usr/local/Wolfram/WolframEngine/14.1/Executables/WolframKernel]

This module holds finding the engine (:func:`find_engine`), the evaluating
(:class:`WolframKernel`, on :mod:`.loop`'s packet loop) and the Wolfram Language code the loop installs in
each engine it starts (:data:`SUPPORT_CODE`). The engine's process, its
sockets and its start-up belong to wolframclient; processes of our own,
restarts of this process and limits (rlimit, kill) belong to whoever starts
kernels (:mod:`.process`).

Finding the engine
------------------
``--kernel-path PATH`` (or ``LINKSERVER_KERNEL_PATH``); else ``WolframKernel``
on ``PATH``; else ``wolframscript`` on ``PATH``, asked for the engine's
``$InstallationDirectory`` (wolframscript itself does not take the kernel's
command line); else the install locations wolframclient knows
(``/usr/local/Wolfram/...``, ``WOLFRAM_INSTALLATION_DIRECTORY``). If none
has it, the process writes one sentence saying so and how to point at the
engine, and exits with code 3 -- as when the engine will not start (not
activated, say) or the server cannot be reached.

Start-up is split as in :mod:`.mathics`: :func:`prepare` finds the engine
and starts nothing (no thread, no process), so a zygote may call it and
fork; :func:`serve` starts the engine, then connects.

What wolframclient gives, and what this backend adds
----------------------------------------------------
wolframclient 1.4.0 evaluates with ``EvaluationData`` inside the engine and
hands back the result, the names and texts of the messages issued, and an
``output`` list read from a key ``EvaluationData`` does not document. It
has no abort, no time limit (``evaluate(..., timeout=)`` is accepted and
ignored by local sessions) and no numbering of inputs (its kernel sets
``$HistoryLength = 0`` and runs no main loop). So each request is evaluated
inside small Wolfram Language wrappers that this kernel installs in every
engine it starts (:data:`SUPPORT_CODE`, in the context
``linkserver`Private```):

- ``Print`` is blocked to a function that records the printed text
  (``ToString[Row[{args}], OutputForm]``, one ``TextPacket`` per ``Print``)
  and how many messages came before it (``Length[$MessageList]``), so prints
  and messages can be sent in the order they happened where the engine keeps
  ``$MessageList``; where it does not, all prints come first, then all
  messages. Like the messages, prints reach the client when the evaluation
  ends, not while it runs: wolframclient returns them with the result. (The
  prints of an evaluation that is aborted are lost with its engine.)
- ``--eval-timeout`` wraps the evaluation in ``TimeConstrained``: it answers
  ``$Aborted`` after a ``General::timeout`` message and the engine keeps its
  definitions. If the engine does not come back :data:`TIMEOUT_GRACE`
  seconds after the limit, it is stopped as an abort stops it.
- ``In``/``Out`` numbering is kept by this kernel: a counter here says which
  line comes next, and each ``Enter`` request sets ``$Line``, ``In[n]`` and
  ``Out[n]`` in the engine itself (respecting ``$HistoryLength``, which is set
  to 100 in each new engine, as in Mathics3), applying ``$Pre``, ``$Post`` and
  ``$PrePrint`` as a Wolfram kernel's main loop does. The counter survives an
  engine restart; the values of ``In`` and ``Out`` do not.
- ``Input`` and ``InputString`` cannot reach the client through a
  wolframclient session (the engine would read its own stdin and hang), so
  they stop the evaluation, whose result becomes
  ``linkserver`KernelError["no-input", ...]``.

Aborts restart the engine
-------------------------
wolframclient cannot abort an evaluation. An ABORT (or INTERRUPT) aimed at a
running evaluation therefore terminates the engine process, answers
``$Aborted`` -- after ``MessagePacket[LinkServer, "restarted"]`` and its
``TextPacket`` -- and starts a fresh engine before the next request. **With
this backend every definition made before an abort is lost**, unlike in a
Wolfram kernel; ``$Line`` goes on counting. An abort aimed at a request that
has not started is answered ``$Aborted`` without touching the engine, and an
abort when nothing runs or waits is ignored (see :mod:`.loop` for how an
abort is aimed at a request: the same rules apply here).

Preemptive requests wait their turn
-----------------------------------
wolframclient evaluates one expression at a time and cannot pause it, so
this backend cannot serve a preemptive request (docs/protocol.md §8.9) inside
a running evaluation: it ignores the urgent message PREEMPT, and the request,
which the server sent beside the running one, is the first on the link when
that one ends. It is then served like any request (:mod:`.loop`), its answer
tagged for the server.

The kernel ends on TERMINATE (after answering the request in hand with
``$Aborted``) and when the link closes or breaks, with exit code 0. If the
engine ends by itself during an evaluation -- ``Quit[]``, or a crash; the two
cannot be told apart -- or cannot be restarted, the kernel exits with code 4
without answering, so that the server answers ``kerneldied`` and starts a
fresh kernel, as for a Mathics3 kernel that ends.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wolframclient.evaluation import WolframLanguageSession
from wolframclient.language.expression import WLFunction, WLSymbol
from wolframclient.utils.environment import find_default_kernel_path

from ..link import Link
from ..protocol.packets import (
    InputNamePacket,
    MessagePacket,
    OutputNamePacket,
    Packet,
    ReturnExpressionPacket,
    ReturnPacket,
    ReturnTextPacket,
    SyntaxPacket,
    TextPacket,
)
from .loop import (
    CONNECT_TIMEOUT,
    EXIT_OK,
    EXIT_STARTUP_FAILED,
    KERNEL_ERROR,
    KernelExit,
    KernelLoop,
    Stop,
    configure_logging,
    kernel_error,
    kernel_parser,
    serve_kernel,
)

__all__ = [
    "KERNEL_ERROR",
    "SUPPORT_CODE",
    "TIMEOUT_GRACE",
    "EngineError",
    "EngineNotFound",
    "WolframKernel",
    "find_engine",
    "interleave",
    "kernel_error",
    "main",
    "prepare",
    "serve",
]

log = logging.getLogger("linkserver.kernel")

#: Environment variable naming the engine's kernel, as ``--kernel-path`` does.
KERNEL_PATH_ENV = "LINKSERVER_KERNEL_PATH"

#: Seconds an evaluation may run past ``--eval-timeout`` (which the engine
#: enforces itself with ``TimeConstrained``) before the engine is stopped.
TIMEOUT_GRACE = 5.0

#: Default seconds for the engine to start (a first start checks its licence).
ENGINE_START_TIMEOUT = 60.0

#: Seconds to wait for a terminated engine's process to be gone before the
#: next one starts (a licence may allow only so many at once).
ENGINE_STOP_WAIT = 10.0

#: Seconds ``wolframscript`` may take to say where the engine is installed.
WOLFRAMSCRIPT_TIMEOUT = 60.0

#: ``$HistoryLength`` in each new engine (wolframclient's sets 0).
HISTORY_LENGTH = 100

# Exit codes of the process, besides loop.py's EXIT_OK (TERMINATE, or the link
# closed) and EXIT_STARTUP_FAILED (no engine, the engine did not start, no server).
EXIT_ENGINE_ENDED = 4  # the engine ended during an evaluation, or did not restart

_PRIVATE = "linkserver`Private`"
_RUN = WLSymbol(_PRIVATE + "run")
_LINE = WLSymbol(_PRIVATE + "line")
_ENTER = WLSymbol(_PRIVATE + "enter")
_RECORD = WLSymbol(_PRIVATE + "record")
_SYNTAX_ERROR = WLSymbol(_PRIVATE + "syntaxError")
_ABORTED = WLSymbol("$Aborted")
_LINKSERVER = WLSymbol("LinkServer")
_HOLDS = (WLSymbol("HoldForm"), WLSymbol("Hold"), WLSymbol("HoldComplete"))

#: The engine's kernel below its ``$InstallationDirectory``, by platform (as
#: wolframclient's ``find_default_kernel_path`` has it).
_KERNEL_IN_INSTALLATION = {
    "win32": "WolframKernel.exe",
    "darwin": os.path.join("MacOS", "WolframKernel"),
}.get(sys.platform, os.path.join("Executables", "WolframKernel"))

#: Wolfram Language code evaluated in ``linkserver`Private``` in every engine
#: this kernel starts; see the module docstring for what it is for.
#: ``run[e, limit]`` evaluates e and answers ``record[value, prints,
#: timedOut, noInput]``; ``line[e, n, limit, format]`` evaluates e as input
#: line n and adds ``label, text`` to the record (Null, Null for a Null
#: result or when not formatting); ``enter[s, n, limit, final]`` parses one
#: input text s and answers ``line[...]``, ``"incomplete"``, ``"empty"`` or
#: ``syntaxError[position]`` after the engine's own ``Syntax::`` message.
SUPPORT_CODE = """(
ClearAll[run, line, enter, eval, record, syntaxError];
SetAttributes[eval, HoldAllComplete];
eval[e_] := e;
SetAttributes[run, HoldFirst];
run[e_, limit_] := Module[{prints = {}, timedOut = False, noIn = False, value},
  value = Block[{$MessageList = {},
      Print = (AppendTo[prints, {Length[$MessageList], ToString[Row[{##}], OutputForm]}]; Null) &,
      Input = (noIn = True; Abort[]) &,
      InputString = (noIn = True; Abort[]) &},
    CheckAbort[
      If[limit === Null, eval[e], TimeConstrained[eval[e], limit, timedOut = True; $Aborted]],
      $Aborted]];
  record[value, prints, timedOut, noIn]];
SetAttributes[line, HoldFirst];
line[e_, n_Integer, limit_, format_] := Module[{r, v, stored, label = Null, text = Null},
  $Line = n;
  If[$HistoryLength > 0, Unprotect[In]; In[n] := e; Protect[In]];
  r = run[With[{x = If[ValueQ[$Pre], $Pre[e], e]}, If[ValueQ[$Post], $Post[x], x]], limit];
  If[Head[r] === record,
    v = First[r];
    stored = If[MemberQ[$OutputForms, Head[v]] && Length[v] > 0, First[v], v];
    If[$HistoryLength > 0,
      Unprotect[Out]; Out[n] = stored; Protect[Out];
      If[n > $HistoryLength,
        Quiet[Unprotect[In, Out]; In[n - $HistoryLength] =.; Out[n - $HistoryLength] =.;
          Protect[In, Out]]]];
    If[TrueQ[format] && v =!= Null,
      label = "Out[" <> ToString[n] <> "]" <>
        If[stored =!= v, "//" <> ToString[Head[v]], ""] <> "= ";
      text = ToString[If[ValueQ[$PrePrint], $PrePrint[v], v], OutputForm]];
    r = Join[r, record[label, text]]];
  r];
enter[s_String, n_Integer, limit_, final_] := Module[{held},
  Which[
    SyntaxQ[s],
      held = ToExpression[s, InputForm, Hold];
      If[MatchQ[held, Hold[_]], Apply[line, Join[held, Hold[n, limit, True]]], "empty"],
    !TrueQ[final] && SyntaxLength[s] > StringLength[s], "incomplete",
    True,
      ToExpression[s, InputForm, Hold];
      syntaxError[Min[SyntaxLength[s], StringLength[s]]]]];
$HistoryLength = %d;
)""" % HISTORY_LENGTH

NOT_INSTALLED = (
    "the Wolfram Engine is not installed here (no WolframKernel or wolframscript on PATH, "
    "none in the usual install locations); install it, or point at its kernel with "
    f"--kernel-path PATH or {KERNEL_PATH_ENV}=PATH"
)

#: What makes a session: ``WolframLanguageSession`` or anything called like it.
SessionClass = Callable[..., Any]


class EngineError(Exception):
    """The Wolfram Engine could not be found or started; the message is one sentence."""


class EngineNotFound(EngineError):
    """No Wolfram Engine kernel where we looked."""


# Why the request in hand must stop (loop.py); TIMEOUT: the engine overran
# --eval-timeout by TIMEOUT_GRACE; TERMINATE: a TERMINATE message, or the link ended.
_Stop = Stop

#: Unwind the loop and end the kernel with ``code``.
_Exit = KernelExit


class _Stopped(Exception):
    """The request in hand was stopped; ``killed`` if the engine had to go."""

    def __init__(self, reason: _Stop, killed: bool) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.killed = killed


class _BadExpression(Exception):
    """wolframclient could not send the expression to the engine."""


@dataclass
class _Answer:
    """What the engine made of one request (a ``record`` from :data:`SUPPORT_CODE`)."""

    value: Any
    side: list[Packet]
    timed_out: bool = False
    no_input: bool = False
    label: str | None = None
    text: str | None = None
    complete: bool = True  # False: not a record (a Throw escaped the wrappers, ...)


# ---------------------------------------------------------- finding the engine


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _kernel_of_wolframscript(script: str) -> str:
    """Ask ``wolframscript`` where its engine is installed; return the engine's kernel.

    Raises:
        EngineNotFound: wolframscript did not say, or no kernel is there.
    """
    try:
        done = subprocess.run(
            [script, "-code", "$InstallationDirectory"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=WOLFRAMSCRIPT_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineNotFound(
            f"wolframscript at {script} did not say where the Wolfram Engine is ({exc}); "
            f"point at its kernel with --kernel-path PATH"
        ) from None
    lines = [line.strip().strip('"') for line in done.stdout.splitlines() if line.strip()]
    kernel = os.path.join(lines[-1], _KERNEL_IN_INSTALLATION) if lines else ""
    if done.returncode != 0 or not kernel or not _executable(kernel):
        said = (lines[-1] if lines else done.stderr.strip()[:200]) or "nothing"
        raise EngineNotFound(
            f"wolframscript at {script} did not lead to a Wolfram Engine kernel (it said "
            f"{said!r}); is the engine activated? point at its kernel with --kernel-path PATH"
        )
    return kernel


def find_engine(kernel_path: str | None = None) -> str:
    """Return the path of the Wolfram Engine's kernel (``WolframKernel``).

    Looks, in order: at ``kernel_path``; at ``$LINKSERVER_KERNEL_PATH``; for
    ``WolframKernel`` on ``PATH``; for ``wolframscript`` on ``PATH`` (which
    is asked for the engine's install directory); in the install locations
    wolframclient knows. A path to ``wolframscript`` itself is resolved the
    same way.

    Args:
        kernel_path: the kernel to use, or None to look for one.

    Raises:
        EngineNotFound: there is no engine where we looked; the message is
            one sentence that says how to point at one.
    """
    explicit = kernel_path or os.environ.get(KERNEL_PATH_ENV) or None
    if explicit is not None:
        path = os.path.expanduser(explicit)
        if not _executable(path):
            raise EngineNotFound(
                f"there is no Wolfram Engine kernel at {explicit} (not an executable file); "
                f"give --kernel-path the path of WolframKernel"
            )
        if os.path.basename(path).lower().startswith("wolframscript"):
            return _kernel_of_wolframscript(path)
        return path
    found = shutil.which("WolframKernel")
    if found:
        return found
    script = shutil.which("wolframscript")
    if script:
        return _kernel_of_wolframscript(script)
    default = find_default_kernel_path()
    if default and _executable(default):
        return str(default)
    raise EngineNotFound(NOT_INSTALLED)


# ------------------------------------------------------------------ the kernel


def _short(name: str) -> str:
    return name.rpartition("`")[2]


def _message_packets(name: Any, text: Any) -> list[Packet]:
    """``MessagePacket[symbol, "tag"]`` and its ``TextPacket``, from wolframclient's pair."""
    symbol: Any = WLSymbol("General")
    tag = "unknown"
    while isinstance(name, WLFunction) and name.head in _HOLDS and len(name.args) == 1:
        name = name.args[0]
    if isinstance(name, WLFunction) and len(name.args) >= 2:  # MessageName[sym, "tag"]
        symbol, tag = name.args[0], str(name.args[1])
    symbol_name = symbol.name if isinstance(symbol, WLSymbol) else str(symbol)
    return [
        MessagePacket(symbol, tag),
        TextPacket(f"{_short(symbol_name)}::{tag}: {text}"),
    ]


def interleave(
    prints: Sequence[tuple[int, str]], messages: Sequence[Sequence[Packet]]
) -> list[Packet]:
    """Put printed text and messages in the order they happened.

    Args:
        prints: for each ``Print``, in order, how many messages had been
            issued before it and the printed text.
        messages: the packets of each message, in order.

    Returns:
        The side packets: each print after the messages issued before it.
    """
    out: list[Packet] = []
    sent = 0
    for before, text in prints:
        while sent < min(before, len(messages)):
            out.extend(messages[sent])
            sent += 1
        out.append(TextPacket(text))
    for packets in messages[sent:]:
        out.extend(packets)
    return out


def _timeout_packets() -> list[Packet]:
    return [
        MessagePacket(WLSymbol("General"), "timeout"),
        TextPacket("General::timeout: Timeout reached."),
    ]


def _restarted_packets() -> list[Packet]:
    return [
        MessagePacket(_LINKSERVER, "restarted"),
        TextPacket(
            "LinkServer::restarted: the Wolfram Engine was stopped to abort this evaluation "
            "and a fresh one is started; definitions made before are lost."
        ),
    ]


def _no_input_error() -> Any:
    return kernel_error(
        "no-input",
        "Input[] and InputString[] cannot ask the client with the Wolfram Engine backend "
        "(wolframclient sessions have no way to); send the value with the request instead",
    )


def _default_session_class(*args: Any, **kwargs: Any) -> Any:
    return WolframLanguageSession(*args, **kwargs)


class WolframKernel(KernelLoop):
    """A Wolfram Engine session and the loop that serves it over a link.

    What each request gets back (docs/protocol.md §8):

    ============================  ===============================================
    request                       answer, in order
    ============================  ===============================================
    ``EvaluatePacket[e]``         side packets, ``ReturnPacket[result]``
    ``EnterTextPacket["t"]``      for each expression in t (lines are joined
                                  until they make one, as a terminal kernel
                                  reads them): side packets, then
                                  ``OutputNamePacket["Out[n]= "]`` (or
                                  ``"Out[n]//FullForm= "``) and
                                  ``ReturnTextPacket["<OutputForm>"]`` unless the
                                  result is Null; then ``InputNamePacket["In[m]:= "]``.
                                  A syntax error: the engine's
                                  ``MessagePacket[Syntax, tag]``, ``TextPacket``,
                                  then ``SyntaxPacket[pos]``, ``InputNamePacket``
                                  (the line is not used up)
    ``EnterExpressionPacket[e]``  side packets, ``ReturnExpressionPacket[result]``,
                                  ``InputNamePacket["In[m]:= "]``
    anything else                 ``ReturnPacket[linkserver`KernelError[code, msg]]``
    ============================  ===============================================

    Side packets: ``Print[...]`` sends ``TextPacket["<OutputForm>"]``; a
    message sends ``MessagePacket[symbol, "tag"]`` then
    ``TextPacket["symbol::tag: text"]`` (the text as wolframclient's kernel
    code formats it, e.g. ``Infinite expression Power[0, -1] encountered.``).

    ``linkserver`KernelError[code, message]`` codes, as in the Mathics3
    backend where they apply: ``bad-wxf``, ``bad-request``,
    ``bad-expression`` (wolframclient cannot send it to the engine),
    ``unsendable`` (the result cannot travel on the link), ``internal``
    (the engine's answer could not be read), and ``no-input`` (``Input[]``,
    ``InputString[]``: the result of the request is this error, for the
    ``Enter`` packets shown as text).

    An ABORT or INTERRUPT stops the engine and starts a new one (the answer
    is ``$Aborted`` after ``MessagePacket[LinkServer, "restarted"]``);
    ``--eval-timeout`` answers ``$Aborted`` after ``General::timeout``. See
    the module docstring.

    :meth:`serve_link` (:class:`.loop.KernelLoop`'s) serves until TERMINATE,
    the link's end or the engine's: it starts the engine first if
    :meth:`start` has not (raising :class:`EngineError` if it does not
    start) and uses no signals, so it may run in any thread. It returns the
    process exit code: 0 after TERMINATE or the link's end, 4 if the engine
    ended or could not be restarted; the link is left for the caller to
    close, the engine running (:meth:`close` stops it).

    Args:
        kernel_path: the engine's kernel (see :func:`find_engine`).
        session_class: called as ``WolframLanguageSession`` is, to make each
            engine session; the default is wolframclient's. Tests pass a class
            whose engine is not a Wolfram Engine.
        start_timeout: seconds the engine may take to start.
    """

    def __init__(
        self,
        kernel_path: str,
        *,
        session_class: SessionClass | None = None,
        start_timeout: float = ENGINE_START_TIMEOUT,
    ) -> None:
        self.kernel_path = kernel_path
        self.session_class: SessionClass = session_class or _default_session_class
        self.start_timeout = start_timeout
        self.version = ""
        self._session: Any = None
        self._needs_restart = False
        self._line = 0  # the last input line used; the next is _line + 1

        # Request state (loop.py), shared with the thread reading the wire.
        super().__init__()
        self._wake = threading.Event()  # an evaluation finished, or a stop came

    # -------------------------------------------------------------- engine

    @property
    def line(self) -> int:
        """The number of the last input line used (``$Line``)."""
        return self._line

    def start(self) -> str:
        """Start the engine (if not running) and install :data:`SUPPORT_CODE` in it.

        Returns:
            The engine's version, e.g. ``"14.1.0"``.

        Raises:
            EngineError: the engine did not start; the message is one sentence.
        """
        if self._session is not None and not self._needs_restart:
            return self.version
        self._stop_engine()
        try:
            session = self.session_class(
                self.kernel_path,
                inputform_string_evaluation=False,
                # The engine's own output (licence trouble at start-up, stray
                # prints) goes to our stderr: never into a pipe nobody reads.
                stdout=2,
                stderr=2,
                STARTUP_TIMEOUT=self.start_timeout,
            )
        except Exception as exc:  # wolframclient's checks of the path
            raise EngineError(f"the Wolfram Engine at {self.kernel_path} cannot be used: {exc}")
        self._session = session
        try:
            session.start(block=True, timeout=self.start_timeout)
            init = WLFunction(
                WLSymbol("CompoundExpression"),
                WLFunction(WLSymbol("Begin"), _PRIVATE),
                WLFunction(WLSymbol("ToExpression"), SUPPORT_CODE),
                WLFunction(WLSymbol("End")),
                WLFunction(WLSymbol("Set"), WLSymbol("$Line"), self._line),
                WLFunction(
                    WLSymbol("First"), WLFunction(WLSymbol("StringSplit"), WLSymbol("$Version"))
                ),
            )
            result = session.evaluate_wrap_future(init).result(self.start_timeout)
            version = result.result
            problems = list(result.iter_messages_tuple())
        except Exception as exc:
            self._stop_engine()
            reason = str(exc) or type(exc).__name__
            raise EngineError(
                f"the Wolfram Engine at {self.kernel_path} did not start ({reason}); "
                f"check that it runs and is activated"
            ) from None
        if problems:
            log.warning("! kernel: the engine complained while set up: %s", problems)
        self.version = str(version)
        self._needs_restart = False
        log.info("kernel.engine %s started (%s)", self.kernel_path, self.version)
        return self.version

    def close(self) -> None:
        """Stop the engine. The kernel can :meth:`start` it again."""
        self._stop_engine()

    def _stop_engine(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        self._needs_restart = True
        # The old engine's process must be gone before a new one starts: a
        # licence may allow only so many. terminate() kills it from the
        # session's controller thread; joining that thread waits for it.
        controller = getattr(session, "kernel_controller", None)
        try:
            session.terminate()
        except Exception:  # stopping is best effort; the process is killed anyway
            log.exception("! kernel: stopping the engine failed")
        if isinstance(controller, threading.Thread) and controller.is_alive():
            try:
                controller.join(ENGINE_STOP_WAIT)
            except Exception:
                log.exception("! kernel: waiting for the engine to stop failed")

    def _ensure_engine(self) -> None:
        """Start a fresh engine after one was stopped.

        Raises:
            _Exit: it did not start.
        """
        if not self._needs_restart and self._session is not None:
            return
        try:
            self.start()
        except EngineError as exc:
            log.error("kernel: %s", exc)
            raise _Exit(EXIT_ENGINE_ENDED) from None

    def _call(self, expr: Any, limit: float | None) -> Any:
        """Evaluate ``expr`` in the engine for the request in hand.

        Args:
            expr: what to send (one of the :data:`SUPPORT_CODE` calls).
            limit: the time limit given to the engine, or None; the engine is
                stopped when it overruns it by :data:`TIMEOUT_GRACE`.

        Returns:
            wolframclient's result object.

        Raises:
            _Stopped: the request was stopped (the engine too, if ``killed``).
            _BadExpression: wolframclient could not send ``expr``.
            _Exit: the engine ended during the evaluation.
        """
        serial = self._serial
        with self._lock:
            if self._stop_serial == serial:
                assert self._stop_reason is not None
                raise _Stopped(self._stop_reason, killed=False)
        session = self._session
        try:
            future = session.evaluate_wrap_future(expr)
        except Exception as exc:
            if session.started:
                raise _BadExpression(str(exc)) from None
            log.warning("! kernel: the engine is gone: %s", exc)
            raise _Exit(EXIT_ENGINE_ENDED) from None
        future.add_done_callback(lambda _future: self._wake.set())
        hard = None if limit is None else time.monotonic() + limit + TIMEOUT_GRACE
        reason: _Stop | None = None
        while not future.done():
            with self._lock:
                if self._stop_serial == serial:
                    reason = self._stop_reason
                    break
            wait = None if hard is None else hard - time.monotonic()
            if wait is not None and wait <= 0:
                log.info("kernel: the engine overran its time limit; stopping it")
                reason = _Stop.TIMEOUT
                break
            self._wake.wait(wait)
            self._wake.clear()
        if future.done():  # an answer that came with the stop still counts
            try:
                return future.result()
            except Exception as exc:  # wolframclient: the engine died (Quit[], a crash)
                log.warning("! kernel: the Wolfram Engine ended during an evaluation: %s", exc)
                raise _Exit(EXIT_ENGINE_ENDED) from None
        assert reason is not None
        self._stop_engine()
        raise _Stopped(reason, killed=True)

    # ------------------------------------------------------------ serving

    backend = "wolfram"

    def _version(self) -> str:
        return self.version

    def _start_serving(self) -> None:
        self.start()

    def _before_request(self) -> None:
        if self._terminating:
            raise _Exit(EXIT_OK)
        self._ensure_engine()

    def _put_all(self, packets: Iterable[Packet]) -> None:
        for packet in packets:
            self._put(packet)

    def _stop_requested(self) -> None:
        self._wake.set()

    # -------------------------------------------------------- requests

    def _limit(self) -> float | None:
        if self._deadline is None:
            return None
        return max(self._deadline - time.monotonic(), 0.001)

    def _answer(self, result: Any) -> _Answer:
        """Read wolframclient's result: the record, the side packets in order."""
        try:
            value = result.result
            messages = [_message_packets(n, t) for n, t in result.iter_messages_tuple()]
            printed = list(result.iter_output())  # what EvaluationData caught besides ours
            args: tuple[Any, ...] = tuple(value.args) if isinstance(value, WLFunction) else ()
            if not (
                isinstance(value, WLFunction) and value.head == _RECORD and len(args) in (4, 6)
            ):
                # What enter[] says instead of a record, or a Throw that escaped
                # the wrappers: the value is the answer.
                return _Answer(value, interleave([], messages), complete=False)
            prints = [(int(n), str(text)) for n, text in args[1]]
        except Exception as exc:  # a malformed answer from the engine
            log.exception("! kernel: could not read the engine's answer")
            return _Answer(kernel_error("internal", f"{type(exc).__name__}: {exc}"), [])
        side = interleave(prints, messages) + [TextPacket(str(text)) for text in printed]
        answer = _Answer(args[0], side, timed_out=args[2] is True, no_input=args[3] is True)
        if len(args) == 6:
            answer.label = args[4] if isinstance(args[4], str) else None
            answer.text = args[5] if isinstance(args[5], str) else None
        return answer

    def _stopped(self, stop: _Stopped) -> list[Packet]:
        """The side packets of a stopped request, before its ``$Aborted``."""
        packets: list[Packet] = []
        if stop.reason is _Stop.TIMEOUT:
            packets += _timeout_packets()
        if stop.killed and stop.reason is not _Stop.TERMINATE:  # else no new engine comes
            packets += _restarted_packets()
        return packets

    def _result(self, answer: _Answer) -> Any:
        if answer.no_input:
            return _no_input_error()
        return answer.value

    def _evaluate_packet(self, expr: Any) -> None:
        try:
            result = self._call(WLFunction(_RUN, expr, self._limit()), self._limit())
        except _Stopped as stop:
            self._put_all(self._stopped(stop))
            self._put(ReturnPacket(_ABORTED))
            return
        except _BadExpression as exc:
            self._put(ReturnPacket(kernel_error("bad-expression", str(exc))))
            return
        answer = self._answer(result)
        self._put_all(answer.side)
        if answer.timed_out:
            self._put_all(_timeout_packets())
        self._put(ReturnPacket(self._result(answer)))

    def _enter_expression(self, expr: Any) -> None:
        n = self._line + 1
        try:
            result = self._call(WLFunction(_LINE, expr, n, self._limit(), False), self._limit())
        except _Stopped as stop:
            self._line = n
            self._put_all(self._stopped(stop))
            self._put(ReturnExpressionPacket(_ABORTED))
        except _BadExpression as exc:
            self._put(ReturnExpressionPacket(kernel_error("bad-expression", str(exc))))
        else:
            self._line = n
            answer = self._answer(result)
            self._put_all(answer.side)
            if answer.timed_out:
                self._put_all(_timeout_packets())
            self._put(ReturnExpressionPacket(self._result(answer)))
        self._put(self._input_name())

    def _enter_text(self, text: str) -> None:
        """Evaluate each expression of ``text`` as a terminal kernel reads lines."""
        lines = text.split("\n")
        start = 0  # offset in text of the expression being read
        chunk: list[str] = []
        for i, line in enumerate(lines):
            chunk.append(line)
            source = "\n".join(chunk)
            if not source.strip():
                start += len(source) + 1
                chunk = []
                continue
            n = self._line + 1
            final = i == len(lines) - 1
            try:
                result = self._call(
                    WLFunction(_ENTER, source, n, self._limit(), final), self._limit()
                )
            except _Stopped as stop:
                self._line = n
                self._put_all(self._stopped(stop))
                self._put(OutputNamePacket(f"Out[{n}]= "))
                self._put(ReturnTextPacket("$Aborted"))
                break
            answer = self._answer(result)
            value = answer.value  # a record, or what enter[] says instead
            said = value if not answer.complete and isinstance(value, str) else None
            if said == "incomplete":
                continue  # read the next line into this expression
            start_of_chunk = start
            start += len(source) + 1
            chunk = []
            if said == "empty":
                continue
            if (
                not answer.complete
                and isinstance(value, WLFunction)
                and value.head == _SYNTAX_ERROR
                and len(value.args) == 1
            ):
                self._put_all(answer.side)
                self._put(SyntaxPacket(start_of_chunk + int(value.args[0]) + 1))
                break
            self._line = n
            self._put_all(answer.side)
            if answer.timed_out:
                self._put_all(_timeout_packets())
            self._show(n, answer)
            if answer.timed_out:
                break  # the request's time is used up
        self._put(self._input_name())

    def _show(self, n: int, answer: _Answer) -> None:
        """Send ``Out[n]= `` and the result as text, unless the result is Null."""
        if answer.no_input:
            self._put(OutputNamePacket(f"Out[{n}]= "))
            error = _no_input_error()
            self._put(ReturnTextPacket(f"{KERNEL_ERROR}[{error.args[0]}, {error.args[1]}]"))
            return
        if answer.complete:
            if answer.label is not None and answer.text is not None:
                self._put(OutputNamePacket(answer.label))
                self._put(ReturnTextPacket(answer.text))
            return
        # Not a record (a Throw escaped the wrappers): format it by itself.
        if answer.value is None:
            return
        text = self._format(answer.value)
        self._put(OutputNamePacket(f"Out[{n}]= "))
        self._put(ReturnTextPacket(text))

    def _format(self, value: Any) -> str:
        expr = WLFunction(WLSymbol("ToString"), value, WLSymbol("OutputForm"))
        try:
            formatted = self._call(expr, None).result
        except (_Stopped, _BadExpression):
            return "$Aborted"
        return formatted if isinstance(formatted, str) else repr(value)

    def _input_name(self) -> InputNamePacket:
        return InputNamePacket(f"In[{self._line + 1}]:= ")


# ------------------------------------------------------------ entry points

_prepared: WolframKernel | None = None
_prepared_for: tuple[str | None, SessionClass | None] = (None, None)


def prepare(
    kernel_path: str | None = None, *, session_class: SessionClass | None = None
) -> WolframKernel:
    """Find the engine and make the process's kernel, once per process.

    Starts no thread and no engine (it may run ``wolframscript`` to find
    one), so a zygote can call it and fork children that call :func:`serve`.

    Args:
        kernel_path: the engine's kernel; None looks for it (:func:`find_engine`).
        session_class: see :class:`WolframKernel`.

    Returns:
        The process's kernel.

    Raises:
        EngineNotFound: there is no engine; the message is one sentence.
    """
    global _prepared, _prepared_for
    kernel = _prepared
    wanted = (kernel_path, session_class)
    if kernel is None or (wanted != (None, None) and wanted != _prepared_for):
        kernel = WolframKernel(find_engine(kernel_path), session_class=session_class)
        _prepared, _prepared_for = kernel, wanted
    return kernel


def serve(
    link_name: str,
    kernel_id: str = "",
    *,
    eval_timeout: float | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    kernel_path: str | None = None,
    session_class: SessionClass | None = None,
) -> int:
    """Start the engine, connect to ``link_name`` and serve requests until told to stop.

    Calls :func:`prepare` (with ``kernel_path`` and ``session_class``) if it
    has not been called yet.

    Args:
        link_name: the server's kernel link, ``"PORT@HOST"`` or ``"unix:/path"``.
        kernel_id: the id to announce in ``KernelReady``.
        eval_timeout: seconds an evaluation may run before it answers
            ``$Aborted`` by itself; None for no limit.
        connect_timeout: seconds to connect and finish the handshake.
        kernel_path: the engine's kernel; None looks for it.
        session_class: see :class:`WolframKernel`.

    Returns:
        The exit code for the process: 0 after TERMINATE or a closed link;
        3 if there is no engine, it did not start or the server could not be
        reached; 4 if the engine ended during an evaluation.
    """
    try:
        kernel = prepare(kernel_path, session_class=session_class)
    except EngineNotFound as exc:
        log.error("%s", exc)
        return EXIT_STARTUP_FAILED
    try:
        try:
            kernel.start()
        except EngineError as exc:
            log.error("%s", exc)
            return EXIT_STARTUP_FAILED
        return serve_kernel(
            kernel,
            link_name,
            kernel_id,
            eval_timeout=eval_timeout,
            connect_timeout=connect_timeout,
        )
    finally:
        kernel.close()


# --------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    return kernel_parser(
        "python -m linkserver.kernel.wolfram",
        "Run a Wolfram Engine kernel that serves packets over a link to a linkserver.",
        _kernel_path_argument,
    )


def _kernel_path_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kernel-path", default=None, metavar="PATH",
        help=f"the Wolfram Engine's WolframKernel (or wolframscript); also {KERNEL_PATH_ENV} "
        "(default: look on PATH and in the usual install locations)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the kernel process and return its exit code.

    The process's entry point, so it (not the library) configures logging.
    With no engine it writes one sentence to stderr and returns 3.
    """
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    if args.log_level != "DEBUG":
        # wolframclient logs each message an evaluation issues as a warning
        # (they reach the client as packets) and its start-up trouble, which
        # our own error repeats.
        logging.getLogger("wolframclient").setLevel(logging.ERROR)
    try:
        prepare(args.kernel_path)
    except EngineNotFound as exc:
        print(f"linkserver kernel: {exc}.", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    return serve(
        args.connect,
        args.kernel_id,
        eval_timeout=args.eval_timeout,
        connect_timeout=args.connect_timeout,
        kernel_path=args.kernel_path,
    )


if __name__ == "__main__":
    sys.exit(main())
