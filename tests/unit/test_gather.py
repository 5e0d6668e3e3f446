"""The answer gatherer, fed packet sequences by hand and by hypothesis; no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from linkserver import gather
from linkserver.errors import LocalProtocolError
from linkserver.gather import (
    BadSyntax,
    Call,
    Display,
    Done,
    Gatherer,
    InputRequest,
    Issued,
    Message,
    Other,
    Printed,
    Result,
)
from linkserver.protocol import packets
from linkserver.protocol.packets import (
    InputNamePacket,
    ReturnPacket,
    packet_from_expr,
    short_head,
    short_name,
)

text = st.text(max_size=20)
tags = st.sampled_from(["infy", "argx", "sntxf", "timeout", "kerneldied"])
symbols = st.sampled_from(["Power", "System`Power", "General", "LinkServer", "Global`f"])


def feed_all(gatherer: Gatherer, sequence: list[Any]) -> list[Any]:
    """Feed every packet; check the answer ends exactly at the last one; return the events."""
    events: list[Any] = []
    for i, packet in enumerate(sequence):
        assert not gatherer.done, f"done before packet {i} of {len(sequence)}"
        events += gatherer.feed(packet)
    assert gatherer.done
    assert isinstance(events[-1], Done) and not any(isinstance(e, Done) for e in events[:-1])
    return events


# ----------------------------------------------------------- by hand


def test_evaluate_answer_with_prints_and_a_message() -> None:
    g = Gatherer.for_request(wl.EvaluatePacket(wl.x))
    events = feed_all(g, [
        wl.TextPacket("one"),
        wl.MessagePacket(wl.Power, "infy"),
        wl.TextPacket("Power::infy: Infinite expression 1 / 0 encountered."),
        wl.TextPacket("two"),
        wl.ReturnPacket(wl.ComplexInfinity),
    ])
    message = Message("Power", "infy", "Power::infy: Infinite expression 1 / 0 encountered.")
    assert events == [Printed("one"), Issued(message), Printed("two"),
                      Result(wl.ComplexInfinity), Done(None)]
    out = g.outcome
    assert out.result == wl.ComplexInfinity and out.printed == ["one", "two"]
    assert [m.name for m in out.messages] == ["Power::infy"]
    assert out.messages[0].body == "Infinite expression 1 / 0 encountered."
    assert out.failed and out.prompt is None


def test_enter_text_answer_with_output_names_and_prompt() -> None:
    g = Gatherer.for_request(wl.EnterTextPacket("1+1\nx//FullForm"))
    events = feed_all(g, [
        wl.OutputNamePacket("Out[4]= "), wl.ReturnTextPacket("2"),
        wl.OutputNamePacket("Out[5]//FullForm= "), wl.ReturnTextPacket("x"),
        wl.InputNamePacket("In[6]:= "),
    ])
    first, second = g.outcome.results
    assert events == [first, second, Done("In[6]:= ")]
    assert (first.line, first.form, first.text, first.is_text) == (4, "", "2", True)
    assert (second.line, second.form) == (5, "FullForm")
    assert g.outcome.result == "x" and g.outcome.line == 5 and not g.outcome.failed


def test_a_return_packet_does_not_end_an_enter_request() -> None:
    g = Gatherer.for_request(packets.EnterTextPacket("1"))
    assert g.feed(wl.ReturnPacket(3)) == [Result(3)]
    assert not g.done
    assert g.feed(wl.InputNamePacket("In[2]:= ")) == [Done("In[2]:= ")]
    assert g.outcome.result == 3


def test_enter_expression_answers_return_expression_then_prompt() -> None:
    g = Gatherer.for_request(wl.EnterExpressionPacket(wl.Plus(1, 1)))
    events = feed_all(g, [wl.ReturnExpressionPacket(2), wl.InputNamePacket("In[3]:= ")])
    assert events == [Result(2), Done("In[3]:= ")]


def test_syntax_messages_before_a_syntax_packet_are_the_syntax_error() -> None:
    g = Gatherer.for_request(wl.EnterTextPacket("1+"))
    sntx = Message("Syntax", "sntxi", "Syntax::sntxi: Incomplete expression.")
    events = feed_all(g, [wl.MessagePacket(wl.Syntax, "sntxi"), wl.TextPacket(sntx.text),
                          wl.SyntaxPacket(3), wl.InputNamePacket("In[1]:= ")])
    assert events == [BadSyntax(3, (sntx,)), Done("In[1]:= ")]
    assert g.outcome.syntax == 3 and g.outcome.messages == [sntx] and g.outcome.failed


def test_a_syntax_message_without_syntax_packet_is_an_ordinary_message() -> None:
    # ToExpression["1+"] inside an evaluation: a message, then the result.
    g = Gatherer()
    sntx = Message("Syntax", "sntxi", "Syntax::sntxi: Incomplete expression.")
    events = feed_all(g, [wl.MessagePacket(wl.Syntax, "sntxi"), wl.TextPacket(sntx.text),
                          wl.TextPacket("after"), wl.ReturnPacket(WLSymbol("$Failed"))])
    assert events == [Issued(sntx), Printed("after"), Result(WLSymbol("$Failed")), Done(None)]


def test_a_message_without_its_text_is_not_lost_and_takes_no_print() -> None:
    g = Gatherer()
    events = feed_all(g, [wl.MessagePacket(wl.General, "stop"), wl.TextPacket("x"),
                          wl.MessagePacket(wl.General, "late"), wl.ReturnPacket(1)])
    # The first message's text is the TextPacket right after it; the second never got one.
    assert events[0] == Issued(Message("General", "stop", "x"))
    assert events[1] == Issued(Message("General", "late", ""))
    assert g.outcome.printed == []


def test_a_message_with_a_qualified_symbol_keeps_it_and_names_it_short() -> None:
    g = Gatherer()
    feed_all(g, [WLFunction(WLSymbol("System`MessagePacket"), WLSymbol("System`Power"), "infy"),
                 wl.TextPacket("Power::infy: Infinite."), wl.ReturnPacket(1)])
    (message,) = g.outcome.messages
    assert message.symbol == "System`Power" and message.name == "Power::infy"
    assert message.body == "Infinite."


def test_input_call_display_and_other_packets_say_what_they_are() -> None:
    g = Gatherer()
    assert g.feed(wl.InputPacket("n? ")) == [InputRequest("n? ", False)]
    assert g.feed(wl.InputStringPacket("s? ")) == [InputRequest("s? ", True)]
    assert g.feed(wl.CallPacket(2, (1, 2))) == [Call(2, (1, 2))]
    assert g.feed(wl.DisplayPacket("a")) == [Display("a", False)]
    assert g.feed(wl.DisplayEndPacket("b")) == [Display("b", True)]
    menu = wl.MenuPacket(1, "Interrupt> ")
    assert g.feed(menu) == [Other(menu)]
    assert g.feed(42) == [Other(42)]
    prompt = wl.InputNamePacket("In[1]:= ")  # no final packet for an EvaluatePacket
    assert g.feed(prompt) == [Other(prompt)]
    bad_arity = wl.TextPacket("a", "b")
    assert g.feed(bad_arity) == [Other(bad_arity)]
    assert not g.done


def test_a_final_packet_with_the_wrong_arity_still_ends_the_answer() -> None:
    g = Gatherer()
    assert g.feed(wl.ReturnPacket()) == [Result(None), Done(None)]
    assert g.done and g.outcome.result is None
    enter = Gatherer(InputNamePacket)
    assert enter.feed(wl.InputNamePacket()) == [Done("")]


def test_feeding_after_the_end_is_a_local_error() -> None:
    g = Gatherer()
    g.feed(wl.ReturnPacket(1))
    with pytest.raises(LocalProtocolError, match="new Gatherer"):
        g.feed(wl.ReturnPacket(2))


def test_packet_objects_and_expressions_gather_alike() -> None:
    sequence = [wl.TextPacket("p"), wl.MessagePacket(wl.Power, "infy"), wl.TextPacket("t"),
                wl.OutputNamePacket("Out[1]= "), wl.ReturnTextPacket("2"),
                wl.InputNamePacket("In[2]:= ")]
    objects = [packet_from_expr(p) for p in sequence]
    a, b = Gatherer(InputNamePacket), Gatherer(InputNamePacket)
    assert feed_all(a, sequence) == feed_all(b, objects)
    assert a.outcome == b.outcome


@pytest.mark.parametrize(("request_", "final"), [
    (wl.EvaluatePacket(1), ReturnPacket),
    (wl.EnterTextPacket("1"), InputNamePacket),
    (WLFunction(WLSymbol("System`EnterTextPacket"), "1"), InputNamePacket),
    (wl.EnterExpressionPacket(1), InputNamePacket),
    (packets.EnterExpressionPacket(1), InputNamePacket),
    (packets.EvaluatePacket(1), ReturnPacket),
    (WLFunction(WLSymbol(packets.PREEMPTIVE), wl.EvaluatePacket(1)), ReturnPacket),
    (wl.Plus(1, 1), ReturnPacket),  # the server evaluates a plain expression
])
def test_the_final_packet_follows_from_the_request(request_: Any, final: type) -> None:
    assert Gatherer.for_request(request_).final is final


def test_failures_are_recognised_as_values_and_as_text() -> None:
    assert gather.is_failure(WLSymbol("$Failed")) and gather.is_failure(WLSymbol("$Aborted"))
    assert gather.is_failure(WLFunction(WLSymbol("linkserver`KernelError"), "internal", "x"))
    assert not gather.is_failure("$Failed")  # a string result is a value
    assert gather.is_failure("$Failed", text=True) and gather.is_failure("$Aborted", text=True)
    assert not gather.is_failure("2", text=True) and not gather.is_failure(2)
    assert Result("$Aborted", "Out[1]= ", is_text=True).failed
    assert not Result("$Aborted").failed


def test_short_names() -> None:
    assert short_name("System`ReturnPacket") == "ReturnPacket" == short_name("ReturnPacket")
    assert short_name("A`B`c") == "c"
    assert short_head(WLFunction(WLSymbol("System`Plus"), 1)) == "Plus"
    assert short_head(WLFunction(WLFunction(WLSymbol("f"), 1), 2)) == ""
    assert short_head(3) == "" and short_head(WLSymbol("x")) == ""


# ------------------------------------------------------- by hypothesis


@dataclass(frozen=True)
class Side:
    """One piece of a model answer: its packets and the events they must give."""

    packets: tuple[Any, ...]
    events: tuple[Any, ...]
    printed: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()


def _message(symbol: str, tag: str, body: str) -> Side:
    name = f"{short_name(symbol)}::{tag}"
    message = Message(symbol, tag, f"{name}: {body}")
    packet = WLFunction(WLSymbol("MessagePacket"), WLSymbol(symbol), tag)
    return Side((packet, wl.TextPacket(message.text)), (Issued(message),), messages=(message,))


side_items = st.one_of(
    text.map(lambda t: Side((wl.TextPacket(t),), (Printed(t),), printed=(t,))),
    st.builds(_message, symbols, tags, text),
    st.builds(lambda p, s: Side(
        ((wl.InputStringPacket if s else wl.InputPacket)(p),), (InputRequest(p, s),)),
        text, st.booleans()),
    st.builds(lambda i: Side((wl.CallPacket(i, (i,)),), (Call(i, (i,)),)), st.integers(1, 9)),
    st.builds(lambda d: Side((wl.DisplayPacket(d),), (Display(d),)), text),
    st.just(Side((wl.SuspendPacket(),), (Other(wl.SuspendPacket()),))),
)


def _result(line: int, value: str) -> Side:
    result = Result(value, f"Out[{line}]= ", is_text=True)
    return Side((wl.OutputNamePacket(result.name), wl.ReturnTextPacket(value)), (result,))


enter_items = st.one_of(side_items, st.builds(_result, st.integers(1, 999), text))


def _flatten(items: list[Side]) -> Iterator[Any]:
    for item in items:
        yield from item.packets


@given(st.lists(side_items, max_size=12), st.integers() | text)
def test_any_evaluate_answer_is_gathered_whole_and_in_order(items: list[Side], value: Any) -> None:
    g = Gatherer.for_request(wl.EvaluatePacket(wl.x))
    events = feed_all(g, [*_flatten(items), wl.ReturnPacket(value)])
    assert events == [e for item in items for e in item.events] + [Result(value), Done(None)]
    assert g.outcome.result == value
    assert g.outcome.printed == [t for item in items for t in item.printed]
    assert g.outcome.messages == [m for item in items for m in item.messages]


@given(st.lists(enter_items, max_size=12), st.lists(text, max_size=3), st.booleans(),
       st.integers(1, 999))
def test_any_enter_answer_is_gathered_whole_and_in_order(
    items: list[Side], syntax_texts: list[str], bad: bool, line: int
) -> None:
    sequence = list(_flatten(items))
    expected = [e for item in items for e in item.events]
    syntax = tuple(Message("Syntax", "sntxf", f"Syntax::sntxf: {t}") for t in syntax_texts)
    for message in syntax:
        sequence += [wl.MessagePacket(wl.Syntax, "sntxf"), wl.TextPacket(message.text)]
    if bad:  # the syntax messages describe the error that ends the input
        sequence.append(wl.SyntaxPacket(7))
        expected.append(BadSyntax(7, syntax))
    else:  # messages of some evaluation, issued in their place
        expected += [Issued(m) for m in syntax]
    prompt = f"In[{line}]:= "
    sequence.append(wl.InputNamePacket(prompt))
    expected.append(Done(prompt))
    g = Gatherer.for_request(wl.EnterTextPacket("..."))
    assert feed_all(g, sequence) == expected
    out = g.outcome
    assert out.results == [e for e in expected if isinstance(e, Result)]
    assert out.messages == [m for item in items for m in item.messages] + list(syntax)
    assert out.line == line - 1 and out.syntax == (7 if bad else None)


# ------------------------------------------------------------- drivers


def _script(answer: list[Any]) -> tuple[Any, list[Any]]:
    """A fake link: ``get`` hands out ``answer``; what is put is recorded."""
    queue = iter(answer)
    sent: list[Any] = []
    return (lambda: next(queue)), sent


def test_blocking_driver_answers_input_and_calls_and_reports_events() -> None:
    get, sent = _script([wl.TextPacket("hi"), wl.InputPacket("n? "), wl.CallPacket(1, (20,)),
                         wl.ReturnPacket(42)])
    seen: list[Any] = []
    out = gather.read_answer(Gatherer(), get, sent.append, on_event=seen.append,
                             on_input=lambda e: f"answer to {e.prompt}",
                             on_call=lambda c: c.args[0] + 1)
    assert out.result == 42 and out.printed == ["hi"]
    assert sent == [wl.EnterTextPacket("answer to n? "), wl.ReturnPacket(21)]
    assert seen == [Printed("hi"), InputRequest("n? "), Call(1, (20,)), Result(42), Done(None)]


def test_blocking_driver_defaults_cancel_input_and_fail_calls() -> None:
    get, sent = _script([wl.InputPacket(""), wl.CallPacket(3, ()), wl.ReturnPacket(1)])
    gather.read_answer(Gatherer(), get, sent.append)
    assert sent[0] == wl.EnterTextPacket(gather.DEFAULT_INPUT)
    failure = sent[1].args[0]
    assert sent[1].head == WLSymbol("ReturnPacket") and failure.head == WLSymbol("Failure")
    assert "no installed function" in failure.args[1]["MessageTemplate"]


def test_async_driver_awaits_handlers() -> None:
    answer = iter([wl.InputStringPacket("s? "), wl.CallPacket(1, (2,)),
                   wl.InputNamePacket("In[9]:= ")])
    sent: list[Any] = []

    async def get() -> Any:
        return next(answer)

    async def put(expr: Any) -> None:
        sent.append(expr)

    async def ask(event: InputRequest) -> str:
        return "typed" if event.string else "?"

    async def call(event: Call) -> Any:
        return event.args[0] * 10

    out = asyncio.run(gather.aread_answer(Gatherer(InputNamePacket), get, put,
                                          on_input=ask, on_call=call))
    assert sent == [wl.EnterTextPacket("typed"), wl.ReturnPacket(20)]
    assert out.prompt == "In[9]:= " and out.line == 8


def test_async_driver_takes_plain_answers_too() -> None:
    answer = iter([wl.InputPacket("n? "), wl.ReturnPacket(1)])
    sent: list[Any] = []

    async def get() -> Any:
        return next(answer)

    async def put(expr: Any) -> None:
        sent.append(expr)

    asyncio.run(gather.aread_answer(Gatherer(), get, put, on_input=lambda e: "7"))
    assert sent == [wl.EnterTextPacket("7")]
