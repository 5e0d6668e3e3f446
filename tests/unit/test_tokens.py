"""WSTP-style token reading and writing over whole expressions."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from wolframclient.language import wl

from linkserver.errors import TokenError
from linkserver.tokens import Token, TokenReader, TokenWriter


def read_all(expr: object) -> list[tuple[Token, object]]:
    reader = TokenReader(expr)
    out: list[tuple[Token, object]] = []
    getters = {
        Token.FUNCTION: reader.get_function,
        Token.STRING: reader.get_string,
        Token.SYMBOL: reader.get_symbol,
        Token.INTEGER: reader.get_integer,
        Token.REAL: reader.get_real,
    }
    while (token := reader.next()) is not Token.ERROR:
        out.append((token, getters[token]()))
    assert reader.exhausted
    return out


def test_wstp_values() -> None:
    assert (Token.FUNCTION, Token.STRING, Token.SYMBOL, Token.INTEGER, Token.REAL) == (
        ord("F"), ord('"'), ord("#"), ord("+"), ord("*"),
    )


def test_reads_depth_first() -> None:
    expr = wl.Plus(1, wl.Times(2.5, wl.x), "s", [True, None])
    assert read_all(expr) == [
        (Token.FUNCTION, ("Plus", 4)),
        (Token.INTEGER, 1),
        (Token.FUNCTION, ("Times", 2)),
        (Token.REAL, 2.5),
        (Token.SYMBOL, "x"),
        (Token.STRING, "s"),
        (Token.FUNCTION, ("List", 2)),
        (Token.SYMBOL, "True"),
        (Token.SYMBOL, "Null"),
    ]


def test_python_containers_read_as_functions() -> None:
    assert read_all({"a": 1}) == [
        (Token.FUNCTION, ("Association", 1)),
        (Token.FUNCTION, ("Rule", 2)),
        (Token.STRING, "a"),
        (Token.INTEGER, 1),
    ]
    assert read_all(Fraction(1, 3))[0] == (Token.FUNCTION, ("Rational", 2))
    assert read_all(1 + 2j)[0] == (Token.FUNCTION, ("Complex", 2))
    assert read_all(np.arange(4).reshape(2, 2)) == [
        (Token.FUNCTION, ("List", 2)),
        (Token.FUNCTION, ("List", 2)), (Token.INTEGER, 0), (Token.INTEGER, 1),
        (Token.FUNCTION, ("List", 2)), (Token.INTEGER, 2), (Token.INTEGER, 3),
    ]


def test_wrong_getter_raises_and_consumes_nothing() -> None:
    reader = TokenReader(wl.f(1))
    with pytest.raises(TokenError, match="function, not a integer|not a integer"):
        reader.get_integer()
    assert reader.get_function() == ("f", 1)
    assert reader.get_integer() == 1
    with pytest.raises(TokenError, match="read completely"):
        reader.get_integer()


def test_writer_completes_outermost_expression() -> None:
    w = TokenWriter()
    assert w.put_function("f", 2) is None
    assert w.put_function("g", 1) is None
    assert w.put_expr(1) is None
    assert w.in_progress
    assert w.put_symbol("x") == wl.f(wl.g(1), wl.x)
    assert not w.in_progress


def test_writer_atoms_and_empty_functions_complete_at_once() -> None:
    w = TokenWriter()
    assert w.put_expr("s") == "s"
    assert w.put_function("List", 0) == wl.List()


@pytest.mark.parametrize("argc", [-1, 1.5, "2"])
def test_writer_rejects_bad_argc(argc: object) -> None:
    with pytest.raises(TokenError):
        TokenWriter().put_function("f", argc)  # type: ignore[arg-type]


def test_writer_rejects_bad_symbol() -> None:
    with pytest.raises(TokenError):
        TokenWriter().put_symbol("")
