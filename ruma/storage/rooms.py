"""Room aliases of this server and the room directory's visibility flag."""

from __future__ import annotations

from dataclasses import dataclass

from ruma.storage.database import Database, Txn

__all__ = ["AliasEntry", "RoomStore"]


@dataclass(frozen=True, slots=True)
class AliasEntry:
    room_alias: str
    room_id: str
    creator: str


class RoomStore:
    """SQL for ``room_aliases`` and ``rooms.is_public``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_alias(self, room_alias: str, room_id: str, creator: str) -> bool:
        """Add an alias; False if it is already taken."""

        def txn_fn(txn: Txn) -> bool:
            if txn.select_one(
                "SELECT 1 FROM room_aliases WHERE room_alias = ?", (room_alias,)
            ):
                return False
            txn.execute(
                "INSERT INTO room_aliases (room_alias, room_id, creator) VALUES (?, ?, ?)",
                (room_alias, room_id, creator),
            )
            return True

        return await self._db.run("create_alias", txn_fn)

    async def get_alias(self, room_alias: str) -> AliasEntry | None:
        def txn_fn(txn: Txn) -> AliasEntry | None:
            row = txn.select_one(
                "SELECT room_alias, room_id, creator FROM room_aliases WHERE room_alias = ?",
                (room_alias,),
            )
            return AliasEntry(row[0], row[1], row[2]) if row else None

        return await self._db.run("get_alias", txn_fn)

    async def delete_alias(self, room_alias: str) -> bool:
        def txn_fn(txn: Txn) -> bool:
            txn.execute("DELETE FROM room_aliases WHERE room_alias = ?", (room_alias,))
            return txn.rowcount > 0

        return await self._db.run("delete_alias", txn_fn)

    async def get_aliases_for_room(self, room_id: str) -> list[str]:
        def txn_fn(txn: Txn) -> list[str]:
            return [
                r[0]
                for r in txn.select(
                    "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY room_alias",
                    (room_id,),
                )
            ]

        return await self._db.run("get_aliases_for_room", txn_fn)

    async def set_room_public(self, room_id: str, is_public: bool) -> bool:
        """Set the room's directory visibility; False if the room is unknown."""

        def txn_fn(txn: Txn) -> bool:
            txn.execute("UPDATE rooms SET is_public = ? WHERE room_id = ?", (is_public, room_id))
            return txn.rowcount > 0

        return await self._db.run("set_room_public", txn_fn)

    async def is_room_public(self, room_id: str) -> bool | None:
        def txn_fn(txn: Txn) -> bool | None:
            row = txn.select_one("SELECT is_public FROM rooms WHERE room_id = ?", (room_id,))
            return bool(row[0]) if row else None

        return await self._db.run("get_is_room_public", txn_fn)

    async def get_public_room_ids(self) -> list[str]:
        def txn_fn(txn: Txn) -> list[str]:
            return [
                r[0]
                for r in txn.select(
                    "SELECT room_id FROM rooms WHERE is_public = ? ORDER BY room_id", (True,)
                )
            ]

        return await self._db.run("get_public_room_ids", txn_fn)
