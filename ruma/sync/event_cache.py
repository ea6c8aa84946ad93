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

__all__ = ["CachedEvent", "ClientEventCache", "Stamp", "from_stored_pdu", "stamp_of", "to_cached"]

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


# The unsigned keys serialize_event passes on (redacted_because aside).
_UNSIGNED_KEYS = (
    "prev_content",
    "prev_sender",
    "replaces_state",
    "invite_room_state",
    "knock_room_state",
    "m.relations",
)


def from_stored_pdu(
    event_id: str,
    room_id: str,
    pdu: Mapping[str, Any],
    stamp: Stamp,
    replaced: Mapping[str, Any] | None,
) -> CachedEvent | None:
    """The entry for an unredacted state event straight from its stored JSON (validated when
    it was stored), as ``EventStore.get_events`` and ``serialize_event`` would make it;
    ``room_id`` is its row's (a v12 create event has none in its PDU); ``replaced`` is the
    stored PDU of the event it replaced (``prev_content``). None for
    anything else (redacted, a redaction, malformed): those go through ``Event``."""
    if stamp[0] is not None:
        return None
    etype = pdu.get("type")
    state_key = pdu.get("state_key")
    sender = pdu.get("sender")
    content = pdu.get("content")
    ts = pdu.get("origin_server_ts")
    if not (
        isinstance(etype, str)
        and isinstance(state_key, str)
        and isinstance(sender, str)
        and type(content) is dict
        and type(ts) is int
    ):
        return None
    if etype == "m.room.redaction" or "redacts" in pdu or "redacts" in content:
        return None
    raw_unsigned = pdu.get("unsigned")
    src: dict[str, Any] = dict(raw_unsigned) if type(raw_unsigned) is dict else {}
    if "redacted_because" in src:
        return None
    if stamp[1] is not None:
        src["replaces_state"] = stamp[1]
        if replaced is not None:
            prev_content = replaced.get("content")
            if type(prev_content) is not dict:
                return None
            src["prev_content"] = prev_content
            src["prev_sender"] = replaced.get("sender")
    client: JsonDict = {
        "event_id": event_id,
        "sender": sender,
        "type": etype,
        "content": content,
        "origin_server_ts": ts,
        "state_key": state_key,
        "unsigned": {k: src[k] for k in _UNSIGNED_KEYS if k in src},
    }
    return CachedEvent(stamp, event_id, room_id, etype, state_key, sender, ts, client)


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
