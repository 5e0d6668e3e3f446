"""The Jupyter project's kernel conformance suite (jupyter_kernel_test) on linkserver-jupyter.

Every message is checked against the v5 message spec by the suite itself; the
samples below are Wolfram Language. One shared-mode ``linkserver serve`` for the
class, a kernel spec installed into a temporary Jupyter path, and a history store
of the test's own.

What the suite asks that linkserver-jupyter does not offer, and so skips:
``clear_output`` (no Wolfram Language call asks for it) and ``invalid`` for
is_complete (the kernel's own parser judges input, not the door).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("zmq")
jkt = pytest.importorskip("jupyter_kernel_test")

from linkserver.door.jupyter_install import install  # noqa: E402
from tests.procs import free_port  # noqa: E402
from tests.timeouts import TIMEOUT  # noqa: E402

ROOT = Path(__file__).parents[2]
SERVER_START = TIMEOUT * 6


class LinkserverJupyterConformance(jkt.KernelTests):  # type: ignore[misc]
    kernel_name = "linkserver-conformance"
    language_name = "Wolfram Language"
    file_extension = ".wl"

    code_hello_world = 'Print["hello, world"]'
    code_stderr = "1/0"  # Power::infy goes to stderr, as messages do
    completion_samples: ClassVar[list[dict[str, Any]]] = [
        {"text": "Integr", "matches": {"Integrate"}},
        {"text": "FactorInteger[10]; StringRevers", "matches": {"StringReverse"}},
    ]
    complete_code_samples: ClassVar[list[str]] = ["1 + 1", "f[x_] := x^2", 'Print["]"]']
    incomplete_code_samples: ClassVar[list[str]] = ["f[1,", '"an open string', "(* open"]
    code_page_something = "?Plus"
    code_generate_error = "1 +* 2"
    code_execute_result: ClassVar[list[dict[str, str]]] = [
        {"code": "6*7", "result": "42"},
        {"code": "Expand[(a + b)^2]", "result": "a^2 + 2*a*b + b^2"},
        {"code": "Range[3]", "result": "{1, 2, 3}"},
    ]
    # A result that something follows in its cell is display_data; the last, execute_result.
    code_display_data: ClassVar[list[dict[str, str]]] = [
        {"code": "Plot[Sin[t], {t, 0, 1}]\n6*7", "mime": "image/svg+xml"},
        {"code": "Plot[Sin[t], {t, 0, 1}]\nPrint[1]", "mime": "image/png"},
        {"code": "Range[3]\n6*7", "mime": "text/plain"},
    ]
    code_history_pattern = "6[*]?"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "Plus"

    _server: ClassVar[subprocess.Popen[str]]
    _dirs: ClassVar[list[tempfile.TemporaryDirectory[str]]]
    _saved_env: ClassVar[dict[str, str | None]]

    @classmethod
    def setUpClass(cls) -> None:
        port = free_port()
        cls._server = subprocess.Popen(
            [sys.executable, "-m", "linkserver", "serve", "--port", str(port),
             "--mode", "shared", "--log-level", "warning"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + SERVER_START
        assert cls._server.stdout is not None
        while time.monotonic() < deadline:
            line = cls._server.stdout.readline()
            if not line or re.search(r"listening on \d+@", line):
                break
        prefix = tempfile.TemporaryDirectory(prefix="linkserver-jupyter-")
        state = tempfile.TemporaryDirectory(prefix="linkserver-history-")
        cls._dirs = [prefix, state]
        install(cls.kernel_name, f"{port}@127.0.0.1", prefix=prefix.name)
        cls._saved_env = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "LINKSERVER_HISTORY")}
        os.environ["JUPYTER_PATH"] = os.path.join(prefix.name, "share", "jupyter")
        os.environ["LINKSERVER_HISTORY"] = os.path.join(state.name, "history.sqlite")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            super().tearDownClass()
        finally:
            for key, value in cls._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            cls._server.send_signal(signal.SIGTERM)
            try:
                cls._server.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                cls._server.kill()
                cls._server.wait()
            if cls._server.stdout is not None:
                cls._server.stdout.close()
            for folder in cls._dirs:
                folder.cleanup()

    def test_the_pager_shows_usage_and_with_two_marks_the_definitions(self) -> None:
        self.flush_channels()
        reply, _ = self.execute_helper("??Plus")
        (page,) = reply["content"]["payload"]
        text = page["data"]["text/plain"]
        assert "represents the sum" in text and "Default[Plus] = 0" in text
        reply, _ = self.execute_helper("?Plus")
        short = reply["content"]["payload"][0]["data"]["text/plain"]
        assert "represents the sum" in short and set(short.split("\n")) <= set(text.split("\n"))
        self.execute_helper("pagerF[x_] := x^2 + 1")
        reply, _ = self.execute_helper("??pagerF")
        assert "pagerF[x_] = x^2 + 1" in reply["content"]["payload"][0]["data"]["text/plain"]
        reply, outputs = self.execute_helper("?noSuchSymbolHere")
        assert reply["content"]["status"] == "error"
        assert [m["msg_type"] for m in outputs] == ["error"]

    def test_graphics_come_as_svg_and_png(self) -> None:
        self.flush_channels()
        _, outputs = self.execute_helper("Graphics[Circle[]]")
        (result,) = [m for m in outputs if m["msg_type"] == "execute_result"]
        data = result["content"]["data"]
        assert data["image/svg+xml"].lstrip().startswith(("<svg", "<?xml"))
        import base64

        assert base64.b64decode(data["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
