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
    ├── TokenError                    a WSTP-style get_*/put_* call did not fit the data
    ├── SelectError                   a pool or persistent kernel could not be chosen (§8.6)
    ├── MapError                      a map could not run at all (too many kernels, setup failed)
    ├── MapItemError                  one item of a map failed: a result, never raised by map
    ├── KernelError                   a kernel could not be started, or died starting
    │   └── PlacementError            no node of the cluster can hold a kernel as asked
    ├── ConfigError                   a configuration file or option is not valid (also ``ValueError``)
    ├── SecurityError                 a key, certificate or connection file is unusable (also ``ValueError``)
    ├── RecordsError                  a log file or stream log directory cannot be used (also ``ValueError``)
    ├── SandboxError                  this operating system cannot sandbox kernels as asked
    └── SessionError                  an MCP tool was called with a session or argument it cannot use (also ``ValueError``)

Every ``LinkError`` subclass of the package is defined here (tests/unit/test_package.py
walks the package to check it), so that this drawing is the whole tree; the modules
that raise them re-export them where their users look (``linkserver.config.ConfigError``).

Errors are translated at the boundary where they arise and keep their cause
(``raise LinkBroken(...) from exc``): no raw ``OSError`` leaves the library.
Evaluation outcomes (``$Aborted``, messages) are data, never exceptions.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ConnectFailed",
    "KernelError",
    "LimitError",
    "LinkBroken",
    "LinkClosed",
    "LinkError",
    "LinkNameError",
    "LinkTimeout",
    "LocalProtocolError",
    "MapError",
    "MapItemError",
    "NotALinkServerError",
    "PlacementError",
    "ProtocolError",
    "RecordsError",
    "RemoteProtocolError",
    "SandboxError",
    "SecurityError",
    "SelectError",
    "SessionError",
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


class SelectError(LinkError):
    """A ``LinkServerSelect`` packet could not be honoured; ``tag`` names why (§8.6)."""

    code = "select-failed"

    def __init__(self, tag: str, message: str) -> None:
        super().__init__(message)
        self.tag = tag


class MapError(LinkError):
    """``Client.map`` could not run at all: more kernels asked than the pool has, or the
    setup code failed; the message says which and what to ask instead."""

    code = "map-failed"


class MapItemError(LinkError):
    """One item of ``Client.map`` that has no value: map puts it in that item's place.

    It is a result, not raised: the other items' values are in the list beside it.

    Attributes:
        index: the item's position in the list.
        item: the item itself.
        answer: what the kernel answered (an ``EvaluationResult``: its ``$Failed``,
            ``$Aborted`` or ``KernelError[...]`` and its messages); None if no answer
            came (the link broke, the expression could not be built, the map was
            aborted before the item's turn).
    """

    code = "map-item-failed"

    def __init__(self, index: int, item: object, message: str, *, answer: object = None,
                 value: object = None) -> None:
        super().__init__(message)
        self.index = index
        self.item = item
        self.answer = answer
        self._value = value

    @property
    def value(self) -> object:
        """The failure value: the kernel's answer, ``$Aborted`` for an item aborted while
        it ran, else ``$Failed``."""
        from wolframclient.language.expression import WLSymbol

        if self._value is not None:
            return self._value
        if self.answer is None:
            return WLSymbol("$Failed")
        return getattr(self.answer, "result", None)

    def __repr__(self) -> str:
        return f"MapItemError({self.index}, {self.message!r})"


class KernelError(LinkError):
    """A kernel could not be started, or died before it was ready."""

    code = "kernel-error"


class PlacementError(KernelError):
    """No place can hold a kernel as asked: trying again will not help until the
    cluster changes (a node with the resources joins, or the pool asks for less).

    A broker tells the clients waiting for such a pool at once, in this
    error's sentence, rather than letting them wait out their time.
    """

    code = "kernel-unplaceable"


class ConfigError(LinkError, ValueError):
    """A configuration file or option is not valid; the message names the setting."""

    code = "bad-config"


class SecurityError(LinkError, ValueError):
    """A key, certificate or connection file is unusable; the message says how to fix it."""

    code = "security"


class RecordsError(LinkError, ValueError):
    """A log file or stream log directory cannot be used; the message says why."""

    code = "bad-log-setting"


class SandboxError(LinkError):
    """The operating system cannot confine kernels as ``--sandbox`` asks; the message says why."""

    code = "no-sandbox"


class SessionError(LinkError, ValueError):
    """An MCP tool was called with a session name or argument the door cannot use."""

    code = "bad-session"
