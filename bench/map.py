"""``client.map`` of 200 items of 10 ms each over 2 kernels, against ideal and wolframclient.

Figures, measured in this run (each the median of ``REPEAT`` maps):

* ``map.pause``: ``client.map`` of 200 ``Pause[0.01]`` over 2 kernels of a pool of a
  ``linkserver serve --mode pool`` started here; ``map.pause.efficiency`` is the ideal
  (200 x 10 ms / 2 kernels = 1 s) over the time measured; ``.vs_one_kernel`` is the
  same map on 1 kernel over twice the 2-kernel time (the fan-out's own loss, with the
  kernel's per-request cost taken out); ``map.pause.ahead0`` sends each item only when
  its kernel is free (no item waiting at the kernel);
* ``map.busy``: the same with a busy loop calibrated in a kernel to 10 ms
  (``Do[Null, {n}]``): the kernels then need both CPUs that the server and the client
  share, so this is the harder case on a 2-core machine. Mathics3's speed drifts between
  kernels and runs, so the calibration is rough: read ``map.busy.vs_one_kernel`` and
  ``map.busy.ratio`` (same items on both sides), not its efficiency;
* ``wolframclient.pool``: wolframclient's ``WolframEvaluatorPool`` of 2
  ``linkserver-kernel`` processes (Mathics3 in each; docs/wolframclient.md), started
  beforehand, evaluating the same 200 items with ``evaluate_all`` (Pause, then busy);
  ``wolframclient.parallel_evaluate`` is its one-call form, kernel start included;
* ``map.ratio``: wolframclient's pool time over ours (above 1: map is faster), and the
  same for the busy loop and for one call each (``parallel_evaluate`` starts its kernels;
  ``map`` takes warm ones from the pool).

    .venv/bin/python bench/map.py
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import cpu_placement, report
from wolframclient.evaluation import WolframEvaluatorPool, parallel_evaluate
from wolframclient.language import wlexpr
from wolframclient_door import door_script

import linkserver

ITEMS = 200
COST = 0.01  # seconds per item
KERNELS = 2
REPEAT = 3
ROOT = Path(__file__).parents[1]
IDEAL = ITEMS * COST / KERNELS


def start_server(runtime: Path) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", LINKSERVER_RUNTIME_DIR=str(runtime))
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", "0", "--mode", "pool",
         "--pool-size", str(KERNELS), "--pool-min", str(KERNELS), "--log-level", "error"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (\d+@[\w.:\[\]]+)", line)
        if match:
            return proc, match.group(1)
    raise RuntimeError("the linkserver did not start")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def timed(fn: Callable[[], Sequence[object]]) -> float:
    """Seconds one run of ``fn`` takes (its results checked: the indices, in order)."""
    t = time.perf_counter()
    results = fn()
    elapsed = time.perf_counter() - t
    assert list(results) == list(range(ITEMS)), list(results)[:5]
    return elapsed


def busy_loop(address: str) -> tuple[str, float]:
    """A ``Do[Null, {n}]`` that takes COST seconds in a kernel, as a function of the index.

    Timed on a client of its own, closed afterwards: a client that has evaluated holds a
    kernel of the pool, and the maps would get one kernel fewer.
    """
    n = 8000
    with linkserver.Client(address) as probe:
        for _ in range(3):  # timed in the item's own form: Mathics3 runs a top-level Do slower
            seconds = probe.evaluate(f"First[AbsoluteTiming[(Do[Null, {{{n}}}]; #) &[1]]]")
            n = max(1, round(n * COST / seconds))
        busy = f"(Do[Null, {{{n}}}]; #) &"
        return busy, probe.evaluate(f"First[AbsoluteTiming[{busy}[1]]]")


def main() -> None:
    print(f"# cpus allowed: {cpu_placement()}; client, server, kernels and wolframclient's "
          f"kernels in separate processes; {ITEMS} items of {COST * 1e3:g} ms over {KERNELS} "
          f"kernels, ideal {IDEAL:g} s; medians of {REPEAT} rounds, each measuring every "
          "figure once (the machine is shared: interleaving spreads its noise evenly)")
    pause = f"(Pause[{COST}]; #) &"
    exprs = [wlexpr(f"Pause[{COST}]; {i}") for i in range(ITEMS)]
    times: dict[str, list[float]] = {}
    loop = asyncio.new_event_loop()  # wolframclient's pool runs here; our client on its own
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runtime = root / "runtime"
        runtime.mkdir(mode=0o700)
        server, address = start_server(runtime)
        os.environ["LINKSERVER_RUNTIME_DIR"] = str(runtime)  # the client finds the key there
        kernel = door_script(root)
        pool = WolframEvaluatorPool(str(kernel), poolsize=KERNELS, STARTUP_TIMEOUT=120)
        try:
            with linkserver.Client(address) as client:
                busy, ours = busy_loop(address)
                client.map(pause, range(10), kernels=KERNELS)  # warm every path
                busy_exprs = [wlexpr(f"{busy}[{i}]") for i in range(ITEMS)]
                loop.run_until_complete(pool.start())
                loop.run_until_complete(pool.evaluate_all(exprs[:KERNELS * 2]))
                theirs = loop.run_until_complete(pool.evaluate(
                    wlexpr(f"First[AbsoluteTiming[{busy}[1]]]")))
                print(f"# busy item {busy}: {ours * 1e3:.1f} ms in our kernel, "
                      f"{theirs * 1e3:.1f} ms in wolframclient's")
                runs: dict[str, Callable[[], Sequence[object]]] = {
                    "map.pause": lambda: client.map(pause, range(ITEMS), kernels=KERNELS),
                    "map.pause.one_kernel": lambda: client.map(pause, range(ITEMS), kernels=1),
                    "map.pause.ahead0": lambda: client.map(pause, range(ITEMS), kernels=KERNELS,
                                                           ahead=0),
                    "wolframclient.pool": lambda: loop.run_until_complete(
                        pool.evaluate_all(exprs)),
                    "map.busy": lambda: client.map(busy, range(ITEMS), kernels=KERNELS),
                    "map.busy.one_kernel": lambda: client.map(busy, range(ITEMS), kernels=1),
                    "wolframclient.pool.busy": lambda: loop.run_until_complete(
                        pool.evaluate_all(busy_exprs)),
                }
                for _ in range(REPEAT):
                    for name, run in runs.items():
                        times.setdefault(name, []).append(timed(run))
        finally:
            loop.run_until_complete(pool.terminate())
            stop(server)
        # wolframclient.evaluation's parallel_evaluate is the blocking one (its own loop)
        one_call = timed(lambda: parallel_evaluate(exprs, evaluator_spec=str(kernel),
                                                   max_evaluators=KERNELS))
    loop.close()
    median = {name: statistics.median(values) for name, values in times.items()}
    for name in runs:
        report(name, median[name], "s")
        if "one_kernel" not in name:
            report(f"{name}.efficiency", IDEAL / median[name], "(ideal/measured)")
    for case in ("pause", "busy"):
        report(f"map.{case}.vs_one_kernel",
               median[f"map.{case}.one_kernel"] / KERNELS / median[f"map.{case}"],
               "(1-kernel time/2 over 2-kernel time)")
    report("wolframclient.parallel_evaluate", one_call, "s (kernel start included)")
    report("map.ratio", median["wolframclient.pool"] / median["map.pause"],
           "(wolframclient pool/map; above 1: map is faster)")
    report("map.busy.ratio", median["wolframclient.pool.busy"] / median["map.busy"],
           "(wolframclient pool/map, busy loop)")
    report("map.parallel_evaluate.ratio", one_call / median["map.pause"],
           "(parallel_evaluate/map, one call each; it starts kernels, map takes warm ones)")


if __name__ == "__main__":
    main()
