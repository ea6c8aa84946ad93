"""Stage 3 of handling an incoming PDU: fetch what it refers to that we do not have.

- **Auth events** we lack are fetched with ``/event_auth`` (falling back to ``/event``)
  and stored as outliers, in auth order, so the writer can check the event against them.
- **Prev events** we lack: first ``get_missing_events`` from the sender (bounded:
  ``max_events`` events, ``max_hops`` rounds), each returned event handled like a live
  one, oldest first. If a gap remains, the state after each missing prev event is fetched
  (``state_ids`` + ``/event``, or ``/state`` when most of it is unknown), its events stored
  as outliers, and the states resolved into the state before our event, which the writer
  then uses (``persist_event(state_before=...)``).

Every fetched event went through the same checks as a pushed one
(:class:`~ruma.federation.event_fetcher.EventFetcher`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from twisted.logger import Logger

from ruma.federation.event_fetcher import EventFetcher, FetchError
from ruma.federation.inbound.errors import PDUError
from ruma.protocol.events import Event, StateKey
from ruma.protocol.room_versions import RoomVersion
from ruma.rooms.persistence import RoomWriter
from ruma.storage.events import EventStore

__all__ = ["GapFiller", "MissingAuthEvents"]

# Above this many unknown events in a remote state, one /state beats many /event calls.
STATE_FETCH_THRESHOLD = 50


class MissingAuthEvents(PDUError):
    """Some of the event's auth events could not be fetched: it cannot be checked yet."""


HandleFetched = Callable[[str, Event], Awaitable[object]]


def create_event_id(event: Event) -> str | None:
    """v12: the (implicit) create event's ID for ``event``'s room."""
    if event.room_version.room_id_from_create_event and not (
        event.type == "m.room.create" and event.state_key == ""
    ):
        return "$" + event.room_id[1:]
    return None


def auth_order(events: Iterable[Event]) -> list[Event]:
    """``events`` ordered so that each comes after those of its auth events in the set."""
    by_id = {e.event_id: e for e in events}
    done: set[str] = set()
    out: list[Event] = []

    def visit(e: Event, path: set[str]) -> None:
        if e.event_id in done or e.event_id in path:
            return
        path.add(e.event_id)
        deps = list(e.auth_event_ids)
        cid = create_event_id(e)
        if cid is not None:
            deps.append(cid)
        for dep in deps:
            if dep in by_id:
                visit(by_id[dep], path)
        path.discard(e.event_id)
        done.add(e.event_id)
        out.append(e)

    for e in sorted(by_id.values(), key=lambda e: (e.depth, e.event_id)):
        visit(e, set())
    return out


class GapFiller:
    log = Logger()

    def __init__(
        self,
        store: EventStore,
        writer: RoomWriter,
        fetcher: EventFetcher,
        *,
        max_events: int = 100,
        max_hops: int = 10,
    ) -> None:
        self._store = store
        self._writer = writer
        self._fetcher = fetcher
        self.max_events = max_events
        self.max_hops = max_hops

    # -- outliers --------------------------------------------------------------------------

    async def persist_outliers(self, events: Iterable[Event]) -> set[str]:
        """Store checked events as outliers (auth order); return the IDs now known here.

        An event whose own auth events are still unknown is skipped rather than stored as
        rejected: it might be fine, we just cannot tell yet.
        """
        events = list(events)
        known = await self._store.have_events(
            {e.event_id for e in events}
            | {a for e in events for a in e.auth_event_ids}
            | {c for e in events if (c := create_event_id(e)) is not None}
        )
        for event in auth_order(events):
            if event.event_id in known:
                continue
            deps = set(event.auth_event_ids)
            cid = create_event_id(event)
            if cid is not None:
                deps.add(cid)
            if not deps <= known:
                self.log.info(
                    "not storing {event_id}: its auth events {missing} are unknown",
                    event_id=event.event_id,
                    missing=sorted(deps - known),
                )
                continue
            await self._writer.persist_event(event, outlier=True)
            known.add(event.event_id)
        return known

    async def missing_auth_events(self, event: Event) -> set[str]:
        """The auth events of ``event`` (and its v12 create event) we do not hold."""
        wanted = set(event.auth_event_ids)
        cid = create_event_id(event)
        if cid is not None:
            wanted.add(cid)
        return wanted - await self._store.have_events(wanted)

    async def fetch_auth_events(self, origin: str, event: Event) -> None:
        """Make sure every auth event of ``event`` is stored; raise MissingAuthEvents."""
        missing = await self.missing_auth_events(event)
        if not missing:
            return
        version = event.room_version
        fetched: list[Event] = []
        try:
            fetched = await self._fetcher.get_event_auth(
                origin, version, event.room_id, event.event_id
            )
        except FetchError as e:
            self.log.info("event_auth for {event_id} failed: {e}", event_id=event.event_id, e=e)
        got = {e.event_id for e in fetched}
        if not missing <= got:
            extra = await self._fetcher.get_events(
                origin, version, missing - got, room_id=event.room_id
            )
            fetched.extend(extra.values())
        known = await self.persist_outliers(fetched)
        still = missing - known
        if still:
            raise MissingAuthEvents(
                f"could not fetch auth events {', '.join(sorted(still))}", event.event_id
            )

    # -- prev events -----------------------------------------------------------------------

    async def missing_prevs(self, event: Event) -> list[str]:
        """The prev events of ``event`` we have no state for (unknown, or outliers)."""
        groups = await self._store.get_state_groups_for_events(event.prev_event_ids)
        return [p for p in dict.fromkeys(event.prev_event_ids) if p not in groups]

    async def fill_with_missing_events(
        self, origin: str, event: Event, handle: HandleFetched
    ) -> None:
        """Ask ``origin`` for the events between our extremities and ``event``, and hand each
        (oldest first) to ``handle(origin, event)``; bounded by max_events and max_hops."""
        version = event.room_version
        latest = [event.event_id]
        fetched_total = 0
        for _ in range(self.max_hops):
            head = await self._store.get_room_head(event.room_id)
            if head is None:
                return
            limit = self.max_events - fetched_total
            if limit <= 0:
                return
            try:
                got = await self._fetcher.get_missing_events(
                    origin,
                    version,
                    event.room_id,
                    earliest_events=sorted(head.forward_extremities),
                    latest_events=latest,
                    limit=limit,
                    min_depth=0,
                )
            except FetchError as e:
                self.log.info(
                    "get_missing_events for {event_id} failed: {e}", event_id=event.event_id, e=e
                )
                return
            have = await self._store.have_events(e.event_id for e in got)
            new = [e for e in got if e.event_id not in have and e.event_id != event.event_id]
            if not new:
                return
            fetched_total += len(new)
            for ev in sorted(new, key=lambda e: (e.depth, e.event_id)):
                try:
                    await handle(origin, ev)
                except Exception as e:  # one bad fetched event must not stop the others
                    self.log.info(
                        "fetched event {event_id} not stored: {e}", event_id=ev.event_id, e=e
                    )
            if not await self.missing_prevs(event):
                return
            # Still a gap: go on from the oldest events we were given.
            oldest = min(new, key=lambda e: e.depth)
            latest = [oldest.event_id]

    async def state_before(self, origin: str, event: Event) -> dict[StateKey, str]:
        """The state before ``event`` when some prev events have no state here: the states
        after each prev event (ours, or fetched from ``origin``), resolved."""
        groups = await self._store.get_state_groups_for_events(event.prev_event_ids)
        sets: list[Mapping[StateKey, str]] = []
        for prev in dict.fromkeys(event.prev_event_ids):
            if prev in groups:
                sets.append(await self._store.state.get_state_group(groups[prev][1]))
            else:
                sets.append(await self._remote_state_after(origin, event.room_version,
                                                           event.room_id, prev))
        if len(sets) == 1:
            return dict(sets[0])
        return await self._writer.resolve(event.room_version, sets)

    async def _remote_state_after(
        self, origin: str, version: RoomVersion, room_id: str, prev_id: str
    ) -> dict[StateKey, str]:
        try:
            ids = await self._fetcher.get_state_ids(origin, room_id, prev_id)
            prev = (await self._store.get_pdus([prev_id])).get(prev_id)
            if prev is None:
                prev = await self._fetcher.get_event(origin, version, prev_id, room_id=room_id)
        except FetchError as e:
            raise PDUError(f"could not fetch the state at {prev_id}: {e}") from e
        wanted = set(ids.pdu_ids) | set(ids.auth_chain_ids) | set(prev.auth_event_ids)
        missing = wanted - await self._store.have_events(wanted)
        fetched: list[Event] = []
        if len(missing) > STATE_FETCH_THRESHOLD:
            try:
                pdus_, chain = await self._fetcher.get_state(origin, version, room_id, prev_id)
                fetched = [e for e in (*pdus_, *chain) if e.event_id in missing]
            except FetchError as e:
                self.log.info("/state at {prev} failed: {e}", prev=prev_id, e=e)
        got = {e.event_id for e in fetched}
        if missing - got:
            more = await self._fetcher.get_events(origin, version, missing - got, room_id=room_id)
            fetched.extend(more.values())
        known = await self.persist_outliers([*fetched, prev])
        # State events we held before this fetch count too (not only those just stored).
        known |= await self._store.have_events(set(ids.pdu_ids) - known)
        state_ids = [i for i in ids.pdu_ids if i in known]
        pdus = await self._store.get_pdus(state_ids)
        meta = await self._store.get_event_meta(state_ids)
        state: dict[StateKey, str] = {}
        for eid, ev in pdus.items():
            if ev.state_key is None or ev.room_id != room_id:
                continue
            if meta[eid].rejected_reason is not None:
                continue
            state[ev.state_key_tuple] = eid
        dropped = len(ids.pdu_ids) - len(state)
        if dropped:
            self.log.info(
                "state at {prev}: {n} state events unusable", prev=prev_id, n=dropped
            )
        if prev.state_key is not None and prev.event_id in known:
            state[prev.state_key_tuple] = prev.event_id
        return state
