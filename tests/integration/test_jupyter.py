"""The Jupyter kernel (linkserver-jupyter), driven by jupyter_client as a notebook drives it.

One shared-mode ``linkserver serve`` for the module; kernel specs installed
with ``linkserver jupyter install`` into a temporary Jupyter data directory;
kernels started by jupyter_client's KernelManager.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("zmq")

from jupyter_client.blocking.client import BlockingKernelClient  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

from linkserver.door.jupyter_install import install  # noqa: E402
from tests.procs import free_port, stop  # noqa: E402
from tests.timeouts import TIMEOUT  # noqa: E402

ROOT = Path(__file__).parents[2]
SERVER_START = TIMEOUT * 6  # the server loads Mathics3 before it listens
KERNEL_START = TIMEOUT * 6  # a Jupyter kernel imports pyzmq and linkserver



@pytest.fixture(scope="module")
def serving() -> Iterator[subprocess.Popen[str]]:
    """A shared-mode ``linkserver serve`` on a free port, still loading its kernel."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkserver", "serve", "--port", str(free_port()),
         "--mode", "shared", "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        yield proc
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def server(serving: subprocess.Popen[str]) -> str:
    """The server's address, once it listens (its kernel is loaded)."""
    assert serving.stdout is not None
    deadline = time.monotonic() + SERVER_START
    while time.monotonic() < deadline:
        line = serving.stdout.readline()
        if not line:
            break
        match = re.search(r"listening on (\d+@[\w.:\[\]]+)", line)
        if match:
            return match.group(1)
    raise AssertionError("the linkserver did not start")


def _address(serving: subprocess.Popen[str]) -> str:
    args = list(serving.args)  # type: ignore[arg-type]
    return f"{args[args.index('--port') + 1]}@127.0.0.1"


@pytest.fixture(scope="module")
def specs(serving: subprocess.Popen[str], tmp_path_factory: pytest.TempPathFactory
          ) -> KernelSpecManager:
    """Kernel specs, written while the server starts: ``ls`` (the server, by the command
    line), ``ls-signal`` (the same, interrupted by SIGINT) and ``ls-none`` (no server)."""
    data = tmp_path_factory.mktemp("jupyter-data")
    address = _address(serving)
    subprocess.run(
        [sys.executable, "-m", "linkserver", "jupyter", "install", "--user", "--name", "ls",
         "--server", address], cwd=ROOT, env=dict(os.environ, JUPYTER_DATA_DIR=str(data)),
        check=True, timeout=TIMEOUT * 3, capture_output=True,
    )
    prefix = tmp_path_factory.mktemp("jupyter-prefix")
    install("ls-none", f"{free_port()}@127.0.0.1", prefix=str(prefix))
    signal_spec = install("ls-signal", address, prefix=str(prefix)) / "kernel.json"
    spec = json.loads(signal_spec.read_text())
    spec["interrupt_mode"] = "signal"  # Jupyter then sends SIGINT to the kernel process
    signal_spec.write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(data / "kernels"),
                                          str(prefix / "share" / "jupyter" / "kernels")])


def _start(specs: KernelSpecManager, name: str) -> tuple[KernelManager, BlockingKernelClient]:
    km = KernelManager(kernel_name=name, kernel_spec_manager=specs)
    km.start_kernel(stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=KERNEL_START)
    except BaseException:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        raise
    return km, kc


def _stop(km: KernelManager, kc: BlockingKernelClient) -> None:
    kc.stop_channels()
    km.shutdown_kernel(now=not km.is_alive())


@pytest.fixture(scope="module")
def notebook(specs: KernelSpecManager, request: pytest.FixtureRequest
             ) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """The module's kernel, attached to the server, and its client."""
    km, kc = _start(specs, "ls")  # while the server loads: the kernel connects at its first cell
    try:
        request.getfixturevalue("server")
        yield km, kc
    finally:
        _stop(km, kc)


@pytest.fixture(scope="module")
def kernel(notebook: tuple[KernelManager, BlockingKernelClient]) -> BlockingKernelClient:
    return notebook[1]


def execute(kc: BlockingKernelClient, code: str,
            timeout: float = TIMEOUT * 3) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Run one cell; return its execute_reply content and its outputs (iopub), in order."""
    msg_id = kc.execute(code)
    return _answer(kc, msg_id, timeout)


def _answer(kc: BlockingKernelClient, msg_id: str,
            timeout: float) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    outputs: list[tuple[str, dict[str, Any]]] = []
    while True:  # outputs up to the kernel's idle status for this request
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "status" and msg["content"]["execution_state"] == "idle":
            break
        if kind in ("stream", "execute_result", "display_data", "error"):
            outputs.append((kind, msg["content"]))
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"], outputs


def _results(outputs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, str]]:
    return [content["data"] for kind, content in outputs if kind == "execute_result"]


def test_install_writes_the_kernel_spec(specs: KernelSpecManager, server: str) -> None:
    spec = specs.get_kernel_spec("ls")
    assert spec.argv == [sys.executable, "-m", "linkserver.door.jupyter_kernel", "--server",
                         server, "-f", "{connection_file}"]
    assert spec.display_name == "Wolfram Language (linkserver)"
    assert spec.language == "wolfram"
    assert spec.interrupt_mode == "message"


def test_execute_gives_input_form(kernel: BlockingKernelClient) -> None:
    reply, outputs = execute(kernel, "1+1")
    assert reply["status"] == "ok"
    assert _results(outputs) == [{"text/plain": "2"}]
    _, outputs = execute(kernel, '{"a", x^2/y}')
    (data,) = _results(outputs)
    assert data["text/plain"] == '{"a", x^2/y}'
    assert data["text/html"].startswith("<math") and "text/latex" in data
    _, outputs = execute(kernel, "Graphics[Circle[]]")
    (data,) = _results(outputs)
    assert data["text/plain"] == "Graphics[Circle[{0, 0}]]" and "<svg" in data["image/svg+xml"]


def test_cell_with_several_inputs_numbers_them_as_the_server(kernel: BlockingKernelClient) -> None:
    reply, outputs = execute(kernel, "jupyterA = 5;\njupyterA + 1\njupyterA^2")
    assert reply["status"] == "ok"
    # One execute_result, the cell's last; the result before it is shown as display_data.
    assert [(kind, c["data"]["text/plain"]) for kind, c in outputs] == [
        ("display_data", "6"), ("execute_result", "25")]
    (count,) = [c["execution_count"] for kind, c in outputs if kind == "execute_result"]
    assert count == reply["execution_count"]
    _, outputs = execute(kernel, "%")  # the previous output, as in a notebook
    assert _results(outputs) == [{"text/plain": "25"}]
    reply, outputs = execute(kernel, 'jupyterA\nPrint["after"]')
    assert [kind for kind, _c in outputs] == ["display_data", "stream"]  # in order


def test_print_and_messages_are_streams(kernel: BlockingKernelClient) -> None:
    reply, outputs = execute(kernel, 'Print["hello"]; 1/0')
    assert reply["status"] == "ok"  # a message is not an error: the cell has a result
    assert outputs[0] == ("stream", {"name": "stdout", "text": "hello\n"})
    kind, content = outputs[1]
    assert kind == "stream" and content["name"] == "stderr"
    assert content["text"].startswith("Power::infy")
    assert _results(outputs)[0]["text/plain"] == "ComplexInfinity"


def test_syntax_error_is_an_error_reply(kernel: BlockingKernelClient) -> None:
    reply, outputs = execute(kernel, "f[1,")
    assert reply["status"] == "error"
    assert reply["ename"].startswith("Syntax::")
    assert [kind for kind, _ in outputs] == ["error"]
    reply, _ = execute(kernel, "1+1")
    assert reply["status"] == "ok"


def _interrupt_long_cell(km: KernelManager, kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("Do[Null, {10^8}]")
    while True:  # the cell has started: the kernel echoed it
        msg = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            break
    time.sleep(0.5)  # well into the loop on the server
    km.interrupt_kernel()
    reply, outputs = _answer(kc, msg_id, TIMEOUT * 2)
    assert reply["status"] == "error" and reply["ename"] == "$Aborted"
    assert ("error", {"ename": "$Aborted", "evalue": "the evaluation was aborted",
                      "traceback": ["$Aborted"]}) in outputs
    reply, outputs = execute(kc, "1+2")  # the kernel lives on
    assert reply["status"] == "ok" and _results(outputs) == [{"text/plain": "3"}]


def test_interrupt_aborts_the_evaluation(
    notebook: tuple[KernelManager, BlockingKernelClient],
) -> None:
    _interrupt_long_cell(*notebook)  # an interrupt_request on the control channel


def test_completion_and_inspection(kernel: BlockingKernelClient) -> None:
    reply = kernel.complete("x = StringJo", 12, reply=True, timeout=TIMEOUT)["content"]
    assert "StringJoin" in reply["matches"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (4, 12)
    reply = kernel.inspect("StringJoin[a, b]", 3, reply=True, timeout=TIMEOUT)["content"]
    assert reply["found"] and "StringJoin" in reply["data"]["text/plain"]
    reply = kernel.inspect("noSuchSymbolYet", 3, reply=True, timeout=TIMEOUT)["content"]
    assert not reply["found"]
    _, outputs = execute(kernel, 'Names["noSuchSymbolYet"]')  # asking did not create it
    assert _results(outputs)[0]["text/plain"] == "{}"


def test_is_complete_and_kernel_info(kernel: BlockingKernelClient) -> None:
    kernel.is_complete("f[")
    assert kernel.get_shell_msg(timeout=TIMEOUT)["content"]["status"] == "incomplete"
    kernel.is_complete('f["]", (* [ *) 1]')
    assert kernel.get_shell_msg(timeout=TIMEOUT)["content"]["status"] == "complete"
    info = kernel.kernel_info(reply=True, timeout=TIMEOUT)["content"]
    assert info["implementation"] == "linkserver-jupyter"
    assert info["language_info"]["codemirror_mode"] == "mathematica"
    assert info["language_info"]["file_extension"] == ".wl"


def test_two_notebooks_share_state_and_sigint_interrupts(
    specs: KernelSpecManager, kernel: BlockingKernelClient
) -> None:
    km, other = _start(specs, "ls-signal")
    try:
        execute(kernel, "jupyterShared = 42;")
        reply, outputs = execute(other, "jupyterShared + 1")
        assert reply["status"] == "ok" and _results(outputs) == [{"text/plain": "43"}]
        _interrupt_long_cell(km, other)  # SIGINT to the kernel process aborts too
        km.shutdown_kernel(now=False)  # a shutdown_request: the kernel leaves cleanly
        assert not km.is_alive()
    finally:
        other.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
    reply, outputs = execute(kernel, "jupyterShared")  # the server lives on
    assert _results(outputs) == [{"text/plain": "42"}]


def test_without_a_server_the_kernel_starts_and_says_how_to_start_one(
    specs: KernelSpecManager,
) -> None:
    km, kc = _start(specs, "ls-none")
    try:
        reply, outputs = execute(kc, "1+1")
        assert reply["status"] == "error" and reply["ename"] == "LinkServerUnavailable"
        assert "linkserver serve" in reply["evalue"]
        assert [kind for kind, _ in outputs] == ["error"]
        assert kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]["status"] == "ok"
    finally:
        _stop(km, kc)


def test_an_error_aborts_the_cells_already_waiting(kernel: BlockingKernelClient) -> None:
    # Jupyter's "run all": after a cell that fails with stop_on_error, the
    # execute requests already sent answer "aborted" and run nothing.
    failing = kernel.execute("Pause[0.5]\nf[1,")  # the next request is waiting by its end
    waiting = kernel.execute("abortedCellRan = True")
    assert _answer(kernel, failing, TIMEOUT * 3)[0]["status"] == "error"
    assert _answer(kernel, waiting, TIMEOUT * 3)[0]["status"] == "aborted"
    reply, outputs = execute(kernel, "ValueQ[abortedCellRan]")
    assert reply["status"] == "ok"
    assert _results(outputs)[0]["text/plain"] == "False"


def test_a_message_with_a_wrong_signature_is_dropped(
    notebook: tuple[KernelManager, BlockingKernelClient],
) -> None:
    import zmq

    km, kc = notebook
    info = km.get_connection_info()
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(f"tcp://{info['ip']}:{info['shell_port']}")
        header = json.dumps({"msg_id": "forged", "session": "x", "username": "x",
                             "msg_type": "execute_request", "version": "5.3"}).encode()
        content = json.dumps({"code": "forgedCellRan = True", "silent": False}).encode()
        sock.send_multipart([b"<IDS|MSG>", b"0" * 64, header, b"{}", b"{}", content])
        assert not sock.poll(500)  # no reply to a message the kernel cannot trust
    finally:
        sock.close()
        context.term()
    reply, outputs = execute(kc, "ValueQ[forgedCellRan]")
    assert _results(outputs)[0]["text/plain"] == "False"
