"""Push's object graph, built in one place for ``ruma.tap``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IAgent

from ruma.bus import EventBus
from ruma.push.evaluation import PushEvaluator
from ruma.push.handler import NotificationsHandler, PusherHandler, PushRulesHandler
from ruma.push.pusher import HttpPusherPool
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
    evaluator: PushEvaluator
    pool: HttpPusherPool

    @property
    def services(self) -> list[IService]:
        """Start these (in order) once the database is ready."""
        return [self.evaluator, self.pool]

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
    ) -> PushServices:
        store = PushStore(db)
        rules = PushRulesHandler(store, account_data)
        pool = HttpPusherPool(clock, store, events, agent)
        pushers = PusherHandler(store, clock, lambda: bus.current, pool.on_pushers_changed)

        async def load(event_ids: list[str]) -> Mapping[str, dict[str, Any]]:
            found = await events.get_events(event_ids)
            now = int(clock.seconds() * 1000)
            return {i: serialize_event(e, now=now) for i, e in found.items()}

        evaluator = PushEvaluator(bus, clock, events, store, rules)
        evaluator.on_notified = pool.on_notified
        return cls(
            store=store,
            rules=rules,
            pushers=pushers,
            notifications=NotificationsHandler(store, load),
            evaluator=evaluator,
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
