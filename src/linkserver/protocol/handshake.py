"""The opening handshake: magic, version, link mode, link id, key (docs/protocol.md §3).

The client speaks first with a 12-byte *client hello*; the server answers with
a 28-byte *server hello* carrying the link id it assigned. Anything that does
not start with the magic is not a linkserver client: the server answers with
one human-readable line (:data:`NOT_LINKSERVER_LINE`) and closes. A server
that holds a key then challenges the client (§3.5): both prove they know the
key with an HMAC over two fresh nonces and the link id, so the key never
crosses the wire and a recorded handshake cannot be replayed. This module
only encodes and checks these byte strings; :mod:`.connection` drives them.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass

from ..errors import RemoteProtocolError

__all__ = [
    "CLIENT_HAS_KEY",
    "CLIENT_HELLO",
    "MAGIC",
    "NONCE_SIZE",
    "PROOF_SIZE",
    "SERVER_CHALLENGE",
    "NOT_LINKSERVER_LINE",
    "SERVER_HELLO",
    "VERSION",
    "ClientHello",
    "HelloStatus",
    "LinkMode",
    "ServerHello",
    "client_proof",
    "rejection_line",
    "server_proof",
]

#: Eight bytes, PNG-style: the high-bit first byte catches 7-bit channels, CR LF
#: catches newline translation, and no text protocol (HTTP, TLS, SSH, SMTP,
#: WSTP's own TCPIP protocol) starts with 0x89.
MAGIC = b"\x89LNK\r\n\x1a\n"

#: The protocol version this code speaks (major, minor). Peers with the same
#: major version interoperate; the minor version only adds optional features.
VERSION = (1, 1)

CLIENT_HELLO = struct.Struct("<8sBBBB")  # magic, major, minor, mode, flags
SERVER_HELLO = struct.Struct("<8sBBBB16s")  # magic, major, minor, status, flags, link id

#: Client hello flag: the client holds a key and can answer a challenge (§3.5).
CLIENT_HAS_KEY = 0x01
#: Server hello flag: a 32-byte challenge nonce follows the server hello (§3.5).
SERVER_CHALLENGE = 0x01
#: Bytes in each nonce and each proof (HMAC-SHA256).
NONCE_SIZE = 32
PROOF_SIZE = 32
#: The verdict byte after the client's proof: OK (the server's proof follows)
#: or FAILED (a CLOSE frame with code AUTH_FAILED follows).
VERDICT_OK = 0
VERDICT_FAILED = 1

_CLIENT_LABEL = b"linkserver 1 client proof\x00"
_SERVER_LABEL = b"linkserver 1 server proof\x00"

#: The line a server sends to a peer that does not open with the magic.
NOT_LINKSERVER_LINE = (
    b"linkserver: this port speaks the linkserver link protocol 1 "
    b"(docs/protocol.md), not this; connect with linkserver.connect(\"PORT@HOST\").\r\n"
)


def rejection_line(reason: str) -> bytes:
    """Return a one-line rejection for a peer that never finished its hello.

    Args:
        reason: what went wrong, e.g. ``"no handshake within 10 s"``.

    Returns:
        ASCII bytes ending in CR LF.
    """
    text = reason.encode("ascii", "replace").replace(b"\r", b" ").replace(b"\n", b" ")
    return b"linkserver: " + text + b"; this port speaks the linkserver link protocol 1 (docs/protocol.md).\r\n"


class LinkMode(enum.IntEnum):
    """What the client asked to connect to (docs/protocol.md §3.1).

    A server accepts both: the mode is recorded, never a reason to hang or
    refuse (WSTP's ``LinkOptions -> 4`` trap, where a plain client hung).
    """

    DIRECT = 0  #: one-to-one link made by ``listen``/``connect``
    LINKSERVER = 1  #: connecting to a LinkServer (WSTP's MLUseUUIDTCPIPConnection)


class HelloStatus(enum.IntEnum):
    """The server's verdict on a client hello."""

    OK = 0
    UNSUPPORTED_VERSION = 1  #: a CLOSE frame with the reason follows
    AUTH_REQUIRED = 2  #: the server needs a key the client did not offer; a CLOSE follows


def client_proof(key: bytes, server_nonce: bytes, client_nonce: bytes, link_id: bytes) -> bytes:
    """Return the client's proof that it holds ``key`` (docs/protocol.md §3.5).

    ``HMAC-SHA256(key, "linkserver 1 client proof" NUL server_nonce client_nonce link_id)``.
    """
    message = _CLIENT_LABEL + server_nonce + client_nonce + link_id
    return hmac.new(key, message, hashlib.sha256).digest()


def server_proof(key: bytes, server_nonce: bytes, client_nonce: bytes, link_id: bytes) -> bytes:
    """Return the server's proof that it holds ``key``: as :func:`client_proof`, other label."""
    message = _SERVER_LABEL + server_nonce + client_nonce + link_id
    return hmac.new(key, message, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The first 12 bytes a client sends."""

    version: tuple[int, int] = VERSION
    mode: LinkMode = LinkMode.LINKSERVER
    flags: int = 0

    def encode(self) -> bytes:
        """Return the wire form."""
        return CLIENT_HELLO.pack(MAGIC, self.version[0], self.version[1], self.mode, self.flags)

    @classmethod
    def decode(cls, data: bytes) -> ClientHello:
        """Parse exactly :data:`CLIENT_HELLO.size` bytes whose magic is already checked.

        Raises:
            RemoteProtocolError: unknown link mode.
        """
        _magic, major, minor, mode, flags = CLIENT_HELLO.unpack(data)
        try:
            link_mode = LinkMode(mode)
        except ValueError:
            raise RemoteProtocolError(
                f"the client asked for unknown link mode {mode}", code="bad-handshake"
            ) from None
        return cls((major, minor), link_mode, flags)


@dataclass(frozen=True, slots=True)
class ServerHello:
    """The 28 bytes a server answers with."""

    link_id: bytes
    status: HelloStatus = HelloStatus.OK
    version: tuple[int, int] = VERSION
    flags: int = 0

    def encode(self) -> bytes:
        """Return the wire form."""
        return SERVER_HELLO.pack(
            MAGIC, self.version[0], self.version[1], self.status, self.flags, self.link_id
        )

    @classmethod
    def decode(cls, data: bytes) -> ServerHello:
        """Parse exactly :data:`SERVER_HELLO.size` bytes whose magic is already checked.

        Raises:
            RemoteProtocolError: unknown status.
        """
        _magic, major, minor, status, flags, link_id = SERVER_HELLO.unpack(data)
        try:
            hello_status = HelloStatus(status)
        except ValueError:
            raise RemoteProtocolError(
                f"the server answered with unknown handshake status {status}",
                code="bad-handshake",
            ) from None
        return cls(link_id, hello_status, (major, minor), flags)
