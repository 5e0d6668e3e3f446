"""The blocking LinkServer: a façade over :class:`linkserver.aio.LinkServer`.

The server itself runs on the background loop (:mod:`.portal`); this class
only hands its links to threads. ``on_link`` callbacks run each in a thread
of their own, so a callback may block on its link for as long as it likes
(WSTP calls its link-server callback on a thread of the server, too).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import aio
from .aio.link import LinkSettings
from .aio.server import DEFAULT_MAX_LINKS, ServerStatistics
from .errors import LinkTimeout
from .link import Link
from .names import DEFAULT_HOST
from .portal import get_portal
from .protocol import CloseCode

__all__ = ["LinkServer"]

log = logging.getLogger("linkserver.server")


class LinkServer:
    """Listen on one address and accept any number of links.

    Args:
        port: TCP port; 0 picks a free one (read :attr:`port` afterwards).
        interface: the address to bind; ``""`` or ``None`` means every interface.
        path: listen on this Unix socket path instead of TCP.
        settings: limits for every link (handshake and idle time, frame size).
        backlog: the listen backlog.
        log_streams: write a stream log of every link to a new file in this directory.

    Raises:
        LinkError: the address cannot be listened on; the message says why.
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
        self._portal = get_portal()
        self._aio = aio.LinkServer(port, interface, path=path, settings=settings, backlog=backlog,
                                   log_streams=log_streams, tls=tls, max_links=max_links)
        self._portal.call(self._aio.start())
        self._threads: set[threading.Thread] = set()

    @property
    def port(self) -> int:
        """The TCP port listened on (the real one when 0 was asked for)."""
        return self._aio.port

    @property
    def interface(self) -> str:
        """The interface address bound (``""`` for every interface)."""
        return self._aio.interface

    @property
    def name(self) -> str:
        """``"PORT@INTERFACE"``: what clients pass to :func:`linkserver.connect`."""
        return self._aio.name

    @property
    def aio(self) -> aio.LinkServer:
        """The asyncio server underneath."""
        return self._aio

    def accept(self, timeout: float | None = None) -> Link:
        """Wait for the next link (``WSWaitForNewLinkFromLinkServer``).

        Raises:
            LinkTimeout: no link arrived within ``timeout`` seconds.
            LinkClosed: the server was closed.
        """
        waiter: concurrent.futures.Future[aio.Link] = concurrent.futures.Future()
        self._portal.call_soon(self._aio.register_accept_waiter, waiter)
        try:
            link = waiter.result(timeout)
        except concurrent.futures.TimeoutError:
            if waiter.cancel():
                raise LinkTimeout(f"no link arrived at {self.name} within {timeout:g} s") from None
            link = waiter.result()
        return Link(link, self._portal)

    def links(self) -> list[Link]:
        """Return the links that arrived since the last call, without waiting (``GetLinks``)."""
        return [Link(link, self._portal) for link in self._portal.run_sync(self._aio.links)]

    def on_link(self, callback: Callable[[Link], Any] | None) -> None:
        """Call ``callback(link)`` in a new thread for each new link.

        If the callback raises, the error is logged and that link is closed.
        ``None`` goes back to :meth:`accept`/:meth:`links`.
        """
        if callback is None:
            self._portal.run_sync(self._aio.on_link, None)
            return

        def start(link: aio.Link) -> None:
            thread = threading.Thread(
                target=self._run_callback, args=(callback, Link(link, self._portal)),
                name=f"linkserver-link-{link.link_id.hex()[:8]}", daemon=True,
            )
            self._threads.add(thread)
            thread.start()

        self._portal.run_sync(self._aio.on_link, start)

    def _run_callback(self, callback: Callable[[Link], Any], link: Link) -> None:
        try:
            callback(link)
        except Exception:  # documented boundary: a user's handler failed
            log.exception("! on_link callback failed for %s", link.peer)
            self._portal.call_soon(
                link.aio.close_nowait, CloseCode.INTERNAL_ERROR, "the server's link handler failed"
            )
        finally:
            self._threads.discard(threading.current_thread())

    def statistics(self) -> ServerStatistics:
        """Return a snapshot of the server's counters."""
        return self._portal.run_sync(self._aio.statistics)

    def log_stream(self, link_id: bytes | str, path: str | os.PathLike[str] | None) -> Path | None:
        """Switch one open link's stream log on (to ``path``) or off (``None``).

        See :meth:`linkserver.aio.LinkServer.log_stream`.
        """
        result: Path | None = self._portal.run_sync(self._aio.log_stream, link_id, path)
        return result

    def close(self) -> None:
        """Stop listening and close links never handed over (``WSShutdownLinkServer``).

        Links already handed over stay open; close them yourself.
        """
        self._portal.call(self._aio.aclose())

    def __enter__(self) -> LinkServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._aio).replace("linkserver.aio.LinkServer", "linkserver.LinkServer")
