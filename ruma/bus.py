"""The event bus: wakes subscribers when the database's stream position advances.

Everything others must see takes a stream position in the transaction that stores it (see
``ruma.storage.database``). The database announces a position only once every smaller one
has settled; the bus turns those announcements into calls of each subscriber's
``callback(position)``, meaning "everything up to ``position`` is committed and readable".

Rules the bus keeps:

- Delivery happens on the next reactor turn (``clock.callLater(0, ...)``), never inside the
  code that committed, so a subscriber never re-enters the writer.
- Positions are coalesced: a subscriber may be told 7 then 12 without hearing 8..11. It reads
  what it needs (the ``stream`` table, via ``BusStore.read_stream``) up to the position given.
- Each subscriber has its own serialized loop. An ``async`` callback that is still running
  when a new position arrives is called again with the newest position once it finishes; a
  slow subscriber therefore never delays publishing or the other subscribers.
- A subscriber's exception is logged and does not stop delivery to it or to the others.

The bus holds no data: ``DurableSubscriber`` stores the last position it fully handled in
``bus_subscriber_positions`` and, when started, replays the ``stream`` rows after it, so a
crash or restart loses nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ruma.storage.bus import BusStore, StreamRow, settled
from ruma.storage.database import Database

PositionCallback = Callable[[int], Awaitable[None] | None]

__all__ = ["DurableSubscriber", "EventBus", "PositionCallback", "StreamRow", "Subscription"]


class Subscription:
    """One subscriber's serialized delivery loop. ``cancel()`` stops further deliveries."""

    log = Logger()

    def __init__(self, bus: EventBus, name: str, callback: PositionCallback, start: int) -> None:
        self.name = name
        self._bus = bus
        self._callback = callback
        self._handled = start
        self._wanted = start
        self._running: Deferred[None] | None = None
        self.cancelled = False

    @property
    def handled(self) -> int:
        """The newest position this subscriber's callback has returned from."""
        return self._handled

    def poke(self, position: int) -> None:
        """Ask for ``callback(position)`` (or a newer one) once any running call finishes."""
        if self.cancelled:
            return
        if position > self._wanted:
            self._wanted = position
        if self._running is None and self._wanted > self._handled:
            d = Deferred.fromCoroutine(self._loop())
            if not d.called:  # a loop that finished synchronously has already cleared itself
                self._running = d

    async def _loop(self) -> None:
        try:
            while not self.cancelled and self._wanted > self._handled:
                position = self._wanted
                try:
                    result = self._callback(position)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    self.log.failure(
                        "bus subscriber {name} failed at position {position}",
                        name=self.name,
                        position=position,
                    )
                self._handled = position
        finally:
            self._running = None

    def rewind(self, position: int) -> None:
        """Treat positions after ``position`` as not yet handled (the next poke redelivers)."""
        self._handled = min(self._handled, position)

    def cancel(self) -> None:
        self.cancelled = True
        self._bus._remove(self)

    def when_idle(self) -> Deferred[None]:
        """A Deferred that fires once no callback is running (for stopping cleanly)."""
        running = self._running
        if running is None:
            return succeed(None)
        return Deferred.fromCoroutine(settled(running))


class EventBus(Service):
    """Announces settled stream positions to subscribers on the next reactor turn."""

    log = Logger()

    def __init__(self, clock: IReactorTime, db: Database) -> None:
        self._clock = clock
        self._db = db
        self.store = BusStore(db)
        self._subscriptions: list[Subscription] = []
        self._pending: IDelayedCall | None = None
        self._latest = 0
        self._listening = False

    @property
    def clock(self) -> IReactorTime:
        return self._clock

    @property
    def current(self) -> int:
        """The highest position below which everything is committed."""
        return self._db.positions.current

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.start()

    def stopService(self) -> Deferred[None] | None:
        self.stop()
        return super().stopService()  # type: ignore[no-untyped-call,no-any-return]

    def start(self) -> None:
        """Listen for position advances (the database carries listeners over ``prepare``)."""
        if not self._listening:
            self._db.positions.add_listener(self._on_advance)
            self._listening = True
            self._latest = self.current

    def stop(self) -> None:
        if self._listening:
            self._db.positions.remove_listener(self._on_advance)
            self._listening = False
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None

    def subscribe(self, name: str, callback: PositionCallback) -> Subscription:
        """Call ``callback(position)`` for positions settled after now (coalesced, serialized)."""
        sub = Subscription(self, name, callback, self.current)
        self._subscriptions.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    def _on_advance(self, position: int) -> None:
        # Called by the database inside the writer's callback chain: only note and schedule.
        if position > self._latest:
            self._latest = position
        if self._pending is None:
            self._pending = self._clock.callLater(0, self._deliver)

    def _deliver(self) -> None:
        self._pending = None
        position = self._latest
        for sub in list(self._subscriptions):
            try:
                sub.poke(position)
            except Exception:  # poke only schedules; this is a bug guard, not a code path
                self.log.failure("waking bus subscriber {name}", name=sub.name)


class DurableSubscriber(Service):
    """A subscriber that never misses a stream row, across crashes and restarts.

    Subclasses implement ``handle_rows``. The base class reads ``stream`` rows after the last
    position it recorded, hands them over in batches and records the new position after each
    batch returns. Delivery is at-least-once: a crash between handling a batch and recording it
    hands the batch over again, so handlers must be idempotent (or store their own progress in
    the same transaction as their effects). When ``handle_rows`` raises, the batch is retried
    on the next wake-up or after ``retry_delay`` seconds, whichever comes first.

    A subscriber that has never run starts at the current position (it is not handed the whole
    history), unless ``replay_from_start`` is set.

    The position is stored at most every ``position_flush_delay`` seconds (and when stopped),
    not after every batch: on a busy server that is one small write transaction instead of one
    per event per subscriber. A crash may hand over again what was handled in that last
    interval, which at-least-once delivery already allows.
    """

    log = Logger()
    batch_size = 100
    retry_delay = 5.0
    replay_from_start = False
    position_flush_delay = 0.5

    def __init__(self, name: str, bus: EventBus) -> None:
        self.subscriber_name = name
        self._bus = bus
        self._store = bus.store
        self._position: int | None = None
        self._sub: Subscription | None = None
        self._retry: IDelayedCall | None = None
        self._starting: Deferred[None] | None = None
        self._stored: int | None = None  # the position last written to the database
        self._flush_timer: IDelayedCall | None = None
        self._flushing: Deferred[None] | None = None

    async def handle_rows(self, rows: list[StreamRow]) -> None:
        raise NotImplementedError

    @property
    def position(self) -> int | None:
        """The last position fully handled (None before ``start``)."""
        return self._position

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._starting = Deferred.fromCoroutine(self.start())
        self._starting.addErrback(
            lambda f: self.log.failure("starting durable subscriber {name}", f, name=self.subscriber_name)
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self.stop())

    async def start(self) -> None:
        """Load the stored position, subscribe, and catch up with everything after it."""
        stored = await self._store.get_subscriber_position(self.subscriber_name)
        if stored is None:
            stored = 0 if self.replay_from_start else self._bus.current
            await self._store.set_subscriber_position(self.subscriber_name, stored)
        self._position = stored
        self._stored = stored
        self._sub = self._bus.subscribe(self.subscriber_name, self._catch_up)
        # The subscription starts at the bus's current position; force one catch-up now.
        self._sub.rewind(stored)
        self._sub.poke(self._bus.current)

    async def stop(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._sub is not None:
            sub = self._sub
            self._sub = None
            sub.cancel()
            await sub.when_idle()
        await self.flush_position()

    async def flush_position(self) -> None:
        """Store the position handled so far now (instead of when the flush timer fires)."""
        if self._flush_timer is not None and self._flush_timer.active():
            self._flush_timer.cancel()
        self._flush_timer = None
        while self._flushing is not None:
            await settled(self._flushing)
        position = self._position
        if position is None or position == self._stored:
            return
        d = Deferred.fromCoroutine(
            self._store.set_subscriber_position(self.subscriber_name, position)
        )
        self._flushing = d
        try:
            await d
            if self._stored is None or position > self._stored:
                self._stored = position
        finally:
            self._flushing = None

    def _schedule_flush(self) -> None:
        if self._flush_timer is not None and self._flush_timer.active():
            return

        def fire() -> None:
            self._flush_timer = None
            d = Deferred.fromCoroutine(self.flush_position())
            d.addErrback(
                lambda f: self.log.failure(
                    "storing durable subscriber {name}'s position", f, name=self.subscriber_name
                )
            )

        self._flush_timer = self._bus.clock.callLater(self.position_flush_delay, fire)

    async def _catch_up(self, target: int) -> None:
        assert self._position is not None
        while self._position < target:
            rows = await self._store.read_stream(self._position, target, self.batch_size)
            new_position = rows[-1].position if len(rows) == self.batch_size else target
            if rows:
                try:
                    await self.handle_rows(rows)
                except Exception:
                    self.log.failure(
                        "durable subscriber {name} failed on rows {first}..{last}; will retry",
                        name=self.subscriber_name,
                        first=rows[0].position,
                        last=rows[-1].position,
                    )
                    self._schedule_retry(target)
                    return
            self._position = new_position
            self._schedule_flush()

    def _schedule_retry(self, target: int) -> None:
        if self._retry is not None and self._retry.active():
            return
        sub = self._sub

        def retry() -> None:
            self._retry = None
            if sub is not None and not sub.cancelled:
                # The subscription thinks ``target`` is handled; step it back so it runs again.
                sub.rewind(self._position or 0)
                sub.poke(max(target, self._bus.current))

        self._retry = self._bus.clock.callLater(self.retry_delay, retry)
