"""PDUs that arrive for a room while we are joining it: held, then processed after the join.

Between our ``send_join`` and the moment its answer (the room's state) is persisted, the
resident server already counts us in the room and may push the room's new events to us.
Handled at once they would fail: the room is unknown here (refused), or known from an
invite or an earlier membership but without the state the event builds on (and its prev
event, our own join, not stored yet). So :class:`JoiningRooms` records the rooms being
joined; the transaction handler hands it their PDUs instead (answered ``{}``: accepted,
for later) and, once the join is persisted, they go through the ordinary pipeline (every
check) in the order they arrived, from a background task. PDUs that arrive while the queue
is being worked off join its end, so the order holds. If the join fails they are dropped:
we are not in the room.

At most :data:`MAX_QUEUED` PDUs per room (beyond that they are refused with an error).
The queue lives in memory: a restart also loses the join in flight, and a PDU lost that
way is fetched again by gap filling (``get_missing_events``) when the next one arrives.

One :class:`JoiningRooms` per homeserver, found through the homeserver's
:class:`~ruma.storage.events.EventStore` (:func:`joining_rooms`), which both sides share:
the joining side (:class:`~ruma.federation.membership.FederationMembership`) and the
transaction handler are built in different places.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ruma.protocol.room_versions import RoomVersion
from ruma.storage.events import EventStore

__all__ = ["MAX_QUEUED", "JoiningRooms", "QueuedPDU", "joining_rooms"]

MAX_QUEUED = 500

# (origin, PDUs it sent, in order) -> processed; given by the transaction handler.
Processor = Callable[[str, str, list[Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class QueuedPDU:
    origin: str
    pdu: Any


@dataclass
class _Join:
    room_version: RoomVersion | None = None
    queue: deque[QueuedPDU] = field(default_factory=deque)
    # Joins of several local users to the same room may overlap.
    joiners: int = 1
    draining: bool = False


class JoiningRooms:
    log = Logger()

    def __init__(self, max_queued: int = MAX_QUEUED) -> None:
        self.max_queued = max_queued
        self._rooms: dict[str, _Join] = {}
        self.processor: Processor | None = None
        # The background task working off a room's queue (tests wait on it).
        self.draining: dict[str, Deferred[None]] = {}

    # -- the joining side ------------------------------------------------------------------

    def begin(self, room_id: str) -> None:
        """A join of ``room_id`` starts (before ``make_join``)."""
        join = self._rooms.get(room_id)
        if join is None:
            self._rooms[room_id] = _Join()
        else:
            join.joiners += 1

    def set_room_version(self, room_id: str, room_version: RoomVersion) -> None:
        join = self._rooms.get(room_id)
        if join is not None:
            join.room_version = room_version

    def finish(self, room_id: str, *, joined: bool) -> None:
        """The join ended: persisted (``joined``) or failed. Queued PDUs are processed in
        the background when joined, dropped otherwise."""
        join = self._rooms.get(room_id)
        if join is None:
            return
        join.joiners -= 1
        if not joined:
            if join.joiners <= 0 and not join.draining:
                del self._rooms[room_id]
                if join.queue:
                    self.log.info(
                        "join of {room_id} failed: dropping {n} PDUs received meanwhile",
                        room_id=room_id,
                        n=len(join.queue),
                    )
            return
        if not join.draining:
            join.draining = True
            d = Deferred.fromCoroutine(self._drain(room_id, join))
            self.draining[room_id] = d
            d.addErrback(
                lambda f: self.log.failure("processing PDUs of {room_id}", f, room_id=room_id)
            )

    async def _drain(self, room_id: str, join: _Join) -> None:
        try:
            while join.queue:
                origin = join.queue[0].origin
                batch: list[Any] = []
                # Consecutive PDUs of one origin go together (as one transaction would).
                while join.queue and join.queue[0].origin == origin and len(batch) < 50:
                    batch.append(join.queue.popleft().pdu)
                if self.processor is None:
                    self.log.warn(
                        "no transaction handler: dropping PDUs of {room_id}", room_id=room_id
                    )
                    join.queue.clear()
                    break
                await self.processor(origin, room_id, batch)
        finally:
            join.draining = False
            self.draining.pop(room_id, None)
            # Still joining (another local user's join is in flight): keep queueing.
            if self._rooms.get(room_id) is join and join.joiners <= 0:
                del self._rooms[room_id]

    # -- the transaction handler's side ----------------------------------------------------

    def is_joining(self, room_id: str) -> bool:
        return room_id in self._rooms

    def queued(self, room_id: str) -> int:
        """How many PDUs wait for the join of ``room_id``."""
        join = self._rooms.get(room_id)
        return len(join.queue) if join is not None else 0

    def room_version(self, room_id: str) -> RoomVersion | None:
        join = self._rooms.get(room_id)
        return join.room_version if join is not None else None

    def offer(self, room_id: str, origin: str, pdu: Any) -> bool:
        """Queue ``pdu``; False if the room is not being joined or its queue is full."""
        join = self._rooms.get(room_id)
        if join is None or len(join.queue) >= self.max_queued:
            return False
        join.queue.append(QueuedPDU(origin, pdu))
        return True


_BY_STORE: WeakKeyDictionary[EventStore, JoiningRooms] = WeakKeyDictionary()


def joining_rooms(store: EventStore) -> JoiningRooms:
    """The homeserver's :class:`JoiningRooms` (one per event store)."""
    found = _BY_STORE.get(store)
    if found is None:
        found = _BY_STORE[store] = JoiningRooms()
    return found
