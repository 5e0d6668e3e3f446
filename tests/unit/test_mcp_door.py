"""The MCP door's parts that need no server: limits, cuts, images, snippets, the bearer guard."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from linkserver.door.mcp_command import HOSTS, snippet
from linkserver.door.mcp_sessions import (
    Answer,
    Limits,
    Message,
    SessionError,
    Sessions,
    check_session_name,
    cut,
)


def test_timeouts_default_and_are_capped() -> None:
    limits = Limits(default_timeout=60, max_timeout=100)
    assert limits.timeout_for(None) == 60
    assert limits.timeout_for(5) == 5
    assert limits.timeout_for(1e9) == 100
    assert Limits(default_timeout=60, max_timeout=10).timeout_for(None) == 10
    for bad in (0, -1, float("nan")):
        with pytest.raises(SessionError):
            limits.timeout_for(bad)


def test_cut_says_how_much() -> None:
    assert cut("abc", 3) == ("abc", None)
    text, note = cut("abcdef", 2, "characters of the result")
    assert text == "ab" and note == "4 of 6 characters of the result were cut"


@pytest.mark.parametrize("name", ["a", "default", "my.session-2_x", "9" * 64])
def test_good_session_names(name: str) -> None:
    assert check_session_name(name) == name


@pytest.mark.parametrize("name", [" a", "a b", "-a", "a" * 65, "ä", "a/b", "a\n"])
def test_bad_session_names(name: str) -> None:
    with pytest.raises(SessionError):
        check_session_name(name)


def test_no_name_is_the_default_session() -> None:
    assert check_session_name(None) == check_session_name("") == "default"


def test_an_unreachable_server_is_an_answer() -> None:
    from tests.procs import free_port

    async def main() -> Answer:
        sessions = Sessions(f"{free_port()}@127.0.0.1", limits=Limits(connect_timeout=2))
        try:
            return await sessions.evaluate("1+1", timeout=5)
        finally:
            await sessions.aclose()

    answer = asyncio.run(main())
    assert answer.status == "failed"
    assert "linkserver serve" in answer.notes[0]


def test_answers_are_json() -> None:
    answer = Answer("s", "messages", kernel="k", mode="pool", result="2",
                    messages=[Message("Power::infy", "Power::infy: ...")])
    data = json.loads(json.dumps(answer.to_json()))
    assert data["messages"] == [{"name": "Power::infy", "text": "Power::infy: ..."}]


# --------------------------------------------------------- needing the MCP SDK

SVG = ('<svg width="400px" height="300px" xmlns="http://www.w3.org/2000/svg" '
       'viewBox="0 0 400 300"><circle cx="1" cy="1" r="1"/></svg>')


def test_images_are_scaled_to_the_pixel_cap() -> None:
    door = pytest.importorskip("linkserver.door.mcp")
    image, note = door.image_of(SVG, 12_000)
    assert note is not None and "400x300" in note and "126x95" in note
    assert image.mime_type == "image/png"
    assert _png_size(base64.b64decode(image.data)) == (126, 95)
    image, note = door.image_of(SVG, 10**6)
    assert note is None and _png_size(base64.b64decode(image.data)) == (400, 300)


def test_an_svg_resvg_cannot_draw_travels_as_itself_with_a_note() -> None:
    door = pytest.importorskip("linkserver.door.mcp")
    image, note = door.image_of('<svg width="10" height="10" <<broken', 10**6)
    assert image.mime_type == "image/svg+xml" and note is not None and "no PNG" in note


def _png_size(png: bytes) -> tuple[int, int]:
    """The width and height in a PNG's IHDR chunk."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_render_puts_everything_in_content_and_structured_content() -> None:
    door = pytest.importorskip("linkserver.door.mcp")
    answer = Answer("s", "messages", kernel="k", mode="pool", result="ComplexInfinity",
                    printed=["hi"], messages=[Message("Power::infy", "Power::infy: Infinite")],
                    svg=SVG)
    result = door.render(answer, Limits())
    text = result.content[0].text
    assert "Print: hi" in text and "Message: Power::infy: Infinite" in text
    assert "Out: ComplexInfinity" in text
    assert [c.type for c in result.content] == ["text", "image", "text"]
    assert result.structured_content["svg"] == SVG and not result.is_error
    assert door.render(Answer("s", "timeout"), Limits()).is_error


def _call(app: Any, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    asyncio.run(app({"type": "http", "headers": headers}, receive, send))
    return sent


def test_the_bearer_guard_lets_only_the_key_through() -> None:
    door = pytest.importorskip("linkserver.door.mcp")
    reached = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope)

    guarded = door.bearer_guard(app, b"k" * 32)
    for headers in ([], [(b"authorization", b"Bearer " + b"x" * 32)],
                    [(b"authorization", b"k" * 32)]):
        sent = _call(guarded, headers)
        assert sent[0]["status"] == 401 and not reached
    _call(guarded, [(b"authorization", b"Bearer " + b"k" * 32)])
    assert len(reached) == 1


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_install_snippets_start_the_door(host: str) -> None:
    argv = ["/usr/bin/linkserver", "mcp", "--server", "31415@127.0.0.1"]
    text = snippet(host, "linkserver", argv)
    if host == "claude-code":
        assert text.startswith("claude mcp add linkserver -- /usr/bin/linkserver mcp")
        return
    data = json.loads(text)
    entry = (data["servers"] if host == "vscode" else data["mcpServers"])["linkserver"]
    assert entry["command"] == argv[0] and entry["args"] == argv[1:]


def test_mcp_install_prints_a_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    from linkserver.cli import main

    assert main(["mcp", "install", "--host", "cursor", "--server", "8000@example.org"]) == 0
    out = capsys.readouterr().out
    entry = json.loads(out[out.index("{"):])["mcpServers"]["linkserver"]
    assert entry["args"][-3:] == ["mcp", "--server", "8000@example.org"]


def test_http_beyond_loopback_with_no_key_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("mcp")
    from linkserver.cli import main
    from tests.procs import free_port

    monkeypatch.setenv("LINKSERVER_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("LINKSERVER_KEY", raising=False)
    code = main(["mcp", "--server", f"{free_port()}@127.0.0.1", "--http", "0",
                 "--interface", "0.0.0.0"])
    assert code == 3
    assert "refusing to serve MCP on 0.0.0.0" in capsys.readouterr().err
