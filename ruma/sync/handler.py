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
from ruma.protocol.errors import CanonicalJSONError
from ruma.protocol.events import Event, StateKey
from ruma.protocol.json import decode_json
from ruma.rooms.serialize import Bundler, serialize_event, txn_scope
from ruma.rooms.visibility import filter_events_for_user
from ruma.storage.account_data import AccountDataStore
from ruma.storage.events import EventStore, TxnIdKey
from ruma.storage.receipts import ReceiptStore
from ruma.storage.sync import SyncStore
from ruma.sync.event_cache import (
    CachedEvent,
    ClientEventCache,
    from_stored_pdu,
    stamp_of,
    to_cached,
)
from ruma.sync.filter import DEFAULT_TIMELINE_LIMIT, EventFilter, Filter
from ruma.sync.notifier import SyncNotifier
from ruma.sync.state_cache import StateGroupCache
from ruma.sync.tokens import StreamToken
from ruma.sync.visibility import visible_event_ids

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
        # What initial syncs read again and again: events in client form, state groups.
        self._client_events = ClientEventCache()
        self._state_groups = StateGroupCache()

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
        with_timeline = [
            p
            for r, p in sorted(plans.items())
            if room_filter.room_allowed(r) and p.section not in ("invite", "knock")
        ]
        bodies = await self._room_sections(req, with_timeline, full)
        for room_id in sorted(plans):
            plan = plans[room_id]
            if not room_filter.room_allowed(room_id):
                continue
            if plan.section == "invite" or plan.section == "knock":
                resp.rooms[plan.section][room_id] = await self._stripped_section(req, plan)
                continue
            body = bodies[room_id]
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
                    room_id,
                    "leave",
                    event_id,
                    pos,
                    since if prev == _JOINED else None,
                    since,
                    was_in,
                )
                if room_id in joined:
                    joined.remove(room_id)
        return plans, joined

    # -- room sections -------------------------------------------------------------------
    #
    # Every room's section needs the same reads (its timeline, the state at the timeline's
    # start, its members, the state events); each step below does them for all rooms at once.

    async def _room_sections(
        self, req: SyncRequest, plans: Sequence[_RoomPlan], full: bool
    ) -> dict[str, JsonDict]:
        if not plans:
            return {}
        room_filter = req.filter.room
        state_filter = room_filter.state
        lazy = state_filter.lazy_load_members
        timelines = await self._timelines(req, plans)

        def since_of(plan: _RoomPlan) -> int | None:
            return None if full else plan.since

        def start_of(plan: _RoomPlan) -> int:
            events = timelines[plan.room_id].events
            return events[0][0] - 1 if events else plan.upto

        points: set[tuple[str, int]] = set()
        for plan in plans:
            points.add((plan.room_id, start_of(plan)))
            since = since_of(plan)
            if since is not None:
                points.add((plan.room_id, since))
            if req.use_state_after:
                points.add((plan.room_id, plan.upto))
        states = await self._states_at(points)

        # Summaries (and lazy loading's heroes) for joined rooms whose members may have changed.
        summary_rooms: list[str] = []
        for plan in plans:
            since = since_of(plan)
            events = timelines[plan.room_id].events
            member_changed = since is None or any(e.type == "m.room.member" for _, e in events)
            state_since = states.get((plan.room_id, since), {}) if since is not None else {}
            if plan.section == "join" and (
                member_changed or states[(plan.room_id, start_of(plan))] != state_since
            ):
                summary_rooms.append(plan.room_id)
        member_ids = await self._sync_store.get_current_member_ids(summary_rooms)
        known = await self._cached_events(
            [eid for users in member_ids.values() for eid, _ in users.values()], {}
        )
        summaries: dict[str, tuple[JsonDict, list[str]]] = {
            room_id: _summary(req.user_id, member_ids[room_id], known) for room_id in summary_rooms
        }

        chosen_by_room: dict[str, dict[StateKey, str]] = {}
        for plan in plans:
            room_id = plan.room_id
            since = since_of(plan)
            events = timelines[room_id].events
            timeline_ids = {e.event_id for _, e in events}
            state_since = states.get((room_id, since), {}) if since is not None else {}
            wanted_members: set[str] | None = None
            if lazy:
                heroes = summaries[room_id][1] if room_id in summaries else []
                wanted_members = {e.sender for _, e in events} | set(heroes) | {req.user_id}
            if req.use_state_after:
                end_state = states[(room_id, plan.upto)]
                chosen = _pick(end_state, state_since, timeline_ids, wanted_members)
                # state_after includes state events of the timeline too (MSC4222).
                for key, event_id in end_state.items():
                    if event_id in timeline_ids and state_since.get(key) != event_id:
                        chosen[key] = event_id
            else:
                chosen = _pick(
                    states[(room_id, start_of(plan))], state_since, timeline_ids, wanted_members
                )
            chosen_by_room[room_id] = chosen
        state_events = await self._state_events(req, chosen_by_room, state_filter, known)
        timeline_events = await self._serialize_timelines(
            req, {r: t.events for r, t in timelines.items()}
        )

        bodies: dict[str, JsonDict] = {}
        for plan in plans:
            room_id = plan.room_id
            timeline = timelines[room_id]
            body: JsonDict = {}
            state_key = "org.matrix.msc4222.state_after" if req.use_state_after else "state"
            body[state_key] = {"events": state_events[room_id]}
            body["timeline"] = {
                "events": timeline_events[room_id],
                "limited": timeline.limited,
                "prev_batch": str(StreamToken(max(timeline.prev_batch, 0))),
            }
            if room_id in summaries:
                body["summary"] = summaries[room_id][0]
            bodies[room_id] = body
        return bodies

    async def _states_at(
        self, points: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], Mapping[StateKey, str]]:
        """``(room, position) -> state ids`` as ``EventStore.get_state_ids_at`` reads them."""
        groups = await self._sync_store.get_state_groups_at(points)
        loaded: dict[int, Mapping[StateKey, str]] = {}
        missing: list[int] = []
        for group in set(groups.values()):
            cached = self._state_groups.get(group)
            if cached is None:
                missing.append(group)
            else:
                loaded[group] = cached
        fresh = await self._sync_store.load_state_groups(self._events.state, missing)
        for group, state in fresh.items():
            self._state_groups.put(group, state)
        loaded.update(fresh)
        empty: Mapping[StateKey, str] = {}
        return {p: loaded[groups[p]] if p in groups else empty for p in points}

    async def _timelines(
        self, req: SyncRequest, plans: Sequence[_RoomPlan]
    ) -> dict[str, _Timeline]:
        timeline_filter = req.filter.room.timeline
        limit = timeline_filter.limit_or(DEFAULT_TIMELINE_LIMIT)
        page = _page_size(limit)
        # Every room's first page in one read, judged for visibility in one go; a room whose
        # first page is not enough continues page by page in _timeline.
        ranges = [
            (p.room_id, p.timeline_since or 0, p.upto)
            for p in plans
            if p.in_room_during and p.upto > (p.timeline_since or 0)
        ]
        rows = await self._sync_store.get_timeline_pages(ranges, page)
        found = await self._events.get_events(
            [eid for page_rows in rows.values() for eid, _ in page_rows], allow_rejected=True
        )
        pages = {
            room_id: [(pos, found[eid]) for eid, pos in page_rows if eid in found]
            for room_id, page_rows in rows.items()
        }
        candidates = [
            e
            for page_events in pages.values()
            for _, e in page_events
            if timeline_filter.matches_everything or timeline_filter.matches(_filter_view(e))
        ]
        visible = await visible_event_ids(
            self._events, self._sync_store, req.user_id, candidates, self._state_groups.get
        )
        out: dict[str, _Timeline] = {}
        for plan in plans:
            if plan.in_room_during:
                out[plan.room_id] = await self._timeline(
                    req.user_id,
                    plan.room_id,
                    plan.timeline_since or 0,
                    plan.upto,
                    limit,
                    timeline_filter,
                    pages.get(plan.room_id, []),
                    visible,
                )
            else:
                own = await self._events.get_events([plan.event_id])
                evs = [(plan.upto, own[plan.event_id])] if plan.event_id in own else []
                out[plan.room_id] = _Timeline(evs, False, plan.upto - 1)
        return out

    async def _timeline(
        self,
        user_id: str,
        room_id: str,
        since: int,
        upto: int,
        limit: int,
        flt: EventFilter,
        first_page: list[tuple[int, Event]] | None = None,
        first_visible: Collection[str] = (),
    ) -> _Timeline:
        """The newest ``limit`` events matching ``flt`` that ``user_id`` may see, in
        ``(since, upto]``; ``first_page`` (with the IDs of its visible events) is the first
        page already read."""
        picked: list[tuple[int, Event]] = []
        cursor = upto
        page = _page_size(limit)
        limited = False
        while cursor > since:
            known: Collection[str] | None = None
            if first_page is not None:
                batch, known, first_page = first_page, first_visible, None
            else:
                batch = await self._events.get_room_events(
                    room_id, from_pos=since, to_pos=cursor, limit=page, backwards=True
                )
            if not batch:
                break
            wanted = [
                (p, e) for p, e in batch if flt.matches_everything or flt.matches(_filter_view(e))
            ]
            i = 0
            while i < len(wanted) and not limited:
                # Judge visibility only for as many events as can still be used (one more
                # tells 'limited'): each state group judged costs database reads.
                chunk = wanted[i : i + limit - len(picked) + 1]
                i += len(chunk)
                if known is not None:
                    visible: Collection[str] = known
                else:
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

    async def _cached_events(
        self, event_ids: Collection[str], known: Mapping[str, CachedEvent]
    ) -> dict[str, CachedEvent]:
        """The (accepted) events of ``event_ids`` in cached client form; ``known`` holds
        entries already looked up in this response. Returns those and ``known``'s."""
        out = dict(known)
        ids = [eid for eid in dict.fromkeys(event_ids) if eid not in out]
        stamps = await self._sync_store.get_event_stamps(ids)
        missing: list[str] = []
        for eid in ids:
            row = stamps.get(eid)
            if row is None or row[2]:
                continue  # unknown or rejected: get_events leaves it out too
            entry = self._client_events.get(eid, (row[0], row[1]))
            if entry is None:
                missing.append(eid)
            else:
                out[eid] = entry
        missing = await self._from_stored_json(missing, stamps, out)
        events = await self._events.get_events(missing)
        for eid, event in events.items():
            row = stamps[eid]
            entry = to_cached(event, (row[0], row[1]))
            if stamp_of(event) == entry.stamp:
                self._client_events.put(entry)
            out[eid] = entry
        return out

    async def _from_stored_json(
        self,
        event_ids: Sequence[str],
        stamps: Mapping[str, tuple[str | None, str | None, bool]],
        out: dict[str, CachedEvent],
    ) -> list[str]:
        """Make (and cache) the entries of unredacted state events from their stored JSON
        into ``out``, skipping the full parse; returns the IDs that need ``Event``s."""
        unredacted = [eid for eid in event_ids if stamps[eid][0] is None]
        if not unredacted:
            return list(event_ids)
        replaced = {r for eid in unredacted if (r := stamps[eid][1]) is not None}
        rows = await self._sync_store.get_event_json([*unredacted, *replaced])
        pdus: dict[str, Any] = {}
        for eid, (_, text) in rows.items():
            try:
                pdus[eid] = decode_json(text, strict=False)
            except CanonicalJSONError:
                continue  # Event.from_pdu gives the verdict on it
        rest: list[str] = []
        for eid in event_ids:
            redacted_by, replaces, _ = stamps[eid]
            pdu = pdus.get(eid)
            entry = None
            if isinstance(pdu, dict):
                prev = pdus.get(replaces) if replaces is not None else None
                entry = from_stored_pdu(
                    eid,
                    rows[eid][0],
                    pdu,
                    (redacted_by, replaces),
                    prev if isinstance(prev, dict) else None,
                )
            if entry is None:
                rest.append(eid)
            else:
                self._client_events.put(entry)
                out[eid] = entry
        return rest

    async def _state_events(
        self,
        req: SyncRequest,
        chosen: Mapping[str, Mapping[StateKey, str]],
        flt: EventFilter,
        known: Mapping[str, CachedEvent],
    ) -> dict[str, list[JsonDict]]:
        """room -> its chosen state events (those ``flt`` lets through), for the client."""
        if req.filter.event_format == "federation":
            pdus = await self._events.get_events(
                eid for state in chosen.values() for eid in state.values()
            )
            fed: dict[str, list[JsonDict]] = {}
            for room_id, state in chosen.items():
                evs = [pdus[e] for e in state.values() if e in pdus]
                evs = [e for e in evs if flt.matches(_filter_view(e))]
                evs.sort(key=lambda e: (e.type, e.state_key or ""))
                fed[room_id] = [req.filter.project(e.pdu()) for e in evs]
            return fed
        entries = await self._cached_events(
            [eid for state in chosen.values() for eid in state.values()], known
        )
        now = self._now_ms()
        out: dict[str, list[JsonDict]] = {}
        for room_id, state in chosen.items():
            picked = [entries[e] for e in state.values() if e in entries]
            if not flt.matches_everything:
                picked = [c for c in picked if flt.matches(c.filter_view())]
            picked.sort(key=lambda c: (c.type, c.state_key or ""))
            out[room_id] = [req.filter.project(c.render(now)) for c in picked]
        return out

    async def _serialize_timelines(
        self, req: SyncRequest, timelines: Mapping[str, Sequence[tuple[int, Event]]]
    ) -> dict[str, list[JsonDict]]:
        """room -> its timeline for the client: one transaction-ID read and one bundling
        pass for all rooms."""
        flat = [e for events in timelines.values() for _, e in events]
        own = [e.event_id for e in flat if e.sender == req.user_id]
        txn_ids = await self._events.get_txn_ids_for_events(own) if own else {}
        served: Sequence[Event] = flat
        if flat and self.relations is not None and req.filter.event_format != "federation":
            served = await self.relations.bundle(flat, req.user_id)
        by_id = {e.event_id: e for e in served}
        now = self._now_ms()
        out: dict[str, list[JsonDict]] = {}
        for room_id, events in timelines.items():
            rendered: list[JsonDict] = []
            for _, original in events:
                event = by_id[original.event_id]
                txn_id = txn_ids.get(event.event_id)
                if req.filter.event_format == "federation":
                    rendered.append(req.filter.project(event.pdu()))
                    continue
                entry = self._client_events.for_event(event)
                if entry is None:
                    client = serialize_event(
                        event, now=now, requester=req, txn_id=txn_id, include_room_id=False
                    )
                else:
                    client = entry.render(now, _transaction_id(req, txn_id))
                rendered.append(req.filter.project(client))
            out[room_id] = rendered
        return out

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

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
            stripped = [
                s
                for s in stripped
                if (s.get("type"), s.get("state_key")) != ("m.room.member", req.user_id)
            ]
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
        # Presence of the user and of those joined to a room the user is joined to.
        others = {r.user_id for r in rows} - {req.user_id}
        member_ids = await self._sync_store.get_member_event_ids(joined, others)
        members = await self._cached_events([eid for _, _, eid in member_ids], {})
        visible = {req.user_id}
        for _, user_id, event_id in member_ids:
            entry = members.get(event_id)
            if entry is not None and entry.membership == _JOINED:
                visible.add(user_id)
        events = [self._presence.format(r) for r in rows if r.user_id in visible]
        return req.filter.presence.filter(events)


def _summary(
    user_id: str,
    members: Mapping[str, tuple[str, int]],
    events: Mapping[str, CachedEvent],
) -> tuple[JsonDict, list[str]]:
    """The room summary and its heroes from the current ``m.room.member`` state (user ->
    (event ID, stream position)): heroes in the order their membership entered the stream."""
    membership: dict[str, str] = {}
    for user, (event_id, _) in members.items():
        entry = events.get(event_id)
        m = entry.membership if entry is not None else None
        if m is not None:
            membership[user] = m
    joined = [u for u, m in membership.items() if m == "join"]
    invited = [u for u, m in membership.items() if m == "invite"]
    candidates = [u for u in joined + invited if u != user_id]
    if not candidates:
        candidates = [u for u, m in membership.items() if m in _LEFT and u != user_id]
    heroes = sorted(candidates, key=lambda u: (members[u][1], u))[:HERO_COUNT]
    return (
        {
            "m.heroes": heroes,
            "m.joined_member_count": len(joined),
            "m.invited_member_count": len(invited),
        },
        heroes,
    )


def _pick(
    state: Mapping[StateKey, str],
    base: Mapping[StateKey, str],
    timeline_ids: Collection[str],
    wanted_members: Collection[str] | None,
) -> dict[StateKey, str]:
    """The entries of ``state`` to send: those not in the timeline that differ from
    ``base``; with lazy loading (``wanted_members``) exactly the wanted members' events."""
    out: dict[StateKey, str] = {}
    for key, event_id in state.items():
        if event_id in timeline_ids:
            continue
        if wanted_members is not None and key[0] == "m.room.member":
            if key[1] in wanted_members:
                out[key] = event_id  # lazy loading: always resend what is needed
            continue
        if base.get(key) != event_id:
            out[key] = event_id
    return out


def _page_size(limit: int) -> int:
    """How many events a timeline reads at a time for ``limit`` (some may be filtered)."""
    return max(limit * 2, 20)


def _transaction_id(req: SyncRequest, txn_id: TxnIdKey | None) -> str | None:
    """The client's transaction ID for its own event, as ``serialize_event`` shows it."""
    if (
        txn_id is None
        or txn_id.user_id != req.user_id
        or txn_id.scope != txn_scope(req.device_id, req.token_id)
    ):
        return None
    # Stored as "<kind>:<client txn id>" (ruma.client.rooms._txn); clients want theirs.
    return txn_id.txn_id.partition(":")[2] or txn_id.txn_id


def _unread_sections(threads: Mapping[str, tuple[int, int]], per_thread: bool) -> JsonDict:
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
