"""Fan-out: one list of evaluations spread over several kernels of a pool (``Client.map``).

Theory of operation
-------------------
A :class:`Fanout` opens links of its own to the server, each selecting the pool with a
``LinkServerSelect`` (docs/protocol.md §8.6), so that each link holds one kernel of that
pool for the fan-out's life. Where the pool runs its kernels -- local processes, Ray
actors on other nodes -- is the pool's business: a fan-out only speaks links, so it works
the same for every placement.

Each link is driven by one *worker* task. A worker takes the index of the next item from
one shared counter when its kernel is free, evaluates that item, stores the answer at its
index and takes the next: work stealing, so a slow item holds back only its own kernel,
and the results come out in the items' order whatever order the kernels finish in.

The first link is opened alone. Its selection answer carries the pool's mode and its
``"max"`` (how many kernels it gives at once), so asking for more kernels than the pool
has is refused at once with :class:`MapError`, before links queue for kernels that
cannot come. The other links are opened together afterwards; one the pool refuses (its
kernels are busy with other clients past the pool's wait) leaves the work to the rest.

Failures belong to items: an item whose answer is ``$Failed``, ``$Aborted`` or
``KernelError[...]``, whose expression could not be built, or whose link broke gets a
:class:`MapItemError` in its place. Nothing is evaluated twice: a link that breaks
mid-item costs that item, its worker leaves, and the others take its share. A kernel
that died mid-item (``LinkServer::kerneldied``) is replaced by the pool behind the same
link with its definitions gone, so its worker sends the setup code again before its next
item.

Stopping: :meth:`Fanout.abort` hands out no more items, aborts the running ones (they
answer ``$Aborted``) and returns what was done, the rest marked "not evaluated".
Cancelling :meth:`Fanout.run` (a task cancel; a KeyboardInterrupt in the blocking client)
does the same and then lets the cancellation go on. A fan-out's links are closed when it
ends, however it ends: closing a link aborts its kernel's running request (§8.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wolframclient.language import wl, wlexpr
from wolframclient.language.expression import WLExpressionMeta, WLFunction, WLSymbol

from ..errors import LinkError, MapError, MapItemError
from ..gather import Gatherer, InputRequest, aread_answer, is_failure
from ..records import input_form

if TYPE_CHECKING:
    from .client import Client, EvaluationResult

__all__ = ["Fanout", "FanoutStatistics", "Progress", "requests_for"]

#: The place of an item whose result is not in yet (an item may answer Null, i.e. None).
_PENDING: Any = object()

#: ``on_progress(done, total)``: called each time an item's result is in.
Progress = Callable[[int, int], object]

#: The message name of an answer whose kernel died (docs/protocol.md §8.3).
_KERNEL_DIED = "LinkServer::kerneldied"

_NOT_EVALUATED = "not evaluated: the map was aborted before this item's turn"


def requests_for(function: Any, items: Iterable[Any]) -> list[Any]:
    """The expression to evaluate for each item, or its :class:`MapItemError`.

    Args:
        function: how an item becomes an expression. A Wolfram Language function
            (``wl.Function(...)``, a symbol, or input text such as ``"#^2 &"``) is
            applied to each item: the request is ``function[item]``, the item
            converted as WXF converts Python values (a ``str`` item is a string).
            A Python callable returns each item's expression (a ``str`` it
            returns is Wolfram Language input). ``None``: each item is itself the
            expression (a ``str`` item is input text).
        items: the items, in order.

    Raises:
        TypeError: ``function`` is none of these.
    """
    apply = _applier(function)
    requests: list[Any] = []
    for index, item in enumerate(items):
        try:
            requests.append(apply(item))
        except Exception as exc:  # the caller's function: its failure is this item's result
            requests.append(MapItemError(
                index, item, f"the expression could not be built: {type(exc).__name__}: {exc}"))
    return requests


def _as_expr(value: Any) -> Any:
    return wlexpr(value) if isinstance(value, str) else value


def _applier(function: Any) -> Callable[[Any], Any]:
    if function is None:
        return _as_expr
    if isinstance(function, str):
        head: Any = wlexpr(function)
        return lambda item: WLFunction(head, item)
    if isinstance(function, WLExpressionMeta):  # before callable(): wl.f is callable too
        return lambda item: WLFunction(function, item)
    if callable(function):
        return lambda item: _as_expr(function(item))
    raise TypeError(
        f"map takes a Wolfram Language function (\"#^2 &\", wl.Function(...)), a Python "
        f"callable or None, not {type(function).__name__}"
    )


@dataclass(frozen=True, slots=True)
class FanoutStatistics:
    """A snapshot of a fan-out.

    Attributes:
        total: items in all.
        done: items whose result is in (failures included).
        failed: of those, the items that have a :class:`MapItemError`.
        running: indices of the items being evaluated now.
        kernels: links that hold a kernel now.
    """

    total: int
    done: int
    failed: int
    running: tuple[int, ...]
    kernels: int


class Fanout:
    """One map of items over kernels of a pool; :meth:`run` once.

    Args:
        connect: makes a new, unstarted :class:`linkserver.aio.Client` that selects
            the pool (each call one more link and kernel).
        items: the items, for :class:`MapItemError` to name.
        requests: each item's expression, or its failure (:func:`requests_for`).
        kernels: how many kernels to use; None: as many as the pool gives at once.
        setup: evaluated on each kernel before its first item (definitions the items
            use); it must succeed (no message, no failure) or the map fails.
        timeout: seconds to wait for each packet of an item's answer.
        on_progress: called as ``on_progress(done, total)`` each time a result is in.
        wrap: each answered item's result is its whole ``EvaluationResult``
            (value, messages, printed text), failures included.
        ahead: items sent to a kernel beyond the one it runs, so that it starts
            the next the moment it answers; 0 sends each item only when its
            kernel is free (a slow item then holds back no other item, where
            with 1 it holds back the one waiting behind it).
    """

    def __init__(
        self,
        connect: Callable[[], Client],
        items: Sequence[Any],
        requests: Sequence[Any],
        *,
        kernels: int | None = None,
        setup: Any = None,
        timeout: float | None = None,
        on_progress: Progress | None = None,
        wrap: bool = False,
        ahead: int = 1,
    ) -> None:
        if ahead < 0:
            raise ValueError(f"ahead must be 0 or more, not {ahead}")
        if kernels is not None and kernels < 1:
            raise ValueError(f"kernels must be 1 or more, not {kernels}")
        self._connect = connect
        self._items = items
        self._requests = requests
        self._kernels = kernels
        self._setup = _as_expr(setup)
        self._timeout = timeout
        self._on_progress = on_progress
        self._wrap = wrap
        self._ahead = ahead
        self._results: list[Any] = [
            r if isinstance(r, MapItemError) else _PENDING for r in requests
        ]
        self._done = sum(r is not _PENDING for r in self._results)
        self._next = 0
        self._running: dict[int, Client] = {}  # item index -> the client evaluating it
        self._holding = 0  # links that hold a kernel
        self._stopping = False
        self._fatal: BaseException | None = None
        self._last_error: LinkError | None = None
        self._finished = asyncio.Event()
        self._live = 0  # workers not yet ended
        self._aborts: set[asyncio.Task[None]] = set()
        self._opening: set[asyncio.Task[Any]] = set()  # workers waiting for their kernel
        self._ended: list[Callable[[Fanout], object]] = []

    def statistics(self) -> FanoutStatistics:
        """How far the fan-out is."""
        failed = sum(isinstance(r, MapItemError) for r in self._results)
        return FanoutStatistics(len(self._requests), self._done, failed,
                                tuple(sorted(self._running)), self._holding)

    def on_end(self, callback: Callable[[Fanout], object]) -> None:
        """Call ``callback(self)`` when :meth:`run` ends, however it ends."""
        self._ended.append(callback)

    def abort(self) -> None:
        """Hand out no more items and abort the running ones (call it on the event loop).

        :meth:`run` then returns: the finished items' results, a :class:`MapItemError`
        whose value is ``$Aborted`` for each item that was running or waiting at its
        kernel, and "not evaluated" for the rest.
        """
        if self._stopping:
            return
        self._stopping = True
        # Closing a link is how its items are aborted: the server aborts the running
        # request of a link that is gone and drops the one waiting behind it
        # (docs/protocol.md §8.3), where an ABORT message would reach only the first.
        for client in set(self._running.values()):
            task = asyncio.ensure_future(self._close(client))
            self._aborts.add(task)
            task.add_done_callback(self._aborts.discard)
        if not self._running:
            self._finished.set()

    @staticmethod
    async def _close(client: Client) -> None:
        with contextlib.suppress(LinkError):
            await client.aclose()

    async def run(self) -> list[Any]:
        """Evaluate every item; return the results in the items' order.

        Raises:
            MapError: more kernels asked than the pool gives, or the setup failed.
            LinkError: not even one kernel could be had (no server, the pool
                refused); once one kernel works, link failures are items' results.
        """
        try:
            return await self._run()
        finally:
            for callback in self._ended:
                callback(self)

    async def _run(self) -> list[Any]:
        if self._done == len(self._requests):
            self._report()
            return list(self._results)
        first = self._connect()
        await first.start()  # raises: without one kernel there is no map
        try:
            count = self._how_many(first)
        except MapError:
            await first.aclose()
            raise
        tasks = [asyncio.ensure_future(self._work(first))]
        tasks += [asyncio.ensure_future(self._work(None)) for _ in range(count - 1)]
        self._live = len(tasks)
        try:
            await self._finished.wait()
        except BaseException:  # cancelled: stop every worker; closing a link aborts its item
            self._stopping = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        # Every item is in, or none is left to hand out: workers still waiting for a
        # kernel give up; the others end by themselves (after their item's answer).
        for task in self._opening:
            task.cancel()
        ended = await asyncio.gather(*tasks, *self._aborts, return_exceptions=True)
        if self._fatal is not None:
            raise self._fatal
        for outcome in ended:  # a bug in a worker is not an item's failure: it surfaces
            if isinstance(outcome, Exception):
                raise outcome
        why = _NOT_EVALUATED if self._stopping else (
            "not evaluated: no kernel was left to evaluate it"
            + (f" (the last link failed: {self._last_error})" if self._last_error else ""))
        for index, result in enumerate(self._results):
            if result is _PENDING:
                self._results[index] = MapItemError(index, self._items[index], why)
        return list(self._results)

    def _how_many(self, first: Client) -> int:
        """How many links to open, from what the first one's selection said."""
        most = first.max_kernels
        if most is None and first.mode == "shared":
            most = 1
        pool = first.pool or "default"
        if self._kernels is not None and most is not None and self._kernels > most:
            shared = " (it is shared: one kernel for every client)" if most == 1 else ""
            raise MapError(
                f"pool {pool!r} gives at most {most} kernel{'s' if most != 1 else ''} at "
                f"once{shared}; ask map for kernels={most} or fewer, or use a larger pool",
                code="map-too-many-kernels",
            )
        wanted = self._kernels if self._kernels is not None else (most or 1)
        pending = sum(r is _PENDING for r in self._results)
        return max(1, min(wanted, pending))

    # -- workers

    async def _work(self, client: Client | None) -> None:
        """One link: keep its kernel fed while items remain; close the link at the end."""
        holding = False
        try:
            if client is None:
                client = self._connect()
                me = asyncio.current_task()
                assert me is not None
                self._opening.add(me)
                try:
                    await client.start()
                except LinkError as exc:  # the pool refused: the other kernels do the work
                    self._last_error = exc
                    return
                finally:
                    self._opening.discard(me)
            holding = True
            self._holding += 1
            if self._setup is not None:
                try:
                    await self._run_setup(client)
                except MapError:
                    raise
                except LinkError as exc:  # this link broke: the other kernels do the work
                    self._last_error = exc
                    return
            await self._feed(client)
        except MapError as exc:
            self._fatal = exc
            self.abort()
        finally:
            if client is not None:
                await self._close(client)
            if holding:
                self._holding -= 1
            self._live -= 1
            if self._live <= 0 or (self._stopping and not self._running):
                self._finished.set()

    async def _feed(self, client: Client) -> None:
        """Send items to ``client``'s kernel, ``ahead`` of its answers, and store the answers.

        A pool kernel serves its link's requests in order, so the answers come in
        the order the items were sent; with one item waiting behind the running
        one, the kernel starts it the moment it answers, instead of idling for a
        round trip.

        Raises:
            MapError: the setup failed on the kernel the pool put in place of a
                dead one.

        A broken link ends the feeding: the items sent on it get their failures.
        """
        from .client import EvaluationResult  # at run time: the client module imports this one

        link = client.link
        sent: deque[int] = deque()  # indices sent, oldest first
        get = functools.partial(link.get, self._timeout)

        def ask(event: InputRequest) -> Any:
            return client.on_input(event.prompt)

        async def answer() -> EvaluationResult:
            outcome = await aread_answer(Gatherer(), get, link.put, on_input=ask)
            index = sent.popleft()
            self._running.pop(index, None)
            return EvaluationResult.from_outcome(outcome)

        while True:
            try:
                while not self._stopping and len(sent) <= self._ahead:
                    index = self._take()
                    if index is None:
                        break
                    self._running[index] = client
                    sent.append(index)
                    await link.put(wl.EvaluatePacket(self._requests[index]))
                if not sent:
                    return
                index = sent[0]
                result = await answer()
                self._store(index, self._result(index, result))
                if _KERNEL_DIED in result.messages_name and self._setup is not None:
                    # The pool's fresh kernel lacks the setup, and the items already
                    # sent run on it before the setup can: their answers are not
                    # what the caller asked for.
                    while sent:
                        index = sent[0]
                        self._store(index, MapItemError(
                            index, self._items[index], "its kernel died just before it, and "
                            "the fresh kernel ran it without the setup", answer=await answer()))
                    await self._run_setup(client)
            except MapError:
                raise
            except LinkError as exc:
                # Never sent elsewhere: each of them may have run.
                if self._stopping:
                    why, value = "aborted: the map was aborted while it ran", WLSymbol("$Aborted")
                else:
                    self._last_error = exc
                    why, value = f"its link failed: {exc}", WLSymbol("$Failed")
                while sent:
                    index = sent.popleft()
                    self._running.pop(index, None)
                    self._store(index, MapItemError(index, self._items[index], why, value=value))
                return

    async def _run_setup(self, client: Client) -> None:
        """Evaluate the setup on ``client``'s kernel.

        Raises:
            MapError: it issued a message or failed: every kernel would, so the map stops.
            LinkError: the link broke (this kernel's loss only).
        """
        answer = await client.evaluate_wrap(self._setup, timeout=self._timeout)
        if not answer.success:
            why = answer.failure or f"it answered {input_form(answer.result)}"
            raise MapError(f"the setup code failed on a kernel: {why}; fix it and map again",
                           code="map-setup-failed")

    def _take(self) -> int | None:
        while self._next < len(self._requests):
            index = self._next
            self._next += 1
            if self._results[index] is _PENDING:
                return index
        return None

    def _result(self, index: int, answer: EvaluationResult) -> Any:
        if self._wrap:
            return answer
        if is_failure(answer.result):
            aborted = isinstance(answer.result, WLSymbol) and answer.result.name.endswith("$Aborted")
            why = answer.failure or ("aborted: it answered $Aborted" if aborted
                                     else f"it answered {input_form(answer.result)}")
            return MapItemError(index, self._items[index], why, answer=answer)
        return answer.result

    def _store(self, index: int, result: Any) -> None:
        self._results[index] = result
        self._done += 1
        self._report()
        if self._done == len(self._requests):
            self._finished.set()

    def _report(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self._done, len(self._requests))
