"""ByteArray as the Wolfram Language treats it: a test, its length, its hash, its text.

Mathics3 has the ``ByteArray`` atom but not ``ByteArrayQ``; its ``Length`` of
one is 0 (it counts the elements of an atom); its ``Hash[ba, type,
"ByteArray"]`` fails inside Python. ``wl/LinkServerClient.wl`` tests what a
socket gave with ``ByteArrayQ`` and ``Length``, and the Wolfram Language's
socket examples turn bytes into text with ``ByteArrayToString``. What a
``ByteArray`` *is* stays Mathics3's; these builtins only read it.
"""

from __future__ import annotations

from typing import Any

from mathics.builtin.exp_structure.size_and_sig import Hash as _MathicsHash
from mathics.builtin.list.eol import Length as _MathicsLength
from mathics.core.atoms import ByteArray, Integer, String
from mathics.core.attributes import A_PROTECTED
from mathics.core.builtin import Builtin
from mathics.core.symbols import SymbolFalse, SymbolTrue
from mathics.core.systemsymbols import SymbolFailed

__all__ = ["ByteArrayQ", "ByteArrayToString", "Hash", "Length", "StringToByteArray"]

#: Character encodings of ByteArrayToString and StringToByteArray, by their
#: Wolfram Language names, and Python's codec for each.
ENCODINGS = {
    "UTF8": "utf-8",
    "UTF-8": "utf-8",
    "ISOLatin1": "latin-1",
    "ISO8859-1": "latin-1",
    "ASCII": "ascii",
    "UTF-16": "utf-16",
    "UTF-32": "utf-32",
}


class ByteArrayQ(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/ByteArrayQ.html</url>
    <dl>
      <dt>'ByteArrayQ'[$expr$]
      <dd>gives 'True' if $expr$ is a 'ByteArray', and 'False' otherwise.
    </dl>

    >> ByteArrayQ[ByteArray[{1, 2}]]
     = True
    """

    name = "ByteArrayQ"
    context = "System`"
    attributes = A_PROTECTED
    summary_text = "test whether an expression is a ByteArray"

    def eval(self, expr: Any, evaluation: Any) -> Any:
        "ByteArrayQ[expr_]"
        return SymbolTrue if isinstance(expr, ByteArray) else SymbolFalse


class Length(_MathicsLength):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/Length.html</url>
    <dl>
      <dt>'Length'[$expr$]
      <dd>returns the number of elements in $expr$; of a 'ByteArray', its number of bytes.
    </dl>

    >> Length[{1, 2, 3}]
     = 3
    """

    name = "Length"
    context = "System`"

    def eval(self, expr: Any, evaluation: Any) -> Any:
        """Length[expr_]"""
        if isinstance(expr, ByteArray):
            return Integer(len(expr.value))
        return super().eval(expr, evaluation)


class Hash(_MathicsHash):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/Hash.html</url>
    <dl>
      <dt>'Hash'[$expr$, $type$, $format$]
      <dd>gives the hash of $expr$ in $format$: "Integer", "HexString",
        "HexStringLittleEndian", "DecimalString" or "ByteArray". The hash of a
        'ByteArray' or a 'String' is the hash of its bytes.
    </dl>

    >> Hash[ByteArray[{97, 98, 99}], "SHA256", "HexString"]
     = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    """

    name = "Hash"
    context = "System`"

    def eval(self, expr: Any, hashtype: Any, outformat: Any, evaluation: Any) -> Any:
        "Hash[expr_, hashtype_String, outformat_String]"
        if outformat.value not in ("ByteArray", "HexStringLittleEndian"):
            return super().eval(expr, hashtype, outformat, evaluation)
        make = self._supported_hashes.get(hashtype.value)
        if make is None:
            return None  # an unknown type: Hash stays unevaluated, as Mathics3's does
        hasher = make()
        expr.user_hash(hasher.update)
        text = hasher.hexdigest()
        digest = int(text, 16).to_bytes((len(text) + 1) // 2, "big")
        if outformat.value == "ByteArray":
            return ByteArray(digest)
        return String(digest[::-1].hex())


class ByteArrayToString(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/ByteArrayToString.html</url>
    <dl>
      <dt>'ByteArrayToString'[$ba$]
      <dd>gives the string whose UTF-8 bytes are $ba$.
      <dt>'ByteArrayToString'[$ba$, "$encoding$"]
      <dd>decodes $ba$ with that encoding ("UTF8", "ISOLatin1", "ASCII", ...).
    </dl>

    >> ByteArrayToString[ByteArray[{104, 105}]]
     = hi
    """

    name = "ByteArrayToString"
    context = "System`"
    attributes = A_PROTECTED
    summary_text = "the string of the bytes of a ByteArray"
    messages = {
        "encoding": "`1` is not a character encoding this kernel knows; use one of `2`.",
        "decode": "The bytes are not text in `1`: `2`.",
    }

    def eval(self, ba: Any, evaluation: Any) -> Any:
        "ByteArrayToString[ba_ByteArray]"
        return self.eval_encoding(ba, String("UTF8"), evaluation)

    def eval_encoding(self, ba: Any, encoding: Any, evaluation: Any) -> Any:
        "ByteArrayToString[ba_ByteArray, encoding_String]"
        codec = _codec(self.get_name(short=True), encoding, evaluation)
        if codec is None:
            return SymbolFailed
        try:
            return String(bytes(ba.value).decode(codec))
        except UnicodeDecodeError as exc:
            evaluation.message("ByteArrayToString", "decode", encoding, String(exc.reason))
            return SymbolFailed


class StringToByteArray(Builtin):  # type: ignore[misc]
    """
    <url>:WMA link:https://reference.wolfram.com/language/ref/StringToByteArray.html</url>
    <dl>
      <dt>'StringToByteArray'["$string$"]
      <dd>gives the UTF-8 bytes of $string$ as a 'ByteArray'.
      <dt>'StringToByteArray'["$string$", "$encoding$"]
      <dd>encodes $string$ with that encoding.
    </dl>

    >> Normal[StringToByteArray["hi"]]
     = {104, 105}
    """

    name = "StringToByteArray"
    context = "System`"
    attributes = A_PROTECTED
    summary_text = "the bytes of a string, as a ByteArray"
    messages = {
        "encoding": "`1` is not a character encoding this kernel knows; use one of `2`.",
        "encode": "The string cannot be written in `1`: `2`.",
    }

    def eval(self, text: Any, evaluation: Any) -> Any:
        "StringToByteArray[text_String]"
        return self.eval_encoding(text, String("UTF8"), evaluation)

    def eval_encoding(self, text: Any, encoding: Any, evaluation: Any) -> Any:
        "StringToByteArray[text_String, encoding_String]"
        codec = _codec(self.get_name(short=True), encoding, evaluation)
        if codec is None:
            return SymbolFailed
        try:
            return ByteArray(text.value.encode(codec))
        except UnicodeEncodeError as exc:
            evaluation.message("StringToByteArray", "encode", encoding, String(exc.reason))
            return SymbolFailed


def _codec(symbol: str, encoding: Any, evaluation: Any) -> str | None:
    codec = ENCODINGS.get(encoding.value)
    if codec is None:
        evaluation.message(symbol, "encoding", encoding, String(", ".join(ENCODINGS)))
    return codec
