"""``linkserver-jupyter``: a Jupyter kernel that forwards each cell to a linkserver.

The kernel holds no Wolfram Language state of its own. Each notebook's
kernel process is one client of a linkserver (``--server NAME``, else
``$LINKSERVER_ADDRESS``, else the newest server this user runs): in shared
mode every notebook attached to the server sees the same definitions, in
pool mode each notebook gets a kernel of its own.

How Jupyter's messages map onto the link (docs/jupyter.md):

====================  ==========================================================
Jupyter               linkserver
====================  ==========================================================
execute_request       ``EnterTextPacket[code]``, as ``linkserver connect`` sends
                      it: the kernel splits the cell into inputs, numbers them
                      (``In[n]``/``Out[n]`` and ``%`` work, and the cell's
                      execution count is the server's line number), and
                      answers ``TextPacket`` (``Print`` -> stdout stream),
                      ``MessagePacket`` + ``TextPacket`` (-> stderr stream),
                      ``OutputNamePacket`` + ``ReturnTextPacket`` (-> an
                      execute_result) and ``SyntaxPacket`` (-> an error reply).
                      Results other than integers are then asked for as
                      ``ToString[Out[n], InputForm]`` (text/plain), MathML
                      (text/html) and TeX (text/latex) for small non-atomic
                      results, and SVG for ``Graphics`` -- one more round trip
                      for all the results of the cell.
interrupt_request     the abort message: the running evaluation answers
(or SIGINT)           ``$Aborted`` (an error reply) and the kernel lives on.
complete_request      ``Names["prefix*"]``, served preemptively (it does not
                      wait behind another client's long evaluation).
inspect_request       ``MessageName[sym, "usage"]`` for a symbol that exists.
is_complete_request   :func:`linkserver.repl.balanced` (open brackets, strings
                      or comments: incomplete), no round trip.
====================  ==========================================================

The Jupyter side is :class:`.jupyter_wire.WireKernel`, Jupyter's messaging
protocol on ZeroMQ without ipykernel (about 2 ms a cell less). The link lives
on the same event loop as the shell's handlers. An interrupt (the control
socket's interrupt_request, or SIGINT) schedules the abort there; the shell
is only awaiting packets then, so the abort is sent at once. Inputs go to the
shared history store on a thread of their own, so no cell waits for the disk.
Without a server the kernel still starts, and every cell answers an error
saying how to start one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import functools
import os
import re
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wolframclient.language import wlexpr

from .. import __version__, gather, render, wxf
from ..aio.client import Client as AsyncClient
from ..errors import LinkError
from ..history import HistoryStore
from ..names import DEFAULT_HOST, DEFAULT_PORT
from ..protocol.packets import EnterTextPacket
from ..repl import balanced
from ..security import default_address
from .jupyter_wire import StdinNotImplemented, WireKernel, read_connection_file

__all__ = ["LinkserverKernel", "main"]

DEFAULT_ADDRESS = f"{DEFAULT_PORT}@{DEFAULT_HOST}"
CONNECT_TIMEOUT = 10.0
#: seconds a completion or inspection may take before it answers nothing
QUERY_TIMEOUT = 10.0
#: results with more leaves than this get text/plain only (MathML of a huge list helps no one)
RICH_LEAF_LIMIT = 2000
#: the most pixels of a graphic's PNG (its SVG is sent whole beside it)
MAX_IMAGE_PIXELS = 1_000_000

_INTEGER = re.compile(r"-?\d+")
# A Wolfram Language symbol name, with contexts: the part before the cursor...
_NAME_BEFORE = re.compile(r"[$A-Za-z][$A-Za-z0-9`]*$")
# ...and after it.
_NAME_AFTER = re.compile(r"^[$A-Za-z0-9`]*")
#: ``?name`` and ``??name`` alone in a cell: the pager (as IPython's ``?``)
_PAGER = re.compile(r"\s*(\?\??)\s*(`?[$A-Za-z][$A-Za-z0-9`]*)\s*")
_NAME = re.compile(r"`?[$A-Za-z][$A-Za-z0-9]*(`[$A-Za-z][$A-Za-z0-9]*)*")


def _wl_string(text: str) -> str:
    """``text`` as a Wolfram Language string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ----------------------------------------------------------------- cell events
# What the link side hands the Jupyter side while a cell runs, in order.


@dataclass
class Stream:
    """Printed text (``stdout``) or a message (``stderr``)."""

    name: str
    text: str


@dataclass
class Result:
    """One output of the cell: ``Out[line]`` and its text and rich forms."""

    line: int | None
    text: str
    form: str = ""  # "//FullForm" and the like: the kernel's text is what to show
    data: dict[str, str] = field(default_factory=dict)

    def needs_forms(self) -> bool:
        """True if InputForm text and rich forms must be asked for."""
        return (self.line is not None and not self.form and self.text != "$Aborted"
                and not _INTEGER.fullmatch(self.text))


@dataclass
class BadSyntax:
    """The kernel could not parse an input of the cell."""

    name: str
    text: str


@dataclass
class InputRequest:
    """``Input[prompt]``: the kernel waits for :attr:`answer`."""

    prompt: str
    answer: concurrent.futures.Future[str]


@dataclass
class CellEnd:
    """The cell is done; ``line`` is the server's last input number."""

    line: int | None


@dataclass
class LinkFailure:
    """No answer: the server could not be reached or the link failed."""

    ename: str
    evalue: str


Event = Stream | Result | BadSyntax | InputRequest | CellEnd | LinkFailure


def _forms_request(lines: Sequence[int]) -> Any:
    """One expression asking for the InputForm text and rich forms of ``Out[n]``s."""
    parts = []
    for n in lines:
        parts.append(
            f"With[{{r = Out[{n}]}}, {{ToString[r, InputForm], "
            f"If[AtomQ[r] || Head[r] === Graphics || Head[r] === Graphics3D || "
            f"LeafCount[r] > {RICH_LEAF_LIMIT}, Null, "
            f"{{ToString[r, MathMLForm], ToString[r, TeXForm]}}], "
            f'If[Head[r] === Graphics, ExportString[r, "SVG"], Null]}}]'
        )
    return wlexpr(f"If[$HistoryLength < 1, $Failed, Quiet[{{{', '.join(parts)}}}]]")


def _rich_data(answer: Any) -> dict[str, str] | None:
    """text/plain and rich forms from one element of :func:`_forms_request`'s answer."""
    if not isinstance(answer, (tuple, list)) or len(answer) != 3:
        return None
    text, math, svg = answer
    if not isinstance(text, str):
        return None
    data = {"text/plain": text}
    if isinstance(math, (tuple, list)) and len(math) == 2:
        mathml, tex = math
        if isinstance(mathml, str) and mathml.startswith("<math"):
            data["text/html"] = mathml
        if isinstance(tex, str) and tex.strip():
            data["text/latex"] = f"$${tex.strip()}$$"
    if isinstance(svg, str) and svg.lstrip().startswith(("<svg", "<?xml")):
        data["image/svg+xml"] = svg
        try:
            data["image/png"] = base64.b64encode(
                render.svg_to_png(svg, max_pixels=MAX_IMAGE_PIXELS)).decode("ascii")
        except ValueError:  # an SVG resvg cannot draw: the SVG alone is shown
            pass
    return data


# ------------------------------------------------------------------ link side


class Door:
    """The kernel's client of the linkserver; every coroutine runs on one event loop.

    Flags live on that loop too, so an abort scheduled from another thread
    (the control socket, a signal handler) never races a request being sent.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.client: AsyncClient | None = None
        self._lock: asyncio.Lock | None = None
        self._running = False  # a cell's request is on the link
        self._abort_wanted = False  # an abort came before the request was sent
        self._early: str | None = None  # a cell sent by send_early, not yet read

    def send_early(self, code: str) -> None:
        """Put the cell ``code`` on the link now, if the link is idle; :meth:`run_cell` reads it.

        For the Jupyter side to call before its own announcements (the busy
        status, execute_input), so the server evaluates while they go out.
        """
        client = self.client
        if (client is None or self._running or self._early is not None
                or (self._lock is not None and self._lock.locked())):
            return
        link = client.link
        if not link.is_open:
            return
        try:
            link.put_payload_nowait(wxf.dumps(EnterTextPacket(code).to_expr()))
        except LinkError:
            return  # run_cell sends it, and finds what failed
        self._early = code
        self._running = True

    async def _connect(self) -> AsyncClient:
        if self.client is None:
            client = AsyncClient(self.name, timeout=CONNECT_TIMEOUT)
            await client.start()
            self.client = client
        return self.client

    async def _drop(self) -> None:
        client, self.client = self.client, None
        self._early = None  # sent on the link that goes
        if client is not None:
            try:
                await client.aclose()
            except (LinkError, OSError):
                pass

    def _exchange_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _unreachable(self, exc: BaseException) -> LinkFailure:
        return LinkFailure(
            "LinkServerUnavailable",
            f"no linkserver answered at {self.name}: {exc}. Start one on this machine with "
            "'linkserver serve' (shared mode: every notebook sees the same definitions), or "
            "point this kernel at another with 'linkserver jupyter install --server "
            "PORT@HOST'; then run the cell again.",
        )

    async def run_cell(self, code: str, deliver: Callable[[Event], None]) -> None:
        """Evaluate one cell; hand every event to ``deliver``, ending with CellEnd or LinkFailure."""
        async with self._exchange_lock():
            try:
                client = await self._connect()
            except (LinkError, OSError, ValueError) as exc:
                deliver(self._unreachable(exc))
                return
            try:
                await self._run_cell(client, code, deliver)
            except (LinkError, OSError) as exc:
                await self._drop()
                deliver(LinkFailure(
                    "LinkError",
                    f"the link to the linkserver at {self.name} failed: {exc}. The next cell "
                    "connects again (a shared server keeps its definitions; a pool kernel is "
                    "a new one).",
                ))
            except Exception as exc:  # a bug here must still answer the cell
                await self._drop()
                deliver(LinkFailure("InternalError", f"linkserver-jupyter failed: "
                                    f"{type(exc).__name__}: {exc}; the next cell reconnects"))
            finally:
                self._running = False
                self._abort_wanted = False

    async def _run_cell(self, client: AsyncClient, code: str,
                        deliver: Callable[[Event], None]) -> None:
        link = client.link
        request = EnterTextPacket(code)
        early, self._early = self._early, None  # on this link: _drop forgets it with its link
        if early != code:
            await link.put(request.to_expr())
        self._running = True
        if self._abort_wanted:  # the interrupt overtook the request
            await link.abort()
        held: list[Event] = []  # once a result waits for its forms, keep the order

        def translate(event: gather.Event) -> None:
            cell_event: Event | None = None
            if isinstance(event, gather.Printed):
                cell_event = Stream("stdout", event.text + "\n")
            elif isinstance(event, gather.Issued):
                cell_event = Stream("stderr", event.message.text + "\n")
            elif isinstance(event, gather.Result):
                cell_event = Result(event.line, event.text, f"//{event.form}" if event.form else "")
            elif isinstance(event, gather.BadSyntax):  # the cell itself did not parse
                name = event.messages[-1].name if event.messages else "Syntax::sntxf"
                text = "\n".join(m.text for m in event.messages) or (
                    f"syntax error at character {event.position}")
                cell_event = BadSyntax(name, text)
            if cell_event is not None:
                self._forward(cell_event, held, deliver)

        async def ask(event: gather.InputRequest) -> str:
            # Asked at once, even when results are held: the user must see the prompt.
            answer: concurrent.futures.Future[str] = concurrent.futures.Future()
            deliver(InputRequest(event.prompt, answer))
            return await asyncio.wrap_future(answer)

        outcome = await gather.aread_answer(
            gather.Gatherer.for_request(request), lambda: link.get(None), link.put,
            on_event=translate, on_input=ask)
        self._running = False
        if held:
            await self._add_forms(client, held)
            for event in held:
                deliver(event)
        deliver(CellEnd(outcome.line))

    @staticmethod
    def _forward(event: Event, held: list[Event], deliver: Callable[[Event], None]) -> None:
        """Deliver ``event`` now, or hold it behind a result that waits for its forms."""
        if held or (isinstance(event, Result) and event.needs_forms()):
            held.append(event)
        else:
            deliver(event)

    async def _add_forms(self, client: AsyncClient, events: list[Event]) -> None:
        """Fill in text/plain (InputForm) and rich forms of the held results."""
        results = [e for e in events if isinstance(e, Result) and e.needs_forms()]
        lines = [r.line for r in results if r.line is not None]
        answer = await client.evaluate_wrap(_forms_request(lines))
        forms = answer.result if isinstance(answer.result, (tuple, list)) else ()
        for result, form in zip(results, forms):
            data = _rich_data(form)
            if data is not None:
                result.data = data

    async def abort(self) -> None:
        """Abort the running cell's evaluation (it answers ``$Aborted``)."""
        if self.client is None:
            return
        if self._running:
            await self.client.abort()
        elif self._lock is not None and self._lock.locked():
            self._abort_wanted = True

    async def query(self, expr: str) -> Any:
        """Evaluate a short query preemptively; None if it could not be answered."""
        async with self._exchange_lock():
            try:
                client = await self._connect()
                answer = await client.evaluate_wrap(wlexpr(expr), timeout=QUERY_TIMEOUT,
                                                    preemptive=True)
            except (LinkError, OSError, ValueError):
                await self._drop()
                return None
            return answer.result

    async def close(self) -> None:
        """Leave the server."""
        await self._drop()


# --------------------------------------------------------------- Jupyter side


def _hand_over(answer: concurrent.futures.Future[str], asked: asyncio.Future[str]) -> None:
    """Give the Input[] question's answer (or its failure) to the cell that waits for it."""
    if asked.cancelled():
        answer.cancel()
    elif (error := asked.exception()) is not None:
        answer.set_exception(error)
    else:
        answer.set_result(asked.result())


class LinkserverKernel(WireKernel):
    """A Jupyter kernel whose evaluations happen on a linkserver."""

    implementation = "linkserver-jupyter"
    implementation_version = __version__
    language_info = {
        "name": "Wolfram Language",
        "version": "",
        "mimetype": "text/x-mathematica",
        "file_extension": ".wl",
        "pygments_lexer": "mathematica",
        "codemirror_mode": "mathematica",
    }

    #: the server's address; set by :func:`main` before the kernel starts (None: the default)
    server: str | None = None

    def __init__(self, connection: dict[str, Any]) -> None:
        super().__init__(connection)
        name = self.server or os.environ.get("LINKSERVER_ADDRESS") or default_address(
            DEFAULT_ADDRESS)
        self._loop: asyncio.AbstractEventLoop | None = None  # the shell's, where the link lives
        self._door = Door(name)
        self.banner = (f"Wolfram Language on the linkserver at {name} "
                       f"(linkserver-jupyter {__version__})")
        self._history: HistoryStore | None = None
        # Inputs are written on a thread of their own (sqlite releases the GIL while it
        # writes), in order, so that no cell waits for the disk; reads wait for them.
        self._history_writer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="jupyter-history")
        self._history_written: concurrent.futures.Future[None] | None = None
        self._history_lock = threading.Lock()
        self._history_session = 0

    def _store(self) -> HistoryStore | None:
        """The user's history of inputs, opened on first use (None if it cannot be)."""
        with self._history_lock:  # the writer thread and the loop both come here
            if self._history is None:
                try:
                    self._history = HistoryStore()
                    self._history_session = self._history.new_session(self._door.name)
                except (OSError, sqlite3.Error) as exc:
                    self.log.warning("linkserver-jupyter: no history of inputs: %s", exc)
                    return None
            return self._history

    @property
    def server_name(self) -> str:
        """The address of the server this kernel forwards to."""
        return self._door.name

    # -- plumbing

    async def _on_loop(self, coro: Any) -> Any:
        """Run a Door coroutine on the shell's loop (the caller is a shell handler)."""
        self._loop = asyncio.get_running_loop()
        return await coro

    def _abort(self) -> None:
        """Abort the running evaluation; safe from any thread and from a signal handler."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._door.abort(), loop)

    def early(self, message: Any) -> None:
        """A cell goes to the server before its busy status and execute_input go out."""
        if message.msg_type != "execute_request":
            return
        code = str(message.content.get("code", ""))
        if code.strip() and _PAGER.fullmatch(code) is None:  # what do_execute runs as a cell
            self._door.send_early(code)

    def _publish(self, msg_type: str, content: dict[str, Any]) -> None:
        self.send_response(self.iopub_socket, msg_type, content)

    def _error(self, ename: str, evalue: str, traceback: list[str] | None = None) -> dict[str, Any]:
        """Publish an error output; return the matching execute_reply content."""
        content = {"ename": ename, "evalue": evalue, "traceback": traceback or [evalue]}
        self._publish("error", content)
        return {"status": "error", "execution_count": self.execution_count, **content}

    # -- execute

    async def do_execute(
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
        allow_stdin: bool = False,
    ) -> dict[str, Any]:
        """Evaluate a cell on the server; results, prints and messages go to iopub."""
        self._allow_stdin = allow_stdin
        if not code.strip():
            return {"status": "ok", "execution_count": self.execution_count,
                    "payload": [], "user_expressions": {}}
        asked = _PAGER.fullmatch(code)
        if asked is not None:
            return await self._page(asked.group(2), long=asked.group(1) == "??")
        loop = asyncio.get_running_loop()
        self._loop = loop
        error: dict[str, Any] | None = None
        aborted = False
        last: str | None = None  # the text of the cell's last result, for the history
        # A cell has one execute_result, its last result; a result that anything follows
        # (another result, printed text) is shown as display_data when that comes.
        pending: Result | None = None

        def deliver(event: Event) -> None:
            # Called by run_cell as each event comes: everything is published at once,
            # in this turn of the loop; only a question for the frontend waits.
            nonlocal error, aborted, last, pending
            if pending is not None and isinstance(event, (Stream, Result)):
                self._publish_result(pending, final=False)
                pending = None
            if isinstance(event, Stream):
                if not silent:
                    self._publish("stream", {"name": event.name, "text": event.text})
            elif isinstance(event, Result):
                last = event.text
                if event.text == "$Aborted":
                    aborted = True
                elif not silent:
                    pending = event
            elif isinstance(event, BadSyntax):
                error = self._error(event.name, event.text)
            elif isinstance(event, InputRequest):
                asyncio.ensure_future(self._ask(event.prompt)).add_done_callback(
                    functools.partial(_hand_over, event.answer))
            elif isinstance(event, LinkFailure):
                error = self._error(event.ename, event.evalue)
            elif event.line is not None:  # CellEnd
                self.execution_count = event.line

        try:
            await self._door.run_cell(code, deliver)
        finally:
            if pending is not None:
                self._publish_result(pending, final=True)
        if aborted and error is None:
            error = self._error("$Aborted", "the evaluation was aborted", ["$Aborted"])
        if store_history and not silent:
            line = self.execution_count

            def remember() -> None:
                self._history_written = self._history_writer.submit(
                    self._remember, code, last, line)

            # Once the reply and the idle status are out: the writer's thread
            # would take the interpreter from them.
            loop.call_soon(remember)
        if error is not None:
            error["execution_count"] = self.execution_count
            return error
        return {"status": "ok", "execution_count": self.execution_count, "payload": [],
                "user_expressions": {}}

    def _remember(self, code: str, output: str | None, line: int) -> None:
        store = self._store()
        if store is not None:
            try:
                store.append(self._history_session, line, code, output)
            except sqlite3.Error as exc:
                self.log.warning("linkserver-jupyter: an input was not kept: %s", exc)

    async def _page(self, name: str, *, long: bool) -> dict[str, Any]:
        """``?name`` and ``??name``: the kernel's Information as a page; ``??`` adds every
        definition (``Definition``) the short form leaves out."""
        literal = _wl_string(name)
        answer = await self._on_loop(self._door.query(
            f"If[Names[{literal}] === {{}}, $Failed, Replace[ToExpression[{literal}, InputForm, "
            f"Hold], Hold[s_] :> {{ToString[Information[s, LongForm -> False]], "
            f"ToString[Definition[s]]}}]]"))
        if not (isinstance(answer, (tuple, list)) and len(answer) == 2
                and all(isinstance(part, str) for part in answer)):
            return self._error("Information::notfound", f"no symbol {name} is known")
        short, definition = (str(part).strip("\n") for part in answer)
        text = short
        if long:
            more = [part for part in definition.split("\n\n") if part and part not in short]
            text = "\n\n".join([short, *more])
        return {"status": "ok", "execution_count": self.execution_count,
                "payload": [{"source": "page", "data": {"text/plain": text}, "start": 0}],
                "user_expressions": {}}

    async def do_history(
        self, hist_access_type: str = "tail", output: bool = False, raw: bool = True,
        session: int | None = None,
        start: int | None = None, stop: int | None = None, n: int | None = None,
        pattern: str | None = None, unique: bool = False, **more: Any,
    ) -> dict[str, Any]:
        """Jupyter's history_request (tail, range, search) from the shared history store."""
        written = self._history_written
        if written is not None:
            # This notebook's last input is there too; a write that failed was logged.
            await asyncio.wait([asyncio.wrap_future(written)])
        store = self._store()
        if store is None:
            return {"status": "ok", "history": []}
        if hist_access_type == "tail":
            found = store.tail(n or 10, unique=unique)
        elif hist_access_type == "range":
            found = store.range(self._history_session if session is None else session,
                                start or 0, stop)
        elif hist_access_type == "search":
            found = store.search(pattern or "*", n, unique=unique)
        else:
            return {"status": "error", "history": [], "ename": "ValueError",
                    "evalue": f"no history of the kind {hist_access_type!r}", "traceback": []}
        if not output:
            return {"status": "ok", "history": [list(entry) for entry in found]}
        outputs = store.outputs(found)
        return {"status": "ok", "history": [
            [s, line, [source, outputs.get((s, line))]] for s, line, source in found]}

    def _publish_result(self, result: Result, *, final: bool) -> None:
        """The cell's last result as its ``execute_result``; an earlier one as ``display_data``."""
        data = result.data or {"text/plain": result.text}
        if not final:
            self._publish("display_data", {"data": data, "metadata": {}, "transient": {}})
            return
        count = result.line if result.line is not None else self.execution_count
        self._publish("execute_result", {"execution_count": count, "data": data, "metadata": {}})

    async def _ask(self, prompt: str) -> str:
        """Answer ``Input[prompt]`` from the frontend, or ``$Canceled`` if it cannot ask."""
        try:
            return await self.ask(prompt)
        except StdinNotImplemented:
            return "$Canceled"

    # -- interrupts: Jupyter's interrupt_request or SIGINT

    def interrupt(self) -> None:
        """Abort the running evaluation; the kernel lives on."""
        self._abort()

    # -- completion, inspection, is_complete

    async def do_complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        """Names of the kernel's symbols that start with the word before the cursor."""
        match = _NAME_BEFORE.search(code[:cursor_pos])
        matches: list[str] = []
        start = cursor_pos
        if match is not None:
            prefix = match.group(0)
            start = match.start()
            found = await self._on_loop(
                self._door.query(f"Names[{_wl_string(prefix + '*')}]"))
            if isinstance(found, (tuple, list)):
                matches = sorted(str(n) for n in found if isinstance(n, str))
        return {"status": "ok", "matches": matches, "cursor_start": start,
                "cursor_end": cursor_pos, "metadata": {}}

    async def do_inspect(
        self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
    ) -> dict[str, Any]:
        """The usage message of the symbol at the cursor."""
        before = _NAME_BEFORE.search(code[:cursor_pos])
        after = _NAME_AFTER.match(code[cursor_pos:])
        name = (before.group(0) if before else "") + (after.group(0) if after else "")
        reply: dict[str, Any] = {"status": "ok", "data": {}, "metadata": {}, "found": False}
        if not name or not _NAME.fullmatch(name):
            return reply
        # Only symbols that exist: asking about a new name must not create it.
        literal = _wl_string(name)
        usage = await self._on_loop(self._door.query(
            f"If[Names[{literal}] === {{}}, $Failed, Replace[ToExpression[{literal}, "
            f'InputForm, Hold], Hold[s_] :> MessageName[s, "usage"]]]'
        ))
        if isinstance(usage, str):
            reply["data"] = {"text/plain": f"{name}\n\n{usage}"}
            reply["found"] = True
        return reply

    async def do_is_complete(self, code: str) -> dict[str, Any]:
        """Open brackets, strings or comments mean more input is coming."""
        if balanced(code):
            return {"status": "complete"}
        return {"status": "incomplete", "indent": ""}

    # -- shutdown

    async def do_shutdown(self, restart: bool) -> dict[str, Any]:
        """Leave the server (the server and its kernel live on)."""
        self._history_writer.shutdown(wait=True)
        if self._history is not None:
            self._history.close()
            self._history = None
        try:
            await asyncio.wait_for(self._door.close(), 5)
        except (asyncio.TimeoutError, LinkError, OSError):
            pass
        return {"status": "ok", "restart": restart}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the kernel: ``linkserver-jupyter [--server NAME] -f CONNECTION_FILE``."""
    parser = argparse.ArgumentParser(
        prog="linkserver-jupyter",
        description="A Jupyter kernel that evaluates on a linkserver. Jupyter starts it "
        "(`linkserver jupyter install` writes its kernel spec); it is not run by hand.",
    )
    parser.add_argument("--server", default=None, metavar="PORT@HOST[/POOL]",
                        help="the linkserver to evaluate on (default: $LINKSERVER_ADDRESS, "
                        "else the newest server this user runs)")
    parser.add_argument("-f", "--connection-file", required=True, metavar="FILE",
                        help="the connection file Jupyter wrote for this kernel")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    LinkserverKernel.server = args.server or None
    LinkserverKernel(read_connection_file(args.connection_file)).run()


if __name__ == "__main__":
    main()
