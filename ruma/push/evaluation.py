"""Push rules evaluated for each new timeline event while it is persisted.

:class:`PushOnWrite` is the room writer's :class:`~ruma.rooms.persistence.WriteHook`. Under
the room's lock, just before the event's transaction, it works out who could be notified
(the room's local joined members after the event and, for an invite, the local invitee;
never the sender), evaluates their rules and stores the event's notifications as one
*pending* row (:meth:`~ruma.storage.push.PushStore.add_pending`). A database trigger turns
it into notification rows with the event's stream position inside the event's own
transaction, so /sync's unread counts
and ``/notifications`` change exactly when the event appears, and a crash can never keep
one without the other. After the commit, the pushers of the notified users are woken.

Evaluation is cheap per event:

- what the rules need to know about the room (local joined members and their display
  names, the joined member count, the create and power levels events) is cached per room
  for the room's current state group, and carried forward across state changes by
  applying the plan's current-state changes (a join does not reload a 10,000-member room);
- rules are compiled once (:mod:`ruma.push.compiled`) and every user without rules of
  their own shares one compiled ruleset, evaluated once per event for all of them;
- an event's notifications are written once: packed into one pending row, expanded by the
  trigger straight into ``event_push_actions`` (one ``INSERT ... SELECT``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.protocol.auth.common import CREATE, POWER_LEVELS
from ruma.protocol.auth.power_levels import get_notification_level, get_user_power_level
from ruma.protocol.events import Event, StateKey
from ruma.protocol.json import thaw
from ruma.push.compiled import (
    CompiledRuleset,
    EventFacts,
    Match,
    Recipient,
    RoomFacts,
    RulesetCache,
    evaluate_users,
)
from ruma.push.evaluator import thread_of
from ruma.rooms.persistence import AfterWrite
from ruma.storage.events import EventStore, PersistPlan, PersistResult, RoomHead
from ruma.storage.push import NewNotification, PushAction, PushStore

__all__ = ["PushOnWrite", "RoomPushState"]

ROOM_CACHE_SIZE = 2_000
RECIPIENT_CACHE_SIZE = 100_000

# (users, stream position) -> wake their pushers.
Notified = Callable[[Collection[str], int | None], Coroutine[Any, Any, None]]


@dataclass(slots=True)
class RoomPushState:
    """What push evaluation needs of a room's current state (see the module docstring)."""

    # The room's current state group this describes (None: a room with no state yet).
    group: int | None
    joined: set[str] = field(default_factory=set)
    # Local joined members -> display name.
    local: dict[str, str | None] = field(default_factory=dict)
    create: Event | None = None
    power_levels: Event | None = None
    # Local members grouped by compiled ruleset, for this rules generation (None: regroup).
    groups: list[tuple[CompiledRuleset, list[Recipient]]] | None = None
    rules_generation: int = -1

    def copy(self) -> RoomPushState:
        return RoomPushState(
            self.group, set(self.joined), dict(self.local), self.create, self.power_levels
        )


class PushOnWrite:
    """Evaluates push rules for each timeline event the room writer persists."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        events: EventStore,
        store: PushStore,
        *,
        room_cache_size: int = ROOM_CACHE_SIZE,
    ) -> None:
        self._clock = clock
        self._events = events
        self._store = store
        self._rulesets = RulesetCache()
        self._rooms: OrderedDict[str, RoomPushState] = OrderedDict()
        self._room_cache_size = room_cache_size
        self._recipient_cache: dict[str, Recipient] = {}
        # The pusher pool: told which users have new notifications, after the commit.
        self.on_notified: Notified | None = None

    async def before_write(self, plan: PersistPlan, head: RoomHead | None) -> AfterWrite | None:
        event = plan.event
        room_id = event.room_id
        before = await self._room_state(room_id, head)
        after = await self._apply(before, plan)
        as_dict = _event_dict(event)
        notified = await self._evaluate(event, as_dict, after)
        if notified:
            now = int(self._clock.seconds() * 1000)
            await self._store.add_pending(
                room_id,
                event.event_id,
                thread_of(as_dict),
                event.origin_server_ts or now,
                [NewNotification(u, m.highlight, m.actions_json) for u, m in notified.items()],
            )

        def written(result: PersistResult) -> None:
            # The room's current state is now ``after``: remember it under its group.
            after.group = result.current_state_group
            self._remember(room_id, after)
            if notified and self.on_notified is not None:
                d: Deferred[None] = Deferred.fromCoroutine(
                    self.on_notified(list(notified), result.stream_position)
                )
                d.addErrback(lambda f: self.log.failure("waking pushers", f))

        return written

    async def evaluate_stored(self, event: Event, position: int) -> list[PushAction]:
        """The notifications of an event already in the timeline at ``position``, judged
        against the room's current state (for catching up on events stored before push
        was evaluated on write)."""
        head = await self._events.get_room_head(event.room_id)
        if head is None:
            return []
        room = await self._room_state(event.room_id, head)
        as_dict = _event_dict(event)
        thread_id = thread_of(as_dict)
        ts = event.origin_server_ts or int(self._clock.seconds() * 1000)
        return [
            PushAction(
                u,
                event.room_id,
                event.event_id,
                position,
                thread_id,
                m.highlight,
                list(m.actions),
                ts,
            )
            for u, m in (await self._evaluate(event, as_dict, room)).items()
        ]

    # -- the room --------------------------------------------------------------------------

    async def _room_state(self, room_id: str, head: RoomHead | None) -> RoomPushState:
        """The room's current state as push sees it (the writer holds the room's lock)."""
        if head is None:
            return RoomPushState(None)  # a new room: no state yet
        cached = self._rooms.get(room_id)
        if cached is not None and cached.group == head.current_state_group:
            self._rooms.move_to_end(room_id)
            return cached
        room = await self._events.get_room_for_push(room_id)
        joined = await self._events.get_current_members(room_id, "join")
        state = RoomPushState(head.current_state_group, set(joined))
        for user_id in room.local_joined:
            member = _event_at(room.state_ids, room.events, ("m.room.member", user_id))
            state.local[user_id] = _display_name(member)
        state.create = _event_at(room.state_ids, room.events, CREATE)
        state.power_levels = _event_at(room.state_ids, room.events, POWER_LEVELS)
        return state

    async def _apply(self, state: RoomPushState, plan: PersistPlan) -> RoomPushState:
        """``state`` with the plan's changes to the current state (the state after)."""
        assert plan.current_state is not None
        changes = plan.current_state.changes
        relevant = {
            k: v
            for k, v in changes.items()
            if k[0] == "m.room.member" or k == CREATE or k == POWER_LEVELS
        }
        if not relevant:
            return state
        event = plan.event
        wanted = [i for i in relevant.values() if i is not None and i != event.event_id]
        found: dict[str, Event] = dict(await self._events.get_pdus(wanted)) if wanted else {}
        found[event.event_id] = event
        out = state.copy()
        for (etype, skey), event_id in relevant.items():
            new = found.get(event_id) if event_id is not None else None
            if (etype, skey) == CREATE:
                out.create = new
            elif (etype, skey) == POWER_LEVELS:
                out.power_levels = new
            elif new is not None and new.content.get("membership") == "join":
                out.joined.add(skey)
                if self._events.is_local_user(skey):
                    out.local[skey] = _display_name(new)
            else:
                out.joined.discard(skey)
                out.local.pop(skey, None)
        return out

    def _remember(self, room_id: str, state: RoomPushState) -> None:
        self._rooms[room_id] = state
        self._rooms.move_to_end(room_id)
        while len(self._rooms) > self._room_cache_size:
            self._rooms.popitem(last=False)

    # -- evaluation ------------------------------------------------------------------------

    def _recipient(self, user_id: str, name: str | None) -> Recipient:
        """Shared across rooms (regrouping a large room re-parses no user IDs)."""
        r = self._recipient_cache.get(user_id)
        if r is None or r.display_name != name:
            if len(self._recipient_cache) >= RECIPIENT_CACHE_SIZE:
                self._recipient_cache.clear()
            r = self._recipient_cache[user_id] = Recipient.of(user_id, name)
        return r

    async def _evaluate(
        self, event: Event, as_dict: dict[str, Any], room: RoomPushState
    ) -> dict[str, Match]:
        """user -> the matching rule, for the users ``event`` notifies (``room``: the state
        after it)."""
        invitee: str | None = None
        if (
            event.type == "m.room.member"
            and event.content.get("membership") == "invite"
            and event.state_key is not None
            and event.state_key != event.sender
            and self._events.is_local_user(event.state_key)
        ):
            invitee = event.state_key
        if invitee is None and not (room.local.keys() - {event.sender}):
            return {}
        groups = await self._groups(room)
        auth_state: dict[StateKey, Event] = {}
        if room.create is not None:
            auth_state[CREATE] = room.create
        if room.power_levels is not None:
            auth_state[POWER_LEVELS] = room.power_levels
        facts = EventFacts(
            as_dict,
            RoomFacts(
                member_count=len(room.joined),
                sender_power_level=get_user_power_level(event.sender, auth_state),
                notification_levels={"room": get_notification_level(auth_state, "room")},
            ),
        )
        out: dict[str, Match] = {}
        for ruleset, members in groups:
            users = [r for r in members if r.user_id != event.sender]
            out.update(evaluate_users(ruleset, facts, users))
        if invitee is not None and invitee not in room.local:
            (data,) = (await self._store.get_frozen_rules_for_users([invitee])).values()
            recipient = Recipient.of(invitee, _display_name(event))
            out.update(evaluate_users(self._rulesets.get(invitee, data), facts, [recipient]))
        return {u: m for u, m in out.items() if m.notify}

    async def _groups(self, room: RoomPushState) -> list[tuple[CompiledRuleset, list[Recipient]]]:
        """The room's local members grouped by compiled ruleset (cached in ``room``)."""
        generation = self._store.rules_generation
        if room.groups is not None and room.rules_generation == generation:
            return room.groups
        data = await self._store.get_frozen_rules_for_users(room.local)
        by_ruleset: dict[CompiledRuleset, list[Recipient]] = {}
        for user_id, name in room.local.items():
            compiled = self._rulesets.get(user_id, data[user_id])
            by_ruleset.setdefault(compiled, []).append(self._recipient(user_id, name))
        room.groups = list(by_ruleset.items())
        room.rules_generation = generation
        return room.groups


def _event_at(
    ids: Mapping[StateKey, str], events: Mapping[str, Event], key: StateKey
) -> Event | None:
    event_id = ids.get(key)
    return events.get(event_id) if event_id is not None else None


def _display_name(member: Event | None) -> str | None:
    if member is None:
        return None
    name = member.content.get("displayname")
    return name if isinstance(name, str) else None


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
