"""Jupyter's kernel side of its messaging protocol, on ZeroMQ and asyncio, without ipykernel.

``linkserver-jupyter`` evaluates nothing itself: each cell goes to a
linkserver. A kernel base made for Python kernels (ipykernel) costs about
2 ms a cell on these machines -- its own threads for iopub and control, a
traitlets application, output capture -- which is four times what the
linkserver round trip behind it costs. :class:`WireKernel` is the protocol
and nothing else: it reads the connection file, binds the five sockets,
checks and signs every message (HMAC-SHA256 over its four JSON frames),
publishes ``busy`` and ``idle`` around each request, and calls ``do_*``
coroutines that a subclass writes (``do_execute``, ``do_complete``,
``do_inspect``, ``do_is_complete``, ``do_history``, ``do_shutdown``) with
the same arguments ipykernel's would get.

Theory of operation
-------------------
One asyncio loop serves the shell and control sockets as two tasks. Shell
requests are taken one at a time, in order; control requests
(``interrupt_request``, ``shutdown_request``, ``kernel_info_request``) are
served while a cell runs. The heartbeat echoes on a thread of its own, so
the frontend sees the kernel alive whatever the loop does. A cell that
answers an error with ``stop_on_error`` makes the execute requests already
waiting answer ``aborted`` (Jupyter's "run all" stops there). ``Input[]``
asks the frontend on the stdin socket (:meth:`WireKernel.ask`). The kernel
ends when it is told to shut down, or when the process that started it
(``JPY_PARENT_PID``) is gone.

Message frames follow the Jupyter messaging specification, version 5.3:
``[identities..., b"<IDS|MSG>", signature, header, parent_header, metadata,
content, buffers...]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import zmq

__all__ = ["PROTOCOL_VERSION", "StdinNotImplemented", "WireKernel"]

#: the version of Jupyter's messaging protocol spoken here
PROTOCOL_VERSION = "5.3"
_DELIMITER = b"<IDS|MSG>"
#: seconds between two looks at whether the process that started the kernel lives
PARENT_CHECK_INTERVAL = 1.0

log = logging.getLogger("linkserver.jupyter")


_EMPTY = b"{}"
_MORE = int(zmq.SNDMORE)  # a plain int: pyzmq's send_multipart ORs enum flags per frame
# The compiled send under pyzmq's Python wrapper (which only adds draft-socket
# options): 2 us a frame against 4-7, and a cell sends 35 frames.
_send_frame = zmq.backend.Socket.send


def _send_frames(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
    """Send one multipart message (what ``send_multipart`` does, at less cost per frame)."""
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        _send_frame(sock, frame, _MORE if index < last else 0)


_recv_frame = zmq.backend.Socket.recv
_get_option = zmq.backend.Socket.get
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def _recv_now(sock: zmq.Socket[bytes]) -> list[bytes] | None:
    """One whole multipart message if one has arrived, else None; never waits.

    Reading ``EVENTS`` also rearms the socket's file descriptor, which ZeroMQ
    signals only when its state may have changed: look here before every wait.
    """
    events = _get_option(sock, _EVENTS)
    if not (isinstance(events, int) and events & _POLLIN):
        return None
    frames = [_recv_frame(sock, _NOBLOCK)]
    while _get_option(sock, _RCVMORE):
        frames.append(_recv_frame(sock, _NOBLOCK))
    return frames


async def _recv_frames(sock: zmq.Socket[bytes]) -> list[bytes]:
    """Wait for one multipart message: pyzmq's asyncio receive, without its futures and flags."""
    while True:
        frames = _recv_now(sock)
        if frames is not None:
            return frames
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        fd = sock.FD
        loop.add_reader(fd, wake)
        try:
            await readable
        finally:
            loop.remove_reader(fd)


class StdinNotImplemented(Exception):
    """The frontend cannot answer input requests (``allow_stdin`` was false)."""


class _Message:
    """One received message: who sent it, and its four parts.

    ``raw_header`` is the header's JSON as it came: every message that
    answers this one carries it as its parent header, unchanged.
    """

    __slots__ = ("idents", "header", "parent", "metadata", "content", "raw_header")

    def __init__(self, idents: list[bytes], header: dict[str, Any], parent: dict[str, Any],
                 metadata: dict[str, Any], content: dict[str, Any],
                 raw_header: bytes | None = None) -> None:
        self.idents = idents
        self.header = header
        self.parent = parent
        self.metadata = metadata
        self.content = content
        self.raw_header = json.dumps(header).encode() if raw_header is None else raw_header

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type", ""))


class WireKernel:
    """A Jupyter kernel process: the sockets, the signatures and the request loop.

    Args:
        connection: the connection file's contents (ports, address, key).
    """

    implementation = "kernel"
    implementation_version = "0"
    language_info: dict[str, Any] = {}
    banner = ""

    def __init__(self, connection: dict[str, Any]) -> None:
        self.connection = connection
        key = str(connection.get("key", "")).encode()
        scheme = str(connection.get("signature_scheme", "hmac-sha256"))
        if key and scheme != "hmac-sha256":
            raise ValueError(f"signature scheme {scheme!r} is not supported; use hmac-sha256")
        self._key = key
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self.session = uuid.uuid4().hex
        self.execution_count = 0
        self.log = log
        self._shell: zmq.Socket[bytes] | None = None
        self._control: zmq.Socket[bytes] | None = None
        self._stdin: zmq.Socket[bytes] | None = None
        self.iopub_socket: zmq.Socket[bytes] | None = None
        self._parent: _Message | None = None  # the shell request being served
        self._allow_stdin = False
        self._stopped: asyncio.Future[None] | None = None
        self._stdin_lock: asyncio.Lock | None = None
        self._sent = 0  # messages sent, for their ids

    # ------------------------------------------------------------ running

    def _url(self, port_key: str) -> str:
        transport = str(self.connection.get("transport", "tcp"))
        ip = str(self.connection.get("ip", "127.0.0.1"))
        port = int(self.connection[port_key])
        if transport == "ipc":
            return f"ipc://{ip}-{port}"
        return f"{transport}://{ip}:{port}"

    def run(self) -> None:
        """Serve until shut down (this is the process's main loop)."""
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        self._stdin_lock = asyncio.Lock()
        # Plain sockets: sending never waits on them (PUB and ROUTER drop rather than
        # block), and receiving waits on each socket's descriptor in this loop
        # (_recv_frames), at a tenth of pyzmq's asyncio wrapper's cost.
        # Made here: a kernel not yet run holds no resources.
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._shell = ctx.socket(zmq.ROUTER)
        self._control = ctx.socket(zmq.ROUTER)
        self._stdin = ctx.socket(zmq.ROUTER)
        self.iopub_socket = ctx.socket(zmq.PUB)
        for sock in (self._shell, self._control, self._stdin, self.iopub_socket):
            sock.linger = 1000
        self._shell.bind(self._url("shell_port"))
        self._control.bind(self._url("control_port"))
        self._stdin.bind(self._url("stdin_port"))
        self.iopub_socket.bind(self._url("iopub_port"))
        heart = threading.Thread(target=self._heartbeat, name="jupyter-heartbeat", daemon=True)
        heart.start()
        self._watch_signals(loop)
        self._publish_status("starting", None)
        tasks = [asyncio.ensure_future(self._serve_socket(self._shell, shell=True)),
                 asyncio.ensure_future(self._serve_socket(self._control, shell=False)),
                 asyncio.ensure_future(self._watch_parent())]
        try:
            await self._stopped
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            ctx.destroy(linger=1000)

    def _heartbeat(self) -> None:
        # Its own context and thread: it answers while the loop is busy.
        context = zmq.Context()
        sock = context.socket(zmq.ROUTER)
        sock.linger = 0
        try:
            sock.bind(self._url("hb_port"))
            zmq.proxy(sock, sock)  # echo every ping back to its sender
        except zmq.ZMQError:
            pass  # the context was ended: the process is going
        finally:
            sock.close()

    def _watch_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGINT interrupts the running cell (:meth:`interrupt`); it never ends the kernel."""
        try:
            loop.add_signal_handler(signal.SIGINT, self.interrupt)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals
            pass

    async def _watch_parent(self) -> None:
        """End the kernel when the process that started it has gone (jupyter_client's rule)."""
        try:
            parent = int(os.environ.get("JPY_PARENT_PID", "0"))
        except ValueError:
            parent = 0
        if parent <= 0:
            return
        while True:
            await asyncio.sleep(PARENT_CHECK_INTERVAL)
            if os.getppid() != parent:
                self.log.warning("linkserver-jupyter: its parent process %d has gone", parent)
                self.stop()
                return

    def stop(self) -> None:
        """End :meth:`run` (from the loop)."""
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    # ------------------------------------------------------------ the wire

    def _sign(self, parts: Sequence[bytes]) -> bytes:
        if not self._key:
            return b""
        mac = self._mac.copy()  # the key's setup done once, in __init__
        for part in parts:
            mac.update(part)
        return mac.hexdigest().encode()

    def _parse(self, frames: list[bytes]) -> _Message | None:
        try:
            split = frames.index(_DELIMITER)
            signature, *parts = frames[split + 1: split + 6]
            if len(parts) != 4:
                raise ValueError("fewer than four message parts")
            if self._key and not hmac.compare_digest(signature, self._sign(parts)):
                raise ValueError("the signature does not match the connection file's key")
            header, parent, metadata, content = (json.loads(part) for part in parts)
        except (ValueError, UnicodeDecodeError) as exc:
            self.log.warning("linkserver-jupyter: a message was dropped: %s", exc)
            return None
        if not isinstance(header, dict):
            self.log.warning("linkserver-jupyter: a message was dropped: its header is no object")
            return None
        return _Message(frames[:split], header, parent, metadata, content, bytes(parts[0]))

    def _frames(self, msg_type: str, content: dict[str, Any], parent: _Message | None,
                metadata: dict[str, Any] | None = None) -> list[bytes]:
        self._sent += 1
        header = json.dumps({
            # Unique within the session, as jupyter_client numbers its own messages.
            "msg_id": f"{self.session}_{self._sent}", "session": self.session,
            "username": "linkserver", "date": datetime.now(timezone.utc).isoformat(),
            "msg_type": msg_type, "version": PROTOCOL_VERSION,
        }).encode()
        parts = [header, parent.raw_header if parent is not None else _EMPTY,
                 json.dumps(metadata).encode() if metadata else _EMPTY,
                 json.dumps(content, default=str).encode()]
        return [_DELIMITER, self._sign(parts), *parts]

    def _send(self, sock: zmq.Socket[bytes], msg_type: str, content: dict[str, Any],
              parent: _Message | None, metadata: dict[str, Any] | None = None) -> None:
        idents = parent.idents if parent is not None else []
        _send_frames(sock,
                     [*idents, *self._frames(msg_type, content, parent, metadata)])

    def send_response(self, sock: Any, msg_type: str, content: dict[str, Any]) -> None:
        """Publish one message on iopub, as a reply to the request being served."""
        assert sock is self.iopub_socket and sock is not None
        topic = f"kernel.{self.session}.{msg_type}".encode()
        _send_frames(sock,
                     [topic, *self._frames(msg_type, content, self._parent)])

    def _publish_status(self, state: str, parent: _Message | None) -> None:
        sock = self.iopub_socket
        if sock is None:
            return
        topic = f"kernel.{self.session}.status".encode()
        _send_frames(sock,
                     [topic, *self._frames("status", {"execution_state": state}, parent)])

    # ------------------------------------------------------------ requests

    async def _serve_socket(self, sock: zmq.Socket[bytes], *, shell: bool) -> None:
        while True:
            message = self._parse(await _recv_frames(sock))
            if message is None:
                continue
            try:
                await self._dispatch(sock, message, shell=shell)
            except asyncio.CancelledError:
                raise
            except Exception:  # one failing request must not end the kernel
                self.log.exception("linkserver-jupyter: %s failed", message.msg_type)

    async def _dispatch(self, sock: zmq.Socket[bytes], message: _Message, *, shell: bool) -> None:
        kind = message.msg_type
        if not kind.endswith("_request"):
            return  # comm messages and the like: nothing here uses them
        self.early(message)
        self._publish_status("busy", message)
        if shell:
            self._parent = message
        waiting: list[_Message] = []
        try:
            reply, metadata = await self._answer(message)
            if reply is not None:
                self._send(sock, kind[: -len("_request")] + "_reply", reply, message, metadata)
            if (kind == "execute_request" and reply is not None
                    and reply.get("status") == "error"
                    and message.content.get("stop_on_error", True)):
                # Taken before idle: a client that sends its next cell on idle
                # must not see that cell aborted.
                waiting = self._waiting(sock)
        finally:
            self._publish_status("idle", message)
        if kind == "shutdown_request":
            self.stop()
        if waiting:
            await self._answer_aborted(sock, waiting)

    async def _answer(self, message: _Message) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        content = message.content
        kind = message.msg_type
        started = {"started": datetime.now(timezone.utc).isoformat()}
        if kind == "execute_request":
            code = str(content.get("code", ""))
            silent = bool(content.get("silent", False))
            store_history = bool(content.get("store_history", not silent))
            if not silent:
                self.execution_count += 1
                self.send_response(self.iopub_socket, "execute_input",
                                   {"code": code, "execution_count": self.execution_count})
            reply = await self.do_execute(
                code, silent, store_history, content.get("user_expressions") or {},
                bool(content.get("allow_stdin", False)))
            return reply, {**started, "status": reply.get("status", "ok")}
        if kind == "kernel_info_request":
            return self.kernel_info(), {}
        if kind == "complete_request":
            return await self.do_complete(str(content.get("code", "")),
                                          int(content.get("cursor_pos", 0))), {}
        if kind == "inspect_request":
            return await self.do_inspect(str(content.get("code", "")),
                                         int(content.get("cursor_pos", 0)),
                                         int(content.get("detail_level", 0))), {}
        if kind == "is_complete_request":
            return await self.do_is_complete(str(content.get("code", ""))), {}
        if kind == "history_request":
            return await self.do_history(**content), {}
        if kind == "comm_info_request":
            return {"status": "ok", "comms": {}}, {}
        if kind == "interrupt_request":
            self.interrupt()
            return {"status": "ok"}, {}
        if kind == "shutdown_request":
            return await self.do_shutdown(bool(content.get("restart", False))), {}
        self.log.info("linkserver-jupyter: %s is not served", kind)
        return None, {}

    def _waiting(self, sock: zmq.Socket[bytes]) -> list[_Message]:
        """The requests that have already arrived on ``sock``, without waiting."""
        waiting: list[_Message] = []
        while True:
            frames = _recv_now(sock)
            if frames is None:
                return waiting
            message = self._parse(frames)
            if message is not None:
                waiting.append(message)

    async def _answer_aborted(self, sock: zmq.Socket[bytes], waiting: list[_Message]) -> None:
        """Answer ``aborted`` to the execute requests of ``waiting``; serve the others."""
        for message in waiting:
            if message.msg_type != "execute_request":
                await self._dispatch(sock, message, shell=True)
                continue
            self._publish_status("busy", message)
            self._send(sock, "execute_reply", {
                "status": "aborted", "execution_count": self.execution_count}, message)
            self._publish_status("idle", message)

    def early(self, message: _Message) -> None:
        """Called with each request just before its busy status: start slow work (default: none).

        Whatever it starts must not publish: the busy status comes first.
        """

    def kernel_info(self) -> dict[str, Any]:
        """The ``kernel_info_reply`` content."""
        return {
            "status": "ok", "protocol_version": PROTOCOL_VERSION,
            "implementation": self.implementation,
            "implementation_version": self.implementation_version,
            "language_info": self.language_info, "banner": self.banner,
            "help_links": [], "debugger": False,
        }

    async def ask(self, prompt: str, password: bool = False) -> str:
        """Ask the frontend for a line of input (``input_request`` on stdin) and wait.

        Raises:
            StdinNotImplemented: the cell's frontend cannot answer input requests.
        """
        parent = self._parent
        if not self._allow_stdin or parent is None or self._stdin is None:
            raise StdinNotImplemented("this frontend does not answer input requests")
        assert self._stdin_lock is not None
        async with self._stdin_lock:
            self._send(self._stdin, "input_request",
                             {"prompt": prompt, "password": password}, parent)
            while True:
                reply = self._parse(await _recv_frames(self._stdin))
                if reply is not None and reply.msg_type == "input_reply":
                    return str(reply.content.get("value", ""))

    # ------------------------------------------------------------ for a subclass

    def interrupt(self) -> None:
        """Interrupt the running cell (``interrupt_request`` or SIGINT)."""

    async def do_execute(self, code: str, silent: bool, store_history: bool = True,
                         user_expressions: dict[str, Any] | None = None,
                         allow_stdin: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    async def do_complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        return {"status": "ok", "matches": [], "cursor_start": cursor_pos,
                "cursor_end": cursor_pos, "metadata": {}}

    async def do_inspect(self, code: str, cursor_pos: int, detail_level: int = 0,
                         omit_sections: Any = ()) -> dict[str, Any]:
        return {"status": "ok", "data": {}, "metadata": {}, "found": False}

    async def do_is_complete(self, code: str) -> dict[str, Any]:
        return {"status": "unknown"}

    async def do_history(self, hist_access_type: str = "tail", output: bool = False,
                         raw: bool = True, **more: Any) -> dict[str, Any]:
        return {"status": "ok", "history": []}

    async def do_shutdown(self, restart: bool) -> dict[str, Any]:
        return {"status": "ok", "restart": restart}


def read_connection_file(path: str) -> dict[str, Any]:
    """The connection file Jupyter wrote for this kernel.

    Raises:
        SystemExit: it cannot be read, with one sentence on stderr.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"linkserver-jupyter: cannot read the connection file {path}: {exc}",
              file=sys.stderr)
        raise SystemExit(2) from None
    missing = [k for k in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
               if k not in data]
    if missing:
        print(f"linkserver-jupyter: the connection file {path} has no {', '.join(missing)}",
              file=sys.stderr)
        raise SystemExit(2)
    return dict(data)
