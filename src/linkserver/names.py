"""Link names: parse and format ``"8000@host"``, ``"unix:/path"``, ``"service:NAME"``.

The forms follow WSTP's (``LinkConnect["8000@127.0.0.1"]``) so people can
paste what they know. A name may end in ``/POOL`` to choose a kernel pool on a
server (``31415@host/big``). This module only parses; connecting is the
transports' business.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LinkNameError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "LinkName", "parse_name"]

#: WSTPServer's port, so a Wolfram user's habit carries over.
DEFAULT_PORT = 31415
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class LinkName:
    """A parsed link name. Exactly one of (host, port), path or service is set."""

    kind: str  #: "tcp", "unix" or "service"
    host: str = ""
    port: int = 0
    path: str = ""
    service: str = ""
    pool: str | None = None

    def __str__(self) -> str:
        suffix = f"/{self.pool}" if self.pool else ""
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "service":
            return f"service:{self.service}{suffix}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.port}@{host}{suffix}"


def _port(text: str, original: object) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise LinkNameError(
            f"{original!r} has no valid port: write PORT@HOST with a port from 0 to 65535, "
            "e.g. '31415@127.0.0.1'"
        )
    return int(text)


def parse_name(name: object, *, default_port: int = DEFAULT_PORT) -> LinkName:
    """Parse a link name.

    Accepted: ``"PORT@HOST"`` (``HOST`` may be ``[::1]`` or ``::1``),
    ``"PORT"`` (on 127.0.0.1), ``"@HOST"`` (the default port), ``(host, port)``,
    ``"unix:/path"``, ``"service:NAME"``; any TCP or service name may end in
    ``/POOL``.

    Raises:
        LinkNameError: the name fits none of these forms.
    """
    if isinstance(name, LinkName):
        return name
    if isinstance(name, tuple):
        if len(name) != 2 or not isinstance(name[0], str) or not isinstance(name[1], int):
            raise LinkNameError(f"a link address tuple is (host, port), not {name!r}")
        return LinkName("tcp", host=name[0] or DEFAULT_HOST, port=_port(str(name[1]), name))
    if not isinstance(name, str):
        raise LinkNameError(
            f"a link name is a string like '31415@127.0.0.1' or a (host, port) tuple, "
            f"not {type(name).__name__}"
        )
    text = name.strip()
    if not text:
        raise LinkNameError("the link name is empty; write PORT@HOST, e.g. '31415@127.0.0.1'")
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise LinkNameError("'unix:' needs a socket path, e.g. 'unix:/tmp/linkserver.sock'")
        return LinkName("unix", path=path)
    pool: str | None = None
    if text.startswith("service:"):
        service = text[8:]
        service, _, pool_text = service.partition("/")
        if not service:
            raise LinkNameError("'service:' needs a service name, e.g. 'service:lab'")
        return LinkName("service", service=service, pool=pool_text or None)
    if "@" not in text:
        port_text, _, pool_text = text.partition("/")
        return LinkName("tcp", host=DEFAULT_HOST, port=_port(port_text, name), pool=pool_text or None)
    port_text, _, host = text.partition("@")
    if host.startswith("["):
        close = host.find("]")
        if close < 0:
            raise LinkNameError(f"{name!r}: an IPv6 address in brackets needs its ']'")
        rest = host[close + 1 :]
        host = host[1:close]
        if rest and not rest.startswith("/"):
            raise LinkNameError(f"{name!r}: unexpected {rest!r} after the address")
        pool = rest[1:] or None
    else:
        host, _, pool_text = host.partition("/")
        pool = pool_text or None
    port = _port(port_text, name) if port_text else default_port
    if not host or any(c.isspace() for c in host):
        raise LinkNameError(f"{name!r} has no valid host after '@'")
    return LinkName("tcp", host=host, port=port, pool=pool)
