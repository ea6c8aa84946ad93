"""Backfill: fetching a room's older history from other servers, for ``/messages``.

A room joined late starts, here, at our join: its timeline refers (through prev events)
to events we do not hold, the *backward extremities*. When a client paginates past the
oldest event we hold, :class:`Backfiller` asks a server in the room for ``/backfill``
from those extremities (through the inbound :class:`~ruma.federation.event_fetcher.
EventFetcher`, which checks format, signatures and hashes), then persists the events
through the room writer as backfilled history: oldest first, each with the state before it
(computed from its prev events when we hold them with state, otherwise fetched with
``/state_ids`` and the missing events persisted as outliers), each checked against its
auth events and that state, and placed at reserved negative stream positions so
``/messages`` serves them before everything we had. The bus does not announce them: they
are history, not news.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from twisted.logger import Logger

from ruma.federation.event_fetcher import EventFetcher, FetchError
from ruma.federation.membership import persist_outliers
from ruma.protocol.events import Event, StateKey
from ruma.protocol.room_versions import RoomVersion
from ruma.rooms.persistence import RoomWriter

__all__ = ["Backfiller"]

MAX_EXTREMITIES = 5
# Above this many missing events, one /state request beats one /event request each.
MAX_SINGLE_FETCHES = 20


def _history_order(events: Iterable[Event]) -> list[Event]:
    """Oldest first: each event after the prev events it has among ``events``."""
    by_id = {e.event_id: e for e in events}
    out: list[Event] = []
    done: set[str] = set()
    remaining = {eid: {p for p in e.prev_event_ids if p in by_id} for eid, e in by_id.items()}
    while remaining:
        ready = sorted(
            (by_id[eid] for eid, deps in remaining.items() if deps <= done),
            key=lambda e: (e.depth, e.event_id),
        )
        if not ready:
            ready = sorted((by_id[eid] for eid in remaining), key=lambda e: (e.depth, e.event_id))
        for e in ready:
            out.append(e)
            done.add(e.event_id)
            remaining.pop(e.event_id, None)
    return out


class Backfiller:
    """Fills a room's history from other servers; the rooms layer's ``Backfill`` seam."""

    log = Logger()

    def __init__(self, *, fetcher: EventFetcher, writer: RoomWriter, server_name: str) -> None:
        self._fetcher = fetcher
        self._writer = writer
        self._store = writer.store
        self.server_name = server_name

    async def backfill(self, room_id: str, limit: int) -> int:
        """Fetch up to ``limit`` older events of ``room_id``; return how many joined the
        timeline (0: nothing more to be had)."""
        room_version = await self._store.get_room_version(room_id)
        if room_version is None:
            return 0
        extremities = await self._store.get_backward_extremities(room_id)
        if not extremities:
            return 0
        # The newest gaps first: those are next to what the client is reading.
        chosen = sorted(extremities, key=lambda e: (-extremities[e], e))[:MAX_EXTREMITIES]
        hosts = sorted(await self._store.get_joined_hosts(room_id) - {self.server_name})
        for server in hosts:
            try:
                events = await self._fetcher.backfill(
                    server, room_version, room_id, chosen, max(limit, 1)
                )
            except FetchError as e:
                self.log.info(
                    "backfill of {room_id} from {server} failed: {e}",
                    room_id=room_id, server=server, e=e,
                )
                continue
            added = await self._persist(server, room_version, room_id, events)
            if added:
                self.log.info(
                    "backfilled {n} events of {room_id} from {server}",
                    n=added, room_id=room_id, server=server,
                )
                return added
        return 0

    async def _persist(
        self, server: str, room_version: RoomVersion, room_id: str, events: Sequence[Event]
    ) -> int:
        meta = await self._store.get_event_meta(e.event_id for e in events)
        fresh = [
            e
            for e in events
            if e.event_id not in meta
            or (meta[e.event_id].outlier and meta[e.event_id].rejected_reason is None)
        ]
        if not fresh:
            return 0
        ordered = _history_order(fresh)
        positions = await self._store.reserve_backfill_positions(len(ordered))
        added = 0
        for event, position in zip(ordered, positions, strict=True):
            state_before = None
            prevs = await self._store.get_state_groups_for_events(event.prev_event_ids)
            if len(prevs) < len(set(event.prev_event_ids)) or not event.prev_event_ids:
                try:
                    state_before = await self._state_from(server, room_version, room_id, event)
                except FetchError as e:
                    self.log.info(
                        "no state for backfilled {event_id} from {server}: {e}",
                        event_id=event.event_id, server=server, e=e,
                    )
                    continue
            try:
                persisted = await self._writer.persist_event(
                    event, state_before=state_before, backfill_position=position
                )
            except ValueError as e:
                self.log.info("cannot place {event_id}: {e}", event_id=event.event_id, e=e)
                continue
            if persisted.stream_position is not None and not persisted.already_known:
                added += 1
        return added

    async def _state_from(
        self, server: str, room_version: RoomVersion, room_id: str, event: Event
    ) -> dict[StateKey, str]:
        """The state before ``event`` as ``server`` has it, with the events of it (and
        their auth chains) that we lack fetched, checked and stored as outliers."""
        ids = await self._fetcher.get_state_ids(server, room_id, event.event_id)
        wanted = set(ids.pdu_ids) | set(ids.auth_chain_ids) | set(event.auth_event_ids)
        missing = wanted - await self._store.have_events(wanted)
        if missing:
            fetched: list[Event]
            if len(missing) > MAX_SINGLE_FETCHES:
                at, chain = await self._fetcher.get_state(
                    server, room_version, room_id, event.event_id
                )
                fetched = [e for e in (*at, *chain) if e.event_id in missing]
                still = missing - {e.event_id for e in fetched}
                if still:
                    fetched.extend(
                        (await self._fetcher.get_events(
                            server, room_version, still, room_id=room_id
                        )).values()
                    )
            else:
                fetched = list(
                    (await self._fetcher.get_events(
                        server, room_version, missing, room_id=room_id
                    )).values()
                )
            await persist_outliers(
                self._writer, fetched, room_version=room_version, locked=False
            )
        pdus = await self._store.get_pdus(ids.pdu_ids)
        meta = await self._store.get_event_meta(ids.pdu_ids)
        state: dict[StateKey, str] = {}
        for eid in ids.pdu_ids:
            ev = pdus.get(eid)
            if ev is None or ev.state_key is None or meta[eid].rejected_reason is not None:
                continue
            state[ev.state_key_tuple] = eid
        return state
