"""Mathics3's own documented examples of its box functions, through the conversion.

Each ``>>`` line (and ``#>`` private test line) in the docstrings of
``mathics/builtin/box/*.py``, ``mathics/builtin/forms/*.py``,
``mathics/builtin/makeboxes.py`` and ``mathics/builtin/layout.py`` is evaluated
in process, in order, in a session of its own per module (later examples use
what earlier ones define), as Mathics3's documentation pipeline runs them.
Every result must then travel as a kernel sends it -- ``from_mathics``, WXF
bytes, the WXF decoder -- and come back through ``to_mathics`` as an object
Mathics3's own ``SameQ`` calls equal to the result, a box counting as its
expression form (``tests.strategies.same_mathics``). The examples are read from the installed
Mathics3, so a new version brings its own.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from typing import Any

import pytest

from linkserver import wxf
from linkserver.kernel.mathics import prepare
from linkserver.kernel.mathics_exprs import from_mathics, to_mathics
from tests.strategies import same_expression, same_mathics

# The test-code lines of Mathics3's doc format (mathics/doc/doc_entries.py,
# TESTCASE_RE): ">> code" is shown, "#> code" is a private test.
_EXAMPLE = re.compile(r"^\s*[>#]> (.*)$", re.MULTILINE)

_MODULES = ("mathics.builtin.makeboxes", "mathics.builtin.layout")
_PACKAGES = ("mathics.builtin.box", "mathics.builtin.forms")


def _modules() -> list[Any]:
    prepare()  # Mathics3's builtins must load before a session exists
    names = list(_MODULES)
    for package in _PACKAGES:
        root = importlib.import_module(package)
        names += [info.name for info in pkgutil.iter_modules(root.__path__, package + ".")]
    return [importlib.import_module(name) for name in sorted(names)]


def _examples(module: Any) -> list[str]:
    """The module's examples in the order its documentation lists them."""
    docs = [module.__doc__ or ""]
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if obj.__module__ == module.__name__ and isinstance(obj.__doc__, str):
            docs.append(obj.__doc__)
    return [code.strip() for doc in docs for code in _EXAMPLE.findall(doc)]


CORPUS = {module.__name__: _examples(module) for module in _modules()}


def _is_box(value: Any) -> bool:
    from mathics.core.element import BoxElementMixin
    from mathics.core.symbols import Atom

    return isinstance(value, BoxElementMixin) and not isinstance(value, Atom)


def _box_results(value: Any) -> Iterator[Any]:
    if _is_box(value):
        yield value
        value = value.to_expression()
    for element in getattr(value, "elements", ()) or ():
        yield from _box_results(element)


def test_the_corpus_is_mathics3s_box_documentation() -> None:
    # Guards against a corpus emptied by a moved module or a changed format.
    total = sum(len(examples) for examples in CORPUS.values())
    assert total >= 100, {name: len(examples) for name, examples in CORPUS.items()}
    assert "ToBoxes[a + b]" in CORPUS["mathics.builtin.makeboxes"]
    assert any(examples for name, examples in CORPUS.items() if ".box." in name)


def _boxes_of(value: Any, form: str, session: Any) -> Any | None:
    """``ToBoxes[value, form]``, or None where Mathics3 itself raises inside it.

    Mathics3 10.0.1 raises a Python exception boxing a few documented results
    (``StringForm`` with a slot out of range, ``Format[f, NoFormat]``): there
    are no boxes then, and nothing for the conversion to carry.
    """
    from mathics.core.expression import Expression
    from mathics.core.symbols import Symbol

    query = Expression(Symbol("System`ToBoxes"), value, Symbol(form))
    try:
        return query.evaluate(session.evaluation)
    except Exception:  # Mathics3's bug, not the conversion's
        session.evaluation.stopped = False
        return None


@pytest.mark.parametrize("module", sorted(name for name, examples in CORPUS.items() if examples))
def test_every_documented_result_travels_and_comes_back_equal(module: str) -> None:
    from mathics.core.element import BoxElementMixin
    from mathics.session import MathicsSession

    session = MathicsSession(catch_interrupt=False)  # its own definitions
    defs = session.definitions
    boxed = 0
    for code in CORPUS[module]:
        result = session.evaluate(code)
        # The result, and the boxes a front end asks for to show it.
        shown = [_boxes_of(result, form, session) for form in ("StandardForm", "TraditionalForm")]
        boxed += sum(isinstance(boxes, BoxElementMixin) for boxes in shown)
        for value in (result, *[boxes for boxes in shown if boxes is not None]):
            sent = from_mathics(value, defs)
            received = wxf.loads(wxf.dumps(sent))
            back = to_mathics(received, defs)
            assert same_mathics(back, value), (code, str(value), str(back))
            # And again: what comes back converts to what was sent.
            assert same_expression(from_mathics(back, defs), sent), code
    assert boxed >= len(CORPUS[module])  # most results were shown as boxes
