"""Stage 4: one checked PDU from another server into the room, through the one writer.

:meth:`InboundPDUHandler.on_pdu` fetches the auth events and prev events it lacks
(:mod:`.missing`: prev events through ``get_missing_events`` first, then auth events,
then the state at any remaining gap), then calls :meth:`ruma.rooms.persistence.RoomWriter.persist_event`,
which checks auth against the auth events and the state before (rejecting), and against
the current state (soft-failing), and stores it.

Most events need nothing fetched (their prev events are in our timeline, their auth events
are held). Those take one read, under the room's write lock, of everything the writer
would read before writing (``EventStore.get_persist_context``: the event's meta, the room
head, waiting redactions, and whatever of the prev events' state groups and the auth
events the caches lack), then the writer's one write transaction: two database
transactions per event, all checks unchanged.
"""

from __future__ import annotations

from twisted.logger import Logger

from ruma.federation.inbound.missing import GapFiller, create_event_id
from ruma.protocol.events import Event
from ruma.rooms.persistence import PersistedEvent, RoomWriter
from ruma.storage.events import EventStore

__all__ = ["InboundPDUHandler"]


class InboundPDUHandler:
    log = Logger()

    def __init__(self, store: EventStore, writer: RoomWriter, gaps: GapFiller) -> None:
        self._store = store
        self._writer = writer
        self.gaps = gaps

    async def on_pdu(self, origin: str, event: Event, *, fill_gaps: bool = True) -> PersistedEvent:
        """Handle a checked event that ``origin`` pushed to us (or that we fetched).

        ``fill_gaps``: ask ``origin`` for missing prev events with ``get_missing_events``
        first (live events); events fetched that way are handled with ``fill_gaps=False``,
        so a gap below them is bridged with the state at it instead, and the recursion ends.
        Raises :class:`~ruma.federation.inbound.errors.PDUError` when the event cannot be
        judged (its auth events cannot be fetched), and the writer's ``UnknownRoom``.
        """
        complete = await self._persist_if_complete(event)
        if complete is not None:
            return complete
        meta = (await self._store.get_event_meta([event.event_id])).get(event.event_id)
        if meta is not None and not meta.outlier:
            return PersistedEvent(
                event, meta.stream_position, meta.rejected_reason, meta.soft_failed, True
            )
        # Prev events first: what get_missing_events brings enters the timeline in order,
        # which often includes this event's newer auth events (fetching those first would
        # store them as outliers, outside the timeline).
        missing = await self.gaps.missing_prevs(event)
        if missing and fill_gaps:
            await self.gaps.fill_with_missing_events(origin, event, self._on_fetched)
            missing = await self.gaps.missing_prevs(event)
        await self.gaps.fetch_auth_events(origin, event)
        state_before = None
        if missing:
            self.log.info(
                "{event_id}: no state at prev events {missing}; fetching it from {origin}",
                event_id=event.event_id,
                missing=missing,
                origin=origin,
            )
            state_before = await self.gaps.state_before(origin, event)
        return await self._writer.persist_event(event, state_before=state_before)

    async def _persist_if_complete(self, event: Event) -> PersistedEvent | None:
        """The common case, in as few database transactions as possible: the event's prev
        events have state here and its auth events are held, so nothing is fetched and it
        goes to the writer under the same hold of the room's lock as one read (the event's
        meta, the room head and redactions waiting for it; prev events' state groups and
        held auth events come from caches when recent). None: the event needs the full path.
        """
        async with self._writer.room_lock(event.room_id):
            auth_ids = list(event.auth_event_ids)
            cid = create_event_id(event)
            if cid is not None:
                auth_ids.append(cid)
            meta, head = await self._store.get_persist_context(
                event.event_id,
                event.room_id,
                prev_event_ids=event.prev_event_ids,
                auth_event_ids=auth_ids,
            )
            if meta is not None and not meta.outlier:
                return PersistedEvent(
                    event, meta.stream_position, meta.rejected_reason, meta.soft_failed, True
                )
            if head is None or head.room_version != event.room_version:
                return None
            if await self.gaps.missing_prevs(event):
                return None
            if await self.gaps.missing_auth_events(event):
                return None
            return await self._writer.persist_event_locked(event, known_head=head)

    async def _on_fetched(self, origin: str, event: Event) -> PersistedEvent:
        return await self.on_pdu(origin, event, fill_gaps=False)
