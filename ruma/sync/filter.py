"""Matrix event filters (the ``Filter`` of ``POST /user/{userId}/filter`` and ``/sync``).

``parse_filter`` validates a filter's JSON and returns frozen values; the ``matches`` and
``apply`` methods work on client-format event dicts (``type``, ``sender``, ``room_id``,
``content``), so the same filter serves /sync, /messages and /context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ruma.errors import bad_json

JsonDict = dict[str, Any]

# A server "should impose a maximum value to avoid resource exhaustion" (spec, EventFilter).
MAX_LIMIT = 1000
DEFAULT_TIMELINE_LIMIT = 10


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$", re.DOTALL)


def _type_matches(patterns: Sequence[str], value: str) -> bool:
    for p in patterns:
        if p == value or ("*" in p and _glob(p).match(value)):
            return True
    return False


@dataclass(frozen=True, slots=True)
class EventFilter:
    """``EventFilter`` plus the room-event fields (``RoomEventFilter``); unset means "any"."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether a client-format event (or EDU/account-data dict) passes this filter."""
        etype = event.get("type")
        if isinstance(etype, str):
            if self.not_types and _type_matches(self.not_types, etype):
                return False
            if self.types is not None and not _type_matches(self.types, etype):
                return False
        sender = event.get("sender")
        if isinstance(sender, str):
            if sender in self.not_senders:
                return False
            if self.senders is not None and sender not in self.senders:
                return False
        room_id = event.get("room_id")
        if isinstance(room_id, str) and not self.room_allowed(room_id):
            return False
        if self.contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, Mapping) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    def room_allowed(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    @property
    def matches_everything(self) -> bool:
        """Whether :meth:`matches` is true for every event (nothing to check per event)."""
        return (
            self.types is None
            and not self.not_types
            and self.senders is None
            and not self.not_senders
            and self.rooms is None
            and not self.not_rooms
            and self.contains_url is None
        )

    def filter(self, events: Iterable[JsonDict]) -> list[JsonDict]:
        return [e for e in events if self.matches(e)]

    def filter_by(
        self, items: Iterable[Any], as_event: Callable[[Any], Mapping[str, Any]]
    ) -> list[Any]:
        return [i for i in items if self.matches(as_event(i))]

    def limit_or(self, default: int) -> int:
        return min(self.limit, MAX_LIMIT) if self.limit is not None else default


@dataclass(frozen=True, slots=True)
class RoomFilter:
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    timeline: EventFilter = EventFilter()
    state: EventFilter = EventFilter()
    ephemeral: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()

    def room_allowed(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms


@dataclass(frozen=True, slots=True)
class Filter:
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    presence: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()
    room: RoomFilter = RoomFilter()
    json: JsonDict = field(default_factory=dict, compare=False, hash=False)

    def project(self, event: JsonDict) -> JsonDict:
        """Keep only ``event_fields`` (dot-separated paths, ``\\.`` escapes a dot)."""
        if self.event_fields is None:
            return event
        out: JsonDict = {}
        for path in self.event_fields:
            parts = _split_path(path)
            _copy_path(event, out, parts)
        return out


DEFAULT_FILTER = Filter()


def _split_path(path: str) -> list[str]:
    parts: list[str] = []
    cur = ""
    i = 0
    while i < len(path):
        c = path[i]
        if c == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            cur += path[i + 1]
            i += 2
            continue
        if c == ".":
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return parts


def _copy_path(src: JsonDict, dst: JsonDict, parts: list[str]) -> None:
    head = parts[0]
    if head not in src:
        return
    if len(parts) == 1:
        dst[head] = src[head]
        return
    inner = src[head]
    if not isinstance(inner, dict):
        return
    target = dst.setdefault(head, {})
    if isinstance(target, dict):
        _copy_path(inner, target, parts[1:])


# -- parsing -------------------------------------------------------------------------------


def _str_list(obj: JsonDict, key: str, where: str, prefix: str = "") -> tuple[str, ...] | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_json(f"{where}{key} must be an array of strings")
    if prefix and not all(v.startswith(prefix) for v in value):
        raise bad_json(f"{where}{key} entries must start with {prefix!r}")
    return tuple(value)


def _bool(obj: JsonDict, key: str, where: str, default: bool | None) -> bool | None:
    if key not in obj:
        return default
    value = obj[key]
    if not isinstance(value, bool):
        raise bad_json(f"{where}{key} must be a boolean")
    return value


def _object(obj: JsonDict, key: str, where: str) -> JsonDict:
    value = obj.get(key, {})
    if not isinstance(value, dict):
        raise bad_json(f"{where}{key} must be an object")
    return value


def parse_event_filter(obj: JsonDict, where: str = "") -> EventFilter:
    limit = obj.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise bad_json(f"{where}limit must be an integer greater than 0")
    return EventFilter(
        limit=limit,
        types=_str_list(obj, "types", where),
        not_types=_str_list(obj, "not_types", where) or (),
        senders=_str_list(obj, "senders", where, "@"),
        not_senders=_str_list(obj, "not_senders", where, "@") or (),
        rooms=_str_list(obj, "rooms", where, "!"),
        not_rooms=_str_list(obj, "not_rooms", where, "!") or (),
        contains_url=_bool(obj, "contains_url", where, None),
        lazy_load_members=bool(_bool(obj, "lazy_load_members", where, False)),
        include_redundant_members=bool(_bool(obj, "include_redundant_members", where, False)),
        unread_thread_notifications=bool(_bool(obj, "unread_thread_notifications", where, False)),
    )


def parse_filter(obj: Any) -> Filter:
    """Validate a filter definition; 400 M_BAD_JSON names the first bad field."""
    if not isinstance(obj, dict):
        raise bad_json("filter must be a JSON object")
    event_format = obj.get("event_format", "client")
    if event_format not in ("client", "federation"):
        raise bad_json("event_format must be 'client' or 'federation'")
    room = _object(obj, "room", "")
    room_filter = RoomFilter(
        rooms=_str_list(room, "rooms", "room.", "!"),
        not_rooms=_str_list(room, "not_rooms", "room.", "!") or (),
        include_leave=bool(_bool(room, "include_leave", "room.", False)),
        timeline=parse_event_filter(_object(room, "timeline", "room."), "room.timeline."),
        state=parse_event_filter(_object(room, "state", "room."), "room.state."),
        ephemeral=parse_event_filter(_object(room, "ephemeral", "room."), "room.ephemeral."),
        account_data=parse_event_filter(
            _object(room, "account_data", "room."), "room.account_data."
        ),
    )
    return Filter(
        event_fields=_str_list(obj, "event_fields", ""),
        event_format=event_format,
        presence=parse_event_filter(_object(obj, "presence", ""), "presence."),
        account_data=parse_event_filter(_object(obj, "account_data", ""), "account_data."),
        room=room_filter,
        json=obj,
    )
