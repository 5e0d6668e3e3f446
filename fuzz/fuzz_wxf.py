"""Fuzz target: the WXF decoder raises nothing but WXFDecodeError.

``linkserver.wxf.loads`` reads bytes from the network (every EXPRESSION
frame's payload), so whatever the bytes, it must return a value or raise
:class:`linkserver.errors.WXFDecodeError` -- no IndexError, no
RecursionError, no MemoryError from a lying length, no hang. When it
returns a value, encoding that value again must work and decode to an
expression that encodes to the same bytes (the decoder never invents
values the encoder cannot write).

Run: ``python fuzz/fuzz_wxf.py fuzz/corpus/wxf`` (see fuzz/README.md).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["linkserver.wxf"]):
    from linkserver import wxf
    from linkserver.errors import WXFDecodeError, WXFEncodeError


def test_one_input(data: bytes) -> None:
    try:
        value = wxf.loads(data)
    except WXFDecodeError:
        return
    try:
        again = wxf.dumps(value)
    except WXFEncodeError:
        return  # decodable yet not encodable is allowed (e.g. no Python form for it)
    assert wxf.dumps(wxf.loads(again)) == again, (data, again)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
