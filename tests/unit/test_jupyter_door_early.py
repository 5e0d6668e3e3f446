"""linkserver-jupyter sends a cell before its own announcements (Door.send_early).

A fake client stands in for the server: its link keeps what is sent and
answers a cell with the packets a kernel sends for ``1+1``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest
from wolframclient.language import wl

pytest.importorskip("zmq")

from linkserver import wxf  # noqa: E402
from linkserver.door.jupyter_kernel import CellEnd, Door, Result  # noqa: E402


class _Link:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.answers: deque[Any] = deque()
        self.is_open = True

    def _request(self, expr: Any) -> None:
        self.sent.append(expr)
        self.answers.extend([wl.OutputNamePacket("Out[1]= "), wl.ReturnTextPacket("2"),
                             wl.InputNamePacket("In[2]:= ")])

    def put_payload_nowait(self, payload: bytes) -> None:
        self._request(wxf.loads(payload))

    async def put(self, expr: Any) -> None:
        self._request(wxf.loads(wxf.dumps(expr)))

    async def get(self, timeout: float | None = None) -> Any:
        return self.answers.popleft()


class _Client:
    def __init__(self) -> None:
        self.link = _Link()


def _run(door: Door, code: str) -> list[Any]:
    events: list[Any] = []
    asyncio.run(door.run_cell(code, events.append))
    return events


def test_a_cell_sent_early_is_read_and_not_sent_again() -> None:
    door = Door("31415@127.0.0.1")
    client = _Client()
    door.client = client  # type: ignore[assignment]
    door.send_early("1+1")
    assert client.link.sent == [wl.EnterTextPacket("1+1")]
    events = _run(door, "1+1")
    assert client.link.sent == [wl.EnterTextPacket("1+1")]  # once
    assert isinstance(events[0], Result) and events[0].text == "2"
    assert isinstance(events[-1], CellEnd)
    # The next cell, not sent early, is sent by run_cell.
    _run(door, "1+2")
    assert client.link.sent[-1] == wl.EnterTextPacket("1+2")


def test_nothing_is_sent_early_while_the_link_is_busy_closed_or_absent() -> None:
    door = Door("31415@127.0.0.1")
    door.send_early("1+1")  # no client yet: the first cell connects in run_cell
    client = _Client()
    door.client = client  # type: ignore[assignment]
    door._running = True  # a cell's request is on the link
    door.send_early("1+1")
    door._running = False
    client.link.is_open = False
    door.send_early("1+1")
    assert client.link.sent == []
    client.link.is_open = True
    door.send_early("1+1")
    door.send_early("2+2")  # one cell at a time
    assert client.link.sent == [wl.EnterTextPacket("1+1")]


def test_a_different_cell_than_the_one_sent_early_is_sent_itself() -> None:
    door = Door("31415@127.0.0.1")
    client = _Client()
    door.client = client  # type: ignore[assignment]
    door.send_early("1+1")
    client.link.answers.clear()  # as if that answer had been read elsewhere
    _run(door, "3+3")
    assert client.link.sent == [wl.EnterTextPacket("1+1"), wl.EnterTextPacket("3+3")]
