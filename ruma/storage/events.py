"""Room events, current state and local memberships: reads for everyone, one write path.

Only the room writer (:mod:`ruma.rooms.persistence`) calls :meth:`EventStore.persist`,
with a :class:`PersistPlan` it has worked out (auth, state resolution); everything here is
SQL. Readers (sync, the client API, federation) use the ``get_*`` methods.

Events are returned as served to others: a redacted event comes back pruned with
``unsigned.redacted_because`` (the redaction's PDU), and a state event that replaced
another carries ``unsigned.replaces_state``/``prev_content``/``prev_sender``. The stored
JSON itself is always the PDU exactly as built or received.

Ranges of stream positions are always ``from_pos < position <= to_pos``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ruma.protocol.events import Event, StateKey
from ruma.protocol.json import encode_json
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from ruma.storage.database import Database, Txn
from ruma.storage.event_index import index_event_txn
from ruma.storage.state import StateStore

__all__ = [
    "CurrentStateUpdate",
    "EventMeta",
    "EventStore",
    "NewRoom",
    "PersistPlan",
    "PersistResult",
    "RoomHead",
    "StateAt",
    "TxnIdKey",
]

_EVENT_COLUMNS = (
    "event_id, room_id, stream_position, depth, outlier, rejected_reason, soft_failed,"
    " redacted_by, replaces_state, json"
)


@dataclass(frozen=True, slots=True)
class EventMeta:
    """What storage knows about an event beyond its PDU."""

    event_id: str
    room_id: str
    stream_position: int | None
    depth: int
    outlier: bool
    rejected_reason: str | None
    soft_failed: bool
    redacted_by: str | None


@dataclass(frozen=True, slots=True)
class StateAt:
    """A state to reference or write: ``group`` (if any) with ``changes`` on top.

    ``StateAt(group)`` is an existing group; ``StateAt(None, full_state)`` a new snapshot.
    """

    group: int | None
    changes: Mapping[StateKey, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CurrentStateUpdate:
    """The room's new current state.

    ``state`` is None when it is the state after the persisted event; ``changes`` are the
    rows to write to ``current_state`` (``None`` deletes), i.e. the difference between the
    old and the new current state.
    """

    state: StateAt | None
    changes: Mapping[StateKey, str | None]


@dataclass(frozen=True, slots=True)
class NewRoom:
    room_version: RoomVersion
    creator: str
    is_public: bool = False


@dataclass(frozen=True, slots=True)
class TxnIdKey:
    """A client transaction ID, scoped to the user and their device (or access token)."""

    user_id: str
    scope: str
    txn_id: str


@dataclass(frozen=True, slots=True)
class PersistPlan:
    """Everything the writer decided about one event; :meth:`EventStore.persist` obeys."""

    event: Event
    outlier: bool = False
    rejected_reason: str | None = None
    soft_failed: bool = False
    # The state before the event (None for outliers).
    state_before: StateAt | None = None
    # For state events: the event at the same key in the state before.
    replaces_state: str | None = None
    # Forward extremities to drop (the event's prev events) and whether the event becomes one.
    remove_extremities: frozenset[str] = frozenset()
    add_extremity: bool = False
    current_state: CurrentStateUpdate | None = None
    new_room: NewRoom | None = None
    # This event is a redaction that applies to this (already stored) event.
    redact_target: str | None = None
    # The redaction to record as pending because its target is not here yet.
    pending_redaction_of: str | None = None
    # An earlier redaction that applies to this event.
    redacted_by: str | None = None
    txn_id: TxnIdKey | None = None
    now_ms: int = 0
    # Backfilled history: the (negative) stream position reserved for it with
    # :meth:`EventStore.reserve_backfill_positions`. Such an event changes neither the
    # extremities nor the current state, and the bus does not hear of it.
    backfill_position: int | None = None
    # The event is already stored as an outlier and now joins the timeline (with state):
    # its row is updated rather than inserted.
    deoutlier: bool = False

    @property
    def in_timeline(self) -> bool:
        return not self.outlier and self.rejected_reason is None and not self.soft_failed


@dataclass(frozen=True, slots=True)
class PersistResult:
    event_id: str
    stream_position: int | None
    state_group_before: int | None
    state_group_after: int | None
    current_state_group: int | None


@dataclass(frozen=True, slots=True)
class RoomHead:
    """What the writer needs to add to a room: its version, extremities and current state."""

    room_id: str
    room_version: RoomVersion
    forward_extremities: frozenset[str]
    current_state_group: int | None
    max_depth: int


@dataclass(frozen=True, slots=True)
class RoomForPush:
    """See :meth:`EventStore.get_room_for_push`."""

    local_joined: list[str]
    joined_count: int
    state_ids: dict[StateKey, str]
    events: dict[str, Event]


class _EventCache:
    """LRU of parsed PDUs by event ID (events never change; redaction is applied on read)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Event] = OrderedDict()

    def get(self, event_id: str) -> Event | None:
        with self._lock:
            ev = self._items.get(event_id)
            if ev is not None:
                self._items.move_to_end(event_id)
            return ev

    def put(self, event: Event) -> None:
        with self._lock:
            self._items[event.event_id] = event
            self._items.move_to_end(event.event_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class EventStore:
    """SQL for room events, room state and local users' memberships."""

    def __init__(
        self,
        db: Database,
        server_name: str,
        state: StateStore | None = None,
        *,
        cache_size: int = 10_000,
    ) -> None:
        self._db = db
        self.server_name = server_name
        self.state = state if state is not None else StateStore(db)
        self._cache = _EventCache(cache_size)
        # event_id -> (state group before, after), in insertion order (oldest dropped first).
        self._groups_cache: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._groups_cache_size = cache_size
        self._groups_lock = threading.Lock()
        self._rejected: OrderedDict[str, str | None] = OrderedDict()
        self._rejected_lock = threading.Lock()
        self._versions: dict[str, RoomVersion] = {}
        # Read-ahead for the writer (see :meth:`get_persist_context`): what it read about an
        # event about to be persisted, each entry served once. Touched in the reactor thread
        # only; ``_writes`` counts persists begun, so a read that overlapped one is not kept.
        self._ahead_meta: dict[str, EventMeta | None] = {}
        self._ahead_pending: dict[str, list[str]] = {}
        self._writes = 0

    def is_local_user(self, user_id: str) -> bool:
        return user_id.partition(":")[2] == self.server_name

    # -- events ----------------------------------------------------------------------------

    async def get_event(self, event_id: str, *, allow_rejected: bool = False) -> Event | None:
        """The event as served (pruned if redacted), or None; rejected events only if asked."""
        events = await self.get_events([event_id], allow_rejected=allow_rejected)
        return events.get(event_id)

    async def get_events(
        self, event_ids: Iterable[str], *, allow_rejected: bool = False, redact: bool = True
    ) -> dict[str, Event]:
        """The events we have among ``event_ids`` (as served unless ``redact=False``)."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        return await self._db.run(
            "get_events", self._get_events_txn, ids, allow_rejected, redact
        )

    async def get_pdus(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """The events exactly as stored: unredacted, no unsigned additions, rejected too.

        For auth checks, state resolution and federation, which need the real PDUs.
        """
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        # PDUs never change and rows are never deleted, so a cached one is what the table
        # holds: only the others need a read.
        found: dict[str, Event] = {}
        missing: list[str] = []
        for event_id in ids:
            cached = self._cache.get(event_id)
            if cached is not None:
                found[event_id] = cached
            else:
                missing.append(event_id)
        if missing:
            found.update(await self._db.run("get_pdus", self._get_pdus_txn, missing))
        return found

    async def get_event_meta(self, event_ids: Iterable[str]) -> dict[str, EventMeta]:
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        if all(i in self._ahead_meta for i in ids):
            ahead = {i: self._ahead_meta.pop(i) for i in ids}
            return {i: m for i, m in ahead.items() if m is not None}

        def txn_fn(txn: Txn) -> dict[str, EventMeta]:
            found = {m.event_id: m for m in (_meta(r) for r in self._rows_txn(txn, ids))}
            self._remember_rejected((i, m.rejected_reason) for i, m in found.items())
            return found

        return await self._db.run("get_event_meta", txn_fn)

    async def get_rejected_reasons(self, event_ids: Iterable[str]) -> dict[str, str | None]:
        """``event_id -> rejected_reason`` (None: accepted) for the events we hold.

        An event's rejection is decided when it is first stored and never changes: cached.
        """
        out: dict[str, str | None] = {}
        missing: list[str] = []
        with self._rejected_lock:
            for event_id in dict.fromkeys(event_ids):
                if event_id in self._rejected:
                    out[event_id] = self._rejected[event_id]
                else:
                    missing.append(event_id)
        if missing:
            meta = await self.get_event_meta(missing)
            out.update((i, m.rejected_reason) for i, m in meta.items())
        return out

    def _remember_rejected(self, items: Iterable[tuple[str, str | None]]) -> None:
        with self._rejected_lock:
            for event_id, reason in items:
                self._rejected[event_id] = reason
            while len(self._rejected) > self._groups_cache_size:
                self._rejected.popitem(last=False)

    def _rows_txn(self, txn: Txn, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows.extend(
                txn.select(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id IN "
                    f"({','.join('?' for _ in chunk)})",
                    chunk,
                )
            )
        return rows

    def _parse(self, txn: Txn, row: tuple[Any, ...]) -> Event:
        event_id = row[0]
        cached = self._cache.get(event_id)
        if cached is not None:
            return cached
        version = self._room_version_txn(txn, row[1])
        event = Event.from_json(row[9], version)
        self._cache.put(event)
        return event

    def _get_pdus_txn(self, txn: Txn, ids: Sequence[str]) -> dict[str, Event]:
        return {r[0]: self._parse(txn, r) for r in self._rows_txn(txn, ids)}

    def _get_events_txn(
        self, txn: Txn, ids: Sequence[str], allow_rejected: bool, redact: bool
    ) -> dict[str, Event]:
        rows = [r for r in self._rows_txn(txn, ids) if allow_rejected or r[5] is None]
        out: dict[str, Event] = {}
        # Look up what the additions need in one go.
        extra_ids = {r[7] for r in rows if r[7] and redact} | {r[8] for r in rows if r[8]}
        extra = (
            {r[0]: self._parse(txn, r) for r in self._rows_txn(txn, list(extra_ids))}
            if extra_ids
            else {}
        )
        for row in rows:
            event = self._parse(txn, row)
            out[row[0]] = self._served(event, row[7] if redact else None, row[8], extra)
        return out

    def _served(
        self,
        event: Event,
        redacted_by: str | None,
        replaces_state: str | None,
        extra: Mapping[str, Event],
    ) -> Event:
        unsigned: dict[str, Any] = {}
        if replaces_state is not None:
            unsigned["replaces_state"] = replaces_state
            prev = extra.get(replaces_state)
            if prev is not None:
                unsigned["prev_content"] = prev.content
                unsigned["prev_sender"] = prev.sender
        if redacted_by is not None:
            redaction = extra.get(redacted_by)
            if redaction is not None:
                event = event.redacted()
                unsigned.pop("prev_content", None)
                unsigned["redacted_because"] = redaction.pdu()
                if not redaction.room_version.event_id_in_pdu:
                    unsigned["redacted_because"]["event_id"] = redaction.event_id
                unsigned["redacted_because"]["room_id"] = redaction.room_id
        if not unsigned:
            return event
        merged = dict(event.unsigned)
        merged.update(unsigned)
        return event.with_unsigned(merged)

    async def have_events(self, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` we hold (outliers and rejected events included)."""
        # Rows are never deleted: an event whose PDU is cached is held, no read needed.
        held: set[str] = set()
        ids: list[str] = []
        for event_id in dict.fromkeys(event_ids):
            if self._cache.get(event_id) is not None:
                held.add(event_id)
            else:
                ids.append(event_id)
        if not ids:
            return held

        def txn_fn(txn: Txn) -> set[str]:
            return {r[0] for r in self._rows_txn(txn, ids)}

        return held | await self._db.run("get_have_events", txn_fn)

    async def get_room_events(
        self,
        room_id: str,
        *,
        from_pos: int,
        to_pos: int,
        limit: int,
        backwards: bool,
    ) -> list[tuple[int, Event]]:
        """Timeline events with ``from_pos < position <= to_pos``.

        ``backwards=True`` returns the newest ``limit`` of them, newest first; otherwise
        the oldest ``limit``, oldest first.
        """
        order = "DESC" if backwards else "ASC"

        def txn_fn(txn: Txn) -> list[tuple[int, Event]]:
            rows = txn.select(
                "SELECT event_id, stream_position FROM events WHERE room_id = ?"
                " AND stream_position > ? AND stream_position <= ?"
                f" ORDER BY stream_position {order} LIMIT ?",
                (room_id, from_pos, to_pos, limit),
            )
            events = self._get_events_txn(txn, [r[0] for r in rows], True, True)
            return [(int(r[1]), events[r[0]]) for r in rows if r[0] in events]

        return await self._db.run("get_room_events", txn_fn)

    async def get_max_stream_position(self, room_id: str) -> int | None:
        def txn_fn(txn: Txn) -> int | None:
            row = txn.select_one(
                "SELECT MAX(stream_position) FROM events WHERE room_id = ?", (room_id,)
            )
            return int(row[0]) if row and row[0] is not None else None

        return await self._db.run("get_max_stream_position", txn_fn)

    async def reserve_backfill_positions(self, count: int) -> list[int]:
        """``count`` fresh negative stream positions for backfilled events, ascending.

        Each block lies below every position handed out before it, so a batch of older
        history (persisted oldest first with these positions) sorts before what we had.
        """

        def txn_fn(txn: Txn) -> list[int]:
            row = txn.select_one("SELECT value FROM backfill_position_counter")
            top = int(row[0]) if row else 0
            txn.execute("UPDATE backfill_position_counter SET value = ?", (top - count,))
            return list(range(top - count, top))

        if count <= 0:
            return []
        return await self._db.run("reserve_backfill_positions", txn_fn)

    async def get_backward_extremities(self, room_id: str) -> dict[str, int]:
        """Events the room's timeline refers to (as prev events) that we do not hold,
        with the depth of the oldest timeline event referring to each: where backfill
        goes on from."""

        def txn_fn(txn: Txn) -> dict[str, int]:
            rows = txn.select(
                "SELECT g.prev_event_id, MIN(e.depth) FROM event_edges g"
                " JOIN events e ON e.event_id = g.event_id"
                " WHERE g.room_id = ? AND e.stream_position IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM events p WHERE p.event_id = g.prev_event_id"
                " AND (p.stream_position IS NOT NULL OR p.rejected_reason IS NOT NULL"
                " OR p.soft_failed = ?))"
                " GROUP BY g.prev_event_id",
                (room_id, True),
            )
            return {r[0]: int(r[1]) for r in rows}

        return await self._db.run("get_backward_extremities", txn_fn)

    async def get_txn_event(self, key: TxnIdKey) -> str | None:
        """The event an earlier request with this transaction ID produced, if any."""

        def txn_fn(txn: Txn) -> str | None:
            row = txn.select_one(
                "SELECT event_id FROM event_txn_ids WHERE user_id = ? AND scope = ?"
                " AND txn_id = ?",
                (key.user_id, key.scope, key.txn_id),
            )
            return row[0] if row else None

        return await self._db.run("get_txn_event", txn_fn)

    async def get_txn_ids_for_events(self, event_ids: Iterable[str]) -> dict[str, TxnIdKey]:
        """The client transaction ID each of ``event_ids`` was sent with, where known."""
        ids = list(dict.fromkeys(event_ids))

        def txn_fn(txn: Txn) -> dict[str, TxnIdKey]:
            out: dict[str, TxnIdKey] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                for user_id, scope, txn_id, event_id in txn.select(
                    "SELECT user_id, scope, txn_id, event_id FROM event_txn_ids"
                    f" WHERE event_id IN ({','.join('?' for _ in chunk)})",
                    chunk,
                ):
                    out[event_id] = TxnIdKey(user_id, scope, txn_id)
            return out

        if not ids:
            return {}
        return await self._db.run("get_txn_ids_for_events", txn_fn)

    async def get_pending_redactions(self, event_id: str) -> list[str]:
        if event_id in self._ahead_pending:
            return self._ahead_pending.pop(event_id)

        def txn_fn(txn: Txn) -> list[str]:
            return [
                r[0]
                for r in txn.select(
                    "SELECT redaction_id FROM pending_redactions WHERE redacts = ?", (event_id,)
                )
            ]

        return await self._db.run("get_pending_redactions", txn_fn)

    # -- rooms -----------------------------------------------------------------------------

    def _room_version_txn(self, txn: Txn, room_id: str) -> RoomVersion:
        version = self._versions.get(room_id)
        if version is None:
            row = txn.select_one("SELECT room_version FROM rooms WHERE room_id = ?", (room_id,))
            if row is None:
                raise KeyError(f"unknown room {room_id}")
            version = KNOWN_ROOM_VERSIONS[row[0]]
            self._versions[room_id] = version
        return version

    async def get_room_version(self, room_id: str) -> RoomVersion | None:
        """The room's version, or None if this server does not know the room."""
        if room_id in self._versions:
            return self._versions[room_id]

        def txn_fn(txn: Txn) -> RoomVersion | None:
            try:
                return self._room_version_txn(txn, room_id)
            except KeyError:
                return None

        return await self._db.run("get_room_version", txn_fn)

    async def get_room_head(self, room_id: str) -> RoomHead | None:
        return await self._db.run("get_room_head", self._room_head_txn, room_id)

    async def get_persist_context(
        self,
        event_id: str,
        room_id: str,
        *,
        prev_event_ids: Iterable[str] = (),
        auth_event_ids: Iterable[str] = (),
    ) -> tuple[EventMeta | None, RoomHead | None]:
        """In ONE transaction, what persisting a received event reads first: the event's
        meta (None: not held), the room's head, and the redactions waiting for the event.
        Prev events' state groups and auth events not in the caches yet are read in the
        same transaction into the caches (:meth:`get_state_groups_for_events`,
        :meth:`get_pdus`, :meth:`have_events` and :meth:`get_rejected_reasons` then
        answer from memory).

        For a caller holding the room's write lock, which passes the head on to the
        writer (``known_head``). The meta and the pending redactions are kept for the
        writer's own next read of them (:meth:`get_event_meta` of just this event,
        :meth:`get_pending_redactions`), served once: nothing can change them meanwhile
        but a persist through this store, which drops them (as it does a read that
        overlapped it).
        """

        columns = ", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))
        prevs = [p for p in dict.fromkeys(prev_event_ids) if p not in self._groups_cache]
        auths = [a for a in dict.fromkeys(auth_event_ids) if self._cache.get(a) is None]

        def txn_fn(txn: Txn) -> tuple[EventMeta | None, RoomHead | None, list[str]]:
            # Two statements (each a round trip on PostgreSQL) for what would take five.
            row = txn.select_one(
                "SELECT r.room_version, r.current_state_group, (SELECT MAX(depth) FROM events"
                f" WHERE room_id = r.room_id AND outlier = ?), {columns} FROM rooms r"
                " LEFT JOIN events e ON e.event_id = ? WHERE r.room_id = ?",
                (False, event_id, room_id),
            )
            if row is None:
                return None, None, []
            meta = _meta(row[3:]) if row[3] is not None else None
            if meta is not None:
                self._remember_rejected([(event_id, meta.rejected_reason)])
            extremities: set[str] = set()
            pending: list[str] = []
            for kind, value in txn.select(
                "SELECT 0, event_id FROM forward_extremities WHERE room_id = ? UNION ALL"
                " SELECT 1, redaction_id FROM pending_redactions WHERE redacts = ?",
                (room_id, event_id),
            ):
                if int(kind) == 0:
                    extremities.add(value)
                else:
                    pending.append(value)
            head = RoomHead(
                room_id=room_id,
                room_version=KNOWN_ROOM_VERSIONS[row[0]],
                forward_extremities=frozenset(extremities),
                current_state_group=int(row[1]) if row[1] is not None else None,
                max_depth=int(row[2]) if row[2] is not None else 0,
            )
            if prevs:
                for r in txn.select(
                    "SELECT event_id, state_group_before, state_group FROM event_state"
                    f" WHERE event_id IN ({','.join('?' for _ in prevs)})",
                    prevs,
                ):
                    self._remember_groups(r[0], (int(r[1]), int(r[2])))
            if auths:
                rows = self._rows_txn(txn, auths)
                self._remember_rejected((r[0], r[5]) for r in rows)
                for r in rows:
                    self._parse(txn, r)
            return meta, head, pending

        writes = self._writes
        meta, head, pending = await self._db.run("get_persist_context", txn_fn)
        if head is not None and writes == self._writes:
            if len(self._ahead_meta) > 1000:
                self._ahead_meta.clear()
                self._ahead_pending.clear()
            self._ahead_meta[event_id] = meta
            self._ahead_pending[event_id] = pending
        return meta, head

    def _forget_ahead(self, plans: Iterable[PersistPlan]) -> None:
        """A persist begins: what was read ahead may be stale (and overlapping reads too)."""
        self._writes += 1
        for plan in plans:
            for event_id in (plan.event.event_id, plan.redact_target, plan.pending_redaction_of):
                if event_id is not None:
                    self._ahead_meta.pop(event_id, None)
                    self._ahead_pending.pop(event_id, None)

    async def get_txn_event_and_room_head(
        self, key: TxnIdKey, room_id: str
    ) -> tuple[str | None, RoomHead | None]:
        """:meth:`get_txn_event` and :meth:`get_room_head` in one transaction."""

        def txn_fn(txn: Txn) -> tuple[str | None, RoomHead | None]:
            row = txn.select_one(
                "SELECT event_id FROM event_txn_ids WHERE user_id = ? AND scope = ?"
                " AND txn_id = ?",
                (key.user_id, key.scope, key.txn_id),
            )
            if row is not None:
                return row[0], None
            return None, self._room_head_txn(txn, room_id)

        return await self._db.run("get_txn_event_and_room_head", txn_fn)

    def _room_head_txn(self, txn: Txn, room_id: str) -> RoomHead | None:
        row = txn.select_one(
            "SELECT room_version, current_state_group FROM rooms WHERE room_id = ?",
            (room_id,),
        )
        if row is None:
            return None
        extremities = frozenset(
            r[0]
            for r in txn.select(
                "SELECT event_id FROM forward_extremities WHERE room_id = ?", (room_id,)
            )
        )
        depth = txn.select_one(
            "SELECT MAX(depth) FROM events WHERE room_id = ? AND outlier = ?",
            (room_id, False),
        )
        return RoomHead(
            room_id=room_id,
            room_version=KNOWN_ROOM_VERSIONS[row[0]],
            forward_extremities=extremities,
            current_state_group=int(row[1]) if row[1] is not None else None,
            max_depth=int(depth[0]) if depth and depth[0] is not None else 0,
        )

    async def get_room_info(self, room_id: str) -> tuple[str, str | None, bool] | None:
        """``(room_version, creator, is_public)`` or None."""

        def txn_fn(txn: Txn) -> tuple[str, str | None, bool] | None:
            row = txn.select_one(
                "SELECT room_version, creator, is_public FROM rooms WHERE room_id = ?",
                (room_id,),
            )
            return (row[0], row[1], bool(row[2])) if row else None

        return await self._db.run("get_room_info", txn_fn)

    # -- state -----------------------------------------------------------------------------

    async def get_current_state_ids(
        self, room_id: str, types: Collection[str] | None = None
    ) -> dict[StateKey, str]:
        """The room's current state as ``(type, state_key) -> event_id`` (optionally of
        some event types only)."""

        def txn_fn(txn: Txn) -> dict[StateKey, str]:
            if types is None:
                rows = txn.select(
                    "SELECT type, state_key, event_id FROM current_state WHERE room_id = ?",
                    (room_id,),
                )
            else:
                tl = list(types)
                rows = txn.select(
                    "SELECT type, state_key, event_id FROM current_state WHERE room_id = ?"
                    f" AND type IN ({','.join('?' for _ in tl)})",
                    (room_id, *tl),
                )
            return {(r[0], r[1]): r[2] for r in rows}

        return await self._db.run("get_current_state_ids", txn_fn)

    async def get_current_state_keys(
        self, room_id: str, keys: Collection[StateKey]
    ) -> dict[StateKey, str]:
        """Only ``keys`` of the room's current state."""

        return await self._db.run(
            "get_current_state_keys", self._current_state_keys_txn, room_id, keys
        )

    def _current_state_keys_txn(
        self, txn: Txn, room_id: str, keys: Collection[StateKey]
    ) -> dict[StateKey, str]:
        # One query per event type (state keys in chunks), not one per key: push asks for
        # the member events of every local user of a room at once.
        by_type: dict[str, list[str]] = {}
        for etype, skey in keys:
            by_type.setdefault(etype, []).append(skey)
        out: dict[StateKey, str] = {}
        for etype, skeys in by_type.items():
            unique = list(dict.fromkeys(skeys))
            for i in range(0, len(unique), 500):
                chunk = unique[i : i + 500]
                for skey, event_id in txn.select(
                    "SELECT state_key, event_id FROM current_state WHERE room_id = ?"
                    f" AND type = ? AND state_key IN ({','.join('?' for _ in chunk)})",
                    (room_id, etype, *chunk),
                ):
                    out[(etype, skey)] = event_id
        return out

    async def get_current_state_event(
        self, room_id: str, etype: str, state_key: str
    ) -> Event | None:
        ids = await self.get_current_state_keys(room_id, [(etype, state_key)])
        event_id = ids.get((etype, state_key))
        return await self.get_event(event_id) if event_id is not None else None

    async def get_state_ids_at(self, room_id: str, stream_position: int) -> dict[StateKey, str]:
        """The room's state after the last timeline event at or before ``stream_position``."""

        def txn_fn(txn: Txn) -> int | None:
            row = txn.select_one(
                "SELECT s.room_state_group FROM events e JOIN event_state s"
                " ON s.event_id = e.event_id WHERE e.room_id = ? AND e.stream_position <= ?"
                " ORDER BY e.stream_position DESC LIMIT 1",
                (room_id, stream_position),
            )
            if row is None:
                # Before the room's first timeline event: the state before that event
                # (empty for a room created here; the room's state for one joined over
                # federation, whose first event is our join).
                row = txn.select_one(
                    "SELECT s.state_group_before FROM events e JOIN event_state s"
                    " ON s.event_id = e.event_id WHERE e.room_id = ? AND e.stream_position > ?"
                    " ORDER BY e.stream_position ASC LIMIT 1",
                    (room_id, stream_position),
                )
            return int(row[0]) if row else None

        group = await self._db.run("get_state_group_at", txn_fn)
        if group is None:
            return {}
        return dict(await self.state.get_state_group(group))

    async def get_state_groups_for_events(
        self, event_ids: Iterable[str]
    ) -> dict[str, tuple[int, int]]:
        """``event_id -> (state group before, state group after)`` for non-outliers."""
        # An event's state groups are written once with it and never change: cached.
        out: dict[str, tuple[int, int]] = {}
        ids: list[str] = []
        for event_id in dict.fromkeys(event_ids):
            cached = self._groups_cache.get(event_id)
            if cached is not None:
                out[event_id] = cached
            else:
                ids.append(event_id)

        def txn_fn(txn: Txn) -> dict[str, tuple[int, int]]:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                for r in txn.select(
                    "SELECT event_id, state_group_before, state_group FROM event_state"
                    f" WHERE event_id IN ({','.join('?' for _ in chunk)})",
                    chunk,
                ):
                    out[r[0]] = (int(r[1]), int(r[2]))
                    self._remember_groups(r[0], out[r[0]])
            return out

        if not ids:
            return out
        return await self._db.run("get_state_groups_for_events", txn_fn)

    def _remember_groups(self, event_id: str, groups: tuple[int, int]) -> None:
        with self._groups_lock:
            self._groups_cache[event_id] = groups
            if len(self._groups_cache) > self._groups_cache_size:
                self._groups_cache.popitem(last=False)

    async def get_state_ids_for_event(
        self, event_id: str, *, before: bool = False
    ) -> dict[StateKey, str] | None:
        """The state after (or before) a non-outlier event, or None if we have no state."""
        groups = await self.get_state_groups_for_events([event_id])
        if event_id not in groups:
            return None
        group = groups[event_id][0 if before else 1]
        return dict(await self.state.get_state_group(group))

    # -- memberships -----------------------------------------------------------------------

    async def get_rooms_for_local_user(
        self, user_id: str, memberships: Collection[str] = ("join",)
    ) -> list[tuple[str, str, str, int]]:
        """``(room_id, membership, event_id, stream_position)`` of a local user's rooms
        whose latest membership is one of ``memberships`` (forgotten rooms left out)."""
        ml = list(memberships)

        def txn_fn(txn: Txn) -> list[tuple[str, str, str, int]]:
            rows = txn.select(
                "SELECT room_id, membership, event_id, stream_position FROM local_memberships"
                f" WHERE user_id = ? AND forgotten = ? AND membership IN ({','.join('?' for _ in ml)})"
                " ORDER BY stream_position",
                (user_id, False, *ml),
            )
            return [(r[0], r[1], r[2], int(r[3])) for r in rows]

        if not ml:
            return []
        return await self._db.run("get_rooms_for_local_user", txn_fn)

    async def get_local_membership(
        self, user_id: str, room_id: str
    ) -> tuple[str, str, int] | None:
        """``(membership, event_id, stream_position)`` of a local user in a room, or None."""

        def txn_fn(txn: Txn) -> tuple[str, str, int] | None:
            row = txn.select_one(
                "SELECT membership, event_id, stream_position FROM local_memberships"
                " WHERE user_id = ? AND room_id = ?",
                (user_id, room_id),
            )
            return (row[0], row[1], int(row[2])) if row else None

        return await self._db.run("get_local_membership", txn_fn)

    async def get_membership_changes(
        self, user_id: str, from_pos: int, to_pos: int
    ) -> list[tuple[int, str, str, str]]:
        """A local user's membership changes ``(position, room_id, membership, event_id)``
        with ``from_pos < position <= to_pos``, oldest first."""

        def txn_fn(txn: Txn) -> list[tuple[int, str, str, str]]:
            rows = txn.select(
                "SELECT stream_position, room_id, membership, event_id"
                " FROM local_membership_changes WHERE user_id = ?"
                " AND stream_position > ? AND stream_position <= ? ORDER BY stream_position",
                (user_id, from_pos, to_pos),
            )
            return [(int(r[0]), r[1], r[2], r[3]) for r in rows]

        return await self._db.run("get_membership_changes", txn_fn)

    async def forget_room(self, user_id: str, room_id: str) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "UPDATE local_memberships SET forgotten = ? WHERE user_id = ? AND room_id = ?",
                (True, user_id, room_id),
            )

        await self._db.run("forget_room", txn_fn)

    async def get_local_users_in_room(self, room_id: str) -> list[str]:
        """Local users whose latest membership in the room is ``join``."""

        def txn_fn(txn: Txn) -> list[str]:
            return [
                r[0]
                for r in txn.select(
                    "SELECT user_id FROM local_memberships WHERE room_id = ? AND membership = ?",
                    (room_id, "join"),
                )
            ]

        return await self._db.run("get_local_users_in_room", txn_fn)

    async def get_room_for_push(
        self, room_id: str, extra_users: Collection[str] = ()
    ) -> RoomForPush:
        """What push evaluation reads about a room, in ONE transaction: the local joined
        users, the joined member count, and the current create, power levels and member
        events of those users and ``extra_users`` (as served)."""

        def txn_fn(txn: Txn) -> RoomForPush:
            local = [
                str(r[0])
                for r in txn.select(
                    "SELECT user_id FROM local_memberships WHERE room_id = ? AND membership = ?",
                    (room_id, "join"),
                )
            ]
            members = len(self._current_members_txn(txn, room_id, "join"))
            wanted: list[StateKey] = [("m.room.create", ""), ("m.room.power_levels", "")]
            wanted += [("m.room.member", u) for u in dict.fromkeys([*local, *extra_users])]
            ids = self._current_state_keys_txn(txn, room_id, wanted)
            unique = list(dict.fromkeys(ids.values()))
            events = self._get_events_txn(txn, unique, False, True) if unique else {}
            return RoomForPush(local, members, ids, events)

        return await self._db.run("get_room_for_push", txn_fn)

    async def get_joined_hosts(self, room_id: str) -> set[str]:
        """Servers with at least one joined member in the room's current state."""
        members = await self.get_current_members(room_id, "join")
        return {u.partition(":")[2] for u in members}

    async def get_current_members(
        self, room_id: str, membership: str | None = None
    ) -> dict[str, str]:
        """``user_id -> membership`` from the current state (optionally one membership)."""

        return await self._db.run(
            "get_current_members", self._current_members_txn, room_id, membership
        )

    def _current_members_txn(
        self, txn: Txn, room_id: str, membership: str | None = None
    ) -> dict[str, str]:
        rows = txn.select(
            "SELECT c.state_key, e.json FROM current_state c JOIN events e"
            " ON e.event_id = c.event_id WHERE c.room_id = ? AND c.type = ?",
            (room_id, "m.room.member"),
        )
        out: dict[str, str] = {}
        for user_id, pdu in rows:
            m = json.loads(pdu).get("content", {}).get("membership")
            if isinstance(m, str) and (membership is None or m == membership):
                out[user_id] = m
        return out

    # -- the write path --------------------------------------------------------------------

    async def persist(self, plan: PersistPlan) -> PersistResult:
        """Write one event and everything that follows from it in one transaction."""
        self._forget_ahead([plan])
        result = await self._db.run("persist_event", self._persist_txn, plan)
        self._cache.put(plan.event)
        self._persisted_groups(result)
        if plan.new_room is not None:
            self._versions[plan.event.room_id] = plan.new_room.room_version
        return result

    async def persist_many(self, plans: Sequence[PersistPlan]) -> list[PersistResult]:
        """Write several events (each as :meth:`persist` would) in one transaction."""

        def txn_fn(txn: Txn) -> list[PersistResult]:
            return [self._persist_txn(txn, plan) for plan in plans]

        if not plans:
            return []
        self._forget_ahead(plans)
        results = await self._db.run("persist_events", txn_fn)
        for result in results:
            self._persisted_groups(result)
        for plan in plans:
            self._cache.put(plan.event)
            if plan.new_room is not None:
                self._versions[plan.event.room_id] = plan.new_room.room_version
        return results

    def _persisted_groups(self, result: PersistResult) -> None:
        if result.state_group_before is not None and result.state_group_after is not None:
            self._remember_groups(
                result.event_id, (result.state_group_before, result.state_group_after)
            )

    def _persist_txn(self, txn: Txn, plan: PersistPlan) -> PersistResult:
        event = plan.event
        room_id = event.room_id
        if plan.new_room is not None:
            txn.execute(
                "INSERT INTO rooms (room_id, room_version, creator, is_public,"
                " current_state_group) VALUES (?, ?, ?, ?, NULL)",
                (
                    room_id,
                    plan.new_room.room_version.identifier,
                    plan.new_room.creator,
                    plan.new_room.is_public,
                ),
            )
        position: int | None = None
        if plan.in_timeline and plan.backfill_position is not None:
            position = plan.backfill_position
        elif plan.in_timeline:
            position = txn.next_stream_position(
                "event",
                room_id=room_id,
                user_id=event.state_key if event.type == "m.room.member" else None,
                ref=event.event_id,
            )
        if plan.deoutlier:
            txn.execute(
                "UPDATE events SET stream_position = ?, outlier = ?, soft_failed = ?,"
                " replaces_state = ? WHERE event_id = ?",
                (position, False, plan.soft_failed, plan.replaces_state, event.event_id),
            )
        else:
            self._insert_event_txn(txn, plan, position)
        if plan.txn_id is not None:
            txn.execute(
                "INSERT INTO event_txn_ids (user_id, scope, txn_id, room_id, event_id,"
                " inserted_ts) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    plan.txn_id.user_id,
                    plan.txn_id.scope,
                    plan.txn_id.txn_id,
                    room_id,
                    event.event_id,
                    plan.now_ms,
                ),
            )
        if plan.redact_target is not None and plan.rejected_reason is None:
            txn.execute(
                "UPDATE events SET redacted_by = ? WHERE event_id = ? AND redacted_by IS NULL",
                (event.event_id, plan.redact_target),
            )
        if plan.pending_redaction_of is not None and plan.rejected_reason is None:
            txn.execute(
                "INSERT INTO pending_redactions (redacts, redaction_id) VALUES (?, ?)",
                (plan.pending_redaction_of, event.event_id),
            )
        if plan.redacted_by is not None:
            txn.execute(
                "DELETE FROM pending_redactions WHERE redacts = ? AND redaction_id = ?",
                (event.event_id, plan.redacted_by),
            )

        group_before: int | None = None
        group_after: int | None = None
        current_group: int | None = None
        if plan.state_before is not None and not plan.outlier:
            group_before = self._state_group_txn(txn, room_id, plan.state_before)
            if event.state_key is not None and plan.rejected_reason is None:
                group_after = self.state.store_group_txn(
                    txn, room_id, group_before, {event.state_key_tuple: event.event_id}
                )
            else:
                group_after = group_before
            if plan.current_state is not None:
                if plan.current_state.state is None:
                    current_group = group_after
                else:
                    current_group = self._state_group_txn(
                        txn, room_id, plan.current_state.state
                    )
                txn.execute(
                    "UPDATE rooms SET current_state_group = ? WHERE room_id = ?",
                    (current_group, room_id),
                )
            elif plan.backfill_position is not None:
                # get_state_ids_at reads room_state_group: for history, the state after it.
                current_group = group_after
            else:
                row = txn.select_one(
                    "SELECT current_state_group FROM rooms WHERE room_id = ?", (room_id,)
                )
                current_group = int(row[0]) if row and row[0] is not None else group_after
            txn.execute(
                "INSERT INTO event_state (event_id, room_id, state_group, state_group_before,"
                " room_state_group) VALUES (?, ?, ?, ?, ?)",
                (event.event_id, room_id, group_after, group_before, current_group),
            )

        if plan.in_timeline:
            for prev in plan.remove_extremities:
                txn.execute(
                    "DELETE FROM forward_extremities WHERE room_id = ? AND event_id = ?",
                    (room_id, prev),
                )
            if plan.add_extremity:
                txn.execute(
                    "INSERT INTO forward_extremities (room_id, event_id) VALUES (?, ?)",
                    (room_id, event.event_id),
                )
        # Relations and the search index (ruma.storage.event_index), in this transaction.
        index_event_txn(
            txn,
            event,
            position,
            redacts=plan.redact_target if plan.rejected_reason is None else None,
            redacted=plan.redacted_by is not None,
        )
        if plan.current_state is not None and position is not None:
            self._apply_current_state_txn(txn, plan, position)
        elif plan.outlier and event.type == "m.room.member" and event.state_key is not None:
            self._outlier_membership_txn(txn, event)
        return PersistResult(event.event_id, position, group_before, group_after, current_group)

    def _insert_event_txn(self, txn: Txn, plan: PersistPlan, position: int | None) -> None:
        event = plan.event
        room_id = event.room_id
        txn.execute(
            "INSERT INTO events (event_id, room_id, stream_position, depth, type, state_key,"
            " sender, origin_server_ts, json, rejected_reason, outlier, redacted_by,"
            " soft_failed, replaces_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.event_id,
                room_id,
                position,
                event.depth,
                event.type,
                event.state_key,
                event.sender,
                event.origin_server_ts,
                encode_json(event.pdu()).decode("utf-8"),
                plan.rejected_reason,
                plan.outlier,
                plan.redacted_by,
                plan.soft_failed,
                plan.replaces_state,
            ),
        )
        txn.executemany(
            "INSERT INTO event_edges (event_id, prev_event_id, room_id) VALUES (?, ?, ?)",
            [(event.event_id, p, room_id) for p in dict.fromkeys(event.prev_event_ids)],
        )

    def _state_group_txn(self, txn: Txn, room_id: str, state: StateAt) -> int:
        if state.group is not None and not state.changes:
            return state.group
        return self.state.store_group_txn(txn, room_id, state.group, state.changes)

    def _apply_current_state_txn(self, txn: Txn, plan: PersistPlan, position: int) -> None:
        assert plan.current_state is not None
        room_id = plan.event.room_id
        for (etype, skey), event_id in plan.current_state.changes.items():
            txn.execute(
                "DELETE FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?",
                (room_id, etype, skey),
            )
            if event_id is not None:
                txn.execute(
                    "INSERT INTO current_state (room_id, type, state_key, event_id)"
                    " VALUES (?, ?, ?, ?)",
                    (room_id, etype, skey, event_id),
                )
            if etype != "m.room.member" or not self.is_local_user(skey) or event_id is None:
                continue
            if event_id == plan.event.event_id:
                membership = plan.event.membership
            else:
                row = txn.select_one("SELECT json FROM events WHERE event_id = ?", (event_id,))
                membership = (
                    json.loads(row[0]).get("content", {}).get("membership") if row else None
                )
            if not isinstance(membership, str):
                continue
            self._set_local_membership_txn(txn, skey, room_id, membership, event_id, position)

    def _set_local_membership_txn(
        self, txn: Txn, user_id: str, room_id: str, membership: str, event_id: str, position: int
    ) -> None:
        txn.execute(
            "DELETE FROM local_memberships WHERE user_id = ? AND room_id = ?", (user_id, room_id)
        )
        txn.execute(
            "INSERT INTO local_memberships (user_id, room_id, membership, event_id,"
            " stream_position, forgotten) VALUES (?, ?, ?, ?, ?, ?)",
            (user_id, room_id, membership, event_id, position, False),
        )
        txn.execute(
            "INSERT INTO local_membership_changes (stream_position, user_id, room_id,"
            " membership, event_id) VALUES (?, ?, ?, ?, ?)",
            (position, user_id, room_id, membership, event_id),
        )

    def _outlier_membership_txn(self, txn: Txn, event: Event) -> None:
        """An out-of-room membership of a local user (an invite from a room we are not in,
        or the rejection of one): it is the user's membership unless we are in the room
        (one of our users is joined), where the room's timeline brings it. State we hold
        from before our users left does not count: nothing brings us news of that room."""
        user_id = event.state_key
        membership = event.membership
        if user_id is None or membership is None or not self.is_local_user(user_id):
            return
        in_room = txn.select_one(
            "SELECT 1 FROM local_memberships WHERE room_id = ? AND membership = ?",
            (event.room_id, "join"),
        )
        if in_room is not None:
            return
        position = txn.next_stream_position(
            "outlier_membership", room_id=event.room_id, user_id=user_id, ref=event.event_id
        )
        self._set_local_membership_txn(
            txn, user_id, event.room_id, membership, event.event_id, position
        )


def _meta(row: tuple[Any, ...]) -> EventMeta:
    return EventMeta(
        event_id=row[0],
        room_id=row[1],
        stream_position=int(row[2]) if row[2] is not None else None,
        depth=int(row[3]),
        outlier=bool(row[4]),
        rejected_reason=row[5],
        soft_failed=bool(row[6]),
        redacted_by=row[7],
    )
