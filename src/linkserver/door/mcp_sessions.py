"""The MCP door's sessions: named kernels of a linkserver, and a time limit that always answers.

An agent names a *session*; the door maps each name to one link of its own to
the server, asking for a persistent kernel (docs/protocol.md §8.6) so that a
link that breaks can take the same kernel back by its id. On a server whose
pool keeps no kernels (``--keepalive 0``, the default) the link's kernel lives
as long as the link; on a shared server every session is the one shared kernel.
Nothing here knows MCP: :mod:`linkserver.door.mcp` translates :class:`Answer`
into tool results. Answers are gathered by :meth:`linkserver.aio.Client.evaluate_wrap`.

Theory of operation of :meth:`Sessions.evaluate` (the promise: no call waits
longer than its timeout plus :attr:`Limits.grace`):

1. The session's lock is taken within the timeout, else the answer is ``busy``
   (another call of the same session is running; nothing is aborted for it).
2. The request runs until the deadline. Past it the door sends ABORT (§8.2):
   an evaluation that checks for aborts answers ``$Aborted`` and the session
   keeps its definitions (status ``timeout``).
3. If no answer comes within the grace period (Mathics3 built-ins that run
   inside sympy or one long integer operation never look), the door closes the
   link and discards the kernel -- a persistent one is taken back without
   ``persistent`` and let go, which the server answers by stopping it -- and
   says the session was restarted and its definitions lost (status
   ``restarted``). The next call of that session gets a fresh kernel.
4. A kernel that dies mid-evaluation is answered by the server with
   ``LinkServer::kerneldied``; that is reported the same way (``restarted``).

Shared mode cannot end the kernel (it is everyone's): a shared evaluation
that ignores its abort is left running, and the answer says so.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from wolframclient.language import wl
from wolframclient.language.expression import WLSymbol

from ..aio.client import Client as AsyncClient
from ..aio.client import EvaluationResult
from ..errors import LinkError, SessionError

__all__ = ["Answer", "Limits", "Message", "SessionError", "Sessions", "cut"]

DEFAULT_SESSION = "default"
#: characters of a graphics result's InputForm kept (its image and SVG travel beside it)
GRAPHICS_TEXT_CHARS = 500
#: session names an agent may choose: short, printable, no spaces
_SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Limits:
    """The door's bounds; each is a ``linkserver mcp`` option.

    Attributes:
        default_timeout: seconds an evaluation may run when the agent names no timeout.
        max_timeout: the most an agent may ask for (larger requests are cut to it).
        grace: seconds an aborted evaluation has to stop before its kernel is ended.
        max_result_chars: characters of a result's InputForm text kept.
        max_print_chars: characters of printed text and of message text kept, each.
        max_image_pixels: the most pixels (width x height) of an image sent.
        connect_timeout: seconds to reach the server.
    """

    default_timeout: float = 60.0
    max_timeout: float = 600.0
    grace: float = 5.0
    max_result_chars: int = 20_000
    max_print_chars: int = 20_000
    max_image_pixels: int = 1_000_000
    connect_timeout: float = 10.0

    def timeout_for(self, asked: float | None) -> float:
        """The time limit of one call: the agent's, else the default, at most the maximum."""
        if asked is None:
            return min(self.default_timeout, self.max_timeout)
        if not asked > 0:
            raise SessionError("timeout must be a positive number of seconds")
        return min(float(asked), self.max_timeout)


@dataclass(frozen=True, slots=True)
class Message:
    """One message the evaluation issued, e.g. ``Power::infy`` and its text."""

    name: str
    text: str


@dataclass
class Answer:
    """What one ``evaluate`` call produced, before translation into MCP content.

    ``status`` is one of ``ok`` (a result, no message), ``messages`` (a result
    and messages), ``aborted`` (the ``abort`` tool stopped it), ``timeout``
    (aborted at the time limit; definitions kept), ``restarted`` (the kernel
    was ended or died: definitions lost), ``busy`` (the session was running
    another call) or ``failed`` (no answer: the server could not be reached or
    the link broke).
    """

    session: str
    status: str
    kernel: str | None = None
    mode: str | None = None
    result: str | None = None
    result_chars: int = 0  # of the whole InputForm text, before any cut
    printed: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    svg: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The answer as JSON values (MCP's structured content)."""
        return {
            "session": self.session, "status": self.status, "kernel": self.kernel,
            "mode": self.mode, "result": self.result, "result_chars": self.result_chars,
            "printed": self.printed,
            "messages": [{"name": m.name, "text": m.text} for m in self.messages],
            "graphics": self.svg is not None, "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }


def cut(text: str, limit: int, what: str = "characters") -> tuple[str, str | None]:
    """``text`` cut to ``limit`` characters, and a note saying how much was cut (or None)."""
    if len(text) <= limit:
        return text, None
    return text[:limit], f"{len(text) - limit:,} of {len(text):,} {what} were cut"


_RESULT = WLSymbol("LinkServerMCP`r")  # its own context: the session's Global` stays the agent's


def request_for(code: str) -> Any:
    """The expression evaluated for ``code``: its InputForm text and, for a ``Graphics``
    result, its SVG -- ``{text, svg-or-Null}``, or ``$Aborted``.

    Built as expressions, not text, so the kernel parses only the agent's code. The
    text is cut here, not in the kernel: in Mathics3 the test and ``StringTake``
    cost about a millisecond a call, and a result too large to travel takes the
    kernel longer to print than any time limit allows.
    """
    r = _RESULT
    return wl.With(
        wl.List(wl.Set(r, wl.ToExpression(code))),
        wl.List(wl.ToString(r, wl.InputForm),
                wl.If(wl.SameQ(wl.Head(r), wl.Graphics), wl.Quiet(wl.ExportString(r, "SVG")),
                      wl.Null)))


@dataclass
class Session:
    """One named session: its link (while open) and the kernel it holds."""

    name: str
    client: AsyncClient | None = None
    kernel: str | None = None
    mode: str | None = None
    persistent: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: bool = False
    ended: bool = False  # ended or restarted by another call while one ran
    evaluations: int = 0
    created: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        """A line of the ``sessions`` tool's answer."""
        return {"session": self.name, "kernel": self.kernel, "mode": self.mode,
                "connected": self.client is not None, "running": self.running,
                "persistent": self.persistent, "evaluations": self.evaluations,
                "age_seconds": round(time.time() - self.created, 1)}


def check_session_name(name: str | None) -> str:
    """The session name to use (the default for None).

    Raises:
        SessionError: a name that is not 1-64 letters, digits, ``_``, ``.`` or ``-``.
    """
    if name is None or name == "":
        return DEFAULT_SESSION
    if not isinstance(name, str) or not _SESSION_NAME.fullmatch(name):
        raise SessionError("a session name is 1-64 letters, digits, '_', '.' or '-', "
                           "starting with a letter or digit")
    return name


_SHARED_NOTE = ("this server runs in shared mode: every session is its one shared kernel, "
                "so sessions see each other's definitions")


class Sessions:
    """The door's table of sessions; every coroutine runs on one event loop.

    Args:
        server: the server's address, ``PORT@HOST[/POOL]`` (None: the newest local one).
        limits: the door's bounds.
        key: the server's key (None: ``$LINKSERVER_KEY`` or the connection file).
    """

    def __init__(self, server: str | None, *, limits: Limits | None = None,
                 key: str | bytes | None = None) -> None:
        self.server = server
        self.limits = limits or Limits()
        self._key = key
        self._sessions: dict[str, Session] = {}
        self._persist = True  # False once the server said its pool keeps no kernels
        self._releasing: set[asyncio.Task[None]] = set()  # stuck kernels being discarded

    # ------------------------------------------------------------ connecting

    def _client(self, **options: Any) -> AsyncClient:
        return AsyncClient(self.server, timeout=self.limits.connect_timeout, key=self._key,
                           **options)

    async def _connect(self, session: Session, notes: list[str]) -> AsyncClient:
        """The session's open client: its kernel taken back, or a new kernel.

        Raises:
            LinkError: the server could not be reached or refused every selection.
        """
        if session.client is not None:
            return session.client
        client: AsyncClient | None = None
        if session.mode == "shared":
            pass  # the shared kernel outlives every link: nothing to take back or lose
        elif session.kernel is not None and session.persistent:
            try:
                client = await self._client(kernel=session.kernel, persistent=True).start()
            except LinkError as exc:
                if exc.code != "select-failed":
                    raise
                notes.append(f"the session's kernel {session.kernel} was gone (ended or "
                             "expired): this is a fresh kernel and earlier definitions are lost")
        elif session.kernel is not None:
            notes.append("the link to the session's kernel had broken and this server keeps "
                         "no kernels for later: this is a fresh kernel and earlier definitions "
                         "are lost")
        if client is None:
            client = await self._fresh(session)
        session.client = client
        session.kernel = client.kernel_id
        session.mode = client.mode or session.mode
        return client

    async def _fresh(self, session: Session) -> AsyncClient:
        """A link with a new kernel, persistent where the server keeps kernels."""
        if self._persist:
            try:
                client = await self._client(persistent=True).start()
                session.persistent = client.mode != "shared"
                return client
            except LinkError as exc:
                if exc.code != "select-failed" or "nopersist" not in str(exc):
                    raise
                self._persist = False  # the pool's keep-alive is 0: links hold kernels
        client = await self._client().start()
        session.persistent = False
        if client.mode is None:
            client.mode = "pool"  # only pools refuse persistence
        return client

    async def _let_go(self, session: Session) -> None:
        """Close the session's link and discard its kernel (never the shared one)."""
        await self._release(*self._detach(session))

    @staticmethod
    def _detach(session: Session) -> tuple[AsyncClient | None, str | None]:
        """Take the link and the kernel to discard from ``session`` (which keeps neither)."""
        client, session.client = session.client, None
        parked = session.kernel if session.persistent and session.mode != "shared" else None
        return client, parked

    async def _release(self, client: AsyncClient | None, parked: str | None) -> None:
        if client is not None:
            await _quietly(client.aclose())
        if parked is not None:
            # The kernel is parked for the keep-alive time: take it back without
            # "persistent", and the server discards it when this link closes (§8.6).
            try:
                taker = await self._client(kernel=parked).start()
            except LinkError:
                return  # already gone (expired, or died)
            await _quietly(taker.aclose())

    # -------------------------------------------------------------- evaluate

    async def evaluate(self, code: str, session: str | None = None,
                       timeout: float | None = None) -> Answer:
        """Evaluate ``code`` in a session within ``timeout`` (plus the grace period).

        Raises:
            SessionError: a bad session name or timeout.
        """
        if not isinstance(code, str) or not code.strip():
            raise SessionError("code must be Wolfram Language input, e.g. \"1+1\"")
        name = check_session_name(session)
        limit = self.limits.timeout_for(timeout)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + limit
        answer = Answer(name, "failed")
        while True:  # a session ended or restarted while this call waited is a new one
            state = self._sessions.get(name)
            if state is None:
                state = self._sessions[name] = Session(name)
            try:
                await asyncio.wait_for(state.lock.acquire(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                answer.status = "busy"
                answer.notes.append(f"session {name!r} was still running an earlier "
                                    f"evaluation after {limit:g} s; call abort on it, or use "
                                    "another session")
                return self._finish(answer, state, started)
            if not state.ended:
                break
            state.lock.release()
        try:
            await self._run(code, state, answer, deadline)
        finally:
            state.running = False
            state.lock.release()
        return self._finish(answer, state, started)

    async def _run(self, code: str, state: Session, answer: Answer, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            client = await _within(self._connect(state, answer.notes), deadline - loop.time())
        except (LinkError, OSError, TimeoutError) as exc:
            answer.notes.append(f"no linkserver could be reached at {self.server or 'the default address'}: "
                                f"{exc}; start one with 'linkserver serve' and call again")
            return
        state.running = True
        state.evaluations += 1
        task = asyncio.ensure_future(
            client.evaluate_wrap(request_for(code)))
        timed_out = False
        try:
            if not await _finished(task, deadline - loop.time()):
                timed_out = True
                await _quietly(client.abort())
                if not await _finished(task, self.limits.grace):
                    task.cancel()
                    await asyncio.wait({task})
                    await self._stop_stuck(state, answer, deadline)
                    return
            result = task.result()
        except LinkError as exc:
            await self._broken(state, answer, exc)
            return
        self._fill(answer, result, timed_out, deadline)

    async def _stop_stuck(self, state: Session, answer: Answer, deadline: float) -> None:
        """The kernel ignored the abort: end it (pool) or leave it (shared)."""
        late = f"the evaluation did not stop within {self.limits.grace:g} s of its abort"
        if state.mode == "shared":
            await self._let_go(state)
            answer.status = "failed"
            answer.notes.append(f"{late}; the shared kernel cannot be ended by one session, so "
                                "it may still be busy; this session's link was closed")
            return
        # Answer now; the kernel is discarded meanwhile (taking it back costs a connection).
        task = asyncio.ensure_future(self._release(*self._detach(state)))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)
        state.kernel = None
        state.persistent = False
        answer.status = "restarted"
        answer.notes.append(f"{late}: the kernel was ended and the session restarted; its "
                            "definitions are lost (the next call gets a fresh kernel)")

    async def _broken(self, state: Session, answer: Answer, exc: LinkError) -> None:
        """The link failed mid-evaluation: drop it; a persistent kernel may be taken back."""
        client, state.client = state.client, None
        if client is not None:
            await _quietly(client.aclose())
        if state.ended:
            answer.notes.append("the session was ended or restarted by another call")
            return
        again = ("the next call takes the session's kernel back by its id"
                 if state.persistent else "the next call starts a fresh kernel")
        answer.notes.append(f"the link to the server failed ({exc}); {again}")

    def _fill(self, answer: Answer, result: EvaluationResult, timed_out: bool,
              deadline: float) -> None:
        limits = self.limits
        for name, text in zip(result.messages_name, result.messages):
            answer.messages.append(Message(name, text))
        printed = "\n".join(result.printed)
        kept, note = cut(printed, limits.max_print_chars, "characters of printed text")
        answer.printed = kept.split("\n") if result.printed else []
        if note:
            answer.notes.append(note)
        total = sum(len(m.text) for m in answer.messages)
        if total > limits.max_print_chars:
            room = limits.max_print_chars
            for index, message in enumerate(answer.messages):
                text, _ = cut(message.text, max(room, 0))
                answer.messages[index] = Message(message.name, text)
                room -= len(text)
            answer.notes.append(f"{total - limits.max_print_chars:,} of {total:,} characters "
                                "of message text were cut")
        value = result.result
        died = any(n == "LinkServer::kerneldied" for n in result.messages_name)
        if died:
            answer.status = "restarted"
            answer.notes.append("the kernel died during the evaluation; the server started "
                                "a fresh one for this session and its definitions are lost")
            return
        if isinstance(value, (tuple, list)) and len(value) == 2:
            text, svg = str(value[0]), value[1]
            graphics = isinstance(svg, str) and "<svg" in svg
            answer.result_chars = len(text)
            # A plot's InputForm is its sampled points: the image says more.
            room = min(limits.max_result_chars, GRAPHICS_TEXT_CHARS) if graphics else \
                limits.max_result_chars
            answer.result, note = cut(text, room, "characters of the result")
            if note:
                answer.notes.append(note)
            if graphics:
                answer.svg = str(svg)
            answer.status = "messages" if answer.messages else "ok"
            return
        answer.result = _text_of(value)
        answer.result_chars = len(answer.result)
        if timed_out and isinstance(value, WLSymbol) and value.name == "$Aborted":
            answer.status = "timeout"
            answer.notes.append("the evaluation ran past its time limit and was aborted; "
                                "the session keeps its definitions")
        elif isinstance(value, WLSymbol) and value.name == "$Aborted":
            answer.status = "aborted"
            answer.notes.append("the evaluation was aborted; the session keeps its definitions")
        else:
            answer.status = "messages" if answer.messages else "failed"

    def _finish(self, answer: Answer, state: Session, started: float) -> Answer:
        answer.kernel = state.kernel
        answer.mode = state.mode
        if state.mode == "shared":
            answer.notes.append(_SHARED_NOTE)
        answer.seconds = asyncio.get_running_loop().time() - started
        return answer

    # --------------------------------------------------------- session tools

    def listing(self) -> list[dict[str, Any]]:
        """Every session the door knows, in the order they were first used."""
        return [s.describe() for s in self._sessions.values()]

    async def abort(self, session: str | None = None) -> str:
        """Abort the session's running evaluation (definitions kept); say what was done.

        Raises:
            SessionError: a bad session name.
        """
        name = check_session_name(session)
        state = self._sessions.get(name)
        if state is None or state.client is None or not state.running:
            return f"session {name!r} is not running an evaluation: nothing to abort"
        try:
            await state.client.abort()
        except LinkError as exc:
            return f"the abort could not be sent ({exc}); the evaluation's own call answers"
        return (f"abort sent to session {name!r}: its evaluation answers $Aborted and the "
                "session keeps its definitions")

    async def end(self, session: str | None = None) -> str:
        """End a session: its link is closed and its kernel discarded (pool mode).

        Raises:
            SessionError: a bad session name, or a session the door does not know.
        """
        name = check_session_name(session)
        state = self._sessions.pop(name, None)
        if state is None:
            raise SessionError(f"there is no session {name!r}; the sessions tool lists them")
        state.ended = True
        await self._let_go(state)
        if state.mode == "shared":
            return (f"session {name!r} ended; the shared kernel and its definitions live on "
                    "(every session of this server is that kernel)")
        return f"session {name!r} ended: its kernel was discarded and its definitions are gone"

    async def restart(self, session: str | None = None) -> str:
        """Give a session a fresh kernel; its definitions are lost.

        Raises:
            SessionError: a bad session name, or a shared server (its kernel is everyone's).
            LinkError: the server could not be reached for the new kernel.
        """
        name = check_session_name(session)
        state = self._sessions.get(name)
        if state is not None and state.mode == "shared":
            raise SessionError("this server runs in shared mode: its one kernel is every "
                               "session's and cannot be restarted from here; clear your "
                               "definitions with ClearAll instead")
        if state is not None:
            self._sessions.pop(name)
            state.ended = True
            await self._let_go(state)
        fresh = self._sessions[name] = Session(name)
        notes: list[str] = []
        await self._connect(fresh, notes)
        if fresh.mode == "shared":
            return (f"session {name!r} is the server's shared kernel (shared mode): it was "
                    "not restarted")
        return (f"session {name!r} restarted on a fresh kernel {fresh.kernel}: every earlier "
                "definition is lost")

    async def aclose(self) -> None:
        """Close every link; persistent kernels are discarded, so none outlive the door."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for state in sessions:
            state.ended = True
            await self._let_go(state)
        if self._releasing:
            await asyncio.wait(set(self._releasing))


def _text_of(value: Any) -> str:
    if isinstance(value, WLSymbol):
        return str(value.name).rpartition("`")[2]
    if isinstance(value, str):
        return value
    return repr(value)


async def _finished(task: asyncio.Future[Any], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``task`` without cancelling it; True if it is done."""
    if seconds > 0:
        await asyncio.wait({task}, timeout=seconds)
    return task.done()


async def _within(coro: Awaitable[_T], seconds: float) -> _T:
    return await asyncio.wait_for(coro, max(seconds, 0.001))


async def _quietly(awaitable: Awaitable[Any]) -> None:
    """Await a close, abort or cancelled task whose failure changes nothing for the caller."""
    try:
        await awaitable
    except (LinkError, OSError):
        pass
