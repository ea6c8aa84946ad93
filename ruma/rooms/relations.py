"""Threads, edits, references and reactions: ``/relations``, ``/threads`` and the bundled
aggregations (``unsigned.m.relations``) of events served to clients.

Relations are indexed when events are persisted (:mod:`ruma.storage.relations`). What a
user gets is always filtered by what they may read: the room (``RoomReader.access``), the
parent event, and the history visibility of every relating event.

Bundled aggregations follow the current spec:

- ``m.thread``: ``latest_event`` (the newest reply, as a client event), ``count`` and
  ``current_user_participated`` (the user sent the root or a reply);
- ``m.replace``: the newest valid replacement event, whole (same sender and type as the
  original, neither a state event, the original not itself an edit), newest by
  ``origin_server_ts`` then event ID; the original's content is left as it is;
- ``m.reference``: ``chunk`` of the referencing events' IDs.

Pagination tokens are stream tokens (``s<N>``, as ``/messages`` and ``/sync`` hand out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ruma.protocol.events import Event
from ruma.rooms.reading import MIN_POSITION, RoomReader, parse_token
from ruma.rooms.serialize import serialize_event
from ruma.rooms.visibility import filter_events_for_user
from ruma.storage.events import EventStore
from ruma.storage.relations import Relation, RelationStore, relation_of

__all__ = ["RelationsHandler", "RelationsPage", "ThreadsPage"]

# How far ?recurse=true follows relations of relations.
MAX_RECURSION = 3
MAX_POSITION = 2**62


@dataclass(frozen=True, slots=True)
class RelationsPage:
    events: list[Event]
    next_batch: str | None
    prev_batch: str | None
    recursion_depth: int | None


@dataclass(frozen=True, slots=True)
class ThreadsPage:
    roots: list[Event]
    next_batch: str | None


class RelationsHandler:
    def __init__(
        self,
        store: EventStore,
        relations: RelationStore,
        reader: RoomReader,
        clock: IReactorTime,
    ) -> None:
        self._store = store
        self._relations = relations
        self._reader = reader
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- /relations ------------------------------------------------------------------------

    async def get_relations(
        self,
        user_id: str,
        room_id: str,
        event_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        from_token: str | None,
        to_token: str | None,
        limit: int,
        backwards: bool,
        recurse: bool,
    ) -> RelationsPage:
        cap = await self._reader.access(user_id, room_id)
        # 404 unless the user may see the parent.
        await self._reader.get_event(user_id, room_id, event_id)
        parents = {event_id}
        depth: int | None = None
        if recurse:
            # Relations of relations, down to MAX_RECURSION levels below the event.
            depth = MAX_RECURSION
            frontier = {event_id}
            for _ in range(MAX_RECURSION - 1):
                frontier = {
                    r.event_id for r in await self._relations.get_children(frontier)
                } - parents
                if not frontier:
                    break
                parents |= frontier
        ceiling = MAX_POSITION if cap is None else cap
        if backwards:
            upper = min(parse_token(from_token) if from_token else ceiling, ceiling)
            lower = parse_token(to_token, "to") if to_token else MIN_POSITION
        else:
            lower = parse_token(from_token) if from_token else MIN_POSITION
            upper = min(parse_token(to_token, "to"), ceiling) if to_token else ceiling
        found: list[Event] = []
        more: int | None = None
        batch = max(limit, 10)
        while lower < upper and len(found) < limit:
            rows = await self._relations.get_relations(
                room_id,
                parents,
                rel_type=rel_type,
                event_type=event_type,
                from_pos=lower,
                to_pos=upper,
                limit=batch,
                backwards=backwards,
            )
            if not rows:
                break
            events = await self._store.get_events(r.event_id for r in rows)
            visible = {
                e.event_id
                for e in await filter_events_for_user(self._store, user_id, list(events.values()))
            }
            done = False
            for r in rows:
                if r.event_id in visible:
                    found.append(events[r.event_id])
                    if len(found) == limit:
                        more = r.stream_position - 1 if backwards else r.stream_position
                        done = True
                        break
            if done or len(rows) < batch:
                break
            if backwards:
                upper = rows[-1].stream_position - 1
            else:
                lower = rows[-1].stream_position
        return RelationsPage(
            events=found,
            next_batch=f"s{more}" if more is not None else None,
            prev_batch=from_token,
            recursion_depth=depth,
        )

    # -- /threads --------------------------------------------------------------------------

    async def get_threads(
        self,
        user_id: str,
        room_id: str,
        *,
        participated_only: bool,
        from_token: str | None,
        limit: int,
    ) -> ThreadsPage:
        cap = await self._reader.access(user_id, room_id)
        before = parse_token(from_token) if from_token else None
        if cap is not None:
            before = cap + 1 if before is None else min(before, cap + 1)
        roots: list[Event] = []
        next_batch: str | None = None
        while len(roots) < limit:
            rows = await self._relations.get_threads(
                room_id,
                before=before,
                limit=limit,
                participant=user_id if participated_only else None,
            )
            if not rows:
                break
            events = await self._store.get_events(root for root, _ in rows)
            in_room = [
                events[r] for r, _ in rows if r in events and events[r].room_id == room_id
            ]
            visible = {
                e.event_id for e in await filter_events_for_user(self._store, user_id, in_room)
            }
            for root, position in rows:
                before = position
                if root in visible:
                    roots.append(events[root])
                    if len(roots) == limit:
                        next_batch = f"s{position}"
                        break
            if len(rows) < limit:
                break
        return ThreadsPage(roots=roots, next_batch=next_batch)

    # -- bundled aggregations ----------------------------------------------------------------

    async def bundle(self, events: Sequence[Event], user_id: str) -> list[Event]:
        """``events`` with ``unsigned["m.relations"]`` where they have aggregations."""
        candidates = [e for e in events if "redacted_because" not in e.unsigned]
        if not candidates:
            return list(events)
        kinds = await self._relations.get_relation_types(e.event_id for e in candidates)
        if not kinds:
            return list(events)
        now = self._now()
        by_id = {e.event_id: e for e in candidates}
        threads = {p for p, t in kinds if t == "m.thread"}
        edited = {p for p, t in kinds if t == "m.replace"}
        referenced = {p for p, t in kinds if t == "m.reference"}
        out: dict[str, dict[str, Any]] = {}

        if threads:
            summaries = await self._relations.get_thread_summaries(threads)
            latest = await self._store.get_events(s.latest_event_id for s in summaries.values())
            for root, summary in summaries.items():
                latest_event = latest.get(summary.latest_event_id)
                if latest_event is None:
                    continue
                root_event = by_id[root]
                out.setdefault(root, {})["m.thread"] = {
                    "latest_event": serialize_event(latest_event, now=now),
                    "count": summary.count,
                    "current_user_participated": (
                        user_id in summary.participants or root_event.sender == user_id
                    ),
                }

        if edited:
            replacements = await self._relations.get_replacements(edited)
            newest: dict[str, Relation] = {}
            for parent, rels in replacements.items():
                original = by_id[parent]
                if original.state_key is not None:
                    continue
                own = relation_of(original.content)
                if own is not None and own[0] == "m.replace":
                    continue
                valid = [r for r in rels if r.sender == original.sender and r.type == original.type]
                if valid:
                    newest[parent] = max(valid, key=lambda r: (r.origin_server_ts, r.event_id))
            edits = await self._store.get_events(r.event_id for r in newest.values())
            for parent, rel in newest.items():
                edit = edits.get(rel.event_id)
                if edit is None or edit.state_key is not None:
                    continue
                out.setdefault(parent, {})["m.replace"] = serialize_event(edit, now=now)

        if referenced:
            references = await self._relations.get_references(referenced)
            for parent, ids in references.items():
                out.setdefault(parent, {})["m.reference"] = {
                    "chunk": [{"event_id": i} for i in ids]
                }

        if not out:
            return list(events)
        result = []
        for e in events:
            aggregations = out.get(e.event_id)
            if aggregations is None or e.event_id not in by_id:
                result.append(e)
                continue
            unsigned = dict(e.unsigned)
            unsigned["m.relations"] = aggregations
            result.append(e.with_unsigned(unsigned))
        return result
