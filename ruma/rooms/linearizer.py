"""One writer at a time per key (a room): an async lock that hands over on the next turn."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime


class Linearizer:
    """Serialises ``async with linearizer.lock(key):`` blocks per key, first come first served.

    The lock passes straight to the next waiter; its ``Deferred`` fires on the next reactor
    turn (``clock.callLater(0, ...)``) so a long queue never grows the stack.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._held: set[str] = set()
        self._waiters: dict[str, deque[Deferred[None]]] = {}

    def is_locked(self, key: str) -> bool:
        return key in self._held

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        if key in self._held:
            d: Deferred[None] = Deferred()
            queue = self._waiters.setdefault(key, deque())
            queue.append(d)
            try:
                await d
            except CancelledError:
                if d in queue:
                    queue.remove(d)
                    if not queue:
                        del self._waiters[key]
                else:
                    # The lock was already handed to us: pass it on.
                    self._release(key)
                raise
        else:
            self._held.add(key)
        try:
            yield
        finally:
            self._release(key)

    def _release(self, key: str) -> None:
        queue = self._waiters.get(key)
        if queue:
            d = queue.popleft()
            if not queue:
                del self._waiters[key]
            self._clock.callLater(0, _fire, d)
        else:
            self._held.discard(key)


def _fire(d: Deferred[None]) -> None:
    if not d.called:
        d.callback(None)
