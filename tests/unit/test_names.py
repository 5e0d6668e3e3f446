"""Link names: the WSTP forms people paste, and clear errors for the rest."""

from __future__ import annotations

import pytest

from linkserver.errors import LinkNameError
from linkserver.names import LinkName, parse_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8000@127.0.0.1", LinkName("tcp", host="127.0.0.1", port=8000)),
        ("8000@localhost", LinkName("tcp", host="localhost", port=8000)),
        ("8000@::1", LinkName("tcp", host="::1", port=8000)),
        ("8000@[::1]", LinkName("tcp", host="::1", port=8000)),
        ("8000@[::1]/big", LinkName("tcp", host="::1", port=8000, pool="big")),
        ("31415@host/gpu", LinkName("tcp", host="host", port=31415, pool="gpu")),
        ("@host", LinkName("tcp", host="host", port=31415)),
        ("8000", LinkName("tcp", host="127.0.0.1", port=8000)),
        (" 8000@h ", LinkName("tcp", host="h", port=8000)),
        ("unix:/tmp/x.sock", LinkName("unix", path="/tmp/x.sock")),
        ("service:lab", LinkName("service", service="lab")),
        ("service:lab/big", LinkName("service", service="lab", pool="big")),
        (("127.0.0.1", 9), LinkName("tcp", host="127.0.0.1", port=9)),
        (("", 9), LinkName("tcp", host="127.0.0.1", port=9)),
    ],
)
def test_parse(text: object, expected: LinkName) -> None:
    assert parse_name(text) == expected


@pytest.mark.parametrize(
    "name",
    ["8000@127.0.0.1", "8000@[::1]", "unix:/tmp/x", "service:lab", "31415@h/p"],
)
def test_format_round_trips(name: str) -> None:
    assert str(parse_name(name)) == name
    assert parse_name(str(parse_name(name))) == parse_name(name)


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "x@host", "70000@host", "-1@host", "8000@", "8000@[::1", "8000@[::1]x",
     "unix:", "service:", "8000@ho st", 8000, None, ("h",), ("h", "1"), b"8000@h"],
)
def test_bad_names_raise_link_name_error(bad: object) -> None:
    with pytest.raises(LinkNameError) as info:
        parse_name(bad)
    assert isinstance(info.value, ValueError)
    assert str(info.value)
