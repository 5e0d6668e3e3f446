"""The side port: a small HTTP server for operators beside the link port.

``linkserver serve --http PORT`` answers three GETs (docs/configuration.md):

* ``/healthz`` -- 200 ``ok`` when every pool has a kernel ready or may start one
  within its limits, else 503 with one line saying which pool and why. No key,
  no details, so an orchestrator's probe can call it.
* ``/metrics`` -- Prometheus text format (:mod:`linkserver.metrics`).
* ``/status`` -- what ``linkserver status`` shows, as JSON.

The last two want the admin key as a bearer token (``Authorization: Bearer
KEY``); on a server without keys, only a client on this machine may read them,
the rule of the link port's status (docs/protocol.md §8.8).

It reads one request per connection and closes it: no keep-alive, no bodies.
Everything a client controls is bounded -- the request head's size, the time
it may take to send it and to read the answer, and how many connections are
served at once -- so a bad or slow client costs a socket for a few seconds.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from typing import TYPE_CHECKING

from . import records
from .errors import LinkError
from .metrics import CONTENT_TYPE, Metrics
from .status import status_data

if TYPE_CHECKING:
    from .service import KernelService

__all__ = ["SidePort"]

log = logging.getLogger("linkserver.server")

MAX_HEAD = 8192  #: bytes of request line and headers at most
TIMEOUT = 5.0  #: seconds a client may take to send its request, and to read the answer
MAX_CLIENTS = 32  #: connections served at once; more get 503 at once
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def _local(peer: object) -> bool:
    if not isinstance(peer, tuple) or not peer:
        return True  # a Unix socket
    try:
        return ipaddress.ip_address(str(peer[0])).is_loopback
    except ValueError:
        return False


class SidePort:
    """Serve ``/healthz``, ``/metrics`` and ``/status`` for ``service`` on ``port``.

    Args:
        service: a started :class:`~linkserver.service.KernelService`.
        port: TCP port (0 picks a free one; read :attr:`port`).
        interface: address to bind, as for the link port ("" for every interface).
    """

    def __init__(self, service: KernelService, port: int = 0, interface: str = "127.0.0.1") -> None:
        self._service = service
        self._port = port
        self._interface = interface
        self._admin = service.admin_keys()
        self._keyed = bool(service.keys)
        self.metrics = Metrics(service)
        self._server: asyncio.Server | None = None
        self._clients = 0

    @property
    def port(self) -> int:
        """The TCP port listened on."""
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` for a client on this machine."""
        host = self._interface or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def start(self) -> SidePort:
        """Listen.

        Raises:
            LinkError: the address cannot be listened on.
        """
        try:
            self._server = await asyncio.start_server(
                self._serve, self._interface or None, self._port, limit=MAX_HEAD)
        except OSError as exc:
            self.metrics.close()
            raise LinkError(f"cannot listen for HTTP on {self._interface or '*'}:{self._port}: "
                            f"{exc.strerror or exc}; choose another --http port") from None
        return self

    async def aclose(self) -> None:
        """Stop listening and stop counting."""
        self.metrics.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients += 1
        try:
            if self._clients > MAX_CLIENTS:
                status, kind, body = 503, "text/plain", b"too many HTTP clients; try again\n"
            else:
                status, kind, body = await self._answer(reader, writer)
            head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                    "Cache-Control: no-store\r\n")
            if status == 401:
                head += 'WWW-Authenticate: Bearer realm="linkserver"\r\n'
            writer.write(head.encode("ascii") + b"\r\n" + body)
            await asyncio.wait_for(writer.drain(), TIMEOUT)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass  # the client left or would not read: drop it
        finally:
            self._clients -= 1
            writer.close()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[int, str, bytes]:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        except asyncio.TimeoutError:
            return 408, "text/plain", b"the request took too long to arrive\n"
        except asyncio.LimitOverrunError:
            return 431, "text/plain", b"the request head is too large\n"
        except asyncio.IncompleteReadError:
            return 400, "text/plain", b"the request ended early\n"
        try:
            lines = raw.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
        except ValueError:
            return 400, "text/plain", b"not an HTTP request\n"
        if not version.startswith("HTTP/1."):
            return 400, "text/plain", b"speak HTTP/1.x\n"
        if method != "GET":
            return 405, "text/plain", b"only GET is served\n"
        path = target.partition("?")[0]
        if path == "/healthz":
            return self._health()
        if path not in ("/metrics", "/status"):
            return 404, "text/plain", b"the side port serves /healthz, /metrics and /status\n"
        refusal = self._refusal(headers.get("authorization", ""), writer.get_extra_info("peername"))
        if refusal is not None:
            records.event("access-denied", link="-", peer=str(writer.get_extra_info("peername")),
                          what=path.lstrip("/"))
            return refusal
        if path == "/metrics":
            return 200, CONTENT_TYPE, self.metrics.render()
        data = status_data(self._service.statistics())
        data["healthy"] = self._service_health() is None
        return 200, "application/json", (json.dumps(data, default=str) + "\n").encode()

    def _refusal(self, authorization: str, peer: object) -> tuple[int, str, bytes] | None:
        if not self._keyed:
            if _local(peer):
                return None
            return 403, "text/plain", b"without keys, only a client on this machine may read this\n"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return 401, "text/plain", b"send the admin key: Authorization: Bearer KEY\n"
        given = token.strip().encode("utf-8", "replace")
        if any(hmac.compare_digest(given, key) for key in self._admin):
            return None
        return 403, "text/plain", b"that is not the admin key\n"

    def _service_health(self) -> str | None:
        for pool in self._service.pools.values():
            reason = pool.health()
            if reason is not None:
                return reason
        return None

    def _health(self) -> tuple[int, str, bytes]:
        reason = self._service_health()
        if reason is None:
            return 200, "text/plain", b"ok\n"
        return 503, "text/plain", (reason + "\n").encode()
