"""BinarySerialize and BinaryDeserialize: expressions to WXF bytes and back.

The bytes are :mod:`linkserver.wxf`'s, which are wolframclient's and follow the
WXF format description; the expressions are converted by
:mod:`linkserver.kernel.mathics_exprs`. Symbols are written as the Wolfram
Language writes them: a ``System``` symbol by its short name, every other one
with its context (``Global`x``), whatever ``$Context`` is. Reading, a name
without a context is resolved as the parser resolves it (``$Context``, then
``$ContextPath``), so ``Plus`` is ``System`Plus`` and ``x`` is ``Global`x``.

What differs from a Wolfram kernel, because Mathics3 keeps no packed arrays:
``BinarySerialize[Range[3]]`` writes a list of three integers, where a Wolfram
kernel writes a packed array. Both decode to the same expression.
"""

from __future__ import annotations

from typing import Any

from mathics.core.atoms import ByteArray, String
from mathics.core.attributes import A_PROTECTED
from mathics.core.builtin import Builtin
from mathics.core.expression import Expression
from mathics.core.systemsymbols import SymbolFailed

from ... import wxf
from ...errors import LimitError, WXFDecodeError, WXFEncodeError
from ..mathics_exprs import ConversionError, from_mathics, to_mathics

__all__ = ["BinaryDeserialize", "BinarySerialize"]


class _SystemContextOnly:
    """What ``from_mathics`` reads of a ``Definitions``: only ``System``` names are shortened."""

    current_context = "System`"
    context_path = ("System`",)


_WL_CONTEXTS = _SystemContextOnly()


class BinarySerialize(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/BinarySerialize.html</url>
    <dl>
      <dt>'BinarySerialize'[$expr$]
      <dd>gives the WXF bytes of $expr$ as a 'ByteArray'.
      <dt>'BinarySerialize'[$expr$, 'PerformanceGoal' -> "Size"]
      <dd>gives the compressed form ('8C:').
    </dl>

    >> Normal[BinarySerialize[f[x]]]
     = {56, 58, 102, 1, 115, 8, 71, 108, 111, 98, 97, 108, 96, 102, 115, 8, 71, 108, 111, 98, 97, 108, 96, 120}
    """

    name = "BinarySerialize"
    context = "System`"
    attributes = A_PROTECTED
    options = {"PerformanceGoal": "Automatic"}
    summary_text = "the WXF bytes of an expression"
    messages = {
        "goal": 'PerformanceGoal -> `1` is not "Speed", "Size" or Automatic.',
        "nowxf": "`1` cannot be serialized: `2`",
    }

    def eval(self, expr: Any, evaluation: Any, options: Any = None) -> Any:
        "BinarySerialize[expr_, OptionsPattern[BinarySerialize]]"
        goal = self.get_option(options or {}, "PerformanceGoal", evaluation)
        if isinstance(goal, String) and goal.value in ("Speed", "Size"):
            compress = goal.value == "Size"
        elif goal is None or goal.get_name() == "System`Automatic":
            compress = False
        else:
            evaluation.message("BinarySerialize", "goal", goal)
            return SymbolFailed
        try:
            data = wxf.dumps(from_mathics(expr, _WL_CONTEXTS), compress=compress)
        except (ConversionError, WXFEncodeError, LimitError) as exc:
            evaluation.message("BinarySerialize", "nowxf", _short(expr), String(str(exc)))
            return SymbolFailed
        return ByteArray(data)


class BinaryDeserialize(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/BinaryDeserialize.html</url>
    <dl>
      <dt>'BinaryDeserialize'[$ba$]
      <dd>gives the expression whose WXF bytes are the 'ByteArray' $ba$.
      <dt>'BinaryDeserialize'[$ba$, $h$]
      <dd>wraps $h$ around the expression before it is evaluated.
    </dl>

    >> BinaryDeserialize[BinarySerialize[Unevaluated[1 + 1]], Hold]
     = Hold[1 + 1]
    """

    name = "BinaryDeserialize"
    context = "System`"
    attributes = A_PROTECTED
    summary_text = "the expression of WXF bytes"
    messages = {
        "corrupt": "`1` is not WXF data BinarySerialize could have written (`2`); check where the bytes came from.",
        "notba": "`1` is not a ByteArray; BinaryDeserialize reads the ByteArray BinarySerialize gives.",
    }

    def eval(self, ba: Any, evaluation: Any) -> Any:
        "BinaryDeserialize[ba_ByteArray]"
        return self._load(ba, None, evaluation)

    def eval_head(self, ba: Any, head: Any, evaluation: Any) -> Any:
        "BinaryDeserialize[ba_ByteArray, head_]"
        return self._load(ba, head, evaluation)

    def eval_not_bytes(self, other: Any, rest: Any, evaluation: Any) -> Any:
        "BinaryDeserialize[other_?(Not[ByteArrayQ[#]]&), rest___]"
        evaluation.message("BinaryDeserialize", "notba", _short(other))
        return SymbolFailed

    def _load(self, ba: Any, head: Any, evaluation: Any) -> Any:
        try:
            expr = to_mathics(wxf.loads(bytes(ba.value)), evaluation.definitions)
        except (WXFDecodeError, ConversionError, LimitError) as exc:
            evaluation.message("BinaryDeserialize", "corrupt", ba, String(str(exc)))
            return SymbolFailed
        return expr if head is None else Expression(head, expr)


def _short(expr: Any) -> Any:
    """The expression, or a short text of it: messages quote what failed, not megabytes."""
    text = str(expr)
    return expr if len(text) <= 100 else String(text[:97] + "...")
