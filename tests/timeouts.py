"""One constant scales every wait in the suite (websockets' MS idea).

Every wait is bounded by a multiple of :data:`TIMEOUT`, so a broken build
fails instead of hanging; no test asserts elapsed time. Slow machines can
raise it with ``LINKSERVER_TEST_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

TIMEOUT = float(os.environ.get("LINKSERVER_TEST_TIMEOUT", "10"))


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return the last value.

    For conditions with no event to wait on (a count of open descriptors);
    everything else waits on the link's own futures.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


async def eventually(condition: Callable[[], object], timeout: float = TIMEOUT) -> bool:
    """:func:`wait_until` for a test on an event loop: polls without blocking the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True
