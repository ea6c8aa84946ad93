"""Push's object graph, built in one place for ``ruma.tap``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IAgent

from ruma.bus import EventBus
from ruma.push.catch_up import PushCatchUp
from ruma.push.evaluation import PushOnWrite
from ruma.push.handler import NotificationsHandler, PusherHandler, PushRulesHandler
from ruma.push.pusher import HttpPusherPool
from ruma.rooms.persistence import RoomWriter
from ruma.rooms.serialize import serialize_event
from ruma.storage.account_data import AccountDataStore
from ruma.storage.database import Database
from ruma.storage.events import EventStore
from ruma.storage.push import Counts, PushStore

__all__ = ["PushServices"]


@dataclass(frozen=True, slots=True)
class PushServices:
    store: PushStore
    rules: PushRulesHandler
    pushers: PusherHandler
    notifications: NotificationsHandler
    evaluator: PushOnWrite
    catch_up: PushCatchUp
    pool: HttpPusherPool

    @property
    def services(self) -> list[IService]:
        """Start these (in order) once the database is ready."""
        return [self.catch_up, self.pool]

    @classmethod
    def build(
        cls,
        *,
        db: Database,
        clock: IReactorTime,
        bus: EventBus,
        events: EventStore,
        account_data: AccountDataStore,
        agent: IAgent,
        writer: RoomWriter | None = None,
    ) -> PushServices:
        """``writer``: the room writer that evaluates push rules as it persists events (by
        default the one writing to ``events``)."""
        store = PushStore(db)
        rules = PushRulesHandler(store, account_data)
        pool = HttpPusherPool(clock, store, events, agent, lambda: db.positions.current)
        pushers = PusherHandler(store, clock, lambda: bus.current, pool.on_pushers_changed)

        async def load(event_ids: list[str]) -> Mapping[str, dict[str, Any]]:
            found = await events.get_events(event_ids)
            now = int(clock.seconds() * 1000)
            return {i: serialize_event(e, now=now) for i, e in found.items()}

        evaluator = PushOnWrite(clock, events, store)
        evaluator.on_notified = pool.on_notified
        db.positions.add_listener(pool.on_settled)
        writer = writer if writer is not None else RoomWriter.of_store(events)
        if writer is None:
            raise ValueError("push needs the room writer of its event store")
        writer.write_hook = evaluator
        return cls(
            store=store,
            rules=rules,
            pushers=pushers,
            notifications=NotificationsHandler(store, load),
            evaluator=evaluator,
            catch_up=PushCatchUp(bus, events, store, evaluator),
            pool=pool,
        )

    async def unread_counts(
        self, user_id: str, room_ids: Iterable[str]
    ) -> dict[str, dict[str, tuple[int, int]]]:
        """For sync: room -> thread ('main' or a root) -> (notifications, highlights)."""
        counts: dict[str, dict[str, Counts]] = await self.store.get_unread_counts(
            user_id, list(room_ids)
        )
        return {
            room: {t: (c.notifications, c.highlights) for t, c in threads.items()}
            for room, threads in counts.items()
        }

    async def push_rules_content(self, user_id: str) -> dict[str, Any]:
        """For sync: the live ``m.push_rules`` account data content."""
        return await self.rules.account_data_content(user_id)
