"""The terminal side of ``linkserver connect`` and ``linkserver eval``.

Both speak ``EnterTextPacket`` so the kernel numbers inputs and formats
outputs as a notebook does (``In[1]:=``, ``Out[1]=``). :class:`TextSession`
turns the packets of one input into lines for a terminal; :func:`repl` adds
the prompt loop with history, multi-line input and Ctrl-C to abort; the CLI
uses both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from wolframclient.language import wl
from wolframclient.language.expression import WLFunction, WLSymbol

from .errors import LinkTimeout
from .link import Link

__all__ = ["TextSession", "balanced", "repl"]

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


def packet_head(expr: Any) -> str:
    """The short name of a packet's head (``"ReturnPacket"``), or "" for anything else."""
    if isinstance(expr, WLFunction) and isinstance(expr.head, WLSymbol):
        name: str = expr.head.name
        return name.rpartition("`")[2]
    return ""


def first_arg(expr: Any) -> str:
    """A packet's first argument as text ("" without one)."""
    args = getattr(expr, "args", ())
    return str(args[0]) if args else ""


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
    _in_message: bool = False

    def run(self, text: str, *, on_interrupt: Callable[[], None] | None = None) -> None:
        """Evaluate one input and write its outputs; sets :attr:`prompt` for the next.

        Ctrl-C while waiting sends an abort (the kernel answers ``$Aborted``)
        instead of leaving the session.
        """
        self.link.put(wl.EnterTextPacket(text))
        out_name = ""
        while True:
            try:
                packet = self.link.get(timeout=0.25)
            except LinkTimeout:
                continue
            except KeyboardInterrupt:
                self.link.abort()
                if on_interrupt is not None:
                    on_interrupt()
                continue
            head = packet_head(packet)
            if head == "InputNamePacket":
                self.prompt = first_arg(packet)
                return
            if head == "OutputNamePacket":
                out_name = first_arg(packet)
            elif head in ("ReturnTextPacket", "ReturnPacket", "ReturnExpressionPacket"):
                text_out = first_arg(packet)
                if text_out in ("$Failed", "$Aborted"):
                    self.failed = True
                print(f"{out_name}{text_out}", file=self.out, flush=True)
                out_name = ""
            elif head == "MessagePacket":
                self._in_message = True
                self.failed = True
            elif head == "TextPacket":
                stream = self.err if self._in_message else self.out
                self._in_message = False
                print(first_arg(packet), file=stream, flush=True)
            elif head in ("InputPacket", "InputStringPacket"):
                try:
                    answer = self.ask(first_arg(packet))
                except EOFError:
                    answer = "$Canceled"
                self.link.put(wl.EnterTextPacket(answer))


def _history_file() -> str:
    return os.path.join(os.path.expanduser("~"), ".linkserver_history")


def repl(link: Link, *, out: TextIO | None = None) -> int:
    """Run the notebook-style prompt loop on ``link`` until end of input; return 0.

    ``Quit`` or Ctrl-D leaves; Ctrl-C at the prompt clears the line, during
    an evaluation aborts it. Unfinished brackets or strings continue on the
    next line. History is kept in ``~/.linkserver_history``.
    """
    try:
        import readline
    except ImportError:  # pragma: no cover - not on every platform
        readline = None  # type: ignore[assignment]
    if readline is not None:
        try:
            readline.read_history_file(_history_file())
        except OSError:
            pass
    session = TextSession(link, out=out or sys.stdout)
    session.prompt = _first_prompt(link)
    try:
        while True:
            try:
                text = input(session.prompt)
                while not balanced(text):
                    text += "\n" + input(CONTINUATION)
            except KeyboardInterrupt:
                print(file=session.out)
                continue
            except EOFError:
                print(file=session.out)
                return 0
            if not text.strip():
                continue
            if text.strip() in ("Quit", "Exit", "Quit[]", "Exit[]"):
                return 0
            session.run(text)
    finally:
        if readline is not None:
            try:
                readline.write_history_file(_history_file())
            except OSError:
                pass


def _first_prompt(link: Link) -> str:
    """Ask the kernel for its line number, so the first prompt is right."""
    link.put(wl.EvaluatePacket(WLSymbol("$Line")))
    while True:
        packet = link.get(timeout=30)
        if packet_head(packet) == "ReturnPacket":
            line = packet.args[0] if packet.args else 0
            number = line + 1 if isinstance(line, int) else 1
            return f"In[{number}]:= "
