"""Delivering transactions to appservices: one durable queue and one state machine each.

:class:`AppservicePusher` is a single durable bus subscriber. For each new ``stream`` row, in
order, it works out which appservices are interested (:mod:`ruma.appservice.namespaces`) and
appends the row to their queues in the database, in one database transaction per batch of
rows (appending is idempotent, so the bus's at-least-once replay after a crash queues
nothing twice). It never waits for an appservice: a slow or dead appservice holds up only its
own queue, never the bus or the other appservices.

Each appservice then has a :class:`Delivery` machine (automat)::

    Up ──wake──▶ Sending ──drained──▶ Up
                    │ failed
                    ▼
    Down ──retry timer──▶ Recovering ──drained──▶ Up
      ▲                       │ failed
      └───────────────────────┘

Sending and Recovering run the same loop: fix the next transaction in the database (its ID
and its items; see ``ruma.storage.appservice``), send it, and record its acceptance, until the
queue is empty. A failure (error status, timeout, refused connection) leaves the transaction
fixed and moves to Down, whose timer grows exponentially (:class:`Backoff`) on the injected
clock; the retry sends the same transaction ID with the same items. Restarting Ruma picks up
the fixed transaction and the queue from the database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from automat import TypeMachineBuilder, pep614
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ruma.appservice.namespaces import Interest, Registry
from ruma.appservice.pusher import transaction_body
from ruma.appservice.registration import Registration
from ruma.backoff import ExponentialBackoff
from ruma.bus import DurableSubscriber, EventBus, StreamRow
from ruma.handlers.typing import TypingHandler
from ruma.storage.appservice import EPHEMERAL, EVENT, AppserviceStore, PendingTxn, QueueItem
from ruma.storage.events import EventStore
from ruma.storage.presence import PresenceStore
from ruma.storage.receipts import UNTHREADED, ReceiptStore

__all__ = [
    "AppservicePusher",
    "Backoff",
    "Delivery",
    "DeliveryCore",
    "TransactionSink",
    "make_delivery",
]

SUBSCRIBER_NAME = "appservice_pusher"
# Items per transaction (Synapse sends up to 100 events and 100 ephemeral events).
TXN_LIMIT = 100


class TransactionSink(Protocol):
    """Where an appservice's transactions go: HTTP for an external one, a Python call for a
    bridge inside Ruma. Raises to say "not delivered, retry later"."""

    async def __call__(self, reg: Registration, txn_id: str, body: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class Backoff(ExponentialBackoff):
    """The appservice retry schedule: 2 s doubling up to 5 minutes, spread by 10% so that
    appservices that failed together retry apart."""

    initial: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.1


# -- the per-appservice machine ----------------------------------------------------------


class Delivery(Protocol):
    """What callers may tell an appservice's delivery loop."""

    def wake(self) -> None:
        """Something new is queued."""

    def retry_now(self) -> None:
        """The appservice showed it is up (it answered a ping): stop backing off."""

    def stop(self) -> Deferred[None]:
        """Stop sending (a fixed transaction stays in the database); fires once stopped."""

    def _drained(self) -> None:
        """Everything queued was delivered."""

    def _failed(self, delay: float) -> None:
        """A transaction was not delivered; retry after ``delay`` seconds."""

    def _retry(self) -> None:
        """The backoff timer fired."""


@dataclass
class DeliveryCore:
    as_id: str
    clock: IReactorTime
    # Send one transaction: True if one was delivered, False if the queue was empty.
    transmit: Callable[[], Awaitable[bool]]
    # Record (failures, retry_at_ms); failures 0 means up.
    record: Callable[[int, int | None], Awaitable[None]]
    backoff: Backoff = field(default_factory=Backoff)
    failures: int = 0
    more: bool = False
    log: Logger = field(default_factory=lambda: Logger(namespace=__name__))
    # Observers for tests and metrics.
    on_backoff: Callable[[float], None] | None = None
    on_up: Callable[[], None] | None = None


async def _loop(c: Delivery, s: DeliveryCore) -> None:
    try:
        await deferLater(s.clock, 0, lambda: None)  # never inside the starting transition
        while True:
            s.more = False
            if await s.transmit():
                if s.failures:
                    s.log.info(
                        "appservice {as_id} is reachable again after {failures} failures",
                        as_id=s.as_id,
                        failures=s.failures,
                    )
                    s.failures = 0
                    await s.record(0, None)
                    if s.on_up is not None:
                        s.on_up()
                continue
            if not s.more:
                break
    except CancelledError:
        return
    except Exception as e:
        s.failures += 1
        delay = s.backoff.delay(s.failures)
        s.log.warn(
            "appservice {as_id}: {error}; attempt {failures} failed, retrying in {delay}s",
            as_id=s.as_id,
            error=str(e) or repr(e),
            failures=s.failures,
            delay=round(delay, 1),
        )
        try:
            await s.record(s.failures, int((s.clock.seconds() + delay) * 1000))
        except CancelledError:
            return
        except Exception:
            s.log.failure("recording the backoff of {as_id}", as_id=s.as_id)
        c._failed(delay)
        return
    c._drained()


def _start_loop(c: Delivery, s: DeliveryCore) -> Deferred[None]:
    d = Deferred.fromCoroutine(_loop(c, s))
    d.addErrback(lambda f: s.log.failure("delivery loop of {as_id}", f, as_id=s.as_id))
    return d


def _start_timer(c: Delivery, s: DeliveryCore, delay: float) -> IDelayedCall:
    if s.on_backoff is not None:
        s.on_backoff(delay)
    return s.clock.callLater(delay, c._retry)


def _build() -> Callable[[DeliveryCore], Delivery]:
    m = TypeMachineBuilder(Delivery, DeliveryCore)
    Up = m.state("Up")
    Sending = m.state("Sending", _start_loop)
    Down = m.state("Down", _start_timer)
    Recovering = m.state("Recovering", _start_loop)
    Stopped = m.state("Stopped")

    Up.upon(Delivery.wake).to(Sending).returns(None)

    @pep614(Sending.upon(Delivery.wake, nodata=True).loop())
    @pep614(Recovering.upon(Delivery.wake, nodata=True).loop())
    def again(c: Delivery, s: DeliveryCore) -> None:
        s.more = True

    Sending.upon(Delivery._drained).to(Up).returns(None)
    Sending.upon(Delivery._failed).to(Down).returns(None)
    Down.upon(Delivery.wake).loop().returns(None)  # the timer decides when to try again
    Down.upon(Delivery._retry).to(Recovering).returns(None)
    Recovering.upon(Delivery._failed).to(Down).returns(None)

    @pep614(Recovering.upon(Delivery._drained).to(Up))
    def recovered(c: Delivery, s: DeliveryCore, running: Deferred[None]) -> None:
        s.log.info("appservice {as_id} has caught up", as_id=s.as_id)

    @pep614(Down.upon(Delivery.retry_now).to(Recovering))
    def retry_now(c: Delivery, s: DeliveryCore, timer: IDelayedCall) -> None:
        if timer.active():
            timer.cancel()
        s.log.info("appservice {as_id} answered: retrying now", as_id=s.as_id)

    for state in (Up, Sending, Recovering):
        state.upon(Delivery.retry_now).loop().returns(None)

    @pep614(Up.upon(Delivery.stop).to(Stopped))
    @pep614(Stopped.upon(Delivery.stop).loop())
    def stopped(c: Delivery, s: DeliveryCore) -> Deferred[None]:
        return succeed(None)

    @pep614(Sending.upon(Delivery.stop).to(Stopped))
    @pep614(Recovering.upon(Delivery.stop).to(Stopped))
    def stop_loop(c: Delivery, s: DeliveryCore, running: Deferred[None]) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        running.addBoth(lambda _: done.callback(None) if not done.called else None)
        running.cancel()
        return done

    @pep614(Down.upon(Delivery.stop).to(Stopped))
    def stop_timer(c: Delivery, s: DeliveryCore, timer: IDelayedCall) -> Deferred[None]:
        if timer.active():
            timer.cancel()
        return succeed(None)

    for inp in (
        Delivery.wake, Delivery.retry_now, Delivery._drained, Delivery._failed, Delivery._retry
    ):
        Stopped.upon(inp).loop().returns(None)
    return m.build()


make_delivery: Callable[[DeliveryCore], Delivery] = _build()


# -- the shared subscriber ---------------------------------------------------------------


class AppservicePusher(DurableSubscriber):
    """Queues what each appservice is owed and runs one delivery machine per appservice."""

    log = Logger()

    def __init__(
        self,
        *,
        bus: EventBus,
        clock: IReactorTime,
        registry: Registry,
        interest: Interest,
        store: AppserviceStore,
        events: EventStore,
        sinks: Mapping[str, TransactionSink],
        typing: TypingHandler | None = None,
        receipts: ReceiptStore | None = None,
        presence: PresenceStore | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(SUBSCRIBER_NAME, bus)
        self._clock = clock
        self.registry = registry
        self.interest = interest
        self.store = store
        self._events = events
        self._sinks: dict[str, TransactionSink] = dict(sinks)
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._backoff = backoff if backoff is not None else Backoff()
        self._deliveries: dict[str, Delivery] = {}
        self._cores: dict[str, DeliveryCore] = {}
        self._stopping = False
        # Observers (tests, metrics): (as_id, delay) on each backoff.
        self.on_backoff: Callable[[str, float], None] | None = None

    def now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    def add_sink(self, as_id: str, sink: TransactionSink) -> None:
        """Deliver ``as_id``'s transactions to ``sink`` (call before starting)."""
        self._sinks[as_id] = sink

    @property
    def delivering_to(self) -> list[str]:
        return sorted(self._sinks)

    def _delivery(self, as_id: str, failures: int = 0) -> Delivery:
        d = self._deliveries.get(as_id)
        if d is None:
            core = DeliveryCore(
                as_id=as_id,
                clock=self._clock,
                transmit=lambda: self._transmit(as_id),
                record=lambda f, at: self.store.set_backoff(as_id, f, at),
                backoff=self._backoff,
                failures=failures,
                on_backoff=lambda delay: self._backed_off(as_id, delay),
            )
            d = make_delivery(core)
            self._deliveries[as_id] = d
            self._cores[as_id] = core
        return d

    def _backed_off(self, as_id: str, delay: float) -> None:
        if self.on_backoff is not None:
            self.on_backoff(as_id, delay)

    def failures(self, as_id: str) -> int:
        core = self._cores.get(as_id)
        return 0 if core is None else core.failures

    def wake(self, as_id: str) -> None:
        """Look at ``as_id``'s queue (something may have been queued)."""
        if not self._stopping and as_id in self._sinks:
            self._delivery(as_id).wake()

    def appservice_is_up(self, as_id: str) -> None:
        """``as_id`` just answered us (a ping): if its delivery is backing off, retry now."""
        if not self._stopping and as_id in self._sinks:
            delivery = self._delivery(as_id)
            delivery.retry_now()
            delivery.wake()

    async def _transmit(self, as_id: str) -> bool:
        reg = self.registry.get(as_id)
        sink = self._sinks.get(as_id)
        if reg is None or sink is None:
            return False
        pending = await self.store.next_txn(as_id, TXN_LIMIT, self.now_ms())
        if pending is None:
            return False
        body = await self._body(reg, pending)
        await sink(reg, str(pending.txn_id), body)
        await self.store.complete_txn(pending)
        return True

    async def _body(self, reg: Registration, pending: PendingTxn) -> dict[str, Any]:
        ids = [i.event_id for i in pending.items if i.kind == EVENT and i.event_id is not None]
        events = await self._events.get_events(ids) if ids else {}
        return transaction_body(reg, pending.items, events, self.now_ms())

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        stored = await self._store.get_subscriber_position(self.subscriber_name)
        start = stored if stored is not None else self._bus.current
        states = await self.store.ensure_appservices(self._sinks, start)
        backlog = await self.store.get_backlog()
        for as_id in sorted(self._sinks):
            if as_id in backlog:
                self._delivery(as_id, states[as_id].failures).wake()
        await super().start()

    async def stop(self) -> None:
        self._stopping = True
        await super().stop()
        deliveries, self._deliveries = list(self._deliveries.values()), {}
        self._cores = {}
        await DeferredList([d.stop() for d in deliveries])

    # -- who is owed what ------------------------------------------------------------------

    async def handle_rows(self, rows: list[StreamRow]) -> None:
        items: list[QueueItem] = []
        for row in rows:
            if row.kind == "event":
                items.extend(await self._event_items(row))
            elif row.kind == "typing":
                items.extend(await self._typing_items(row))
            elif row.kind == "receipt":
                items.extend(await self._receipt_items(row))
            elif row.kind == "presence":
                items.extend(await self._presence_items(row))
        if not items:
            return
        woken = await self.store.enqueue(items)
        if self._stopping:
            return
        for as_id in sorted(woken):
            self._delivery(as_id).wake()

    def _targets(self, as_ids: set[str], *, ephemeral: bool = False) -> list[str]:
        out = []
        for as_id in sorted(as_ids):
            if as_id not in self._sinks:
                continue
            reg = self.registry.get(as_id)
            if reg is None or (ephemeral and not reg.wants_ephemeral):
                continue
            out.append(as_id)
        return out

    async def _event_items(self, row: StreamRow) -> list[QueueItem]:
        if row.ref is None:
            return []
        event = (await self._events.get_pdus([row.ref])).get(row.ref)
        if event is None:
            return []
        as_ids = await self.interest.appservices_for_event(event)
        self.interest.saw_event(event)
        return [
            QueueItem(as_id, row.position, 0, EVENT, event_id=event.event_id)
            for as_id in self._targets(as_ids)
        ]

    def _any_ephemeral(self) -> bool:
        return any(
            reg.wants_ephemeral for reg in self.registry.all if reg.id in self._sinks
        )

    async def _typing_items(self, row: StreamRow) -> list[QueueItem]:
        if self._typing is None or row.room_id is None or not self._any_ephemeral():
            return []
        targets = self._targets(
            await self.interest.appservices_in_room(row.room_id), ephemeral=True
        )
        if not targets:
            return []
        content = {
            "type": "m.typing",
            "room_id": row.room_id,
            "content": {"user_ids": self._typing.typing_users(row.room_id)},
        }
        return [QueueItem(a, row.position, 1, EPHEMERAL, content=content) for a in targets]

    async def _receipt_items(self, row: StreamRow) -> list[QueueItem]:
        if self._receipts is None or row.room_id is None or not self._any_ephemeral():
            return []
        targets = self._targets(
            await self.interest.appservices_in_room(row.room_id), ephemeral=True
        )
        if not targets:
            return []
        changed = await self._receipts.get_receipts_for_rooms(
            [row.room_id], row.position - 1, row.position
        )
        out: list[QueueItem] = []
        seq = 1
        for r in changed:
            if r.receipt_type == "m.read.private":
                continue  # private receipts are for the user's own devices only
            data: dict[str, Any] = {"ts": r.ts}
            if r.thread_id != UNTHREADED:
                data["thread_id"] = r.thread_id
            content = {
                "type": "m.receipt",
                "room_id": r.room_id,
                "content": {r.event_id: {r.receipt_type: {r.user_id: data}}},
            }
            out.extend(QueueItem(a, row.position, seq, EPHEMERAL, content=content) for a in targets)
            seq += 1
        return out

    async def _presence_items(self, row: StreamRow) -> list[QueueItem]:
        if self._presence is None or row.user_id is None or not self._any_ephemeral():
            return []
        state = await self._presence.get_presence(row.user_id)
        if state is None or state.stream_pos != row.position:
            return []  # changed again since: the newer row carries it
        targets = self._targets(
            await self.interest.appservices_for_presence(row.user_id), ephemeral=True
        )
        if not targets:
            return []
        content: dict[str, Any] = {
            "presence": state.state,
            "currently_active": state.currently_active and state.state == "online",
        }
        if state.last_active_ts:
            content["last_active_ago"] = max(0, self.now_ms() - state.last_active_ts)
        if state.status_msg is not None:
            content["status_msg"] = state.status_msg
        event = {"type": "m.presence", "sender": row.user_id, "content": content}
        return [QueueItem(a, row.position, 1, EPHEMERAL, content=event) for a in targets]
