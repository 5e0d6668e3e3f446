"""A client's installed functions: answering ``CallPacket`` (docs/protocol.md §8.10).

Once a client has installed a function, its kernel may call it at any time:
while the client evaluates (its own ``PyFib[20]``), while it waits for nothing
(another client's evaluation on a shared kernel), and from inside another
call (a callback that evaluates back into the kernel, which calls again).
So :class:`CallServer` takes over the link's incoming expressions (a
receiver, :meth:`Link.set_receiver`): each ``CallPacket[index, {args}]``
starts a task that runs the function and answers ``ReturnPacket[result]``;
every other expression goes to the evaluation that waits for it.

Theory of operation
-------------------
Calls nest: the kernel waits for a call's answer inside an evaluation, and
what the function evaluates meanwhile is served inside that wait. The
client mirrors this with a stack of *levels*: level 0 is the client's own
evaluations; each call pushes a level for as long as its function runs. An
evaluation made while a call runs belongs to the innermost level (it takes
that level's lock, not the client's, which the paused evaluation holds), and
every expression that is not a ``CallPacket`` goes to the innermost level's
queue: the link is ordered, and the kernel answers nothing else while it
waits for the call. A call answers last-in first-out, as the kernel waits
for them (§8.10): it waits until its level is innermost and its level's
evaluations are done, then sends ``ReturnPacket`` and pops its level in one
step, so that what arrives next goes to the level below.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from wolframclient.language import wl

from .. import wxf
from ..errors import LinkClosed, LinkError, LinkTimeout
from ..install import python_failure
from ..wxf.peek import head_name
from .link import Link

__all__ = ["CallServer", "Level"]

log = logging.getLogger("linkserver.client")


class Level:
    """One level of the call stack: a lock for its evaluations and their packets."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self.lock = lock
        self.queue: asyncio.Queue[bytes | LinkError] = asyncio.Queue()
        self.finished = asyncio.Event()


class CallServer:
    """Runs a client's installed functions when its kernel calls them.

    Args:
        link: the client's link (its receiver is taken by :meth:`start`).
        lock: the client's own lock, level 0's.
    """

    def __init__(self, link: Link, lock: asyncio.Lock) -> None:
        self.link = link
        #: index -> (name, function)
        self.functions: dict[int, tuple[str, Callable[..., Any]]] = {}
        #: name -> index
        self.indices: dict[str, int] = {}
        self.base = Level(lock)
        self._levels = [self.base]
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: LinkError | None = None
        self.started = False

    def start(self) -> None:
        """Take over the link's incoming expressions (loop thread; hold level 0's lock)."""
        if not self.started:
            self.started = True
            self.link.on_end(self._ended)
            self.link.set_receiver(self._receive)

    def level(self) -> Level:
        """The innermost level: where an evaluation started now belongs."""
        return self._levels[-1]

    def _receive(self, payload: bytes) -> None:
        if head_name(payload) == "CallPacket":
            level = Level(asyncio.Lock())
            self._levels.append(level)
            task = asyncio.ensure_future(self._serve(level, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            # To the innermost evaluation reading: a call whose function does not
            # evaluate has none, and an aborted evaluation's answer is below it.
            for level in reversed(self._levels):
                if level.lock.locked():
                    break
            else:
                level = self.base
            level.queue.put_nowait(payload)

    def _ended(self, link: Link) -> None:
        self._error = link.error or LinkClosed("the link is closed")
        for level in self._levels:
            level.queue.put_nowait(self._error)

    async def get(self, level: Level, timeout: float | None) -> Any:
        """Return the next expression for ``level``'s evaluation.

        Raises:
            LinkTimeout: nothing came within ``timeout`` seconds.
            LinkError: the link ended.
        """
        if self._error is not None and level.queue.empty():
            raise self._error
        if timeout is None:
            item = await level.queue.get()
        else:
            try:
                async with asyncio.timeout(timeout):
                    item = await level.queue.get()
            except TimeoutError:
                raise LinkTimeout(
                    f"no expression arrived on {self.link.name} within {timeout:g} s"
                ) from None
        if isinstance(item, LinkError):
            raise item
        return wxf.loads(item)

    async def _serve(self, level: Level, payload: bytes) -> None:
        """Run the function ``CallPacket[index, {args}]`` names; answer in turn."""
        name = "the installed function"
        function: Callable[..., Any] | None = None
        try:
            packet: Any = wxf.loads(payload)
            index, args = packet.args
            name, function = self.functions[index]
        except (KeyError, ValueError, AttributeError, TypeError, LinkError):
            result = python_failure(name, LookupError(
                "this client has no installed function for that CallPacket"))
        if function is not None:
            try:
                result = function(*args)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:  # the user's function failed: a Failure, not a dead client
                result = python_failure(name, exc)
        try:
            data = wxf.dumps(wl.ReturnPacket(result))
        except LinkError as exc:  # no WXF form, or above a limit
            data = wxf.dumps(wl.ReturnPacket(python_failure(name, exc)))
        # Last-in first-out: wait until this call is the innermost one.
        while level in self._levels and self._levels[-1] is not level:
            await self._levels[-1].finished.wait()
        async with level.lock:  # its evaluations are done
            if self._error is None:
                try:
                    self.link.put_payload_nowait(data)
                except LinkError as exc:
                    log.debug("! answer of %s not sent: %s", name, exc)
            if level in self._levels:
                self._levels.remove(level)
            level.finished.set()
