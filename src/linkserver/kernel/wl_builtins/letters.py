"""FromLetterNumber: the letter at a position of an alphabet (LetterNumber's inverse).

Mathics3 has ``LetterNumber`` and ``Alphabet`` but not ``FromLetterNumber``,
which wolframclient's own kernel tests evaluate. The alphabets are
Mathics3's (``Alphabet[]``'s table), so the two functions agree.
"""

from __future__ import annotations

from typing import Any

from mathics.builtin.atomic.strings import alphabet_alias, alphabet_descriptions
from mathics.core.atoms import String
from mathics.core.attributes import A_LISTABLE, A_PROTECTED
from mathics.core.builtin import Builtin
from mathics.core.expression import Expression
from mathics.core.systemsymbols import SymbolMissing

__all__ = ["FromLetterNumber"]


class FromLetterNumber(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/FromLetterNumber.html</url>
    <dl>
      <dt>'FromLetterNumber'[$n$]
      <dd>gives the lowercase letter at position $n$ of the English alphabet;
        a negative $n$ counts from the end.
      <dt>'FromLetterNumber'[$n$, "$alphabet$"]
      <dd>gives the letter of that alphabet (one of 'Alphabet[]''s).
    </dl>

    >> FromLetterNumber[{1, 2, -1}]
     = {a, b, z}
    """

    name = "FromLetterNumber"
    context = "System`"
    attributes = A_LISTABLE | A_PROTECTED
    summary_text = "the letter at a position of an alphabet"
    messages = {"nalph": "The alphabet `1` is not known; Alphabet[] knows `2`."}

    def eval(self, n: Any, evaluation: Any) -> Any:
        "FromLetterNumber[n_Integer]"
        return _letter(alphabet_descriptions["English"]["Lowercase"], n.value)

    def eval_alphabet(self, n: Any, alphabet: Any, evaluation: Any) -> Any:
        "FromLetterNumber[n_Integer, alphabet_String]"
        key = alphabet_alias.get(alphabet.value, alphabet.value)
        letters = alphabet_descriptions.get(key)
        if letters is None:
            evaluation.message("FromLetterNumber", "nalph", alphabet,
                               String(", ".join(sorted(alphabet_descriptions))))
            return None
        return _letter(letters["Lowercase"], n.value)


def _letter(letters: str, n: int) -> Any:
    # Position 0 and positions past either end have no letter: Missing["NotApplicable"]
    # here (what a Wolfram kernel answers there has not been checked).
    if n == 0 or abs(n) > len(letters):
        return Expression(SymbolMissing, String("NotApplicable"))
    return String(letters[n - 1] if n > 0 else letters[n])
