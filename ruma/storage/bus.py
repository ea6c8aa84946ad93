"""Reading the ``stream`` table (the bus's durable log) and durable subscribers' positions."""

from __future__ import annotations

from dataclasses import dataclass

from ruma.storage.database import Database, Txn


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One row of the durable log: something that happened at ``position``."""

    position: int
    kind: str
    room_id: str | None
    user_id: str | None
    ref: str | None


class BusStore:
    """SQL for the event bus: the log and where each durable subscriber has got to."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def read_stream(self, from_pos: int, to_pos: int, limit: int) -> list[StreamRow]:
        """Rows with ``from_pos < position <= to_pos``, oldest first, at most ``limit``."""

        def txn_fn(txn: Txn) -> list[StreamRow]:
            rows = txn.select(
                "SELECT position, kind, room_id, user_id, ref FROM stream"
                " WHERE position > ? AND position <= ? ORDER BY position LIMIT ?",
                (from_pos, to_pos, limit),
            )
            return [StreamRow(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

        return await self._db.run("read_stream", txn_fn)

    async def get_subscriber_position(self, name: str) -> int | None:
        """The last position ``name`` has fully handled, or None if it never ran."""

        def txn_fn(txn: Txn) -> int | None:
            row = txn.select_one(
                "SELECT position FROM bus_subscriber_positions WHERE name = ?", (name,)
            )
            return int(row[0]) if row is not None else None

        return await self._db.run("get_subscriber_position", txn_fn)

    async def set_subscriber_position(self, name: str, position: int) -> None:
        """Record that ``name`` has fully handled everything up to ``position``."""

        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "UPDATE bus_subscriber_positions SET position = ? WHERE name = ?",
                (position, name),
            )
            if txn.rowcount == 0:
                txn.execute(
                    "INSERT INTO bus_subscriber_positions (name, position) VALUES (?, ?)",
                    (name, position),
                )

        await self._db.run("set_subscriber_position", txn_fn)
