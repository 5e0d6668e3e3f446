"""The asyncio LinkServer: one address, any number of links (WSTP's link server).

A :class:`LinkServer` listens on one TCP port (or Unix socket), runs the
server side of the handshake for every connection, and hands each link that
completes it to the program in one of three ways, as WSTP's Interface 4 meant
to: :meth:`LinkServer.accept` (``WSWaitForNewLinkFromLinkServer``),
:meth:`LinkServer.links` (``GetLinks``) or :meth:`LinkServer.on_link`
(``WSRegisterCallbackFunctionWithLinkServer``). Strangers -- port scanners,
HTTP clients, silent sockets -- never reach the program: the protocol core
answers them with one line and the connection is closed (docs/protocol.md §3.3).

What happens on a link after it is handed over is the program's business;
closing the server stops new links and closes those never handed over, but
leaves handed-over links to their owners.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import os
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import records
from ..errors import AuthenticationError, LinkClosed, LinkError
from ..names import DEFAULT_HOST, LinkName
from ..protocol import CloseCode, Side
from ..transport.stream import listen_on
from .link import Link, LinkSettings, Waiter, _wake, _wake_first, await_waiter

__all__ = ["LinkServer", "ServerStatistics"]

log = logging.getLogger("linkserver.server")

#: Open links a server accepts at most unless told otherwise.
DEFAULT_MAX_LINKS = 4096

LinkCallback = Callable[[Link], None] | Callable[[Link], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """A snapshot of a server's counters (``LinkServer.statistics()``)."""

    connections: int  #: connections accepted by the socket so far
    links_opened: int  #: connections that completed the handshake
    rejected: int  #: connections that failed before the handshake completed
    handshaking: int  #: connections now in the handshake
    waiting: int  #: links that completed the handshake but were not yet handed over


class LinkServer:
    """Listen on one address and accept any number of links.

    Args:
        port: TCP port; 0 picks a free one (read :attr:`port` afterwards).
        interface: address to bind; ``""`` or ``None`` means every interface.
        path: listen on this Unix socket path instead of TCP.
        settings: limits for every link (handshake and idle time, frame size)
            and the keys clients must prove (``LinkSettings(keys=...)``).
        backlog: the listen backlog.
        tls: speak TLS with this server context (see :mod:`linkserver.security`).
        max_links: open links at most; one more is closed right after its
            handshake with CLOSE ``TOO_MANY_LINKS`` and a reason saying so.
        log_streams: write a stream log of every link to a new file in this
            directory (see :meth:`log_stream`).
    """

    def __init__(
        self,
        port: int = 0,
        interface: str | None = DEFAULT_HOST,
        *,
        path: str | None = None,
        settings: LinkSettings | None = None,
        backlog: int = 1024,
        log_streams: str | os.PathLike[str] | None = None,
        tls: ssl.SSLContext | None = None,
        max_links: int | None = DEFAULT_MAX_LINKS,
    ) -> None:
        self.interface = interface or ""
        self.tls = tls
        self.max_links = max_links
        self._address = (
            LinkName("unix", path=path) if path else LinkName("tcp", host=self.interface, port=port)
        )
        self.port = port
        self._settings = settings or LinkSettings()
        self._backlog = backlog
        self._server: asyncio.Server | None = None
        self._handshaking: set[Link] = set()
        self._ready: deque[Link] = deque()
        self._accept_waiters: deque[Waiter] = deque()
        self._callback: LinkCallback | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._connections = 0
        self._opened = 0
        self._rejected = 0
        self._live: dict[bytes, Link] = {}  # open links by id, for log_stream()
        self.log_streams = records.check_stream_dir(log_streams) if log_streams else None

    @property
    def name(self) -> str:
        """The server's link name, ``"PORT@INTERFACE"`` (or ``"unix:/path"``)."""
        if self._address.kind == "unix":
            return str(self._address)
        host = self.interface or "0.0.0.0"
        return str(LinkName("tcp", host=host, port=self.port))

    async def start(self) -> LinkServer:
        """Start listening.

        Raises:
            LinkError: the address cannot be listened on; the message says why.
        """
        if self._server is not None:
            return self
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._server = await listen_on(
            self._address,
            self._new_connection,
            backlog=self._backlog,
            tls=self.tls,
            tls_handshake_timeout=self._settings.handshake_timeout or 10.0,
        )
        if self._address.kind == "tcp":
            self.port = self._server.sockets[0].getsockname()[1]
        records.event("server-started", server=self.name)
        return self

    def _new_connection(self) -> Link:
        self._connections += 1
        link = Link(
            Side.SERVER,
            name=self.name,
            settings=self._settings,
            on_open=self._link_opened,
            on_end=self._link_ended,
        )
        self._handshaking.add(link)
        return link

    def _link_opened(self, link: Link) -> None:
        self._handshaking.discard(link)
        if self.max_links is not None and len(self._live) >= self.max_links:
            # Only links that finished the handshake count: scanners and silent
            # sockets cannot use up the room real clients need.
            self._rejected += 1
            records.event("link-rejected", peer=link.peer, reason="too many links")
            link.close_nowait(
                CloseCode.TOO_MANY_LINKS,
                f"the server already has its maximum of {self.max_links} links; try again later",
            )
            return
        self._opened += 1
        self._live[link.link_id] = link
        records.event("link-opened", link=records.link_ref(link), peer=link.peer,
                      mode=link.mode.name.lower(), server=self.name, user=link.role)
        if self.log_streams is not None:
            try:
                link.log_stream(self.log_streams)
            except LinkError as exc:  # a full disk must not keep clients out
                records.event("stream-log-failed", link=records.link_ref(link), reason=exc)
        if self._closed:
            link.close_nowait(CloseCode.GOING_AWAY, "the server is shutting down")
            return
        callback = self._callback
        if callback is not None:
            self._dispatch(callback, link)
            return
        if not _wake_first(self._accept_waiters, link):
            self._ready.append(link)

    def _link_ended(self, link: Link) -> None:
        if link in self._handshaking:
            self._handshaking.discard(link)
            self._rejected += 1
            # Hostile or confused peers are routine on an open port: INFO, not ERROR.
            if isinstance(link.error, AuthenticationError):
                records.event("auth-failed", peer=link.peer, reason=link.error)
            else:
                records.event("link-rejected", peer=link.peer, reason=link.error)
        elif self._live.pop(link.link_id, None) is not None:
            error = link.error
            records.event("link-closed", link=records.link_ref(link), peer=link.peer,
                          code=error.code if error else None, reason=error)

    def _dispatch(self, callback: LinkCallback, link: Link) -> None:
        try:
            result = callback(link)
        except Exception:
            log.exception("! on_link callback failed for %s", link.peer)
            link.close_nowait(CloseCode.INTERNAL_ERROR, "the server's link handler failed")
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done(link))

    def _task_done(self, link: Link) -> Callable[[asyncio.Future[Any]], None]:
        def done(task: asyncio.Future[Any]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("! on_link handler failed for %s", link.peer, exc_info=task.exception())
                link.close_nowait(CloseCode.INTERNAL_ERROR, "the server's link handler failed")

        return done

    def register_accept_waiter(self, waiter: Waiter) -> None:
        """Give ``waiter`` the next new link (loop thread only)."""
        if self._ready:
            _wake(waiter, self._ready.popleft())
        elif self._closed:
            _wake(waiter, error=LinkClosed("the link server is closed", code="server-closed"))
        else:
            self._accept_waiters.append(waiter)

    async def accept(self, timeout: float | None = None) -> Link:
        """Wait for the next link (``WSWaitForNewLinkFromLinkServer``).

        Raises:
            LinkTimeout: no link arrived within ``timeout`` seconds.
            LinkClosed: the server was closed.
        """
        waiter: asyncio.Future[Link] = asyncio.get_running_loop().create_future()
        self.register_accept_waiter(waiter)
        return await await_waiter(waiter, timeout, f"link arrived at {self.name}")

    def links(self) -> list[Link]:
        """Return the links that arrived since the last call, without waiting (``GetLinks``)."""
        ready = list(self._ready)
        self._ready.clear()
        return ready

    def on_link(self, callback: LinkCallback | None) -> None:
        """Call ``callback(link)`` for each new link (a coroutine function runs as a task).

        Links already waiting are handed to the callback at once. ``None``
        goes back to :meth:`accept`/:meth:`links`.
        """
        self._callback = callback
        if callback is not None:
            while self._ready:
                self._dispatch(callback, self._ready.popleft())

    def log_stream(
        self, link_id: bytes | str, path: str | os.PathLike[str] | None
    ) -> Path | None:
        """Switch the stream log of one open link on (to ``path``) or off (``None``).

        ``link_id`` is the link's id as bytes (``link.link_id``, the same at
        both ends) or as hex, at least its first 8 digits, as the logs show
        it. A directory for ``path`` gets a new file named by the link id
        and the time. See :meth:`Link.log_stream`. Loop thread only.

        Returns:
            The file written to, or None.

        Raises:
            KeyError: no open link of this server has that id.
            RecordsError: the file cannot be opened.
        """
        if isinstance(link_id, bytes):
            link = self._live.get(link_id)
        else:
            prefix = link_id.lower()
            found = [k for k in self._live if len(prefix) >= 8 and k.hex().startswith(prefix)]
            link = self._live[found[0]] if len(found) == 1 else None
        if link is None:
            raise KeyError(f"no open link of {self.name} has the id {link_id!r}")
        return link.log_stream(path)

    def statistics(self) -> ServerStatistics:
        """Return a snapshot of the server's counters."""
        return ServerStatistics(
            connections=self._connections,
            links_opened=self._opened,
            rejected=self._rejected,
            handshaking=len(self._handshaking),
            waiting=len(self._ready),
        )

    def close_nowait(self) -> None:
        """Stop listening and close links never handed over (loop thread only)."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for link in list(self._handshaking) + list(self._ready):
            link.close_nowait(CloseCode.GOING_AWAY, "the server is shutting down")
        self._ready.clear()
        error = LinkClosed("the link server is closed", code="server-closed")
        while self._accept_waiters:
            _wake(self._accept_waiters.popleft(), error=error)
        records.event("server-stopped", server=self.name)

    async def aclose(self) -> None:
        """Stop listening; links already handed over stay open."""
        # Not Server.wait_closed(): since Python 3.12 it also waits for every
        # handed-over link to close, which is the program's business, not ours.
        self.close_nowait()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closed

    async def __aenter__(self) -> LinkServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<linkserver.aio.LinkServer {self.name!r}{' closed' if self._closed else ''}>"

