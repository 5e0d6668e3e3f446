"""Discovery on the local network: advertise a server, list servers, resolve ``service:NAME``.

The WSTP ``WSRegisterLinkService`` / ``WSResolveLinkService`` idea, done with
DNS-SD over multicast DNS (the ``zeroconf`` package). A server started with
``linkserver serve --advertise NAME`` registers the instance
``NAME._linkserver._tcp.local.`` whose TXT record says how to talk to it
(docs/protocol.md §8.11): protocol version, mode, kernel, pools, whether a key
is needed, whether TLS is used and the certificate's fingerprint. The key
itself is never advertised.

* :class:`Advertiser` registers in the background (probing the name takes
  about a second and must not hold the server's start up) and withdraws the
  record, with goodbye packets, when the server stops.
* :func:`browse` / :func:`abrowse` list the servers that answer within a time.
* :func:`resolve` / :func:`aresolve` find one by name; ``connect("service:NAME")``
  uses :func:`aresolve`.

``zeroconf`` is imported only when discovery is used: it costs a tenth of a
second that plain clients need not pay. ``$LINKSERVER_MDNS_INTERFACES`` (a
comma-separated list of IPv4 addresses, or ``all``) chooses where multicast
DNS is spoken; the tests set it to ``127.0.0.1``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import records
from .errors import ConnectFailed, LinkNameError
from .names import LinkName

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncZeroconf

__all__ = [
    "DEFAULT_BROWSE_TIMEOUT",
    "DEFAULT_RESOLVE_TIMEOUT",
    "SERVICE_TYPE",
    "Advertiser",
    "ServiceRecord",
    "abrowse",
    "aresolve",
    "browse",
    "check_service_name",
    "format_services",
    "properties_for",
    "resolve",
]

#: The DNS-SD service type of linkservers (docs/protocol.md §8.11).
SERVICE_TYPE = "_linkserver._tcp.local."
#: Version of the TXT record's layout (its ``txtvers`` key).
TXT_VERSION = "1"
DEFAULT_BROWSE_TIMEOUT = 3.0
DEFAULT_RESOLVE_TIMEOUT = 3.0
#: How long a server waits for its goodbye packets at exit.
WITHDRAW_TIMEOUT = 2.0
_CONFLICT_CHECK = 1.5  # seconds to listen for another server of the same name first
_MAX_LABEL = 63  # bytes of a DNS label: the longest instance name
_MAX_TXT_VALUE = 200  # bytes of one TXT value we write (a TXT string holds 255 with its key)


# ------------------------------------------------------------------ names and records


def check_service_name(name: str) -> str:
    """Return ``name`` if it can be advertised, else raise.

    Raises:
        LinkNameError: empty, longer than 63 UTF-8 bytes, or containing ``/``,
            ``.`` or control characters.
    """
    text = name.strip()
    if not text:
        raise LinkNameError("a service name is needed, e.g. --advertise lab")
    if len(text.encode("utf-8")) > _MAX_LABEL:
        raise LinkNameError(
            f"the service name {text!r} is longer than {_MAX_LABEL} bytes; choose a shorter one"
        )
    if any(c in "/." or not c.isprintable() for c in text):
        raise LinkNameError(
            f"the service name {text!r} may not contain '/', '.' or control characters "
            "('/' separates a pool in service:NAME/POOL); choose another"
        )
    return text


def _instance(name: str) -> str:
    return f"{name}.{SERVICE_TYPE}"


@dataclass(frozen=True)
class ServiceRecord:
    """One linkserver found on the network.

    Attributes:
        name: the advertised name (``service:NAME`` connects to it).
        host: the address to connect to (IPv4 preferred).
        port: the TCP port.
        addresses: every address the server advertised.
        protocol: the link protocol version it speaks, e.g. ``"1.1"``.
        version: the linkserver version, e.g. ``"0.1.0"``.
        mode: ``"shared"``, ``"pool"`` (of the default pool) or ``"demo"``.
        kernel: the default pool's kernel backend (``"mathics"``, ``"wolfram"``),
            ``"none"`` for a demo server.
        pools: the server's pools, the default first.
        auth: ``"key"`` if clients must prove a key, else ``"none"``.
        tls: whether the server speaks TLS.
        fingerprint: the TLS certificate's ``"sha256:..."`` fingerprint, if TLS.
        hostname: the multicast DNS host name in the record.
    """

    name: str
    host: str
    port: int
    addresses: tuple[str, ...] = ()
    protocol: str = ""
    version: str = ""
    mode: str = ""
    kernel: str = ""
    pools: tuple[str, ...] = ()
    auth: str = ""
    tls: bool = False
    fingerprint: str | None = None
    hostname: str = ""

    @property
    def address(self) -> str:
        """The link name to connect to, ``"PORT@HOST"``."""
        return str(self.link_name())

    def link_name(self, pool: str | None = None) -> LinkName:
        """The :class:`~linkserver.names.LinkName` of this server (with ``pool``)."""
        return LinkName("tcp", host=self.host, port=self.port, pool=pool)

    def tls_settings(
        self, tls: bool | None, fingerprint: str | None, cafile: str | None
    ) -> tuple[bool, str | None]:
        """What a client connects with: what it was told, else what the record says.

        A TLS server's advertised fingerprint is pinned unless the caller gave a
        fingerprint or a CA file of its own.
        """
        if tls is None:
            tls = self.tls or bool(fingerprint or cafile)
        if tls and fingerprint is None and cafile is None:
            fingerprint = self.fingerprint
        return tls, fingerprint


def properties_for(
    *,
    protocol: str,
    version: str,
    mode: str,
    kernel: str,
    pools: Sequence[str],
    key: bool,
    fingerprint: str | None,
    tls: bool,
) -> dict[str, str]:
    """The TXT record of a server (docs/protocol.md §8.11). The key is never in it."""
    pool_text = ""
    for pool in pools:  # as many whole names as fit in one TXT string
        candidate = f"{pool_text},{pool}" if pool_text else pool
        if len(candidate.encode("utf-8")) > _MAX_TXT_VALUE:
            break
        pool_text = candidate
    txt = {
        "txtvers": TXT_VERSION,
        "protocol": protocol,
        "version": version,
        "mode": mode,
        "kernel": kernel,
        "pools": pool_text,
        "auth": "key" if key else "none",
        "tls": "1" if tls else "0",
    }
    if tls and fingerprint:
        txt["fingerprint"] = fingerprint
    return txt


def _record(name: str, port: int, addresses: Sequence[str], hostname: str,
            txt: Mapping[str, str | None]) -> ServiceRecord:
    def get(key: str) -> str:
        return (txt.get(key) or "").strip()

    ordered = sorted(addresses, key=lambda a: (":" in a, a))  # IPv4 first
    host = ordered[0] if ordered else hostname.rstrip(".")
    tls = get("tls") == "1"
    return ServiceRecord(
        name=name, host=host, port=port, addresses=tuple(ordered), protocol=get("protocol"),
        version=get("version"), mode=get("mode"), kernel=get("kernel"),
        pools=tuple(p for p in get("pools").split(",") if p), auth=get("auth") or "none",
        tls=tls, fingerprint=(get("fingerprint") or None) if tls else None, hostname=hostname,
    )


# ------------------------------------------------------------------ where to speak mDNS


def _interfaces_from_env() -> list[str] | None:
    text = os.environ.get("LINKSERVER_MDNS_INTERFACES", "").strip()
    if not text or text.lower() == "all":
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _zeroconf(interfaces: Sequence[str] | None) -> AsyncZeroconf:
    """A zeroconf instance on ``interfaces`` (None: every IPv4 interface), IPv4 multicast.

    Raises:
        ConnectFailed: the multicast sockets could not be opened.
    """
    from zeroconf import InterfaceChoice, IPVersion
    from zeroconf.asyncio import AsyncZeroconf

    choice: Any = list(interfaces) if interfaces else InterfaceChoice.All
    try:
        return AsyncZeroconf(interfaces=choice, ip_version=IPVersion.V4Only)
    except OSError as exc:
        raise ConnectFailed(
            f"cannot speak multicast DNS on {', '.join(interfaces or ['any interface'])}: "
            f"{exc.strerror or exc}; check LINKSERVER_MDNS_INTERFACES and the firewall (UDP 5353)"
        ) from exc


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _machine_addresses() -> list[str]:
    """This machine's addresses a peer can reach: no loopback, no link-local IPv6."""
    import ifaddr

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            address = ipaddress.ip_address(text)
            if address.is_loopback or address.is_link_local:
                continue
            if text not in found:
                found.append(text)
    return found


def _placement(interface: str) -> tuple[list[str], list[str] | None]:
    """For a server bound to ``interface``: the addresses to advertise and where to speak mDNS."""
    host = interface.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        addresses = _machine_addresses() or ["127.0.0.1"]
        where: list[str] | None = None
    else:
        if _is_ip(host):
            addresses = [host]
        else:
            try:
                infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError:
                infos = []
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos)) or ["127.0.0.1"]
        loopback = all(ipaddress.ip_address(a).is_loopback for a in addresses)
        ipv4 = [a for a in addresses if ":" not in a]
        where = ["127.0.0.1"] if loopback else (ipv4 or None)
    return addresses, _interfaces_from_env() or where


def _host_label(port: int) -> str:
    base = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())
    return f"{base.strip('-')[:40] or 'host'}-linkserver-{port}.local."


# ------------------------------------------------------------------ advertising


class Advertiser:
    """Advertises one server on the local network while it runs.

    ``start()`` returns at once; registration (probing that the name is free,
    then announcing) runs in the background. ``aclose()`` withdraws the
    record with goodbye packets.

    Args:
        name: the service name; checked at once.
        interface: the interface the server listens on; decides the advertised
            addresses and where multicast DNS is spoken (a server on loopback
            is advertised on loopback only).

    Raises:
        LinkNameError: a name that cannot be advertised.
    """

    def __init__(self, name: str, interface: str) -> None:
        self.name = check_service_name(name)
        self.interface = interface
        self._task: asyncio.Task[None] | None = None
        self._zc: AsyncZeroconf | None = None
        self._done: asyncio.Event | None = None
        self.failure: str | None = None

    def start(self, port: int, properties: Mapping[str, str]) -> None:
        """Begin registering ``NAME._linkserver._tcp.local.`` for ``port`` (in the running loop)."""
        self._done = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._register(port, dict(properties)), name=f"advertise {self.name}"
        )

    async def wait_registered(self, timeout: float | None = None) -> bool:
        """Wait until registration ended; True if the server is advertised."""
        if self._done is None:
            return False
        async with asyncio.timeout(timeout):
            await self._done.wait()
        return self.failure is None

    async def _register(self, port: int, properties: dict[str, str]) -> None:
        from zeroconf import BadTypeInNameException, NonUniqueNameException
        from zeroconf.asyncio import AsyncServiceInfo

        assert self._done is not None
        try:
            addresses, where = _placement(self.interface)
            self._zc = _zeroconf(where)
            # zeroconf's own probes ask for unicast answers, which another program on this
            # host may receive instead of us; a multicast question first is heard for sure.
            if await _lookup(self._zc, self.name, _CONFLICT_CHECK) is not None:
                raise NonUniqueNameException(self.name)
            info = AsyncServiceInfo(
                SERVICE_TYPE, _instance(self.name), port=port, properties=properties,
                server=_host_label(port), parsed_addresses=addresses,
            )
            announced = await self._zc.async_register_service(info)
            await announced
        except NonUniqueNameException:
            self._fail(f"another server on this network already advertises {self.name!r}, so "
                       "this one is not advertised; choose another --advertise name")
        except (BadTypeInNameException, ConnectFailed, OSError, ValueError) as exc:
            self._fail(f"could not advertise {self.name!r} on the local network: {exc}")
        else:
            records.event("service-advertised", name=self.name, type=SERVICE_TYPE, port=port,
                          addresses=",".join(addresses))
        finally:
            self._done.set()

    def _fail(self, why: str) -> None:
        self.failure = why
        records.event("service-advertise-failed", name=self.name, reason=why)

    async def aclose(self, timeout: float = WITHDRAW_TIMEOUT) -> None:
        """Withdraw the record (goodbye packets) and stop speaking multicast DNS."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        zc, self._zc = self._zc, None
        if zc is None:
            return
        advertised = bool(zc.zeroconf.registry.async_get_service_infos())
        try:
            async with asyncio.timeout(timeout):
                await zc.async_close()  # unregisters (goodbyes) first
        except TimeoutError:
            pass
        if advertised:
            records.event("service-withdrawn", name=self.name, type=SERVICE_TYPE)


# ------------------------------------------------------------------ finding servers


async def _lookup(zc: AsyncZeroconf, name: str, timeout: float) -> ServiceRecord | None:
    from zeroconf import DNSQuestionType
    from zeroconf.asyncio import AsyncServiceInfo

    info = AsyncServiceInfo(SERVICE_TYPE, _instance(name))
    # QM: answers come by multicast, so several programs on one host all hear them.
    found = await info.async_request(zc.zeroconf, max(1, int(timeout * 1000)),
                                     question_type=DNSQuestionType.QM)
    if not found or info.port is None:
        return None
    return _record(name, info.port, info.parsed_scoped_addresses(), info.server or "",
                   info.decoded_properties)


async def aresolve(
    name: str, timeout: float = DEFAULT_RESOLVE_TIMEOUT, *, interfaces: Sequence[str] | None = None
) -> ServiceRecord:
    """Find the server advertised as ``name`` (``WSResolveLinkService``).

    Args:
        name: the service name (what follows ``service:``).
        timeout: seconds to wait for an answer.
        interfaces: IPv4 addresses of the interfaces to ask on; default
            ``$LINKSERVER_MDNS_INTERFACES``, else every interface.

    Raises:
        ConnectFailed: nothing answered for ``name`` within ``timeout``.
    """
    zc = _zeroconf(interfaces or _interfaces_from_env())
    try:
        record = await _lookup(zc, name, timeout)
    finally:
        await zc.async_close()
    if record is None:
        raise ConnectFailed(
            f"no linkserver service named {name!r} answered within {timeout:g} s on this "
            "network; `linkserver services` lists those that do"
        )
    return record


async def abrowse(
    timeout: float = DEFAULT_BROWSE_TIMEOUT, *, interfaces: Sequence[str] | None = None
) -> list[ServiceRecord]:
    """List the linkservers that answer within ``timeout`` seconds, sorted by name.

    Args:
        timeout: seconds to listen for servers.
        interfaces: as for :func:`aresolve`.

    Raises:
        ConnectFailed: multicast DNS could not be used on this machine.
    """
    from zeroconf import DNSQuestionType, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    zc = _zeroconf(interfaces or _interfaces_from_env())
    lookups: dict[str, asyncio.Task[ServiceRecord | None]] = {}

    def changed(zeroconf: Any, service_type: str, name: str,
                state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            task = lookups.pop(name, None)
            if task is not None:
                task.cancel()
            return
        label = name[: -len(SERVICE_TYPE) - 1] if name.endswith("." + SERVICE_TYPE) else name
        if name not in lookups:
            remaining = max(0.5, deadline - loop.time())
            lookups[name] = loop.create_task(_lookup(zc, label, remaining))

    browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[changed],
                                  question_type=DNSQuestionType.QM)
    try:
        await asyncio.sleep(timeout)
        pending = [task for task in lookups.values() if not task.done()]
        if pending:  # found at the last moment: a short grace to read its record
            await asyncio.wait(pending, timeout=0.5)
        found = []
        for task in lookups.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                record = task.result()
                if record is not None:
                    found.append(record)
            else:
                task.cancel()
    finally:
        await browser.async_cancel()
        await zc.async_close()
    return sorted(found, key=lambda r: r.name.lower())


def browse(
    timeout: float = DEFAULT_BROWSE_TIMEOUT, *, interfaces: Sequence[str] | None = None
) -> list[ServiceRecord]:
    """List the linkservers on the local network (blocking twin of :func:`abrowse`)."""
    from .portal import get_portal

    return get_portal().call(abrowse(timeout, interfaces=interfaces))


def resolve(
    name: str, timeout: float = DEFAULT_RESOLVE_TIMEOUT, *, interfaces: Sequence[str] | None = None
) -> ServiceRecord:
    """Find the server advertised as ``name`` (blocking twin of :func:`aresolve`)."""
    from .portal import get_portal

    return get_portal().call(aresolve(name, timeout, interfaces=interfaces))


def format_services(found: Sequence[ServiceRecord]) -> str:
    """The table ``linkserver services`` prints."""
    rows = [("NAME", "ADDRESS", "MODE", "KERNEL", "AUTH", "TLS", "POOLS")]
    for r in found:
        rows.append((r.name, r.address, r.mode or "?", r.kernel or "?", r.auth,
                     "yes" if r.tls else "no", ",".join(r.pools) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )
