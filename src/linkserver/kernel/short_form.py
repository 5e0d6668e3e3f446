"""OutputForm text of small results, written without Mathics3's formatter.

``EnterTextPacket`` answers with the OutputForm text of every result, and
Mathics3's ``format_output`` builds boxes and walks its Format and MakeBoxes
rules even for ``2``: about as long as evaluating ``1+1`` itself, and ten
times that for ``1/3``. Most answers typed at a prompt are an atom or a short
list of atoms, whose text is fixed: this module writes it directly and says
``None`` for everything else, which then takes Mathics3's way. The tests
check the two agree on generated atoms and lists (tests/unit/test_short_form.py).

Only what cannot be restyled from Wolfram Language code is written here:
integers, rationals and strings (their Format rules are protected), and
symbols that carry no Format values. A session that defines MakeBoxes rules
of its own gets Mathics3's formatter for everything.
"""

from __future__ import annotations

from typing import Any

from mathics.core.atoms import Integer, Rational, String
from mathics.core.list import ListExpression
from mathics.core.symbols import Symbol

# Integers up to this many bits (about 90 digits): far below the point where
# the text of a big number might be shortened or refused.
MAX_BITS = 300
# A list is short while it holds at most this many atoms in all (nesting included).
MAX_ATOMS = 32


def short_text(result: Any, definitions: Any) -> str | None:
    """Return ``result``'s OutputForm text if it is small and plain, else ``None``."""
    if "System`MakeBoxes" in definitions.user:
        return None
    budget = [MAX_ATOMS]
    return _text(result, definitions, budget)


def _text(item: Any, definitions: Any, budget: list[int]) -> str | None:
    budget[0] -= 1
    if budget[0] < 0:
        return None
    kind = type(item)
    if kind is Integer:
        value: int = item.value
        return str(value) if value.bit_length() <= MAX_BITS else None
    if kind is String:
        return str(item.value)
    if kind is Rational:
        numerator, denominator = item.value.p, item.value.q
        if max(abs(numerator).bit_length(), denominator.bit_length()) > MAX_BITS:
            return None
        return f"{numerator} / {denominator}"
    if kind is ListExpression:
        parts = []
        for element in item.elements:
            text = _text(element, definitions, budget)
            if text is None:
                return None
            parts.append(text)
        return "{" + ", ".join(parts) + "}"
    if isinstance(item, Symbol):
        try:
            definition = definitions.get_definition(item.name, only_if_exists=True)
        except KeyError:  # a symbol with no definition at all has no Format either
            definition = None
        if definition is not None and any(definition.formatvalues.values()):
            return None
        return str(definitions.shorten_name(item.name))
    return None
