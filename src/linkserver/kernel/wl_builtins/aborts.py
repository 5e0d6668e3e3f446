"""Aborts as the Wolfram Language has them: ``CheckAbort`` absorbs one, ``AbortProtect`` defers one.

Mathics3 stops an evaluation two ways. ``Abort[]`` raises ``AbortInterrupt``; a
stop from outside (linkserver's urgent ABORT, the kernel's time limit) sets
``Evaluation.stopped``, and the next check raises ``TimeoutInterrupt``.
Mathics3's own ``CheckAbort`` catches only the first, and its pattern matcher
swallows the second inside any builtin that evaluates its arguments (the rule
"does not match"), so an ABORT unwinds a Mathics3 evaluation layer by layer and
no ``CheckAbort`` ever sees it. In the Wolfram Language, an abort from outside
unwinds to the nearest ``CheckAbort``, which absorbs it and evaluates its
second argument, and ``AbortProtect[expr]`` finishes ``expr`` before the abort
takes effect. ``wl/LinkServerClient.wl`` relies on both: aborting the local
evaluation must send ABORT to the remote one and still read its answer.

Two pieces give that back:

* :func:`stop_point` is where a builtin of this package waits (a socket): a
  stop there raises ``AbortInterrupt``, which nothing but ``CheckAbort``
  catches, instead of ``TimeoutInterrupt``.
* :class:`CheckAbort` and :class:`AbortProtect` replace Mathics3's, and ask the
  kernel through the evaluation. An ``Evaluation`` may offer (linkserver's
  Mathics3 kernel does, :mod:`linkserver.kernel.mathics`):

  - ``abort_protect``, an int: while it is above 0 the kernel lets a stop wait
    (the stop flag stays set, so the first check after ``AbortProtect`` stops);
  - ``absorb_abort()``, returning an :class:`Absorb`: asked by ``CheckAbort``
    whether a stop of this evaluation is pending, and if it is the client's
    ABORT, to take it back (then the request goes on and answers its result).
    A time limit or TERMINATE is never absorbed.

  In a plain Mathics3 session neither is there: ``CheckAbort`` then catches
  ``Abort[]`` and this package's own stops, as Mathics3's does, and
  ``AbortProtect`` just evaluates.

What is not deferred: an ``Abort[]`` evaluated inside ``AbortProtect`` raises at
once (Mathics3 raises it as an exception, which cannot be held), and the
kernel's last resort against code that ignores the stop flag (SIGUSR1 after
``ABORT_GRACE``) is held only while ``AbortProtect`` runs.
"""

from __future__ import annotations

import enum
from typing import Any

from mathics.builtin.procedural import CheckAbort as _MathicsCheckAbort
from mathics.core.attributes import A_HOLD_ALL, A_PROTECTED
from mathics.core.builtin import Builtin
from mathics.core.interrupt import AbortInterrupt, TimeoutInterrupt

__all__ = ["Absorb", "AbortProtect", "CheckAbort", "stop_point"]


class Absorb(enum.Enum):
    """What ``absorb_abort()`` found (see the module docstring)."""

    NONE = "none"  # no stop of this evaluation is pending
    ABSORBED = "absorbed"  # the client's ABORT was pending and is taken back
    PENDING = "pending"  # a stop is pending that CheckAbort must not absorb


def stop_point(evaluation: Any) -> None:
    """Stop here if the evaluation must stop; called where a builtin waits.

    In linkserver's kernel the check may also serve a preemptive request
    (docs/protocol.md §8.9) before it returns.

    Raises:
        AbortInterrupt: the evaluation must stop (an abort, a time limit).
    """
    try:
        evaluation.check_stopped()
    except TimeoutInterrupt:
        # Not TimeoutInterrupt: Mathics3's matcher would swallow it in the
        # builtin's own rule, and no CheckAbort would see the abort.
        raise AbortInterrupt from None


def _absorb(evaluation: Any) -> Absorb:
    absorb = getattr(evaluation, "absorb_abort", None)
    return Absorb.NONE if absorb is None else absorb()


class CheckAbort(_MathicsCheckAbort):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/CheckAbort.html</url>
    <dl>
      <dt>'CheckAbort'[$expr$, $failexpr$]
      <dd>evaluates $expr$, returning $failexpr$ if an abort occurs; the abort is absorbed.
    </dl>

    >> CheckAbort[Abort[]; 1, 2] + x
     = 2 + x
    """

    name = "CheckAbort"
    context = "System`"
    attributes = A_HOLD_ALL | A_PROTECTED
    summary_text = "catch an abort, from Abort[] or from the client"

    def eval(self, expr: Any, failexpr: Any, evaluation: Any) -> Any:
        "CheckAbort[expr_, failexpr_]"
        try:
            result = expr.evaluate(evaluation)
        except AbortInterrupt:
            # Abort[], or a stop seen at a stop_point: a time limit goes on up.
            if _absorb(evaluation) is Absorb.PENDING:
                raise
            return failexpr
        except TimeoutInterrupt:
            if _absorb(evaluation) is Absorb.ABSORBED:
                return failexpr
            raise
        # The matcher may have swallowed the stop on the way up (the
        # evaluation came back "normally", partly unevaluated).
        if _absorb(evaluation) is Absorb.ABSORBED:
            return failexpr
        return result


class AbortProtect(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/AbortProtect.html</url>
    <dl>
      <dt>'AbortProtect'[$expr$]
      <dd>evaluates $expr$, saving any abort until the evaluation is complete.
    </dl>

    >> AbortProtect[1 + 1]
     = 2
    """

    name = "AbortProtect"
    context = "System`"
    attributes = A_HOLD_ALL | A_PROTECTED
    summary_text = "evaluate an expression, deferring aborts until it is done"

    def eval(self, expr: Any, evaluation: Any) -> Any:
        "AbortProtect[expr_]"
        if not hasattr(evaluation, "abort_protect"):
            return expr.evaluate(evaluation)
        evaluation.abort_protect += 1
        try:
            result = expr.evaluate(evaluation)
        finally:
            evaluation.abort_protect -= 1
        stop_point(evaluation)  # a stop that waited takes effect now
        return result
