"""Bitwise operations on integers: BitAnd, BitOr, BitXor, BitNot.

Mathics3 10 has none of them (only ``BitLength``). ``wl/LinkServerClient.wl``
computes HMAC-SHA256 with ``BitXor[key, 16^^5c]`` over a list of bytes, so
the key proof of docs/protocol.md §3.5 needs it. Integers of any size, as
Python's operators on two's-complement integers (``BitNot[n]`` is ``-1 - n``),
which is the Wolfram Language's definition too. A call with an argument that
is not an integer stays unevaluated.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

from mathics.core.atoms import Integer
from mathics.core.attributes import (
    A_FLAT,
    A_LISTABLE,
    A_NUMERIC_FUNCTION,
    A_ONE_IDENTITY,
    A_ORDERLESS,
    A_PROTECTED,
)
from mathics.core.builtin import Builtin

__all__ = ["BitAnd", "BitNot", "BitOr", "BitXor"]

_ASSOCIATIVE = A_FLAT | A_LISTABLE | A_NUMERIC_FUNCTION | A_ONE_IDENTITY | A_ORDERLESS | A_PROTECTED


def _fold(op: Callable[[int, int], int], start: int, args: Any) -> Any:
    values = args.get_sequence()
    if not all(isinstance(v, Integer) for v in values):
        return None  # stays unevaluated
    return Integer(functools.reduce(op, (v.value for v in values), start))


class BitAnd(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/BitAnd.html</url>
    <dl>
      <dt>'BitAnd'[$n_1$, $n_2$, ...]
      <dd>gives the bitwise AND of the integers $n_i$.
    </dl>

    >> BitAnd[12, 10]
     = 8
    """

    name = "BitAnd"
    context = "System`"
    attributes = _ASSOCIATIVE
    summary_text = "bitwise AND of integers"

    def eval(self, args: Any, evaluation: Any) -> Any:
        "BitAnd[args___]"
        return _fold(operator.and_, -1, args)


class BitOr(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/BitOr.html</url>
    <dl>
      <dt>'BitOr'[$n_1$, $n_2$, ...]
      <dd>gives the bitwise OR of the integers $n_i$.
    </dl>

    >> BitOr[12, 10]
     = 14
    """

    name = "BitOr"
    context = "System`"
    attributes = _ASSOCIATIVE
    summary_text = "bitwise OR of integers"

    def eval(self, args: Any, evaluation: Any) -> Any:
        "BitOr[args___]"
        return _fold(operator.or_, 0, args)


class BitXor(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/BitXor.html</url>
    <dl>
      <dt>'BitXor'[$n_1$, $n_2$, ...]
      <dd>gives the bitwise XOR of the integers $n_i$.
    </dl>

    >> BitXor[12, 10]
     = 6
    """

    name = "BitXor"
    context = "System`"
    attributes = _ASSOCIATIVE
    summary_text = "bitwise XOR of integers"

    def eval(self, args: Any, evaluation: Any) -> Any:
        "BitXor[args___]"
        return _fold(operator.xor, 0, args)


class BitNot(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/BitNot.html</url>
    <dl>
      <dt>'BitNot'[$n$]
      <dd>gives the bitwise NOT of the integer $n$, that is -1 - $n$.
    </dl>

    >> BitNot[5]
     = -6
    """

    name = "BitNot"
    context = "System`"
    attributes = A_LISTABLE | A_NUMERIC_FUNCTION | A_PROTECTED
    summary_text = "bitwise NOT of an integer"

    def eval(self, n: Any, evaluation: Any) -> Any:
        "BitNot[n_Integer]"
        return Integer(~n.value)
