"""The full-screen line editor of ``linkserver connect``, on prompt_toolkit.

What a person at a terminal gets, beyond the plain prompt of :mod:`.repl`:

- Wolfram Language highlighted as it is typed (pygments' Mathematica lexer) and the
  bracket that matches the one at the cursor shown;
- Enter runs the input once every bracket and string is closed, and opens a new
  line while one is not;
- Tab completes names from the *server's* ``Names``, so that what another client
  of a shared kernel defined completes too. The question is sent as a preemptive
  request (docs/protocol.md §8.9): a long evaluation of another client does not
  hold it up. Answers are kept a few seconds per prefix;
- the Up arrow and Ctrl-R search the inputs of every session, terminal and
  notebook alike, newest and this server's first (:mod:`linkserver.history`);
- a status line at the bottom with the server, the pool and the kernel, and how
  the last input went.

Ctrl-C at the prompt clears the line; during an evaluation it aborts it (the
kernel keeps its definitions); Ctrl-D leaves.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import has_focus
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import History
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout.processors import HighlightMatchingBracketProcessor
from prompt_toolkit.lexers import PygmentsLexer
from pygments.lexers.algebra import MathematicaLexer  # type: ignore[import-untyped]
from wolframclient.language.expression import WLFunction, WLSymbol

from .errors import LinkError
from .gather import Gatherer, read_answer
from .history import HistoryStore
from .link import Link
from .protocol.packets import PREEMPTIVE

__all__ = ["NameSource", "StoreHistory", "StatusLine", "names_request", "word_before"]

#: How long the names that start with one prefix are trusted (seconds).
NAMES_TTL = 5.0
#: The most names one completion offers.
MAX_COMPLETIONS = 200
#: Seconds a completion waits for the server before it gives up (and offers nothing).
NAMES_TIMEOUT = 3.0

_WORD = re.compile(r"[$A-Za-z][$A-Za-z0-9`]*$")


def word_before(text: str) -> str:
    """The symbol name being typed at the end of ``text`` ("" if none, or inside a string)."""
    if text.count('"') - text.count('\\"') & 1:
        return ""
    found = _WORD.search(text)
    return found.group(0) if found else ""


def names_request(prefix: str) -> Any:
    """The preemptive request for the names that start with ``prefix``."""
    pattern = prefix.replace("*", "").replace("@", "") + "*"
    ask = WLFunction(WLSymbol("System`EvaluatePacket"),
                     WLFunction(WLSymbol("System`Names"), pattern))
    return WLFunction(WLSymbol(PREEMPTIVE), ask)


@dataclass
class NameSource:
    """The server's names by prefix, asked preemptively on the terminal's own link.

    Only called at the prompt, when the link has no request of its own running,
    so the question and its answer are the only traffic on it.
    """

    link: Link
    ttl: float = NAMES_TTL
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, tuple[str, ...]]] = field(default_factory=dict)

    def names(self, prefix: str) -> tuple[str, ...]:
        """The names that start with ``prefix``, sorted; () if the server cannot say."""
        now = self.clock()
        # A fresh answer for a shorter prefix already holds every longer one's names.
        for known in (prefix[:i] for i in range(len(prefix), 0, -1)):
            hit = self._cache.get(known)
            if hit is not None and now - hit[0] < self.ttl:
                return tuple(n for n in hit[1] if n.startswith(prefix))
        try:
            self.link.put(names_request(prefix))
            answer = read_answer(Gatherer(), lambda: self.link.get(timeout=NAMES_TIMEOUT),
                                 self.link.put).result
        except LinkError:
            return ()
        found = tuple(sorted(str(n) for n in answer)) if isinstance(answer, (list, tuple)) else ()
        self._cache[prefix] = (now, found)
        return found


class _NameCompleter(Completer):
    def __init__(self, source: NameSource) -> None:
        self.source = source

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterator[Completion]:
        word = word_before(document.text_before_cursor)
        if not word:
            return
        for name in self.source.names(word)[:MAX_COMPLETIONS]:
            yield Completion(name, start_position=-len(word))


class StoreHistory(History):
    """prompt_toolkit's history read from a :class:`HistoryStore`, this server's inputs last.

    What is typed is recorded by the session loop (with its ``In[n]`` number), not
    here, so that the plain prompt records the same way.
    """

    def __init__(self, store: HistoryStore, server: str, limit: int = 2000) -> None:
        super().__init__()
        self.store, self.server, self.limit = store, server, limit

    def load_history_strings(self) -> Iterable[str]:
        ours = [e[2] for e in self.store.tail(self.limit, server=self.server, unique=True)]
        others = [e[2] for e in self.store.tail(self.limit, unique=True) if e[2] not in ours]
        # Newest first, as prompt_toolkit wants them: this server's before the rest.
        return list(reversed(ours)) + list(reversed(others))

    def store_string(self, string: str) -> None:
        pass


@dataclass
class StatusLine:
    """The bottom line: where the session runs and how its last input went."""

    server: str
    pool: str | None = None
    kernel: str | None = None
    mode: str | None = None
    last: str = "ready"

    def text(self) -> str:
        parts = [f" {self.server}"]
        if self.pool:
            parts.append(f"pool {self.pool}")
        if self.mode:
            parts.append("shared kernel" if self.mode == "shared" else "a kernel of its own")
        if self.kernel:
            parts.append(f"kernel {self.kernel}")
        parts.append(self.last)
        return "  |  ".join(parts) + "   Tab completes, Ctrl-R searches, Ctrl-D leaves"


def _bindings(complete: Callable[[str], bool]) -> KeyBindings:
    keys = KeyBindings()

    # Only in the input itself: in a Ctrl-R search, Enter takes the line found.
    @keys.add("enter", filter=has_focus(DEFAULT_BUFFER))
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    return keys


def prompt_session(link: Link, store: HistoryStore, status: StatusLine,
                   complete: Callable[[str], bool], continuation: str) -> PromptSession[str]:
    """A prompt_toolkit session for one terminal on ``link``."""
    return PromptSession(
        history=StoreHistory(store, status.server),
        lexer=PygmentsLexer(MathematicaLexer),
        completer=_NameCompleter(NameSource(link)),
        complete_while_typing=False,
        multiline=True,
        key_bindings=_bindings(complete),
        prompt_continuation=lambda width, line, soft: continuation,
        input_processors=[HighlightMatchingBracketProcessor(chars="[](){}")],
        bottom_toolbar=status.text,
        enable_history_search=False,
    )
