"""Records: logfmt lines, short InputForm, and docs/logging.md in step with the events."""

from __future__ import annotations

import ast
import logging
import re
import sys
from pathlib import Path

import numpy as np
from wolframclient.language import wl

from linkserver import records, wxf

LOGGING_DOC = Path(__file__).parents[2] / "docs" / "logging.md"


def test_logfmt_quotes_only_what_needs_it() -> None:
    line = records.logfmt("link-closed", {
        "link": "ab12", "peer": "5555@127.0.0.1", "reason": 'the peer said "bye"\nthen left',
        "code": None, "ms": 12.5, "ok": True, "empty": "",
    })
    assert line == ('link-closed link=ab12 peer=5555@127.0.0.1 '
                    'reason="the peer said \\"bye\\"\\nthen left" code=- ms=12.5 ok=true empty=""')


def test_event_record_carries_name_and_fields(caplog: object) -> None:
    import pytest

    assert isinstance(caplog, pytest.LogCaptureFixture)
    caplog.set_level(logging.WARNING, logger="linkserver.server")
    records.event("auth-failed", peer="5555@10.0.0.7", reason="wrong key")
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "auth-failed"]
    assert record.levelno == logging.WARNING and record.name == "linkserver.server"
    assert record.fields == {"peer": "5555@10.0.0.7", "reason": "wrong key"}  # type: ignore[attr-defined]
    line = records.LogfmtFormatter().format(record)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z warning auth-failed "
                        r'peer=5555@10\.0\.0\.7 reason="wrong key"', line)


def test_plain_record_with_traceback_is_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("linkserver.link", logging.ERROR, __file__, 1,
                                   "! handler %s failed", ("h",), sys.exc_info())
    line = records.LogfmtFormatter().format(record)
    assert "\n" not in line
    assert re.match(r'\S+Z error log logger=linkserver.link msg="! handler h failed" exc="Traceback', line)
    assert "RuntimeError: boom" in line


def test_input_form_reads_like_the_wolfram_language() -> None:
    assert records.input_form(wxf.loads(wxf.dumps(wl.EvaluatePacket(wl.Plus(1, 1))))) == (
        "EvaluatePacket[Plus[1, 1]]")
    expr = wxf.loads(wxf.dumps(wl.ReturnPacket({"a": [1.5, 'say "hi"'], "b": None})))
    assert records.input_form(expr) == 'ReturnPacket[<|"a" -> {1.5, "say \\"hi\\""}, "b" -> Null|>]'
    assert records.input_form(wl.Rule(wl.x, 1e20)) == "x -> 1.*^20"
    assert records.input_form(np.arange(3)) == "{0, 1, 2}"
    assert records.input_form(b"\x00\xff") == "ByteArray[<2 bytes: 00 ff>]"


def test_long_expressions_are_cut_without_formatting_them_whole() -> None:
    text = records.input_form(list(range(10**6)), limit=50)
    assert len(text) == 50 and text.startswith("{0, 1, 2") and text.endswith("...")


def test_describe_shows_bytes_that_are_not_wxf_as_hex() -> None:
    assert records.describe(b"junk") == "<4 bytes, not WXF: 6a 75 6e 6b>"
    assert records.describe(wxf.dumps(wl.ReturnPacket(2))) == "ReturnPacket[2]"


def test_every_event_is_documented() -> None:
    doc = LOGGING_DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", doc, re.MULTILINE))
    assert documented == set(records.EVENTS)


def test_every_event_the_package_logs_is_registered() -> None:
    # An event missing from EVENTS would be logged at a default level and
    # counted by no metric; docs/logging.md lists only the registered ones.
    package = Path(records.__file__).parent
    logged = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "event" and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                logged.add(node.args[0].value)
    assert logged, "no records.event(...) call found: the walk is wrong"
    assert logged - set(records.EVENTS) == set()


def test_event_fields_are_plain_values(caplog: object) -> None:
    import pytest

    from linkserver.errors import LinkClosed

    assert isinstance(caplog, pytest.LogCaptureFixture)
    caplog.set_level(logging.INFO, logger="linkserver.broker")
    records.event("kernel-start-failed", worker="w1", reason=LinkClosed("gone"), retry_s=0.4)
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "kernel-start-failed"]
    assert record.fields == {"worker": "w1", "reason": "gone", "retry_s": 0.4}  # type: ignore[attr-defined]
    assert record.getMessage() == "kernel-start-failed worker=w1 reason=gone retry_s=0.4"
