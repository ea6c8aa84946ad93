"""Materialised state groups for sync.

``ruma.storage.state`` keeps only a few dozen groups, enough for the write path; an initial
sync reads one group per room for every room the user is in, and the next initial sync reads
the same ones. Committed groups never change, so they are safe to keep by ID.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from ruma.protocol.events import StateKey

__all__ = ["StateGroupCache"]

DEFAULT_SIZE = 1_000


class StateGroupCache:
    """An LRU of state group -> full state (used from the reactor thread only)."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[int, Mapping[StateKey, str]] = OrderedDict()

    def get(self, group: int) -> Mapping[StateKey, str] | None:
        found = self._items.get(group)
        if found is not None:
            self._items.move_to_end(group)
        return found

    def put(self, group: int, state: Mapping[StateKey, str]) -> None:
        self._items[group] = state
        self._items.move_to_end(group)
        while len(self._items) > self._size:
            self._items.popitem(last=False)
