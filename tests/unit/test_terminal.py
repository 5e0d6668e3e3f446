"""linkserver.terminal's parts without a terminal: words, requests, caching, history order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wolframclient.language.expression import WLFunction, WLSymbol

from linkserver.history import HistoryStore
from linkserver.protocol.packets import PREEMPTIVE
from linkserver.terminal import NameSource, StatusLine, StoreHistory, names_request, word_before


def test_the_word_at_the_cursor() -> None:
    assert word_before("Integr") == "Integr"
    assert word_before("f[x] + $Pre") == "$Pre"
    assert word_before("Developer`ToPack") == "Developer`ToPack"
    assert word_before("1 + 2") == ""
    assert word_before('Print["Integr') == ""  # inside a string: nothing to complete
    assert word_before('Print["a"]; Integr') == "Integr"


def test_names_are_asked_preemptively() -> None:
    request = names_request("Integr")
    assert request.head == WLSymbol(PREEMPTIVE)
    (inner,) = request.args
    assert inner.head == WLSymbol("System`EvaluatePacket")
    assert inner.args[0] == WLFunction(WLSymbol("System`Names"), "Integr*")
    assert names_request("a*b@").args[0].args[0].args == ("ab*",)  # no patterns of its own


class _Link:
    """Answers each Names request with the names it holds, counting the questions."""

    def __init__(self, names: list[str]) -> None:
        self.names, self.asked, self._next = names, 0, None

    def put(self, expr: Any) -> None:
        self.asked += 1
        pattern = expr.args[0].args[0].args[0].rstrip("*")
        self._next = WLFunction(WLSymbol("ReturnPacket"),
                                tuple(n for n in self.names if n.startswith(pattern)))

    def get(self, timeout: float | None = None) -> Any:
        return self._next


def test_answers_are_kept_a_while_and_narrowed_locally() -> None:
    link = _Link(["Integrate", "IntegerQ", "Interpolation", "Integer"])
    now = [0.0]
    source = NameSource(link, ttl=5.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert source.names("Inte") == ("Integer", "IntegerQ", "Integrate", "Interpolation")
    asked = link.asked
    assert asked == 1
    assert source.names("Integr") == ("Integrate",) and link.asked == asked  # from the cache
    now[0] = 10.0
    assert source.names("Integr") == ("Integrate",) and link.asked == asked + 1  # stale: asked


def test_history_offers_this_servers_inputs_first(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite") as store:
        here, there = store.new_session("here"), store.new_session("there")
        store.append(here, 1, "a = 1")
        store.append(there, 1, "b = 2")
        store.append(here, 2, "a + 1")
        assert list(StoreHistory(store, "here").load_history_strings()) == [
            "a + 1", "a = 1", "b = 2"]


def test_the_status_line_says_where_and_how() -> None:
    line = StatusLine("31415@host", pool="big", kernel="abc", mode="pool", last="done in 0.01 s")
    text = line.text()
    for part in ("31415@host", "pool big", "a kernel of its own", "kernel abc", "done in 0.01 s"):
        assert part in text
    assert "shared kernel" in StatusLine("x", mode="shared").text()
