"""``linkserver eval`` run as scripts run it: subprocesses against a real shared server.

stdout is checked byte for byte where a script would read it; OutputForm and
TeXForm texts are checked against what the same kernel answers directly, so the
test says "the command writes the kernel's form", not "Mathics3 spaces it so".
"""

from __future__ import annotations

import io
import json
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import linkserver
from linkserver.portal import get_portal
from linkserver.repl import TextSession
from linkserver.service import KernelService
from tests.integration.test_service import KERNEL_TIMEOUT, start_service


@pytest.fixture(scope="module")
def server() -> Iterator[KernelService]:
    service = start_service(mode="shared")
    yield service
    get_portal().call(service.aclose(), timeout=KERNEL_TIMEOUT)


def command(server: KernelService, *args: str) -> list[str]:
    return [sys.executable, "-m", "linkserver", "eval", "--name", server.name, *args]


def run(server: KernelService, *args: str, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(server, *args), input=stdin, capture_output=True, text=True,
        timeout=KERNEL_TIMEOUT, stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def kernel_says(server: KernelService, code: str) -> object:
    with linkserver.Client(server.name, timeout=KERNEL_TIMEOUT) as client:
        return client.evaluate(code, timeout=KERNEL_TIMEOUT)


# ---------------------------------------------------------------- stdout


def test_the_result_alone_is_stdout(server: KernelService) -> None:
    done = run(server, "1+1")
    assert (done.returncode, done.stdout, done.stderr) == (0, "2\n", "")


def test_command_substitution_gets_the_value(server: KernelService) -> None:
    line = " ".join(f"'{part}'" for part in command(server, "6*7"))
    shell = subprocess.run(["sh", "-c", f'x=$({line}); printf "[%s]" "$x"'],
                           capture_output=True, text=True, timeout=KERNEL_TIMEOUT)
    assert shell.stdout == "[42]", shell.stderr


def test_print_output_comes_first_in_order(server: KernelService) -> None:
    done = run(server, 'Print["one"]; Print["two"]; 3')
    assert (done.returncode, done.stdout) == (0, "one\ntwo\n3\n")


def test_messages_go_to_stderr_and_fail_the_run(server: KernelService) -> None:
    done = run(server, 'Print["before"]; 1/0')
    assert done.returncode == 1
    assert done.stdout == "before\nComplexInfinity\n"
    assert "Power::infy" in done.stderr and "Power::infy" not in done.stdout


def test_the_last_statement_decides_and_null_writes_nothing(server: KernelService) -> None:
    assert run(server, "a = 1;").stdout == ""
    assert run(server, "1+1\nb = 2;").stdout == ""  # the last statement gave Null
    assert run(server, "u = 5\nu + 1").stdout == "6\n"


# --------------------------------------------------------------- formats


def test_input_form_is_the_default(server: KernelService) -> None:
    assert run(server, "x^2/3").stdout == "x^2/3\n"
    assert run(server, '{"a", 1}').stdout == '{"a", 1}\n'  # strings inside keep their quotes


def test_a_string_result_is_written_as_its_characters(server: KernelService) -> None:
    assert run(server, 'StringReverse["hello"]').stdout == "olleh\n"
    assert run(server, '"two\nlines"').stdout == "two\nlines\n"


@pytest.mark.parametrize("form", ["InputForm", "FullForm", "TeXForm"])
def test_text_forms_are_the_kernels(server: KernelService, form: str) -> None:
    expr = "Integrate[x^2 + Sin[x], x]"
    done = run(server, expr, "--format", form)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{kernel_says(server, f'ToString[{expr}, {form}]')}\n"


def test_full_form_spells_every_head(server: KernelService) -> None:
    assert run(server, "x^2/3", "--format", "FullForm").stdout == \
        "Times[Rational[1, 3], Power[x, 2]]\n"


def test_output_form_is_what_connect_shows(server: KernelService) -> None:
    with linkserver.Client(server.name, timeout=KERNEL_TIMEOUT) as client:
        outcome = TextSession(client.link, out=io.StringIO()).run("x^2/3 + Sqrt[y]")
    shown = outcome.results[-1].text
    assert run(server, "x^2/3 + Sqrt[y]", "--format", "OutputForm").stdout == f"{shown}\n"


def test_a_form_asked_for_in_the_input_wins(server: KernelService) -> None:
    tex = kernel_says(server, "ToString[x^2/3, TeXForm]")
    assert run(server, "x^2/3 // TeXForm").stdout == f"{tex}\n"


def test_json_exports_what_json_can_hold(server: KernelService) -> None:
    done = run(server, '<|"a" -> 1, "b" -> {1.5, "x", True, Null}, "c" -> {"k" -> 2}|>',
               "--format", "JSON")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"a": 1, "b": [1.5, "x", True, None], "c": {"k": 2}}
    assert json.loads(run(server, "2^200", "--format", "JSON").stdout) == 2**200
    assert json.loads(run(server, "N[Range[300]]", "--format", "JSON").stdout) == \
        [float(i) for i in range(1, 301)]
    assert json.loads(run(server, '"ünï\\"code\\""', "--format", "JSON").stdout) == 'ünï"code"'


def test_json_refuses_clearly_what_it_cannot_hold(server: KernelService) -> None:
    done = run(server, "x^2", "--format", "JSON")
    assert (done.returncode, done.stdout) == (1, "")
    assert "no JSON form" in done.stderr and "Power" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------- stdin and files


def test_dash_reads_the_code_from_stdin(server: KernelService) -> None:
    done = run(server, "-", stdin="Range[3]\nTotal[%]\n")
    assert (done.returncode, done.stdout) == (0, "6\n")


def script(tmp_path: Path, text: str) -> str:
    path = tmp_path / "script.wl"
    path.write_text(text, encoding="utf-8")
    return str(path)


FILE = '#!/usr/bin/env wolframscript\nPrint["from the file"]\nfileY = 7\nfileY^2\n'


def test_a_file_prints_only_print_output(server: KernelService, tmp_path: Path) -> None:
    done = run(server, "-f", script(tmp_path, FILE))
    assert (done.returncode, done.stdout, done.stderr) == (0, "from the file\n", "")


def test_a_file_with_print_writes_its_last_result(server: KernelService, tmp_path: Path) -> None:
    done = run(server, "-f", script(tmp_path, FILE), "--print")
    assert done.stdout == "from the file\n49\n"


def test_print_all_keeps_results_in_order_with_prints(server: KernelService,
                                                     tmp_path: Path) -> None:
    text = 'Print[1]\nx^2\nPrint[2]\n"s"\nPrint[3]\n'
    for form, expected in (("InputForm", "1\nx^2\n2\ns\n3\n"),
                           ("JSON", None), ("FullForm", '1\nPower[x, 2]\n2\n"s"\n3\n')):
        done = run(server, "-f", script(tmp_path, text), "--print-all", "--format", form)
        if expected is None:  # x^2 has no JSON form; the rest is written in its place
            assert done.returncode == 1 and done.stdout == '1\n2\n"s"\n3\n'
        else:
            assert (done.returncode, done.stdout) == (0, expected), done.stderr


def test_a_file_stops_at_a_syntax_error(server: KernelService, tmp_path: Path) -> None:
    done = run(server, "-f", script(tmp_path, 'Print["ran"]\n1 +* 2\nPrint["never"]\n'))
    assert done.returncode == 1
    assert done.stdout == "ran\n"
    assert "Syntax::" in done.stderr


# ------------------------------------------------------------- exit codes


def test_exit_codes(server: KernelService, tmp_path: Path) -> None:
    failed = run(server, "$Failed")
    assert (failed.returncode, failed.stdout) == (1, "$Failed\n")
    bad = run(server, "1+")
    assert bad.returncode == 1 and "Syntax::" in bad.stderr and bad.stdout == ""
    usage = run(server)
    assert usage.returncode == 2 and "CODE or -f FILE" in usage.stderr
    both = run(server, "1", "-f", script(tmp_path, "2"))
    assert both.returncode == 2
    missing = run(server, "-f", str(tmp_path / "nothing.wl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "linkserver", "eval", "--name", "1@127.0.0.1", "1"],
        capture_output=True, text=True, timeout=KERNEL_TIMEOUT, stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 3 and "Traceback" not in refused.stderr


def test_input_reads_stdin_and_prompts_on_stderr(server: KernelService) -> None:
    done = run(server, 'Input["number? "] + 1', stdin="41\n")
    assert (done.returncode, done.stdout) == (0, "42\n")
    assert "number? " in done.stderr


def test_ctrl_c_aborts_the_evaluation(server: KernelService) -> None:
    proc = subprocess.Popen(
        command(server, 'Print["started"]; While[True, 1]'), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], KERNEL_TIMEOUT)
        assert ready and proc.stdout.readline() == "started\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=KERNEL_TIMEOUT)
        assert proc.returncode == 1, err
        assert out == "$Aborted\n"
    finally:
        proc.kill()
        proc.wait()
    assert run(server, "1+1").stdout == "2\n"  # the kernel lives on
