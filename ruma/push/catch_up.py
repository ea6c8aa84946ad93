"""Once, after upgrading: notifications for events the retired bus subscriber had not got to.

Before schema 0053, push rules were evaluated by a durable bus subscriber named
``push-evaluator`` after each event was stored. A server stopped while that subscriber lagged
behind left events without notifications. At start, if that subscriber's position is still
stored, :class:`PushCatchUp` evaluates the events after it (against the rooms' current state,
as the subscriber did), records their notifications with the events' positions, and then
drops the position, so this never runs again. New events are evaluated as they are written
(:mod:`ruma.push.evaluation`) and are not touched here.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ruma.bus import EventBus
from ruma.push.evaluation import PushOnWrite
from ruma.storage.events import EventStore
from ruma.storage.push import PushStore

RETIRED_SUBSCRIBER = "push-evaluator"
BATCH = 500


class PushCatchUp(Service):
    log = Logger()

    def __init__(
        self, bus: EventBus, events: EventStore, store: PushStore, evaluator: PushOnWrite
    ) -> None:
        self._bus = bus
        self._events = events
        self._store = store
        self._evaluator = evaluator
        self.done: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.done = Deferred.fromCoroutine(self.run())
        self.done.addErrback(lambda f: self.log.failure("catching up on push evaluation", f))

    async def run(self) -> None:
        bus_store = self._bus.store
        position = await bus_store.get_subscriber_position(RETIRED_SUBSCRIBER)
        if position is None:
            return
        # Everything after this was evaluated as it was written.
        target = self._bus.current
        caught = 0
        while position < target:
            rows = await bus_store.read_stream(position, target, BATCH)
            if not rows:
                break
            for row in rows:
                if row.kind != "event" or row.ref is None:
                    continue
                event = await self._events.get_event(row.ref)
                if event is not None:
                    actions = await self._evaluator.evaluate_stored(event, row.position)
                    await self._store.add_push_actions(actions)
                    caught += 1
            position = rows[-1].position
            # Progress survives another stop half-way.
            await bus_store.set_subscriber_position(RETIRED_SUBSCRIBER, position)
        await self._store.forget_bus_subscriber(RETIRED_SUBSCRIBER)
        self.log.info("push: evaluated {n} events stored before the upgrade", n=caught)
