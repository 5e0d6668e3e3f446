"""Launchers: the server's side of kernels -- start them, learn they are ready or dead, stop them.

A pool's broker gets its kernels from a launcher and knows it only through
the small interface in :mod:`.base`, so that where kernels run can change
without the broker knowing:

- :mod:`.base` -- the interface and its contract: :class:`KernelLauncher`,
  :class:`KernelHandle`, :class:`KernelError` and the ``status`` snapshots;
- :mod:`.spec` -- :class:`KernelSpec`, a kind of kernel as data;
- :mod:`.local` -- :class:`LocalLauncher`, kernels as processes on this
  machine (the default);
- :mod:`.zygote` -- the server's end of the template process that forks warm
  kernels (the template itself is :mod:`linkserver.kernel.zygote`);
- :mod:`.ray` -- :class:`~.ray.RayLauncher`, kernels as Ray actors on a
  cluster's nodes that dial back over TCP (loaded only for ``--ray``: it
  needs the optional ``ray`` package).

The code that runs *in* kernels is :mod:`linkserver.kernel`.
"""

from __future__ import annotations

from .base import (
    KernelError,
    KernelHandle,
    KernelLauncher,
    KernelStatistics,
    LauncherStatistics,
    PlacementError,
)
from .local import LocalKernelHandle, LocalLauncher
from .spec import KernelSpec, RayOptions

__all__ = [
    "KernelError",
    "KernelHandle",
    "KernelLauncher",
    "KernelSpec",
    "KernelStatistics",
    "LauncherStatistics",
    "LocalKernelHandle",
    "LocalLauncher",
    "PlacementError",
    "RayOptions",
]
