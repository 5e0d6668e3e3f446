"""Transports: the byte streams links run over (docs/design.md, "Transports").

TCP (IPv4 and IPv6) and Unix domain sockets are asyncio's own transports;
this package adds what asyncio lacks -- an in-process pair
(:mod:`.memory`) -- and the one place that opens and listens on named
addresses, turning ``OSError`` into :class:`~linkserver.errors.ConnectFailed`
(:mod:`.stream`). Every transport hands bytes to the same protocol glue
(:class:`linkserver.aio.link.Link`), so links behave the same on all of them.
"""
