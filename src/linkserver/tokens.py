"""WSTP-style token calls: build and read expressions one piece at a time.

C programs talk to WSTP as ``WSPutFunction(lp, "Print", 1);
WSPutString(lp, "hi")`` and ``WSGetNext``/``WSGetInteger``. This module holds
the two small machines that make :class:`linkserver.Link`'s ``put_function``,
``get_next``, ``get_integer`` ... behave that way over whole expressions: a
:class:`TokenWriter` collects puts until the outermost expression is complete;
a :class:`TokenReader` walks one received expression depth-first. Neither does
I/O; the link sends what the writer completes and feeds the reader what it
receives.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from fractions import Fraction
from typing import Any

from wolframclient.language.expression import WLFunction, WLSymbol

from .errors import TokenError

__all__ = ["Token", "TokenReader", "TokenWriter"]


class Token(enum.IntEnum):
    """Token kinds, with WSTP's values (``WSTKFUNC`` is ``'F'``, ...)."""

    ERROR = 0  #: WSTKERR: nothing (more) to read, or no WSTP token fits
    FUNCTION = ord("F")  #: WSTKFUNC
    STRING = ord('"')  #: WSTKSTR
    SYMBOL = ord("#")  #: WSTKSYM
    INTEGER = ord("+")  #: WSTKINT
    REAL = ord("*")  #: WSTKREAL


_SYMBOL_ATOMS = {True: "True", False: "False"}


def _classify(item: Any) -> tuple[Token, Any, tuple[Any, ...]]:
    """Return (token, value, children) for one expression node."""
    if isinstance(item, bool):
        return Token.SYMBOL, _SYMBOL_ATOMS[item], ()
    if item is None:
        return Token.SYMBOL, "Null", ()
    if isinstance(item, int):
        return Token.INTEGER, item, ()
    if isinstance(item, (float, Decimal)):
        return Token.REAL, item, ()
    if isinstance(item, str):
        return Token.STRING, item, ()
    if isinstance(item, WLSymbol):
        return Token.SYMBOL, item.name, ()
    if isinstance(item, WLFunction):
        head = item.head
        name = head.name if isinstance(head, WLSymbol) else head
        return Token.FUNCTION, name, tuple(item.args)
    if isinstance(item, (list, tuple)):
        return Token.FUNCTION, "List", tuple(item)
    if isinstance(item, dict):
        rules = tuple(WLFunction(WLSymbol("Rule"), k, v) for k, v in item.items())
        return Token.FUNCTION, "Association", rules
    if isinstance(item, Fraction):
        return Token.FUNCTION, "Rational", (item.numerator, item.denominator)
    if isinstance(item, complex):
        return Token.FUNCTION, "Complex", (item.real, item.imag)
    if isinstance(item, (bytes, bytearray)):
        return Token.FUNCTION, "ByteArray", (list(item),)
    tolist = getattr(item, "tolist", None)  # numpy arrays read as nested Lists
    if callable(tolist):
        value = tolist()
        if isinstance(value, list):
            return Token.FUNCTION, "List", tuple(value)
        return _classify(value)
    return Token.ERROR, item, ()


class TokenReader:
    """Walks one expression depth-first, as ``WSGetNext`` and friends do.

    Args:
        expr: the received expression.
    """

    def __init__(self, expr: Any) -> None:
        self._pending: list[Any] = [expr]

    @property
    def exhausted(self) -> bool:
        """True once every token has been read."""
        return not self._pending

    def next(self) -> Token:
        """Return the kind of the next token without consuming it (``ERROR`` at the end)."""
        if not self._pending:
            return Token.ERROR
        return _classify(self._pending[-1])[0]

    def _take(self, want: Token, what: str) -> tuple[Any, tuple[Any, ...]]:
        if not self._pending:
            raise TokenError(f"{what}: the expression has been read completely; get the next one")
        token, value, children = _classify(self._pending[-1])
        if token is not want:
            shown = token.name.lower() if token is not Token.ERROR else type(value).__name__
            raise TokenError(f"{what}: the next token is a {shown}, not a {want.name.lower()}")
        self._pending.pop()
        self._pending.extend(reversed(children))
        return value, children

    def get_function(self) -> tuple[Any, int]:
        """Consume a function token; return ``(head, argc)`` (head as a name when a symbol).

        Raises:
            TokenError: the next token is not a function.
        """
        head, children = self._take(Token.FUNCTION, "get_function")
        return head, len(children)

    def get_string(self) -> str:
        """Consume and return a string token.

        Raises:
            TokenError: the next token is not a string.
        """
        value: str = self._take(Token.STRING, "get_string")[0]
        return value

    def get_symbol(self) -> str:
        """Consume and return a symbol's name.

        Raises:
            TokenError: the next token is not a symbol.
        """
        value: str = self._take(Token.SYMBOL, "get_symbol")[0]
        return value

    def get_integer(self) -> int:
        """Consume and return an integer token.

        Raises:
            TokenError: the next token is not an integer.
        """
        value: int = self._take(Token.INTEGER, "get_integer")[0]
        return value

    def get_real(self) -> float:
        """Consume and return a real token as a float (WSGetReal64).

        Raises:
            TokenError: the next token is not a real.
        """
        return float(self._take(Token.REAL, "get_real")[0])

    def get_expr(self) -> Any:
        """Consume the whole next subexpression and return it.

        Raises:
            TokenError: nothing is left to read.
        """
        if not self._pending:
            raise TokenError("get_expr: the expression has been read completely; get the next one")
        return self._pending.pop()


class TokenWriter:
    """Collects token puts until the outermost expression is complete."""

    def __init__(self) -> None:
        self._stack: list[tuple[Any, int, list[Any]]] = []

    @property
    def in_progress(self) -> bool:
        """True while a function has been started and not completed."""
        return bool(self._stack)

    def reset(self) -> None:
        """Forget a partly built expression."""
        self._stack.clear()

    def put_function(self, head: Any, argc: int) -> Any | None:
        """Start a function with ``argc`` arguments (its head a name or an expression).

        Returns:
            the completed outermost expression, or None while arguments are due.

        Raises:
            TokenError: ``argc`` is negative.
        """
        if not isinstance(argc, int) or argc < 0:
            raise TokenError(f"put_function: argc must be a non-negative integer, not {argc!r}")
        head_expr = WLSymbol(head) if isinstance(head, str) else head
        if argc == 0:
            return self.put_expr(WLFunction(head_expr))
        self._stack.append((head_expr, argc, []))
        return None

    def put_expr(self, value: Any) -> Any | None:
        """Add one finished expression (an atom or a whole subexpression).

        Returns:
            the completed outermost expression, or None while arguments are due.
        """
        while self._stack:
            head, argc, args = self._stack[-1]
            args.append(value)
            if len(args) < argc:
                return None
            self._stack.pop()
            value = WLFunction(head, *args)
        return value

    def put_symbol(self, name: str) -> Any | None:
        """Add a symbol by name (``"x"``, ``"Global`x"``).

        Raises:
            TokenError: ``name`` is not a non-empty string.
        """
        if not isinstance(name, str) or not name:
            raise TokenError(f"put_symbol: a symbol name is a non-empty string, not {name!r}")
        return self.put_expr(WLSymbol(name))
