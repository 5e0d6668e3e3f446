"""``linkserver eval``'s writer, against a scripted fake link (no server), and its JSON."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from linkserver.protocol.packets import short_head
from linkserver.script import Script, json_text


class FakeLink:
    """Answers the EnterTextPacket with ``answer`` and a follow-up with ``formats(lines)``."""

    def __init__(self, answer: list[Any], formats: Callable[[list[int]], list[Any]]) -> None:
        self.answer = answer
        self.formats = formats
        self.sent: list[Any] = []
        self.queue: list[Any] = []

    def put(self, expr: Any) -> None:
        self.sent.append(expr)
        head = short_head(expr)
        if head == "EnterTextPacket":
            self.queue += self.answer
        elif head == "EvaluatePacket":
            self.queue.append(wl.ReturnPacket(self.formats(_lines(expr))))

    def get(self, timeout: float | None = None) -> Any:
        return self.queue.pop(0)

    def abort(self) -> None:
        raise AssertionError("nothing to abort")


def _lines(expr: Any) -> list[int]:
    """The n of every Out[n] in a request."""
    found: list[int] = []

    def walk(e: Any) -> None:
        if isinstance(e, WLFunction):
            if short_head(e) == "Out":
                found.append(e.args[0])
            walk(e.head)
            for arg in e.args:
                walk(arg)

    walk(expr)
    return sorted(set(found))


def run(answer: list[Any], *, fmt: str = "InputForm", results: str = "last",
        formats: Callable[[list[int]], list[Any]] | None = None) -> tuple[int, str, str, FakeLink]:
    link = FakeLink(answer, formats or (lambda lines: [f"<Out[{n}] in {fmt}>" for n in lines]))
    out, err = io.StringIO(), io.StringIO()
    script = Script(link, format=fmt, results=results, out=out, err=err)  # type: ignore[arg-type]
    code = script.run("code")
    return code, out.getvalue(), err.getvalue(), link


def result(n: int, text: str, form: str = "") -> list[Any]:
    name = f"Out[{n}]//{form}= " if form else f"Out[{n}]= "
    return [wl.OutputNamePacket(name), wl.ReturnTextPacket(text)]


END = [wl.InputNamePacket("In[9]:= ")]  # the last input was line 8


def test_the_last_result_is_asked_of_the_kernel_in_the_format() -> None:
    code, out, err, link = run([wl.TextPacket("p"), *result(7, "x ^ 2"), *result(8, "y"), *END])
    assert (code, out, err) == (0, "p\n<Out[8] in InputForm>\n", "")
    assert len(link.sent) == 2 and _lines(link.sent[1]) == [8]  # only the one written


def test_output_form_costs_no_second_request() -> None:
    code, out, _, link = run([*result(8, "x ^ 2"), *END], fmt="OutputForm")
    assert (code, out, len(link.sent)) == (0, "x ^ 2\n", 1)


def test_a_null_last_statement_writes_no_result() -> None:
    code, out, _, link = run([*result(7, "2"), *END])  # line 8 gave Null
    assert (code, out, len(link.sent)) == (0, "", 1)


def test_print_all_holds_what_follows_a_result_until_its_text_comes() -> None:
    answer = [wl.TextPacket("a"), *result(6, "x ^ 2"), wl.TextPacket("b"), *result(8, "z"), *END]
    code, out, _, link = run(answer, results="all")
    assert out == "a\n<Out[6] in InputForm>\nb\n<Out[8] in InputForm>\n"
    assert len(link.sent) == 2 and _lines(link.sent[1]) == [6, 8]  # one request for both


def test_print_all_in_output_form_writes_in_place() -> None:
    answer = [wl.TextPacket("a"), *result(6, "x ^ 2"), wl.TextPacket("b"), *END]
    assert run(answer, fmt="OutputForm", results="all")[1] == "a\nx ^ 2\nb\n"


def test_a_form_in_the_input_and_aborted_results_are_the_kernels_text() -> None:
    code, out, _, link = run([*result(8, "\\frac{1}{2}", form="TeXForm"), *END])
    assert (out, len(link.sent)) == ("\\frac{1}{2}\n", 1)
    code, out, _, link = run([*result(8, "$Aborted"), *END])
    assert (code, out, len(link.sent)) == (1, "$Aborted\n", 1)


def test_a_failure_answer_is_written_and_fails() -> None:
    answer = [wl.MessagePacket(wl.LinkServer, "kerneldied"),
              wl.TextPacket("LinkServer::kerneldied: the kernel died"),
              wl.ReturnTextPacket("$Failed"), wl.InputNamePacket("In[?]:= ")]
    code, out, err, _ = run(answer)
    assert (code, out) == (1, "$Failed\n") and "kerneldied" in err
    code, out, err, _ = run(answer, fmt="JSON")
    assert (code, out) == (1, "") and "no JSON form" in err


def test_json_is_made_here_from_the_value() -> None:
    code, out, _, _ = run([*result(8, "{1, 2}"), *END], fmt="JSON",
                          formats=lambda lines: [(1, {"a": None})])
    assert (code, json.loads(out)) == (0, [1, {"a": None}])


def test_a_forgotten_out_falls_back_to_output_form_with_a_warning() -> None:
    forgotten = WLSymbol("linkserver`Private`forgotten")
    code, out, err, _ = run([*result(8, "x ^ 2"), *END], formats=lambda lines: [forgotten])
    assert (code, out) == (0, "x ^ 2\n") and "$HistoryLength" in err
    code, out, err, _ = run([*result(8, "x ^ 2"), *END], fmt="JSON",
                            formats=lambda lines: [forgotten])
    assert (code, out) == (1, "") and "$HistoryLength" in err


def test_a_syntax_error_writes_its_messages_and_no_result() -> None:
    answer = [*result(7, "1"), wl.MessagePacket(wl.Syntax, "sntxf"),
              wl.TextPacket("Syntax::sntxf: bad"), wl.SyntaxPacket(4), *END]
    code, out, err, _ = run(answer)
    assert (code, out, err) == (1, "", "Syntax::sntxf: bad\n")


def test_input_prompts_on_stderr_and_reads_the_answer() -> None:
    link = FakeLink([wl.InputPacket("n? "), *result(8, "42"), *END], lambda lines: ["42"])
    out, err = io.StringIO(), io.StringIO()
    script = Script(link, out=out, err=err, ask=lambda prompt: "41")  # type: ignore[arg-type]
    script.run("Input[] + 1")
    assert wl.EnterTextPacket("41") in link.sent
    assert (out.getvalue(), err.getvalue()) == ("42\n", "n? ")


# ------------------------------------------------------------------ JSON

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**4000), 10**4000)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@given(json_values)
def test_json_round_trips_every_value_json_can_hold(value: Any) -> None:
    assert json.loads(json_text(value)) == _plain(value)


def test_json_of_rules_arrays_and_big_numbers() -> None:
    assert json.loads(json_text((wl.Rule("a", 1), wl.RuleDelayed("b", (2,))))) == \
        {"a": 1, "b": [2]}
    assert json_text(()) == "[]" and json_text({}) == "{}"
    assert json.loads(json_text(np.arange(6).reshape(2, 3))) == [[0, 1, 2], [3, 4, 5]]
    assert json_text(10**20000) == "1" + "0" * 20000  # past Python's int/str guard


@pytest.mark.parametrize(("value", "named"), [
    (wl.Power(wl.x, 2), "Power"),
    (WLSymbol("x"), "symbol x"),
    ({1: 2}, "key the number 1"),
    ((wl.Rule(1, 2),), "Rule"),
    (wl.Rational(1, 2), "Rational"),
    (b"bytes", "bytes"),
])
def test_json_names_what_has_no_json_form(value: Any, named: str) -> None:
    with pytest.raises(ValueError, match="no JSON form") as caught:
        json_text(value)
    assert named in str(caught.value)
