"""Records: the server log, traffic traces and per-link stream logs (docs/logging.md).

Three kinds of record, one module:

* **Events.** :func:`event` logs one named event with ``key=value`` fields
  through the ordinary :mod:`logging` loggers (``linkserver.*``), so a
  program that embeds linkserver keeps its own logging set-up and sees
  ``record.event`` and ``record.fields`` on each record. :data:`EVENTS` is
  the list of every event name with its logger and level; docs/logging.md
  documents each one. ``linkserver serve`` installs :class:`LogfmtFormatter`
  (:func:`configure`), which writes one stable line per event::

      2026-11-25T12:00:00.123Z info link-opened link=ab12cd34ef56 peer=5555@127.0.0.1 mode=LINKSERVER

* **Trace.** At the :data:`TRACE` level (below DEBUG) every link reports each
  expression and urgent message it sends or receives as a ``packet-sent`` /
  ``packet-received`` / ``message-*`` event, the payload shown in a short
  InputForm (:func:`describe`). Whether a link traces is decided once, when
  it is made; a link that neither traces nor streams pays one ``is None``
  check per expression.

* **Stream logs** (WSTP's ``WSLogStreamToFile``). :class:`StreamLog` writes
  one link's traffic to a file of its own, one line per expression or
  message with a time of day and a direction, through a buffer that is
  flushed shortly after writing and when the stream is switched off or the
  link ends.

A link's :class:`Tap` is what it reports its traffic to; it exists only while
the link traces or streams.
"""

from __future__ import annotations

import asyncio
import decimal
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

from wolframclient.language.expression import WLFunction, WLInputExpression, WLSymbol

from . import wxf
from .errors import LinkError, RecordsError
from .protocol.oob import CloseCode, UrgentMessage
from .wxf.peek import head_name

__all__ = [
    "EVENTS",
    "LEVELS",
    "TRACE",
    "LogfmtFormatter",
    "Sink",
    "RecordsError",
    "StreamLog",
    "Tap",
    "add_sink",
    "check_stream_dir",
    "configure",
    "describe",
    "enabled",
    "event",
    "input_form",
    "link_ref",
    "logfmt",
    "remove_sink",
    "stream_path",
    "tracing",
]

#: Below DEBUG: every expression and urgent message on every link.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

#: The ``--log-level`` names.
LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

_SERVER, _KERNEL, _BROKER, _LINK = (
    "linkserver.server", "linkserver.kernel", "linkserver.broker", "linkserver.link"
)
_INFO, _WARNING = logging.INFO, logging.WARNING

#: Every event: name -> (logger, level). docs/logging.md lists the fields of each.
EVENTS: dict[str, tuple[str, int]] = {
    "server-started": (_SERVER, _INFO),
    "server-stopped": (_SERVER, _INFO),
    "link-opened": (_SERVER, _INFO),
    "link-closed": (_SERVER, _INFO),
    "link-rejected": (_SERVER, _INFO),
    "auth-failed": (_SERVER, _WARNING),
    "stream-log-failed": (_SERVER, _WARNING),
    "service-started": (_SERVER, _INFO),
    "service-stopped": (_SERVER, _INFO),
    "service-stop-requested": (_SERVER, _INFO),
    "service-advertised": (_SERVER, _INFO),
    "service-advertise-failed": (_SERVER, _WARNING),
    "service-withdrawn": (_SERVER, _INFO),
    "access-denied": (_SERVER, _WARNING),
    "ray-connected": (_SERVER, _INFO),
    "ray-launcher-started": (_SERVER, _INFO),
    "kernel-started": (_KERNEL, _INFO),
    "kernel-rejected": (_KERNEL, _INFO),
    "kernel-template-output": (_KERNEL, _WARNING),
    "kernel-template-started": (_KERNEL, _INFO),
    "kernel-template-failed": (_KERNEL, _WARNING),
    "kernel-lost": (_KERNEL, _WARNING),
    "kernel-keep-failed": (_KERNEL, _WARNING),
    "kernel-adopted": (_KERNEL, _INFO),
    "kernels-adopted": (_KERNEL, _INFO),
    "kernel-not-adopted": (_KERNEL, _INFO),
    "kernel-adopt-failed": (_KERNEL, _WARNING),
    "kernel-died": (_BROKER, _WARNING),
    "kernel-replaced": (_BROKER, _INFO),
    "kernel-start-failed": (_BROKER, _WARNING),
    "kernel-bad-packet": (_BROKER, _WARNING),
    "request-done": (_BROKER, _INFO),
    "request-failed": (_BROKER, _INFO),
    "pool-refused": (_BROKER, _WARNING),
    "pool-parked": (_BROKER, _INFO),
    "pool-reattached": (_BROKER, _INFO),
    "pool-expired": (_BROKER, _INFO),
    "kernel-culled": (_BROKER, _INFO),
    "user-limit": (_BROKER, _INFO),
    "user-limit-skipped": (_BROKER, _WARNING),
    "pool-launch-failed": (_BROKER, _WARNING),
    "packet-sent": (_LINK, TRACE),
    "packet-received": (_LINK, TRACE),
    "message-sent": (_LINK, TRACE),
    "message-received": (_LINK, TRACE),
    "close-sent": (_LINK, TRACE),
    "close-received": (_LINK, TRACE),
}

#: What a sink is called with: an event's name and its fields (not to be kept or changed).
Sink = Callable[[str, Mapping[str, object]], None]

_loggers: dict[str, logging.Logger] = {}
_sinks: list[Sink] = []  # the side port's metrics, fed by every event whatever the log level
_handler: logging.Handler | None = None  # the one configure() installed
_link_log = logging.getLogger(_LINK)

# Characters a logfmt value may carry without quotes: printable ASCII but space, " = \.
_BARE = re.compile(r"[!#-<>-\[\]-~]+\Z")
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})

TRACE_LIMIT = 200  # characters of an expression in a trace line
STREAM_LIMIT = 2000  # ... in a stream log line
MAX_DECODE = 1 << 20  # bigger payloads are described by their head only
FLUSH_INTERVAL = 0.5  # seconds a stream log line may wait in the buffer


# ------------------------------------------------------------------ events


def _value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.3f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    else:
        text = str(value)
    if _BARE.match(text):
        return text
    return '"' + text.translate(_ESCAPES) + '"'


def logfmt(name: str, fields: Mapping[str, object]) -> str:
    """Return ``name key=value ...``, quoting values that need it (logfmt)."""
    parts = [name]
    for key, value in fields.items():
        parts.append(f"{key}={_value(value)}")
    return " ".join(parts)


def _logger(name: str) -> tuple[logging.Logger, int]:
    logger_name, level = EVENTS.get(name, (_SERVER, _INFO))
    logger = _loggers.get(logger_name)
    if logger is None:
        logger = _loggers[logger_name] = logging.getLogger(logger_name)
    return logger, level


def enabled(name: str) -> bool:
    """True if event ``name`` would be logged or sunk: guard fields that cost to compute."""
    if _sinks:
        return True
    logger, level = _logger(name)
    return logger.isEnabledFor(level)


def add_sink(sink: Sink) -> None:
    """Call ``sink(name, fields)`` for every event from now on, whatever the log level.

    Metrics count events this way, so they see what the log sees without a
    second set of hooks in the broker. A sink runs where the event happens
    (mostly the event loop): it must be quick and must not raise.
    """
    _sinks.append(sink)


def remove_sink(sink: Sink) -> None:
    """Stop calling ``sink`` (one that was never added is ignored)."""
    if sink in _sinks:
        _sinks.remove(sink)


def event(name: str, /, **fields: object) -> None:
    """Log event ``name`` (one of :data:`EVENTS`) with its fields, in order.

    The record's message is the logfmt line ``name key=value ...``; the
    record also carries ``event`` (the name) and ``fields`` (a dict) for
    handlers that want them. For example, a failed authentication::

        records.event("auth-failed", peer=link.peer, reason="wrong key")
    """
    for sink in _sinks:
        sink(name, fields)
    logger, level = _logger(name)
    if logger.isEnabledFor(level):
        # Plain values only (an error becomes its message), so handlers can keep or ship them.
        for key, value in fields.items():
            if value is not None and not isinstance(value, (str, int, float)):
                fields[key] = str(value)
        logger.log(level, "%s", logfmt(name, fields), extra={"event": name, "fields": fields})


def tracing() -> bool:
    """True if links made now trace their traffic (``linkserver.link`` at TRACE)."""
    return _link_log.isEnabledFor(TRACE)


def link_ref(link: _LinkLike) -> str:
    """The short id of ``link`` used in every record (12 hex digits), or ``-`` before it opened."""
    return link.link_id.hex()[:12] or "-"


class LogfmtFormatter(logging.Formatter):
    """One line per record: ``TIME LEVEL EVENT key=value ...``, time in UTC.

    Records that are not events (other libraries', tracebacks of our own
    bugs) come out as ``TIME LEVEL log logger=NAME msg="..."``; a traceback
    is one more field, ``exc="..."``, its newlines escaped: one line each.
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        level = record.levelname.lower()
        if getattr(record, "event", None) is not None:
            body = record.getMessage()
        else:
            body = logfmt("log", {"logger": record.name, "msg": record.getMessage()})
        if record.exc_info:
            body += " exc=" + _value(self.formatException(record.exc_info))
        elif record.exc_text:
            body += " exc=" + _value(record.exc_text)
        return f"{stamp}.{int(record.msecs):03d}Z {level} {body}"


def configure(level: str = "info", log_file: str | os.PathLike[str] | None = None) -> logging.Handler:
    """Send every log record at ``level`` or above to stderr, or to ``log_file``, as logfmt lines.

    For programs like ``linkserver serve``; the library itself never
    configures logging. ``level`` is one of :data:`LEVELS`. It also turns
    off the logging module's lookups of each record's caller, thread and
    process, which these lines never show (a quarter of a request's cost
    in the server went to its ``request-done`` line).

    Raises:
        RecordsError: the level is unknown or the log file cannot be opened.
    """
    if level not in LEVELS:
        raise RecordsError(f"the log level must be one of {', '.join(LEVELS)}, not {level!r}")
    handler: logging.Handler
    if log_file:
        try:
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise RecordsError(f"cannot write the log file {log_file}: {exc.strerror}") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    global _handler
    root = logging.getLogger()
    if _handler is not None:  # configured before: replace, never log twice
        root.removeHandler(_handler)
        _handler.close()
    _handler = handler
    # Our lines carry no caller, thread or process: don't look them up for each record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    return handler


# ----------------------------------------------------- readable expressions


class _Full(Exception):
    """The text reached its limit."""


class _Text:
    __slots__ = ("left", "parts")

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.left = limit

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.left -= len(text)
        if self.left < 0:
            raise _Full


_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_MAX_NESTING = 100


def _symbol(name: str) -> str:
    return name[7:] if name.startswith("System`") else name


def _real(x: float) -> str:
    if math.isnan(x):
        return "Indeterminate"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    text = repr(x)
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        if "." not in mantissa:
            mantissa += "."
        return f"{mantissa}*^{int(exponent)}"
    return text


def _write(out: _Text, x: Any, depth: int) -> None:
    if depth > _MAX_NESTING:
        out.add("...")
        return
    if isinstance(x, WLFunction):
        head = x.head
        args = x.args
        if isinstance(head, WLSymbol) and len(args) == 2 and _symbol(head.name) in ("Rule", "RuleDelayed"):
            _write(out, args[0], depth + 1)
            out.add(" -> " if _symbol(head.name) == "Rule" else " :> ")
            _write(out, args[1], depth + 1)
            return
        _write(out, head, depth + 1)
        out.add("[")
        _items(out, args, depth)
        out.add("]")
    elif isinstance(x, WLSymbol):
        out.add(_symbol(x.name))
    elif isinstance(x, str):
        out.add('"' + x.translate(_STRING_ESCAPES) + '"')
    elif isinstance(x, bool):
        out.add("True" if x else "False")
    elif x is None:
        out.add("Null")
    elif isinstance(x, int):
        out.add(str(x))
    elif isinstance(x, float):
        out.add(_real(x))
    elif isinstance(x, complex):
        out.add(f"Complex[{_real(x.real)}, {_real(x.imag)}]")
    elif isinstance(x, decimal.Decimal):
        out.add(f"{x}`")
    elif isinstance(x, (tuple, list)):
        out.add("{")
        _items(out, x, depth)
        out.add("}")
    elif isinstance(x, Mapping):
        out.add("<|")
        for i, (key, value) in enumerate(x.items()):
            if i:
                out.add(", ")
            _write(out, key, depth + 1)
            out.add(" -> ")
            _write(out, value, depth + 1)
        out.add("|>")
    elif isinstance(x, (bytes, bytearray)):
        out.add(f'ByteArray[<{len(x)} bytes: {bytes(x[:16]).hex(" ")}{" ..." if len(x) > 16 else ""}>]')
    elif isinstance(x, WLInputExpression):
        out.add(str(x.input))
    elif hasattr(x, "ndim") and hasattr(x, "tolist"):  # numpy arrays and scalars
        if getattr(x, "ndim", 0) == 0:
            _write(out, x.tolist(), depth + 1)
        else:
            out.add("{")
            _items(out, x, depth)
            out.add("}")
    else:
        out.add(repr(x))


def _items(out: _Text, items: Any, depth: int) -> None:
    for i, item in enumerate(items):
        if i:
            out.add(", ")
        _write(out, item, depth + 1)


def input_form(expr: Any, limit: int = TRACE_LIMIT) -> str:
    """Return ``expr`` in a short InputForm (``EvaluatePacket[Plus[1, 1]]``), cut at ``limit`` characters.

    Only as much of a big expression is looked at as the limit needs.
    """
    out = _Text(limit)
    try:
        _write(out, expr, 0)
    except _Full:
        return "".join(out.parts)[: max(limit - 3, 0)] + "..."
    return "".join(out.parts)


def describe(payload: bytes, limit: int = TRACE_LIMIT) -> str:
    """Return a WXF payload as a short InputForm; bytes that are not WXF as a hex prefix."""
    if len(payload) > MAX_DECODE:
        head = head_name(payload)
        return f"{_symbol(head) if head else 'expression'}[<{len(payload)} bytes of WXF>]"
    try:
        expr = wxf.loads(payload)
    except LinkError:
        hex_prefix = payload[:16].hex(" ") + (" ..." if len(payload) > 16 else "")
        return f"<{len(payload)} bytes, not WXF: {hex_prefix}>"
    return input_form(expr, limit)


def _message_name(message: int) -> str:
    try:
        return UrgentMessage(message).name
    except ValueError:
        return str(message)


def _close_name(code: int) -> str:
    try:
        return CloseCode(code).name
    except ValueError:
        return str(code)


# ------------------------------------------------------------ stream logs


class _LinkLike(Protocol):
    link_id: bytes
    peer: str


def _clock(now: float) -> str:
    t = time.gmtime(now)
    return f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{int(now % 1 * 1e6):06d}"


def check_stream_dir(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` if stream logs can be written in it.

    Raises:
        RecordsError: it does not exist, is not a directory, or is not writable.
    """
    directory = Path(path)
    if not directory.exists():
        raise RecordsError(f"the stream log directory {directory} does not exist")
    if not directory.is_dir():
        raise RecordsError(f"the stream log directory {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise RecordsError(f"the stream log directory {directory} is not writable")
    return directory


def stream_path(path: str | os.PathLike[str], link: _LinkLike) -> Path:
    """``path`` itself, or for a directory a new file in it named by the link id and the time."""
    target = Path(path)
    if target.is_dir():
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        target = target / f"link-{link_ref(link)}-{stamp}.log"
    return target


class StreamLog:
    """One link's stream log file (``WSLogStreamToFile``); loop thread only.

    Lines are ``HH:MM:SS.ffffff ARROW TEXT`` in UTC, where ARROW is ``>``
    for what this end sent, ``<`` for what it received, ``=`` for a note
    and ``x`` for the end. The file is created with mode 0600 (it holds
    the traffic) and appended to.
    """

    def __init__(self, path: Path, file: TextIO, loop: asyncio.AbstractEventLoop | None) -> None:
        self.path = path
        self._file: TextIO | None = file
        self._loop = loop
        self._flush_handle: asyncio.TimerHandle | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], link: _LinkLike, side: str) -> StreamLog:
        """Open (append to) the stream log of ``link`` at ``path`` (a file, or a directory for a new file).

        Raises:
            RecordsError: the file cannot be opened.
        """
        target = stream_path(path, link)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RecordsError(f"cannot write the stream log {target}: {exc.strerror}") from None
        file = os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace", newline="\n")
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        stream = cls(target, file, loop)
        now = time.time()
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        stream._write(f"# linkserver stream log: link {link.link_id.hex() or '-'} ({side} end), "
                      f"peer {link.peer or '-'}, {day} UTC; > sent, < received\n")
        stream.line("=", "stream log on")
        return stream

    @property
    def closed(self) -> bool:
        """True once the file is closed."""
        return self._file is None

    def _write(self, text: str) -> None:
        file = self._file
        if file is None:
            return
        try:
            file.write(text)
        except OSError as exc:  # disk full, ...: stop this stream, keep the link
            event("stream-log-failed", path=self.path, reason=exc.strerror)
            self._close_file()
            return
        if self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_later(FLUSH_INTERVAL, self._flush)

    def line(self, arrow: str, text: str) -> None:
        """Write one timestamped line."""
        self._write(f"{_clock(time.time())} {arrow} {text}\n")

    def _flush(self) -> None:
        self._flush_handle = None
        file = self._file
        if file is not None:
            try:
                file.flush()
            except OSError as exc:
                event("stream-log-failed", path=self.path, reason=exc.strerror)
                self._close_file()

    def close(self, why: str = "stream log off") -> None:
        """Write the last line, flush and close the file; closing twice is harmless."""
        if self._file is None:
            return
        self.line("x", why)
        self._close_file()

    def _close_file(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass  # the data is lost either way; the descriptor is released


class Tap:
    """What one link reports its traffic to: the trace log, a stream log, or both."""

    __slots__ = ("_link", "stream", "trace")

    def __init__(self, link: _LinkLike, *, trace: bool) -> None:
        self._link = link
        self.trace = trace
        self.stream: StreamLog | None = None

    @property
    def idle(self) -> bool:
        """True when it has nothing left to report to."""
        return not self.trace and self.stream is None

    def expression(self, arrow: str, payload: bytes) -> None:
        """One expression sent (``>``) or received (``<``)."""
        stream = self.stream
        text = describe(payload, STREAM_LIMIT if stream is not None else TRACE_LIMIT)
        if stream is not None:
            stream.line(arrow, text)
        if self.trace:
            if len(text) > TRACE_LIMIT:
                text = text[: TRACE_LIMIT - 3] + "..."
            event("packet-sent" if arrow == ">" else "packet-received",
                  link=link_ref(self._link), bytes=len(payload), expr=text)

    def message(self, arrow: str, message: int, argument: int) -> None:
        """One urgent message sent or received."""
        name = _message_name(message)
        if self.stream is not None:
            self.stream.line(arrow, f"urgent {name} {argument}")
        if self.trace:
            event("message-sent" if arrow == ">" else "message-received",
                  link=link_ref(self._link), message=name, arg=argument)

    def close_frame(self, arrow: str, code: int, reason: str) -> None:
        """The close frame sent or received."""
        name = _close_name(code)
        if self.stream is not None:
            self.stream.line(arrow, f"close {name} " + '"' + reason.translate(_STRING_ESCAPES) + '"')
        if self.trace:
            event("close-sent" if arrow == ">" else "close-received",
                  link=link_ref(self._link), code=name, reason=reason)

    def ended(self, why: str) -> None:
        """The link ended: close the stream log."""
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close(f"link ended: {why}")
