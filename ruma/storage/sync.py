"""Stream queries for sync that belong to no single concern, and the typing stream rows.

Typing notifications are ephemeral: who is typing lives in memory only (see
``ruma.handlers.typing``). Each change still takes a position in the ``stream`` table (kind
``typing``, ``room_id`` set) so that one stream position orders everything, sync tokens stay a
single number that survives restarts, and the bus wakes long-polling syncs, the federation
sender and appservices for typing exactly as for everything else.
"""

from __future__ import annotations

from collections.abc import Collection

from ruma.storage.database import Database, Txn


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
