"""The blocking client: a façade over :class:`linkserver.aio.client.Client`.

``Client(name).evaluate("1+1")`` returns ``2``; ``evaluate_wrap`` returns
the result with its messages and printed text. See the asyncio twin for the
details; this class moves calls onto the background loop, except the plain
evaluation of a client without installed functions: that one writes its
request and reads its answer in the caller's own thread (one thread hop
instead of two), with the same gatherer (:mod:`linkserver.gather`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import wxf
from .aio.client import Client as AsyncClient
from .aio.client import EvaluationResult, evaluation_request
from .aio.fanout import requests_for
from .errors import LinkError
from .gather import Gatherer, InputRequest, aread_answer, read_answer
from .link import Link
from .portal import get_portal

log = logging.getLogger("linkserver.client")

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
        # One exchange in the caller's thread at a time, and none while an
        # install runs (see _evaluate_here).
        self._turn = threading.Lock()
        self._finishing: concurrent.futures.Future[None] | None = None
        self._answer_input: Callable[[InputRequest], str] | None = None
        ask = None
        if on_input is not None:
            blocking_input = on_input

            async def ask(prompt: str) -> str:
                # Off the event loop: a person may take minutes to answer.
                return await asyncio.to_thread(blocking_input, prompt)

            def answer_input(event: InputRequest) -> str:
                return blocking_input(event.prompt)

            self._answer_input = answer_input

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
        if self._aio._calls is None:
            with self._turn:
                if self._aio._calls is None:  # an install may have come first
                    return self._evaluate_here(evaluation_request(expr, preemptive), timeout)
        return self._portal.call(
            self._aio.evaluate_wrap(expr, timeout=timeout, preemptive=preemptive)
        )

    def _evaluate_here(self, request: Any, timeout: float | None) -> EvaluationResult:
        """Send ``request`` and read its answer in this thread (``_turn`` held).

        Only for a client with no installed functions: then nothing else reads
        this link (the call server does not run, and installs wait for
        ``_turn``). An exception that is not the link's (Ctrl-C, an
        ``on_input`` that raises) gives the request up: it is aborted and its
        answer read to its end on the loop, under the asyncio client's lock,
        so the next exchange gets only its own answer.
        """
        self._portal._check_thread()  # waiting here on the loop's own thread would hang it
        if self._finishing is not None:
            try:
                self._finishing.result()
            except BaseException as exc:  # noqa: BLE001 - its answer was given up already
                log.debug("the answer given up on ended with %r", exc)
            self._finishing = None
        link = Link(self._aio.link, self._portal)
        taken: deque[bytes] = deque()  # a payload taken off the link, not yet read

        def get() -> Any:
            return wxf.loads(link._get_payload(timeout, taken))

        gatherer = Gatherer()
        link.put(request)
        try:
            outcome = read_answer(gatherer, get, link.put, on_input=self._answer_input)
        except LinkError:
            raise
        except BaseException:
            if not gatherer.done:
                self._finishing = self._portal.submit(self._finish_answer(gatherer, taken, timeout))
            raise
        return EvaluationResult.from_outcome(outcome)

    async def _finish_answer(
        self, gatherer: Gatherer, taken: deque[bytes], timeout: float | None
    ) -> None:
        """Abort a request the caller gave up on; read the rest of its answer and drop it."""
        aio = self._aio
        assert aio._lock is not None
        await aio.link.abort()  # it may wait for input that will never come

        async def get() -> Any:
            if taken:
                return wxf.loads(taken.popleft())
            return await aio.link.get(timeout)

        async with aio._lock:
            await aread_answer(gatherer, get, aio.link.put,
                               on_input=lambda event: aio.on_input(event.prompt))

    def evaluate(
        self, expr: Any, *, timeout: float | None = None, preemptive: bool = False
    ) -> Any:
        """Evaluate ``expr`` (an expression or Wolfram Language text) and return its value.

        ``preemptive`` as in :meth:`evaluate_wrap`.
        """
        return self.evaluate_wrap(expr, timeout=timeout, preemptive=preemptive).result

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
        with self._turn:  # no exchange of this thread's kind reads the link now
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
