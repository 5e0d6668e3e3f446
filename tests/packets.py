"""Reading a kernel's answer off a link, for tests: every packet up to a given head."""

from __future__ import annotations

from typing import Any

from wolframclient.language.expression import WLFunction, WLSymbol

import linkserver


def collect(link: linkserver.Link, until: str, timeout: float) -> list[Any]:
    """Get packets from ``link`` up to and including the first whose head is ``until``."""
    packets = []
    while True:
        packet = link.get(timeout)
        packets.append(packet)
        if isinstance(packet, WLFunction) and packet.head == WLSymbol(until):
            return packets
