"""The Mathics3 evaluator of a kernel: one session that evaluates requests into packets.

:class:`MathicsEvaluator` is what a Mathics3 kernel does with a request once it
has one in hand -- ``EvaluatePacket``, ``EnterTextPacket`` and
``EnterExpressionPacket`` (docs/protocol.md §8) -- with the In/Out history,
``$Pre``/``$Post``/``$PrePrint``, the formatting of results as text, Print
and messages as side packets, and every way an evaluation can end (an
interrupt, ``Quit[]``, a Python exception inside Mathics3) turned into an
answer. It knows nothing of links, threads or signals: whatever drives it is
its :class:`Host`, which takes the packets it makes and says when the
evaluation in hand must stop.

Two hosts exist. The kernel process's loop (:class:`.mathics.MathicsKernel`)
sends the packets on its link and stops evaluations on ABORT, TERMINATE,
its time limit and signals; ``linkserver-kernel`` (:mod:`..door.wolframclient_kernel`)
evaluates in its own process and keeps the packets in a list. The plain
:class:`Host` is the second kind: nothing stops, nobody is asked for input
(``Input[]`` reads ``EndOfFile``), no client has installed functions.

The builtins the kernel adds to Mathics3 (``Input``, ``InputString``,
``Pause``, ``LinkServer`Call``) ask the evaluation's *output* for what only a
loop can do (``read_input``, ``pause``, ``call_installed``); the output made
here has none of them, and they then do what a session without a client
does. A loop passes an output of its own that has them.
"""

from __future__ import annotations

import bisect
import functools
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import mathics
from mathics.core.atoms import Integer, String
from mathics.core.attributes import A_PROTECTED
from mathics.core.builtin import Builtin
from mathics.core.evaluation import Evaluation, Output
from mathics.core.expression import Expression
from mathics.core.list import ListExpression
from mathics.core.interrupt import (
    AbortInterrupt,
    BreakInterrupt,
    ContinueInterrupt,
    EvaluationInterrupt,
    ReturnInterrupt,
    TimeoutInterrupt,
    WLThrowInterrupt,
)
from mathics.core.load_builtin import import_and_load_builtins, mathics3_builtins_modules
from mathics.core.parser import MathicsMultiLineFeeder
from mathics.core.parser import parse as parser_parse
from mathics.core.parser import util as parser_util
from mathics.core.rules import Rule
from mathics.core.symbols import Symbol, SymbolNull
from mathics.core.systemsymbols import (
    SymbolAborted,
    SymbolFailed,
    SymbolHold,
    SymbolIn,
    SymbolOut,
    SymbolOverflow,
    SymbolPause,
    SymbolThrow,
)
from mathics.eval.datetime import eval_pause, valid_time_from_expression
from mathics.session import MathicsSession
from wolframclient.language.expression import WLFunction, WLSymbol

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
from . import wl_builtins
from .loop import (
    EXIT_OK,
    KERNEL_ERROR,
    QUIT_ENDS,
    QUIT_REFUSED,
    KernelExit,
    KernelPolicy,
    kernel_error,
)
from .mathics_exprs import ConversionError, from_mathics, mend_boxes, to_mathics
from .sandbox import SANDBOX_MESSAGE
from .short_form import short_text
from .wl_builtins import Absorb

__all__ = ["HardStop", "Host", "MathicsEvaluator", "PacketOutput"]

log = logging.getLogger("linkserver.kernel")

T = TypeVar("T")

#: Heads of the text-input request ToExpression["text"] (see MathicsEvaluator._parsed).
_IN, _OUT = "System`In", "System`Out"  # where the history's rules are stored
_TO_EXPRESSION = frozenset({"ToExpression", "System`ToExpression"})

SymbolPre = Symbol("System`$Pre")
SymbolPost = Symbol("System`$Post")
SymbolPrePrint = Symbol("System`$PrePrint")
SymbolEndOfFile = Symbol("System`EndOfFile")
SymbolKernelError = Symbol(KERNEL_ERROR)


class HardStop(BaseException):
    """Raised by a host's signal handler inside a stuck evaluation.

    A BaseException, so that Mathics3 code that catches ``Exception`` does
    not swallow it; :meth:`MathicsEvaluator.guarded` answers it ``$Aborted``.
    """


class Host:
    """What drives a :class:`MathicsEvaluator`: where its packets go, when it stops.

    This base drives an evaluator that is never stopped from outside: a
    subclass implements :meth:`put`, and a loop that can stop evaluations
    overrides the rest.
    """

    #: How the kernel may be used: a shared one refuses ``Quit[]``.
    policy = KernelPolicy()

    def put(self, packet: Packet) -> None:
        """Take one packet of the answer to the request in hand."""
        raise NotImplementedError

    def put_together(self, packets: Sequence[Packet]) -> None:
        """Take packets that belong together, all of them or none.

        The packets of one Print or message, and an answer's last ones
        (``OutputNamePacket``, ``ReturnTextPacket``, ``InputNamePacket``): a
        host may send them in one write.
        """
        for packet in packets:
            self.put(packet)

    def must_stop(self) -> bool:
        """True if the evaluation running now must stop."""
        return False

    def preempt_waits(self) -> bool:
        """True if a preemptive request waits to be served at the next safe point."""
        return False

    def timeout_to_say(self) -> bool:
        """True, once per stop, if the evaluation stopped because its time ran out."""
        return False

    def safe_point(self, ev: Any) -> None:
        """At a safe point of ``ev`` whose ``stopped`` flag is set: stop, or go on.

        Raises:
            TimeoutInterrupt: the evaluation must stop (what Mathics3 itself does).
        """
        raise TimeoutInterrupt

    def absorb_abort(self, ev: Any) -> Absorb:
        """From ``CheckAbort`` in ``ev``: take back a pending abort, if there is one."""
        return Absorb.NONE


class PacketOutput(Output):  # type: ignore[misc]
    """Mathics3's output hook: Print and messages become side packets at once.

    Mathics3 calls ``out()`` for every ``Print`` and message while it
    evaluates (``Evaluation.print_out``, ``Evaluation.message``).
    """

    def __init__(self, evaluator: MathicsEvaluator) -> None:
        self.evaluator = evaluator

    def out(self, out: Any) -> None:
        self.evaluator.side_output(out)

    def clear(self, wait: Any) -> None:
        """Clear rich output (Manipulate's hook): nothing to clear in packets."""

    def display(self, data: Any, metadata: Any) -> None:
        """Show rich output (Manipulate's hook): not carried by this kernel."""


class _KernelEvaluation(Evaluation):  # type: ignore[misc]
    """Mathics3's ``Evaluation``, whose ``stopped`` flag means "look now".

    Mathics3 calls :meth:`check_stopped` at every safe point; while the flag
    is clear this costs what Mathics3's own method costs. When it is set, the
    host decides (:meth:`Host.safe_point`).
    """

    def __init__(self, host: Host, definitions: Any, output: Output) -> None:
        super().__init__(definitions=definitions, output=output, catch_interrupt=False)
        self._safe_point = host.safe_point
        # What AbortProtect and CheckAbort ask (wl_builtins.aborts): while
        # abort_protect > 0 a stop waits; absorb_abort() takes back an ABORT.
        self.abort_protect = 0
        self.absorb_abort = functools.partial(host.absorb_abort, self)

    def check_stopped(self) -> None:
        if self.stopped:
            self._safe_point(self)


class MathicsEvaluator:
    """One Mathics3 session, evaluating the requests its host hands it.

    What each request gets back is the table of
    :class:`.mathics.MathicsKernel` (docs/protocol.md §8); every packet goes to
    :meth:`Host.put`. The methods run in the host's evaluating thread.

    Args:
        host: what takes the packets and says when to stop.
        output: makes Mathics3's output hook for this evaluator; a
            :class:`PacketOutput` by default. A loop makes one that can also
            ask the client for input, call installed functions and pause (see
            the module's docstring).
        export_contexts: the ``Definitions`` (or what ``from_mathics`` reads of
            one) by which results are named on the way out; the session's own
            by default.
    """

    def __init__(self, host: Host,
                 output: Callable[[MathicsEvaluator], Output] = PacketOutput, *,
                 export_contexts: Any = None) -> None:
        if not mathics3_builtins_modules:  # it warns when called twice
            import_and_load_builtins()
        mend_boxes()  # before any evaluation: Mathics3's formatting needs it too
        self.host = host
        session = MathicsSession(catch_interrupt=False)
        self.definitions: Any = session.definitions
        for builtin in (
            _InputBuiltin(expression=False),
            _InputStringBuiltin(expression=False),
            _PauseBuiltin(expression=False),
            _CallBuiltin(expression=False),
            _LinkServerBuiltin(expression=False),
            *wl_builtins.builtins(self.definitions),  # SocketConnect, BinarySerialize, ...
        ):
            builtin.contribute(self.definitions)
        self.definitions.clear_cache()
        # $Line has no value until Mathics3 numbers a first line; give it its
        # value, 0, so that $Line and In/Out work before that too.
        self.definitions.set_line_no(0)
        self._export_contexts = self.definitions if export_contexts is None else export_contexts
        # The In/Out rules this evaluator stored, by (symbol, line) (see _remember).
        self._history_rules: dict[tuple[str, int], Any] = {}
        # id of each rule in _history_rules -> its sort key (a rule's key is
        # computed anew at every look, and insort looks at log n of them)
        self._rule_keys: dict[int, Any] = {}
        self._oldest_line = 0  # no line before it has a rule in _history_rules
        hook = output(self)
        #: The evaluation of requests, and the one of nested preemptive
        #: requests; :attr:`evaluation` is the one in use (the host switches).
        self.main_evaluation = _KernelEvaluation(host, self.definitions, hook)
        self.preempt_evaluation = _KernelEvaluation(host, self.definitions, hook)
        self.evaluation: Any = self.main_evaluation
        #: True while Mathics3 code runs for the request in hand (written by the
        #: evaluating thread only): where a host's signal may raise HardStop.
        self.in_eval = False

    @staticmethod
    def version() -> str:
        """Mathics3's version."""
        return str(mathics.__version__)

    def finish_request(self) -> None:
        """Forget the Print and messages Mathics3 keeps of the request just answered."""
        self.evaluation.out.clear()

    def to_mathics(self, expr: Any) -> Any:
        """``expr`` (a wolframclient expression) as a Mathics3 one."""
        return to_mathics(expr, self.definitions)

    def export(self, result: Any) -> Any:
        """``result`` as a wolframclient expression, or a ``KernelError`` saying why not."""
        try:
            return from_mathics(result, self._export_contexts)
        except ConversionError as exc:
            return kernel_error("unconvertible", str(exc))

    def evaluate_packet(self, expr: Any) -> None:
        query = self._parsed(expr)
        if query is None:
            try:
                query = self.to_mathics(expr)
            except ConversionError as exc:
                self.host.put(ReturnPacket(kernel_error("bad-expression", str(exc))))
                return
        ev = self.evaluation
        result = self.guarded(lambda: query.evaluate(ev))
        self.host.put(ReturnPacket(self.export(result)))

    def _parsed(self, expr: Any) -> Any:
        """``ToExpression["text"]`` (what ``Client.evaluate("text")`` sends) parsed, or None.

        Evaluating ``ToExpression`` costs about 1.5 times parsing the text
        and evaluating the result directly (its own feeder, options and
        message handling), so text that parses cleanly as one expression is
        parsed here; anything else -- a syntax error, several lines, a call
        with options -- is left to ``ToExpression`` itself, for its messages
        and its answer.
        """
        if not (
            type(expr) is WLFunction
            and len(expr.args) == 1
            and type(expr.args[0]) is str
            and getattr(expr.head, "name", None) in _TO_EXPRESSION
        ):
            return None
        feeder = MathicsMultiLineFeeder(expr.args[0], "")
        try:
            query = parser_parse(self.definitions, feeder)
        except Exception:  # any parse failure: ToExpression itself says why
            return None
        if query is None or feeder.messages or not feeder.empty():
            return None
        return query

    def enter_expression(self, expr: Any) -> None:
        try:
            query = self.to_mathics(expr)
        except ConversionError as exc:
            self.host.put(ReturnExpressionPacket(kernel_error("bad-expression", str(exc))))
        else:
            result, _ = self.evaluate_line(query)
            self.host.put(ReturnExpressionPacket(self.export(result)))
        self.host.put(self.input_name())

    def enter_text(self, text: str) -> None:
        ev = self.evaluation
        feeder = MathicsMultiLineFeeder(text, "")
        lines = feeder.lines
        while not feeder.empty() and not self.host.must_stop():
            start = sum(len(line) for line in lines[: feeder.lineno])
            parsed = self.guarded(lambda: ev.parse_feeder_returning_code_and_messages(feeder))
            if not isinstance(parsed, tuple):  # the request was stopped
                break
            query, _, messages = parsed
            if query is None:
                if messages:  # a syntax error; its messages have been sent
                    self.host.put(SyntaxPacket(start + _syntax_error_offset() + 1))
                    break
                continue  # blanks or comments only
            result, line_no = self.evaluate_line(query)
            if result is not SymbolNull:
                answer = [OutputNamePacket(self._output_name(result, line_no)),
                          ReturnTextPacket(self.format(result))]
                if feeder.empty():  # the last line: the prompt goes with its answer
                    self.host.put_together([*answer, self.input_name()])
                    return
                self.host.put_together(answer)
        self.host.put(self.input_name())

    def input_name(self) -> InputNamePacket:
        return InputNamePacket(f"In[{self.definitions.get_line_no() + 1}]:= ")

    def _output_name(self, result: Any, line_no: int) -> str:
        defs = self.definitions
        head = result.get_head()
        if head in defs.outputforms:  # "Out[1]//FullForm= ", as a Wolfram kernel says
            return f"Out[{line_no}]//{defs.shorten_name(head.name)}= "
        return f"Out[{line_no}]= "

    def format(self, result: Any) -> str:
        """Return ``result`` as OutputForm text (after ``$PrePrint``)."""
        if result is SymbolAborted:
            return "$Aborted"
        ev = self.evaluation
        pre_print = self.definitions.get_ownvalues("System`$PrePrint")
        if not pre_print:
            short = short_text(result, self.definitions)
            if short is not None:
                return short

        def format_it() -> Any:
            shown = result
            if pre_print:
                shown = Expression(SymbolPrePrint, result).evaluate(ev)
            return ev.format_output(shown, "text")

        text = self.guarded(format_it)
        if isinstance(text, str):
            return text
        return "$Aborted" if text is SymbolAborted else str(text)

    def evaluate_line(self, query: Any) -> tuple[Any, int]:
        """Evaluate ``query`` as input line n: In[n], $Pre, $Post, Out[n], $Line.

        This is what Mathics3's ``Evaluation.evaluate`` does, without its
        formatting (only EnterTextPacket wants text) and without its reset of
        the stop flag, which would lose an abort that arrived just before.
        """
        ev = self.evaluation
        defs = self.definitions
        line_no = defs.get_line_no() + 1
        defs.set_line_no(line_no)
        history = defs.get_history_length()
        if history > 0:
            self._remember(_IN, Rule(Expression(SymbolIn, Integer(line_no)), query), line_no)

        def evaluate() -> Any:
            if defs.get_ownvalues("System`$Pre"):
                value = Expression(SymbolPre, query).evaluate(ev)
            else:
                value = query.evaluate(ev)
            if defs.get_ownvalues("System`$Post"):
                value = Expression(SymbolPost, value).evaluate(ev)
            return value

        result = self.guarded(evaluate)
        if history > 0:
            stored = ev.get_stored_result(result, defs.outputforms)
            self._remember(_OUT, Rule(Expression(SymbolOut, Integer(line_no)), stored), line_no)
            # Forget lines older than $HistoryLength, as Evaluation.evaluate does.
            self._forget_before(line_no - defs.get_history_length() + 1)
        return result, line_no

    def _forget_before(self, first_kept: int) -> None:
        """Remove the ``In``/``Out`` rules this kernel stored for lines before ``first_kept``.

        Mathics3's ``unset`` compares the pattern with every rule of the
        symbol (``SameQ`` each): with a full history that was about 2 ms per
        input line, for the two or four rules a line drops. The rules stored
        by :meth:`_remember` are removed by identity instead; one that is no
        longer there (the user redefined ``Out[n]``) takes the general path.
        """
        if self._oldest_line >= first_kept:
            return
        stored_rules = self._history_rules
        if first_kept - self._oldest_line <= len(stored_rules):  # usually one line to drop
            lines = range(self._oldest_line, first_kept)
            stale = [(name, line) for line in lines for name in (_IN, _OUT)
                     if (name, line) in stored_rules]
        else:
            stale = [key for key in stored_rules if key[1] < first_kept]
        self._oldest_line = first_kept
        defs = self.definitions
        for key in stale:
            name, line = key
            rule = stored_rules.pop(key)
            self._rule_keys.pop(id(rule), None)
            definition = defs.get_user_definition(name)
            rules = definition.downvalues
            # From the end: insort puts a line's rule before the older ones of
            # equal precedence, so the oldest is last.
            for i in range(len(rules) - 1, -1, -1):
                if rules[i] is rule:
                    del rules[i]
                    defs.mark_changed(definition)
                    defs.clear_definitions_cache(name)
                    break
            else:
                head = SymbolIn if name == _IN else SymbolOut
                defs.unset(name, Expression(head, Integer(line)))

    def _remember(self, name: str, rule: Any, line_no: int) -> None:
        """Store ``In[n]``/``Out[n]`` as a rule, in O(log n) for a line never stored.

        Mathics3's ``add_rule`` first compares the new rule with every rule
        of the symbol (to replace one with the same pattern): with the whole
        session's history that is milliseconds per input, growing without
        bound. A line number seen for the first time has no such rule, so it
        only needs its sorted place; anything else takes the general path.
        ``name`` is the symbol's full name (no context lookup per line), and
        the sort keys of the rules stored here are computed once.
        """
        defs = self.definitions
        key = (name, line_no)
        if key in self._history_rules:
            old = self._history_rules[key]
            self._rule_keys.pop(id(old), None)
            defs.add_rule(name, rule)  # replaces the rule of the same pattern
            self._history_rules[key] = rule
            return
        self._history_rules[key] = rule
        self._oldest_line = min(self._oldest_line, line_no)  # $Line may have been set back
        keys = self._rule_keys
        keys[id(rule)] = rule.pattern_precedence

        def sort_key(stored: Any) -> Any:
            known = keys.get(id(stored))
            return stored.pattern_precedence if known is None else known

        definition = defs.get_user_definition(name)
        bisect.insort_left(definition.downvalues, rule, key=sort_key)
        defs.mark_changed(definition)
        defs.clear_definitions_cache(name)

    def guarded(self, fn: Callable[[], T]) -> T | Any:
        """Run Mathics3 code for the request in hand; turn every outcome into a result.

        Interrupts become what Mathics3's top level makes of them
        (``$Aborted``, ``Hold[Break[]]``, ...); a Python exception becomes
        ``linkserver`KernelError["internal", ...]``.

        Raises:
            KernelExit: the link ended, or ``Quit[]`` was evaluated.
        """
        ev = self.evaluation
        # Mathics3's per-evaluation state, reset as Evaluation.evaluate does.
        ev.recursion_depth = 0
        ev.iteration_count = 0
        ev.timeout = False
        ev.start_time = time.time()
        ev.stopped = False
        if self.host.must_stop():  # read after the reset (_request_stop)
            return self._stopped()
        if self.host.preempt_waits():
            ev.stopped = True  # a PREEMPT hint the reset above may have wiped
        try:
            self.in_eval = True
            try:
                result = fn()
            finally:
                self.in_eval = False
            if self.host.must_stop():
                # Mathics3's pattern matcher swallows the TimeoutInterrupt that
                # the stop flag raises (mathics/core/pattern.py, match()): the
                # rule being tried then "does not match" and a stopped
                # evaluation can return normally, some of it unevaluated.
                return self._stopped()
            return result
        except (AbortInterrupt, TimeoutInterrupt, HardStop):
            return self._stopped()
        except ReturnInterrupt as ret:
            return ret.expr
        except BreakInterrupt:
            return self._top_level_interrupt("Break", "nofdw", "System`Break")
        except ContinueInterrupt:
            return self._top_level_interrupt("Continue", "nofdw", "System`Continue")
        except WLThrowInterrupt as thrown:
            return self._uncaught_throw(thrown)
        except SystemExit as exc:  # Quit[] and Exit[], however reached
            if self.host.policy.refuses_quit:
                # A shared kernel: ending it would end every client's session.
                # The evaluation is abandoned where Quit[] ran, as an abort is.
                self.message("LinkServer", "noquit", String(QUIT_REFUSED))
                return SymbolFailed
            if self.host.policy.mode == "pool":  # the kernel is the asker's alone: say so
                self.message("LinkServer", "quit", String(QUIT_ENDS))
            raise KernelExit(exc.code if isinstance(exc.code, int) else EXIT_OK) from None
        except RecursionError:
            log.warning("! kernel: Python's recursion limit hit in an evaluation")
            return _internal_error("RecursionError: the evaluation nested too deeply")
        except ValueError as exc:
            if str(exc) in ("mpz.pow outrageous exponent", "mpq.pow outrageous exp num"):
                return self._overflow()  # as Evaluation.evaluate answers it
            if "integer string conversion" in str(exc):
                # Mathics3 (and sympy under it) convert some integers to text
                # with Python's int/str, which it caps at 7000 digits.
                return _internal_error(
                    f"Mathics3 converts integers to text only up to "
                    f"$MaxLengthIntStringConversion = {sys.get_int_max_str_digits()} digits "
                    "here; evaluate $MaxLengthIntStringConversion = 0 to lift the cap (each "
                    "conversion then costs time quadratic in its digits)"
                )
            log.exception("! kernel: Mathics3 raised in an evaluation")
            return _internal_error(f"{type(exc).__name__}: {exc}")
        except PermissionError as exc:
            if self.host.policy.scratch is None:
                log.exception("! kernel: Mathics3 raised in an evaluation")
                return _internal_error(f"{type(exc).__name__}: {exc}")
            # The sandbox refused something a built-in did not expect to fail.
            # The audit hook has said what (LinkServer::sandbox); if the OS
            # refused it first, say so here. The answer is a plain $Failed.
            if not str(exc.strerror).startswith("the sandbox"):
                what = f"access to {exc.filename}" if exc.filename is not None else exc.strerror
                self.message("LinkServer", "sandbox", String(str(what)))
            return SymbolFailed
        except Exception as exc:  # the documented boundary: answer, don't die
            log.exception("! kernel: Mathics3 raised in an evaluation")
            return _internal_error(f"{type(exc).__name__}: {exc}")

    def message(self, symbol: str, tag: str, *args: Any) -> None:
        """Issue a message from the kernel's own top level (it must not fail in turn)."""
        ev = self.evaluation
        ev.stopped = False
        try:
            ev.message(symbol, tag, *args)
        except (EvaluationInterrupt, HardStop):
            pass
        except Exception:  # a message is not worth the kernel
            log.exception("! kernel: could not issue %s::%s", symbol, tag)

    def _stopped(self) -> Any:
        ev = self.evaluation
        ev.stopped = False
        ev.recursion_depth = 0
        if self.host.timeout_to_say():
            self.message("General", "timeout")
        return SymbolAborted

    def _top_level_interrupt(self, symbol: str, tag: str, head: str) -> Any:
        self.message(symbol, tag)
        return Expression(SymbolHold, Expression(Symbol(head)))

    def _uncaught_throw(self, thrown: Any) -> Any:
        if thrown.tag:
            expr = Expression(SymbolThrow, thrown.value, thrown.tag)
        else:
            expr = Expression(SymbolThrow, thrown.value)
        self.message("Throw", "nocatch", expr)
        return Expression(SymbolHold, expr)

    def _overflow(self) -> Any:
        self.message("General", "ovfl")
        return Expression(SymbolOverflow)

    def side_output(self, out: Any) -> None:
        """Send a Print or a message as it happens (Mathics3's ``Output.out``)."""
        if getattr(out, "is_message", False):
            symbol = out.symbol if isinstance(out.symbol, str) else out.symbol.get_name()
            self.host.put_together((MessagePacket(WLSymbol(symbol), out.tag),
                                    TextPacket(f"{symbol}::{out.tag}: {out.text}")))
        else:
            self.host.put_together((TextPacket(str(out.text)),))


# ---------------------------------------------------- the kernel's builtins


def _read(evaluation: Any, prompt: Any, kind: str) -> Any:
    """Ask the client through the evaluation's output (a loop's, with ``read_input``)."""
    reader = getattr(evaluation.output, "read_input", None)
    if reader is None:  # a session without a client: nothing to read
        return SymbolEndOfFile
    if prompt is None:
        text = "? "  # what a terminal Wolfram kernel shows for Input[]
    elif isinstance(prompt, String):
        text = prompt.value
    else:
        text = str(evaluation.format_output(prompt, "text"))
    return reader(evaluation, text, kind)


def _input_builtin(name: str, kind: str, asks: str, packet: str) -> type[Builtin]:
    """The builtin ``name[]``/``name[prompt]``: ask the client through the output.

    Mathics3 10 has no ``Input``: ours asks the client over the link. Mathics3
    reads each rule's pattern from its method's docstring, so the two methods
    get theirs here.
    """

    def eval_plain(self: Builtin, evaluation: Any) -> Any:
        return _read(evaluation, None, kind)

    def eval_prompt(self: Builtin, prompt: Any, evaluation: Any) -> Any:
        return _read(evaluation, prompt, kind)

    eval_plain.__doc__ = f"{name}[]"
    eval_prompt.__doc__ = f"{name}[prompt_]"
    doc = f"""
    <url>:WMA link:https://reference.wolfram.com/language/ref/{name}.html</url>
    <dl>
      <dt>'{name}[]'
      <dd>asks the client for {asks} (an '{packet}') and returns it.
      <dt>'{name}'[$prompt$]
      <dd>shows $prompt$ while asking.
    </dl>
    """
    return type(f"_{name}Builtin", (Builtin,), {
        "__doc__": doc, "__module__": __name__, "name": name, "context": "System`",
        "attributes": A_PROTECTED, "summary_text": f"read {asks} from the client",
        "eval": eval_plain, "eval_prompt": eval_prompt,
    })


_InputBuiltin = _input_builtin("Input", "expression", "an expression", "InputPacket")
_InputStringBuiltin = _input_builtin("InputString", "string", "a line of text",
                                     "InputStringPacket")


class _PauseBuiltin(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/Pause.html</url>
    <dl>
      <dt>'Pause[n]'
      <dd>pauses for at least $n$ seconds.
    </dl>
    """

    # Mathics3's Pause sleeps in slices and looks only at TimeConstrained's
    # flag: a preemptive request or an abort waited for the whole pause. Ours
    # waits on the kernel's wake-up, so both are served at once (the seed's
    # recipe is a kernel looping on Pause while preemptive links are served).
    name = "Pause"
    context = "System`"
    attributes = A_PROTECTED
    messages = {
        "numnm": "Non-negative machine-sized number expected at position 1 in `1`.",
    }
    summary_text = "pause for a number of seconds"

    def eval(self, n: Any, evaluation: Any) -> Any:
        "Pause[n_]"
        try:
            seconds = valid_time_from_expression(n, evaluation)
        except ValueError:
            evaluation.message("Pause", "numnm", Expression(SymbolPause, n))
            return None
        pause = getattr(evaluation.output, "pause", None)
        if pause is None:  # a session without a kernel loop
            eval_pause(seconds, evaluation)
        else:
            pause(evaluation, seconds)
        return SymbolNull


class _CallBuiltin(Builtin):  # type: ignore[misc]
    """
    <dl>
      <dt>'LinkServer`Call'[$owner$, $index$, {$args$...}]
      <dd>calls function $index$ installed by client $owner$ with $args$ and returns its result.
    </dl>
    """

    # What an installed function's definition evaluates (docs/protocol.md §8.10).
    name = "Call"
    context = "LinkServer`"
    attributes = A_PROTECTED
    summary_text = "call a function a client installed"

    def eval(self, owner: Any, index: Any, args: Any, evaluation: Any) -> Any:
        "LinkServer`Call[owner_Integer, index_Integer, args_List]"
        caller = getattr(evaluation.output, "call_installed", None)
        if caller is None:  # a session without a client
            evaluation.message("LinkServer", "nocall", String("no client is connected"))
            return SymbolFailed
        return caller(evaluation, owner.value, index.value, args)


class CallRule(Rule):  # type: ignore[misc]
    """An installed function's definition, applied without matching its pattern.

    ``PyFib[args___] :> LinkServer`Call[owner, index, {args}]`` (docs/protocol.md
    §8.10) matches every ``PyFib[...]``; Mathics3 would still match
    ``args___`` and then ``LinkServer`Call``'s own pattern, about 150 us of a
    call's 200 in the kernel. This rule goes straight to the call. It keeps
    the pattern and the replacement of the rule ``SetDelayed`` stored, so
    ``DownValues`` and ``Definition`` show the same definition, and
    ``ReplaceList`` and a session without a client take the ordinary way.
    """

    def __init__(self, rule: Rule, owner: int, index: int) -> None:
        super().__init__(rule.pattern.expr, rule.replace, system=rule.system)
        self.location = rule.location
        self.owner = owner
        self.index = index

    def apply(self, expression: Any, evaluation: Any, fully: bool = True,
              return_list: bool = False, max_list: int | None = None) -> Any:
        caller = getattr(evaluation.output, "call_installed", None)
        if return_list or caller is None or not isinstance(expression, Expression):
            return super().apply(expression, evaluation, fully, return_list, max_list)
        return caller(evaluation, self.owner, self.index, ListExpression(*expression.elements))


def install_call_rule(definitions: Any, name: str, owner: int, index: int) -> bool:
    """Put a :class:`CallRule` in place of the rule that defines ``name`` to call ``owner``'s ``index``.

    Returns whether that rule was found (the definition evaluated as it should).
    """
    downvalues = definitions.get_downvalues(definitions.lookup_name(name))
    for position, rule in enumerate(downvalues):
        replace = getattr(rule, "replace", None)
        if (type(rule) is Rule and isinstance(replace, Expression)
                and replace.get_head_name() == "LinkServer`Call"
                and [getattr(e, "value", None) for e in replace.elements[:2]] == [owner, index]):
            downvalues[position] = CallRule(rule, owner, index)
            return True
    return False


class _LinkServerBuiltin(Builtin):  # type: ignore[misc]
    """
    <dl>
      <dt>'LinkServer'
      <dd>is the symbol the server's messages are attached to.
    </dl>
    """

    name = "LinkServer"
    context = "System`"
    summary_text = "messages of the link server"
    messages = {
        "nocallee": "`1`",
        "nocall": "`1`",
        "callfailed": "`1`",
        "noquit": "`1`",
        "quit": "`1`",
        "sandbox": SANDBOX_MESSAGE,
    }



def _internal_error(text: str) -> Any:
    return Expression(SymbolKernelError, String("internal"), String(text))


def _syntax_error_offset() -> int:
    """Return where the last failed parse stopped, counted from its text's start."""
    # The parser Mathics3's Evaluation.parse* use is a module global; its
    # current token is the one it could not take (None if the tokeniser
    # itself failed, e.g. in an unterminated string).
    parser = parser_util.parser
    token = getattr(parser, "current_token", None)
    if token is not None:
        return int(token.pos)
    return int(parser.tokeniser.pos)
