"""The in-process Mathics3 evaluator of ``linkserver-kernel`` (imported once it is needed).

Mathics3 loads in seconds, so :mod:`.wolframclient_kernel` imports this module
only after it has answered wolframclient's start-up ``OK``.

:class:`DirectKernel` is linkserver's own Mathics3 evaluator
(:class:`linkserver.kernel.evaluator.MathicsEvaluator`: conversions,
messages, ``Print``, ``Quit[]``) driven by a host that keeps its packets in a
list: one request costs no WXF round trip and no thread hop. Nothing stops an
evaluation from outside and nobody is asked for input: ``Input[]`` reads
``EndOfFile``, as in a kernel without a terminal.
"""

from __future__ import annotations

from typing import Any

from ..kernel.evaluator import Host, MathicsEvaluator
from ..kernel.loop import KernelExit
from ..protocol.packets import Packet

__all__ = ["DirectKernel", "KernelExit"]


class _SystemContextOnly:
    """What ``from_mathics`` reads of a ``Definitions``: only ``System``` names are shortened.

    ``BinarySerialize`` writes every other symbol with its context
    (``Global`x``), and wolframclient expects it so (``wl.Global.x``).
    """

    current_context = "System`"
    context_path = ("System`",)


class DirectKernel(Host):
    """A Mathics3 session evaluating requests handed to it, in the calling thread."""

    def __init__(self) -> None:
        self.packets: list[Packet] = []
        self.evaluator = MathicsEvaluator(self, export_contexts=_SystemContextOnly())

    def put(self, packet: Packet) -> None:
        self.packets.append(packet)

    def evaluate_packets(self, expr: Any) -> list[Packet]:
        """Evaluate ``EvaluatePacket[expr]``; return its answer packets.

        Raises:
            KernelExit: ``Quit[]`` or ``Exit[]`` was evaluated.
        """
        self.packets = []
        try:
            self.evaluator.evaluate_packet(expr)
        finally:
            self.evaluator.finish_request()
        return self.packets
