"""Serving room history to other servers: ``/event``, ``/state``, ``/state_ids``,
``/event_auth``, ``/get_missing_events`` and ``/backfill``.

Every request about a room: the room must be known here (404), its server ACL must allow
the asking server (403), and a user of that server must be joined to it now (403). Events
returned go through history visibility for servers (pruned where hidden, see
:class:`~ruma.federation.access.RoomAccess`). Rejected events are never served.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ruma.errors import not_found
from ruma.federation.access import RoomAccess
from ruma.federation.inbound.missing import create_event_id
from ruma.protocol.events import Event
from ruma.storage.events import EventStore

__all__ = ["FederationHistory"]

JsonDict = dict[str, Any]

MAX_BACKFILL = 100
MAX_MISSING_EVENTS = 100


class FederationHistory:
    def __init__(
        self, *, clock: IReactorTime, store: EventStore, access: RoomAccess, server_name: str
    ) -> None:
        self._clock = clock
        self._store = store
        self._access = access
        self.server_name = server_name

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def _check_room(self, origin: str, room_id: str) -> None:
        if await self._store.get_room_version(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        await self._access.check_acl(room_id, origin)
        await self._access.check_server_in_room(room_id, origin)

    async def _usable(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """The stored, non-rejected events among ``event_ids`` (pruned if redacted)."""
        ids = list(dict.fromkeys(event_ids))
        pdus = await self._store.get_pdus(ids)
        meta = await self._store.get_event_meta(pdus)
        out: dict[str, Event] = {}
        for eid, ev in pdus.items():
            m = meta[eid]
            if m.rejected_reason is not None:
                continue
            out[eid] = ev.redacted() if m.redacted_by is not None else ev
        return out

    async def _visible(self, origin: str, events: Sequence[Event]) -> list[JsonDict]:
        return [e.pdu() for e in await self._access.filter_events_for_server(origin, events)]

    async def _auth_chain(self, events: Iterable[Event]) -> dict[str, Event]:
        chain: dict[str, Event] = {}
        todo: set[str] = set()
        for ev in events:
            todo.update(ev.auth_event_ids)
            cid = create_event_id(ev)
            if cid is not None:
                todo.add(cid)
        while todo:
            found = await self._usable(todo)
            chain.update(found)
            nxt: set[str] = set()
            for ev in found.values():
                nxt.update(ev.auth_event_ids)
            todo = nxt - chain.keys()
            if not found:
                break
        return chain

    # -- endpoints -------------------------------------------------------------------------

    async def get_event(self, origin: str, event_id: str) -> JsonDict:
        event = (await self._usable([event_id])).get(event_id)
        if event is None:
            raise not_found(f"Unknown event {event_id}")
        await self._check_room(origin, event.room_id)
        return {
            "origin": self.server_name,
            "origin_server_ts": self._now(),
            "pdus": await self._visible(origin, [event]),
        }

    async def _state_before(self, origin: str, room_id: str, event_id: str) -> list[Event]:
        await self._check_room(origin, room_id)
        groups = await self._store.get_state_groups_for_events([event_id])
        event = (await self._usable([event_id])).get(event_id)
        if event_id not in groups or event is None or event.room_id != room_id:
            raise not_found(f"No state known at {event_id}")
        state = await self._store.state.get_state_group(groups[event_id][0])
        found = await self._usable(state.values())
        return list(found.values())

    async def get_state_ids(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        state = await self._state_before(origin, room_id, event_id)
        chain = await self._auth_chain(state)
        return {
            "pdu_ids": sorted(e.event_id for e in state),
            "auth_chain_ids": sorted(chain),
        }

    async def get_state(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        state = await self._state_before(origin, room_id, event_id)
        chain = await self._auth_chain(state)
        return {
            "pdus": [e.pdu() for e in state],
            "auth_chain": [e.pdu() for e in sorted(chain.values(), key=lambda e: e.depth)],
        }

    async def get_event_auth(self, origin: str, room_id: str, event_id: str) -> JsonDict:
        await self._check_room(origin, room_id)
        event = (await self._usable([event_id])).get(event_id)
        if event is None or event.room_id != room_id:
            raise not_found(f"Unknown event {event_id}")
        chain = await self._auth_chain([event])
        return {"auth_chain": [e.pdu() for e in sorted(chain.values(), key=lambda e: e.depth)]}

    async def get_missing_events(
        self,
        origin: str,
        room_id: str,
        *,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> JsonDict:
        """A breadth-first walk back from ``latest_events`` (not included), stopping at
        ``earliest_events``, below ``min_depth`` and at ``limit`` events; oldest first."""
        await self._check_room(origin, room_id)
        limit = max(0, min(limit, MAX_MISSING_EVENTS))
        seen = set(earliest_events) | set(latest_events)
        latest = await self._timeline_events(room_id, latest_events)
        frontier = [p for e in latest for p in e.prev_event_ids if p not in seen]
        seen.update(frontier)
        found: list[Event] = []
        while frontier and len(found) < limit:
            events = await self._timeline_events(room_id, frontier)
            frontier = []
            for ev in events:
                if ev.depth < min_depth or len(found) >= limit:
                    continue
                found.append(ev)
                for p in ev.prev_event_ids:
                    if p not in seen:
                        seen.add(p)
                        frontier.append(p)
        found.sort(key=lambda e: (e.depth, e.event_id))
        return {"events": await self._visible(origin, found)}

    async def backfill(
        self, origin: str, room_id: str, from_event_ids: Sequence[str], limit: int
    ) -> JsonDict:
        """``from_event_ids`` and the events before them, newest (deepest) first."""
        await self._check_room(origin, room_id)
        limit = max(0, min(limit, MAX_BACKFILL))
        seen: set[str] = set(from_event_ids)
        heap: list[tuple[int, str, Event]] = []
        for ev in await self._timeline_events(room_id, from_event_ids):
            heapq.heappush(heap, (-ev.depth, ev.event_id, ev))
        found: list[Event] = []
        while heap and len(found) < limit:
            _, _, ev = heapq.heappop(heap)
            found.append(ev)
            prevs = [p for p in ev.prev_event_ids if p not in seen]
            seen.update(prevs)
            for prev in await self._timeline_events(room_id, prevs):
                heapq.heappush(heap, (-prev.depth, prev.event_id, prev))
        return {
            "origin": self.server_name,
            "origin_server_ts": self._now(),
            "pdus": await self._visible(origin, found),
        }

    async def _timeline_events(self, room_id: str, event_ids: Iterable[str]) -> list[Event]:
        """Stored, non-rejected, non-outlier events of the room among ``event_ids``."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return []
        usable = await self._usable(ids)
        meta = await self._store.get_event_meta(usable)
        return [
            ev
            for eid, ev in usable.items()
            if ev.room_id == room_id and not meta[eid].outlier
        ]
