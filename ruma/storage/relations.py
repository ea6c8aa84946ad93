"""Event relations (``m.relates_to``): the ``event_relations`` table and its reads.

Rows are written by :func:`index_relation_txn` inside the transaction that persists a
timeline event (called from :mod:`ruma.storage.event_index`), and removed by
:func:`unindex_relation_txn` when the relating event is redacted, so a redacted edit,
thread reply or reference stops counting at once. Rejected, soft-failed and outlier events
are never indexed (they have no stream position).

Ranges of stream positions are ``from_pos < position <= to_pos`` as everywhere else.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruma.protocol.events import Event
from ruma.storage.database import Database, Txn

__all__ = [
    "Relation",
    "RelationStore",
    "ThreadSummary",
    "index_relation_txn",
    "relation_of",
    "unindex_relation_txn",
]


@dataclass(frozen=True, slots=True)
class Relation:
    """One relating event: ``event_id`` relates to ``relates_to_id`` with ``rel_type``."""

    event_id: str
    relates_to_id: str
    rel_type: str
    aggregation_key: str | None
    room_id: str
    sender: str
    type: str
    stream_position: int
    origin_server_ts: int


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """A thread root's replies: how many, the newest, and who took part."""

    root_id: str
    count: int
    latest_event_id: str
    latest_position: int
    participants: frozenset[str]


def relation_of(content: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
    """``(rel_type, event_id, key)`` of ``content["m.relates_to"]``, if it is a relation."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, Mapping):
        return None
    rel_type = rel.get("rel_type")
    parent = rel.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent, str) or not parent:
        return None
    key = rel.get("key")
    return rel_type, parent, key if isinstance(key, str) else None


def index_relation_txn(txn: Txn, event: Event, position: int) -> None:
    """Record ``event``'s relation, if it has one (idempotent)."""
    found = relation_of(event.content)
    if found is None:
        return
    rel_type, parent, key = found
    if parent == event.event_id:
        return
    txn.execute(
        "INSERT INTO event_relations (event_id, relates_to_id, rel_type, aggregation_key,"
        " room_id, sender, type, stream_position, origin_server_ts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
        (
            event.event_id,
            parent,
            rel_type,
            key,
            event.room_id,
            event.sender,
            event.type,
            position,
            event.origin_server_ts,
        ),
    )


def unindex_relation_txn(txn: Txn, event_id: str) -> None:
    """Forget the relation of a redacted event."""
    txn.execute("DELETE FROM event_relations WHERE event_id = ?", (event_id,))


_COLUMNS = (
    "event_id, relates_to_id, rel_type, aggregation_key, room_id, sender, type,"
    " stream_position, origin_server_ts"
)


def _relation(row: Sequence[Any]) -> Relation:
    return Relation(
        event_id=row[0],
        relates_to_id=row[1],
        rel_type=row[2],
        aggregation_key=row[3],
        room_id=row[4],
        sender=row[5],
        type=row[6],
        stream_position=int(row[7]),
        origin_server_ts=int(row[8]),
    )


def _in(values: Sequence[str]) -> str:
    return ",".join("?" for _ in values)


class RelationStore:
    """Reads of ``event_relations``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_relations(
        self,
        room_id: str,
        parent_ids: Collection[str],
        *,
        rel_type: str | None = None,
        event_type: str | None = None,
        from_pos: int,
        to_pos: int,
        limit: int,
        backwards: bool,
    ) -> list[Relation]:
        """Relations to any of ``parent_ids`` in ``(from_pos, to_pos]``: the newest
        ``limit`` newest first if ``backwards``, else the oldest ``limit`` oldest first."""
        parents = sorted(set(parent_ids))
        if not parents or limit <= 0:
            return []
        order = "DESC" if backwards else "ASC"

        def txn_fn(txn: Txn) -> list[Relation]:
            sql = (
                f"SELECT {_COLUMNS} FROM event_relations WHERE room_id = ?"
                f" AND relates_to_id IN ({_in(parents)})"
                " AND stream_position > ? AND stream_position <= ?"
            )
            params: list[Any] = [room_id, *parents, from_pos, to_pos]
            if rel_type is not None:
                sql += " AND rel_type = ?"
                params.append(rel_type)
            if event_type is not None:
                sql += " AND type = ?"
                params.append(event_type)
            sql += f" ORDER BY stream_position {order} LIMIT ?"
            params.append(limit)
            return [_relation(r) for r in txn.select(sql, params)]

        return await self._db.run("get_relations", txn_fn)

    async def get_children(self, parent_ids: Collection[str]) -> list[Relation]:
        """Every relation to any of ``parent_ids`` (for recursion), oldest first."""
        parents = sorted(set(parent_ids))
        if not parents:
            return []

        def txn_fn(txn: Txn) -> list[Relation]:
            out: list[Relation] = []
            for i in range(0, len(parents), 500):
                chunk = parents[i : i + 500]
                out.extend(
                    _relation(r)
                    for r in txn.select(
                        f"SELECT {_COLUMNS} FROM event_relations"
                        f" WHERE relates_to_id IN ({_in(chunk)})",
                        chunk,
                    )
                )
            out.sort(key=lambda r: r.stream_position)
            return out

        return await self._db.run("get_relation_children", txn_fn)

    async def get_relation_types(self, parent_ids: Iterable[str]) -> set[tuple[str, str]]:
        """``(parent_id, rel_type)`` pairs among ``parent_ids`` that have any relation.

        The cheap first look of bundled aggregations: most events have none.
        """
        parents = sorted(set(parent_ids))
        if not parents:
            return set()

        def txn_fn(txn: Txn) -> set[tuple[str, str]]:
            out: set[tuple[str, str]] = set()
            for i in range(0, len(parents), 500):
                chunk = parents[i : i + 500]
                out.update(
                    (r[0], r[1])
                    for r in txn.select(
                        "SELECT DISTINCT relates_to_id, rel_type FROM event_relations"
                        f" WHERE relates_to_id IN ({_in(chunk)})",
                        chunk,
                    )
                )
            return out

        return await self._db.run("get_relation_types", txn_fn)

    async def get_thread_summaries(self, root_ids: Iterable[str]) -> dict[str, ThreadSummary]:
        roots = sorted(set(root_ids))
        if not roots:
            return {}

        def txn_fn(txn: Txn) -> dict[str, ThreadSummary]:
            out: dict[str, ThreadSummary] = {}
            for root in roots:
                rows = txn.select(
                    "SELECT event_id, sender, stream_position FROM event_relations"
                    " WHERE relates_to_id = ? AND rel_type = ? ORDER BY stream_position DESC",
                    (root, "m.thread"),
                )
                if not rows:
                    continue
                out[root] = ThreadSummary(
                    root_id=root,
                    count=len(rows),
                    latest_event_id=rows[0][0],
                    latest_position=int(rows[0][2]),
                    participants=frozenset(r[1] for r in rows),
                )
            return out

        return await self._db.run("get_thread_summaries", txn_fn)

    async def get_replacements(self, parent_ids: Iterable[str]) -> dict[str, list[Relation]]:
        """``m.replace`` relations per parent, oldest first."""
        parents = sorted(set(parent_ids))
        if not parents:
            return {}

        def txn_fn(txn: Txn) -> dict[str, list[Relation]]:
            out: dict[str, list[Relation]] = {}
            for i in range(0, len(parents), 500):
                chunk = parents[i : i + 500]
                for r in txn.select(
                    f"SELECT {_COLUMNS} FROM event_relations WHERE rel_type = ?"
                    f" AND relates_to_id IN ({_in(chunk)}) ORDER BY stream_position",
                    ["m.replace", *chunk],
                ):
                    rel = _relation(r)
                    out.setdefault(rel.relates_to_id, []).append(rel)
            return out

        return await self._db.run("get_replacements", txn_fn)

    async def get_references(self, parent_ids: Iterable[str]) -> dict[str, list[str]]:
        """Event IDs of ``m.reference`` relations per parent, oldest first."""
        parents = sorted(set(parent_ids))
        if not parents:
            return {}

        def txn_fn(txn: Txn) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for i in range(0, len(parents), 500):
                chunk = parents[i : i + 500]
                for parent, event_id in txn.select(
                    "SELECT relates_to_id, event_id FROM event_relations WHERE rel_type = ?"
                    f" AND relates_to_id IN ({_in(chunk)}) ORDER BY stream_position",
                    ["m.reference", *chunk],
                ):
                    out.setdefault(parent, []).append(event_id)
            return out

        return await self._db.run("get_references", txn_fn)

    async def get_threads(
        self,
        room_id: str,
        *,
        before: int | None,
        limit: int,
        participant: str | None = None,
    ) -> list[tuple[str, int]]:
        """Thread roots of the room with their latest reply's position, newest activity
        first, only those whose latest reply is below ``before``; with ``participant``,
        only threads that user replied in (the caller adds threads they started)."""

        def txn_fn(txn: Txn) -> list[tuple[str, int]]:
            sql = (
                "SELECT relates_to_id, MAX(stream_position) FROM event_relations"
                " WHERE room_id = ? AND rel_type = ?"
            )
            params: list[Any] = [room_id, "m.thread"]
            if participant is not None:
                sql += (
                    " AND relates_to_id IN (SELECT relates_to_id FROM event_relations"
                    " WHERE room_id = ? AND rel_type = ? AND sender = ?"
                    " UNION SELECT event_id FROM events WHERE room_id = ? AND sender = ?)"
                )
                params += [room_id, "m.thread", participant, room_id, participant]
            sql += " GROUP BY relates_to_id"
            if before is not None:
                sql += " HAVING MAX(stream_position) < ?"
                params.append(before)
            sql += " ORDER BY MAX(stream_position) DESC LIMIT ?"
            params.append(limit)
            return [(r[0], int(r[1])) for r in txn.select(sql, params)]

        return await self._db.run("get_threads", txn_fn)

    async def get_relation(self, event_id: str) -> Relation | None:
        def txn_fn(txn: Txn) -> Relation | None:
            row = txn.select_one(
                f"SELECT {_COLUMNS} FROM event_relations WHERE event_id = ?", (event_id,)
            )
            return _relation(row) if row is not None else None

        return await self._db.run("get_relation", txn_fn)
