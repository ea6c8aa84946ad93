"""The one path by which any event enters a room: :meth:`RoomWriter.persist_event`.

Whatever its source (a local client now; federation, appservices and bridges later), an
event is checked and stored here, in this order (the server-server spec's "checks
performed on receipt of a PDU", from step 4 on; signatures and hashes are the receiving
side's job before it calls in):

1. auth against its own auth events (rejected if it fails);
2. auth against the state before it, which is the state after its prev events, resolved
   with :func:`ruma.protocol.state_res.resolve_state` when they differ (rejected);
3. auth against the room's current state (soft-failed if it fails);
4. one transaction: the event with a stream position if it joins the timeline, its state
   groups, the forward extremities, the current state (resolved again if the room has
   several extremities) and local users' memberships.

Work that must become visible together with a timeline event (push notifications and the
unread counts derived from them) plugs in as a :class:`WriteHook`: it runs under the room's
lock once the plan is made, before step 4, and hears the result after it.

The bus hears of it through the database's stream positions. Writes to one room are
serialised by a :class:`~ruma.rooms.linearizer.Linearizer` on the injected clock.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.protocol.auth import (
    AuthError,
    check_auth,
    check_auth_events,
    get_named_level,
    get_user_power_level,
)
from ruma.protocol.events import Event, StateKey, auth_types_for_event
from ruma.protocol.room_versions import EventFormat, RoomVersion
from ruma.protocol.state_res import resolve_state
from ruma.rooms.linearizer import Linearizer
from ruma.storage.events import (
    CurrentStateUpdate,
    EventStore,
    NewRoom,
    PersistPlan,
    PersistResult,
    RoomHead,
    StateAt,
    TxnIdKey,
)
from ruma.storage.state import diff_states

__all__ = ["AfterWrite", "EventRejected", "PersistedEvent", "RoomWriter", "StateBefore", "WriteHook"]

CREATE: StateKey = ("m.room.create", "")

# The state before an event, as callers may give it: a full map, or a stored state.
StateBefore = Mapping[StateKey, str] | StateAt


class EventRejected(Exception):
    """A local event failed the authorisation rules; nothing was written."""

    def __init__(self, event: Event, rule: str, reason: str, *, soft: bool = False) -> None:
        super().__init__(f"{event.event_id}: {rule}: {reason}")
        self.event = event
        self.rule = rule
        self.reason = reason
        self.soft = soft


class UnknownRoom(Exception):
    """The event's room is not known to this server (and the event is not its create)."""


@dataclass(frozen=True, slots=True)
class PersistedEvent:
    event: Event
    stream_position: int | None
    rejected_reason: str | None = None
    soft_failed: bool = False
    already_known: bool = False


# Called once the event's transaction committed, with its result.
AfterWrite = Callable[[PersistResult], None]


class WriteHook(Protocol):
    """Work done with each new timeline event (not outliers, rejected, soft-failed or
    backfilled events), e.g. push evaluation."""

    async def before_write(self, plan: PersistPlan, head: RoomHead | None) -> AfterWrite | None:
        """Called under the room's lock just before the event's transaction, with the plan
        and the room's head the plan was made on (None for a new room). Whatever it stores
        must stay invisible until that transaction commits. Returns what to call after
        the commit (not called if the write fails)."""
        ...


# Each store's writer (the only one that persists to it), for services built apart.
_WRITERS: weakref.WeakKeyDictionary[EventStore, RoomWriter] = weakref.WeakKeyDictionary()


class RoomWriter:
    """Authorises and persists room events; the only writer of the events tables."""

    log = Logger()

    def __init__(self, store: EventStore, clock: IReactorTime) -> None:
        self.store = store
        self._clock = clock
        self._linearizer = Linearizer(clock)
        self.write_hook: WriteHook | None = None
        _WRITERS[store] = self

    @staticmethod
    def of_store(store: EventStore) -> RoomWriter | None:
        """The writer that persists to ``store`` (the last one built on it), if any."""
        return _WRITERS.get(store)

    @asynccontextmanager
    async def room_lock(self, room_id: str) -> AsyncIterator[None]:
        """Hold the room's write lock (build-then-persist of local events runs inside)."""
        async with self._linearizer.lock(room_id):
            yield

    async def persist_event(
        self,
        event: Event,
        *,
        state_before: StateBefore | None = None,
        outlier: bool = False,
        soft_failed: bool | None = None,
        new_room: NewRoom | None = None,
        out_of_room: bool = False,
        backfill_position: int | None = None,
    ) -> PersistedEvent:
        """Check and store ``event`` from any source (takes the room's lock).

        ``state_before``: the room state before the event, if the caller worked it out
        (federation, when prev events are missing); by default it is computed from the
        event's prev events. ``outlier``: store the event without state or timeline (an
        invite from a room we are not in, an auth event fetched for another). ``soft_failed``:
        None to check against the current state, or the caller's verdict.
        ``out_of_room``: a membership event of a room this server has no state of (an
        invite to a local user, its rejection, a knock): stored as an outlier *without*
        auth checks, since we hold none of its auth events; it only sets the local user's
        membership (federation checked its signatures). ``new_room`` may go with it, or
        with an outlier create event, to make the room known (no state) to this server.
        ``backfill_position``: older history fetched from another server, put in the
        timeline at that (negative, reserved) position without touching the room's
        extremities or current state, and not announced on the bus.
        An event already held as an outlier that is persisted again into the timeline
        (with state) joins the timeline then.
        Rejected events are stored as rejected; nothing is raised.
        """
        async with self._linearizer.lock(event.room_id):
            return await self.persist_event_locked(
                event,
                state_before=state_before,
                outlier=outlier,
                soft_failed=soft_failed,
                new_room=new_room,
                out_of_room=out_of_room,
                backfill_position=backfill_position,
            )

    async def persist_event_locked(
        self,
        event: Event,
        *,
        state_before: StateBefore | None = None,
        outlier: bool = False,
        soft_failed: bool | None = None,
        new_room: NewRoom | None = None,
        local: bool = False,
        txn_id: TxnIdKey | None = None,
        out_of_room: bool = False,
        backfill_position: int | None = None,
        known_head: RoomHead | None = None,
    ) -> PersistedEvent:
        """:meth:`persist_event` for callers already holding the room's lock.

        ``local=True``: the event was just built by this server for a user, so any auth
        failure (also against the current state) raises :class:`EventRejected` and
        nothing is written. ``known_head``: the room's head as the caller read it under
        this same hold of the lock (saves reading it again).
        """
        if out_of_room:
            outlier = True
        if backfill_position is not None:
            soft_failed = False  # history is not judged by today's state
        existing = await self.store.get_event_meta([event.event_id])
        deoutlier = False
        if event.event_id in existing:
            meta = existing[event.event_id]
            deoutlier = meta.outlier and not outlier and meta.rejected_reason is None
            if not deoutlier:
                return PersistedEvent(
                    event, meta.stream_position, meta.rejected_reason, meta.soft_failed, True
                )
        room_id = event.room_id
        head: RoomHead | None = None
        if new_room is None:
            head = known_head if known_head is not None else await self.store.get_room_head(room_id)
            if head is None:
                raise UnknownRoom(room_id)
            if head.room_version != event.room_version:
                raise ValueError(
                    f"{event.event_id} is a v{event.room_version.identifier} event but "
                    f"{room_id} is v{head.room_version.identifier}"
                )
        rejected: str | None = None

        # 1. Auth against the event's own auth events.
        auth_map: dict[StateKey, Event] = {}
        try:
            if not out_of_room:
                auth_map = await self._check_against_auth_events(event)
        except AuthError as e:
            rejected = f"{e.rule}: {e.reason}"
            if local:
                raise EventRejected(event, e.rule, e.reason) from e

        # 2. Auth against the state before the event.
        before: StateAt | None = None
        before_ids: Mapping[StateKey, str] | None = None
        if not outlier and new_room is None:
            before, before_ids = await self._state_before(event, state_before)
        elif new_room is not None:
            before = StateAt(None, {})
            before_ids = {}
        if rejected is None and before is not None and new_room is None:
            try:
                await self._check_against_state(event, before, before_ids)
            except AuthError as e:
                rejected = f"{e.rule}: {e.reason}"
                if local:
                    raise EventRejected(event, e.rule, e.reason) from e

        # 3. Soft failure: auth against the current state.
        if soft_failed is None:
            soft_failed = False
            if (
                rejected is None
                and not outlier
                and head is not None
                and head.current_state_group is not None
                # Checked against the state before, which is the current state: done.
                and not (
                    before is not None
                    and before.group == head.current_state_group
                    and not before.changes
                )
            ):
                try:
                    current = StateAt(head.current_state_group)
                    await self._check_against_state(event, current, None)
                except AuthError as e:
                    soft_failed = True
                    if local:
                        raise EventRejected(event, e.rule, e.reason, soft=True) from e
                    self.log.info(
                        "soft-failed {event_id}: {reason}", event_id=event.event_id, reason=e
                    )

        plan = await self._plan(
            event,
            head=head,
            before=before,
            before_ids=before_ids,
            outlier=outlier,
            rejected=rejected,
            soft_failed=soft_failed,
            new_room=new_room,
            auth_map=auth_map,
            txn_id=txn_id,
            backfill_position=backfill_position,
        )
        if deoutlier:
            if not plan.in_timeline:
                # Still not fit for the timeline: it stays the outlier it was.
                return PersistedEvent(event, None, rejected, soft_failed, True)
            plan = replace(plan, deoutlier=True)
        after: AfterWrite | None = None
        if (
            self.write_hook is not None
            and plan.in_timeline
            and plan.current_state is not None
            and plan.backfill_position is None
        ):
            try:
                after = await self.write_hook.before_write(plan, head)
            except Exception:
                # The event matters more than what hangs off it: store it regardless.
                self.log.failure("before writing {event_id}", event_id=event.event_id)
        result = await self.store.persist(plan)
        if after is not None:
            try:
                after(result)
            except Exception:
                self.log.failure("after writing {event_id}", event_id=event.event_id)
        if rejected is not None:
            self.log.info("rejected {event_id}: {reason}", event_id=event.event_id, reason=rejected)
        return PersistedEvent(event, result.stream_position, rejected, soft_failed)

    async def persist_outliers_locked(self, events: Sequence[Event]) -> dict[str, PersistedEvent]:
        """Store many outliers of one known room at once: a room's state and auth chain
        (a remote join, a gap in history), given in auth order (each after the auth events
        it has among them). Each is checked against its auth events, found in the batch or
        in storage, exactly as :meth:`persist_event` checks an outlier; all are written in
        one transaction. Events already held are left as they are. The caller holds the
        room's lock. (Redactions that arrived before such an event are not applied to it
        here; they apply when it is served from the timeline.)
        """
        by_id = {e.event_id: e for e in events}
        existing = await self.store.get_event_meta(by_id)
        todo = [e for eid, e in by_id.items() if eid not in existing]
        out: dict[str, PersistedEvent] = {
            eid: PersistedEvent(by_id[eid], m.stream_position, m.rejected_reason,
                                m.soft_failed, True)
            for eid, m in existing.items()
        }
        if not todo:
            return out
        batch_ids = {e.event_id for e in todo}
        wanted: set[str] = set()
        for e in todo:
            wanted.update(e.auth_event_ids)
            if e.room_version.room_id_from_create_event:
                wanted.add("$" + e.room_id[1:])
        wanted -= batch_ids
        known: dict[str, Event] = dict(await self.store.get_pdus(wanted))
        rejected = {
            eid for eid, m in (await self.store.get_event_meta(known)).items()
            if m.rejected_reason is not None
        }
        now_ms = int(self._clock.seconds() * 1000)
        plans: list[PersistPlan] = []
        for event in todo:
            reason: str | None = None
            try:
                self._check_auth_events_in(event, known, rejected)
            except AuthError as e:
                reason = f"{e.rule}: {e.reason}"
                rejected.add(event.event_id)
                self.log.info(
                    "rejected {event_id}: {reason}", event_id=event.event_id, reason=reason
                )
            known[event.event_id] = event
            plans.append(
                PersistPlan(event=event, outlier=True, rejected_reason=reason, now_ms=now_ms)
            )
            out[event.event_id] = PersistedEvent(event, None, reason)
        await self.store.persist_many(plans)
        return out

    @staticmethod
    def _check_auth_events_in(
        event: Event, known: Mapping[str, Event], rejected: set[str]
    ) -> None:
        """:meth:`_check_against_auth_events` with the events at hand."""
        for eid in event.auth_event_ids:
            if eid not in known:
                raise AuthError("auth_events.missing", f"auth event {eid} is unknown here")
            if eid in rejected:
                raise AuthError("auth_events.rejected", f"auth event {eid} was rejected")
        create = None
        if event.room_version.room_id_from_create_event and not (
            event.type == "m.room.create" and event.state_key == ""
        ):
            create = known.get("$" + event.room_id[1:])
            if create is None:
                raise AuthError("auth_events.no_create", f"no create event for {event.room_id}")
        auth_map = check_auth_events(event, known, create_event=create)
        check_auth(event, auth_map)

    async def check_local(self, event: Event) -> None:
        """Raise :class:`EventRejected` unless a just-built local ``event`` passes the auth
        rules (against its auth events and the current state). Writes nothing: for events
        another server must countersign before they are stored (remote invites)."""
        try:
            await self._check_against_auth_events(event)
            head = await self.store.get_room_head(event.room_id)
            if head is not None and head.current_state_group is not None:
                await self._check_against_state(event, StateAt(head.current_state_group), None)
        except AuthError as e:
            raise EventRejected(event, e.rule, e.reason) from e

    # -- auth ------------------------------------------------------------------------------

    async def _create_event(self, event: Event) -> Event | None:
        """v12: the create event implied by the room ID."""
        if event.type == "m.room.create" and event.state_key == "":
            return None
        create_id = "$" + event.room_id[1:]
        return (await self.store.get_pdus([create_id])).get(create_id)

    async def _check_against_auth_events(self, event: Event) -> dict[StateKey, Event]:
        ids = list(event.auth_event_ids)
        pdus = await self.store.get_pdus(ids)
        rejected = await self.store.get_rejected_reasons(ids)
        for eid in ids:
            if eid not in pdus:
                raise AuthError("auth_events.missing", f"auth event {eid} is unknown here")
            if rejected.get(eid) is not None:
                raise AuthError("auth_events.rejected", f"auth event {eid} was rejected")
        create = None
        if event.room_version.room_id_from_create_event:
            create = await self._create_event(event)
            if create is None and event.type != "m.room.create":
                raise AuthError("auth_events.no_create", f"no create event for {event.room_id}")
        auth_map = check_auth_events(event, pdus, create_event=create)
        check_auth(event, auth_map)
        return auth_map

    async def _check_against_state(
        self, event: Event, state: StateAt, state_ids: Mapping[StateKey, str] | None
    ) -> None:
        keys = set(
            auth_types_for_event(
                event.room_version, event.type, event.sender, event.state_key, event.content
            )
        )
        keys.add(CREATE)
        if state_ids is not None:
            ids = {k: state_ids[k] for k in keys if k in state_ids}
        else:
            ids = await self._state_keys(state, keys)
        pdus = await self.store.get_pdus(ids.values())
        auth_state = {k: pdus[eid] for k, eid in ids.items() if eid in pdus}
        check_auth(event, auth_state)

    async def _state_keys(self, state: StateAt, keys: Iterable[StateKey]) -> dict[StateKey, str]:
        keys = list(keys)
        out: dict[StateKey, str] = {}
        if state.group is not None:
            out = await self.store.state.get_state_group_keys(state.group, keys)
        for k in keys:
            if k in state.changes:
                v = state.changes[k]
                if v is None:
                    out.pop(k, None)
                else:
                    out[k] = v
        return out

    # -- state -----------------------------------------------------------------------------

    async def _state_before(
        self, event: Event, given: StateBefore | None
    ) -> tuple[StateAt, Mapping[StateKey, str] | None]:
        if isinstance(given, StateAt):
            return given, None
        if given is not None:
            groups = await self.store.get_state_groups_for_events(event.prev_event_ids)
            if groups:
                base = next(iter(groups.values()))[1]
                base_state = await self.store.state.get_state_group(base)
                return StateAt(base, diff_states(base_state, given)), given
            return StateAt(None, dict(given)), given
        return await self.state_after_events(event.room_version, event.room_id, event.prev_event_ids)

    async def state_after_events(
        self, room_version: RoomVersion, room_id: str, event_ids: Iterable[str]
    ) -> tuple[StateAt, Mapping[StateKey, str] | None]:
        """The room state after ``event_ids`` (resolved if they differ).

        Returns a stored state (and, when it had to be computed, the full map).
        """
        ids = list(dict.fromkeys(event_ids))
        groups = await self.store.get_state_groups_for_events(ids)
        missing = [e for e in ids if e not in groups]
        if missing:
            raise ValueError(
                f"no state known after {', '.join(missing)} in {room_id}: the caller must "
                "fetch it (or pass state_before)"
            )
        after = sorted({g[1] for g in groups.values()})
        if len(after) == 1:
            return StateAt(after[0]), None
        states = await self.store.state.get_state_groups(after)
        resolved = await self.resolve(room_version, [states[g] for g in after])
        base = after[-1]
        return StateAt(base, diff_states(states[base], resolved)), resolved

    async def resolve(
        self,
        room_version: RoomVersion,
        state_sets: list[Mapping[StateKey, str]],
        new_events: Iterable[Event] = (),
    ) -> dict[StateKey, str]:
        """Resolve several states of a room, loading the events and auth chains it needs.

        ``new_events``: events of the sets that are not stored yet (the one being persisted).
        """
        first = state_sets[0]
        if all(s == first for s in state_sets[1:]):
            return dict(first)
        wanted: set[str] = set()
        for s in state_sets:
            wanted.update(s.values())
        new = {e.event_id: e for e in new_events}
        event_map = await self._with_auth_chains(wanted - new.keys(), new)
        meta = await self.store.get_event_meta(event_map)
        rejected = {eid for eid, m in meta.items() if m.rejected_reason is not None}
        return resolve_state(room_version, state_sets, event_map, rejected_event_ids=rejected)

    async def _with_auth_chains(
        self, event_ids: Iterable[str], known: Mapping[str, Event]
    ) -> dict[str, Event]:
        event_map: dict[str, Event] = dict(known)
        todo = set(event_ids)
        for ev in known.values():
            todo.update(ev.auth_event_ids)
        todo -= event_map.keys()
        while todo:
            found = await self.store.get_pdus(todo)
            event_map.update(found)
            nxt: set[str] = set()
            for ev in found.values():
                nxt.update(ev.auth_event_ids)
                if ev.room_version.room_id_from_create_event and ev.type != "m.room.create":
                    nxt.add("$" + ev.room_id[1:])
            todo = nxt - event_map.keys()
            if not found:
                break
        return event_map

    # -- the plan --------------------------------------------------------------------------

    async def _plan(
        self,
        event: Event,
        *,
        head: RoomHead | None,
        before: StateAt | None,
        before_ids: Mapping[StateKey, str] | None,
        outlier: bool,
        rejected: str | None,
        soft_failed: bool,
        new_room: NewRoom | None,
        auth_map: Mapping[StateKey, Event],
        txn_id: TxnIdKey | None,
        backfill_position: int | None = None,
    ) -> PersistPlan:
        replaces: str | None = None
        if event.state_key is not None and before is not None:
            key = event.state_key_tuple
            if before_ids is not None:
                replaces = before_ids.get(key)
            else:
                replaces = (await self._state_keys(before, [key])).get(key)

        in_timeline = not outlier and rejected is None and not soft_failed
        remove: frozenset[str] = frozenset()
        add = False
        current: CurrentStateUpdate | None = None
        if in_timeline and before is not None and backfill_position is None:
            remove = frozenset(event.prev_event_ids)
            add = True
            old_extremities = head.forward_extremities if head is not None else frozenset()
            others = old_extremities - remove
            current = await self._current_state_update(event, head, before, before_ids, others)

        redact_target = pending = None
        if event.type == "m.room.redaction" and rejected is None and not outlier:
            target_id = event.redacts
            if target_id is not None:
                targets = await self.store.get_pdus([target_id])
                target = targets.get(target_id)
                if target is None:
                    pending = target_id
                elif target.room_id == event.room_id and _redaction_applies(
                    event, target, auth_map
                ):
                    redact_target = target_id
        redacted_by = None
        if rejected is None:
            for redaction_id in await self.store.get_pending_redactions(event.event_id):
                redaction = (await self.store.get_pdus([redaction_id])).get(redaction_id)
                if redaction is None or redaction.room_id != event.room_id:
                    continue
                redaction_auth = await self._auth_map_of(redaction)
                if _redaction_applies(redaction, event, redaction_auth):
                    redacted_by = redaction_id
                    break

        return PersistPlan(
            event=event,
            outlier=outlier,
            rejected_reason=rejected,
            soft_failed=soft_failed,
            state_before=None if outlier else before,
            replaces_state=replaces,
            remove_extremities=remove,
            add_extremity=add,
            current_state=current,
            new_room=new_room,
            redact_target=redact_target,
            pending_redaction_of=pending,
            redacted_by=redacted_by,
            txn_id=txn_id,
            now_ms=int(self._clock.seconds() * 1000),
            backfill_position=backfill_position if in_timeline else None,
        )

    async def _auth_map_of(self, event: Event) -> dict[StateKey, Event]:
        ids = list(event.auth_event_ids)
        if event.room_version.room_id_from_create_event:
            ids.append("$" + event.room_id[1:])
        pdus = await self.store.get_pdus(ids)
        return {ev.state_key_tuple: ev for ev in pdus.values() if ev.state_key is not None}

    async def _current_state_update(
        self,
        event: Event,
        head: RoomHead | None,
        before: StateAt,
        before_ids: Mapping[StateKey, str] | None,
        other_extremities: frozenset[str],
    ) -> CurrentStateUpdate:
        own: dict[StateKey, str | None] = {}
        if event.state_key is not None:
            own[event.state_key_tuple] = event.event_id
        current_group = head.current_state_group if head is not None else None
        if not other_extremities and not before.changes and before.group == current_group:
            # The common case: the event extends the whole room, whose state it saw.
            return CurrentStateUpdate(None, own)
        # Otherwise compare full states.
        current_state: Mapping[StateKey, str] = (
            await self.store.state.get_state_group(current_group)
            if current_group is not None
            else {}
        )
        after = dict(before_ids) if before_ids is not None else dict(
            await self._full_state(before)
        )
        if event.state_key is not None:
            after[event.state_key_tuple] = event.event_id
        if not other_extremities:
            return CurrentStateUpdate(None, diff_states(current_state, after))
        groups = await self.store.get_state_groups_for_events(other_extremities)
        sets: list[Mapping[StateKey, str]] = [after]
        group_states = await self.store.state.get_state_groups(g[1] for g in groups.values())
        sets.extend(group_states[g[1]] for g in groups.values())
        resolved = await self.resolve(event.room_version, sets, [event])
        changes = diff_states(current_state, resolved)
        return CurrentStateUpdate(StateAt(current_group, changes), changes)

    async def _full_state(self, state: StateAt) -> dict[StateKey, str]:
        full = dict(await self.store.state.get_state_group(state.group)) if state.group else {}
        for k, v in state.changes.items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = v
        return full


def _redaction_applies(redaction: Event, target: Event, auth_map: Mapping[StateKey, Event]) -> bool:
    """Whether a (authorised) redaction takes effect on ``target``.

    v1/v2 auth rules already checked this; from v3 the receiving server must: the
    redaction's sender has the redact level, or is on the same server as the target's
    sender.
    """
    if redaction.room_version.event_format is EventFormat.V1:
        return True
    if target.type == "m.room.create":
        return False
    if redaction.sender.partition(":")[2] == target.sender.partition(":")[2]:
        return True
    level = get_user_power_level(redaction.sender, auth_map)
    return level >= get_named_level(auth_map, "redact")
