"""The Jupyter wire: signatures, the connection file, and the parent watch (no sockets)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

pytest.importorskip("zmq")

from linkserver.door import jupyter_wire  # noqa: E402
from linkserver.door.jupyter_wire import WireKernel, read_connection_file  # noqa: E402

PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}


def test_a_signed_message_reads_back_and_a_changed_one_is_dropped() -> None:
    kernel = WireKernel({**PORTS, "key": "secret"})
    frames = kernel._frames("execute_request", {"code": "1+1"}, None)
    message = kernel._parse([b"client", *frames])
    assert message is not None
    assert message.idents == [b"client"]
    assert message.msg_type == "execute_request"
    assert message.content == {"code": "1+1"}
    changed = list(frames)
    changed[-1] = json.dumps({"code": "Quit[]"}).encode()  # the content, not re-signed
    assert kernel._parse([b"client", *changed]) is None
    other = WireKernel({**PORTS, "key": "another"})
    assert other._parse([b"client", *frames]) is None


def test_without_a_key_nothing_is_signed_or_checked() -> None:
    kernel = WireKernel(dict(PORTS))
    frames = kernel._frames("status", {"execution_state": "idle"}, None)
    assert frames[1] == b""
    assert kernel._parse(frames) is not None


def test_garbage_is_dropped_not_raised() -> None:
    kernel = WireKernel({**PORTS, "key": "k"})
    assert kernel._parse([b"no delimiter"]) is None
    assert kernel._parse([b"<IDS|MSG>", b"sig", b"{}"]) is None
    assert kernel._parse([b"<IDS|MSG>", kernel._sign([b"{", b"{}", b"{}", b"{}"]),
                          b"{", b"{}", b"{}", b"{}"]) is None


def test_an_answer_carries_the_request_header_as_it_came_and_a_fresh_id() -> None:
    kernel = WireKernel({**PORTS, "key": "k"})
    # A client's header, spaced and ordered as the client wrote it.
    raw = b'{"msg_id": "abc", "msg_type": "execute_request", "session": "s",  "date": "x"}'
    parts = [raw, b"{}", b"{}", b'{"code": "1+1"}']
    request = kernel._parse([b"client", b"<IDS|MSG>", kernel._sign(parts), *parts])
    assert request is not None
    first = kernel._frames("status", {"execution_state": "busy"}, request)
    second = kernel._frames("execute_reply", {"status": "ok"}, request, {"started": "now"})
    assert first[3] == second[3] == raw  # the parent header, byte for byte
    assert json.loads(second[4]) == {"started": "now"} and first[4] == b"{}"
    ids = {json.loads(frames[2])["msg_id"] for frames in (first, second)}
    assert len(ids) == 2 and all(i.startswith(kernel.session) for i in ids)
    answer = kernel._parse([b"client", *second])  # signed as a client checks it
    assert answer is not None and answer.parent["msg_id"] == "abc"
    # A header that is no JSON object is dropped, as garbage is.
    parts = [b"[1]", b"{}", b"{}", b"{}"]
    assert kernel._parse([b"<IDS|MSG>", kernel._sign(parts), *parts]) is None


def test_frames_go_out_as_one_multipart_message() -> None:
    zmq = pytest.importorskip("zmq")
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    push = context.socket(zmq.PUSH)
    try:
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        jupyter_wire._send_frames(push, [b"topic", b"<IDS|MSG>", b"", b"a" * 100_000])
        jupyter_wire._send_frames(push, [b"single"])
        assert pull.poll(5000)
        assert pull.recv_multipart() == [b"topic", b"<IDS|MSG>", b"", b"a" * 100_000]
        assert pull.recv_multipart() == [b"single"]
    finally:
        push.close(linger=0)
        pull.close(linger=0)
        context.term()


def test_messages_are_read_whole_in_order_and_a_wait_ends_when_one_comes() -> None:
    zmq = pytest.importorskip("zmq")
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    push = context.socket(zmq.PUSH)

    async def scenario() -> None:
        assert jupyter_wire._recv_now(pull) is None  # nothing yet: no wait, no frames
        # A message sent while the reader waits wakes it (the descriptor was armed).
        asyncio.get_running_loop().call_later(
            0.05, jupyter_wire._send_frames, push, [b"id", b"<IDS|MSG>", b"late"])
        frames = await asyncio.wait_for(jupyter_wire._recv_frames(pull), 5)
        assert frames == [b"id", b"<IDS|MSG>", b"late"]
        # Two that arrived together: each read whole, in order, the second without a wait.
        jupyter_wire._send_frames(push, [b"first", b"a" * 70_000])
        jupyter_wire._send_frames(push, [b"second"])
        assert await asyncio.wait_for(jupyter_wire._recv_frames(pull), 5) == [b"first", b"a" * 70_000]
        assert pull.poll(5000)
        assert jupyter_wire._recv_now(pull) == [b"second"]
        assert jupyter_wire._recv_now(pull) is None

    try:
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        asyncio.run(scenario())
    finally:
        push.close(linger=0)
        pull.close(linger=0)
        context.term()


def test_an_unknown_signature_scheme_is_refused_in_one_sentence() -> None:
    with pytest.raises(ValueError, match="hmac-sha256"):
        WireKernel({**PORTS, "key": "k", "signature_scheme": "hmac-md5"})


def test_a_bad_connection_file_ends_with_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        read_connection_file(str(tmp_path / "absent.json"))
    assert ended.value.code == 2
    assert "cannot read the connection file" in capsys.readouterr().err
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"shell_port": 1}))
    with pytest.raises(SystemExit):
        read_connection_file(str(partial))
    assert "has no iopub_port" in capsys.readouterr().err


def test_the_kernel_stops_when_its_parent_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jupyter_wire, "PARENT_CHECK_INTERVAL", 0.01)
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getppid() + 100000))  # not our parent

    async def watch() -> None:
        kernel = WireKernel(dict(PORTS))
        kernel._stopped = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(kernel._watch_parent(), 5)
        assert kernel._stopped.done()

    asyncio.run(watch())
