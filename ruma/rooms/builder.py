"""Local events: build a signed PDU on top of the room's head, then persist it, under one lock.

The builder picks the prev events (the forward extremities, at most ``MAX_PREV_EVENTS``),
works out the state before (the current state when the event covers every extremity),
selects auth events from it with ``auth_types_for_event``, sets the depth and signs with
the server's key via :func:`ruma.protocol.events.build_event`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.errors import Codes, MatrixError, forbidden, not_found
from ruma.protocol.errors import InvalidEvent
from ruma.protocol.events import Event, StateKey, auth_types_for_event, build_event
from ruma.protocol.room_versions import RoomVersion
from ruma.protocol.signing import SigningKey
from ruma.rooms.persistence import EventRejected, PersistedEvent, RoomWriter, UnknownRoom
from ruma.storage.events import NewRoom, RoomHead, StateAt, TxnIdKey

__all__ = ["LocalEventSender", "MAX_PREV_EVENTS", "NewEvent"]

MAX_PREV_EVENTS = 10


@dataclass(frozen=True, slots=True)
class NewEvent:
    """What a local user asks to send; the builder fills in the rest."""

    type: str
    sender: str
    content: Mapping[str, Any]
    state_key: str | None = None
    redacts: str | None = None
    # An appservice's timestamp massaging (``?ts=``): the event's origin_server_ts.
    origin_server_ts: int | None = None


def _random_localpart() -> str:
    return secrets.token_urlsafe(18)


class LocalEventSender:
    """Builds, signs, authorises and persists events of local users."""

    log = Logger()

    def __init__(
        self,
        writer: RoomWriter,
        clock: IReactorTime,
        server_name: str,
        signing_key: SigningKey,
        *,
        event_id_localpart: Callable[[], str] = _random_localpart,
    ) -> None:
        self.writer = writer
        self.store = writer.store
        self._clock = clock
        self.server_name = server_name
        self._signing_key = signing_key
        self._localpart = event_id_localpart

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    async def send(
        self,
        room_id: str,
        new: NewEvent,
        *,
        txn_id: TxnIdKey | None = None,
        check: Callable[[RoomHead], Any] | None = None,
    ) -> PersistedEvent:
        """Build ``new`` on top of the room and persist it; 403 if the auth rules refuse.

        With ``txn_id``, a retry of the same transaction returns the first event instead.
        ``check(head)`` (awaitable or not) runs under the lock before building.
        """
        async with self.writer.room_lock(room_id):
            if txn_id is not None:
                # The retry check and the head in one read.
                earlier, head = await self.store.get_txn_event_and_room_head(txn_id, room_id)
                if earlier is not None:
                    found = await self.store.get_pdus([earlier])
                    if earlier in found:
                        return PersistedEvent(found[earlier], None, already_known=True)
                    head = await self.store.get_room_head(room_id)
            else:
                head = await self.store.get_room_head(room_id)
            if head is None:
                raise not_found(f"Unknown room {room_id}")
            if check is not None:
                result = check(head)
                if hasattr(result, "__await__"):
                    await result
            event, state = await self._build_on(head, new)
            # The state before the event and the head are what the writer would read again.
            return await self._persist(event, txn_id=txn_id, state_before=state, head=head)

    async def _persist(
        self,
        event: Event,
        *,
        txn_id: TxnIdKey | None = None,
        new_room: NewRoom | None = None,
        state_before: StateAt | None = None,
        head: RoomHead | None = None,
    ) -> PersistedEvent:
        try:
            persisted = await self.writer.persist_event_locked(
                event,
                local=True,
                txn_id=txn_id,
                new_room=new_room,
                state_before=state_before,
                known_head=head,
            )
        except EventRejected as e:
            raise forbidden(e.reason) from e
        except UnknownRoom as e:
            raise not_found(f"Unknown room {event.room_id}") from e
        self.log.debug(
            "sent {event_id} ({type}) in {room_id}",
            event_id=event.event_id,
            type=event.type,
            room_id=event.room_id,
        )
        return persisted

    async def build(self, head: RoomHead, new: NewEvent) -> Event:
        """Sign a new event on top of ``head`` (its state is the state before)."""
        event, _ = await self._build_on(head, new)
        return event

    async def _build_on(self, head: RoomHead, new: NewEvent) -> tuple[Event, StateAt]:
        """:meth:`build`, also returning the state before the event (after its prevs)."""
        room_version = head.room_version
        prev_ids = sorted(head.forward_extremities)
        prev_events = await self.store.get_pdus(prev_ids)
        ordered = sorted(prev_events.values(), key=lambda e: (-e.depth, e.event_id))
        prevs = ordered[:MAX_PREV_EVENTS]
        if len(prevs) == len(head.forward_extremities):
            state = StateAt(head.current_state_group)
        else:
            state, _ = await self.writer.state_after_events(
                room_version, head.room_id, [e.event_id for e in prevs]
            )
        wanted = auth_types_for_event(
            room_version, new.type, new.sender, new.state_key, new.content
        )
        auth_ids = await self._state_keys(state, wanted)
        auth_events = await self.store.get_pdus(auth_ids.values())
        event = self._build(
            room_version,
            room_id=head.room_id,
            new=new,
            prev_events=prevs,
            auth_events=[auth_events[i] for i in sorted(auth_ids.values()) if i in auth_events],
            origin_server_ts=new.origin_server_ts,
        )
        return event, state

    async def _state_keys(self, state: StateAt, keys: set[StateKey]) -> dict[StateKey, str]:
        out: dict[StateKey, str] = {}
        if state.group is not None:
            out = await self.store.state.get_state_group_keys(state.group, keys)
        for k in keys:
            if k in state.changes:
                v = state.changes[k]
                if v is None:
                    out.pop(k, None)
                else:
                    out[k] = v
        return out

    def _build(
        self,
        room_version: RoomVersion,
        *,
        room_id: str | None,
        new: NewEvent,
        prev_events: list[Event],
        auth_events: list[Event],
        origin_server_ts: int | None = None,
    ) -> Event:
        try:
            return build_event(
                room_version,
                room_id=room_id,
                sender=new.sender,
                type=new.type,
                content=new.content,
                state_key=new.state_key,
                prev_events=prev_events,
                auth_events=auth_events,
                origin_server_ts=(
                    origin_server_ts if origin_server_ts is not None else self.now_ms()
                ),
                server_name=self.server_name,
                signing_key=self._signing_key,
                redacts=new.redacts,
                event_id_localpart=self._localpart(),
            )
        except InvalidEvent as e:
            if "larger than" in str(e):
                raise MatrixError(413, Codes.TOO_LARGE, "Event is too large") from e
            raise MatrixError(400, Codes.BAD_JSON, f"Invalid event: {e}") from e
        except ValueError as e:
            raise MatrixError(400, Codes.BAD_JSON, f"Invalid event: {e}") from e

    async def create_room_event(
        self, room_version: RoomVersion, room_id: str | None, new: NewEvent, is_public: bool
    ) -> PersistedEvent:
        """Build and persist the ``m.room.create`` event of a new room.

        ``room_id`` is None in room versions that derive it from the create event.
        """
        ts = self.now_ms()
        while True:
            event = self._build(
                room_version, room_id=room_id, new=new, prev_events=[], auth_events=[],
                origin_server_ts=ts,
            )
            async with self.writer.room_lock(event.room_id):
                persisted = await self._persist(
                    event, new_room=NewRoom(room_version, new.sender, is_public)
                )
            # In v12 the room ID is the create event's hash: the same user creating two
            # rooms with the same content in the same millisecond must not get one room.
            if not persisted.already_known:
                return persisted
            if not room_version.room_id_from_create_event:
                raise MatrixError(400, Codes.ROOM_IN_USE, f"Room {room_id} already exists")
            ts += 1
