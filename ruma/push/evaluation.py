"""Evaluates every new room event against the push rules of each local member.

A :class:`~ruma.bus.DurableSubscriber` on the bus: for each ``event`` row it loads the event,
works out who could be notified (the room's local joined members and, for an invite, the
local invitee; never the sender), evaluates their rulesets (:mod:`ruma.push.evaluator`) and
stores one notification per user whose matching rule says ``notify``
(:meth:`~ruma.storage.push.PushStore.add_push_actions`, idempotent, so a replay after a crash
is harmless). Unread counts are derived from those rows and the users' read receipts when
/sync asks. ``on_notified`` (the pusher pool) hears which users got new notifications.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.bus import DurableSubscriber, EventBus, StreamRow
from ruma.protocol.auth.common import CREATE, POWER_LEVELS
from ruma.protocol.auth.power_levels import get_notification_level, get_user_power_level
from ruma.protocol.events import Event
from ruma.protocol.json import thaw
from ruma.push.evaluator import PushContext, evaluate, thread_of
from ruma.push.handler import PushRulesHandler
from ruma.storage.events import EventStore
from ruma.storage.push import PushAction, PushStore

SUBSCRIBER_NAME = "push-evaluator"


class PushEvaluator(DurableSubscriber):
    log = Logger()

    def __init__(
        self,
        bus: EventBus,
        clock: IReactorTime,
        events: EventStore,
        store: PushStore,
        rules: PushRulesHandler,
    ) -> None:
        super().__init__(SUBSCRIBER_NAME, bus)
        self._clock = clock
        self._events = events
        self._push_store = store
        self._rules = rules
        self.on_notified: Callable[[Collection[str]], Awaitable[None]] | None = None

    async def handle_rows(self, rows: list[StreamRow]) -> None:
        notified: set[str] = set()
        for row in rows:
            if row.kind != "event" or row.ref is None or row.room_id is None:
                continue
            event = await self._events.get_event(row.ref)
            if event is None:
                continue
            actions = await self.actions_for_event(event, row.position)
            if actions:
                await self._push_store.add_push_actions(event.room_id, event.event_id, actions)
                notified.update(a.user_id for a in actions)
        if notified and self.on_notified is not None:
            try:
                await self.on_notified(notified)
            except Exception:
                self.log.failure("waking pushers")

    async def actions_for_event(self, event: Event, position: int) -> list[PushAction]:
        """The notifications ``event`` (at stream ``position``) causes."""
        room_id = event.room_id
        invitee: str | None = None
        if (
            event.type == "m.room.member"
            and event.membership == "invite"
            and event.state_key is not None
            and self._events.is_local_user(event.state_key)
        ):
            invitee = event.state_key
        # Everything read about the room, in one transaction.
        room = await self._events.get_room_for_push(room_id, [invitee] if invitee else [])
        users = set(room.local_joined)
        if invitee is not None:
            users.add(invitee)
        users.discard(event.sender)
        if not users:
            return []
        member_count = room.joined_count
        ids = room.state_ids
        state = room.events
        auth_state = {k: state[i] for k, i in ids.items() if i in state and k in (CREATE, POWER_LEVELS)}
        sender_level = get_user_power_level(event.sender, auth_state)
        levels = {"room": get_notification_level(auth_state, "room")}
        as_dict = _event_dict(event)
        thread_id = thread_of(as_dict)
        now = int(self._clock.seconds() * 1000)
        out: list[PushAction] = []
        rulesets = await self._rules.get_rulesets(users)
        for user_id in sorted(users):
            member_id = ids.get(("m.room.member", user_id))
            member = state.get(member_id) if member_id is not None else None
            name = member.content.get("displayname") if member is not None else None
            ctx = PushContext(
                user_id=user_id,
                display_name=name if isinstance(name, str) else None,
                member_count=member_count,
                sender_power_level=sender_level,
                notification_levels=levels,
            )
            outcome = evaluate(rulesets[user_id], as_dict, ctx)
            if outcome is None or not outcome.notify:
                continue
            out.append(
                PushAction(
                    user_id=user_id,
                    room_id=room_id,
                    event_id=event.event_id,
                    stream_pos=position,
                    thread_id=thread_id,
                    highlight=outcome.highlight,
                    actions=thaw(list(outcome.actions)),
                    ts=event.origin_server_ts or now,
                )
            )
        return out


def _event_dict(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "room_id": event.room_id,
        "type": event.type,
        "sender": event.sender,
        "content": thaw(event.content),
    }
    if event.state_key is not None:
        out["state_key"] = event.state_key
    return out
