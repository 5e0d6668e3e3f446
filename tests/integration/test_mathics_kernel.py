"""The Mathics3 kernel process, driven over a real link as a server would drive it.

Kernels take seconds to start, so the module starts three at once and keeps
them: ``main`` serves most tests (with an ``--eval-timeout``), ``terminate``
and ``closed`` are each used up by the test of how a kernel ends.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mathics
import pytest
from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLFunction, WLSymbol

import linkserver
from linkserver.portal import get_portal
from tests.packets import collect
from tests.strategies import full_form
from tests.timeouts import TIMEOUT

# --eval-timeout of the main kernel: long enough that an abort test (which
# aborts within milliseconds) never meets it, short enough to wait for.
EVAL_TIMEOUT = 0.3 * TIMEOUT
START_TIMEOUT = 6 * TIMEOUT  # three kernels start at once, each loads Mathics3
ABORTED = WLSymbol("$Aborted")


class Kernel:
    """A kernel process and the listening link it connected to."""

    def __init__(self, kernel_id: str, log_dir: Path, *args: str) -> None:
        self.id = kernel_id
        self.link = linkserver.listen(0)
        self.log = log_dir / f"{kernel_id}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "linkserver.kernel.mathics",
                    "--connect", self.link.name, "--kernel-id", kernel_id, *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.ready: Any = None

    def wait_ready(self) -> None:
        try:
            self.ready = self.link.get(START_TIMEOUT)
        except linkserver.LinkError:
            raise AssertionError(f"kernel {self.id} did not start:\n{self.log.read_text()}")

    def request(self, packet: Any, *, until: str = "ReturnPacket") -> list[Any]:
        """Put a request; return every packet up to and including one with head ``until``."""
        self.link.put(packet)
        return self.collect(until)

    def collect(self, until: str) -> list[Any]:
        return collect(self.link, until, TIMEOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self.link.close()


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Kernel]]:
    log_dir = tmp_path_factory.mktemp("kernels")
    started = {
        "main": Kernel("main", log_dir, "--eval-timeout", str(EVAL_TIMEOUT)),
        "terminate": Kernel("terminate", log_dir),
        "closed": Kernel("closed", log_dir),
    }
    try:
        for kernel in started.values():
            kernel.wait_ready()
        yield started
    finally:
        for kernel in started.values():
            kernel.stop()


@pytest.fixture
def kernel(kernels: dict[str, Kernel]) -> Kernel:
    k = kernels["main"]
    assert k.proc.poll() is None, k.log.read_text()
    return k


def p(head: str, *args: Any) -> WLFunction:
    return WLFunction(WLSymbol(head), *args)


def line_number(kernel: Kernel) -> int:
    """The number the next input line will get ($Line + 1)."""
    return int(kernel.request(wl.EvaluatePacket(wl.Plus(WLSymbol("$Line"), 1)))[-1].args[0])


# ------------------------------------------------------------- start-up


def test_kernel_announces_itself(kernels: dict[str, Kernel]) -> None:
    for kernel in kernels.values():
        assert kernel.ready == p(
            "KernelReady",
            {
                "id": kernel.id,
                "pid": kernel.proc.pid,
                "backend": "mathics",
                "version": mathics.__version__,
            },
        )


# ------------------------------------------------------- EvaluatePacket


def test_evaluate_packet(kernel: Kernel) -> None:
    assert kernel.request(wl.EvaluatePacket(wl.Plus(1, 1))) == [p("ReturnPacket", 2)]


def test_state_persists_between_requests(kernel: Kernel) -> None:
    kernel.request(wl.EvaluatePacket(wl.Set(wl.kept, 42)))
    assert kernel.request(wl.EvaluatePacket(wl.kept)) == [p("ReturnPacket", 42)]


def test_results_keep_their_kind(kernel: Kernel) -> None:
    [answer] = kernel.request(wl.EvaluatePacket(wl.N(wl.Pi, 30)))
    assert str(answer.args[0]) == "3.14159265358979323846264338328"
    [answer] = kernel.request(wl.EvaluatePacket(wl.Divide(1, 3)))
    assert answer == p("ReturnPacket", wl.Rational(1, 3))
    [answer] = kernel.request(wl.EvaluatePacket(wl.Power(2, 100)))
    assert answer == p("ReturnPacket", 2**100)
    [answer] = kernel.request(wl.EvaluatePacket(wl.f(wl.x, wl.Foo.y)))
    assert answer == p("ReturnPacket", wl.f(wl.x, wl.Foo.y))


def test_print_comes_before_the_result(kernel: Kernel) -> None:
    packets = kernel.request(wl.EvaluatePacket(wl.CompoundExpression(wl.Print("hello"), 7)))
    assert packets == [p("TextPacket", "hello"), p("ReturnPacket", 7)]


def test_message_is_a_message_packet_then_text(kernel: Kernel) -> None:
    packets = kernel.request(wl.EvaluatePacket(wl.Divide(1, 0)))
    assert packets[0] == p("MessagePacket", wl.Power, "infy")
    assert packets[1].head == WLSymbol("TextPacket")
    assert packets[1].args[0].startswith("Power::infy: Infinite expression")
    assert packets[2] == p("ReturnPacket", wl.DirectedInfinity())  # ComplexInfinity
    assert len(packets) == 3


def test_side_output_keeps_its_order(kernel: Kernel) -> None:
    packets = kernel.request(
        wl.EvaluatePacket(wl.CompoundExpression(wl.Print("a"), wl.Divide(1, 0), wl.Print("b")))
    )
    heads = [packet.head.name for packet in packets]
    assert heads == ["TextPacket", "MessagePacket", "TextPacket", "TextPacket", "ReturnPacket"]
    assert packets[0].args == ("a",) and packets[3].args == ("b",)


# ------------------------------------------- EnterText and EnterExpression


def test_enter_text_numbers_inputs_and_outputs(kernel: Kernel) -> None:
    n = line_number(kernel)
    assert kernel.request(wl.EnterTextPacket("a = 6*7"), until="InputNamePacket") == [
        p("OutputNamePacket", f"Out[{n}]= "),
        p("ReturnTextPacket", "42"),
        p("InputNamePacket", f"In[{n + 1}]:= "),
    ]
    assert kernel.request(wl.EnterTextPacket("a + 1"), until="InputNamePacket") == [
        p("OutputNamePacket", f"Out[{n + 1}]= "),
        p("ReturnTextPacket", "43"),
        p("InputNamePacket", f"In[{n + 2}]:= "),
    ]
    # In[n] and Out[n] are set, as in a notebook.
    assert kernel.request(wl.EvaluatePacket(wl.Out(n))) == [p("ReturnPacket", 42)]
    assert kernel.request(wl.EvaluatePacket(wl.Hold(wl.In(n + 1))))[-1].args[0] == wl.Hold(
        wl.In(n + 1)
    )


def test_enter_text_with_a_null_result_only_prompts(kernel: Kernel) -> None:
    n = line_number(kernel)
    assert kernel.request(wl.EnterTextPacket("b = 1;"), until="InputNamePacket") == [
        p("InputNamePacket", f"In[{n + 1}]:= ")
    ]


def test_enter_text_prints_and_formats(kernel: Kernel) -> None:
    n = line_number(kernel)
    packets = kernel.request(
        wl.EnterTextPacket('Print["side"]; FullForm[x^2]'), until="InputNamePacket"
    )
    assert packets == [
        p("TextPacket", "side"),
        p("OutputNamePacket", f"Out[{n}]//FullForm= "),
        p("ReturnTextPacket", "Power[x, 2]"),
        p("InputNamePacket", f"In[{n + 1}]:= "),
    ]


def test_enter_text_syntax_error(kernel: Kernel) -> None:
    n = line_number(kernel)
    packets = kernel.request(wl.EnterTextPacket("1+)"), until="InputNamePacket")
    assert packets[0] == p("MessagePacket", wl.Syntax, "sntxf")
    assert packets[1].head == WLSymbol("TextPacket")
    assert packets[1].args[0].startswith("Syntax::sntxf:")
    assert packets[2] == p("SyntaxPacket", 3)  # the ")" is the 3rd character
    assert packets[3] == p("InputNamePacket", f"In[{n}]:= ")  # the line is not used up


@pytest.mark.parametrize(
    "text, answer",
    [
        ("1 + 1", 2),
        ("textX = 3; textX^2", 9),
        ("(* a comment *) 6*7", 42),
        ("1\n2", 2),  # two lines: ToExpression's answer, the last one
    ],
)
def test_text_input_means_what_to_expression_means(kernel: Kernel, text: str, answer: Any) -> None:
    # Client.evaluate("text") sends ToExpression["text"]; the kernel parses the
    # text itself when it can, and must answer exactly as ToExpression does.
    packets = kernel.request(wl.EvaluatePacket(wlexpr(text)))
    assert packets == [p("ReturnPacket", answer)]


def test_text_input_with_a_syntax_error_gets_to_expressions_message(kernel: Kernel) -> None:
    packets = kernel.request(wl.EvaluatePacket(wlexpr("1 +")))
    assert packets[0] == p("MessagePacket", wl.Syntax, "sntxi")
    assert packets[-1] == p("ReturnPacket", WLSymbol("$Failed"))


def test_enter_expression(kernel: Kernel) -> None:
    n = line_number(kernel)
    assert kernel.request(
        wl.EnterExpressionPacket(wl.Times(2, 21)), until="InputNamePacket"
    ) == [p("ReturnExpressionPacket", 42), p("InputNamePacket", f"In[{n + 1}]:= ")]
    assert kernel.request(wl.EvaluatePacket(wl.Out(n))) == [p("ReturnPacket", 42)]


# ------------------------------------------------------ Input[] round trip


def test_input_asks_the_client(kernel: Kernel) -> None:
    asked = kernel.request(wl.EvaluatePacket(wl.Plus(wl.Input("n? "), 1)), until="InputPacket")
    assert asked == [p("InputPacket", "n? ")]
    assert kernel.request(wl.EnterTextPacket("20 + 21")) == [p("ReturnPacket", 42)]


def test_input_string_asks_the_client(kernel: Kernel) -> None:
    asked = kernel.request(
        wl.EvaluatePacket(wl.StringLength(wl.InputString("s? "))), until="InputStringPacket"
    )
    assert asked == [p("InputStringPacket", "s? ")]
    assert kernel.request(wl.EnterTextPacket("hello")) == [p("ReturnPacket", 5)]


def test_input_refuses_other_requests_while_it_waits(kernel: Kernel) -> None:
    kernel.request(wl.EvaluatePacket(wl.Input()), until="InputPacket")
    [refusal, again] = kernel.request(wl.EvaluatePacket(1), until="InputPacket")
    assert refusal.args[0].head == WLSymbol("linkserver`KernelError")
    assert refusal.args[0].args[0] == "waiting-for-input"
    assert again == p("InputPacket", "? ")
    assert kernel.request(wl.EnterTextPacket("5")) == [p("ReturnPacket", 5)]


# ----------------------------------------------------------------- abort


def test_abort_stops_the_evaluation_and_the_kernel_goes_on(kernel: Kernel) -> None:
    loop = wl.CompoundExpression(wl.Print("looping"), wl.While(True, 1))
    kernel.link.put(wl.EvaluatePacket(loop))
    assert kernel.collect("TextPacket") == [p("TextPacket", "looping")]
    kernel.link.abort()
    assert kernel.collect("ReturnPacket") == [p("ReturnPacket", ABORTED)]  # no timeout message
    assert kernel.request(wl.EvaluatePacket(wl.Plus(1, 1))) == [p("ReturnPacket", 2)]


def test_abort_stops_the_running_request_not_the_queued_one(kernel: Kernel) -> None:
    kernel.link.put(wl.EvaluatePacket(wl.CompoundExpression(wl.Print("first"), wl.While(True, 1))))
    kernel.link.put(wl.EvaluatePacket(wl.Plus(2, 2)))
    kernel.collect("TextPacket")
    kernel.link.abort()
    assert kernel.collect("ReturnPacket") == [p("ReturnPacket", ABORTED)]
    assert kernel.collect("ReturnPacket") == [p("ReturnPacket", 4)]


def test_abort_while_waiting_for_input(kernel: Kernel) -> None:
    kernel.request(wl.EvaluatePacket(wl.Input("never answered")), until="InputPacket")
    kernel.link.abort()
    assert kernel.collect("ReturnPacket") == [p("ReturnPacket", ABORTED)]
    assert kernel.request(wl.EvaluatePacket(wl.Plus(1, 1))) == [p("ReturnPacket", 2)]


def test_abort_of_enter_text_answers_in_its_packets(kernel: Kernel) -> None:
    n = line_number(kernel)
    kernel.link.put(wl.EnterTextPacket('Print["go"]; While[True, 1]'))
    kernel.collect("TextPacket")
    kernel.link.abort()
    assert kernel.collect("InputNamePacket") == [
        p("OutputNamePacket", f"Out[{n}]= "),
        p("ReturnTextPacket", "$Aborted"),
        p("InputNamePacket", f"In[{n + 1}]:= "),
    ]


def test_abort_when_idle_is_ignored(kernel: Kernel) -> None:
    kernel.link.abort()  # sent (not just queued) when abort() returns
    assert kernel.request(wl.EvaluatePacket(wl.Plus(1, 1))) == [p("ReturnPacket", 2)]


def test_check_abort_absorbs_the_clients_abort(kernel: Kernel) -> None:
    # As in the Wolfram Language: the abort goes to the nearest CheckAbort, its
    # second argument is evaluated, and the request goes on to its own result.
    caught = wl.CheckAbort(
        wl.CompoundExpression(wl.Print("looping"), wl.While(True, 1)),
        wl.CompoundExpression(wl.Print("caught"), "handled"),
    )
    kernel.link.put(wl.EvaluatePacket(wl.List(caught, "after")))
    assert kernel.collect("TextPacket") == [p("TextPacket", "looping")]
    kernel.link.abort()
    assert kernel.collect("ReturnPacket") == [
        p("TextPacket", "caught"), p("ReturnPacket", ("handled", "after"))]
    assert kernel.request(wl.EvaluatePacket(wl.Plus(1, 1))) == [p("ReturnPacket", 2)]


def test_check_abort_does_not_absorb_the_time_limit(kernel: Kernel) -> None:
    packets = kernel.request(wl.EvaluatePacket(wl.CheckAbort(wl.While(True, 1), "handled")))
    assert packets[-1] == p("ReturnPacket", ABORTED)
    assert p("MessagePacket", wl.General, "timeout") in packets


def test_abort_protect_finishes_before_the_abort(kernel: Kernel) -> None:
    # The protected part runs for a second after the abort (past the kernel's
    # ABORT_GRACE, so its signal is held too); the abort then takes effect.
    protected = wl.AbortProtect(wl.CompoundExpression(
        wl.Set(wl.Global.protectDone, False),
        wl.Print("protected"),
        wl.Set(wl.Global.t0, wl.AbsoluteTime()),
        wl.While(wl.Less(wl.Subtract(wl.AbsoluteTime(), wl.Global.t0), 1), wl.Null),
        wl.Set(wl.Global.protectDone, True),
    ))
    kernel.link.put(wl.EvaluatePacket(wl.CompoundExpression(protected, wl.Print("not reached"))))
    assert kernel.collect("TextPacket") == [p("TextPacket", "protected")]
    kernel.link.abort()
    assert kernel.collect("ReturnPacket") == [p("ReturnPacket", ABORTED)]
    assert kernel.request(wl.EvaluatePacket(wl.Global.protectDone)) == [p("ReturnPacket", True)]


def test_eval_timeout_aborts_by_itself(kernel: Kernel) -> None:
    start = time.monotonic()
    packets = kernel.request(wl.EvaluatePacket(wl.While(True, 1)))
    assert packets == [
        p("MessagePacket", wl.General, "timeout"),
        p("TextPacket", "General::timeout: Timeout reached."),
        p("ReturnPacket", ABORTED),
    ]
    assert time.monotonic() - start >= EVAL_TIMEOUT
    assert kernel.request(wl.EvaluatePacket(wl.Plus(1, 1))) == [p("ReturnPacket", 2)]


def test_eval_timeout_interrupts_code_outside_the_evaluator(kernel: Kernel) -> None:
    # Pause sleeps without checking Mathics3's stop flag: the kernel
    # interrupts it by signal after its grace period.
    packets = kernel.request(wl.EvaluatePacket(wl.Pause(60)))
    assert packets[-1] == p("ReturnPacket", ABORTED)
    assert kernel.request(wl.EvaluatePacket(wl.Plus(1, 1))) == [p("ReturnPacket", 2)]


# ------------------------------------------------------------ bad input


def test_bad_requests_get_an_answer(kernel: Kernel) -> None:
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
    assert error_code(kernel.request(wl.EvaluatePacket(WLSymbol("not a name")))) == (
        "bad-expression"
    )
    get_portal().call(kernel.link.aio.put_payload(b"8:\xff not wxf"))
    assert error_code(kernel.collect("ReturnPacket")) == "bad-wxf"
    assert kernel.request(wl.EvaluatePacket(wl.Plus(1, 1))) == [p("ReturnPacket", 2)]


def test_top_level_interrupts_are_answered(kernel: Kernel) -> None:
    assert kernel.request(wl.EvaluatePacket(wl.Return(5))) == [p("ReturnPacket", 5)]
    packets = kernel.request(wl.EvaluatePacket(wl.Throw(5)))
    assert packets[0] == p("MessagePacket", wl.Throw, "nocatch")
    assert packets[-1] == p("ReturnPacket", wl.Hold(wl.Throw(5)))
    packets = kernel.request(wl.EvaluatePacket(wl.Abort()))
    assert packets[-1] == p("ReturnPacket", ABORTED)
    # $IterationLimit raises inside Mathics3's evaluate(); it is still answered.
    pattern = wl.Pattern(wl.n, wl.Blank())
    kernel.request(wl.EvaluatePacket(wl.SetDelayed(wl.r(pattern), wl.r(wl.Plus(wl.n, 1)))))
    packets = kernel.request(wl.EvaluatePacket(wl.r(1)))
    assert packets[0] == p("MessagePacket", WLSymbol("$IterationLimit"), "itlim")
    assert packets[-1] == p("ReturnPacket", ABORTED)


# ------------------------------------------------------------- ending


def test_terminate_answers_then_exits_zero(kernels: dict[str, Kernel]) -> None:
    kernel = kernels["terminate"]
    kernel.link.put(wl.EvaluatePacket(wl.CompoundExpression(wl.Print("busy"), wl.While(True, 1))))
    kernel.collect("TextPacket")
    kernel.link.terminate()
    assert kernel.collect("ReturnPacket") == [p("ReturnPacket", ABORTED)]
    assert kernel.proc.wait(TIMEOUT) == 0


def test_closed_link_stops_the_evaluation_and_exits_zero(kernels: dict[str, Kernel]) -> None:
    kernel = kernels["closed"]  # no --eval-timeout: only the closed link can stop it
    assert kernel.request(wl.EvaluatePacket(wl.Plus(1, 1))) == [p("ReturnPacket", 2)]
    kernel.link.put(wl.EvaluatePacket(wl.CompoundExpression(wl.Print("busy"), wl.While(True, 1))))
    kernel.collect("TextPacket")
    kernel.link.close()
    assert kernel.proc.wait(TIMEOUT) == 0


def test_history_is_trimmed_and_a_reused_line_replaces_its_value(kernel: Kernel) -> None:
    enter = lambda text: kernel.request(wl.EnterTextPacket(text), until="InputNamePacket")  # noqa: E731
    enter("$HistoryLength = 2")
    n = line_number(kernel)
    for value in ("11", "12", "13"):
        enter(value)
    out = lambda k: kernel.request(wl.EvaluatePacket(wl.Out(k)))[-1].args[0]  # noqa: E731
    assert out(n + 2) == 13 and out(n + 1) == 12
    assert out(n) == wl.Out(n)  # forgotten: older than $HistoryLength
    # $Line set back: the next input reuses a line number and its Out replaces the old.
    enter(f"$Line = {n}")
    enter("99")
    assert out(n + 1) == 99
    enter("$HistoryLength = 100")


def test_a_line_stored_again_after_it_was_forgotten_is_forgotten_again(kernel: Kernel) -> None:
    enter = lambda text: kernel.request(wl.EnterTextPacket(text), until="InputNamePacket")  # noqa: E731
    out = lambda k: kernel.request(wl.EvaluatePacket(wl.Out(k)))[-1].args[0]  # noqa: E731
    enter("$HistoryLength = 2")
    n = line_number(kernel)
    for value in ("11", "12", "13"):  # lines n, n+1, n+2: line n is forgotten
        enter(value)
    enter(f"$Line = {n - 1}")
    enter("21")  # line n again
    assert out(n) == 21
    enter("22")
    enter("23")  # line n+2: line n is older than $HistoryLength again
    assert out(n) == wl.Out(n)
    assert out(n + 2) == 23
    enter("$HistoryLength = 100")


# ------------------------------------------------------------------ boxes

# Results that answered linkserver`KernelError["unconvertible", ...] before
# boxes converted, and what Mathics3 prints for FullForm of each.
STYLE_RED = wl.RowBox(("Style", "[", wl.RowBox(("x", ",", wl.StyleBox(
    wl.GraphicsBox(
        (wl.EdgeForm(wl.RGBColor(0, 0, 0)), wl.RGBColor(1, 0, 0), wl.RectangleBox((0, 0))),
        wl.Rule(wl.ImageSize, 16),
    ),
    wl.Rule(wl.ImageSizeMultipliers, (1, 1)),
))), "]"))  # fmt: skip
BOX_RESULTS = [
    (wl.ToBoxes(wl.Power(wl.x, 2)), wl.SuperscriptBox("x", "2")),
    (wl.MakeBoxes(wl.Plus(1, wl.x)), wl.RowBox(("1", "+", "x"))),
    (wl.RowBox(("a", "+", "b")), wl.RowBox(("a", "+", "b"))),
    (wl.ToBoxes(wl.Style(wl.x, wl.Red)), STYLE_RED),
    (wl.ToBoxes(wl.Graphics(wl.Circle())), wl.GraphicsBox(wl.CircleBox((0, 0)))),
]


@pytest.mark.parametrize(("query", "boxes"), BOX_RESULTS)
def test_box_results_arrive_in_mathics3s_fullform(kernel: Kernel, query: Any, boxes: Any) -> None:
    assert kernel.request(wl.EvaluatePacket(query)) == [p("ReturnPacket", boxes)]
    # Mathics3's own FullForm text of the result is what a client writes of it.
    [text] = kernel.request(wl.EvaluatePacket(wl.ToString(wl.FullForm(query))))
    assert text == p("ReturnPacket", full_form(boxes))
    # Sent back held, they come back as they were.
    assert kernel.request(wl.EvaluatePacket(wl.Hold(boxes))) == [
        p("ReturnPacket", wl.Hold(boxes))
    ]


def test_a_box_expression_round_trips_through_the_kernel(kernel: Kernel) -> None:
    # Evaluated, RowBox[{"a", "+", "b"}] becomes a Mathics3 box object, which
    # comes back as the expression that was sent.
    for boxes in (
        wl.RowBox(("a", "+", "b")),
        wl.SuperscriptBox("x", "2"),
        wl.RowBox(("a", wl.FractionBox("1", wl.SqrtBox("2")))),
    ):
        assert kernel.request(wl.EvaluatePacket(boxes)) == [p("ReturnPacket", boxes)]
    n = line_number(kernel)
    assert kernel.request(
        wl.EnterExpressionPacket(wl.ToBoxes(wl.Power(wl.x, 2))), until="InputNamePacket"
    ) == [
        p("ReturnExpressionPacket", wl.SuperscriptBox("x", "2")),
        p("InputNamePacket", f"In[{n + 1}]:= "),
    ]


def test_no_mathics3_object_answers_unconvertible(kernel: Kernel) -> None:
    image = wl.Image(((0.0, 0.5),))
    [answer] = kernel.request(wl.EvaluatePacket(image))
    [data, kind, *options] = answer.args[0].args
    assert answer.args[0].head == WLSymbol("Image") and data.tolist() == [[0.0, 0.5]]
    assert kind == "Real64"
    assert options == [wl.Rule(wl.ColorSpace, "Grayscale"), wl.Rule(wl.Interleaving, True)]
    # The image comes back an image: Mathics3 measures it.
    assert kernel.request(wl.EvaluatePacket(wl.ImageDimensions(answer.args[0]))) == [
        p("ReturnPacket", (2, 1))
    ]
    compiled = wl.Compile((wl.x,), wl.Power(wl.x, 2))
    assert kernel.request(wl.EvaluatePacket(compiled)) == [p("ReturnPacket", wl.CompiledFunction(
        (wl.x,), wl.Power(wl.x, 2), wl.CompiledCode("-PythonizedCode-")
    ))]  # fmt: skip
    dispatch = wl.Dispatch((wl.Rule(wl.unsetKey, 1),))  # `a` is set by another test
    assert kernel.request(wl.EvaluatePacket(dispatch)) == [p("ReturnPacket", dispatch)]
    nested = wl.ToBoxes(wl.Power(wl.Subsuperscript(wl.x, 1, 2), 2))  # raised in Mathics3 itself
    assert kernel.request(wl.EvaluatePacket(nested)) == [
        p("ReturnPacket", wl.SuperscriptBox(wl.SubsuperscriptBox("x", "1", "2"), "2"))
    ]
