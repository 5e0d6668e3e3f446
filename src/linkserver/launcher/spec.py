"""What a kernel is, as data: backend, limits, start-up code (no processes here).

A :class:`KernelSpec` says how to run one kind of kernel; a launcher
(:mod:`.local`, or any :class:`~.base.KernelLauncher`) turns it into running
kernels. Keeping it data makes pools from a configuration file and the command
line the same thing. Which backends exist is the child side's list
(:data:`linkserver.kernel.BACKENDS`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ..kernel import BACKENDS

__all__ = ["KernelSpec", "QUIT_ALLOWED", "RayOptions"]

#: Who may end a shared kernel with ``Quit[]`` (``[access] quit``, docs/configuration.md).
QUIT_ALLOWED = ("nobody", "anyone")


@dataclass(frozen=True, slots=True)
class KernelSpec:
    """How to run a kernel.

    Attributes:
        backend: a key of :data:`BACKENDS`.
        eval_timeout: seconds one evaluation may run before it answers
            ``$Aborted``; None for no limit.
        memory_mb: address-space limit of each kernel process (rlimit), or None.
        start_timeout: seconds a kernel may take to connect and say it is ready.
        init: Wolfram Language code the server evaluates in each new kernel
            before the kernel serves anyone.
        kernel_path: the Wolfram Engine's kernel for the ``wolfram`` backend
            (``--kernel-path``); None looks for one.
        mode: ``"shared"`` for a kernel every client of a pool shares, ``"pool"``
            for a client's own; a shared kernel refuses ``Quit[]`` (``--mode``).
        quit_allowed: who may end a shared kernel with ``Quit[]``: ``"nobody"``
            (the default: an admin stops the server instead) or ``"anyone"``.
        sandbox: confine each kernel by the operating system to a scratch
            directory of its own, with no programs and no network
            (``--sandbox``, :mod:`linkserver.kernel.sandbox`); Mathics3 only.
    """

    backend: str = "mathics"
    eval_timeout: float | None = None
    memory_mb: int | None = None
    start_timeout: float = 120.0
    init: str | None = None
    kernel_path: str | None = None
    mode: str = "pool"
    quit_allowed: str = "nobody"
    sandbox: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            known = ", ".join(sorted(BACKENDS))
            raise ValueError(f"unknown kernel backend {self.backend!r}; known: {known}")
        if self.eval_timeout is not None and self.eval_timeout <= 0:
            raise ValueError("eval_timeout must be positive (or None for no limit)")
        if self.memory_mb is not None and self.memory_mb < 64:
            raise ValueError("memory_mb below 64 MB leaves a kernel no room to start")
        if self.kernel_path is not None and self.backend != "wolfram":
            raise ValueError(f"kernel_path is for the wolfram backend, not {self.backend!r}")
        if self.mode not in ("shared", "pool"):
            raise ValueError(f"mode must be 'shared' or 'pool', not {self.mode!r}")
        if self.quit_allowed not in QUIT_ALLOWED:
            raise ValueError(f"quit_allowed must be one of {', '.join(QUIT_ALLOWED)}")
        if self.sandbox and self.backend != "mathics":
            # The Wolfram Engine runs as a program of its own, which a sandbox forbids.
            raise ValueError("sandbox is for the mathics backend; the wolfram one runs a program")

    @property
    def module(self) -> str:
        """The Python module that runs this backend."""
        return BACKENDS[self.backend]

    def argv(self, connect: str, kernel_id: str, scratch: str | None = None) -> list[str]:
        """The command line that starts one kernel connecting to ``connect``.

        A sandboxed kernel (``scratch``: its directory) starts through
        :mod:`linkserver.kernel.sandbox`, which confines it before it loads the backend.
        """
        start = ["-m", self.module]
        if scratch is not None:
            start = ["-m", "linkserver.kernel.sandbox", "--kernel", self.module]
        argv = [sys.executable, *start, "--connect", connect, "--kernel-id", kernel_id]
        if self.eval_timeout is not None:
            argv += ["--eval-timeout", repr(self.eval_timeout)]
        if self.kernel_path is not None:
            argv += ["--kernel-path", self.kernel_path]
        if scratch is not None:
            argv.append(f"--sandbox={scratch}")
        return argv + self.policy_options()

    def policy_options(self) -> list[str]:
        """The kernel options that say how it may be used (mode, Quit), one word each.

        Part of :meth:`argv`, and what a template passes on to the kernels it
        forks (:mod:`linkserver.kernel.zygote`): the kernel learns its mode
        from these, whichever way it was started.
        """
        options = [f"--mode={self.mode}"]
        if self.mode == "shared":
            options.append(f"--quit-allowed={self.quit_allowed}")
        return options


@dataclass(frozen=True, slots=True)
class RayOptions:
    """What each kernel of a pool placed on Ray asks of Ray (``[pools.NAME.ray]``).

    Attributes:
        num_cpus: Ray CPUs each kernel books (a kernel evaluates on one thread).
        memory_mb: Ray ``memory`` each kernel books, in MiB; None books none.
            (The pool's own ``memory_mb`` is the kernel's address-space limit.)
        resources: custom Ray resources each kernel books, as sorted
            ``(name, amount)`` pairs: ``{gpu_node = 1}`` places kernels only on
            nodes started with that resource.
        namespace: the Ray namespace its kernels' actors are named in.
    """

    num_cpus: float = 1.0
    memory_mb: int | None = None
    resources: tuple[tuple[str, float], ...] = ()
    namespace: str = "linkserver"

    def __post_init__(self) -> None:
        if self.num_cpus < 0:
            raise ValueError("num_cpus must not be negative")
        if self.memory_mb is not None and self.memory_mb <= 0:
            raise ValueError("memory_mb must be positive (leave it out to book none)")
        if any(amount <= 0 for _name, amount in self.resources):
            raise ValueError("each custom resource amount must be positive")
        if not self.namespace:
            raise ValueError("namespace must not be empty")

    def demand(self) -> dict[str, float]:
        """The Ray resources one kernel books, by Ray's names (memory in bytes)."""
        need: dict[str, float] = dict(self.resources)
        if self.num_cpus:
            need["CPU"] = self.num_cpus
        if self.memory_mb:
            need["memory"] = float(self.memory_mb * 1024 * 1024)
        return need

    def describe(self) -> str:
        """The demand as a person reads it: ``num_cpus=1, memory_mb=2048, gpu_node=1``."""
        parts = [f"num_cpus={self.num_cpus:g}"]
        if self.memory_mb:
            parts.append(f"memory_mb={self.memory_mb}")
        parts += [f"{name}={amount:g}" for name, amount in self.resources]
        return ", ".join(parts)
