"""The asyncio API of linkserver: links, the link server, and how to make them.

Everything here runs in the caller's event loop. The blocking API in
:mod:`linkserver` wraps these same objects; see docs/design.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..discovery import DEFAULT_RESOLVE_TIMEOUT, ServiceRecord, abrowse, aresolve
from ..errors import LinkError, LinkTimeout
from ..names import DEFAULT_HOST, LinkName, parse_name
from ..protocol import LinkMode, Side
from ..transport.memory import memory_pair
from ..security import SecurityError, check_fingerprint, credentials_for
from ..transport.stream import listen_on, open_to
from .client import Client, EvaluationResult
from .link import DEFAULT_KEEPALIVE, Link, LinkSettings
from .server import LinkServer, ServerStatistics

__all__ = [
    "Client",
    "EvaluationResult",
    "Link",
    "LinkServer",
    "LinkSettings",
    "ServerStatistics",
    "ServiceRecord",
    "browse",
    "connect",
    "link_pair",
    "listen",
    "loopback",
]


async def connect(
    name: Any,
    timeout: float | None = None,
    *,
    mode: LinkMode = LinkMode.LINKSERVER,
    settings: LinkSettings | None = None,
    key: str | bytes | None = None,
    tls: bool | None = None,
    fingerprint: str | None = None,
    cafile: str | None = None,
) -> Link:
    """Connect to a LinkServer or to a listening link (``LinkConnect``).

    Without ``key`` and ``tls``, they come from ``$LINKSERVER_KEY`` and from the
    connection file of a server at that address, if this user runs one
    (README, "Keys and TLS").

    Args:
        name: ``"PORT@HOST"``, ``"unix:/path"``, ``(host, port)`` or
            ``"service:NAME"`` (a server advertised on the local network, found
            within at most 3 s; a TLS fingerprint it advertises is pinned).
        timeout: seconds for connecting and the handshake together; None
            leaves only the handshake limit of ``settings``.
        mode: ``LinkMode.LINKSERVER`` (the default) or ``LinkMode.DIRECT``;
            servers accept both.
        settings: the link's limits.
        key: the server's key (docs/protocol.md §3.5).
        tls: connect over TLS (True), or not (False).
        fingerprint: trust exactly the TLS certificate with this SHA-256
            fingerprint (``"sha256:..."``), as for a self-signed server.
        cafile: trust certificates that chain to these CAs (instead of the system's).

    Raises:
        LinkNameError: ``name`` cannot be parsed.
        ConnectFailed: nothing accepted the connection, TLS failed, or no
            service of that name answered.
        NotALinkServerError: something answered, but not a linkserver.
        AuthenticationError: the key was missing or wrong, or the server
            could not prove it holds it.
        SecurityError: a key too short, or a certificate other than the pinned one.
        LinkTimeout: the handshake did not finish within ``timeout``.
    """
    address = parse_name(name)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    if address.kind == "service":  # find it on the local network (docs/protocol.md §8.11)
        wait = DEFAULT_RESOLVE_TIMEOUT if timeout is None else min(timeout, DEFAULT_RESOLVE_TIMEOUT)
        record = await aresolve(address.service, wait)
        address = record.link_name(address.pool)
        tls, fingerprint = record.tls_settings(tls, fingerprint, cafile)
    credentials = credentials_for(address, key=key, tls=tls, fingerprint=fingerprint, cafile=cafile)
    if settings is None:
        settings = LinkSettings(keepalive_interval=DEFAULT_KEEPALIVE, key=credentials.key)
    elif credentials.key is not None and settings.key is None:
        settings = settings.replace(key=credentials.key)
    transport, protocol = await open_to(
        address,
        lambda: Link(Side.CLIENT, name=str(address), mode=mode, settings=settings),
        timeout=timeout,
        tls=credentials.tls,
    )
    assert isinstance(protocol, Link)
    if credentials.fingerprint is not None:
        try:
            check_fingerprint(
                transport.get_extra_info("ssl_object").getpeercert(binary_form=True),
                credentials.fingerprint,
                str(address),
            )
        except SecurityError:
            transport.close()
            raise
    remaining = None if deadline is None else max(0.0, deadline - loop.time())
    try:
        await protocol.activate(remaining)
    except LinkTimeout as exc:
        protocol.close_nowait()
        if remaining is None:
            raise
        raise LinkTimeout(
            f"{address} accepted the connection but did not finish the handshake "
            f"within {timeout:g} s"
        ) from exc
    except LinkError:
        protocol.close_nowait()
        raise
    return protocol


async def listen(name: Any = 0, *, settings: LinkSettings | None = None) -> Link:
    """Create a one-to-one link that waits for one peer (``LinkCreate``).

    Returns at once with :attr:`Link.name` set (port 0 becomes the real port);
    ``put``/``get``/``activate`` wait until a peer connects. Further
    connections to that address are not accepted.

    Args:
        name: ``"PORT@INTERFACE"``, a port number, or ``"unix:/path"``; port 0 picks one.

    Raises:
        LinkError: the address cannot be listened on.
    """
    address = parse_name(str(name) if isinstance(name, int) else name)
    link = Link(Side.SERVER, name=str(address), settings=settings)
    taken = False

    def factory() -> asyncio.BaseProtocol:
        nonlocal taken
        if taken:
            return _Busy()
        taken = True
        # One peer only: stop listening once it is in (not from inside the
        # factory: asyncio attaches the transport to the server afterwards).
        asyncio.get_running_loop().call_soon(server.close)
        return link

    server = await listen_on(address, factory, backlog=1)
    if address.kind == "tcp":
        port = server.sockets[0].getsockname()[1]
        link.name = str(LinkName("tcp", host=address.host or DEFAULT_HOST, port=port))
    link.on_end(lambda _link: server.close())
    return link


browse = abrowse


class _Busy(asyncio.Protocol):
    """Answers a second connection to a one-to-one link, then hangs up."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"linkserver: this one-to-one link already has its peer.\r\n")  # type: ignore[attr-defined]
        transport.close()


async def link_pair(*, settings: LinkSettings | None = None) -> tuple[Link, Link]:
    """Return two links joined in this process (the WSTP IntraProcess idea).

    What one end puts the other gets, through the full protocol.
    """
    loop = asyncio.get_running_loop()
    a = Link(Side.CLIENT, name="memory", mode=LinkMode.DIRECT, settings=settings)
    b = Link(Side.SERVER, name="memory", settings=settings)
    memory_pair(loop, a, b)
    await a.activate()
    await b.activate()
    return a, b


async def loopback(*, settings: LinkSettings | None = None) -> Link:
    """Return a loopback link: what you put on it you get back (``WSLoopbackOpen``).

    Expressions go through the codec, so the loopback is also a way to copy an
    expression into its Wolfram Language form and back.
    """
    a, b = await link_pair(settings=settings)
    b._reflect = True
    b.set_receiver(b.put_payload_nowait)
    a.name = b.name = "loopback"
    return a

