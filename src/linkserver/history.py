"""One history of inputs for the terminal session and the Jupyter door, in sqlite.

IPython keeps its history in sqlite, one session per start, so that ``%history``
and Jupyter's ``history_request`` (tail, range, search) can be answered and a new
session can search the old ones. linkserver does the same, and keys each line by the
server it was sent to as well, so the Up arrow and Ctrl-R of ``linkserver connect``
offer what was typed to that server first, and the terminal's and the notebooks'
inputs are one history.

The store is safe for several processes at once (sqlite's write-ahead log, one short
transaction per line) and outlives kernels and servers: it belongs to the user.

Where it lives: ``$LINKSERVER_HISTORY`` if set (a file; ``:memory:`` keeps it in
memory), else ``$XDG_STATE_HOME/linkserver/history.sqlite``, else
``~/.local/state/linkserver/history.sqlite``.
"""

from __future__ import annotations

import fnmatch
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["HistoryStore", "default_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session INTEGER PRIMARY KEY AUTOINCREMENT,
    server  TEXT NOT NULL,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lines (
    session INTEGER NOT NULL REFERENCES sessions(session),
    line    INTEGER NOT NULL,
    source  TEXT NOT NULL,
    output  TEXT,
    PRIMARY KEY (session, line)
);
CREATE INDEX IF NOT EXISTS lines_source ON lines(source);
"""

#: A history line: (session, line number, source text).
Entry = tuple[int, int, str]


def default_path() -> str:
    """Where the history is kept when no path is given (see the module's docstring)."""
    named = os.environ.get("LINKSERVER_HISTORY")
    if named:
        return named
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "linkserver", "history.sqlite")


def _glob_to_like(pattern: str) -> str:
    """A glob's literal prefix as a LIKE pattern, to let sqlite narrow a search first."""
    prefix = ""
    for ch in pattern:
        if ch in "*?[":
            break
        prefix += ch
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class HistoryStore:
    """Inputs by session and line, for one user, shared by every process of theirs.

    Args:
        path: the sqlite file (made, with its folder, if missing); None for
            :func:`default_path`; ``":memory:"`` for a history that is not kept.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        name = os.fspath(path) if path is not None else default_path()
        if name != ":memory:":
            Path(name).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = name
        # One connection, used from one thread at a time (the lock); a terminal
        # completes and records from prompt_toolkit's thread as well as the main one.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(name, timeout=5.0, check_same_thread=False,
                                   isolation_level=None)
        if name != ":memory:":
            os.chmod(name, 0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            # No disk flush for each input (0.2-0.4 ms each here): a power cut may lose the
            # last few lines of history, a crash of the program none.
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def new_session(self, server: str) -> int:
        """Begin a session of inputs sent to ``server``; returns its number."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO sessions (server, started) VALUES (?, ?)", (server, time.time()))
            return int(cursor.lastrowid or 0)

    def append(self, session: int, line: int, source: str, output: str | None = None) -> None:
        """Record input ``line`` of ``session`` (a second call for the same line replaces it)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO lines (session, line, source, output) "
                "VALUES (?, ?, ?, ?)", (session, line, source, output))

    def tail(self, n: int, *, server: str | None = None, unique: bool = False) -> list[Entry]:
        """The last ``n`` inputs, oldest first (of ``server`` only, if given).

        ``unique`` keeps only the latest of equal inputs.
        """
        where, args = self._server_clause(server)
        rows = self._rows(
            f"SELECT l.session, l.line, l.source FROM lines l JOIN sessions s USING (session)"
            f"{where} ORDER BY l.session DESC, l.line DESC", args, n, unique)
        return rows[::-1]

    def range(self, session: int, start: int, stop: int | None) -> list[Entry]:
        """Inputs ``start`` <= line < ``stop`` of ``session`` (to its end if ``stop`` is None).

        A session of 0 or less counts back from the newest: 0 is the newest session.
        """
        if session <= 0:
            with self._lock:
                found = self._db.execute(
                    "SELECT session FROM sessions ORDER BY session DESC LIMIT 1 OFFSET ?",
                    (-session,)).fetchone()
            if found is None:
                return []
            session = int(found[0])
        query = "SELECT session, line, source FROM lines WHERE session = ? AND line >= ?"
        args: list[object] = [session, start]
        if stop is not None:
            query += " AND line < ?"
            args.append(stop)
        with self._lock:
            return [(int(a), int(b), str(c)) for a, b, c in
                    self._db.execute(query + " ORDER BY line", args)]

    def search(self, pattern: str = "*", n: int | None = None, *, unique: bool = False,
               server: str | None = None) -> list[Entry]:
        """Inputs matching the glob ``pattern`` (``*`` and ``?``, as IPython's), oldest first.

        ``n`` keeps the newest n matches; ``unique`` the latest of equal inputs.
        """
        where, args = self._server_clause(server)
        where += (" AND" if where else " WHERE") + " l.source LIKE ? ESCAPE '\\'"
        args.append(_glob_to_like(pattern))
        rows = self._rows(
            f"SELECT l.session, l.line, l.source FROM lines l JOIN sessions s USING (session)"
            f"{where} ORDER BY l.session DESC, l.line DESC", args, n, unique,
            keep=lambda source: fnmatch.fnmatchcase(source, pattern))
        return rows[::-1]

    def outputs(self, entries: Iterable[Entry]) -> dict[tuple[int, int], str | None]:
        """The recorded output of each (session, line) of ``entries`` (None where none was)."""
        wanted = {(s, line) for s, line, _ in entries}
        found: dict[tuple[int, int], str | None] = {}
        with self._lock:
            for s, line in wanted:
                row = self._db.execute("SELECT output FROM lines WHERE session = ? AND line = ?",
                                       (s, line)).fetchone()
                found[(s, line)] = None if row is None else row[0]
        return found

    def close(self) -> None:
        """Close the file; the store cannot be used after."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ inside

    @staticmethod
    def _server_clause(server: str | None) -> tuple[str, list[object]]:
        if server is None:
            return "", []
        return " WHERE s.server = ?", [server]

    def _rows(self, query: str, args: list[object], n: int | None, unique: bool,
              keep: Callable[[str], bool] | None = None) -> list[Entry]:
        """Rows newest first, filtered, deduplicated if asked, at most ``n``."""
        out: list[Entry] = []
        seen: set[str] = set()
        with self._lock:
            for session, line, source in self._db.execute(query, args):
                if keep is not None and not keep(source):
                    continue
                if unique:
                    if source in seen:
                        continue
                    seen.add(source)
                out.append((int(session), int(line), str(source)))
                if n is not None and len(out) >= n:
                    break
        return out
