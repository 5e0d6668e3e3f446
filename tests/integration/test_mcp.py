"""The MCP door (``linkserver mcp``), driven by the MCP SDK's own client as an agent host drives it.

One pool-mode ``linkserver serve`` (persistent kernels kept 60 s) for the
module, its connection file in a temporary runtime directory where the door
finds the key by itself; each test starts its own door over stdio (or HTTP)
and talks to it with ``mcp.Client``. A shared-mode server is started only for
the shared-mode test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import httpx2  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from tests.procs import alive, free_port, stop  # noqa: E402
from tests.timeouts import TIMEOUT, wait_until  # noqa: E402

ROOT = Path(__file__).parents[2]
SERVER_START = TIMEOUT * 6  # the server loads Mathics3 before it listens
GRACE = 2.0  # the doors' grace period here: short, so the stuck-kernel test is quick
CALL_BOUND = TIMEOUT * 3  # no tool call of these tests may take longer (timeout + grace + slack)


def _serve(runtime: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", LINKSERVER_RUNTIME_DIR=str(runtime))
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", str(free_port()),
         "--log-level", "warning", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True, env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + SERVER_START
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"listening on (\d+@[\w.:\[\]]+)", line)
        if match:
            return proc, match.group(1)
    stop(proc)
    raise AssertionError("the linkserver did not start")



class Served:
    """A running server: its address and the runtime directory holding its connection file."""

    def __init__(self, address: str, runtime: Path) -> None:
        self.address = address
        self.runtime = runtime

    def env(self) -> dict[str, str]:
        return {"LINKSERVER_RUNTIME_DIR": str(self.runtime),
                "PYTHONPATH": os.environ.get("PYTHONPATH", "")}

    def key(self) -> str:
        (path,) = self.runtime.glob("server-*.json")
        key: str = json.loads(path.read_text())["key"]
        return key


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    runtime = tmp_path_factory.mktemp("runtime")
    proc, address = _serve(runtime, "--mode", "pool", "--pool-size", "4", "--pool-min", "1",
                           "--keepalive", "60")
    try:
        yield Served(address, runtime)
    finally:
        stop(proc)


def _door(served: Served, *args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "linkserver", "mcp", "--server", served.address, "--grace", str(GRACE),
              *args],
        env=served.env(), cwd=str(ROOT))


def _run(served: Served, scenario: Callable[[Client], Awaitable[None]], *args: str) -> None:
    """Start a door over stdio, connect the SDK's client to it, and play ``scenario``."""

    async def main() -> None:
        async with Client(_door(served, *args), read_timeout_seconds=CALL_BOUND) as client:
            await scenario(client)

    asyncio.run(main())


async def _evaluate(client: Client, code: str, **more: Any) -> dict[str, Any]:
    result = await client.call_tool("evaluate", {"code": code, **more})
    assert isinstance(result.structured_content, dict)
    data: dict[str, Any] = result.structured_content
    data["_text"] = result.content[0].text  # type: ignore[union-attr]
    data["_content"] = result.content
    data["_is_error"] = result.is_error
    return data


# ------------------------------------------------------------------- the tools


def test_tools_are_listed_with_schemas(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {"evaluate", "abort", "sessions", "end_session", "restart"}
        evaluate = tools["evaluate"].input_schema
        assert evaluate["type"] == "object"
        assert evaluate["required"] == ["code"]
        assert set(evaluate["properties"]) == {"code", "session", "timeout"}
        for tool in tools.values():
            assert tool.description and len(tool.description) > 30

    _run(pool, scenario)


def test_one_plus_one(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        answer = await _evaluate(client, "1+1")
        assert answer["status"] == "ok" and answer["result"] == "2"
        assert "Out: 2" in answer["_text"]
        assert answer["mode"] == "pool" and answer["kernel"]
        assert not answer["_is_error"]
        # InputForm text, not OutputForm: an agent can paste it back.
        answer = await _evaluate(client, "Integrate[x^2, x]")
        assert answer["result"] == "x^3/3"

    _run(pool, scenario)


def test_a_session_keeps_its_definitions_and_another_does_not_see_them(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        await _evaluate(client, "x = 5", session="a")
        assert (await _evaluate(client, "x", session="a"))["result"] == "5"
        other = await _evaluate(client, "x", session="b")
        assert other["result"] == "x"
        listed = (await client.call_tool("sessions", {})).structured_content
        assert isinstance(listed, dict)
        kernels = {s["session"]: s["kernel"] for s in listed["sessions"]}
        assert set(kernels) == {"a", "b"} and kernels["a"] != kernels["b"]

        ended = await client.call_tool("end_session", {"session": "b"})
        assert "discarded" in ended.content[0].text  # type: ignore[union-attr]
        restarted = await client.call_tool("restart", {"session": "a"})
        assert "lost" in restarted.content[0].text  # type: ignore[union-attr]
        again = await _evaluate(client, "x", session="a")
        assert again["result"] == "x" and again["kernel"] != kernels["a"]
        listed = (await client.call_tool("sessions", {})).structured_content
        assert isinstance(listed, dict)
        assert [s["session"] for s in listed["sessions"]] == ["a"]

    _run(pool, scenario)


def test_print_and_messages_come_back(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        answer = await _evaluate(client, 'Print["hello"]; Print["world"]; 1/0')
        assert answer["printed"] == ["hello", "world"]
        assert [m["name"] for m in answer["messages"]] == ["Power::infy"]
        assert "Infinite expression" in answer["messages"][0]["text"]
        assert answer["status"] == "messages" and answer["result"] == "ComplexInfinity"
        assert "Print: hello" in answer["_text"] and "Power::infy" in answer["_text"]
        bad = await _evaluate(client, "1 +* 2")
        assert bad["result"] == "$Failed"
        assert any(m["name"].startswith("Syntax::") for m in bad["messages"])

    _run(pool, scenario)


def test_graphics_come_back_as_an_image_with_svg(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        answer = await _evaluate(client, "Graphics[Circle[]]")
        images = [c for c in answer["_content"] if c.type == "image"]
        assert len(images) == 1
        assert images[0].mime_type == "image/png"
        assert _drawn(base64.b64decode(images[0].data)), "the PNG is blank"
        texts = [c.text for c in answer["_content"] if c.type == "text"]
        assert any("<svg" in text and "ellipse" in text for text in texts)
        assert answer["graphics"] is True and "<svg" in answer["svg"]

    _run(pool, scenario)


# ------------------------------------------------------------- time limits


def test_a_timeout_aborts_and_the_session_keeps_its_definitions(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        await _evaluate(client, "y = 7", session="t")
        answer = await _evaluate(client, "Do[Null, {10^10}]", session="t", timeout=2)
        assert answer["status"] == "timeout" and answer["result"] == "$Aborted"
        assert answer["_is_error"]
        assert "keeps its definitions" in answer["_text"]
        assert (await _evaluate(client, "y", session="t"))["result"] == "7"
        paused = await _evaluate(client, "Pause[60]; 1", session="t", timeout=1)
        assert paused["status"] == "timeout"

    _run(pool, scenario)


def test_an_evaluation_that_ignores_its_abort_restarts_the_session(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        before = await _evaluate(client, "z = 3", session="stuck")
        pid = int((await _evaluate(client, "$ProcessID", session="stuck"))["result"])
        # One long integer power inside GMP/CPython: no abort is looked at until it ends.
        answer = await _evaluate(client, "Mod[3^(4*10^8), 7]", session="stuck", timeout=1)
        assert answer["status"] == "restarted", answer
        assert "definitions are lost" in answer["_text"]
        after = await _evaluate(client, "z", session="stuck")
        assert after["result"] == "z" and after["kernel"] != before["kernel"]
        # The stuck kernel was ended, not left burning a CPU in the pool.
        assert await asyncio.to_thread(wait_until, lambda: not alive(pid), TIMEOUT)

    _run(pool, scenario)


def test_a_killed_kernel_is_one_answer(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        pid = int((await _evaluate(client, "$ProcessID", session="k"))["result"])
        await _evaluate(client, "w = 1", session="k")
        running = asyncio.ensure_future(_evaluate(client, "Pause[30]; 2", session="k"))
        await _until_running(client, "k")
        os.kill(pid, signal.SIGKILL)
        answer = await running
        assert answer["status"] == "restarted"
        assert "died" in answer["_text"] and "definitions are lost" in answer["_text"]
        fresh = await _evaluate(client, "{w, $ProcessID}", session="k")
        assert fresh["result"].startswith("{w, ") and fresh["result"] != f"{{w, {pid}}}"

    _run(pool, scenario)


async def _until_running(client: Client, session: str) -> None:
    """Wait until the door says ``session`` is evaluating (bounded by TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        listed = (await client.call_tool("sessions", {})).structured_content
        assert isinstance(listed, dict)
        if any(s["session"] == session and s["running"] for s in listed["sessions"]):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {session} never ran")


def test_the_abort_tool_stops_an_evaluation_and_keeps_definitions(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        await _evaluate(client, "v = 11", session="ab")
        idle = await client.call_tool("abort", {"session": "ab"})
        assert "nothing to abort" in idle.content[0].text  # type: ignore[union-attr]
        running = asyncio.ensure_future(_evaluate(client, "Do[Null, {10^10}]", session="ab"))
        await _until_running(client, "ab")
        said = await client.call_tool("abort", {"session": "ab"})
        assert "abort sent" in said.content[0].text  # type: ignore[union-attr]
        answer = await running
        assert answer["status"] == "aborted" and answer["result"] == "$Aborted"
        assert (await _evaluate(client, "v", session="ab"))["result"] == "11"

    _run(pool, scenario)


def test_a_second_call_on_a_running_session_is_busy_and_aborts_nothing(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        first = asyncio.ensure_future(
            _evaluate(client, "Pause[3]; u = 9", session="busy", timeout=CALL_BOUND))
        await _until_running(client, "busy")
        second = await _evaluate(client, "1+1", session="busy", timeout=0.5)
        assert second["status"] == "busy" and "abort" in second["_text"]
        answer = await first
        assert answer["status"] == "ok" and answer["result"] == "9"
        assert (await _evaluate(client, "u", session="busy"))["result"] == "9"

    _run(pool, scenario)


def test_results_prints_and_images_are_capped(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        big = await _evaluate(client, "Range[1000]")
        assert len(big["result"]) == 100 and big["result_chars"] > 1000
        assert any("characters of the result were cut" in n for n in big["notes"])
        printed = await _evaluate(client, 'Print[StringRepeat["ab", 100]]; 1')
        assert sum(len(p) for p in printed["printed"]) == 50
        assert any("printed text were cut" in n for n in printed["notes"])
        image = await _evaluate(client, "Graphics[Circle[]]")
        assert any("scaled" in n and "10,000" in n for n in image["notes"])

    _run(pool, scenario, "--max-result-chars", "100", "--max-print-chars", "50",
         "--max-image-pixels", "10000")


def test_bad_arguments_are_answers_not_crashes(pool: Served) -> None:
    async def scenario(client: Client) -> None:
        bad = await client.call_tool("evaluate", {"code": "1", "session": "no spaces please"})
        assert bad.is_error and "session name" in bad.content[0].text  # type: ignore[union-attr]
        missing = await client.call_tool("end_session", {"session": "never-was"})
        assert missing.is_error and "no session" in missing.content[0].text  # type: ignore[union-attr]
        assert (await _evaluate(client, "2+2"))["result"] == "4"  # the door lives on

    _run(pool, scenario)


# ---------------------------------------------------------------- HTTP


def test_http_serves_tools_behind_the_servers_key(pool: Served) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkserver", "mcp", "--server", pool.address, "--http", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True, env=dict(os.environ, **pool.env(), PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        url = match.group(1)
        key = pool.key()

        async def main() -> None:
            hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"}}}
            headers = {"Accept": "application/json, text/event-stream"}
            async with httpx2.AsyncClient(timeout=TIMEOUT) as raw:
                for token in (None, "wrong-key-of-enough-length"):
                    sent = dict(headers, **({"Authorization": f"Bearer {token}"} if token else {}))
                    refused = await raw.post(url, json=hello, headers=sent)
                    assert refused.status_code == 401
                    assert "bearer" in refused.text.lower()
            authorised = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"},
                                            timeout=CALL_BOUND)
            async with authorised, Client(streamable_http_client(url, http_client=authorised),
                                          read_timeout_seconds=CALL_BOUND) as client:
                tools = {tool.name for tool in (await client.list_tools()).tools}
                assert "evaluate" in tools
                answer = await _evaluate(client, "1+1", session="web")
                assert answer["result"] == "2"
                timed = await _evaluate(client, "Do[Null, {10^10}]", session="web", timeout=1)
                assert timed["status"] == "timeout"

        asyncio.run(main())
    finally:
        stop(proc)


# ---------------------------------------------------------------- shared mode


def test_in_shared_mode_every_session_is_the_shared_kernel(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    runtime = tmp_path_factory.mktemp("shared-runtime")
    proc, address = _serve(runtime, "--mode", "shared")
    try:
        served = Served(address, runtime)

        async def scenario(client: Client) -> None:
            first = await _evaluate(client, "q = 42", session="one")
            other = await _evaluate(client, "q", session="two")
            assert other["result"] == "42" and other["mode"] == "shared"
            assert first["kernel"] == other["kernel"]
            assert "shared mode" in other["_text"]
            refused = await client.call_tool("restart", {"session": "one"})
            assert refused.is_error and "shared" in refused.content[0].text  # type: ignore[union-attr]
            timed = await _evaluate(client, "Do[Null, {10^10}]", session="one", timeout=1)
            assert timed["status"] == "timeout"
            assert (await _evaluate(client, "q", session="one"))["result"] == "42"

        _run(served, scenario)
    finally:
        stop(proc)


def _drawn(png: bytes) -> bool:
    """Whether a PNG has more than one kind of pixel byte: something was drawn on it."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat = 8, b""
    while pos < len(png):
        length = int.from_bytes(png[pos:pos + 4], "big")
        if png[pos + 4:pos + 8] == b"IDAT":
            idat += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat))) > 2
