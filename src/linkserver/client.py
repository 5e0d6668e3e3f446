"""The blocking client: a façade over :class:`linkserver.aio.client.Client`.

``Client(name).evaluate("1+1")`` returns ``2``; ``evaluate_wrap`` returns
the result with its messages and printed text. See the asyncio twin for the
details; this class only moves calls onto the background loop.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .aio.client import Client as AsyncClient
from .aio.client import EvaluationResult
from .aio.fanout import requests_for
from .link import Link
from .portal import get_portal

__all__ = ["Client", "EvaluationResult"]

F = TypeVar("F", bound=Callable[..., Any])


class Client:
    """A client of a linkserver (blocking).

    Args:
        name: the server, ``"PORT@HOST"``; default: the newest server this user
            runs (its connection file), else ``31415@127.0.0.1``.
        timeout: seconds to connect.
        on_input: called with the prompt when the kernel evaluates ``Input[]``;
            returns the text typed. It runs in a worker thread, so it may block
            (ask at a terminal, open a dialog).
        pool: the pool to use (overrides a ``/POOL`` in ``name``).
        persistent: keep the kernel for the pool's keep-alive time after
            disconnecting; :attr:`kernel_id` takes it back later.
        kernel: the id of a persistent kernel to take back.
        key, tls, fingerprint: the server's key and TLS settings, as for
            :func:`linkserver.connect`; by default from ``$LINKSERVER_KEY`` and
            the server's connection file.
        select: choose the pool on connecting even when it is the default one,
            so that :attr:`pool`, :attr:`kernel_id` and :attr:`mode` are known.

    Raises:
        ConnectFailed: no server at ``name``.
        LinkError: the server refused the pool or kernel asked for (code ``select-failed``).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        timeout: float | None = 30.0,
        on_input: Callable[[str], str] | None = None,
        pool: str | None = None,
        persistent: bool = False,
        kernel: str | None = None,
        key: str | bytes | None = None,
        tls: bool | None = None,
        fingerprint: str | None = None,
        select: bool = False,
    ) -> None:
        self._portal = get_portal()
        ask = None
        if on_input is not None:
            blocking_input = on_input

            async def ask(prompt: str) -> str:
                # Off the event loop: a person may take minutes to answer.
                return await asyncio.to_thread(blocking_input, prompt)

        self._aio = AsyncClient(
            name, timeout=timeout, on_input=ask, pool=pool, persistent=persistent,
            kernel=kernel, key=key, tls=tls, fingerprint=fingerprint, select=select,
        )
        self._portal.call(self._aio.start())

    @property
    def kernel_id(self) -> str | None:
        """The id of this client's kernel (to take a persistent kernel back later)."""
        return self._aio.kernel_id

    @property
    def pool(self) -> str | None:
        """The pool this client uses (None: the server's default)."""
        return self._aio.pool

    @property
    def mode(self) -> str | None:
        """The pool's mode, ``"shared"`` or ``"pool"``, as the server said (None if it did not)."""
        return self._aio.mode

    @property
    def name(self) -> str:
        """The server's address."""
        return self._aio.name

    @property
    def link(self) -> Link:
        """The underlying link, for packet-level work."""
        return Link(self._aio.link, self._portal)

    def evaluate_wrap(
        self, expr: Any, *, timeout: float | None = None, preemptive: bool = False
    ) -> EvaluationResult:
        """Evaluate ``expr``; return result, messages and printed text.

        ``preemptive=True`` serves it while another client's evaluation runs,
        at that evaluation's next safe point (docs/protocol.md §8.9).

        Raises:
            LinkError: the link failed (closed, broken, timed out).
        """
        return self._portal.call(
            self._aio.evaluate_wrap(expr, timeout=timeout, preemptive=preemptive)
        )

    def evaluate(
        self, expr: Any, *, timeout: float | None = None, preemptive: bool = False
    ) -> Any:
        """Evaluate ``expr`` (an expression or Wolfram Language text) and return its value.

        ``preemptive`` as in :meth:`evaluate_wrap`.
        """
        return self._portal.call(
            self._aio.evaluate(expr, timeout=timeout, preemptive=preemptive)
        )

    def install(self, name: str, function: Callable[..., Any]) -> Any:
        """Define ``name[args___]`` in the kernel to call ``function(*args)`` in this process.

        On a shared kernel every client may call it; it is this client's until
        it uninstalls it or disconnects (docs/protocol.md §8.10). The function
        runs in a worker thread, so it may block and may call :meth:`evaluate`
        on this client (nested evaluation). An exception becomes
        ``Failure["PythonError", ...]`` in the Wolfram Language.

        Returns:
            The symbol now defined.

        Raises:
            ValueError: ``name`` is not a symbol name.
            LinkError: the server refused, or the link failed.
        """

        async def run(*args: Any) -> Any:
            return await asyncio.to_thread(function, *args)

        functools.update_wrapper(run, function)
        return self._portal.call(self._aio.install(name, run))

    def install_function(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: :meth:`install` the function as ``name`` (default: its own name)."""

        def decorate(function: F) -> F:
            self.install(name or function.__name__, function)
            return function

        return decorate

    def installable(self, function: F) -> F:
        """Decorator: :meth:`install` the function under its own name."""
        self.install(function.__name__, function)
        return function

    def uninstall(self, name: str) -> None:
        """Remove ``name``, installed by this client, from the kernel.

        Raises:
            KeyError: this client did not install ``name``.
        """
        self._portal.call(self._aio.uninstall(name))

    def installed(self) -> list[str]:
        """The names of the functions this client has installed."""
        return self._aio.installed()

    def map(
        self,
        function: Any,
        items: Iterable[Any],
        *,
        pool: str | None = None,
        kernels: int | None = None,
        setup: Any = None,
        timeout: float | None = None,
        on_progress: Callable[[int, int], object] | None = None,
        wrap: bool = False,
        ahead: int = 1,
    ) -> list[Any]:
        """Evaluate ``function`` on each item over several kernels of a pool; results in order.

        ``client.map("#^2 &", range(100), kernels=4)`` opens four links of its
        own to the server, each holding a kernel of the pool, and hands each
        kernel the next item when it is free. ``setup`` (definitions the items
        need) is evaluated on each kernel first: this client's own kernel is
        not used. A Python ``function`` is called for every item here, in this
        thread, before the first is sent. ``on_progress(done, total)`` is called
        in this thread; it may call :meth:`abort`.

        An item's failure is its own result, a :class:`~linkserver.MapItemError`
        in its place (``$Failed``, ``$Aborted``, ``KernelError[...]``, a broken
        link); :meth:`abort` (from the callback or another thread) stops handing
        out items, aborts the running ones and returns what was done.
        Ctrl-C (KeyboardInterrupt) does the same and then raises. Arguments,
        results and errors are as for :meth:`linkserver.aio.Client.map`.

        Raises:
            MapError: more kernels asked than the pool gives at once, or ``setup``
                failed.
            LinkError: no kernel could be had at all.
            TypeError: ``function`` is not a function, a callable or None.
            ValueError: ``kernels`` below 1 or ``ahead`` below 0.
        """
        items = list(items)
        requests = requests_for(function, items)  # here: a Python function may block
        events: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        ended = threading.Event()

        def progress(done: int, total: int) -> None:
            events.put((done, total))

        async def run() -> list[Any]:
            try:
                fanout = self._aio.fanout(
                    requests, items=items, pool=pool, kernels=kernels, setup=setup,
                    timeout=timeout, on_progress=progress if on_progress else None, wrap=wrap,
                    ahead=ahead)
                return await fanout.run()
            finally:
                ended.set()
                events.put(None)

        future = self._portal.submit(run())
        try:
            while (event := events.get()) is not None:
                if on_progress is not None:
                    on_progress(*event)
            return future.result()
        except BaseException:  # Ctrl-C, or the callback raised: abort the map, then go on
            future.cancel()  # the map aborts its running items and closes its links
            ended.wait(30)
            raise

    def abort(self) -> None:
        """Abort the running evaluation and maps (from another thread); they answer ``$Aborted``."""
        self._portal.call(self._aio.abort())

    def close(self) -> None:
        """Close the connection."""
        self._portal.call(self._aio.aclose())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
