"""The demo link handler that ``linkserver serve`` runs until kernels exist.

It greets each link with ``Print["Hello client program."]`` -- the
expression of the original link-server report -- and then echoes every
expression the client sends, until the client closes the link.
"""

from __future__ import annotations

from wolframclient.language import wl

from .aio.link import Link
from .errors import LinkError

__all__ = ["HELLO", "greet_and_echo"]

HELLO = wl.Print("Hello client program.")


async def greet_and_echo(link: Link) -> None:
    """Send :data:`HELLO`, then send back each expression received, until the link ends."""
    try:
        await link.put(HELLO)
        while True:
            # Echo the bytes as they came: no need to decode them.
            await link.put_payload(await link.get_payload())
    except LinkError:
        pass  # the client closed or broke the link: the conversation is over
    finally:
        await link.aclose()
