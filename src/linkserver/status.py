"""Status requests: what ``linkserver status`` asks and how the answer reads.

A client sends the urgent message :data:`STATUS_MESSAGE` (a user code,
docs/protocol.md §5); the server answers on the expression stream with
``LinkServerStatus[<|"name" -> ..., "mode" -> ..., ...|>]``. The message
travels outside the expression stream, so asking works even while an
evaluation of that link runs.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

from wolframclient.language import wl

__all__ = ["STATUS_MESSAGE", "format_status", "status_data", "status_expr"]

#: The urgent message code that asks a server for its status (user range 128-255).
STATUS_MESSAGE = 200


def status_expr(statistics: Any) -> Any:
    """Return ``LinkServerStatus[<|...|>]`` for a statistics dataclass (nested ones flattened)."""
    return wl.LinkServerStatus(status_data(statistics))


def status_data(statistics: Any) -> dict[str, Any]:
    """Return the flat mapping a status shows (the side port's /status sends it as JSON)."""
    data: dict[str, Any] = {}
    for key, value in asdict(statistics).items():
        if isinstance(value, dict):
            data.update({k: v for k, v in value.items() if k != "mode"})
        elif is_dataclass(value):  # pragma: no cover - asdict already recursed
            data.update(asdict(value))  # type: ignore[arg-type]
        else:
            data[key] = value
    if "uptime" in data:
        data["uptime"] = round(float(data["uptime"]), 1)
    return data


def format_status(expr: Any) -> str:
    """Return a status answer as aligned ``key: value`` lines for a terminal."""
    args = getattr(expr, "args", ())
    data = args[0] if args and isinstance(args[0], dict) else {}
    failure = args[0] if args and getattr(getattr(args[0], "head", None), "name", "") == "Failure" else None
    if failure is not None:
        details = failure.args[1] if len(failure.args) > 1 and isinstance(failure.args[1], dict) else {}
        return f"refused: {details.get('MessageTemplate', failure.args[0])}"
    if not data:
        return f"unexpected answer: {expr!r}"
    width = max(len(str(k)) for k in data)
    lines = []
    for key, value in data.items():
        if isinstance(value, (list, tuple)):  # one line each: kernels, problems
            if not value:
                continue
            lines.append(f"{str(key).ljust(width)}  {value[0]}")
            lines += [f"{''.ljust(width)}  {item}" for item in value[1:]]
        else:
            lines.append(f"{str(key).ljust(width)}  {value}")
    return "\n".join(lines)
