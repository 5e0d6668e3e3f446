"""JSON read as the Wolfram Language's "RawJSON" format: objects become associations.

``Import[file, "RawJSON"]``, ``ImportString[text, "RawJSON"]``,
``Developer`ReadRawJSONString`` and ``Developer`ReadRawJSONFile``. Mathics3
has no "RawJSON" format, and ``Import[connection file, "RawJSON"]`` is how
docs/wl-client.md tells a user to read a server's key.

The mapping is the Wolfram Language's: an object is an ``Association`` (keys
in order), an array a ``List``, a string a ``String``, a number an
``Integer`` or a machine ``Real`` (an arbitrary-precision ``Real`` when it
overflows a double), ``true``/``false`` are ``True``/``False`` and ``null`` is
``Null``. Python's :mod:`json` parses; ``NaN`` and ``Infinity``, which it
would accept, are not JSON and are refused.

Bad JSON gives ``$Failed`` and two messages, as in the Wolfram Language: what
was expected (``Import::jsonarraymissingsep`` for a missing ``,`` or ``]``,
and so on), then ``Import::jsonhintposandchar`` with the character and its
line and column. The column is the Wolfram Language's, one past the
offending character: for ``[1,2`` it is "near character 'EOF', at line 1:6",
the text wolframclient's own tests expect of a Wolfram kernel.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from typing import Any

from mathics.builtin.files_io.importexport import Import as _MathicsImport
from mathics.builtin.files_io.importexport import ImportString as _MathicsImportString
from mathics.core.atoms import Integer, MachineReal, String
from mathics.core.attributes import A_PROTECTED
from mathics.core.builtin import Builtin
from mathics.core.expression import Expression
from mathics.core.list import ListExpression
from mathics.core.symbols import Symbol, SymbolFalse, SymbolNull, SymbolTrue
from mathics.core.systemsymbols import SymbolAssociation, SymbolFailed, SymbolRule

from ..mathics_exprs import to_mathics

__all__ = ["Import", "ImportString", "ReadRawJSONFile", "ReadRawJSONString", "parse"]

#: The messages of a JSON parse, issued by Import (and ImportString) or by the
#: Developer` functions under their own names.
MESSAGES = {
    "jsonarraymissingsep": "Expecting end of array or a value separator.",
    "jsonobjmissingsep": "Expecting end of object or a value separator.",
    "jsonkvsep": "Expecting a colon between an object's key and its value.",
    "jsonexpendofinput": "The JSON ends before it is complete.",
    "jsonnullinput": "There is no JSON: the input is empty.",
    "jsoninvalidtoken": "This is not JSON: `1`.",
    "jsonhintposandchar": "An error occurred near character `1`, at line `2`:`3`",
}

SymbolFindFile = Symbol("System`FindFile")


class _Pairs(list[tuple[str, Any]]):
    """A JSON object's members in order (duplicates kept: the Association decides)."""


class _NotJSON(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not a JSON value")


def _parse_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else decimal.Decimal(text)


def _expr(value: Any) -> Any:
    if isinstance(value, str):
        return String(value)
    if value is True:
        return SymbolTrue
    if value is False:
        return SymbolFalse
    if value is None:
        return SymbolNull
    if isinstance(value, int):
        return Integer(value)
    if isinstance(value, float):
        return MachineReal(value)
    if isinstance(value, _Pairs):
        return Expression(SymbolAssociation, *(
            Expression(SymbolRule, String(k), _expr(v)) for k, v in value))
    if isinstance(value, list):
        return ListExpression(*(_expr(v) for v in value))
    return to_mathics(value)  # a Decimal: an arbitrary-precision Real


#: A complete JSON string literal, escapes and all.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _innermost(text: str, pos: int) -> str:
    """The innermost bracket open at ``pos`` ("[" or "{", "" at top level).

    The strings before ``pos`` are left out whole: the parser read them, so
    each is complete.
    """
    stack: list[str] = []
    for ch in _JSON_STRING.sub("", text[:pos]):
        if ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _diagnose(text: str, exc: json.JSONDecodeError) -> tuple[str, list[Any], int]:
    """(tag, arguments, position) of the message for a parse error."""
    pos = exc.pos
    if exc.msg.startswith("Expecting ',' delimiter"):
        tag = "jsonobjmissingsep" if _innermost(text, pos) == "{" else "jsonarraymissingsep"
        return tag, [], pos
    if exc.msg.startswith("Expecting ':' delimiter"):
        return "jsonkvsep", [], pos
    if exc.msg.startswith("Expecting value") and not text[pos:].strip():
        return ("jsonnullinput" if not text.strip() else "jsonexpendofinput"), [], len(text)
    if exc.msg.startswith("Unterminated string"):
        return "jsonexpendofinput", [], len(text)
    return "jsoninvalidtoken", [String(exc.msg)], pos


def parse(text: str, symbol: str, evaluation: Any) -> Any:
    """The expression of JSON ``text``, or ``$Failed`` after ``symbol``'s messages."""
    try:
        value = json.loads(text, object_pairs_hook=_Pairs, parse_float=_parse_float,
                           parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        tag, args, pos = _diagnose(text, exc)
        evaluation.message(symbol, tag, *args)
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 2  # one past it, as WL counts
        char = "'EOF'" if pos >= len(text) else f"'{text[pos]}'"
        evaluation.message(symbol, "jsonhintposandchar", String(char), Integer(line),
                           Integer(column))
        return SymbolFailed
    except (_NotJSON, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        evaluation.message(symbol, "jsoninvalidtoken", String(reason))
        return SymbolFailed
    return _expr(value)


def _read_file(path: Any, symbol: str, evaluation: Any) -> str | None:
    found = Expression(SymbolFindFile, path).evaluate(evaluation)
    if not isinstance(found, String):
        evaluation.message(symbol, "nffil", path)
        return None
    try:
        with open(found.value, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        evaluation.message(symbol, "jsoninvalidtoken", String(f"the file cannot be read: {exc}"))
        return None


class Import(_MathicsImport):  # type: ignore[misc]
    __doc__ = _MathicsImport.__doc__
    name = "Import"
    context = "System`"
    messages = {**_MathicsImport.messages, **MESSAGES}

    def eval_rawjson(self, path: Any, evaluation: Any, options: Any = None) -> Any:
        'Import[path_String, "RawJSON", OptionsPattern[]]'
        text = _read_file(path, "Import", evaluation)
        return SymbolFailed if text is None else parse(text, "Import", evaluation)


class ImportString(_MathicsImportString):  # type: ignore[misc]
    __doc__ = _MathicsImportString.__doc__
    name = "ImportString"
    context = "System`"

    def eval_rawjson(self, text: Any, evaluation: Any, options: Any = None) -> Any:
        'ImportString[text_String, "RawJSON", OptionsPattern[]]'
        return parse(text.value, "Import", evaluation)  # WL names Import in these messages


class ReadRawJSONString(Builtin):  # type: ignore[misc]
    """
    <dl>
      <dt>'Developer`ReadRawJSONString'["$json$"]
      <dd>gives the expression of the JSON text, objects as associations.
    </dl>
    """

    name = "ReadRawJSONString"
    context = "Developer`"
    attributes = A_PROTECTED
    summary_text = "read JSON text as associations and lists"
    messages = dict(MESSAGES)

    def eval(self, text: Any, evaluation: Any) -> Any:
        "Developer`ReadRawJSONString[text_String]"
        return parse(text.value, "Developer`ReadRawJSONString", evaluation)


class ReadRawJSONFile(Builtin):  # type: ignore[misc]
    """
    <dl>
      <dt>'Developer`ReadRawJSONFile'["$file$"]
      <dd>gives the expression of the JSON file, objects as associations.
    </dl>
    """

    name = "ReadRawJSONFile"
    context = "Developer`"
    attributes = A_PROTECTED
    summary_text = "read a JSON file as associations and lists"
    messages = {**MESSAGES, "nffil": "File `1` not found."}

    def eval(self, path: Any, evaluation: Any) -> Any:
        "Developer`ReadRawJSONFile[path_String]"
        symbol = "Developer`ReadRawJSONFile"
        text = _read_file(path, symbol, evaluation)
        return SymbolFailed if text is None else parse(text, symbol, evaluation)
