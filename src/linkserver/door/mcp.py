"""The MCP door: Model Context Protocol tools whose sessions are linkserver kernels.

An agent host starts ``linkserver mcp`` (stdio) or reaches ``linkserver mcp
--http PORT`` (streamable HTTP, the server's key as a bearer token). The door
holds no Wolfram Language state: :class:`~linkserver.door.mcp_sessions.Sessions`
maps each session name to a kernel of the server and keeps the time limit;
this module only translates -- tool schemas in, :class:`Answer` out as MCP
content (text, an image, SVG text) and structured content. It needs the
official MCP SDK (``pip install 'linkserver[mcp]'``); see docs/agents.md.

=============  =====================================================================
tool           does
=============  =====================================================================
evaluate       ``code`` in ``session`` (default ``"default"``) within ``timeout``
abort          stops a session's running evaluation; definitions kept
sessions       lists the sessions: kernel id, mode, running, evaluations
end_session    closes a session; its pool kernel and definitions are discarded
restart        a fresh kernel for a session; its definitions are lost
=============  =====================================================================
"""

from __future__ import annotations

import base64
import hmac
import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext

from .. import __version__
from .. import render as render_svg
from .mcp_sessions import Answer, Limits, SessionError, Sessions

__all__ = ["TOOLS", "bearer_guard", "build_server", "render", "run_http", "run_stdio"]

_SESSION_PROPERTY = {
    "type": "string",
    "description": "A name you choose for a Wolfram Language session (1-64 letters, digits, "
    "'_', '.', '-'); each keeps its own definitions on its own kernel. Omit it for the "
    "session named \"default\".",
}

TOOLS: list[types.Tool] = [
    types.Tool(
        name="evaluate",
        description=(
            "Evaluate Wolfram Language code on a linkserver kernel and return the result as "
            "InputForm text, the Print output, the messages (name and text), and graphics "
            "as an image with their SVG. Definitions persist in the session between calls. "
            "Several statements may be separated by newlines or ';' (the last one's value "
            "is returned). At 'timeout' the evaluation is aborted (definitions kept); one "
            "that ignores the abort has its kernel ended and the session restarted "
            "(definitions lost) -- the answer's status says which."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "code": {"type": "string",
                         "description": "Wolfram Language input, e.g. \"Integrate[x^2, x]\"."},
                "session": _SESSION_PROPERTY,
                "timeout": {"type": "number", "exclusiveMinimum": 0,
                            "description": "Seconds the evaluation may run (default 60; the "
                            "door caps it at its own maximum)."},
            },
            "required": ["code"],
            "additionalProperties": False,
        },
    ),
    types.Tool(
        name="abort",
        description="Abort the evaluation running in a session. It answers $Aborted and the "
        "session keeps its definitions.",
        input_schema={"type": "object", "properties": {"session": _SESSION_PROPERTY},
                      "additionalProperties": False},
    ),
    types.Tool(
        name="sessions",
        description="List the sessions: their kernel id, mode (pool: a kernel each; shared: "
        "one kernel for all), whether they are running, and how many evaluations they ran.",
        input_schema={"type": "object", "properties": {}, "additionalProperties": False},
    ),
    types.Tool(
        name="end_session",
        description="End a session: its kernel and every definition in it are discarded.",
        input_schema={"type": "object", "properties": {"session": _SESSION_PROPERTY},
                      "required": ["session"], "additionalProperties": False},
    ),
    types.Tool(
        name="restart",
        description="Restart a session on a fresh kernel. Every definition it had is lost; "
        "use it when a session is in a bad state.",
        input_schema={"type": "object", "properties": {"session": _SESSION_PROPERTY},
                      "required": ["session"], "additionalProperties": False},
    ),
]

def image_of(svg: str, max_pixels: int) -> tuple[types.ImageContent, str | None]:
    """A PNG image of ``svg``, scaled down to ``max_pixels``, and a note if it was scaled.

    Should resvg fail to draw it, the SVG itself (resized) is the image, and the note
    says why.
    """
    size = render_svg.fit(*render_svg.svg_size(svg), max_pixels)
    try:
        png = render_svg.svg_to_png(svg, max_pixels=max_pixels)
    except ValueError as exc:
        data = render_svg.resize_svg(svg, size.width, size.height).encode("utf-8")
        note = f"no PNG could be drawn ({exc}); the image is the SVG itself"
        return types.ImageContent(data=base64.b64encode(data).decode("ascii"),
                                  mime_type="image/svg+xml"), note
    return types.ImageContent(data=base64.b64encode(png).decode("ascii"),
                              mime_type="image/png"), size.note


def render(answer: Answer, limits: Limits) -> types.CallToolResult:
    """An :class:`Answer` as an MCP tool result: a text summary an agent reads first,
    an image and its SVG for graphics, and the whole answer as structured content."""
    content: list[types.ContentBlock] = []
    image = None
    if answer.svg is not None:
        image, note = image_of(answer.svg, limits.max_image_pixels)
        if note:
            answer.notes.append(note)
    lines = [f"status: {answer.status}"]
    lines += [f"Print: {line}" for line in answer.printed]
    lines += [f"Message: {m.text}" if m.text.startswith(m.name) else f"Message {m.name}: {m.text}"
              for m in answer.messages]
    if answer.result is not None:
        lines.append(f"Out: {answer.result}")
    lines += [f"Note: {note}" for note in answer.notes]
    kernel = f"{answer.mode} kernel {answer.kernel}" if answer.kernel else "no kernel"
    lines.append(f"(session {answer.session!r}, {kernel}, {answer.seconds:.2f} s)")
    content.append(types.TextContent(text="\n".join(lines)))
    structured = answer.to_json()
    if image is not None and answer.svg is not None:
        content.append(image)
        content.append(types.TextContent(text=answer.svg))
        structured["image_mime_type"] = image.mime_type
        structured["svg"] = answer.svg
    return types.CallToolResult(content=content, structured_content=structured,
                                is_error=answer.status not in ("ok", "messages"))


def _text(text: str, structured: dict[str, Any], *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)],
                                structured_content=structured, is_error=error)


def build_server(sessions: Sessions) -> Server[Any]:
    """The MCP server whose tools drive ``sessions``."""

    async def list_tools(ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def call_tool(ctx: ServerRequestContext[Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}
        try:
            return await _call(sessions, params.name, args)
        except SessionError as exc:
            return _text(str(exc), {"error": str(exc)}, error=True)

    return Server("linkserver", version=__version__,
                  instructions="Wolfram Language evaluation on linkserver kernels. Use "
                  "'evaluate' with a 'session' name of your own to keep definitions apart; "
                  "every answer says its status (ok, messages, aborted, timeout, restarted, "
                  "busy, failed).",
                  on_list_tools=list_tools, on_call_tool=call_tool)


async def _call(sessions: Sessions, name: str, args: dict[str, Any]) -> types.CallToolResult:
    session = args.get("session")
    if name == "evaluate":
        timeout = args.get("timeout")
        if timeout is not None and not isinstance(timeout, (int, float)):
            raise SessionError("timeout must be a number of seconds")
        answer = await sessions.evaluate(args.get("code", ""), session, timeout)
        return render(answer, sessions.limits)
    if name == "abort":
        said = await sessions.abort(session)
        return _text(said, {"session": session or "default", "said": said})
    if name == "sessions":
        listed = sessions.listing()
        text = json.dumps(listed, indent=1) if listed else "no sessions yet"
        return _text(text, {"sessions": listed})
    if name == "end_session":
        said = await sessions.end(session)
        return _text(said, {"session": session, "said": said})
    if name == "restart":
        try:
            said = await sessions.restart(session)
        except SessionError:
            raise
        except Exception as exc:  # the server is unreachable: say so, as every tool does
            said = f"the session could not be restarted: {exc}"
            return _text(said, {"session": session, "said": said}, error=True)
        return _text(said, {"session": session, "said": said})
    raise SessionError(f"there is no tool {name!r}; list the tools to see them")


async def run_stdio(sessions: Sessions) -> None:
    """Serve MCP on this process's stdin and stdout until the host closes them."""
    from mcp.server.stdio import stdio_server

    server = build_server(sessions)
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        await sessions.aclose()


ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def bearer_guard(app: ASGIApp, key: bytes) -> ASGIApp:
    """Wrap an ASGI app: HTTP requests must carry ``Authorization: Bearer <key>``.

    The comparison takes the same time whatever the token (``hmac.compare_digest``).
    """
    expected = b"Bearer " + key

    async def guarded(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                body = (b'{"error": "this MCP endpoint needs the linkserver key as a bearer '
                        b'token: Authorization: Bearer <key>"}')
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b'Bearer realm="linkserver"')]})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


async def run_http(sessions: Sessions, *, port: int, host: str, key: bytes | None,
                   on_listening: Callable[[str], None] | None = None) -> None:
    """Serve MCP's streamable HTTP transport at ``http://host:port/mcp`` until cancelled.

    Requests must carry ``key`` as a bearer token (:func:`bearer_guard`).
    """
    import uvicorn

    server = build_server(sessions)
    app: ASGIApp = server.streamable_http_app(host=host)
    if key is not None:  # None: a keyless server on loopback (the command checked)
        app = bearer_guard(app, key)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    # Bound here, so the address (port 0 picks one) is known before serving starts.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
        if on_listening is not None:
            bound = sock.getsockname()[1]
            shown = f"[{host}]" if family == socket.AF_INET6 else host
            on_listening(f"http://{shown}:{bound}/mcp")
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()
        await sessions.aclose()
