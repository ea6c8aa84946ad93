"""The federation sender: a durable bus subscriber that owes other servers our events.

For each new ``stream`` row, in order, :class:`FederationSender` works out who must hear of
it and appends it to those servers' queues in the database (one database transaction per
batch of rows; appending is idempotent, so the bus's at-least-once replay after a crash
adds nothing twice):

- a room event (kind ``event``) sent by one of our users, or passed on for another server
  (:meth:`FederationSender.relay`): to every server with a member joined just before or just
  after it, plus the target's server for an invite, kick or ban of a remote user;
- typing, receipts and presence of our users (:mod:`ruma.federation.sender.edus`), and any
  other :class:`~ruma.federation.sender.edus.EduSource` plugged in.

Never to ourselves, and only to allowed servers (``federation_domain_whitelist``).
Each destination (a :mod:`ruma.delivery` machine) then sends its queue in
transactions (:mod:`ruma.federation.sender.transactions`), backing off while the server is
down; its acknowledged position is in the database, so neither a restart nor an outage
loses or repeats anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.bus import DurableSubscriber, EventBus, StreamRow
from ruma.delivery import DeliveryCore, DeliveryInputs, make_delivery
from ruma.federation.sender.destination import Backoff
from ruma.federation.sender.edus import EduSource
from ruma.federation.sender.hosts import RoomHosts, server_of
from ruma.federation.sender.transactions import TransactionClient, Transmitter
from ruma.storage.events import EventStore
from ruma.storage.federation_sender import FederationSenderStore, OutboxItem

__all__ = ["FederationSender"]

SUBSCRIBER_NAME = "federation_sender"
# Memberships whose target must hear of them even if the target's server is not in the room.
_TARGETED = frozenset({"invite", "ban", "leave"})


class FederationSender(DurableSubscriber):
    """Owes other servers our PDUs and EDUs; one delivery loop per destination."""

    log = Logger()

    def __init__(
        self,
        *,
        bus: EventBus,
        clock: IReactorTime,
        server_name: str,
        events: EventStore,
        store: FederationSenderStore,
        client: TransactionClient,
        backoff: Backoff | None = None,
        allowed: Callable[[str], bool] | None = None,
        txn_timeout: float = 60.0,
    ) -> None:
        super().__init__(SUBSCRIBER_NAME, bus)
        self._clock = clock
        self.server_name = server_name
        self._events = events
        self.store = store
        self.hosts = RoomHosts(events, store)
        self._backoff = backoff if backoff is not None else Backoff()
        self._allowed = allowed
        self.transmitter = Transmitter(
            store=store,
            client=client,
            clock=clock,
            server_name=server_name,
            txn_timeout=txn_timeout,
        )
        self._sources: dict[str, list[EduSource]] = {}
        self._destinations: dict[str, DeliveryInputs] = {}
        self._stopping = False
        # Observers (metrics, tests): called with (destination, delay) on each backoff.
        self.on_backoff: Callable[[str, float], None] | None = None

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- the API for the rest of the server -------------------------------------------------

    def add_edu_source(self, source: EduSource) -> None:
        """Send EDUs made by ``source`` from the stream rows of its kinds."""
        for kind in source.kinds:
            self._sources.setdefault(kind, []).append(source)

    def peer_is_back(self, server_name: str) -> None:
        """``server_name`` just sent us an authenticated request: it is up, so a delivery
        backing off from it retries now. Cheap; call it for every inbound request."""
        dest = self._destinations.get(server_name)
        if dest is not None:
            dest.peer_is_back()

    async def relay(self, event_id: str, origin: str) -> None:
        """Pass ``event_id`` (a remote user's event from ``origin``, e.g. a join received by
        ``send_join``) on to the room's other servers. Call it before persisting the event."""
        await self.store.add_relay(event_id, origin)

    def destination(self, server_name: str, failures: int = 0) -> DeliveryInputs:
        """The delivery loop of ``server_name`` (created on first use)."""
        dest = self._destinations.get(server_name)
        if dest is None:
            dest = make_delivery(
                DeliveryCore(
                    name=server_name,
                    clock=self._clock,
                    transmit=lambda: self.transmitter.transmit(server_name),
                    record=lambda f, at: self.store.set_backoff(
                        server_name, f, at, self._now_ms()
                    ),
                    backoff=self._backoff,
                    failures=failures,
                    on_backoff=self._backed_off(server_name),
                )
            )
            self._destinations[server_name] = dest
        return dest

    def _backed_off(self, server_name: str) -> Callable[[float], None]:
        def observe(delay: float) -> None:
            if self.on_backoff is not None:
                self.on_backoff(server_name, delay)

        return observe

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Wake every destination with something owed, then follow the bus."""
        self._stopping = False
        for state in await self.store.get_destinations_with_backlog():
            if state.destination not in self._destinations and self._may_send(state.destination):
                self.destination(state.destination, state.failures).wake()
        await super().start()

    async def stop(self) -> None:
        self._stopping = True
        await super().stop()
        dests, self._destinations = list(self._destinations.values()), {}
        waits: list[Deferred[Any]] = [d.stop() for d in dests]
        await DeferredList(waits)

    # -- deciding who hears of what --------------------------------------------------------

    async def handle_rows(self, rows: list[StreamRow]) -> None:
        items: list[OutboxItem] = []
        for row in rows:
            if row.kind == "event":
                items.extend(await self._pdu_items(row))
            for source in self._sources.get(row.kind, ()):
                seq = 1  # 0 is the row's PDU, if any
                now = self._now_ms()
                for edu in await source.edus_for(row):
                    for dest in sorted(edu.destinations):
                        if not self._may_send(dest):
                            continue
                        items.append(
                            OutboxItem(
                                destination=dest,
                                position=row.position,
                                seq=seq,
                                edu_type=edu.edu_type,
                                edu_content=edu.content,
                                coalesce_key=edu.coalesce_key,
                                expires_ms=None if edu.ttl_ms is None else now + edu.ttl_ms,
                            )
                        )
                    seq += 1
        if not items:
            return
        woken = await self.store.enqueue(items, self._now_ms())
        if self._stopping:
            return
        for dest in sorted(woken):
            self.destination(dest).wake()

    def _may_send(self, server_name: str) -> bool:
        if server_name == self.server_name or not server_name:
            return False
        return self._allowed is None or self._allowed(server_name)

    async def _pdu_items(self, row: StreamRow) -> list[OutboxItem]:
        if row.ref is None:
            return []
        event = (await self._events.get_pdus([row.ref])).get(row.ref)
        if event is None:
            return []
        origin = server_of(event.sender)
        excluded = {origin}
        if origin != self.server_name:
            relayed_from = await self.store.get_relay_origin(event.event_id)
            if relayed_from is None:
                return []  # another server's event: it sends it itself
            excluded.add(relayed_from)
        destinations = set(await self.hosts.hosts_around_event(event))
        if (
            event.type == "m.room.member"
            and event.state_key is not None
            and event.membership in _TARGETED
        ):
            destinations.add(server_of(event.state_key))
        return [
            OutboxItem(destination=dest, position=row.position, seq=0, event_id=event.event_id)
            for dest in sorted(destinations - excluded)
            if self._may_send(dest)
        ]
