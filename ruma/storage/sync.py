"""Stream queries for sync that belong to no single concern, and the typing stream rows.

Typing notifications are ephemeral: who is typing lives in memory only (see
``ruma.handlers.typing``). Each change still takes a position in the ``stream`` table (kind
``typing``, ``room_id`` set) so that one stream position orders everything, sync tokens stay a
single number that survives restarts, and the bus wakes long-polling syncs, the federation
sender and appservices for typing exactly as for everything else.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from ruma.protocol.events import StateKey
from ruma.storage.database import Database, Txn
from ruma.storage.state import StateStore

# Rows per IN (...) list: well under SQLite's bound-parameter limit.
_CHUNK = 500


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SyncStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_typing_change(self, room_id: str) -> int:
        """Take a stream position for a change of who is typing in ``room_id``."""

        def txn_fn(txn: Txn) -> int:
            return txn.next_stream_position("typing", room_id=room_id)

        return await self._db.run("record_typing_change", txn_fn)

    async def get_rooms_with_changes(
        self, kind: str, room_ids: Collection[str], from_pos: int, to_pos: int
    ) -> set[str]:
        """The rooms among ``room_ids`` with a ``kind`` stream row in ``(from_pos, to_pos]``."""
        return (await self.get_rooms_with_changes_of_kinds([kind], room_ids, from_pos, to_pos))[
            kind
        ]

    async def get_rooms_with_changes_of_kinds(
        self, kinds: Collection[str], room_ids: Collection[str], from_pos: int, to_pos: int
    ) -> dict[str, set[str]]:
        """:meth:`get_rooms_with_changes` for several kinds in one read: kind -> rooms."""
        rooms = list(room_ids)
        wanted = list(dict.fromkeys(kinds))
        out: dict[str, set[str]] = {k: set() for k in wanted}
        if not rooms or not wanted:
            return out

        def txn_fn(txn: Txn) -> dict[str, set[str]]:
            for i in range(0, len(rooms), 500):
                chunk = rooms[i : i + 500]
                rows = txn.select(
                    "SELECT DISTINCT kind, room_id FROM stream"
                    f" WHERE kind IN ({','.join('?' * len(wanted))}) AND position > ?"
                    f" AND position <= ? AND room_id IN ({','.join('?' * len(chunk))})",
                    (*wanted, from_pos, to_pos, *chunk),
                )
                for kind, room_id in rows:
                    out[str(kind)].add(str(room_id))
            return out

        return await self._db.run("get_rooms_with_changes", txn_fn)

    # -- batched reads for many rooms at once ----------------------------------------------
    #
    # An initial sync needs the same few things of every room the user is in. Read one at a
    # time, each is a transaction (a thread hop); these read them for all rooms in one.

    async def get_timeline_pages(
        self, ranges: Sequence[tuple[str, int, int]], limit: int
    ) -> dict[str, list[tuple[str, int]]]:
        """For each ``(room_id, after, upto)``: the newest ``limit`` timeline events with
        ``after < position <= upto`` as ``(event_id, position)``, newest first (as
        ``EventStore.get_room_events(backwards=True)`` pages)."""

        def txn_fn(txn: Txn) -> dict[str, list[tuple[str, int]]]:
            out: dict[str, list[tuple[str, int]]] = {}
            for room_id, after, upto in ranges:
                rows = txn.select(
                    "SELECT event_id, stream_position FROM events WHERE room_id = ?"
                    " AND stream_position > ? AND stream_position <= ?"
                    " ORDER BY stream_position DESC LIMIT ?",
                    (room_id, after, upto, limit),
                )
                out[room_id] = [(str(r[0]), int(r[1])) for r in rows]
            return out

        if not ranges:
            return {}
        return await self._db.run("get_timeline_pages", txn_fn)

    async def get_state_groups_at(
        self, points: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """For each ``(room_id, position)``: the state group of the room's state after its last
        timeline event at or before ``position`` (before its first event if there is none),
        as ``EventStore.get_state_ids_at`` reads it; rooms with no events are left out."""

        def txn_fn(txn: Txn) -> dict[tuple[str, int], int]:
            out: dict[tuple[str, int], int] = {}
            for room_id, pos in points:
                row = txn.select_one(
                    "SELECT s.room_state_group FROM events e JOIN event_state s"
                    " ON s.event_id = e.event_id WHERE e.room_id = ? AND e.stream_position <= ?"
                    " ORDER BY e.stream_position DESC LIMIT 1",
                    (room_id, pos),
                )
                if row is None:
                    row = txn.select_one(
                        "SELECT s.state_group_before FROM events e JOIN event_state s"
                        " ON s.event_id = e.event_id WHERE e.room_id = ? AND e.stream_position > ?"
                        " ORDER BY e.stream_position ASC LIMIT 1",
                        (room_id, pos),
                    )
                if row is not None:
                    out[(room_id, pos)] = int(row[0])
            return out

        if not points:
            return {}
        return await self._db.run("get_state_groups_at", txn_fn)

    async def load_state_groups(
        self, state: StateStore, groups: Collection[int]
    ) -> dict[int, Mapping[StateKey, str]]:
        """The full state of each of ``groups``, in one transaction."""

        def txn_fn(txn: Txn) -> dict[int, Mapping[StateKey, str]]:
            return {g: state.load_group_txn(txn, g) for g in groups}

        if not groups:
            return {}
        return await self._db.run("load_state_groups", txn_fn)

    async def load_state_group_keys(
        self, state: StateStore, wanted: Mapping[int, Collection[StateKey]]
    ) -> dict[int, dict[StateKey, str]]:
        """Only the given keys of each state group, in one transaction."""

        def txn_fn(txn: Txn) -> dict[int, dict[StateKey, str]]:
            return {g: state.load_group_keys_txn(txn, g, keys) for g, keys in wanted.items()}

        if not wanted:
            return {}
        return await self._db.run("load_state_group_keys", txn_fn)

    async def get_current_member_ids(
        self, room_ids: Collection[str]
    ) -> dict[str, dict[str, tuple[str, int]]]:
        """room -> user -> (event ID, stream position or 0) of each ``m.room.member`` event in
        the rooms' current state."""
        rooms = list(room_ids)

        def txn_fn(txn: Txn) -> dict[str, dict[str, tuple[str, int]]]:
            out: dict[str, dict[str, tuple[str, int]]] = {r: {} for r in rooms}
            for chunk in _chunks(rooms):
                for room_id, user_id, event_id, pos in txn.select(
                    "SELECT c.room_id, c.state_key, c.event_id, e.stream_position"
                    " FROM current_state c LEFT JOIN events e ON e.event_id = c.event_id"
                    f" WHERE c.type = ? AND c.room_id IN ({_marks(len(chunk))})",
                    ("m.room.member", *chunk),
                ):
                    out[str(room_id)][str(user_id)] = (str(event_id), int(pos or 0))
            return out

        if not rooms:
            return {}
        return await self._db.run("get_current_member_ids", txn_fn)

    async def get_member_event_ids(
        self, room_ids: Collection[str], user_ids: Collection[str]
    ) -> list[tuple[str, str, str]]:
        """``(room, user, event ID)`` of the current ``m.room.member`` event of each of
        ``user_ids`` in each of ``room_ids`` where there is one."""
        rooms = set(room_ids)
        users = list(user_ids)

        def txn_fn(txn: Txn) -> list[tuple[str, str, str]]:
            out: list[tuple[str, str, str]] = []
            for chunk in _chunks(users):
                for room_id, user_id, event_id in txn.select(
                    "SELECT room_id, state_key, event_id FROM current_state WHERE type = ?"
                    f" AND state_key IN ({_marks(len(chunk))})",
                    ("m.room.member", *chunk),
                ):
                    if room_id in rooms:
                        out.append((str(room_id), str(user_id), str(event_id)))
            return out

        if not rooms or not users:
            return []
        return await self._db.run("get_member_event_ids", txn_fn)

    async def get_current_state_of_key(
        self, room_ids: Collection[str], etype: str, state_key: str
    ) -> dict[str, str]:
        """room -> event ID of ``(etype, state_key)`` in the current state of each room."""
        rooms = list(room_ids)

        def txn_fn(txn: Txn) -> dict[str, str]:
            out: dict[str, str] = {}
            for chunk in _chunks(rooms):
                for room_id, event_id in txn.select(
                    "SELECT room_id, event_id FROM current_state WHERE type = ?"
                    f" AND state_key = ? AND room_id IN ({_marks(len(chunk))})",
                    (etype, state_key, *chunk),
                ):
                    out[str(room_id)] = str(event_id)
            return out

        if not rooms:
            return {}
        return await self._db.run("get_current_state_of_key", txn_fn)

    async def get_event_stamps(
        self, event_ids: Collection[str]
    ) -> dict[str, tuple[str | None, str | None, bool]]:
        """event -> (redacted_by, replaces_state, rejected) for the events we hold: what,
        besides the immutable PDU, decides how an event is served (``ruma.sync.event_cache``)."""
        ids = list(event_ids)

        def txn_fn(txn: Txn) -> dict[str, tuple[str | None, str | None, bool]]:
            out: dict[str, tuple[str | None, str | None, bool]] = {}
            for chunk in _chunks(ids):
                for event_id, redacted_by, replaces, rejected in txn.select(
                    "SELECT event_id, redacted_by, replaces_state, rejected_reason FROM events"
                    f" WHERE event_id IN ({_marks(len(chunk))})",
                    chunk,
                ):
                    out[str(event_id)] = (redacted_by, replaces, rejected is not None)
            return out

        if not ids:
            return {}
        return await self._db.run("get_event_stamps", txn_fn)

    async def get_event_json(self, event_ids: Collection[str]) -> dict[str, tuple[str, str]]:
        """event -> (room, its stored PDU JSON text), rejected events and outliers too."""
        ids = list(event_ids)

        def txn_fn(txn: Txn) -> dict[str, tuple[str, str]]:
            out: dict[str, tuple[str, str]] = {}
            for chunk in _chunks(ids):
                for event_id, room_id, text in txn.select(
                    "SELECT event_id, room_id, json FROM events"
                    f" WHERE event_id IN ({_marks(len(chunk))})",
                    chunk,
                ):
                    out[str(event_id)] = (str(room_id), str(text))
            return out

        if not ids:
            return {}
        return await self._db.run("get_event_json", txn_fn)
