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
    zygote -> seed PID                  (a spare fork, not a kernel yet; see below)
    server -> spawn ID CONNECT EVAL_TIMEOUT MEMORY_MB [OPTION...]  ("-" for no limit)
    zygote -> spawned ID PID

The fork is most of a kernel's start (about 5 ms of the 10 ms it takes here for
a 190 MB template: the page tables are copied), so the zygote forks ahead: a
*seed* is a child that has left the zygote's stdin and stdout and waits on a
pipe of its own. A spawn hands its words to the seed, which becomes that kernel,
and the zygote forks the next seed once no command has come for
:data:`SEED_DELAY` (a fork at once would take the CPU from the kernel just
starting). Where no seed is ready (a burst of spawns, or the seed was killed),
the spawn forks as before.
A seed whose pipe closes -- the zygote exited -- exits too, having been nothing.

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
import select
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import NoReturn

from . import BACKENDS
from .loop import WATCH_PID_ENV, KernelPolicy, policy_parser
from .redial import REDIAL_ENV

__all__ = ["REDIAL_OPTION", "WATCH_OPTION", "main"]

#: The spawn option that names the process a forked kernel lives for.
WATCH_OPTION = "--watch-pid="
#: The spawn option that names a kept kernel's rendezvous (:mod:`.redial`).
REDIAL_OPTION = "--redial="
#: Seconds of quiet on stdin before the zygote forks its next seed.
SEED_DELAY = 0.02


def _reap(_signum: int = 0, _frame: FrameType | None = None) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _leave_template() -> None:
    """In a fresh fork: drop what belongs to the zygote (its child reaping, its pipes)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # The launcher reads our parent's stdout: keep this child's output off it.
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _child(
    backend: object, kernel_id: str, connect: str, timeout: str, memory: str,
    options: list[str],
) -> int:
    for option in [o for o in options if o.startswith(WATCH_OPTION)]:
        options.remove(option)
        os.environ[WATCH_PID_ENV] = option[len(WATCH_OPTION):]  # serve() starts the watch
    for option in [o for o in options if o.startswith(REDIAL_OPTION)]:
        options.remove(option)
        os.environ[REDIAL_ENV] = option[len(REDIAL_OPTION):]
        # A kept kernel outlives the template (whose server may die): Ray kills a
        # dead worker's whole process group, so it leaves the template's.
        os.setsid()
    if memory != "-":
        limit = int(memory) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    eval_timeout = None if timeout == "-" else float(timeout)
    policy = KernelPolicy.from_args(policy_parser().parse_args(options))
    code: int = backend.serve(  # type: ignore[attr-defined]
        connect, kernel_id, eval_timeout=eval_timeout, policy=policy
    )
    return code


def _run_child(run: Callable[[], int]) -> NoReturn:
    """In a fresh fork: run ``run`` and exit with its code; never back into the zygote."""
    try:
        code = run()
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 70
    os._exit(code)


def _spawn_words(line: str) -> list[str] | None:
    """The words of a ``spawn`` line, or None if it is not one."""
    words = line.split()
    if len(words) < 5 or words[0] != "spawn":
        return None
    return words[1:]


def _await_orders(backend: object, orders: int) -> int:
    """A seed's life: wait for a spawn line on ``orders`` and become that kernel."""
    _leave_template()
    policy_parser()  # its first use loads what every kernel's start reads
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(orders, 4096)
        if not chunk:
            return 0  # the zygote is gone before it needed this seed
        data += chunk
    os.close(orders)
    words = _spawn_words(data.decode())
    if words is None:
        return 70
    kernel_id, connect, timeout, memory, *options = words
    return _child(backend, kernel_id, connect, timeout, memory, options)


def _fork_seed(backend: object) -> tuple[int, int] | None:
    """Fork the next seed; return its pid and the pipe to send its orders on."""
    sys.stdout.flush()
    try:
        orders, sender = os.pipe()
        pid = os.fork()
    except OSError as exc:  # no memory, no processes left: spawns fork themselves
        print(f"error no seed: {exc.strerror}", flush=True)
        return None
    if pid == 0:
        os.close(sender)
        _run_child(lambda: _await_orders(backend, orders))
    os.close(orders)
    print(f"seed {pid}", flush=True)
    return pid, sender


def _hand_to_seed(seed: tuple[int, int] | None, line: str) -> int | None:
    """Give the spawn ``line`` to ``seed``; return its pid, or None if it is gone."""
    if seed is None:
        return None
    pid, sender = seed
    try:
        os.write(sender, line.encode())  # one short line: a pipe takes it whole
    except OSError:  # the seed died (EPIPE): fork this kernel the slow way
        return None
    finally:
        os.close(sender)
    return pid


class _Commands:
    """The server's lines on a file descriptor, each waited for at most a while.

    Unbuffered by Python (``sys.stdin`` would hide lines it has read from
    ``select``): :meth:`next` returns a line, ``""`` once the server closed
    the pipe, or None if nothing came within the timeout.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._ended = False

    def next(self, timeout: float | None) -> str | None:
        while b"\n" not in self._buffer and not self._ended:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._fd, 65536)
            self._ended = not chunk
            self._buffer += chunk
        line, newline, self._buffer = self._buffer.partition(b"\n")
        return (line + newline).decode(errors="replace")


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
    commands = _Commands(sys.stdin.fileno())
    seed: tuple[int, int] | None = None
    want_seed = True  # false after a failed fork, until the next spawn
    while True:
        # Fork the next seed once the server has been quiet a while: a fork
        # right after a spawn would take the CPU from the kernel starting.
        line = commands.next(SEED_DELAY if want_seed and seed is None else None)
        if line is None:
            seed = _fork_seed(backend)
            want_seed = seed is not None
            continue
        if not line:
            break
        words = _spawn_words(line)
        if words is None:
            print(f"error bad command {line.strip()[:80]!r}", flush=True)
            continue
        kernel_id, connect, timeout, memory, *options = words
        pid = _hand_to_seed(seed, line if line.endswith("\n") else line + "\n")
        seed, want_seed = None, True
        if pid is None:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _leave_template()
                _run_child(lambda: _child(backend, kernel_id, connect, timeout, memory, options))
        print(f"spawned {kernel_id} {pid}", flush=True)
    if seed is not None:
        os.close(seed[1])  # the seed reads the end of its orders and exits
    _reap()
    return 0


if __name__ == "__main__":
    sys.exit(main())
