"""The in-process Mathics3 evaluator of ``linkserver-kernel`` (imported once it is needed).

Mathics3 loads in seconds, so :mod:`.wolframclient_kernel` imports this module
only after it has answered wolframclient's start-up ``OK``.

:class:`DirectKernel` is linkserver's own Mathics3 kernel
(:class:`linkserver.kernel.mathics.MathicsKernel`: conversions, messages,
``Print``, interrupts, ``Quit[]``) with its packet output collected in a list
instead of sent on a link: one request costs no WXF round trip and no thread
hop (KernelLoop's ``_put`` is the hook every answer goes through).
"""

from __future__ import annotations

from typing import Any

from mathics.core.symbols import Symbol

from ..kernel.loop import KernelExit, kernel_error
from ..kernel.mathics import MathicsKernel
from ..kernel.mathics_exprs import ConversionError, from_mathics
from ..protocol.packets import Packet

__all__ = ["DirectKernel", "KernelExit"]

_END_OF_FILE = Symbol("System`EndOfFile")


class _NoLink:
    """Stands where the kernel expects its link: answers are collected instead."""

    name = "wolframclient"


class _SystemContextOnly:
    """What ``from_mathics`` reads of a ``Definitions``: only ``System``` names are shortened.

    ``BinarySerialize`` writes every other symbol with its context
    (``Global`x``), and wolframclient expects it so (``wl.Global.x``).
    """

    current_context = "System`"
    context_path = ("System`",)


_CONTEXTS = _SystemContextOnly()


class DirectKernel(MathicsKernel):
    """A Mathics3 kernel evaluating requests handed to it, in the calling thread."""

    def __init__(self) -> None:
        super().__init__()
        self.packets: list[Packet] = []
        # Print and messages are sent only while a link is there (_side_output).
        self._link = _NoLink()  # type: ignore[assignment]

    def _put(self, packet: Packet) -> None:
        self.packets.append(packet)

    def _export(self, result: Any) -> Any:
        try:
            return from_mathics(result, _CONTEXTS)
        except ConversionError as exc:
            return kernel_error("unconvertible", str(exc))

    def _read_input(self, evaluation: Any, prompt: str, kind: str) -> Any:
        return _END_OF_FILE  # nobody to ask: what a kernel without a terminal reads

    def evaluate_packets(self, expr: Any) -> list[Packet]:
        """Evaluate ``EvaluatePacket[expr]``; return its answer packets.

        Raises:
            KernelExit: ``Quit[]`` or ``Exit[]`` was evaluated.
        """
        self.packets = []
        with self._lock:
            self._serial += 1
            self._busy = True
        try:
            self._evaluate_packet(expr)
        finally:
            self._finish_request()
        return self.packets
