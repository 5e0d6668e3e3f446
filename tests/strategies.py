"""Hypothesis strategies shared by the test suite.

Expressions come in two flavours:

* :func:`expressions` -- values in the form :func:`linkserver.wxf.loads`
  returns them (tuples for lists, dicts for associations, ``WLSymbol`` and
  ``WLFunction`` for the rest), so that ``loads(dumps(x)) == x`` holds.
* :func:`wolfram_values` -- what a Python user hands to ``dumps`` or to
  wolframclient's ``export``: lists and tuples, dicts, sets, ``complex``,
  ``Fraction``, ``Decimal``, non-finite floats, ``wlexpr`` strings.  They do
  not all survive a round trip unchanged (a list comes back a tuple, nan as
  ``Indeterminate``), but both encoders must write the same bytes.

Also here: numpy arrays of every WXF element type, split points for
chunking tests, and :func:`same_expression`, the equality that goes with
these values (nan-aware, array-aware, type-exact), with
:func:`same_mathics` its counterpart for Mathics3 objects and
:func:`full_form` the FullForm text of a box expression.  Sizes stay
small so that property tests run in seconds.
"""

from __future__ import annotations

import decimal
import string
import struct

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from wolframclient.language import wlexpr
from wolframclient.language.expression import WLFunction, WLSymbol

__all__ = [
    "ARRAY_DTYPES",
    "atoms",
    "decimals",
    "expressions",
    "full_form",
    "hashable_expressions",
    "numpy_arrays",
    "same_expression",
    "same_mathics",
    "split_points",
    "symbols",
    "wolfram_values",
]

# Symbol names that loads() turns into Python values or a tuple, so they do
# not come back as WLSymbol.
_SPECIAL_SYMBOLS = {"True", "False", "Null", "None", "Indeterminate", "List"}

_name_start = string.ascii_letters + "$"
_name_rest = _name_start + string.digits


def _name(ascii_only: bool) -> st.SearchStrategy[str]:
    start = st.sampled_from(_name_start)
    if ascii_only:
        rest = st.text(_name_rest, max_size=8)
    else:
        rest = st.text(st.sampled_from(_name_rest) | st.sampled_from("αβγλΣ∂"), max_size=8)
    simple = st.builds(lambda a, b: a + b, start, rest)
    # Some with a context, as in "Global`x" or "Developer`PackedArrayQ".
    qualified = st.builds(lambda ctx, n: f"{ctx}`{n}", simple, simple)
    return (simple | qualified).filter(lambda n: n not in _SPECIAL_SYMBOLS)


def symbols(*, ascii_only: bool = False) -> st.SearchStrategy[WLSymbol]:
    """Symbols that round-trip as ``WLSymbol`` (not True, Null, List...)."""
    return _name(ascii_only).map(WLSymbol)


def decimals() -> st.SearchStrategy[decimal.Decimal]:
    """Finite decimals of moderate exponent (exact, no context rounding)."""
    return st.builds(
        lambda digits, exponent: decimal.Decimal(f"{digits}E{exponent}"),
        st.integers(-(10**40), 10**40),
        st.integers(-30, 30),
    )


def atoms(*, ascii_symbols: bool = False) -> st.SearchStrategy[object]:
    """Atoms in decoded form: each is equal to ``loads(dumps(atom))``."""
    return st.one_of(
        st.integers(-(2**70), 2**70),
        st.integers(-300, 300),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.binary(max_size=20),
        st.booleans(),
        st.none(),
        symbols(ascii_only=ascii_symbols),
        decimals(),
    )


def _function(head: object, args: list[object]) -> WLFunction:
    return WLFunction(head, *args)


def hashable_expressions(
    leaves: st.SearchStrategy[object] | None = None,
    heads: st.SearchStrategy[WLSymbol] | None = None,
) -> st.SearchStrategy[object]:
    """Decoded-form expressions usable as association keys.

    Args:
        leaves: the atoms to build from (default :func:`atoms`).
        heads: the function heads (default :func:`symbols`); the kernel tests
            pass their own, since kernel symbol names follow other rules.
    """
    head_strategy = heads if heads is not None else symbols()
    return st.recursive(
        leaves if leaves is not None else atoms(),
        lambda children: st.one_of(
            st.lists(children, max_size=3).map(tuple),
            st.builds(_function, head_strategy, st.lists(children, max_size=3)),
        ),
        max_leaves=6,
    )


def expressions(*, max_leaves: int = 25) -> st.SearchStrategy[object]:
    """Expressions in the form ``loads`` returns them.

    Lists are tuples, associations dicts, and function heads anything but
    the symbol ``List`` (a ``List[...]`` comes back as a tuple).
    """

    def extend(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
        heads = symbols() | children.filter(lambda h: h != WLSymbol("List"))
        return st.one_of(
            st.lists(children, max_size=5).map(tuple),
            st.builds(_function, heads, st.lists(children, max_size=4)),
            st.dictionaries(hashable_expressions(), children, max_size=4),
        )

    return st.recursive(atoms(), extend, max_leaves=max_leaves)


def wolfram_values(*, max_leaves: int = 25) -> st.SearchStrategy[object]:
    """What users give ``export``/``dumps``: plain Python data and wl objects.

    Symbol names are ASCII: wolframclient miscounts the length of others.
    """
    scalars = st.one_of(
        atoms(ascii_symbols=True),
        st.floats(),  # nan and +-inf included
        st.complex_numbers(),
        st.fractions(),
        st.builds(bytearray, st.binary(max_size=10)),
        st.text(max_size=10).map(wlexpr),
        st.sampled_from([decimal.Decimal("inf"), decimal.Decimal("-inf"), decimal.Decimal("nan")]),
    )

    def extend(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
        keys = st.one_of(
            st.integers(-1000, 1000), st.text(max_size=5), symbols(ascii_only=True)
        )
        return st.one_of(
            st.lists(children, max_size=5),
            st.lists(children, max_size=5).map(tuple),
            st.builds(_function, symbols(ascii_only=True), st.lists(children, max_size=4)),
            st.dictionaries(keys, children, max_size=4),
            st.frozensets(st.integers(-5, 5), max_size=4),
        )

    return st.recursive(scalars, extend, max_leaves=max_leaves)


#: Every numpy dtype with a WXF array element type.
ARRAY_DTYPES = (
    np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64,
    np.float32, np.float64, np.complex64, np.complex128,
)  # fmt: skip


def numpy_arrays(dtypes: tuple[type, ...] = ARRAY_DTYPES) -> st.SearchStrategy[np.ndarray]:
    """Non-empty arrays (rank 1-3) of the given dtypes, any element values."""
    return st.sampled_from(dtypes).flatmap(
        lambda dtype: hnp.arrays(
            dtype,
            hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
        )
    )


def split_points(data: bytes) -> st.SearchStrategy[list[int]]:
    """Sorted offsets at which to cut ``data`` into chunks."""
    return st.lists(st.integers(0, len(data)), max_size=8).map(sorted)


def same_expression(a: object, b: object, *, exact_types: bool = True) -> bool:
    """Whether two decoded expressions are the same, more strictly than ``==``.

    Floats compare bit for bit (so nan equals nan, and 0.0 differs from
    -0.0), arrays by dtype, shape and bytes, Decimals by their digits and
    exponent, and ``True`` never equals ``1``.  With ``exact_types`` (the
    default) containers must also be of the very same class: what parity
    with wolframclient asks.  Without it a dict matches an immutabledict, a
    list a tuple and ``wl.x`` a ``WLSymbol("x")``: what a golden value
    written by hand can promise.
    """
    if exact_types and type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if isinstance(a, (tuple, list)):
        return (
            isinstance(b, (tuple, list))
            and len(a) == len(b)
            and all(same_expression(x, y, exact_types=exact_types) for x, y in zip(a, b))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and len(a) == len(b)
            and all(
                same_expression(ka, kb, exact_types=exact_types)
                and same_expression(va, vb, exact_types=exact_types)
                for (ka, va), (kb, vb) in zip(a.items(), b.items())
            )
        )
    if isinstance(a, WLFunction):
        return (
            isinstance(b, WLFunction)
            and same_expression(a.head, b.head, exact_types=exact_types)
            and same_expression(a.args, b.args, exact_types=exact_types)
        )
    if isinstance(a, WLSymbol):
        return isinstance(b, WLSymbol) and a.name == b.name
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)  # type: ignore[arg-type]
    if isinstance(a, decimal.Decimal):
        return a.as_tuple() == b.as_tuple()  # type: ignore[attr-defined]
    return a == b


def same_mathics(a: object, b: object) -> bool:
    """Mathics3's ``SameQ``, a box counting as its expression form at any depth.

    ``SameQ`` itself says so only at the top: its iterative walk
    (mathics/core/expression.py, ``eval_SameQ``) calls a box inside an
    expression different from that box's own expression form, so two
    ``RowBox`` results built by different paths can differ for it.
    """
    from mathics.core.element import BoxElementMixin
    from mathics.core.expression import Expression
    from mathics.core.symbols import Atom

    def plain(x: object) -> object:
        if isinstance(x, BoxElementMixin) and not isinstance(x, Atom):
            return x.to_expression()  # type: ignore[attr-defined]
        return x

    a, b = plain(a), plain(b)
    if isinstance(a, Expression) and isinstance(b, Expression):
        return (
            len(a.elements) == len(b.elements)
            and same_mathics(a.head, b.head)
            and all(same_mathics(x, y) for x, y in zip(a.elements, b.elements))
        )
    return bool(a.sameQ(b))  # type: ignore[attr-defined]


def full_form(x: object) -> str:
    """``FullForm`` text of a decoded value, as the Wolfram Language writes it.

    Only the parts box expressions are made of: strings, integers, booleans,
    symbols, lists and functions (a Rule stays ``Rule[a, b]``).
    """
    if isinstance(x, str):
        return '"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(x, bool) or x is None:
        return {True: "True", False: "False", None: "Null"}[x]
    if isinstance(x, int):
        return str(x)
    if isinstance(x, WLSymbol):
        return str(x.name)
    if isinstance(x, tuple):
        return "{" + ", ".join(full_form(e) for e in x) + "}"
    if isinstance(x, WLFunction):
        return full_form(x.head) + "[" + ", ".join(full_form(a) for a in x.args) + "]"
    raise AssertionError(f"no FullForm written here for {x!r}")
