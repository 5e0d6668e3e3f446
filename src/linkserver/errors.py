"""The exceptions linkserver raises, all rooted at :class:`LinkError`.

Every error carries a short machine-readable ``code`` (stable, documented in
``docs/protocol.md`` where it travels on the wire) and a message that says what
happened and what to do about it.

The tree::

    LinkError
    ├── ProtocolError                 the byte stream broke the protocol
    │   ├── LocalProtocolError        our caller misused the API (e.g. put on a closed link)
    │   ├── RemoteProtocolError       the peer sent something invalid
    │   │   └── NotALinkServerError   the peer does not speak linkserver at all
    │   ├── VersionError              no protocol version in common
    │   └── AuthenticationError       the key was missing, wrong, or the server could not prove it
    ├── LimitError                    a configured bound was broken (frame size, time)
    │   └── LinkTimeout               a deadline passed (also a ``TimeoutError``)
    ├── LinkClosed                    you closed this link, or it was closed normally
    ├── LinkBroken                    the peer or the network broke the link
    │   └── ConnectFailed             could not connect in the first place
    ├── LinkNameError                 a link name could not be parsed (also ``ValueError``)
    ├── WXFError                      expression serialization
    │   ├── WXFEncodeError            a Python value has no WXF form (also ``TypeError``)
    │   └── WXFDecodeError            bytes are not valid WXF (also ``ValueError``)
    └── TokenError                    a WSTP-style get_*/put_* call did not fit the data

Errors are translated at the boundary where they arise and keep their cause
(``raise LinkBroken(...) from exc``): no raw ``OSError`` leaves the library.
Evaluation outcomes (``$Aborted``, messages) are data, never exceptions.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConnectFailed",
    "LimitError",
    "LinkBroken",
    "LinkClosed",
    "LinkError",
    "LinkNameError",
    "LinkTimeout",
    "LocalProtocolError",
    "NotALinkServerError",
    "ProtocolError",
    "RemoteProtocolError",
    "TokenError",
    "VersionError",
    "WXFDecodeError",
    "WXFEncodeError",
    "WXFError",
]


class LinkError(Exception):
    """Root of every linkserver error.

    Attributes:
        code: a short stable identifier such as ``"link-closed"``.
        message: one sentence saying what happened and what to do.
    """

    code: str = "link-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ProtocolError(LinkError):
    """The byte stream broke the linkserver protocol."""

    code = "protocol-error"


class LocalProtocolError(ProtocolError):
    """Our side was asked to do something the protocol does not allow."""

    code = "local-protocol-error"


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""

    code = "remote-protocol-error"


class NotALinkServerError(RemoteProtocolError):
    """The peer answered, but not in the linkserver protocol."""

    code = "not-linkserver"


class VersionError(ProtocolError):
    """The two ends share no protocol version."""

    code = "version-mismatch"


class AuthenticationError(ProtocolError):
    """Key authentication failed: no key, the wrong key, or a server that could not prove it."""

    code = "auth-failed"


class LimitError(LinkError):
    """A configured bound (frame size, handshake or idle time) was broken."""

    code = "limit-exceeded"


class LinkTimeout(LimitError, TimeoutError):
    """A deadline passed before the operation could finish."""

    code = "timeout"


class LinkClosed(LinkError):
    """The link was closed (by you, or normally by the peer)."""

    code = "link-closed"


class LinkBroken(LinkError):
    """The peer or the network broke the link without a normal close."""

    code = "link-broken"


class ConnectFailed(LinkBroken):
    """No link could be established with the named address."""

    code = "connect-failed"


class LinkNameError(LinkError, ValueError):
    """A link name such as ``"8000@host"`` could not be understood."""

    code = "bad-link-name"


class WXFError(LinkError):
    """Base of expression (de)serialization errors."""

    code = "wxf-error"


class WXFEncodeError(WXFError, TypeError):
    """A Python value has no WXF representation."""

    code = "wxf-encode"


class WXFDecodeError(WXFError, ValueError):
    """Bytes are not a valid WXF expression.

    Attributes:
        position: byte offset at which decoding failed, when known.
    """

    code = "wxf-decode"

    def __init__(self, message: str, *, position: int | None = None) -> None:
        if position is not None:
            message = f"{message} (at byte {position})"
        super().__init__(message)
        self.position = position


class TokenError(LinkError):
    """A WSTP-style token call (``get_integer`` and friends) did not match the data."""

    code = "token-mismatch"
