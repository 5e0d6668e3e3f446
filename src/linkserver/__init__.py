"""linkserver: many clients, one address, Wolfram Language kernels behind it.

The blocking API lives here; the asyncio API with the same names lives in
:mod:`linkserver.aio`; the expression codec in :mod:`linkserver.wxf`; the
wire protocol without I/O in :mod:`linkserver.protocol` (normative text:
docs/protocol.md).

Example::

    import linkserver
    with linkserver.LinkServer(port=8000) as server:
        link = server.accept()
        link.put(wl.Print("Hello client program."))
        link.close()
"""

from .aio.link import LinkSettings
from .errors import (
    AuthenticationError,
    ConnectFailed,
    LimitError,
    LinkBroken,
    LinkClosed,
    LinkError,
    LinkNameError,
    LinkTimeout,
    LocalProtocolError,
    MapError,
    MapItemError,
    NotALinkServerError,
    ProtocolError,
    RemoteProtocolError,
    TokenError,
    VersionError,
    WXFDecodeError,
    WXFEncodeError,
    WXFError,
)
from .client import Client, EvaluationResult
from .discovery import ServiceRecord, browse
from .link import Link, connect, link_pair, listen, loopback
from .protocol import CloseCode, LinkMode, UrgentMessage
from .server import LinkServer
from .tokens import Token

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Client",
    "CloseCode",
    "ConnectFailed",
    "EvaluationResult",
    "LimitError",
    "Link",
    "LinkBroken",
    "LinkClosed",
    "LinkError",
    "LinkMode",
    "LinkNameError",
    "LinkServer",
    "LinkSettings",
    "LinkTimeout",
    "LocalProtocolError",
    "MapError",
    "MapItemError",
    "NotALinkServerError",
    "ProtocolError",
    "RemoteProtocolError",
    "ServiceRecord",
    "Token",
    "TokenError",
    "UrgentMessage",
    "VersionError",
    "WXFDecodeError",
    "WXFEncodeError",
    "WXFError",
    "__version__",
    "browse",
    "connect",
    "link_pair",
    "listen",
    "loopback",
]
