"""The kernel template process: load a backend once, then fork warm kernels on request.

Starting a Mathics3 kernel from scratch costs about 2 s and 180 MB (shared
NOTES). The zygote pays that once -- it imports the backend and calls its
``prepare()`` -- and then forks a child per kernel asked for, as Android's
zygote does: each child shares the template's pages copy-on-write and only
has to connect. ``gc.freeze()`` before forking keeps the collector from
touching (and so copying) the template's objects.

This is the template's own process, the child side; the server's end of it
(start the template, ask it for kernels, read its answers, stop it) is
:class:`linkserver.launcher.zygote.Zygote`. The two halves live apart because
this one runs where kernels run -- it imports the backend and its forks *are*
kernels -- and must load none of the server, while the other runs in the
server and must load no backend.

Protocol on stdin/stdout, one line each way (:class:`~linkserver.launcher.zygote.Zygote`
is the only client)::

    zygote -> ready
    server -> spawn ID CONNECT EVAL_TIMEOUT MEMORY_MB [OPTION...]  ("-" for no limit)
    zygote -> spawned ID PID

The OPTIONs are the kernel's policy options, one word each, as a kernel's
own command line has them (``--mode=shared``; ``KernelSpec.policy_options``):
a forked kernel learns its mode the way a fresh one does. A sandboxed kernel's
``--sandbox=DIR`` is one of them; the child confines itself
(:mod:`.sandbox`) in :func:`~.loop.serve_kernel`, while it has one thread --
the fork left the template's others behind.

One OPTION is the zygote's own: ``--watch-pid=PID`` names a process the kernel
lives for: the kernel exits when it does (:func:`linkserver.kernel.loop.watch_guardian`).
A Ray actor on a cluster node asks for kernels this way
(:mod:`linkserver.kernel.ray_node`), since a fork of the template is not the actor's child.
Another, ``--redial=PATH``, names the rendezvous where a kept kernel asks its
actor for the next server when its own goes (:mod:`.redial`).

Children write nothing to the zygote's stdout (it is the launcher's pipe);
they exit when their link closes. The zygote reaps them and exits when its
stdin closes.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import resource
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from . import BACKENDS
from .loop import WATCH_PID_ENV, KernelPolicy, policy_parser
from .redial import REDIAL_ENV

__all__ = ["REDIAL_OPTION", "WATCH_OPTION", "main"]

#: The spawn option that names the process a forked kernel lives for.
WATCH_OPTION = "--watch-pid="
#: The spawn option that names a kept kernel's rendezvous (:mod:`.redial`).
REDIAL_OPTION = "--redial="


def _reap(_signum: int = 0, _frame: FrameType | None = None) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(
    backend: object, kernel_id: str, connect: str, timeout: str, memory: str,
    options: list[str],
) -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for option in [o for o in options if o.startswith(WATCH_OPTION)]:
        options.remove(option)
        os.environ[WATCH_PID_ENV] = option[len(WATCH_OPTION):]  # serve() starts the watch
    for option in [o for o in options if o.startswith(REDIAL_OPTION)]:
        options.remove(option)
        os.environ[REDIAL_ENV] = option[len(REDIAL_OPTION):]
        # A kept kernel outlives the template (whose server may die): Ray kills a
        # dead worker's whole process group, so it leaves the template's.
        os.setsid()
    # The launcher reads our parent's stdout: keep this child's output off it.
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if memory != "-":
        limit = int(memory) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    eval_timeout = None if timeout == "-" else float(timeout)
    policy = KernelPolicy.from_args(policy_parser().parse_args(options))
    code: int = backend.serve(  # type: ignore[attr-defined]
        connect, kernel_id, eval_timeout=eval_timeout, policy=policy
    )
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the zygote until stdin closes; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m linkserver.kernel.zygote")
    parser.add_argument("--backend", default="mathics", choices=sorted(BACKENDS))
    args = parser.parse_args(argv)
    backend = importlib.import_module(BACKENDS[args.backend])
    backend.prepare()
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, _reap)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) < 5 or words[0] != "spawn":
            print(f"error bad command {line.strip()[:80]!r}", flush=True)
            continue
        _, kernel_id, connect, timeout, memory, *options = words
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                code = _child(backend, kernel_id, connect, timeout, memory, options)
            except BaseException:  # the child must never return into the zygote's loop
                import traceback

                traceback.print_exc()
                code = 70
            os._exit(code)
        print(f"spawned {kernel_id} {pid}", flush=True)
    _reap()
    return 0


if __name__ == "__main__":
    sys.exit(main())
