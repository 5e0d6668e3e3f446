"""Kernels: the processes behind a server that evaluate what clients send.

Each kernel is its own OS process, connected to the server by a link that
speaks the same protocol as clients (DESIGN.md "Kernels"; the packets a
kernel answers are in docs/protocol.md §8). A backend is a module with
``main`` (the process entry point), ``prepare`` (the slow, fork-safe part of
start-up) and ``serve`` (connect and answer packets); the Mathics3 backend is

- :mod:`.mathics` -- the kernel process,
  ``python -m linkserver.kernel.mathics --connect NAME`` (or
  ``python -m linkserver.kernel``);
- :mod:`.mathics_exprs` -- expressions between wolframclient values and
  Mathics3 objects.

Starting, forking and watching kernel processes is the business of the
launcher modules beside them. Importing this package imports no backend:
Mathics3 takes seconds to load, and code that only starts kernels does not
need it.
"""

from __future__ import annotations

__all__: list[str] = []
