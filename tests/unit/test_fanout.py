"""The parts of client.map that need no server: requests, ranges, the progress bar, lines."""

from __future__ import annotations

import io

import pytest
from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLInputExpression, WLSymbol

from linkserver import MapItemError
from linkserver.aio.client import EvaluationResult
from linkserver.aio.fanout import requests_for
from linkserver.map_command import ProgressBar, _outcome, parse_range, requests


def test_a_wl_function_is_applied_to_each_item() -> None:
    square = requests_for("#^2 &", [3, "s"])
    assert all(isinstance(r, WLFunction) for r in square)
    assert isinstance(square[0].head, WLInputExpression) and square[0].args == (3,)
    assert square[1].args == ("s",)  # an item is a value, a str item a string
    symbol = requests_for(wl.f, [1])
    assert symbol == [wl.f(1)]  # not f(1) called in Python: wl.f is callable too


def test_a_python_function_builds_each_expression() -> None:
    built = requests_for(lambda i: wl.Plus(i, 1), [1, 2])
    assert built == [wl.Plus(1, 1), wl.Plus(2, 1)]
    text = requests_for(lambda i: f"{i}!", [4])
    assert isinstance(text[0], WLInputExpression)  # a str it returns is input


def test_an_item_whose_expression_fails_is_its_own_failure() -> None:
    out = requests_for(lambda i: 1 // i, [1, 0, 2])
    assert out[0] == 1 and out[2] == 0
    assert isinstance(out[1], MapItemError) and out[1].index == 1 and out[1].item == 0
    assert "ZeroDivisionError" in str(out[1]) and out[1].value == WLSymbol("$Failed")


def test_none_makes_each_item_its_own_expression() -> None:
    out = requests_for(None, ["1+1", 5])
    assert isinstance(out[0], WLInputExpression) and out[1] == 5


def test_other_functions_are_refused() -> None:
    with pytest.raises(TypeError, match="not int"):
        requests_for(3, [1])


def test_ranges_count_as_range_does() -> None:
    assert list(parse_range("3")) == [1, 2, 3]
    assert list(parse_range("2,4")) == [2, 3, 4]
    assert list(parse_range("1,10,4")) == [1, 5, 9]
    assert list(parse_range("5,1,-2")) == [5, 3, 1]
    for bad in ("", "a", "1,2,0", "1,2,3,4"):
        with pytest.raises(ValueError):
            parse_range(bad)


def test_command_requests_ask_for_input_form() -> None:
    (request,) = requests("#^2 &", ["x"])
    assert request.head == wl.ToString and request.args[1] == wl.InputForm


def test_each_outcome_is_one_line_and_its_problems() -> None:
    assert _outcome(EvaluationResult("x^2")) == ("x^2", [])
    assert _outcome(EvaluationResult("$Failed")) == ("$Failed", ["it answered $Failed"])
    assert _outcome(EvaluationResult(WLSymbol("$Aborted"))) == (
        "$Aborted", ["it answered $Aborted"])
    noisy = EvaluationResult("ComplexInfinity", ["Power::infy: Infinite expression 1/0."],
                             ["Power::infy"])
    assert _outcome(noisy) == ("ComplexInfinity", ["Power::infy: Infinite expression 1/0."])
    lost = MapItemError(4, "x", "its link failed: gone")
    assert _outcome(lost) == ("$Failed", ["its link failed: gone"])


def test_progress_bar_redraws_in_place_and_clears() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, width=4, every=3600)
    bar(1, 4)
    bar(2, 4)  # too soon after the first: not drawn
    bar(4, 4)  # the end is always drawn
    assert out.getvalue() == "\r[#...] 1/4\r[####] 4/4"
    bar.clear()
    assert out.getvalue().endswith("\r\x1b[K")
