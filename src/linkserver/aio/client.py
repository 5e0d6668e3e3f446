"""The asyncio client: evaluate Wolfram Language on a linkserver and get Python values.

:class:`Client` speaks packets so its users need not: ``evaluate(expr)``
sends ``EvaluatePacket[expr]`` and gathers what comes back -- printed text,
messages, the result -- into an :class:`EvaluationResult` with the names of
wolframclient's ``WolframLanguageSession`` results (``result``, ``success``,
``messages``, ``messages_name``, ``output``), so code written for it moves
over. Strings are Wolfram Language input, as ``wlexpr`` makes them.

``evaluate(expr, preemptive=True)`` asks for a *preemptive* evaluation
(docs/protocol.md §8.9): on a shared kernel busy with another client's long
evaluation, it is served at that evaluation's next safe point instead of
waiting for it to end.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLFunction, WLSymbol

from ..errors import LinkError
from ..gather import DEFAULT_INPUT, Gatherer, Outcome, aread_answer, is_failure
from ..install import check_name
from ..names import DEFAULT_HOST, DEFAULT_PORT, parse_name
from ..protocol.packets import INSTALL, PREEMPTIVE, UNINSTALL, short_head
from ..security import default_address
from .calls import CallServer
from .fanout import Fanout, Progress, requests_for
from .link import Link

__all__ = ["Client", "EvaluationResult"]

DEFAULT_ADDRESS = f"{DEFAULT_PORT}@{DEFAULT_HOST}"

InputHandler = Callable[[str], str] | Callable[[str], Awaitable[str]]


@dataclass
class EvaluationResult:
    """Everything one evaluation produced.

    Attributes:
        result: the value (``$Aborted``, ``$Failed`` are symbols, not exceptions).
        messages: the text of each message issued, in order.
        messages_name: each message's name, e.g. ``"Power::infy"``.
        printed: each ``Print``'s text, in order (wolframclient calls it ``output``).
        success: True if a result came and no message was issued.
    """

    result: Any = None
    messages: list[str] = field(default_factory=list)
    messages_name: list[str] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)

    @classmethod
    def from_outcome(cls, outcome: Outcome) -> EvaluationResult:
        """The result of an ``EvaluatePacket``'s gathered answer."""
        return cls(outcome.result, [m.text for m in outcome.messages],
                   [m.name for m in outcome.messages], outcome.printed)

    @property
    def success(self) -> bool:
        """True if no message was issued and the result is a value, not a failure.

        Failures: ``$Failed``, ``$Aborted``, and ``linkserver`KernelError[...]``
        (what a kernel answers when it could not evaluate, e.g. out of memory).
        """
        return not self.messages and not is_failure(self.result)

    @property
    def output(self) -> list[str]:
        """Printed text, under wolframclient's name."""
        return self.printed

    @property
    def failure(self) -> str | None:
        """Why the evaluation failed: the first message, or the kernel's error; else None."""
        if self.messages:
            return self.messages[0]
        if isinstance(self.result, WLFunction) and short_head(self.result) == "KernelError":
            return " ".join(str(arg) for arg in self.result.args)
        return None


def evaluation_request(expr: Any, preemptive: bool = False) -> Any:
    """The packet that asks for ``expr`` (text is parsed by the kernel), preemptive or not."""
    if isinstance(expr, str):
        expr = wlexpr(expr)
    request = wl.EvaluatePacket(expr)
    if preemptive:
        request = WLFunction(WLSymbol(PREEMPTIVE), request)
    return request


async def _default_input(prompt: str) -> str:
    return DEFAULT_INPUT


class Client:
    """A client of a linkserver (asyncio).

    Args:
        name: the server, ``"PORT@HOST"`` or ``"PORT@HOST/POOL"``; default: the
            newest server this user runs (its connection file), else
            ``31415@127.0.0.1``.
        timeout: seconds to connect.
        on_input: called with the prompt when the kernel evaluates ``Input[]``;
            returns the text typed (may be a coroutine function). The default
            answers ``$Canceled``.
        pool: the pool to use (overrides a ``/POOL`` in ``name``).
        persistent: keep this client's kernel for the pool's keep-alive time
            after it disconnects; :attr:`kernel_id` then takes it back.
        kernel: the id of a persistent kernel to take back.
        key, tls, fingerprint: the server's key and TLS settings, as for
            :func:`linkserver.aio.connect`; by default from ``$LINKSERVER_KEY``
            and the server's connection file.
        select: choose the pool on connecting even when it is the default one,
            so that :attr:`mode` and :attr:`max_kernels` are known (and the
            connection waits until the link has its kernel).

    Use ``async with Client(...) as client:`` or ``await client.start()``.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        timeout: float | None = 30.0,
        on_input: InputHandler | None = None,
        pool: str | None = None,
        persistent: bool = False,
        kernel: str | None = None,
        key: str | bytes | None = None,
        tls: bool | None = None,
        fingerprint: str | None = None,
        select: bool = False,
    ) -> None:
        self.name = name or default_address(DEFAULT_ADDRESS)
        self._credentials: dict[str, Any] = {"key": key, "tls": tls, "fingerprint": fingerprint}
        self.timeout = timeout
        self.on_input: InputHandler = on_input or _default_input
        self.pool = pool or parse_name(self.name).pool
        self.persistent = persistent
        #: the id of this client's kernel, once the server told it (see ``persistent``)
        self.kernel_id: str | None = kernel
        #: ``"shared"`` or ``"pool"``, once a selection was answered (see ``persistent``)
        self.mode: str | None = None
        #: how many kernels the pool gives at once, once a selection was answered
        self.max_kernels: int | None = None
        self._select_always = select
        self._fanouts: set[Fanout] = set()  # maps running now, for abort()
        self._link: Link | None = None
        self._lock: asyncio.Lock | None = None
        self._calls: CallServer | None = None  # once a function is installed

    async def start(self) -> Client:
        """Connect.

        Raises:
            ConnectFailed: no server at :attr:`name`.
        """
        from . import connect

        if self._link is None:
            link = await connect(self.name, self.timeout, **self._credentials)
            try:
                if self.pool or self.persistent or self.kernel_id or self._select_always:
                    await self._select(link)
            except BaseException:
                await link.aclose()
                raise
            self._link = link
            self._lock = asyncio.Lock()
        return self

    async def _select(self, link: Link) -> None:
        """Choose the pool / kernel with ``LinkServerSelect`` (docs/protocol.md §8.6)."""
        options: dict[str, Any] = {}
        if self.pool:
            options["pool"] = self.pool
        if self.persistent:
            options["persistent"] = True
        if self.kernel_id:
            options["kernel"] = self.kernel_id
        await link.put(wl.LinkServerSelect(options))
        outcome = await aread_answer(Gatherer(), lambda: link.get(self.timeout), link.put)
        answer = outcome.result
        if isinstance(answer, dict):
            self.kernel_id = str(answer.get("kernel", "")) or None
            self.pool = str(answer.get("pool", "")) or self.pool
            self.mode = str(answer.get("mode", "")) or None
            most = answer.get("max")  # servers before protocol.md §8.6 said "max" send none
            self.max_kernels = most if isinstance(most, int) and most > 0 else None
            return
        why = outcome.messages[-1].text if outcome.messages else ""
        raise LinkError(why or f"the server refused the selection: {answer!r}",
                        code="select-failed")

    @property
    def link(self) -> Link:
        """The underlying link (for packet-level work)."""
        if self._link is None:
            raise RuntimeError("the client is not started: use 'async with' or await start()")
        return self._link

    async def evaluate_wrap(
        self, expr: Any, *, timeout: float | None = None, preemptive: bool = False
    ) -> EvaluationResult:
        """Evaluate ``expr`` and return the result with its messages and printed text.

        Args:
            expr: an expression, a Python value, or Wolfram Language input text.
            timeout: seconds to wait for each packet of the answer.
            preemptive: serve it while another client's evaluation runs, at that
                evaluation's next safe point (docs/protocol.md §8.9), instead of
                after it. Keep such evaluations short: the other one is paused
                meanwhile. ``Input[]`` reads ``EndOfFile`` in them.

        Raises:
            LinkError: the link failed (closed, broken, timed out).
        """
        await self.start()
        return await self._exchange(evaluation_request(expr, preemptive), timeout)

    async def _exchange(self, request: Any, timeout: float | None) -> EvaluationResult:
        """Send ``request``; gather its answer up to ``ReturnPacket``."""
        assert self._lock is not None
        calls = self._calls
        # Inside a call of an installed function, the innermost call's turn (§8.10).
        level = calls.level() if calls is not None else None
        async with level.lock if level is not None else self._lock:
            if level is None and self._calls is not None and self._calls.started:
                level = self._calls.base  # functions were installed meanwhile
            link = self.link
            await link.put(request)
            if level is None:
                get = functools.partial(link.get, timeout)
            else:  # the call server hands each level its packets
                assert self._calls is not None
                get = functools.partial(self._calls.get, level, timeout)
            outcome = await aread_answer(Gatherer(), get, link.put,
                                         on_input=lambda event: self.on_input(event.prompt))
            return EvaluationResult.from_outcome(outcome)

    async def evaluate(
        self, expr: Any, *, timeout: float | None = None, preemptive: bool = False
    ) -> Any:
        """Evaluate ``expr`` and return its value (messages and prints are dropped).

        ``preemptive`` as in :meth:`evaluate_wrap`.
        """
        return (await self.evaluate_wrap(expr, timeout=timeout, preemptive=preemptive)).result

    async def install(self, name: str, function: Callable[..., Any]) -> Any:
        """Define ``name[args___]`` in the kernel to call ``function(*args)`` here.

        Evaluating ``name[...]`` (by this client or, on a shared kernel, any
        other) sends this client ``CallPacket[index, {args}]``; the function
        runs and its value is the result (docs/protocol.md §8.10). Arguments
        and results are converted as WXF converts them (lists of machine
        numbers arrive as numpy arrays); an exception becomes
        ``Failure["PythonError", <|"MessageTemplate" -> ...|>]``. The function
        may be a coroutine function, and may evaluate back into the kernel
        with this client. A plain function runs in the event loop: keep it
        short, or make it async. Installing a name again replaces the function.

        Returns:
            The symbol now defined.

        Raises:
            ValueError: ``name`` is not a symbol name.
            LinkError: the server refused (the name belongs to another client,
                the kernel cannot call clients), or the link failed.
        """
        why = check_name(name)
        if why is not None:
            raise ValueError(why)
        await self.start()
        assert self._lock is not None
        calls = self._calls
        if calls is None:
            calls = self._calls = CallServer(self.link, self._lock)
        index = calls.indices.get(name)
        if index is None:
            index = max(calls.functions, default=0) + 1
        old = calls.functions.get(index)
        calls.functions[index] = (name, function)  # before the kernel may call it
        if not calls.started:
            async with self._lock:  # no evaluation of this client is reading now
                calls.start()
        result = await self._exchange(WLFunction(WLSymbol(INSTALL), name, index), self.timeout)
        if not isinstance(result.result, WLSymbol) or not result.success:
            if old is None:
                del calls.functions[index]
            else:
                calls.functions[index] = old
            raise LinkError(result.failure or f"{name} could not be installed: {result.result!r}",
                            code="install-failed")
        calls.indices[name] = index
        return result.result

    def installed(self) -> list[str]:
        """The names of the functions this client has installed."""
        return sorted(self._calls.indices) if self._calls is not None else []

    async def uninstall(self, name: str) -> None:
        """Remove ``name``, installed by this client, from the kernel.

        Raises:
            KeyError: this client did not install ``name``.
            LinkError: the server refused, or the link failed.
        """
        calls = self._calls
        if calls is None or name not in calls.indices:
            raise KeyError(f"{name} is not installed by this client")
        result = await self._exchange(WLFunction(WLSymbol(UNINSTALL), name), self.timeout)
        if not result.success:
            raise LinkError(result.failure or f"{name} could not be uninstalled",
                            code="install-failed")
        del calls.functions[calls.indices.pop(name)]

    async def map(
        self,
        function: Any,
        items: Iterable[Any],
        *,
        pool: str | None = None,
        kernels: int | None = None,
        setup: Any = None,
        timeout: float | None = None,
        on_progress: Progress | None = None,
        wrap: bool = False,
        ahead: int = 1,
    ) -> list[Any]:
        """Evaluate ``function`` on each item, spread over several kernels of a pool.

        The map opens links of its own to this client's server, one per kernel,
        each holding a kernel of ``pool`` for the map's life; this client's own
        kernel is not used, so definitions the items need go in ``setup``. A free
        kernel takes the next item (a slow item holds back only its own kernel).

        Args:
            function: a Wolfram Language function applied to each item
                (``"#^2 &"``, ``wl.Function(...)``, a symbol): the request is
                ``function[item]``, the item converted as any Python value (a
                ``str`` item is a string); a Python callable that returns each
                item's expression (a ``str`` it returns is input text); or None:
                each item is the expression (a ``str`` item is input text).
            items: the items, in order.
            pool: the pool whose kernels to use (default: this client's pool).
            kernels: how many kernels; default: as many as the pool gives at once
                (its ``max``; 1 for a shared pool).
            setup: evaluated on each kernel before its first item (and again on a
                kernel the pool replaced after it died); it must succeed.
            timeout: seconds to wait for each packet of an item's answer.
            on_progress: called as ``on_progress(done, total)`` on the event loop
                each time an item's result is in.
            wrap: give each answered item's whole :class:`EvaluationResult` (value,
                messages, printed text) instead of its value.
            ahead: items sent to a kernel beyond the one it runs, so it starts the
                next without waiting a round trip; a slow item then holds back the
                one waiting behind it (never the rest). 0: each item is sent only
                when its kernel is free.

        Returns:
            One result per item, in the items' order: its value, or a
            :class:`~linkserver.MapItemError` in the place of an item that has
            none (``$Failed``, ``$Aborted``, ``KernelError[...]``, a broken link,
            an expression that could not be built, an item :meth:`abort` left).
            Messages alone do not make a failure (``1/0`` gives
            ``ComplexInfinity``); ``wrap=True`` shows them.

        Raises:
            MapError: more kernels asked than the pool gives at once, or ``setup``
                failed.
            LinkError: no kernel could be had at all (no server, the pool refused).
            TypeError: ``function`` is not a function, a callable or None.
            ValueError: ``kernels`` below 1 or ``ahead`` below 0.
            asyncio.CancelledError: the task was cancelled; running items were
                aborted and the map's links closed first.
        """
        requests = requests_for(function, items)
        return await self.fanout(requests, pool=pool, kernels=kernels, setup=setup,
                                 timeout=timeout, on_progress=on_progress, wrap=wrap,
                                 ahead=ahead).run()

    def fanout(
        self,
        requests: Sequence[Any],
        *,
        items: Sequence[Any] | None = None,
        pool: str | None = None,
        kernels: int | None = None,
        setup: Any = None,
        timeout: float | None = None,
        on_progress: Progress | None = None,
        wrap: bool = False,
        ahead: int = 1,
    ) -> Fanout:
        """The :class:`~linkserver.aio.fanout.Fanout` that :meth:`map` runs, not yet run.

        For a handle on a map in progress (:meth:`Fanout.statistics`,
        :meth:`Fanout.abort`). ``requests`` comes from
        :func:`~linkserver.aio.fanout.requests_for`; ``items`` (default: the
        requests) are what its failures name; the rest is as for :meth:`map`.
        """
        chosen = pool or self.pool

        def connect() -> Client:
            return Client(self.name, timeout=self.timeout, on_input=self.on_input, pool=chosen,
                          select=True, **self._credentials)

        fanout = Fanout(connect, requests if items is None else items, requests,
                        kernels=kernels, setup=setup, timeout=timeout,
                        on_progress=on_progress, wrap=wrap, ahead=ahead)
        self._fanouts.add(fanout)
        fanout.on_end(self._fanouts.discard)
        return fanout

    async def abort(self) -> None:
        """Abort the evaluation running for this client, and its running maps.

        The evaluation answers ``$Aborted``; a map hands out no more items, its
        running items answer ``$Aborted`` and it returns (see :meth:`map`).
        """
        mapping = bool(self._fanouts)
        for fanout in list(self._fanouts):
            fanout.abort()
        if self._link is not None or not mapping:  # an idle kernel ignores an abort
            await self.link.abort()

    async def aclose(self) -> None:
        """Close the connection."""
        if self._link is not None:
            await self._link.aclose()

    async def __aenter__(self) -> Client:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
