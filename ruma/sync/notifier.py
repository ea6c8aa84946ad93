"""Wakes long-polling /sync requests when something they could return has happened.

The notifier is a bus subscriber. For each settled position it reads the new ``stream`` rows
once, works out which users and rooms they concern, and fires the waiters of those users and
of users in those rooms. A woken sync recomputes its response; if that is still empty it waits
again, so a spurious wake-up costs one recomputation and never returns an empty response
early. Each wait is bounded by its ``timeout`` on the injected clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ruma.bus import EventBus, Subscription
from ruma.storage.bus import StreamRow
from ruma.storage.events import EventStore

# Stream row kinds that concern only ``row.user_id`` even when ``row.room_id`` is set.
_USER_ONLY_KINDS = frozenset({"account_data", "to_device", "device_keys"})


class _Waiter:
    def __init__(self, user_id: str, rooms: frozenset[str]) -> None:
        self.user_id = user_id
        self.rooms = rooms
        self.deferred: Deferred[bool] = Deferred(self._cancel)
        self.timer: IDelayedCall | None = None
        self.notifier: SyncNotifier | None = None

    def _cancel(self, d: Deferred[bool]) -> None:
        if self.notifier is not None:
            self.notifier._forget(self)

    def fire(self, woken: bool) -> None:
        if self.notifier is not None:
            self.notifier._forget(self)
        if not self.deferred.called:
            self.deferred.callback(woken)


class SyncNotifier:
    log = Logger()
    BATCH = 1000

    def __init__(self, clock: IReactorTime, bus: EventBus, events: EventStore) -> None:
        self._clock = clock
        self._bus = bus
        self._events = events
        self._by_user: dict[str, set[_Waiter]] = {}
        self._by_room: dict[str, set[_Waiter]] = {}
        self._position = bus.current
        self._sub: Subscription | None = None
        # Row kinds that concern everyone in some rooms: kind -> the rooms of a row
        # (``ruma.e2ee`` registers ``device_list``: the rooms of the user whose keys changed).
        self.fanout: dict[str, Callable[[StreamRow], Awaitable[Collection[str]]]] = {}

    def start(self) -> None:
        if self._sub is None:
            self._position = self._bus.current
            self._sub = self._bus.subscribe("sync-notifier", self._on_position)

    def stop(self) -> None:
        if self._sub is not None:
            self._sub.cancel()
            self._sub = None
        for waiters in list(self._by_user.values()):
            for w in list(waiters):
                w.fire(False)

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._by_user.values())

    def wait(
        self, user_id: str, rooms: Collection[str], from_pos: int, timeout_s: float
    ) -> Deferred[bool]:
        """Fire True when something for ``user_id`` or ``rooms`` after ``from_pos`` settles,
        or False after ``timeout_s``. Cancelling the Deferred stops the wait."""
        if self._position > from_pos:
            # Rows after from_pos were already dispatched: let the caller look again now.
            return succeed(True)
        w = _Waiter(user_id, frozenset(rooms))
        w.notifier = self
        self._by_user.setdefault(user_id, set()).add(w)
        for room_id in w.rooms:
            self._by_room.setdefault(room_id, set()).add(w)
        w.timer = self._clock.callLater(max(timeout_s, 0.0), w.fire, False)
        return w.deferred

    def _forget(self, w: _Waiter) -> None:
        w.notifier = None
        if w.timer is not None and w.timer.active():
            w.timer.cancel()
        users = self._by_user.get(w.user_id)
        if users is not None:
            users.discard(w)
            if not users:
                del self._by_user[w.user_id]
        for room_id in w.rooms:
            waiters = self._by_room.get(room_id)
            if waiters is not None:
                waiters.discard(w)
                if not waiters:
                    del self._by_room[room_id]

    async def _on_position(self, position: int) -> None:
        while self._position < position:
            rows = await self._bus.store.read_stream(self._position, position, self.BATCH)
            new_position = rows[-1].position if len(rows) == self.BATCH else position
            if self._by_user:
                await self._dispatch(rows)
            self._position = new_position

    async def _dispatch(self, rows: list[StreamRow]) -> None:
        users: set[str] = set()
        rooms: set[str] = set()
        for row in rows:
            if row.user_id is not None:
                users.add(row.user_id)
            if row.room_id is not None and row.kind not in _USER_ONLY_KINDS:
                rooms.add(row.room_id)
            if row.kind == "presence" and row.user_id is not None:
                # Presence goes to everyone sharing a room with the user.
                for room_id, *_ in await self._events.get_rooms_for_local_user(
                    row.user_id, ("join",)
                ):
                    rooms.add(room_id)
            fanout = self.fanout.get(row.kind)
            if fanout is not None:
                rooms.update(await fanout(row))
        to_fire: set[_Waiter] = set()
        for user_id in users:
            to_fire.update(self._by_user.get(user_id, ()))
        for room_id in rooms:
            to_fire.update(self._by_room.get(room_id, ()))
        for w in to_fire:
            w.fire(True)
