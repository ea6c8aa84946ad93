"""/sync: initial and incremental sync, long-polling on the bus.

A sync token is one stream position (``ruma.sync.tokens``). An incremental sync from ``S``
returns what changed in ``(S, N]`` where ``N`` is the database's settled position when the
response was computed; ``next_batch`` is ``N``. Room timelines run backwards from ``N`` up to
the filter's limit; ``prev_batch`` is the position just before the first returned event,
which ``/messages?dir=b`` continues from.

``unread_notifications`` (and, when the timeline filter asks, ``unread_thread_notifications``)
come from ``ruma.push`` through the ``push`` hook; without it they are 0.
Timelines go through the rooms' history-visibility filter and client serialisation
(``ruma.rooms.visibility``, ``ruma.rooms.serialize``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.bus import EventBus
from ruma.handlers.presence import PresenceHandler
from ruma.handlers.push_rules import push_rules_account_data
from ruma.handlers.receipts import receipt_event
from ruma.handlers.typing import TypingHandler
from ruma.protocol.events import Event, StateKey
from ruma.rooms.serialize import Bundler, serialize_event
from ruma.rooms.visibility import filter_events_for_user
from ruma.storage.account_data import AccountDataStore
from ruma.storage.events import EventStore, TxnIdKey
from ruma.storage.receipts import ReceiptStore
from ruma.storage.sync import SyncStore
from ruma.sync.filter import DEFAULT_TIMELINE_LIMIT, EventFilter, Filter
from ruma.sync.notifier import SyncNotifier
from ruma.sync.tokens import StreamToken

JsonDict = dict[str, Any]

MAX_TIMEOUT_MS = 5 * 60 * 1000
HERO_COUNT = 5
STRIPPED_STATE_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
)
_JOINED = "join"
_LEFT = frozenset({"leave", "ban"})


@dataclass(frozen=True, slots=True)
class SyncRequest:
    user_id: str
    device_id: str | None
    filter: Filter
    token_id: int | None = None
    since: StreamToken | None = None
    full_state: bool = False
    set_presence: str | None = None
    timeout_ms: int = 0
    use_state_after: bool = False


@dataclass(frozen=True, slots=True)
class DeviceSyncData:
    """The per-device part of a sync response (``ruma.e2ee`` computes it)."""

    to_device: Sequence[JsonDict] = ()
    changed: Collection[str] = ()
    left: Collection[str] = ()
    one_time_keys_count: Mapping[str, int] = field(default_factory=dict)
    unused_fallback_key_types: Sequence[str] = ()


class PushSource(Protocol):
    """Unread counts and the live push ruleset (``ruma.push`` provides it)."""

    async def unread_counts(
        self, user_id: str, room_ids: Iterable[str]
    ) -> Mapping[str, Mapping[str, tuple[int, int]]]:
        """room -> thread ('main' or a thread root) -> (notifications, highlights)."""
        ...

    async def push_rules_content(self, user_id: str) -> JsonDict: ...


class DeviceSyncSource(Protocol):
    """To-device messages, device-list changes and key counts for one device's sync.

    ``since`` is the request's token (None on an initial sync): it also acknowledges the
    to-device messages of the responses up to it. ``upto`` is this response's next_batch.
    """

    async def device_sync(
        self, user_id: str, device_id: str | None, since: int | None, upto: int
    ) -> DeviceSyncData: ...


@dataclass(slots=True)
class _Timeline:
    events: list[tuple[int, Event]]
    limited: bool
    prev_batch: int


@dataclass(slots=True)
class _RoomPlan:
    """What to compute for one room: its section and the positions bounding its timeline."""

    room_id: str
    section: str  # join, leave, invite, knock
    event_id: str  # the user's membership event
    upto: int  # the timeline ends here (N, or the leave position)
    since: int | None  # None: send the full state
    timeline_since: int | None = None  # the timeline starts after this (None: from the start)
    in_room_during: bool = True  # False for a rejected invite: only the leave event


@dataclass(slots=True)
class _Response:
    rooms: dict[str, dict[str, JsonDict]] = field(
        default_factory=lambda: {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    )
    presence: list[JsonDict] = field(default_factory=list)
    account_data: list[JsonDict] = field(default_factory=list)
    devices: DeviceSyncData = field(default_factory=DeviceSyncData)

    def is_empty(self) -> bool:
        d = self.devices
        return not (
            self.presence
            or self.account_data
            or any(self.rooms.values())
            or d.to_device
            or d.changed
            or d.left
        )


class SyncHandler:
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        bus: EventBus,
        events: EventStore,
        sync_store: SyncStore,
        receipts: ReceiptStore,
        account_data: AccountDataStore,
        typing: TypingHandler,
        presence: PresenceHandler,
        notifier: SyncNotifier,
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._events = events
        self._sync_store = sync_store
        self._receipts = receipts
        self._account_data = account_data
        self._typing = typing
        self._presence = presence
        self._notifier = notifier
        # End-to-end encryption's per-device data (set by ruma.tap when it is wired).
        self.devices: DeviceSyncSource | None = None
        # Push rules and unread counts (set by ruma.tap when push is wired).
        self.push: PushSource | None = None
        # Bundled aggregations of timeline events (ruma.rooms.relations; set by ruma.tap).
        self.relations: Bundler | None = None

    # -- entry point ---------------------------------------------------------------------

    async def sync(self, req: SyncRequest) -> JsonDict:
        await self._presence.user_syncing(req.user_id, req.set_presence)
        try:
            return await self._sync(req)
        finally:
            self._presence.sync_finished(req.user_id)

    async def _sync(self, req: SyncRequest) -> JsonDict:
        now = self._bus.current
        since = req.since.position if req.since is not None else None
        if since is not None and since > now:
            # A token from the future (another server's, or a restored backup): do not wait
            # for positions that may never come; answer from now.
            self.log.info("sync token {since} is ahead of {now}", since=since, now=now)
            resp, _ = await self._compute(req, now, now)
            return self._render(resp, now)
        if since is None or req.full_state:
            resp, _ = await self._compute(req, since, now)
            return self._render(resp, now)
        timeout_s = min(max(req.timeout_ms, 0), MAX_TIMEOUT_MS) / 1000.0
        deadline = self._clock.seconds() + timeout_s
        while True:
            resp, rooms = await self._compute(req, since, now)
            remaining = deadline - self._clock.seconds()
            if not resp.is_empty() or remaining <= 0:
                return self._render(resp, now)
            woken = await self._notifier.wait(req.user_id, rooms, now, remaining)
            now = max(now, self._bus.current)
            if not woken:
                resp, _ = await self._compute(req, since, now)
                return self._render(resp, now)

    def _render(self, resp: _Response, now: int) -> JsonDict:
        rooms = {k: v for k, v in resp.rooms.items()}
        return {
            "next_batch": str(StreamToken(now)),
            "rooms": rooms,
            "presence": {"events": resp.presence},
            "account_data": {"events": resp.account_data},
            "to_device": {"events": list(resp.devices.to_device)},
            "device_lists": {
                "changed": sorted(resp.devices.changed),
                "left": sorted(resp.devices.left),
            },
            "device_one_time_keys_count": dict(resp.devices.one_time_keys_count),
            "device_unused_fallback_key_types": list(resp.devices.unused_fallback_key_types),
        }

    # -- computing a response ------------------------------------------------------------

    async def _compute(
        self, req: SyncRequest, since: int | None, now: int
    ) -> tuple[_Response, set[str]]:
        """The response for ``(since, now]`` and the rooms the user is joined to at ``now``."""
        resp = _Response()
        full = since is None or req.full_state
        plans, joined = await self._plan_rooms(req, since, now)
        room_filter = req.filter.room
        ephemeral_changed: set[str] = set()
        receipts_by_room: dict[str, list[Any]] = {}
        # Which joined rooms had typing, events or (with push) new notifications: one read.
        changed: dict[str, set[str]] = {}
        if joined and not full:
            kinds = ["typing", "event"] + (["push_actions"] if self.push is not None else [])
            changed = await self._sync_store.get_rooms_with_changes_of_kinds(
                kinds, joined, since or 0, now
            )
        if joined:
            receipts = await self._receipts.get_receipts_for_rooms(
                joined, 0 if full else since or 0, now
            )
            for r in receipts:
                receipts_by_room.setdefault(r.room_id, []).append(r)
            if full:
                ephemeral_changed = {r for r in joined if self._typing.typing_users(r)}
            else:
                ephemeral_changed = changed["typing"]
        account = await self._account_data.get_account_data_changes(
            req.user_id, 0 if full else since or 0, now
        )
        # Joined rooms with no membership change: anything new in them since `since`?
        if not full:
            quiet = [r for r in joined if r not in plans]
            active = changed.get("event", set())
            # New notifications (computed after the event) change the unread counts.
            active = active | changed.get("push_actions", set())
            for room_id in quiet:
                if (
                    room_id in active
                    or room_id in ephemeral_changed
                    or room_id in receipts_by_room
                    or room_id in account.rooms
                ):
                    plans[room_id] = _RoomPlan(room_id, "join", "", now, since, since)
        unread: Mapping[str, Mapping[str, tuple[int, int]]] = {}
        if self.push is not None:
            joined_plans = [r for r, p in plans.items() if p.section == "join"]
            unread = await self.push.unread_counts(req.user_id, joined_plans)
        for room_id in sorted(plans):
            plan = plans[room_id]
            if not room_filter.room_allowed(room_id):
                continue
            if plan.section == "invite" or plan.section == "knock":
                resp.rooms[plan.section][room_id] = await self._stripped_section(req, plan)
                continue
            body = await self._room_section(req, plan, full)
            if plan.section == "join":
                eph: list[JsonDict] = []
                if room_id in ephemeral_changed:
                    eph.append(self._typing.typing_event(room_id))
                rec = receipt_event(receipts_by_room.get(room_id, ()), req.user_id)
                if rec is not None:
                    eph.append(rec)
                body["ephemeral"] = {"events": room_filter.ephemeral.filter(eph)}
                body.update(
                    _unread_sections(
                        unread.get(room_id, {}), room_filter.timeline.unread_thread_notifications
                    )
                )
            room_data = [
                {"type": t, "content": c} for t, c in account.rooms.get(room_id, {}).items()
            ]
            body["account_data"] = {"events": room_filter.account_data.filter(room_data)}
            resp.rooms[plan.section][room_id] = body
        # Global account data; push rules are always there on a full sync.
        global_data = dict(account.global_data)
        if self.push is not None and (full or "m.push_rules" in global_data):
            global_data["m.push_rules"] = await self.push.push_rules_content(req.user_id)
        elif full and "m.push_rules" not in global_data:
            global_data["m.push_rules"] = push_rules_account_data(req.user_id)
        resp.account_data = req.filter.account_data.filter(
            [{"type": t, "content": c} for t, c in global_data.items()]
        )
        resp.presence = await self._presence_events(req, since if not full else None, now, joined)
        if self.devices is not None:
            resp.devices = await self.devices.device_sync(req.user_id, req.device_id, since, now)
        return resp, set(joined)

    async def _plan_rooms(
        self, req: SyncRequest, since: int | None, now: int
    ) -> tuple[dict[str, _RoomPlan], list[str]]:
        """Which rooms go in which section, and the rooms joined at ``now``."""
        plans: dict[str, _RoomPlan] = {}
        include_leave = req.filter.room.include_leave
        if since is None or req.full_state:
            wanted = ["join", "invite", "knock"] + (["leave", "ban"] if include_leave else [])
            rows = await self._events.get_rooms_for_local_user(req.user_id, wanted)
            joined: list[str] = []
            for room_id, membership, event_id, pos in rows:
                if pos > now:
                    continue  # changed after this response's position: next time
                section = "leave" if membership in _LEFT else membership
                upto = pos if section == "leave" else now
                # full_state with a since token: full state, but the timeline stays incremental.
                plans[room_id] = _RoomPlan(room_id, section, event_id, upto, None, since)
                if membership == _JOINED:
                    joined.append(room_id)
            return plans, joined

        current = await self._events.get_rooms_for_local_user(req.user_id, ["join"])
        joined = [r for r, _, _, pos in current if pos <= since]
        changes = await self._events.get_membership_changes(req.user_id, since, now)
        by_room: dict[str, list[tuple[int, str, str, str]]] = {}
        for change in changes:
            by_room.setdefault(change[1], []).append(change)
        if by_room:
            firsts = await self._events.get_events([c[0][3] for c in by_room.values()])
        else:
            firsts = {}
        for room_id, room_changes in by_room.items():
            pos, _, membership, event_id = room_changes[-1]
            first = firsts.get(room_changes[0][3])
            prev = _prev_membership(first)
            memberships = [c[2] for c in room_changes]
            if membership == _JOINED:
                newly = prev != _JOINED or any(m != _JOINED for m in memberships)
                plans[room_id] = _RoomPlan(
                    room_id, "join", event_id, now, None if newly else since, since
                )
                if room_id not in joined:
                    joined.append(room_id)
            elif membership in ("invite", "knock"):
                plans[room_id] = _RoomPlan(room_id, membership, event_id, now, since, since)
                if room_id in joined:
                    joined.remove(room_id)
            elif membership in _LEFT:
                was_in = prev == _JOINED or _JOINED in memberships[:-1]
                plans[room_id] = _RoomPlan(
                    room_id, "leave", event_id, pos, since if prev == _JOINED else None, since,
                    was_in,
                )
                if room_id in joined:
                    joined.remove(room_id)
        return plans, joined

    # -- room sections -------------------------------------------------------------------

    async def _room_section(self, req: SyncRequest, plan: _RoomPlan, full: bool) -> JsonDict:
        room_filter = req.filter.room
        timeline_filter = room_filter.timeline
        limit = timeline_filter.limit_or(DEFAULT_TIMELINE_LIMIT)
        since = None if full else plan.since
        if plan.in_room_during:
            timeline = await self._timeline(
                req.user_id, plan.room_id, plan.timeline_since or 0, plan.upto, limit,
                timeline_filter,
            )
        else:
            own = await self._events.get_events([plan.event_id])
            evs = [(plan.upto, own[plan.event_id])] if plan.event_id in own else []
            timeline = _Timeline(evs, False, plan.upto - 1)
        start = timeline.events[0][0] - 1 if timeline.events else plan.upto
        timeline_ids = {e.event_id for _, e in timeline.events}
        state_filter = room_filter.state
        lazy = state_filter.lazy_load_members
        state_start = await self._events.get_state_ids_at(plan.room_id, start)
        state_since: Mapping[StateKey, str] = {}
        if since is not None:
            state_since = await self._events.get_state_ids_at(plan.room_id, since)

        summary: JsonDict | None = None
        member_changed = any(e.type == "m.room.member" for _, e in timeline.events) or since is None
        heroes: list[str] = []
        if plan.section == "join" and (member_changed or state_start != state_since):
            members = await self._events.get_current_members(plan.room_id)
            summary, heroes = await self._summary(plan.room_id, req.user_id, members)

        wanted_members: set[str] | None = None
        if lazy:
            wanted_members = {e.sender for _, e in timeline.events} | set(heroes) | {req.user_id}

        def pick(state: Mapping[StateKey, str], base: Mapping[StateKey, str]) -> dict[StateKey, str]:
            out: dict[StateKey, str] = {}
            for key, event_id in state.items():
                if event_id in timeline_ids:
                    continue
                is_member = key[0] == "m.room.member"
                if is_member and wanted_members is not None:
                    if key[1] in wanted_members:
                        out[key] = event_id  # lazy loading: always resend what is needed
                    continue
                if base.get(key) != event_id:
                    out[key] = event_id
            return out

        body: JsonDict = {}
        if req.use_state_after:
            end_state = await self._events.get_state_ids_at(plan.room_id, plan.upto)
            chosen = pick(end_state, state_since)
            # state_after includes state events of the timeline too (MSC4222).
            for key, event_id in end_state.items():
                if event_id in timeline_ids and state_since.get(key) != event_id:
                    chosen[key] = event_id
            events = await self._state_events(req, chosen, state_filter)
            body["org.matrix.msc4222.state_after"] = {"events": events}
        else:
            chosen = pick(state_start, state_since)
            body["state"] = {"events": await self._state_events(req, chosen, state_filter)}

        body["timeline"] = {
            "events": await self._serialize_timeline(req, timeline.events),
            "limited": timeline.limited,
            "prev_batch": str(StreamToken(max(timeline.prev_batch, 0))),
        }
        if summary is not None:
            body["summary"] = summary
        return body

    async def _timeline(
        self, user_id: str, room_id: str, since: int, upto: int, limit: int, flt: EventFilter
    ) -> _Timeline:
        """The newest ``limit`` events matching ``flt`` that ``user_id`` may see, in
        ``(since, upto]``."""
        picked: list[tuple[int, Event]] = []
        cursor = upto
        page = max(limit * 2, 20)
        limited = False
        while cursor > since:
            batch = await self._events.get_room_events(
                room_id, from_pos=since, to_pos=cursor, limit=page, backwards=True
            )
            if not batch:
                break
            wanted = [(p, e) for p, e in batch if flt.matches(_filter_view(e))]
            i = 0
            while i < len(wanted) and not limited:
                # Judge visibility only for as many events as can still be used (one more
                # tells 'limited'): each state group judged costs database reads.
                chunk = wanted[i : i + limit - len(picked) + 1]
                i += len(chunk)
                visible = {
                    e.event_id
                    for e in await filter_events_for_user(
                        self._events, user_id, [e for _, e in chunk]
                    )
                }
                for pos, ev in chunk:
                    if ev.event_id in visible:
                        if len(picked) == limit:
                            limited = True
                            break
                        picked.append((pos, ev))
            if limited or len(batch) < page:
                break
            cursor = batch[-1][0] - 1
        picked.reverse()
        prev_batch = picked[0][0] - 1 if picked else (since if since else upto)
        return _Timeline(picked, limited, prev_batch)

    async def _state_events(
        self, req: SyncRequest, state: Mapping[StateKey, str], flt: EventFilter
    ) -> list[JsonDict]:
        if not state:
            return []
        events = await self._events.get_events(state.values())
        out = [e for e in events.values() if flt.matches(_filter_view(e))]
        out.sort(key=lambda e: (e.type, e.state_key or ""))
        return [req.filter.project(self._client_event(req, e, None)) for e in out]

    async def _serialize_timeline(
        self, req: SyncRequest, events: Sequence[tuple[int, Event]]
    ) -> list[JsonDict]:
        if not events:
            return []
        own = [e.event_id for _, e in events if e.sender == req.user_id]
        txn_ids = await self._events.get_txn_ids_for_events(own) if own else {}
        served: Sequence[Event] = [e for _, e in events]
        if self.relations is not None and req.filter.event_format != "federation":
            served = await self.relations.bundle(served, req.user_id)
        return [
            req.filter.project(self._client_event(req, e, txn_ids.get(e.event_id)))
            for e in served
        ]

    def _client_event(self, req: SyncRequest, event: Event, txn_id: TxnIdKey | None) -> JsonDict:
        if req.filter.event_format == "federation":
            return event.pdu()
        return serialize_event(
            event,
            now=int(self._clock.seconds() * 1000),
            requester=req,
            txn_id=txn_id,
            include_room_id=False,
        )

    async def _summary(
        self,
        room_id: str,
        user_id: str,
        members: Mapping[str, str],
    ) -> tuple[JsonDict, list[str]]:
        joined = [u for u, m in members.items() if m == "join"]
        invited = [u for u, m in members.items() if m == "invite"]
        candidates = [u for u in joined + invited if u != user_id]
        if not candidates:
            candidates = [u for u, m in members.items() if m in _LEFT and u != user_id]
        # Heroes in the order their membership events entered the stream.
        ids = await self._events.get_current_state_keys(
            room_id, [("m.room.member", u) for u in candidates]
        )
        meta = await self._events.get_event_meta(ids.values())
        order = {
            key[1]: (meta[eid].stream_position or 0) if eid in meta else 0
            for key, eid in ids.items()
        }
        heroes = sorted(candidates, key=lambda u: (order.get(u, 0), u))[:HERO_COUNT]
        return (
            {
                "m.heroes": heroes,
                "m.joined_member_count": len(joined),
                "m.invited_member_count": len(invited),
            },
            heroes,
        )

    async def _stripped_section(self, req: SyncRequest, plan: _RoomPlan) -> JsonDict:
        """``invite_state`` / ``knock_state``: stripped state plus the membership event."""
        own = await self._events.get_events([plan.event_id])
        member = own.get(plan.event_id)
        stripped: list[JsonDict] = []
        carried = member.unsigned.get("invite_room_state") if member is not None else None
        if carried is None and member is not None:
            carried = member.unsigned.get("knock_room_state")
        if isinstance(carried, Iterable) and not isinstance(carried, str | bytes | Mapping):
            stripped.extend(_thaw(s) for s in carried if isinstance(s, Mapping))
        else:
            ids = await self._events.get_current_state_keys(
                plan.room_id, [(t, "") for t in STRIPPED_STATE_TYPES]
            )
            events = await self._events.get_events(ids.values())
            stripped.extend(_strip(e) for e in events.values())
        if member is not None:
            stripped = [s for s in stripped if (s.get("type"), s.get("state_key")) != ("m.room.member", req.user_id)]
            stripped.append(_strip(member))
        key = "invite_state" if plan.section == "invite" else "knock_state"
        return {key: {"events": stripped}}

    # -- presence ------------------------------------------------------------------------

    async def _presence_events(
        self, req: SyncRequest, since: int | None, now: int, joined: list[str]
    ) -> list[JsonDict]:
        rows = await self._presence.store.get_all_changes(since or 0, now)
        if not rows:
            return []
        visible = {req.user_id}
        for room_id in joined:
            visible.update(await self._events.get_current_members(room_id, "join"))
        events = [self._presence.format(r) for r in rows if r.user_id in visible]
        return req.filter.presence.filter(events)


def _unread_sections(
    threads: Mapping[str, tuple[int, int]], per_thread: bool
) -> JsonDict:
    """``unread_notifications`` (all threads, or only the main timeline when the client asked
    for ``unread_thread_notifications``, which then has one entry per thread root)."""
    if not per_thread:
        return {
            "unread_notifications": {
                "notification_count": sum(n for n, _ in threads.values()),
                "highlight_count": sum(h for _, h in threads.values()),
            }
        }
    main_n, main_h = threads.get("main", (0, 0))
    return {
        "unread_notifications": {"notification_count": main_n, "highlight_count": main_h},
        "unread_thread_notifications": {
            root: {"notification_count": n, "highlight_count": h}
            for root, (n, h) in threads.items()
            if root != "main"
        },
    }


def _prev_membership(event: Event | None) -> str:
    if event is None:
        return "leave"
    prev = event.unsigned.get("prev_content")
    if isinstance(prev, Mapping) and isinstance(prev.get("membership"), str):
        return str(prev["membership"])
    return "leave"


def _filter_view(event: Event) -> JsonDict:
    return {
        "type": event.type,
        "sender": event.sender,
        "room_id": event.room_id,
        "content": event.content,
    }


def _strip(event: Event) -> JsonDict:
    return {
        "type": event.type,
        "state_key": event.state_key or "",
        "content": _thaw(event.content),
        "sender": event.sender,
    }


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value
