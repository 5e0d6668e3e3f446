"""linkserver.history: the sqlite store of inputs shared by the terminal and Jupyter."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from linkserver.history import HistoryStore, default_path


def _fill(store: HistoryStore) -> tuple[int, int]:
    a = store.new_session("31415@127.0.0.1")
    for i, text in enumerate(["x = 1", "f[x_] := x^2", "f[3]", "x = 1"], start=1):
        store.append(a, i, text)
    b = store.new_session("9000@lab")
    store.append(b, 1, "Integrate[x, x]")
    store.append(b, 2, "f[4]")
    return a, b


def test_tail_range_and_search(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite") as store:
        a, b = _fill(store)
        assert store.tail(2) == [(b, 1, "Integrate[x, x]"), (b, 2, "f[4]")]
        assert store.tail(3, server="31415@127.0.0.1") == [
            (a, 2, "f[x_] := x^2"), (a, 3, "f[3]"), (a, 4, "x = 1")]
        assert [e[2] for e in store.tail(10, unique=True)].count("x = 1") == 1
        assert store.range(a, 2, 4) == [(a, 2, "f[x_] := x^2"), (a, 3, "f[3]")]
        assert store.range(0, 1, None) == [(b, 1, "Integrate[x, x]"), (b, 2, "f[4]")]
        assert store.range(-1, 4, None) == [(a, 4, "x = 1")]
        assert store.range(-5, 1, None) == []
        assert [e[2] for e in store.search("f[*")] == ["f[x_] := x^2", "f[3]", "f[4]"]
        assert [e[2] for e in store.search("*x*", n=2)] == ["x = 1", "Integrate[x, x]"]
        assert [e[2] for e in store.search("x = ?", unique=True)] == ["x = 1"]
        assert store.search("%_") == []  # LIKE's own wildcards are literal here
        assert [e[2] for e in store.search("*", server="9000@lab")] == [
            "Integrate[x, x]", "f[4]"]


def test_a_line_written_twice_is_replaced(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite") as store:
        s = store.new_session("here")
        store.append(s, 1, "1+")
        store.append(s, 1, "1+1", output="2")
        assert store.range(s, 1, None) == [(s, 1, "1+1")]


def test_the_file_is_private_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "h.sqlite"
    with HistoryStore(path) as store:
        s = store.new_session("here")
        store.append(s, 1, "secret = 42")
    assert os.stat(path).st_mode & 0o777 == 0o600
    with HistoryStore(path) as again:
        assert again.tail(1) == [(s, 1, "secret = 42")]


def _writer(path: str, server: str) -> None:
    with HistoryStore(path) as store:
        s = store.new_session(server)
        for i in range(1, 51):
            store.append(s, i, f"{server} {i}")


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "h.sqlite")
    HistoryStore(path).close()
    procs = [multiprocessing.get_context("spawn").Process(target=_writer, args=(path, name))
             for name in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with HistoryStore(path) as store:
        assert len(store.search("a *")) == 50 and len(store.search("b *")) == 50


def test_where_it_lives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LINKSERVER_HISTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_path() == str(tmp_path / "linkserver" / "history.sqlite")
    monkeypatch.setenv("LINKSERVER_HISTORY", ":memory:")
    with HistoryStore() as store:
        assert store.path == ":memory:" and store.tail(5) == []


def test_outputs_are_kept_beside_their_inputs(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite") as store:
        s = store.new_session("here")
        store.append(s, 1, "6*7", output="42")
        store.append(s, 2, "Print[1]")
        assert store.outputs(store.tail(2)) == {(s, 1): "42", (s, 2): None}
