"""The terminal side of ``linkserver connect``.

It speaks ``EnterTextPacket`` so the kernel numbers inputs and formats
outputs as a notebook does (``In[1]:=``, ``Out[1]=``). :class:`TextSession`
writes the gathered answer of one input (:mod:`linkserver.gather`) as lines
for a terminal; :func:`repl` adds the prompt loop with history, multi-line
input and Ctrl-C to abort. ``linkserver eval`` writes results the way scripts
want them instead (:mod:`linkserver.script`).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from wolframclient.language import wl
from wolframclient.language.expression import WLSymbol

from .errors import LinkTimeout
from .gather import (
    DEFAULT_INPUT,
    BadSyntax,
    Event,
    Gatherer,
    InputRequest,
    Issued,
    Outcome,
    Printed,
    Result,
    read_answer,
)
from .history import HistoryStore
from .link import Link
from .protocol.packets import EnterTextPacket

__all__ = ["AbortOnInterrupt", "TextSession", "balanced", "repl"]

CONTINUATION = "        "  # as wide as "In[1]:= ", so continued lines line up


def balanced(text: str) -> bool:
    """True if every bracket and string in ``text`` is closed (input is complete)."""
    depth = 0
    in_string = False
    escaped = False
    in_comment = 0
    i = 0
    while i < len(text):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif text.startswith("(*", i):
            in_comment += 1
            i += 1
        elif in_comment and text.startswith("*)", i):
            in_comment -= 1
            i += 1
        elif in_comment:
            pass
        elif c == '"':
            in_string = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    return depth <= 0 and not in_string and not in_comment


class AbortOnInterrupt:
    """While an answer is read, Ctrl-C aborts the evaluation instead of ending the program.

    Used as ``with AbortOnInterrupt(link) as ctrl_c: read_answer(..., ctrl_c.get, ...,
    on_input=ctrl_c.asking(ask))``. On the main thread a SIGINT handler notes the
    Ctrl-C wherever it lands -- in the wait, or while an event is written between two
    waits -- and the wait sends the abort within a quarter of a second; the kernel
    then answers ``$Aborted`` and the wait goes on for it. While ``Input[]`` asks at
    the terminal, Ctrl-C is a ``KeyboardInterrupt`` as it always was. Off the main
    thread no handler can be set, and a ``KeyboardInterrupt`` in the wait aborts.
    """

    def __init__(self, link: Link, on_interrupt: Callable[[], None] | None = None) -> None:
        self._link = link
        self._on_interrupt = on_interrupt
        self._pending = False
        self._asking = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> AbortOnInterrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._noted)
            self._installed = True
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _noted(self, _signum: int, _frame: Any) -> None:
        if self._asking:
            raise KeyboardInterrupt
        self._pending = True

    def _abort(self) -> None:
        self._pending = False
        self._link.abort()
        if self._on_interrupt is not None:
            self._on_interrupt()

    def get(self) -> Any:
        """``link.get``, sending an abort for each Ctrl-C noted meanwhile."""
        while True:
            if self._pending:
                self._abort()
            try:
                # A short wait, so that a Ctrl-C is acted on at once.
                return self._link.get(timeout=0.25)
            except LinkTimeout:
                continue
            except KeyboardInterrupt:  # no handler of ours (not the main thread)
                self._abort()

    def asking(self, ask: Callable[[Any], str]) -> Callable[[Any], str]:
        """``ask``, with Ctrl-C a ``KeyboardInterrupt`` while it runs."""

        def asked(event: Any) -> str:
            self._asking = True
            try:
                return ask(event)
            finally:
                self._asking = False

        return asked


@dataclass
class TextSession:
    """Sends inputs as ``EnterTextPacket`` and writes what comes back.

    Args:
        link: a link to a linkserver.
        out: where results and printed text go.
        err: where messages go.
        ask: called with a prompt when the kernel evaluates ``Input[]``.
    """

    link: Link
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    ask: Callable[[str], str] = input
    prompt: str = "In[1]:= "
    failed: bool = False

    def run(self, text: str, *, on_interrupt: Callable[[], None] | None = None) -> Outcome:
        """Evaluate one input and write its outputs; sets :attr:`prompt` for the next.

        Ctrl-C while waiting sends an abort (the kernel answers ``$Aborted``)
        instead of leaving the session.

        Returns:
            The gathered answer.
        """
        request = EnterTextPacket(text)
        self.link.put(request.to_expr())
        with AbortOnInterrupt(self.link, on_interrupt) as ctrl_c:
            outcome = read_answer(Gatherer.for_request(request), ctrl_c.get, self.link.put,
                                  on_event=self._write, on_input=ctrl_c.asking(self._ask))
        if outcome.prompt:
            self.prompt = outcome.prompt
        self.failed = self.failed or outcome.failed
        return outcome

    def _write(self, event: Event) -> None:
        if isinstance(event, Result):
            print(f"{event.name}{event.text}", file=self.out, flush=True)
        elif isinstance(event, Printed):
            print(event.text, file=self.out, flush=True)
        elif isinstance(event, Issued):
            print(event.message.text, file=self.err, flush=True)
        elif isinstance(event, BadSyntax):
            for message in event.messages:
                print(message.text, file=self.err, flush=True)

    def _ask(self, event: InputRequest) -> str:
        try:
            return self.ask(event.prompt)
        except EOFError:
            return DEFAULT_INPUT


def _history_file() -> str:
    return os.path.join(os.path.expanduser("~"), ".linkserver_history")


def _line_number(prompt: str) -> int:
    """n of a prompt ``In[n]:= `` (0 if it is not one)."""
    found = re.match(r"In\[(\d+)\]", prompt)
    return int(found.group(1)) if found else 0


def _full_terminal() -> bool:
    """Whether stdin and stdout are a terminal that can show the line editor.

    ``TERM=dumb`` (Emacs shells, some CI terminals) or ``LINKSERVER_PLAIN_TERMINAL=1``
    keeps the plain prompt.
    """
    return (sys.stdin.isatty() and sys.stdout.isatty()
            and os.environ.get("TERM", "dumb") not in ("", "dumb")
            and os.environ.get("LINKSERVER_PLAIN_TERMINAL", "") in ("", "0"))


def repl(link: Link, *, out: TextIO | None = None, server: str = "",
         pool: str | None = None, kernel: str | None = None, mode: str | None = None) -> int:
    """Run the notebook-style prompt loop on ``link`` until end of input; return 0.

    ``Quit`` or Ctrl-D leaves; Ctrl-C at the prompt clears the line, during
    an evaluation aborts it. Unfinished brackets or strings continue on the
    next line. Every input is kept in the shared history store
    (:mod:`linkserver.history`). On a real terminal the line editor of
    :mod:`linkserver.terminal` reads the input (highlighting, Tab completion from
    the server's names, Ctrl-R, a status line with ``server``, ``pool`` and
    ``kernel``); elsewhere a plain prompt with readline does, and its history is
    also kept in ``~/.linkserver_history``.
    """
    session = TextSession(link, out=out or sys.stdout)
    session.prompt = _first_prompt(link)
    try:
        store: HistoryStore | None = HistoryStore()
    except (OSError, sqlite3.Error) as exc:
        print(f"linkserver: the history cannot be kept ({exc}); going on without it",
              file=sys.stderr)
        store = None
    number = store.new_session(server or link.name) if store is not None else 0
    read: Callable[[str], str]
    status = None
    if _full_terminal() and store is not None:
        from .terminal import StatusLine, prompt_session

        status = StatusLine(server or link.name, pool=pool, kernel=kernel, mode=mode)
        editor = prompt_session(link, store, status, balanced, CONTINUATION)
        read = editor.prompt
    else:
        read = _plain_reader()
    try:
        while True:
            try:
                text = read(session.prompt)
            except KeyboardInterrupt:
                print(file=session.out)
                continue
            except EOFError:
                print(file=session.out)
                return 0
            if not text.strip():
                continue
            if store is not None:
                store.append(number, _line_number(session.prompt), text)
            if text.strip() in ("Quit", "Exit", "Quit[]", "Exit[]"):
                return 0
            started = time.monotonic()
            outcome = session.run(text)
            if status is not None:
                aborted = any(r.text == "$Aborted" for r in outcome.results)
                how = "aborted" if aborted else "messages" if outcome.failed else "done"
                status.last = f"{how} in {time.monotonic() - started:.2f} s"
    finally:
        if store is not None:
            store.close()
        _save_readline()


def _plain_reader() -> Callable[[str], str]:
    """``input`` with readline's history, continuing while brackets are open."""
    try:
        import readline
    except ImportError:  # pragma: no cover - not on every platform
        pass
    else:
        try:
            readline.read_history_file(_history_file())
        except OSError:
            pass

    def read(prompt: str) -> str:
        text = input(prompt)
        while not balanced(text):
            text += "\n" + input(CONTINUATION)
        return text

    return read


def _save_readline() -> None:
    readline = sys.modules.get("readline")
    if readline is not None:
        try:
            readline.write_history_file(_history_file())
        except OSError:
            pass


def _first_prompt(link: Link) -> str:
    """Ask the kernel for its line number, so the first prompt is right."""
    link.put(wl.EvaluatePacket(WLSymbol("$Line")))
    line = read_answer(Gatherer(), lambda: link.get(timeout=30), link.put).result
    return f"In[{line + 1 if isinstance(line, int) else 1}]:= "
