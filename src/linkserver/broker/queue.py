"""A fair queue: requests from many owners, served round-robin (no I/O).

One link that sends a thousand requests cannot starve another that sends
one: owners take turns, and each owner's requests keep their order. The
broker decides *what* runs next here, synchronously; it does the I/O after
(httpcore's pool works the same way).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["FairQueue"]

O = TypeVar("O", bound=Hashable)
T = TypeVar("T")


class FairQueue(Generic[O, T]):
    """Items queued per owner; :meth:`pop` takes one from each owner in turn."""

    def __init__(self) -> None:
        # Owners with something queued, in the order their turn comes.
        self._turns: OrderedDict[O, deque[T]] = OrderedDict()

    def push(self, owner: O, item: T) -> None:
        """Queue ``item`` behind ``owner``'s earlier items."""
        queue = self._turns.get(owner)
        if queue is None:
            self._turns[owner] = deque([item])
        else:
            queue.append(item)

    def push_first(self, owner: O, item: T) -> None:
        """Queue ``item`` to be popped next, ahead of every owner (a preemptive request).

        ``owner``'s turn comes first once; after it, its remaining items wait
        for its next turn as usual. Of several items pushed first, the last
        one pushed is popped first.
        """
        queue = self._turns.get(owner)
        if queue is None:
            self._turns[owner] = deque([item])
        else:
            queue.appendleft(item)
        self._turns.move_to_end(owner, last=False)

    def pop(self) -> tuple[O, T]:
        """Take the next item: the oldest of the owner whose turn it is.

        Raises:
            IndexError: nothing is queued.
        """
        if not self._turns:
            raise IndexError("the queue is empty")
        owner, queue = next(iter(self._turns.items()))
        item = queue.popleft()
        if queue:
            self._turns.move_to_end(owner)  # the others go first next time
        else:
            del self._turns[owner]
        return owner, item

    def remove_owner(self, owner: O) -> list[T]:
        """Drop and return everything ``owner`` has queued."""
        return list(self._turns.pop(owner, ()))

    def take_oldest(self, owner: O) -> T | None:
        """Remove and return ``owner``'s oldest queued item, or None; its turn is kept."""
        queue = self._turns.get(owner)
        if queue is None:
            return None
        item = queue.popleft()
        if not queue:
            del self._turns[owner]
        return item

    def remove(self, owner: O, item: T) -> bool:
        """Drop one queued item; return whether it was there."""
        queue = self._turns.get(owner)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self._turns[owner]
        return True

    def queued(self, owner: O) -> int:
        """How many items ``owner`` has waiting."""
        queue = self._turns.get(owner)
        return len(queue) if queue is not None else 0

    def owners(self) -> Iterator[O]:
        """The owners with items waiting."""
        return iter(self._turns)

    def drain(self) -> Iterator[tuple[O, T]]:
        """Remove and yield everything, in serving order."""
        while self._turns:
            yield self.pop()

    def __len__(self) -> int:
        return sum(len(q) for q in self._turns.values())

    def __bool__(self) -> bool:
        return bool(self._turns)
