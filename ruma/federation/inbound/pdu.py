"""Stage 4: one checked PDU from another server into the room, through the one writer.

:meth:`InboundPDUHandler.on_pdu` fetches the auth events and prev events it lacks
(:mod:`.missing`: prev events through ``get_missing_events`` first, then auth events,
then the state at any remaining gap), then calls :meth:`ruma.rooms.persistence.RoomWriter.persist_event`,
which checks auth against the auth events and the state before (rejecting), and against
the current state (soft-failing), and stores it.
"""

from __future__ import annotations

from twisted.logger import Logger

from ruma.federation.inbound.missing import GapFiller
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

    async def _on_fetched(self, origin: str, event: Event) -> PersistedEvent:
        return await self.on_pdu(origin, event, fill_gaps=False)
