"""Kernels: the child side -- the processes behind a server that evaluate what clients send.

Each kernel is its own OS process, connected to the server by a link that
speaks the same protocol as clients (DESIGN.md "Kernels"; the packets a
kernel answers are in docs/protocol.md §8). A backend is a module with
``main`` (the process entry point), ``prepare`` (the slow, fork-safe part of
start-up) and ``serve`` (connect and answer packets); :data:`BACKENDS` names
them. The Mathics3 backend is

- :mod:`.evaluator` -- the Mathics3 session and what it does with a request,
  without links, threads or signals (its host says when to stop);
- :mod:`.mathics` -- the kernel process around it (the loop, stops, ``Input[]``
  and installed functions over the link),
  ``python -m linkserver.kernel.mathics --connect NAME`` (or
  ``python -m linkserver.kernel``);
- :mod:`.mathics_exprs` -- expressions between wolframclient values and
  Mathics3 objects;

and :mod:`.zygote` is the template process that loads a backend once and
forks warm kernels from it (``python -m linkserver.kernel.zygote``).

Everything here runs where kernels run. Starting, forking, watching and
stopping kernel processes from the server is the business of
:mod:`linkserver.launcher`, which reads :data:`BACKENDS` from here; this
package imports nothing of the launcher's, so a kernel (or a template on
another machine) loads none of the server. Importing this package imports no
backend: Mathics3 takes seconds to load, and code that only starts kernels
does not need it.
"""

from __future__ import annotations

__all__ = ["BACKENDS", "FORKABLE"]

#: backend name -> the module whose ``main``/``prepare``/``serve`` run a kernel.
BACKENDS = {"mathics": "linkserver.kernel.mathics", "wolfram": "linkserver.kernel.wolfram"}

#: Backends whose loaded state a zygote can share by forking. The Wolfram Engine runs
#: in a process of its own that no fork can warm, so its kernels start fresh.
FORKABLE = frozenset({"mathics"})
