"""Big integers in WXF: linkserver.wxf against wolframclient, 10^5 and 10^6 digits.

wolframclient writes and reads a big integer with Python's ``str``/``int``,
which are quadratic in the number of digits and refused beyond
``sys.get_int_max_str_digits()`` (4300 by default): to measure it at all the
script lifts that limit for wolframclient's runs. linkserver converts through
GMP and needs no such change (see ``linkserver.wxf.digits``).

Also measured: a *hostile* number -- the largest the default bound accepts
(10^7 digits) and one just past it -- to show that what a peer can make a
server spend is bounded by the number's size, and that a refused number costs
nothing.

Run: ``.venv/bin/python bench/big_numbers.py [--runs N]``.
Output lines: ``bigint.<encode|decode>.<digits>.<linkserver|wolframclient>: X ms``,
``bigint.<encode|decode>.<digits>.ratio: Y x`` (wolframclient's time over ours),
and ``bigint.hostile.*``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from collections.abc import Iterator

from harness import median_time, report
from wolframclient.deserializers import binary_deserialize
from wolframclient.serializers import export

from linkserver import wxf
from linkserver.errors import WXFDecodeError
from linkserver.wxf.varint import encode_varint


@contextlib.contextmanager
def python_limit_lifted() -> Iterator[None]:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(old)


def number_of(digits: int) -> tuple[int, bytes]:
    rng = random.Random(digits)
    text = (str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=digits - 1))).encode()
    with python_limit_lifted():
        return int(text), b"8:I" + encode_varint(len(text)) + text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    for digits in (100_000, 1_000_000):
        value, data = number_of(digits)
        with python_limit_lifted():
            theirs_bytes = bytes(export(value, target_format="wxf"))
            assert binary_deserialize(data) == value
        assert wxf.dumps(value) == theirs_bytes == data
        assert wxf.loads(data) == value
        runs = args.runs if digits < 1_000_000 else 1  # wolframclient: seconds per run

        ours = median_time(lambda: wxf.dumps(value), repeat=args.runs)
        with python_limit_lifted():
            theirs = median_time(lambda: export(value, target_format="wxf"), repeat=runs)
        report(f"bigint.encode.{digits}.linkserver", ours * 1e3, "ms")
        report(f"bigint.encode.{digits}.wolframclient", theirs * 1e3, "ms")
        report(f"bigint.encode.{digits}.ratio", theirs / ours, "x")

        ours = median_time(lambda: wxf.loads(data), repeat=args.runs)
        with python_limit_lifted():
            theirs = median_time(lambda: binary_deserialize(data), repeat=runs)
        report(f"bigint.decode.{digits}.linkserver", ours * 1e3, "ms")
        report(f"bigint.decode.{digits}.wolframclient", theirs * 1e3, "ms")
        report(f"bigint.decode.{digits}.ratio", theirs / ours, "x")

    # The most a peer can make us spend on one number, and the cost of a refusal.
    limit = wxf.get_max_digits()
    text = b"9" * limit
    largest = b"8:I" + encode_varint(len(text)) + text
    report("bigint.hostile.decode.at_bound", median_time(lambda: wxf.loads(largest), repeat=1) * 1e3, "ms")
    past = b"8:I" + encode_varint(len(text) + 1) + text + b"9"

    def refuse() -> None:
        try:
            wxf.loads(past)
        except WXFDecodeError:
            return
        raise AssertionError("a number past the bound was accepted")

    report("bigint.hostile.decode.past_bound", median_time(refuse, repeat=args.runs) * 1e3, "ms")


if __name__ == "__main__":
    main()
