"""``linkserver map CODE ITEMS...``: a function over many items, on several kernels of a pool.

The command is :meth:`linkserver.Client.map` for the shell. Each item is a line of
Wolfram Language input (an argument, a line of stdin or of a file) or a whole number
of ``--range``; the kernel evaluates ``ToString[CODE[item], InputForm]``, so that
stdout gets one line per item, in the items' order, and nothing else -- a result in
InputForm never spans lines (strings are written quoted, ``"a\\nb"``). Messages and
failures go to stderr, named by the item's number; a progress bar goes there too
when stderr is a terminal. Exit codes are ``linkserver eval``'s.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLFunction

from .client import Client, EvaluationResult
from .errors import MapError, MapItemError
from .gather import is_failure
from .records import input_form

__all__ = ["ProgressBar", "parse_range", "requests", "run"]

EXIT_OK = 0
EXIT_FAILED = 1  # an item failed or issued a message (as linkserver eval)
EXIT_USAGE = 2  # a bad command line (more kernels than the pool has included)

#: A progress bar redraws at most this often (seconds), and at the end.
_REDRAW = 0.1


def parse_range(spec: str) -> range:
    """``N`` -> 1..N, ``MIN,MAX`` -> MIN..MAX, ``MIN,MAX,STEP``, as ``Range[...]`` counts.

    Raises:
        ValueError: not one to three whole numbers, or a step of 0.
    """
    try:
        numbers = [int(part) for part in spec.split(",")]
    except ValueError:
        raise ValueError(f"--range {spec!r}: give N, MIN,MAX or MIN,MAX,STEP (whole numbers)") from None
    if len(numbers) == 1:
        return range(1, numbers[0] + 1)
    if len(numbers) in (2, 3):
        step = numbers[2] if len(numbers) == 3 else 1
        if step == 0:
            raise ValueError("--range: the step must not be 0")
        return range(numbers[0], numbers[1] + (1 if step > 0 else -1), step)
    raise ValueError(f"--range {spec!r}: give N, MIN,MAX or MIN,MAX,STEP (whole numbers)")


def requests(code: str, items: Sequence[Any]) -> list[Any]:
    """The request for each item: ``ToString[CODE[item], InputForm]`` (a ``str`` item is input)."""
    function = wlexpr(code)
    return [wl.ToString(WLFunction(function, wlexpr(item) if isinstance(item, str) else item),
                        wl.InputForm) for item in items]


@dataclass
class ProgressBar:
    """``[#####.....] 37/200`` on a terminal, redrawn in place; gone at the end."""

    out: TextIO
    width: int = 30
    every: float = _REDRAW  #: seconds between redraws (the end is always drawn)
    _drawn: float = field(default=0.0, init=False)

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._drawn < self.every:
            return
        self._drawn = now
        filled = self.width * done // max(total, 1)
        self.out.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}")
        self.out.flush()

    def clear(self) -> None:
        if self._drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()


def run(
    client: Client,
    code: str,
    items: Sequence[Any],
    *,
    pool: str | None = None,
    kernels: int | None = None,
    setup: str | None = None,
    progress: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Map ``code`` over ``items`` with ``client``; write the results; return the exit code.

    Raises:
        LinkError: no kernel could be had (the CLI exits 3).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    bar = ProgressBar(err) if progress else None
    try:
        results = client.map(None, requests(code, items), pool=pool, kernels=kernels,
                             setup=setup, on_progress=bar, wrap=True)
    except MapError as exc:
        err.write(f"linkserver: {exc}\n")
        return EXIT_USAGE if exc.code == "map-too-many-kernels" else EXIT_FAILED
    finally:
        if bar is not None:
            bar.clear()
    failed = False
    for number, result in enumerate(results, 1):
        text, problems = _outcome(result)
        out.write(text + "\n")
        for problem in problems:
            err.write(f"linkserver: item {number}: {problem}\n")
        failed = failed or bool(problems)
    out.flush()
    return EXIT_FAILED if failed else EXIT_OK


def _outcome(result: EvaluationResult | MapItemError) -> tuple[str, list[str]]:
    """The line to write for one item, and what to say about it on stderr."""
    if isinstance(result, MapItemError):
        return input_form(result.value, sys.maxsize), [result.message]
    problems = list(result.messages)
    value = result.result
    if isinstance(value, str):
        if is_failure(value, text=True) and not problems:
            problems.append(f"it answered {value}")
        return value, problems
    # No InputForm text came: the evaluation was aborted or failed before ToString.
    text = input_form(value, sys.maxsize)
    if not problems:
        problems.append(f"it answered {text}")
    return text, problems
