"""Reading rooms for clients: state, members, messages, context and single events.

Pagination tokens are positions in the global stream, ``s<N>``, meaning "just after the
event at position N" (the sync token format). Going backwards from ``s<N>`` returns events
at positions ``<= N``; forwards, ``> N``. So a timeline whose oldest event is at position
P has ``prev_batch = s<P-1>``. Topological tokens ``t<depth>_<N>`` are accepted too and
read as ``s<N>``.

A user reads a room they are joined to as it is now; one who left or was banned reads it
as it was when they left; anyone may read a ``world_readable`` room. History visibility is
applied to every event returned.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime

from ruma.errors import forbidden, invalid_param, not_found
from ruma.protocol.events import Event, StateKey
from ruma.rooms.visibility import HISTORY, filter_events_for_user, history_visibility_of
from ruma.storage.events import EventStore

__all__ = ["EventFilter", "Page", "RoomReader", "parse_token"]

_STREAM = re.compile(r"^s(-?\d{1,18})$")
_TOPO = re.compile(r"^t(-?\d{1,18})_(-?\d{1,18})$")

# Below every position: backfilled history (older than our join) has negative positions.
MIN_POSITION = -(2**62)
# How many times one /messages request asks federation for more history.
BACKFILL_ROUNDS = 3


class Backfill(Protocol):
    """Federation's part of reading: fetching a room's older history from other servers."""

    async def backfill(self, room_id: str, limit: int) -> int:
        """Fetch up to ``limit`` older events; return how many joined the timeline."""
        ...


def parse_token(token: str, param: str = "from") -> int:
    """A pagination token's stream position; 400 ``M_INVALID_PARAM`` if malformed."""
    m = _STREAM.match(token)
    if m is not None:
        return int(m.group(1))
    m = _TOPO.match(token)
    if m is not None:
        return int(m.group(2))
    raise invalid_param(f"Invalid {param} token {token!r}")


def _glob(patterns: Sequence[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """The room event filter of ``/messages`` and ``/context`` (spec ``RoomEventFilter``)."""

    types: Sequence[str] | None = None
    not_types: Sequence[str] = ()
    senders: Sequence[str] | None = None
    not_senders: Sequence[str] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    limit: int | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> EventFilter:
        def strs(key: str) -> list[str] | None:
            value = obj.get(key)
            if value is None:
                return None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise invalid_param(f"filter.{key} must be a list of strings")
            return value

        limit = obj.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise invalid_param("filter.limit must be an integer")
        contains_url = obj.get("contains_url")
        if contains_url is not None and not isinstance(contains_url, bool):
            raise invalid_param("filter.contains_url must be a boolean")
        return cls(
            types=strs("types"),
            not_types=strs("not_types") or (),
            senders=strs("senders"),
            not_senders=strs("not_senders") or (),
            contains_url=contains_url,
            lazy_load_members=obj.get("lazy_load_members") is True,
            include_redundant_members=obj.get("include_redundant_members") is True,
            limit=limit,
        )

    def matches(self, event: Event) -> bool:
        if self.types is not None and not _glob(self.types, event.type):
            return False
        if _glob(self.not_types, event.type):
            return False
        if self.senders is not None and event.sender not in self.senders:
            return False
        if event.sender in self.not_senders:
            return False
        if self.contains_url is not None:
            has_url = isinstance(event.content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Page:
    events: list[Event]
    start: str
    end: str | None
    state: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Context:
    event: Event
    before: list[Event]
    after: list[Event]
    start: str
    end: str
    state: list[Event]


class RoomReader:
    def __init__(self, store: EventStore, clock: IReactorTime) -> None:
        self._store = store
        self._clock = clock
        # Federation plugs itself in here: /messages backfills past what we hold.
        self.backfill: Backfill | None = None

    # -- access ----------------------------------------------------------------------------

    async def access(self, user_id: str, room_id: str) -> int | None:
        """The stream position up to which ``user_id`` may read the room (None: all of it).

        404 for a room this server does not know, 403 if the user may not read it.
        """
        if await self._store.get_room_version(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        local = await self._store.get_local_membership(user_id, room_id)
        if local is not None:
            membership, _, position = local
            if membership == "join":
                return None
        if await self._world_readable(room_id):
            return None
        if local is not None and local[0] in ("leave", "ban"):
            return local[2]
        raise forbidden(f"{user_id} is not in room {room_id}")

    async def _world_readable(self, room_id: str) -> bool:
        event = await self._store.get_current_state_event(room_id, *HISTORY)
        return event is not None and history_visibility_of(event) == "world_readable"

    async def _state_ids(self, room_id: str, cap: int | None) -> dict[StateKey, str]:
        if cap is None:
            return await self._store.get_current_state_ids(room_id)
        return await self._store.get_state_ids_at(room_id, cap)

    # -- state -----------------------------------------------------------------------------

    async def get_state(self, user_id: str, room_id: str) -> list[Event]:
        cap = await self.access(user_id, room_id)
        ids = await self._state_ids(room_id, cap)
        events = await self._store.get_events(ids.values())
        return [events[i] for i in sorted(ids.values()) if i in events]

    async def get_state_event(
        self, user_id: str, room_id: str, event_type: str, state_key: str
    ) -> Event:
        cap = await self.access(user_id, room_id)
        ids = await self._state_ids(room_id, cap)
        event_id = ids.get((event_type, state_key))
        event = await self._store.get_event(event_id) if event_id else None
        if event is None:
            raise not_found(f"No {event_type} state with key {state_key!r} in this room")
        return event

    async def get_members(
        self,
        user_id: str,
        room_id: str,
        *,
        at: int | None = None,
        membership: str | None = None,
        not_membership: str | None = None,
    ) -> list[Event]:
        cap = await self.access(user_id, room_id)
        if at is not None:
            cap = at if cap is None else min(cap, at)
        ids = await self._state_ids(room_id, cap)
        member_ids = [eid for (t, _), eid in ids.items() if t == "m.room.member"]
        events = await self._store.get_events(member_ids)
        out = []
        for eid in sorted(member_ids):
            ev = events.get(eid)
            if ev is None:
                continue
            m = ev.membership
            if membership is not None and m != membership:
                continue
            if not_membership is not None and m == not_membership:
                continue
            out.append(ev)
        return out

    async def get_joined_members(self, user_id: str, room_id: str) -> dict[str, dict[str, Any]]:
        cap = await self.access(user_id, room_id)
        if cap is not None:
            raise forbidden(f"{user_id} is not in room {room_id}")
        events = await self.get_members(user_id, room_id, membership="join")
        out: dict[str, dict[str, Any]] = {}
        for ev in events:
            assert ev.state_key is not None
            info: dict[str, Any] = {}
            for key, name in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
                value = ev.content.get(key)
                info[name] = value if isinstance(value, str) else None
            out[ev.state_key] = info
        return out

    async def joined_rooms(self, user_id: str) -> list[str]:
        return [r[0] for r in await self._store.get_rooms_for_local_user(user_id, ("join",))]

    # -- events ----------------------------------------------------------------------------

    async def get_event(self, user_id: str, room_id: str, event_id: str) -> Event:
        cap = await self.access(user_id, room_id)
        meta = (await self._store.get_event_meta([event_id])).get(event_id)
        if (
            meta is None
            or meta.room_id != room_id
            or meta.rejected_reason is not None
            or meta.soft_failed
            or (cap is not None and (meta.stream_position is None or meta.stream_position > cap))
        ):
            raise not_found("Event not found")
        event = await self._store.get_event(event_id)
        if event is None or not await filter_events_for_user(self._store, user_id, [event]):
            raise not_found("Event not found")
        return event

    async def _page(
        self,
        user_id: str,
        room_id: str,
        *,
        lower: int,
        upper: int,
        limit: int,
        backwards: bool,
        event_filter: EventFilter,
    ) -> tuple[list[tuple[int, Event]], int | None]:
        """Up to ``limit`` visible, matching events with ``lower < pos <= upper``.

        Returns them and the position to continue from (None when exhausted).
        """
        found: list[tuple[int, Event]] = []
        batch = max(limit, 10)
        while lower < upper and len(found) < limit:
            rows = await self._store.get_room_events(
                room_id, from_pos=lower, to_pos=upper, limit=batch, backwards=backwards
            )
            if not rows:
                return found, None
            wanted = [(p, e) for p, e in rows if event_filter.matches(e)]
            visible = {
                e.event_id
                for e in await filter_events_for_user(self._store, user_id, [e for _, e in wanted])
            }
            for p, e in wanted:
                if e.event_id in visible:
                    found.append((p, e))
                    if len(found) == limit:
                        last = p
                        return found, (last - 1 if backwards else last)
            if len(rows) < batch:
                return found, None
            if backwards:
                upper = rows[-1][0] - 1
            else:
                lower = rows[-1][0]
        if backwards:
            return found, (upper if lower < upper else None)
        return found, (lower if lower < upper else None)

    async def get_messages(
        self,
        user_id: str,
        room_id: str,
        *,
        from_token: str | None,
        to_token: str | None,
        backwards: bool,
        limit: int,
        event_filter: EventFilter,
    ) -> Page:
        cap = await self.access(user_id, room_id)
        latest = await self._store.get_max_stream_position(room_id) or 0
        ceiling = latest if cap is None else min(cap, latest)
        if backwards:
            start = parse_token(from_token) if from_token is not None else ceiling
            upper = min(start, ceiling)
            lower = parse_token(to_token, "to") if to_token is not None else MIN_POSITION
            rows, more = await self._page(
                user_id, room_id, lower=lower, upper=upper, limit=limit, backwards=True,
                event_filter=event_filter,
            )
            rounds = 0
            exhausted = False
            while (
                self.backfill is not None
                and to_token is None
                and more is None
                and len(rows) < limit
                and rounds < BACKFILL_ROUNDS
            ):
                rounds += 1
                if not await self.backfill.backfill(room_id, max(limit - len(rows), 10)):
                    exhausted = True
                    break
                below = rows[-1][0] - 1 if rows else upper
                older, more = await self._page(
                    user_id, room_id, lower=lower, upper=below, limit=limit - len(rows),
                    backwards=True, event_filter=event_filter,
                )
                rows.extend(older)
                if more is None and len(rows) == limit and rows:
                    more = rows[-1][0] - 1  # there may be more to fetch next time
            if rounds and not exhausted and more is None:
                # Backfill was still bringing history when we stopped asking: not the
                # room's start, so give the client a token to go on from.
                more = rows[-1][0] - 1 if rows else upper
        else:
            start = parse_token(from_token) if from_token is not None else MIN_POSITION
            upper = ceiling
            if to_token is not None:
                upper = min(upper, parse_token(to_token, "to"))
            rows, more = await self._page(
                user_id, room_id, lower=start, upper=upper, limit=limit, backwards=False,
                event_filter=event_filter,
            )
        events = [e for _, e in rows]
        state: list[Event] = []
        if event_filter.lazy_load_members and events:
            state = await self._members_for(room_id, events, cap)
        return Page(
            events=events,
            start=f"s{start}",
            end=f"s{more}" if more is not None else None,
            state=state,
        )

    async def _members_for(
        self, room_id: str, events: Sequence[Event], cap: int | None
    ) -> list[Event]:
        """Member events of the senders of ``events`` (lazy-loading members)."""
        ids = await self._state_ids(room_id, cap)
        wanted = {
            ids[("m.room.member", e.sender)]
            for e in events
            if ("m.room.member", e.sender) in ids
        }
        found = await self._store.get_events(wanted)
        return [found[i] for i in sorted(wanted) if i in found]

    async def get_context(
        self,
        user_id: str,
        room_id: str,
        event_id: str,
        *,
        limit: int,
        event_filter: EventFilter,
    ) -> Context:
        cap = await self.access(user_id, room_id)
        event = await self.get_event(user_id, room_id, event_id)
        meta = (await self._store.get_event_meta([event_id]))[event_id]
        position = meta.stream_position
        if position is None:
            raise not_found("Event not found")
        latest = await self._store.get_max_stream_position(room_id) or 0
        ceiling = latest if cap is None else min(cap, latest)
        n_before = limit // 2
        n_after = limit - n_before
        before, _ = await self._page(
            user_id, room_id, lower=MIN_POSITION, upper=position - 1, limit=n_before, backwards=True,
            event_filter=event_filter,
        ) if n_before else ([], None)
        after, _ = await self._page(
            user_id, room_id, lower=position, upper=ceiling, limit=n_after, backwards=False,
            event_filter=event_filter,
        ) if n_after else ([], None)
        start = (before[-1][0] - 1) if before else position - 1
        end = after[-1][0] if after else position
        state_ids = await self._store.get_state_ids_at(room_id, end)
        if event_filter.lazy_load_members:
            all_events = [event, *(e for _, e in before), *(e for _, e in after)]
            wanted = {
                state_ids[("m.room.member", e.sender)]
                for e in all_events
                if ("m.room.member", e.sender) in state_ids
            }
        else:
            wanted = set(state_ids.values())
        state_events = await self._store.get_events(wanted)
        return Context(
            event=event,
            before=[e for _, e in before],
            after=[e for _, e in after],
            start=f"s{max(start, 0)}",
            end=f"s{end}",
            state=[state_events[i] for i in sorted(wanted) if i in state_events],
        )
