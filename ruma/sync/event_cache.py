"""Room events already in client format, cached by event ID for sync.

An initial sync serves every joined room's full state: thousands of events, mostly the same
ones on every initial sync. Parsing each PDU (validation, canonical JSON) and serialising it
again each time is most of the work, so the served client form is kept here.

A PDU never changes, but how it is served does: a redaction prunes it (``redacted_by``) and a
state event carries ``prev_content`` of the event it replaced (``replaces_state``). An entry
is only used while the event's row still has the same ``(redacted_by, replaces_state)``
(:meth:`SyncStore.get_event_stamps`, one cheap read without the JSON), so a redaction makes
the entry stale at once. Redacted events and events with bundled aggregations (which change as
relations arrive) are never cached. What depends on the request or the time (``age``,
``transaction_id``) is added by :meth:`CachedEvent.render` on a shallow copy; the cached
content is shared with responses, which are encoded and never modified.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruma.protocol.events import Event
from ruma.rooms.serialize import serialize_event

__all__ = ["CachedEvent", "ClientEventCache", "Stamp", "stamp_of"]

JsonDict = dict[str, Any]
# (redacted_by, replaces_state) of the event's row.
Stamp = tuple[str | None, str | None]

DEFAULT_SIZE = 30_000


@dataclass(frozen=True, slots=True)
class CachedEvent:
    stamp: Stamp
    event_id: str
    room_id: str
    type: str
    state_key: str | None
    sender: str
    origin_server_ts: int
    client: JsonDict  # serialised without room_id, unsigned without age or transaction_id

    @property
    def content(self) -> Mapping[str, Any]:
        content: Mapping[str, Any] = self.client["content"]
        return content

    @property
    def membership(self) -> str | None:
        m = self.content.get("membership") if self.type == "m.room.member" else None
        return m if isinstance(m, str) else None

    def filter_view(self) -> JsonDict:
        """What event filters look at (as ``ruma.sync.handler._filter_view``)."""
        return {
            "type": self.type,
            "sender": self.sender,
            "room_id": self.room_id,
            "content": self.content,
        }

    def render(self, now: int, transaction_id: str | None = None) -> JsonDict:
        """The client event at ``now`` (ms): what ``serialize_event`` would give."""
        out = dict(self.client)
        unsigned = dict(self.client["unsigned"])
        unsigned["age"] = max(0, now - self.origin_server_ts)
        if transaction_id is not None:
            unsigned["transaction_id"] = transaction_id
        out["unsigned"] = unsigned
        return out


def stamp_of(event: Event) -> Stamp | None:
    """The stamp of a served event, or None if it must not be cached (redacted, bundled)."""
    unsigned = event.unsigned
    if "redacted_because" in unsigned or "m.relations" in unsigned:
        return None
    replaces = unsigned.get("replaces_state")
    return (None, replaces if isinstance(replaces, str) else None)


def to_cached(event: Event, stamp: Stamp) -> CachedEvent:
    client = serialize_event(event, now=event.origin_server_ts, include_room_id=False)
    unsigned = dict(client["unsigned"])
    unsigned.pop("age", None)
    client["unsigned"] = unsigned
    return CachedEvent(
        stamp,
        event.event_id,
        event.room_id,
        event.type,
        event.state_key,
        event.sender,
        event.origin_server_ts,
        client,
    )


class ClientEventCache:
    """An LRU of :class:`CachedEvent` by event ID (used from the reactor thread only)."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[str, CachedEvent] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, event_id: str, stamp: Stamp) -> CachedEvent | None:
        """The entry if it was made for the same stamp (else it is stale: dropped)."""
        entry = self._items.get(event_id)
        if entry is None:
            return None
        if entry.stamp != stamp:
            del self._items[event_id]
            return None
        self._items.move_to_end(event_id)
        return entry

    def put(self, entry: CachedEvent) -> None:
        if entry.stamp[0] is not None:
            return  # redacted: served rarely, and its redacted_because carries an age
        self._items[entry.event_id] = entry
        self._items.move_to_end(entry.event_id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def for_event(self, event: Event) -> CachedEvent | None:
        """The entry for a served event in hand (cached on the way), or None if it must be
        serialised afresh (redacted, or with bundled aggregations)."""
        stamp = stamp_of(event)
        if stamp is None:
            return None
        entry = self.get(event.event_id, stamp)
        if entry is None:
            entry = to_cached(event, stamp)
            self.put(entry)
        return entry
