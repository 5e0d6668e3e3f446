"""WXF codec throughput: linkserver.wxf against wolframclient, same data, same run.

Five cases, each encoded and decoded by both codecs:

* ``ints100k``  -- a list of 100,000 Python ints (0..99,999)
* ``rows30k``   -- 30,000 rows ``[int, str, float]``
* ``expr20k``   -- ``Plus[Times[i, Power[x, i]], ...]`` for i in range(20000)
* ``f64x2M``    -- a numpy float64 array of 2,000,000 elements
* ``str1MB``    -- a unicode string of about a million characters

Throughput is the WXF size over the median of a few runs, in MB/s (10^6
bytes); the ratio is ours over wolframclient's, from the same run (compare
ratios, not absolute figures, across machines).  Before timing, each case is
checked: identical bytes from both encoders, equal values from both
decoders.  The garbage collector stays on, as it is in real use, but is
run before each timed call.

Run: ``.venv/bin/python bench/wxf_throughput.py [--runs N]``.
Output lines: ``wxf.<decode|encode>.<case>.<linkserver|wolframclient>: X MB/s``
and ``wxf.<decode|encode>.<case>.ratio: Y x``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from wolframclient.deserializers import binary_deserialize
from wolframclient.language import wl
from wolframclient.serializers import export

from linkserver import wxf


def _cases() -> dict[str, object]:
    return {
        "ints100k": list(range(100_000)),
        "rows30k": [[i, f"name{i}", i * 0.5] for i in range(30_000)],
        "expr20k": wl.Plus(*(wl.Times(i, wl.Power(wl.x, i)) for i in range(20_000))),
        "f64x2M": np.random.default_rng(42).random(2_000_000),
        "str1MB": "héllo wörld ∑ λ→ " * 60_000,
    }


def _median_seconds(
    ours: Callable[[], object], theirs: Callable[[], object], runs: int
) -> tuple[float, float]:
    """Median run time of each function, their runs interleaved.

    Interleaving spreads the drift of a shared machine over both sides, and a
    collection before each run keeps one side's garbage from being charged
    to the other.
    """
    ours_times: list[float] = []
    theirs_times: list[float] = []
    for _ in range(runs):
        for func, times in ((ours, ours_times), (theirs, theirs_times)):
            gc.collect()
            start = time.perf_counter()
            func()
            times.append(time.perf_counter() - start)
    return statistics.median(ours_times), statistics.median(theirs_times)


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    return a == b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement")
    args = parser.parse_args(argv)

    failures = 0
    for name, value in _cases().items():
        ours_bytes = wxf.dumps(value)
        theirs_bytes = export(value, target_format="wxf")
        if ours_bytes != theirs_bytes:
            print(f"wxf.check.{name}: FAILED encodings differ", file=sys.stderr)
            failures += 1
        if not _same(wxf.loads(theirs_bytes), binary_deserialize(theirs_bytes)):
            print(f"wxf.check.{name}: FAILED decoded values differ", file=sys.stderr)
            failures += 1
        size = len(theirs_bytes)

        def ours_encode(value: object = value) -> object:
            return wxf.dumps(value)

        def theirs_encode(value: object = value) -> object:
            return export(value, target_format="wxf")

        def ours_decode(data: bytes = theirs_bytes) -> object:
            return wxf.loads(data)

        def theirs_decode(data: bytes = theirs_bytes) -> object:
            return binary_deserialize(data)

        for op, ours, theirs in (
            ("encode", ours_encode, theirs_encode),
            ("decode", ours_decode, theirs_decode),
        ):
            ours_time, theirs_time = _median_seconds(ours, theirs, args.runs)
            ours_rate = size / ours_time / 1e6
            theirs_rate = size / theirs_time / 1e6
            print(f"wxf.{op}.{name}.linkserver: {ours_rate:.1f} MB/s")
            print(f"wxf.{op}.{name}.wolframclient: {theirs_rate:.1f} MB/s")
            print(f"wxf.{op}.{name}.ratio: {ours_rate / theirs_rate:.2f} x", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
