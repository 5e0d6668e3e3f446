"""The Wolfram Engine backend, driven over a link, with Mathics3 playing the engine.

The Wolfram Engine cannot be installed on the machines that run this suite,
so the fake sits at the lowest boundary that can be faked in-process: the
backend gets wolframclient's own ``WolframLanguageSession`` (constructed
with exactly the arguments production passes), whose controller -- the
thread that in wolframclient 1.4.0 starts the engine process and talks WXF
with it over ZeroMQ (``WolframKernelController``) -- is replaced by
:class:`FakeEngineController`. It keeps that class's thread, task queue,
start/terminate and restart logic and replaces only its three engine-facing
steps: ``_kernel_start`` (boot the fake engine), ``_do_evaluate`` (evaluate
the WXF the session sends, answer what the engine's ``initkernel.m`` would
send back: ``BinarySerialize[EvaluationData[...]]`` with ``Result`` as a
serialized ByteArray and ``MessagesText`` as plain message text) and
``terminate`` (which kills the engine, as the real one's SIGKILL does).
wolframclient's own result class parses the answers.

The engine is :class:`FakeEngine`, one Mathics3 session for the module (it
takes seconds to load). Booting it resets every user definition, as a fresh
engine process would start empty. It evaluates the backend's Wolfram
Language wrappers for real, so what is tested here is the backend's code in
both languages; what only a real Wolfram Engine can show is listed in
``tests/integration/test_wolfram_kernel.py``. Where Mathics3 10 differs from
the Wolfram Language in what the backend relies on, the fake engine follows
the Wolfram Language's documentation: it adds ``SyntaxLength`` (a Python
builtin over Mathics3's parser), ``System`Input`` and ``InputString`` (in the
engine they read its stdin), a ``$Version`` that starts with a Wolfram
version number, and ``ToExpression[s, InputForm, h]`` that wraps h around
the expression *before* evaluating it (Mathics3 evaluates first); and, for
the test of a stuck engine, ``Hang[s]``, which ignores ``TimeConstrained`` as
engine code stuck in a library call would. Mathics3 keeps no
``$MessageList``, so here prints come before messages.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mathics.builtin.atomic.strings import ToExpression as _MathicsToExpression
from mathics.core.atoms import Integer, String
from mathics.core.attributes import A_PROTECTED
from mathics.core.builtin import Builtin
from mathics.core.expression import Expression
from mathics.core.interrupt import AbortInterrupt, TimeoutInterrupt, WLThrowInterrupt
from mathics.core.load_builtin import import_and_load_builtins, mathics3_builtins_modules
from mathics.core.parser import MathicsFileLineFeeder
from mathics.core.parser.convert import convert
from mathics.core.parser.util import parser as mathics_parser
from mathics.core.symbols import Symbol
from mathics.core.systemsymbols import SymbolInputForm
from mathics.session import MathicsSession
from mathics_scanner import IncompleteSyntaxError, SingleLineFeeder
from mathics_scanner import SyntaxError as MathicsSyntaxError
from mathics_scanner.location import ContainerKind
from timed_threads import TimeoutException
from wolframclient.evaluation import WolframLanguageSession
from wolframclient.evaluation.kernel.kernelcontroller import WolframKernelController
from wolframclient.evaluation.result import WolframKernelEvaluationResult
from wolframclient.exception import WolframKernelException
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol
from wolframclient.serializers import export

import linkserver
from linkserver import wxf
from linkserver.kernel import wolfram
from linkserver.kernel.mathics_exprs import ConversionError, from_mathics, to_mathics
from linkserver.kernel.wire import KernelWire, connect_wire
from linkserver.portal import get_portal
from linkserver.protocol import UrgentMessage
from linkserver.protocol.packets import MessagePacket, TextPacket
from tests.packets import collect
from tests.timeouts import TIMEOUT, wait_until

ABORTED = WLSymbol("$Aborted")
FAKE_VERSION = "14.1.0"


# ===================================================================== the fake


def _classify(text: str) -> str:
    feeder = SingleLineFeeder(text, "<SyntaxLength>", ContainerKind.STRING)
    try:
        mathics_parser.parse(feeder)
    except IncompleteSyntaxError:
        return "incomplete"
    except MathicsSyntaxError:
        return "error"
    return "complete"


class _SyntaxLength(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/SyntaxLength.html</url>
    <dl>
      <dt>'SyntaxLength["string"]'
      <dd>the number of characters at the start of string that are correct input.
    </dl>
    """

    name = "SyntaxLength"
    context = "System`"
    attributes = A_PROTECTED
    summary_text = "length of the syntactically correct start of a string"

    def eval(self, string: Any, evaluation: Any) -> Any:
        "SyntaxLength[string_String]"
        # As documented for the Wolfram Language: past the end if the string
        # is correct so far but incomplete, else where the error is.
        text = string.value
        kind = _classify(text)
        if kind == "complete":
            return Integer(len(text))
        if kind == "incomplete":
            return Integer(len(text) + 1)
        k = len(text) - 1
        while k > 0 and _classify(text[:k]) == "error":
            k -= 1
        return Integer(k)


class _Hang(Builtin):  # type: ignore[misc]
    """
    <dl>
      <dt>'Hang[s]'
      <dd>waits s seconds, deaf to TimeConstrained (test engine only).
    </dl>
    """

    name = "Hang"
    context = "System`"
    summary_text = "a computation TimeConstrained cannot stop"

    def eval(self, seconds: Any, evaluation: Any) -> Any:
        "Hang[seconds_]"
        end = time.monotonic() + float(seconds.to_python())
        while time.monotonic() < end:
            try:
                if FakeEngine.instance is not None and FakeEngine.instance.killed:
                    raise TimeoutInterrupt
                time.sleep(0.01)
            except TimeoutException:  # TimeConstrained's interrupt: ignored
                continue
        return Symbol("System`Null")


class _ToExpression(_MathicsToExpression):  # type: ignore[misc]
    __doc__ = _MathicsToExpression.__doc__
    name = "ToExpression"
    context = "System`"

    def eval(self, seq: Any, evaluation: Any) -> Any:
        "ToExpression[seq__]"
        # The Wolfram Language applies h before evaluating; Mathics3 10 after.
        args = seq.get_sequence()
        if not (len(args) == 3 and isinstance(args[0], String) and args[1] is SymbolInputForm):
            return super().eval(seq, evaluation)
        result = None
        with io.StringIO(args[0].value) as text:
            text.name = "ToExpression"
            feeder = MathicsFileLineFeeder(text)
            while not feeder.empty():
                try:
                    ast = mathics_parser.parse(feeder)
                except MathicsSyntaxError:
                    return Symbol("System`$Failed")
                finally:
                    feeder.send_messages(evaluation)
                if ast is not None:
                    query = convert(ast, evaluation.definitions)
                    result = Expression(args[2], query).evaluate(evaluation)
        return result


class _Input(Builtin):  # type: ignore[misc]
    """
    <dl>
      <dt>'Input[]'
      <dd>reads the engine's stdin (which nobody writes: it would hang).
    </dl>
    """

    name = "Input"
    context = "System`"
    summary_text = "read from stdin (test engine: $Failed)"

    def eval(self, evaluation: Any) -> Any:
        "Input[___]"
        return Symbol("System`$Failed")


class _InputString(_Input):  # type: ignore[misc]
    __doc__ = _Input.__doc__
    name = "InputString"

    def eval(self, evaluation: Any) -> Any:
        "InputString[___]"
        return Symbol("System`$Failed")


class FakeEngine:
    """A Wolfram Engine process as wolframclient's controller sees it, played by Mathics3.

    One engine runs at a time (the controller that booted it last); killing
    it stops its evaluation wherever it is.
    """

    instance: FakeEngine | None = None

    def __init__(self) -> None:
        if not mathics3_builtins_modules:
            import_and_load_builtins()
        session = self.session = MathicsSession(catch_interrupt=False)
        self.definitions = session.definitions
        self.evaluation = session.evaluation
        for builtin in (
            _SyntaxLength(expression=False),
            _Hang(expression=False),
            _ToExpression(expression=False),
            _Input(expression=False),
            _InputString(expression=False),
        ):
            builtin.contribute(self.definitions)
        self.definitions.clear_cache()
        self.starts = 0
        self.fail_next_start = False
        self.owner: Any = None  # the controller whose engine is running
        self.killed = False
        self.busy = threading.Event()  # an evaluation is running
        self.idle = threading.Event()
        self.idle.set()
        self.requests: list[Any] = []  # what the backend sent, decoded
        FakeEngine.instance = self

    def boot(self, controller: Any) -> None:
        if self.fail_next_start:
            self.fail_next_start = False
            raise WolframKernelException(f"Failed to communicate with kernel: {controller.kernel}.")
        self.definitions.reset_user_definitions()  # a new process starts empty
        self.evaluation.out.clear()
        self.evaluation.stopped = False
        self._run(
            f'Unprotect[$Version]; $Version = "{FAKE_VERSION} for Mathics3 (a fake engine)"; '
            "Protect[$Version];"
        )
        self.owner = controller
        self.killed = False
        self.starts += 1

    def _run(self, code: str) -> Any:
        return self.session.evaluate(code)

    def kill(self, controller: Any) -> None:
        if self.owner is not controller:
            return
        self.owner = None
        self.killed = True
        self.evaluation.stopped = True
        assert self.idle.wait(TIMEOUT), "the fake engine did not stop"

    def evaluate(self, controller: Any, data: bytes) -> bytes:
        """Answer as initkernel.m's socketEventHandler does."""
        if self.owner is not controller:
            raise WolframKernelException("Kernel is not running anymore.")
        ev = self.evaluation
        ev.out.clear()
        ev.stopped = False
        ev.recursion_depth = 0
        ev.iteration_count = 0
        ev.timeout = False
        self.idle.clear()
        self.busy.set()
        expr = wxf.loads(data)
        self.requests.append(expr)
        try:
            try:
                result = to_mathics(expr, self.definitions).evaluate(ev)
            except ConversionError:  # what BinaryDeserialize cannot read
                ev.message("BinaryDeserialize", "invwxf")
                result = Symbol("System`$Failed")
            except (AbortInterrupt, TimeoutInterrupt):
                result = Symbol("System`$Aborted")
            except WLThrowInterrupt as thrown:  # uncaught: as the Wolfram Language answers it
                throw = wl.Throw(from_mathics(thrown.value, self.definitions))
                ev.message("Throw", "nocatch", to_mathics(throw, self.definitions))
                result = to_mathics(wl.Hold(throw), self.definitions)
            except SystemExit:  # Quit[]: the process ends
                self.owner = None
                raise WolframKernelException("Kernel is not running anymore.") from None
            if self.killed:
                raise WolframKernelException("Kernel is not running anymore.")
            messages = [out for out in ev.out if getattr(out, "is_message", False)]
            names = []
            for out in messages:
                name = out.symbol if isinstance(out.symbol, str) else out.symbol.get_name()
                name = self.definitions.lookup_name(name)  # BinarySerialize writes full names
                names.append(wl.MessageName(WLSymbol(name.removeprefix("System`")), out.tag))
            answer = {
                "Result": export(from_mathics(result, self.definitions), target_format="wxf"),
                "Success": not messages,
                "FailureType": "MessageFailure" if messages else None,
                "Messages": names,
                "MessagesText": [str(out.text) for out in messages],
                "Timing": 0.0,
                "AbsoluteTiming": 0.0,
            }
            return bytes(export(answer, target_format="wxf"))
        finally:
            self.busy.clear()
            self.idle.set()


class FakeEngineController(WolframKernelController):  # type: ignore[misc]
    """wolframclient's controller with the fake engine where the process and sockets were."""

    engine: FakeEngine

    def __repr__(self) -> str:  # the real one shows the process, which we have not
        return f"<FakeEngineController {self.name}>"

    def _kernel_start(self) -> None:
        self.engine.boot(self)

    def _do_evaluate(self, wxf_data: bytes, future: Any, result_update_callback: Any) -> None:
        answer = self.engine.evaluate(self, bytes(wxf_data))
        self.evaluation_count += 1
        result = WolframKernelEvaluationResult(answer, consumer=self.consumer)
        if result_update_callback:
            result = result_update_callback(result)
        future.set_result(result)

    def terminate(self) -> Any:
        future = super().terminate()
        self.engine.kill(self)  # the real one kills the process
        return future


FAKE_SESSION = functools.partial(WolframLanguageSession, controller_class=FakeEngineController)


# ================================================================== fixtures


@pytest.fixture(scope="module")
def engine() -> FakeEngine:
    FakeEngineController.engine = FakeEngine()
    return FakeEngineController.engine


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An executable where the engine's kernel would be (wolframclient checks it)."""
    path = tmp_path_factory.mktemp("engine") / "WolframKernel"
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return str(path)


class Running:
    """A backend kernel serving its own wire to a listening link of the test, in a thread."""

    def __init__(self, kernel_path: str, eval_timeout: float | None = None) -> None:
        self.link = linkserver.listen("0@127.0.0.1")
        theirs = connect_wire(self.link.name, TIMEOUT, key=None, tls=False)
        self._theirs = theirs
        self.kernel = wolfram.WolframKernel(kernel_path, session_class=FAKE_SESSION)
        self.code: int | None = None
        self.kernel.start()  # here, so that a failure shows here
        assert FakeEngine.instance is not None
        self.engine = FakeEngine.instance
        self.first_start = self.engine.starts
        self.thread = threading.Thread(
            target=self._serve, args=(theirs, eval_timeout), name="test-wolfram-kernel"
        )
        self.thread.start()
        self.ready = self.link.get(TIMEOUT)

    def _serve(self, link: KernelWire, eval_timeout: float | None) -> None:
        self.code = self.kernel.serve_link(link, "k1", eval_timeout=eval_timeout)

    def request(self, packet: Any, *, until: str = "ReturnPacket") -> list[Any]:
        self.link.put(packet)
        return self.collect(until)

    def collect(self, until: str) -> list[Any]:
        return collect(self.link, until, TIMEOUT)

    def restarts(self) -> int:
        """How many times the engine was started again since this kernel started it."""
        return self.engine.starts - self.first_start

    def ended(self) -> int | None:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()
        return self.code

    def stop(self) -> None:
        self.link.close()
        self.thread.join(TIMEOUT)
        self._theirs.close()
        self.kernel.close()


@pytest.fixture
def start(engine: FakeEngine, kernel_path: str) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(eval_timeout: float | None = None) -> Running:
        running = Running(kernel_path, eval_timeout)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def kernel(start: Callable[..., Running]) -> Running:
    return start()


def p(head: str, *args: Any) -> WLFunction:
    return WLFunction(WLSymbol(head), *args)


def evaluate(kernel: Running, expr: Any) -> Any:
    [answer] = kernel.request(wl.EvaluatePacket(expr))
    return answer.args[0]


def run_forever(kernel: Running, packet: Any) -> None:
    """Put a request that never ends and wait until the engine is at it."""
    kernel.link.put(packet)
    assert wait_until(lambda: FakeEngine.instance is not None and FakeEngine.instance.busy.is_set())


RESTARTED = [p("MessagePacket", WLSymbol("LinkServer"), "restarted")]


def restarted(packets: list[Any]) -> bool:
    return (
        packets[0] == RESTARTED[0]
        and packets[1].head == WLSymbol("TextPacket")
        and "definitions made before are lost" in packets[1].args[0]
    )


# ================================================================== start-up


def test_kernel_announces_itself(kernel: Running) -> None:
    assert kernel.ready == p(
        "KernelReady",
        {"id": "k1", "pid": os.getpid(), "backend": "wolfram", "version": FAKE_VERSION},
    )


def test_the_session_gets_what_production_passes(engine: FakeEngine, kernel: Running) -> None:
    session = kernel.kernel._session
    assert isinstance(session, WolframLanguageSession)
    assert session.kernel == kernel.kernel.kernel_path
    assert session.inputform_string_evaluation is False  # a str is a String, not code
    assert session.get_parameter("STARTUP_TIMEOUT") == wolfram.ENGINE_START_TIMEOUT


# ---------------------------------------------------------- EvaluatePacket


def test_evaluate_packet(kernel: Running) -> None:
    assert kernel.request(wl.EvaluatePacket(wl.Plus(1, 1))) == [p("ReturnPacket", 2)]


def test_strings_are_strings_not_code(kernel: Running) -> None:
    assert evaluate(kernel, "1+1") == "1+1"


def test_state_persists_between_requests(kernel: Running) -> None:
    evaluate(kernel, wl.Set(wl.kept, 42))
    assert evaluate(kernel, wl.kept) == 42


def test_results_keep_their_kind(kernel: Running) -> None:
    assert evaluate(kernel, wl.Divide(1, 3)) == wl.Rational(1, 3)
    assert evaluate(kernel, wl.Power(2, 100)) == 2**100
    assert evaluate(kernel, wl.f(wl.x, wl.Foo.y)) == wl.f(wl.x, wl.Foo.y)
    assert evaluate(kernel, wl.Association(wl.Rule("a", 1))) == {"a": 1}


def test_print_comes_before_the_result(kernel: Running) -> None:
    packets = kernel.request(wl.EvaluatePacket(wl.CompoundExpression(wl.Print("hello"), 7)))
    assert packets == [p("TextPacket", "hello"), p("ReturnPacket", 7)]


def test_print_joins_its_arguments(kernel: Running) -> None:
    packets = kernel.request(wl.EvaluatePacket(wl.Print("a", 1, "b")))
    assert packets == [p("TextPacket", "a1b"), p("ReturnPacket", None)]


def test_message_is_a_message_packet_then_text(kernel: Running) -> None:
    packets = kernel.request(wl.EvaluatePacket(wl.Divide(1, 0)))
    assert packets[0] == p("MessagePacket", wl.Power, "infy")
    assert packets[1].head == WLSymbol("TextPacket")
    assert packets[1].args[0].startswith("Power::infy: Infinite expression")
    assert packets[2] == p("ReturnPacket", wl.DirectedInfinity())
    assert len(packets) == 3


def test_messages_of_user_symbols_keep_their_context(kernel: Running) -> None:
    evaluate(kernel, wl.Set(wl.MessageName(wl.f, "oops"), "went `1`."))
    packets = kernel.request(wl.EvaluatePacket(wl.Message(wl.MessageName(wl.f, "oops"), 3)))
    assert packets[0] == p("MessagePacket", WLSymbol("Global`f"), "oops")
    assert packets[1] == p("TextPacket", "f::oops: went 3.")


def test_prints_come_before_messages_where_message_list_is_not_kept(kernel: Running) -> None:
    # Mathics3 keeps no $MessageList: every print counts as before every
    # message. (A Wolfram Engine keeps it: see test_interleave_*.)
    packets = kernel.request(
        wl.EvaluatePacket(wl.CompoundExpression(wl.Print("a"), wl.Divide(1, 0), wl.Print("b")))
    )
    heads = [packet.head.name for packet in packets]
    assert heads == ["TextPacket", "TextPacket", "MessagePacket", "TextPacket", "ReturnPacket"]
    assert packets[0].args == ("a",) and packets[1].args == ("b",)


def test_interleave_puts_each_print_after_the_messages_before_it() -> None:
    m1 = [MessagePacket(wl.Power, "infy"), TextPacket("Power::infy: ...")]
    m2 = [MessagePacket(wl.General, "x"), TextPacket("General::x: ...")]
    out = wolfram.interleave([(0, "a"), (1, "b"), (5, "c")], [m1, m2])
    assert out == [TextPacket("a"), *m1, TextPacket("b"), *m2, TextPacket("c")]
    assert wolfram.interleave([], [m1]) == m1


def test_top_level_control_flow_is_answered(engine: FakeEngine, kernel: Running) -> None:
    assert evaluate(kernel, wl.Return(5)) == 5
    assert evaluate(kernel, wl.Abort()) == ABORTED
    packets = kernel.request(wl.EvaluatePacket(wl.Throw(5)))
    assert packets[0] == p("MessagePacket", wl.Throw, "nocatch")
    assert packets[-1] == p("ReturnPacket", wl.Hold(wl.Throw(5)))
    assert kernel.restarts() == 0  # none of these restarts the engine


def test_input_is_refused_with_a_kernel_error(kernel: Running) -> None:
    [answer] = kernel.request(wl.EvaluatePacket(wl.Plus(wl.Input("n? "), 1)))
    error = answer.args[0]
    assert answer.head == WLSymbol("ReturnPacket")
    assert error.head == WLSymbol("linkserver`KernelError")
    assert error.args[0] == "no-input" and "Input[]" in error.args[1]
    assert evaluate(kernel, wl.StringLength(wl.InputString())).head == WLSymbol(
        "linkserver`KernelError"
    )
    assert evaluate(kernel, wl.Plus(1, 1)) == 2


# ------------------------------------------- EnterText and EnterExpression


def test_enter_text_numbers_inputs_and_outputs(kernel: Running) -> None:
    assert kernel.request(wl.EnterTextPacket("a = 6*7"), until="InputNamePacket") == [
        p("OutputNamePacket", "Out[1]= "),
        p("ReturnTextPacket", "42"),
        p("InputNamePacket", "In[2]:= "),
    ]
    assert kernel.request(wl.EnterTextPacket("a + 1"), until="InputNamePacket") == [
        p("OutputNamePacket", "Out[2]= "),
        p("ReturnTextPacket", "43"),
        p("InputNamePacket", "In[3]:= "),
    ]
    # The numbering lives in the engine too: $Line, In[n] and Out[n].
    assert evaluate(kernel, WLSymbol("$Line")) == 2
    assert evaluate(kernel, wl.Out(1)) == 42
    assert evaluate(kernel, wl.In(2)) == 43


def test_enter_text_with_a_null_result_only_prompts(kernel: Running) -> None:
    assert kernel.request(wl.EnterTextPacket("b = 1;"), until="InputNamePacket") == [
        p("InputNamePacket", "In[2]:= ")
    ]


def test_enter_text_prints_and_formats(kernel: Running) -> None:
    packets = kernel.request(
        wl.EnterTextPacket('Print["side"]; FullForm[x^2]'), until="InputNamePacket"
    )
    assert packets == [
        p("TextPacket", "side"),
        p("OutputNamePacket", "Out[1]//FullForm= "),
        p("ReturnTextPacket", "Power[x, 2]"),
        p("InputNamePacket", "In[2]:= "),
    ]
    assert evaluate(kernel, wl.Out(1)) == wl.Power(wl.x, 2)  # stored without the form


def test_enter_text_reads_lines_as_a_terminal_kernel(kernel: Running) -> None:
    packets = kernel.request(wl.EnterTextPacket("1 + 1\n\nf[\n 3]"), until="InputNamePacket")
    assert packets == [
        p("OutputNamePacket", "Out[1]= "),
        p("ReturnTextPacket", "2"),
        p("OutputNamePacket", "Out[2]= "),
        p("ReturnTextPacket", "f[3]"),
        p("InputNamePacket", "In[3]:= "),
    ]


def test_enter_text_applies_pre_and_post(kernel: Running) -> None:
    evaluate(kernel, wl.Set(WLSymbol("$Post"), wl.Function(wl.List(wl.Slot(1)))))
    assert kernel.request(wl.EnterTextPacket("5"), until="InputNamePacket")[1] == p(
        "ReturnTextPacket", "{5}"
    )


def test_enter_text_syntax_error(kernel: Running) -> None:
    packets = kernel.request(wl.EnterTextPacket("1+)"), until="InputNamePacket")
    assert packets[0] == p("MessagePacket", wl.Syntax, "sntxf")
    assert packets[1].head == WLSymbol("TextPacket")
    assert packets[1].args[0].startswith("Syntax::sntxf:")
    assert packets[2] == p("SyntaxPacket", 3)  # the ")" is the 3rd character
    assert packets[3] == p("InputNamePacket", "In[1]:= ")  # the line is not used up


def test_enter_text_syntax_error_on_a_later_line(kernel: Running) -> None:
    packets = kernel.request(wl.EnterTextPacket("1+1\n2+)\n3"), until="InputNamePacket")
    assert packets[:2] == [p("OutputNamePacket", "Out[1]= "), p("ReturnTextPacket", "2")]
    assert packets[-2:] == [p("SyntaxPacket", 7), p("InputNamePacket", "In[2]:= ")]


def test_enter_text_incomplete_input(kernel: Running) -> None:
    packets = kernel.request(wl.EnterTextPacket("f["), until="InputNamePacket")
    assert packets[0] == p("MessagePacket", wl.Syntax, "sntxi")
    assert packets[-2:] == [p("SyntaxPacket", 3), p("InputNamePacket", "In[1]:= ")]


def test_enter_text_uncaught_throw(kernel: Running) -> None:
    packets = kernel.request(wl.EnterTextPacket("Throw[1]"), until="InputNamePacket")
    assert packets[0] == p("MessagePacket", wl.Throw, "nocatch")
    assert packets[2:] == [
        p("OutputNamePacket", "Out[1]= "),
        p("ReturnTextPacket", "Hold[Throw[1]]"),
        p("InputNamePacket", "In[2]:= "),
    ]


def test_enter_text_input_is_refused(kernel: Running) -> None:
    packets = kernel.request(wl.EnterTextPacket("Input[]"), until="InputNamePacket")
    assert packets[0] == p("OutputNamePacket", "Out[1]= ")
    assert packets[1].args[0].startswith("linkserver`KernelError[no-input, ")
    assert packets[2] == p("InputNamePacket", "In[2]:= ")


def test_enter_expression(kernel: Running) -> None:
    assert kernel.request(
        wl.EnterExpressionPacket(wl.Times(2, 21)), until="InputNamePacket"
    ) == [p("ReturnExpressionPacket", 42), p("InputNamePacket", "In[2]:= ")]
    assert evaluate(kernel, wl.Out(1)) == 42
    packets = kernel.request(
        wl.EnterExpressionPacket(wl.CompoundExpression(wl.Print("p"), wl.x)),
        until="InputNamePacket",
    )
    assert packets == [
        p("TextPacket", "p"),
        p("ReturnExpressionPacket", wl.x),
        p("InputNamePacket", "In[3]:= "),
    ]


# ------------------------------------------------------------ bad input


def test_bad_requests_get_an_answer(kernel: Running) -> None:
    def error_code(answer: list[Any]) -> str:
        [packet] = answer
        assert packet.head == WLSymbol("ReturnPacket")
        error = packet.args[0]
        assert error.head == WLSymbol("linkserver`KernelError")
        assert isinstance(error.args[1], str)
        return str(error.args[0])

    assert error_code(kernel.request(wl.Plus(1, 2))) == "bad-request"
    assert error_code(kernel.request("just a string")) == "bad-request"
    assert error_code(kernel.request(wl.EvaluatePacket())) == "bad-request"
    assert error_code(kernel.request(wl.ReturnPacket(1))) == "bad-request"
    assert error_code(kernel.request(wl.EnterTextPacket(5))) == "bad-request"
    get_portal().call(kernel.link.aio.put_payload(b"8:\xff not wxf"))
    assert error_code(kernel.collect("ReturnPacket")) == "bad-wxf"
    assert evaluate(kernel, wl.Plus(1, 1)) == 2


# ----------------------------------------------------- abort and timeouts


def test_abort_restarts_the_engine_and_answers_aborted(
    engine: FakeEngine, kernel: Running
) -> None:
    evaluate(kernel, wl.Set(wl.kept, 42))
    run_forever(kernel, wl.EvaluatePacket(wl.While(True, 1)))
    kernel.link.abort()
    packets = kernel.collect("ReturnPacket")
    assert restarted(packets)
    assert packets[2:] == [p("ReturnPacket", ABORTED)]
    assert evaluate(kernel, wl.Plus(1, 1)) == 2  # a fresh engine ...
    assert kernel.restarts() == 1
    assert evaluate(kernel, wl.kept) == wl.kept  # ... without the old definitions


def test_abort_stops_the_running_request_not_the_queued_one(kernel: Running) -> None:
    run_forever(kernel, wl.EvaluatePacket(wl.While(True, 1)))
    kernel.link.put(wl.EvaluatePacket(wl.Plus(2, 2)))
    kernel.link.abort()
    assert kernel.collect("ReturnPacket")[-1] == p("ReturnPacket", ABORTED)
    assert kernel.collect("ReturnPacket") == [p("ReturnPacket", 4)]


def test_abort_of_enter_text_answers_in_its_packets(kernel: Running) -> None:
    kernel.request(wl.EnterTextPacket("1"), until="InputNamePacket")
    run_forever(kernel, wl.EnterTextPacket("While[True, 1]"))
    kernel.link.abort()
    packets = kernel.collect("InputNamePacket")
    assert restarted(packets)
    assert packets[2:] == [
        p("OutputNamePacket", "Out[2]= "),
        p("ReturnTextPacket", "$Aborted"),
        p("InputNamePacket", "In[3]:= "),
    ]
    # The numbering goes on in the new engine.
    assert kernel.request(wl.EnterTextPacket("$Line"), until="InputNamePacket")[:2] == [
        p("OutputNamePacket", "Out[3]= "),
        p("ReturnTextPacket", "3"),
    ]


def test_abort_when_idle_is_ignored(engine: FakeEngine, kernel: Running) -> None:
    kernel.link.abort()  # sent (not just queued) when abort() returns
    assert evaluate(kernel, wl.Plus(1, 1)) == 2
    assert kernel.restarts() == 0


def preemptive(tag: int, expr: Any) -> WLFunction:
    """What the server sends a kernel for a preemptive request (docs/protocol.md §8.9)."""
    return p("LinkServer`Preemptive", tag, wl.EvaluatePacket(expr))


def test_preemptive_request_is_served_first_when_the_running_one_ends(kernel: Running) -> None:
    kernel.link.put(wl.EvaluatePacket(wl.CompoundExpression(wl.Pause(0.3), 1)))
    assert wait_until(lambda: FakeEngine.instance is not None and FakeEngine.instance.busy.is_set())
    kernel.link.put(preemptive(7, wl.Plus(2, 2)))
    kernel.link.send_message(UrgentMessage.PREEMPT, 7)  # ignored: the engine cannot pause
    kernel.link.put(wl.EvaluatePacket(3))
    assert kernel.collect("ReturnPacket") == [p("ReturnPacket", 1)]
    assert kernel.link.get(TIMEOUT) == p("LinkServer`PreemptiveAnswer", 7, p("ReturnPacket", 4))
    assert kernel.collect("ReturnPacket") == [p("ReturnPacket", 3)]


def test_preemptive_request_aborted_while_it_waits(kernel: Running) -> None:
    run_forever(kernel, wl.EvaluatePacket(wl.While(True, 1)))
    kernel.link.put(preemptive(8, wl.Plus(2, 2)))
    kernel.link.flush()
    kernel.link.send_message(UrgentMessage.PREEMPT_ABORT, 8)
    kernel.link.abort()  # the running request's, not the preemptive one's
    assert kernel.collect("ReturnPacket")[-1] == p("ReturnPacket", ABORTED)
    assert kernel.link.get(TIMEOUT) == p(
        "LinkServer`PreemptiveAnswer", 8, p("ReturnPacket", ABORTED)
    )
    assert kernel.restarts() == 1  # for the running request only


def test_eval_timeout_answers_aborted_and_keeps_the_engine(
    engine: FakeEngine, start: Callable[..., Running]
) -> None:
    kernel = start(eval_timeout=0.05 * TIMEOUT)
    evaluate(kernel, wl.Set(wl.kept, 42))
    packets = kernel.request(wl.EvaluatePacket(wl.While(True, 1)))
    assert packets == [
        p("MessagePacket", wl.General, "timeout"),
        p("TextPacket", "General::timeout: Timeout reached."),
        p("ReturnPacket", ABORTED),
    ]
    assert evaluate(kernel, wl.kept) == 42
    assert kernel.restarts() == 0


def test_eval_timeout_in_enter_text(start: Callable[..., Running]) -> None:
    kernel = start(eval_timeout=0.05 * TIMEOUT)
    packets = kernel.request(wl.EnterTextPacket("While[True, 1]\n2"), until="InputNamePacket")
    assert packets == [
        p("MessagePacket", wl.General, "timeout"),
        p("TextPacket", "General::timeout: Timeout reached."),
        p("OutputNamePacket", "Out[1]= "),
        p("ReturnTextPacket", "$Aborted"),
        p("InputNamePacket", "In[2]:= "),  # the rest of the text is not evaluated
    ]


def test_an_engine_deaf_to_its_time_limit_is_restarted(
    engine: FakeEngine, start: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wolfram, "TIMEOUT_GRACE", 0.02 * TIMEOUT)
    kernel = start(eval_timeout=0.02 * TIMEOUT)
    packets = kernel.request(wl.EvaluatePacket(wl.Hang(6 * TIMEOUT)))
    assert packets[:2] == [
        p("MessagePacket", wl.General, "timeout"),
        p("TextPacket", "General::timeout: Timeout reached."),
    ]
    assert restarted(packets[2:])
    assert packets[-1] == p("ReturnPacket", ABORTED)
    assert evaluate(kernel, wl.Plus(1, 1)) == 2
    assert kernel.restarts() == 1


# ------------------------------------------------------------- ending


def test_terminate_answers_then_ends(engine: FakeEngine, kernel: Running) -> None:
    run_forever(kernel, wl.EvaluatePacket(wl.While(True, 1)))
    kernel.link.terminate()
    assert kernel.collect("ReturnPacket")[-1] == p("ReturnPacket", ABORTED)
    assert kernel.ended() == wolfram.EXIT_OK
    assert engine.owner is None  # the engine was stopped, not restarted


def test_terminate_when_idle_ends(kernel: Running) -> None:
    kernel.link.terminate()
    assert kernel.ended() == wolfram.EXIT_OK


def test_closed_link_stops_the_evaluation_and_ends(engine: FakeEngine, kernel: Running) -> None:
    run_forever(kernel, wl.EvaluatePacket(wl.While(True, 1)))
    kernel.link.close()
    assert kernel.ended() == wolfram.EXIT_OK
    assert engine.owner is None


def test_quit_ends_the_kernel_without_an_answer(kernel: Running) -> None:
    kernel.link.put(wl.EvaluatePacket(wl.Quit()))
    assert kernel.ended() == wolfram.EXIT_ENGINE_ENDED  # the server answers kerneldied
    assert not kernel.link.ready()


def test_an_engine_that_does_not_come_back_ends_the_kernel(
    engine: FakeEngine, kernel: Running
) -> None:
    run_forever(kernel, wl.EvaluatePacket(wl.While(True, 1)))
    engine.fail_next_start = True
    kernel.link.abort()
    assert kernel.collect("ReturnPacket")[-1] == p("ReturnPacket", ABORTED)
    assert kernel.ended() == wolfram.EXIT_ENGINE_ENDED


# ---------------------------------------------------- starting the engine


def test_an_engine_that_does_not_start_is_one_sentence(
    engine: FakeEngine, kernel_path: str
) -> None:
    engine.fail_next_start = True
    kernel = wolfram.WolframKernel(kernel_path, session_class=FAKE_SESSION)
    with pytest.raises(wolfram.EngineError) as info:
        kernel.start()
    message = str(info.value)
    assert message.startswith(f"the Wolfram Engine at {kernel_path} did not start (")
    assert "activated" in message and "\n" not in message
    kernel.close()


def test_serve_exits_3_when_the_engine_does_not_start(
    engine: FakeEngine, kernel_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wolfram, "_prepared", None)
    engine.fail_next_start = True
    code = wolfram.serve("1@127.0.0.1", kernel_path=kernel_path, session_class=FAKE_SESSION)
    assert code == wolfram.EXIT_STARTUP_FAILED


# ---------------------------------------------------- finding the engine


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with nothing on it, and no engine in the usual places."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv(wolfram.KERNEL_PATH_ENV, raising=False)
    monkeypatch.setattr(wolfram, "find_default_kernel_path", lambda: None)
    monkeypatch.setattr(wolfram, "_prepared", None)
    return bin_dir


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_no_engine_is_one_sentence_saying_how_to_point_at_one(bare_path: Path) -> None:
    with pytest.raises(wolfram.EngineNotFound) as info:
        wolfram.find_engine()
    message = str(info.value)
    assert message.startswith("the Wolfram Engine is not installed here")
    assert "--kernel-path" in message and wolfram.KERNEL_PATH_ENV in message


def test_main_without_an_engine_exits_3_with_one_line(
    bare_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert wolfram.main(["--connect", "1@127.0.0.1"]) == wolfram.EXIT_STARTUP_FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the Wolfram Engine is not installed here" in err


def test_kernel_path_must_be_an_executable(bare_path: Path, tmp_path: Path) -> None:
    with pytest.raises(wolfram.EngineNotFound, match="no Wolfram Engine kernel at"):
        wolfram.find_engine(str(tmp_path / "nothing"))
    kernel = executable(tmp_path / "WolframKernel", "#!/bin/sh\n")
    assert wolfram.find_engine(str(kernel)) == str(kernel)


def test_kernel_path_from_the_environment(
    bare_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = executable(tmp_path / "WolframKernel", "#!/bin/sh\n")
    monkeypatch.setenv(wolfram.KERNEL_PATH_ENV, str(kernel))
    assert wolfram.find_engine() == str(kernel)


def test_wolfram_kernel_on_path(bare_path: Path) -> None:
    kernel = executable(bare_path / "WolframKernel", "#!/bin/sh\n")
    assert wolfram.find_engine() == str(kernel)


@pytest.mark.skipif(sys.platform != "linux", reason="the install layout checked is Linux's")
def test_wolframscript_on_path_is_asked_where_the_engine_is(
    bare_path: Path, tmp_path: Path
) -> None:
    install = tmp_path / "WolframEngine" / "14.1"
    kernel = executable(install / "Executables" / "WolframKernel", "#!/bin/sh\n")
    executable(bare_path / "wolframscript", f'#!/bin/sh\necho "{install}"\n')
    assert wolfram.find_engine() == str(kernel)


def test_wolframscript_that_finds_no_engine(bare_path: Path) -> None:
    executable(bare_path / "wolframscript", "#!/bin/sh\necho 'not activated' >&2\nexit 1\n")
    with pytest.raises(wolfram.EngineNotFound, match="wolframscript at .* did not lead"):
        wolfram.find_engine()
