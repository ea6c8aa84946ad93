"""Delivering transactions to appservices: one durable queue and one state machine each.

:class:`AppservicePusher` is a single durable bus subscriber. For each new ``stream`` row, in
order, it works out which appservices are interested (:mod:`ruma.appservice.namespaces`) and
appends the row to their queues in the database, in one database transaction per batch of
rows (appending is idempotent, so the bus's at-least-once replay after a crash queues
nothing twice). It never waits for an appservice: a slow or dead appservice holds up only its
own queue, never the bus or the other appservices.

Each appservice then has a delivery machine (:mod:`ruma.delivery`, the one federation
destinations use too): up, sending, backing off, catching up. Its loop fixes the next
transaction in the database (its ID and its items; see ``ruma.storage.appservice``), sends it,
and records its acceptance, until the queue is empty. A failure (error status, timeout,
refused connection) leaves the transaction fixed and backs off, exponentially
(:class:`Backoff`) on the injected clock; the retry sends the same transaction ID with the
same items, and a ping the appservice answers ends the backoff at once. Restarting Ruma picks
up the fixed transaction and the queue from the database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.appservice.namespaces import Interest, Registry
from ruma.appservice.pusher import transaction_body
from ruma.appservice.registration import Registration
from ruma.backoff import ExponentialBackoff
from ruma.bus import DurableSubscriber, EventBus, StreamRow
from ruma.delivery import DeliveryCore, DeliveryInputs, make_delivery
from ruma.handlers.typing import TypingHandler
from ruma.storage.appservice import EPHEMERAL, EVENT, AppserviceStore, PendingTxn, QueueItem
from ruma.storage.events import EventStore
from ruma.storage.presence import PresenceStore
from ruma.storage.receipts import UNTHREADED, ReceiptStore

__all__ = ["AppservicePusher", "Backoff", "TransactionSink"]

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
        self._deliveries: dict[str, DeliveryInputs] = {}
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

    def _delivery(self, as_id: str, failures: int = 0) -> DeliveryInputs:
        d = self._deliveries.get(as_id)
        if d is None:
            core = DeliveryCore(
                name=f"appservice {as_id}",
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
            delivery.peer_is_back()
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
