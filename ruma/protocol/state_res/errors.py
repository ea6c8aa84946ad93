"""The errors state resolution raises."""

from __future__ import annotations

from collections.abc import Iterable

from ruma.protocol.errors import ProtocolError

__all__ = ["AuthGraphCycleError", "MissingEventsError"]


class MissingEventsError(ProtocolError):
    """State resolution needed events that the caller did not supply.

    State resolution never fetches anything. The caller fetches ``event_ids`` (state
    events of the sets being resolved, or events in their auth chains), adds them to the
    event map, and calls again. A retry can report further events: those hidden behind
    the missing ones in the auth graph.
    """

    def __init__(self, event_ids: Iterable[str]) -> None:
        self.event_ids: frozenset[str] = frozenset(event_ids)
        shown = ", ".join(sorted(self.event_ids)[:5])
        more = len(self.event_ids) - 5
        suffix = f" and {more} more" if more > 0 else ""
        super().__init__(
            f"state resolution needs {len(self.event_ids)} events it was not given: {shown}{suffix}"
        )


class AuthGraphCycleError(ProtocolError):
    """The auth events of the events being resolved form a cycle.

    Event IDs that are reference hashes (v3+) make a cycle impossible; in v1 and v2
    rooms, where a server picks its own event IDs, only forged events can form one.
    """

    def __init__(self, event_ids: Iterable[str]) -> None:
        self.event_ids: frozenset[str] = frozenset(event_ids)
        super().__init__(f"auth events form a cycle through {sorted(self.event_ids)[:5]}")
