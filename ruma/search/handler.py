"""``POST /search``: full-text search over the room events a user may read.

Only rooms the user is joined to are searched (narrowed by the filter's ``rooms`` /
``not_rooms``), and every hit passes the history visibility of its room for that user, so
nothing from before a ``joined``-visibility join, say, is ever found. Ranking comes from the
engine (:mod:`ruma.storage.search`); ``order_by: recent`` sorts newest first.

``next_batch`` tokens: ``r<offset>`` when ordered by rank, ``p<position>`` (below that
stream position) when ordered by recency.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ruma.errors import bad_json, invalid_param
from ruma.protocol.events import Event
from ruma.rooms.reading import EventFilter, RoomReader
from ruma.rooms.visibility import filter_events_for_user
from ruma.storage.events import EventStore
from ruma.storage.search import SEARCH_KEYS, SearchHit, SearchStore, search_words

__all__ = ["Grouping", "SearchHandler", "SearchQuery", "SearchResult", "SearchResults"]

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_CONTEXT = 100
_TOKEN = re.compile(r"^([rp])(-?\d{1,18})$")


@dataclass(frozen=True, slots=True)
class SearchQuery:
    search_term: str
    keys: tuple[str, ...] = tuple(k for k, _ in SEARCH_KEYS.values())
    order_by_rank: bool = True
    limit: int = DEFAULT_LIMIT
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    event_filter: EventFilter = field(default_factory=EventFilter)
    before_limit: int | None = None
    after_limit: int | None = None
    include_profile: bool = False
    include_state: bool = False
    group_by: tuple[str, ...] = ()
    next_batch: str | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    rank: float
    event: Event
    before: list[Event] = field(default_factory=list)
    after: list[Event] = field(default_factory=list)
    start: str | None = None
    end: str | None = None
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Grouping:
    results: list[str]
    order: int


@dataclass(frozen=True, slots=True)
class SearchResults:
    count: int
    results: list[SearchResult]
    highlights: list[str]
    next_batch: str | None
    groups: dict[str, dict[str, Grouping]]
    state: dict[str, list[Event]]


class SearchHandler:
    def __init__(
        self,
        store: EventStore,
        search: SearchStore,
        reader: RoomReader,
    ) -> None:
        self._store = store
        self._search = search
        self._reader = reader

    async def search(self, user_id: str, query: SearchQuery) -> SearchResults:
        joined = [
            r[0] for r in await self._store.get_rooms_for_local_user(user_id, ("join",))
        ]
        rooms = [
            r
            for r in joined
            if (query.rooms is None or r in query.rooms) and r not in query.not_rooms
        ]
        words = search_words(query.search_term)
        offset = 0
        before: int | None = None
        if query.next_batch is not None:
            m = _TOKEN.match(query.next_batch)
            if m is None or (m.group(1) == "r") != query.order_by_rank:
                raise invalid_param("Invalid next_batch token")
            if query.order_by_rank:
                offset = int(m.group(2))
            else:
                before = int(m.group(2))
        flt = query.event_filter
        picked: list[tuple[SearchHit, Event]] = []
        count = 0
        exhausted = False
        consumed_all = True
        next_batch: str | None = None
        batch = max(query.limit, 10)
        while len(picked) < query.limit and not exhausted:
            hits, count = await self._search.search(
                rooms,
                words,
                keys=query.keys,
                order_by_rank=query.order_by_rank,
                offset=offset,
                before_position=before,
                limit=batch,
                senders=flt.senders,
                not_senders=flt.not_senders,
            )
            exhausted = len(hits) < batch
            events = await self._store.get_events(h.event_id for h in hits)
            wanted = [events[h.event_id] for h in hits if h.event_id in events]
            wanted = [e for e in wanted if flt.matches(e)]
            visible = {
                e.event_id for e in await filter_events_for_user(self._store, user_id, wanted)
            }
            consumed_all = True
            for i, hit in enumerate(hits):
                offset += 1
                before = hit.stream_position
                if hit.event_id in visible:
                    picked.append((hit, events[hit.event_id]))
                    if len(picked) == query.limit:
                        consumed_all = i == len(hits) - 1
                        break
            if not hits:
                break
        if len(picked) == query.limit and not (exhausted and consumed_all):
            next_batch = f"r{offset}" if query.order_by_rank else f"p{before}"
        results = [await self._result(user_id, hit, event, query) for hit, event in picked]
        groups: dict[str, dict[str, Grouping]] = {}
        for key in query.group_by:
            grouped: dict[str, Grouping] = {}
            for result in results:
                value = result.event.room_id if key == "room_id" else result.event.sender
                g = grouped.get(value)
                if g is None:
                    g = grouped[value] = Grouping([], len(grouped) + 1)
                g.results.append(result.event.event_id)
            groups[key] = grouped
        state: dict[str, list[Event]] = {}
        if query.include_state:
            for room_id in dict.fromkeys(r.event.room_id for r in results):
                state[room_id] = await self._reader.get_state(user_id, room_id)
        return SearchResults(
            count=count,
            results=results,
            highlights=words,
            next_batch=next_batch,
            groups=groups,
            state=state,
        )

    async def _result(
        self, user_id: str, hit: SearchHit, event: Event, query: SearchQuery
    ) -> SearchResult:
        if query.before_limit is None and query.after_limit is None and not query.include_profile:
            return SearchResult(rank=hit.rank, event=event)
        before_n = min(query.before_limit if query.before_limit is not None else 5, MAX_CONTEXT)
        after_n = min(query.after_limit if query.after_limit is not None else 5, MAX_CONTEXT)
        before: list[Event] = []
        after: list[Event] = []
        start: str | None = None
        end: str | None = None
        if before_n:
            page = await self._reader.get_messages(
                user_id, event.room_id, from_token=f"s{hit.stream_position - 1}",
                to_token=None, backwards=True, limit=before_n, event_filter=EventFilter(),
            )
            before, start = page.events, page.end
        if after_n:
            page = await self._reader.get_messages(
                user_id, event.room_id, from_token=f"s{hit.stream_position}",
                to_token=None, backwards=False, limit=after_n, event_filter=EventFilter(),
            )
            after, end = page.events, page.end
        profiles: dict[str, dict[str, Any]] = {}
        if query.include_profile:
            for sender in dict.fromkeys(e.sender for e in [*before, event, *after]):
                profiles[sender] = await self._profile_in_room(event.room_id, sender)
        return SearchResult(
            rank=hit.rank,
            event=event,
            before=before,
            after=after,
            start=start if start is not None else f"s{hit.stream_position - 1}",
            end=end if end is not None else f"s{hit.stream_position}",
            profiles=profiles,
        )

    async def _profile_in_room(self, room_id: str, user_id: str) -> dict[str, Any]:
        member = await self._store.get_current_state_event(room_id, "m.room.member", user_id)
        out: dict[str, Any] = {}
        if member is not None:
            for key in ("displayname", "avatar_url"):
                value = member.content.get(key)
                if isinstance(value, str):
                    out[key] = value
        return out


def parse_search_body(body: Mapping[str, Any], next_batch: str | None) -> SearchQuery:
    """The ``room_events`` category of a ``POST /search`` body (M_BAD_JSON / M_INVALID_PARAM
    for anything malformed)."""
    categories = body.get("search_categories")
    if not isinstance(categories, Mapping):
        raise bad_json("search_categories must be an object")
    room_events = categories.get("room_events")
    if room_events is None:
        raise invalid_param("Only the room_events search category is supported")
    if not isinstance(room_events, Mapping):
        raise bad_json("room_events must be an object")
    term = room_events.get("search_term")
    if not isinstance(term, str):
        raise bad_json("search_term must be a string")
    keys_raw = room_events.get("keys")
    keys: tuple[str, ...] = tuple(k for k, _ in SEARCH_KEYS.values())
    if keys_raw is not None:
        valid = {k for k, _ in SEARCH_KEYS.values()}
        if not isinstance(keys_raw, list) or not all(
            isinstance(k, str) and k in valid for k in keys_raw
        ):
            raise invalid_param(f"keys must be a list of {sorted(valid)}")
        keys = tuple(keys_raw)
    order_by = room_events.get("order_by", "rank")
    if order_by not in ("rank", "recent"):
        raise invalid_param("order_by must be 'rank' or 'recent'")
    raw_filter = room_events.get("filter") or {}
    if not isinstance(raw_filter, Mapping):
        raise bad_json("filter must be an object")
    event_filter = EventFilter.from_json(raw_filter)
    rooms = _strs(raw_filter, "rooms")
    not_rooms = _strs(raw_filter, "not_rooms") or ()
    limit = event_filter.limit if event_filter.limit is not None else DEFAULT_LIMIT
    limit = max(1, min(limit, MAX_LIMIT))
    context = room_events.get("event_context")
    before_limit = after_limit = None
    include_profile = False
    if context is not None:
        if not isinstance(context, Mapping):
            raise bad_json("event_context must be an object")
        before_limit = _int(context, "before_limit", 5)
        after_limit = _int(context, "after_limit", 5)
        include_profile = context.get("include_profile") is True
    groupings = room_events.get("groupings") or {}
    if not isinstance(groupings, Mapping):
        raise bad_json("groupings must be an object")
    group_by: list[str] = []
    for g in groupings.get("group_by") or []:
        key = g.get("key") if isinstance(g, Mapping) else None
        if key not in ("room_id", "sender"):
            raise invalid_param("group_by keys must be 'room_id' or 'sender'")
        group_by.append(key)
    return SearchQuery(
        search_term=term,
        keys=keys,
        order_by_rank=order_by == "rank",
        limit=limit,
        rooms=rooms,
        not_rooms=not_rooms,
        event_filter=event_filter,
        before_limit=before_limit,
        after_limit=after_limit,
        include_profile=include_profile,
        include_state=room_events.get("include_state") is True,
        group_by=tuple(dict.fromkeys(group_by)),
        next_batch=next_batch,
    )


def _strs(obj: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_param(f"filter.{key} must be a list of strings")
    return tuple(value)


def _int(obj: Mapping[str, Any], key: str, default: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_param(f"event_context.{key} must be a non-negative integer")
    return value

