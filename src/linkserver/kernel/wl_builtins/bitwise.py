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


def _folding(name: str, op: Callable[[int, int], int], start: int, word: str, answer: int) -> Any:
    """A built-in ``name[n1, n2, ...]`` that folds ``op`` over integers (BitAnd, BitOr, BitXor).

    The three differ only in the operator, its identity and their documentation, so
    one class is made for each here; Mathics3 reads the rule from ``eval``'s docstring.
    """

    def eval(self: Any, args: Any, evaluation: Any) -> Any:
        return _fold(op, start, args)

    eval.__doc__ = f"{name}[args___]"
    doc = f"""
    <url>:WMA link:https://reference.wolfram.com/language/ref/{name}.html</url>
    <dl>
      <dt>'{name}'[$n_1$, $n_2$, ...]
      <dd>gives the bitwise {word} of the integers $n_i$.
    </dl>

    >> {name}[12, 10]
     = {answer}
    """
    return type(name, (Builtin,), {
        "__doc__": doc, "__module__": __name__, "name": name, "context": "System`",
        "attributes": _ASSOCIATIVE, "summary_text": f"bitwise {word} of integers", "eval": eval,
    })


BitAnd = _folding("BitAnd", operator.and_, -1, "AND", 12 & 10)
BitOr = _folding("BitOr", operator.or_, 0, "OR", 12 | 10)
BitXor = _folding("BitXor", operator.xor, 0, "XOR", 12 ^ 10)


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
