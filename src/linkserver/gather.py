"""One answer gatherer: the packets of one request, read up to its final one.

Every client of a linkserver reads answers the same way (docs/protocol.md §8.1):
after a request come *side* packets -- ``TextPacket`` for ``Print``, a
``MessagePacket`` and its ``TextPacket`` for a message, ``InputPacket`` when the
kernel evaluates ``Input[]``, ``CallPacket`` when it calls an installed function,
``OutputNamePacket`` and ``ReturnTextPacket`` for each result of an
``EnterTextPacket`` -- and then one *final* packet: ``ReturnPacket`` for an
``EvaluatePacket``, the closing ``InputNamePacket`` for ``EnterTextPacket`` and
``EnterExpressionPacket``. The asyncio client, the terminal session, ``linkserver
eval`` and the doors all read that run; this module reads it for them, once.

:class:`Gatherer` is sans-I/O: it is fed decoded packets (wolframclient
expressions or :mod:`linkserver.protocol.packets` objects), says what each one
means as a list of events, and collects the :class:`Outcome` -- the result,
printed text, messages with their names and text, output names, the position of
a syntax error, the next input prompt. :func:`read_answer` and
:func:`aread_answer` are the thin blocking and asyncio loops over it that answer
``Input[]`` and calls through callbacks. What a reader does with the events --
print them, turn them into Jupyter messages or wolframclient replies -- is its
own business.

Theory of operation
-------------------
Most packets map to one event each. Three carry state from one packet to the next:

* ``MessagePacket[symbol, tag]`` names a message whose text is the *next*
  ``TextPacket``; the pair makes one :class:`Issued` event. A message still without
  its text when any other packet comes is issued with empty text, so no message is
  ever lost and no ``Print`` is ever taken for one.
* ``OutputNamePacket["Out[n]= "]`` names the *next* result; it makes no event of its
  own, and its name travels on the :class:`Result`.
* A ``Syntax::`` message is held back until the next packet: if that is a
  ``SyntaxPacket``, the messages become part of one :class:`BadSyntax` event (the
  input did not parse: a notebook shows that as an error, not as output); anything
  else releases them as :class:`Issued` events first, in their place. Order is kept
  either way, and :attr:`Outcome.messages` lists them all.

The final packet ends the request with :class:`Done`; feeding the gatherer after
that is a bug in the reader (:class:`LocalProtocolError`). A packet that is no
packet, or whose arity is wrong, is :class:`Other` -- except a packet with the
final head, which ends the request whatever its arguments, since the server sends
nothing more for it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from wolframclient.language.expression import WLFunction, WLSymbol

from .errors import LocalProtocolError
from .install import python_failure
from .protocol import packets as pk
from .protocol.packets import Packet, short_head, short_name

__all__ = [
    "BadSyntax",
    "Call",
    "DEFAULT_INPUT",
    "Display",
    "Done",
    "Event",
    "Gatherer",
    "InputRequest",
    "Issued",
    "Message",
    "Other",
    "Outcome",
    "Printed",
    "Result",
    "aread_answer",
    "is_failure",
    "read_answer",
]

#: What ``Input[]`` reads when nobody answers: what a notebook gives when the user cancels.
DEFAULT_INPUT = "$Canceled"

_ENTER_HEADS = frozenset({"EnterTextPacket", "EnterExpressionPacket"})
_FAILURES = frozenset({"$Failed", "$Aborted"})
_OUT_NAME = re.compile(r"Out\[(\d+)\](?://(\S+?))?\s*=")
_IN_NAME = re.compile(r"In\[(\d+)\]")


def is_failure(value: Any, *, text: bool = False) -> bool:
    """True if ``value`` is ``$Failed``, ``$Aborted`` or ``linkserver`KernelError[...]``.

    Args:
        value: a result.
        text: ``value`` is a result's text (``ReturnTextPacket``), where the
            failures arrive spelt out: ``"$Failed"`` is then a failure, while as
            an expression it is just a string.
    """
    if text:
        return isinstance(value, str) and (value in _FAILURES or value.startswith(
            ("linkserver`KernelError[", "KernelError[")))
    if isinstance(value, WLSymbol):
        return short_name(value.name) in _FAILURES
    return isinstance(value, WLFunction) and short_head(value) == "KernelError"


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Message:
    """One message the kernel issued.

    Attributes:
        symbol: the message's symbol as the kernel named it (``"Power"``, ``"System`Power"``).
        tag: its tag (``"infy"``).
        text: the text as sent, ``"Power::infy: Infinite expression 1 / 0 encountered."``.
    """

    symbol: str
    tag: str
    text: str

    @property
    def name(self) -> str:
        """``"Power::infy"``: the symbol without its context, and the tag."""
        return f"{short_name(self.symbol)}::{self.tag}"

    @property
    def body(self) -> str:
        """The text without its ``"Power::infy: "`` prefix (what wolframclient reports)."""
        prefix = f"{self.name}: "
        return self.text[len(prefix):] if self.text.startswith(prefix) else self.text


@dataclass(frozen=True, slots=True)
class Printed:
    """``Print`` output (a ``TextPacket`` that is no message's text)."""

    text: str


@dataclass(frozen=True, slots=True)
class Issued:
    """A message and its text."""

    message: Message


@dataclass(frozen=True, slots=True)
class Result:
    """A result: ``ReturnPacket``, ``ReturnExpressionPacket`` or ``ReturnTextPacket``.

    Attributes:
        value: the expression, or the text for a ``ReturnTextPacket``.
        name: the ``OutputNamePacket`` just before it (``"Out[3]= "``), or "".
        is_text: the value is the kernel's formatted text (``ReturnTextPacket``).
    """

    value: Any
    name: str = ""
    is_text: bool = False

    @property
    def text(self) -> str:
        """The value as text (the kernel's text for ``ReturnTextPacket``)."""
        return self.value if isinstance(self.value, str) and self.is_text else str(self.value)

    @property
    def line(self) -> int | None:
        """``n`` of ``Out[n]``, or None if the result came with no output name."""
        match = _OUT_NAME.search(self.name)
        return int(match.group(1)) if match else None

    @property
    def form(self) -> str:
        """``"FullForm"`` for ``Out[n]//FullForm=``: the input asked for that form; else "".

        The kernel's text is then in that form, while ``Out[n]`` holds the bare value.
        """
        match = _OUT_NAME.search(self.name)
        return (match.group(2) or "") if match else ""

    @property
    def failed(self) -> bool:
        """True for ``$Failed``, ``$Aborted`` and a kernel's error answer."""
        return is_failure(self.value, text=self.is_text)


@dataclass(frozen=True, slots=True)
class BadSyntax:
    """An input did not parse (``SyntaxPacket``); the kernel evaluates no more of it.

    Attributes:
        position: the character position the kernel gave.
        messages: the ``Syntax::`` messages that came just before, saying why.
    """

    position: Any
    messages: tuple[Message, ...] = ()


@dataclass(frozen=True, slots=True)
class InputRequest:
    """``Input[prompt]`` or ``InputString[prompt]``: answer with ``EnterTextPacket[text]``."""

    prompt: str
    string: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """``CallPacket[index, {args}]``: the kernel calls a function this client installed."""

    index: Any
    args: Any


@dataclass(frozen=True, slots=True)
class Display:
    """Part of graphical output; ``end`` for ``DisplayEndPacket``."""

    data: Any
    end: bool = False


@dataclass(frozen=True, slots=True)
class Other:
    """A packet with no meaning for the reader (``MenuPacket``, ``SuspendPacket``, a non-packet)."""

    packet: Any


@dataclass(frozen=True, slots=True)
class Done:
    """The final packet: the request is answered.

    Attributes:
        prompt: the closing ``InputNamePacket``'s text (``"In[4]:= "``), for the
            ``Enter`` packets; None for ``EvaluatePacket``.
    """

    prompt: str | None = None


Event = Printed | Issued | Result | BadSyntax | InputRequest | Call | Display | Other | Done


@dataclass
class Outcome:
    """Everything one request's answer held.

    Attributes:
        result: the ``ReturnPacket``'s value for ``EvaluatePacket``; for the
            ``Enter`` packets, the last result's value (None if no input gave one).
        results: every :class:`Result`, in order, with its output name.
        printed: each ``Print``'s text, in order.
        messages: each message, in order.
        syntax: the position of a syntax error, or None.
        prompt: the closing ``InputNamePacket``'s text (the next input's prompt).
    """

    result: Any = None
    results: list[Result] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    syntax: Any = None
    prompt: str | None = None

    @property
    def failed(self) -> bool:
        """True if a message was issued, the input did not parse, or a result is a failure."""
        return bool(self.messages) or self.syntax is not None or any(
            r.failed for r in self.results)

    @property
    def line(self) -> int | None:
        """The number of the last input line, read from :attr:`prompt` (``In[n+1]``)."""
        match = _IN_NAME.search(self.prompt or "")
        return int(match.group(1)) - 1 if match else None


# ---------------------------------------------------------------- gatherer


class Gatherer:
    """Reads the packets of one request's answer (sans-I/O).

    Args:
        final: the packet class that ends the answer: ``ReturnPacket`` (the
            default, for ``EvaluatePacket`` and every request that is no
            ``Enter`` packet) or ``InputNamePacket``. :meth:`for_request`
            chooses it from the request.
    """

    def __init__(self, final: type[Packet] = pk.ReturnPacket) -> None:
        self.final = final
        self.outcome = Outcome()
        self.done = False
        self._message: tuple[str, str] | None = None  # a MessagePacket awaiting its text
        self._syntax: list[Message] = []  # Syntax:: messages held back (see the module)
        self._output_name = ""

    @classmethod
    def for_request(cls, request: Any) -> Gatherer:
        """A gatherer for the answer to ``request`` (an expression or a packet object)."""
        head = request.head if isinstance(request, Packet) else short_head(request)
        return cls(pk.InputNamePacket if head in _ENTER_HEADS else pk.ReturnPacket)

    def feed(self, packet: Any) -> list[Event]:
        """Take the next packet of the answer; return what it means, in order.

        Most packets give one event; a ``MessagePacket`` or ``OutputNamePacket``
        gives none (their meaning comes with the next packet); a packet after
        held ``Syntax::`` messages may give several. The last event of the answer
        is :class:`Done`.

        Raises:
            LocalProtocolError: the answer was complete already.
        """
        if self.done:
            raise LocalProtocolError(
                "this answer is complete: start a new Gatherer for the next request")
        parsed = packet if isinstance(packet, Packet) else pk.packet_from_expr(packet)
        events: list[Event] = []
        if isinstance(parsed, pk.TextPacket) and self._message is not None:
            symbol, tag = self._message
            self._message = None
            self._issue(Message(symbol, tag, _text(parsed.text)), events)
            return events
        self._flush_message(events)
        if isinstance(parsed, pk.MessagePacket):
            self._message = (_name(parsed.symbol), _name(parsed.tag))
            return events
        if isinstance(parsed, pk.SyntaxPacket):
            self.outcome.syntax = parsed.position
            events.append(BadSyntax(parsed.position, tuple(self._syntax)))
            self._syntax.clear()
            return events
        self._release_syntax(events)
        if isinstance(parsed, self.final) or (
                parsed is None and short_head(packet) == self.final.head):
            self._finish(parsed, events)
        elif isinstance(parsed, pk.TextPacket):
            text = _text(parsed.text)
            self.outcome.printed.append(text)
            events.append(Printed(text))
        elif isinstance(parsed, pk.OutputNamePacket):
            self._output_name = _text(parsed.name)
        elif isinstance(parsed, (pk.ReturnPacket, pk.ReturnExpressionPacket)):
            self._result(Result(parsed.expr, self._output_name), events)
        elif isinstance(parsed, pk.ReturnTextPacket):
            self._result(Result(parsed.text, self._output_name, is_text=True), events)
        elif isinstance(parsed, (pk.InputPacket, pk.InputStringPacket)):
            string = isinstance(parsed, pk.InputStringPacket)
            events.append(InputRequest(_text(parsed.prompt), string))
        elif isinstance(parsed, pk.CallPacket):
            events.append(Call(parsed.index, parsed.args))
        elif isinstance(parsed, (pk.DisplayPacket, pk.DisplayEndPacket)):
            events.append(Display(parsed.data, isinstance(parsed, pk.DisplayEndPacket)))
        else:
            events.append(Other(packet))
        return events

    def _finish(self, parsed: Packet | None, events: list[Event]) -> None:
        self.done = True
        prompt = None
        if isinstance(parsed, pk.ReturnPacket):
            self._result(Result(parsed.expr, self._output_name), events)
        elif self.final is pk.ReturnPacket:  # ReturnPacket[] with no value
            self._result(Result(None), events)
        else:
            prompt = _text(parsed.name) if isinstance(parsed, pk.InputNamePacket) else ""
        self.outcome.prompt = prompt
        events.append(Done(prompt))

    def _result(self, result: Result, events: list[Event]) -> None:
        self._output_name = ""
        self.outcome.results.append(result)
        self.outcome.result = result.value
        events.append(result)

    def _issue(self, message: Message, events: list[Event]) -> None:
        self.outcome.messages.append(message)
        if short_name(message.symbol) == "Syntax":
            self._syntax.append(message)  # held: is a SyntaxPacket next?
        else:
            self._release_syntax(events)
            events.append(Issued(message))

    def _flush_message(self, events: list[Event]) -> None:
        """Issue a message that never got its text (the kernel sent none)."""
        if self._message is not None:
            symbol, tag = self._message
            self._message = None
            self._issue(Message(symbol, tag, ""), events)

    def _release_syntax(self, events: list[Event]) -> None:
        if self._syntax:
            events.extend(Issued(m) for m in self._syntax)
            self._syntax.clear()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _name(value: Any) -> str:
    """A symbol's or a tag's name: ``MessagePacket[Power, "infy"]`` may carry either."""
    return value.name if isinstance(value, WLSymbol) else str(value)


# ----------------------------------------------------------------- drivers

EventHandler = Callable[[Event], None]


def _failed_call(call: Call) -> Any:
    return python_failure("the installed function", LookupError(
        f"this client has no installed function for CallPacket[{call.index!r}, ...]"))


def _reply(
    event: Event,
    on_event: EventHandler | None,
    on_input: Callable[[InputRequest], Any] | None,
    on_call: Callable[[Call], Any] | None,
) -> tuple[Callable[[Any], Packet], Any] | None:
    """Report ``event``; return the packet class that answers it and its value (maybe awaitable).

    ``Input[]`` is answered with ``EnterTextPacket[text]``, a call with
    ``ReturnPacket[value]`` (docs/protocol.md §8.1, §8.10); nothing else is answered.
    """
    if on_event is not None:
        on_event(event)
    if isinstance(event, InputRequest):
        return pk.EnterTextPacket, on_input(event) if on_input is not None else DEFAULT_INPUT
    if isinstance(event, Call):
        return pk.ReturnPacket, on_call(event) if on_call is not None else _failed_call(event)
    return None


def read_answer(
    gatherer: Gatherer,
    get: Callable[[], Any],
    put: Callable[[Any], None],
    *,
    on_event: EventHandler | None = None,
    on_input: Callable[[InputRequest], str] | None = None,
    on_call: Callable[[Call], Any] | None = None,
) -> Outcome:
    """Read an answer whose request was sent: feed ``get()`` to ``gatherer`` up to the final packet.

    Args:
        gatherer: a fresh gatherer for the request (:meth:`Gatherer.for_request`).
        get: returns the next packet (blocking); its errors pass through.
        put: sends an expression: the answer to ``Input[]`` or to a call.
        on_event: called with every event, in order, before it is acted on.
        on_input: returns the text that answers ``Input[]``; default :data:`DEFAULT_INPUT`.
        on_call: returns the value of an installed function's call; default a
            ``Failure`` saying that this client installed none.

    Returns:
        The outcome.

    Raises:
        Whatever ``get``, ``put`` and the handlers raise (a ``LinkError`` from a link).
    """
    while not gatherer.done:
        for event in gatherer.feed(get()):
            reply = _reply(event, on_event, on_input, on_call)
            if reply is not None:
                packet, value = reply
                put(packet(value).to_expr())
    return gatherer.outcome


async def aread_answer(
    gatherer: Gatherer,
    get: Callable[[], Awaitable[Any]],
    put: Callable[[Any], Awaitable[None]],
    *,
    on_event: EventHandler | None = None,
    on_input: Callable[[InputRequest], str | Awaitable[str]] | None = None,
    on_call: Callable[[Call], Any] | None = None,
) -> Outcome:
    """:func:`read_answer` for asyncio: ``get`` and ``put`` are coroutine functions.

    ``on_input`` and ``on_call`` may return awaitables, which are awaited.

    Raises:
        Whatever ``get``, ``put`` and the handlers raise (a ``LinkError`` from a link).
    """
    while not gatherer.done:
        for event in gatherer.feed(await get()):
            reply = _reply(event, on_event, on_input, on_call)
            if reply is not None:
                packet, value = reply
                if inspect.isawaitable(value):
                    value = await value
                await put(packet(value).to_expr())
    return gatherer.outcome
