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

__all__ = ["KernelSpec", "QUIT_ALLOWED"]

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
