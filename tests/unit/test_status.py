"""What ``linkserver status`` prints: a status answer as a person reads it in a terminal."""

from __future__ import annotations

from linkserver import wxf
from linkserver.service import ServiceStatistics
from linkserver.status import format_status, status_expr


def _statistics(where: tuple[str, ...], problems: tuple[str, ...] = ()) -> ServiceStatistics:
    return ServiceStatistics(
        name="31415@127.0.0.1", mode="pool", backend="mathics", uptime=12.34, links=2,
        pools="big, small", broker={"mode": "pool", "warm": 1}, placement="ray",
        where=where, problems=problems,
    )


def test_each_kernel_has_a_line_with_its_pool_id_pid_and_node() -> None:
    where = (
        "big 3f9c0a12d4e1 pid 48213 on 5b1e93c0a7f2@10.0.0.12",
        "big 77a01c9e2b30 pid 2290 on c04d1e8f66aa@10.0.0.13",
        "small 0123456789ab pid 777",
    )
    expr = wxf.loads(wxf.dumps(status_expr(_statistics(where))))  # as it travels
    lines = format_status(expr).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("where "))
    assert [line.split(None, 1)[-1] if i == 0 else line.strip()
            for i, line in enumerate(lines[first:first + 3])] == list(where)
    # The continuation lines line up under the first value.
    column = lines[first].index("big")
    assert all(line.index("big" if "big" in line else "small") == column
               for line in lines[first + 1:first + 3])
    assert "placement" in format_status(expr) and "uptime" in format_status(expr)


def test_a_pool_that_cannot_place_kernels_is_listed_under_problems() -> None:
    sentence = "pool gpu: no node of the Ray cluster offers what a kernel asks for"
    text = format_status(status_expr(_statistics((), (sentence,))))
    assert any(line.startswith("problems") and line.endswith(sentence)
               for line in text.splitlines())
    assert not any(line.startswith("where") for line in text.splitlines())  # none: no line
