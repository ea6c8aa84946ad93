"""Reading the ``stream`` table (the bus's durable log) and durable subscribers' positions."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from ruma.storage.database import Database, Txn


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One row of the durable log: something that happened at ``position``."""

    position: int
    kind: str
    room_id: str | None
    user_id: str | None
    ref: str | None


#: How many recent rows :class:`BusStore` keeps in memory for its readers.
ROW_WINDOW = 2_000


class BusStore:
    """SQL for the event bus: the log and where each durable subscriber has got to.

    Every subscriber of the bus reads the same fresh rows right after each advance, so the
    store keeps a window of recent rows in memory: ``_rows`` are ALL rows with
    ``_lo < position <= _hi``. Rows at or below a settled position never change (positions
    are only announced once everything below them has committed; rolled-back positions stay
    gaps), so the window needs no invalidation; it only grows at the top and is trimmed at
    the bottom.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._rows: list[StreamRow] = []
        self._lo = 0
        self._hi = 0
        self._extending: Deferred[list[StreamRow]] | None = None

    async def read_stream(self, from_pos: int, to_pos: int, limit: int) -> list[StreamRow]:
        """Rows with ``from_pos < position <= to_pos``, oldest first, at most ``limit``.

        ``to_pos`` must be settled (at most the database's current position), as the bus's
        positions are: the rows up to it are then final and may be kept in the window.
        """
        if to_pos <= from_pos or limit <= 0:
            return []
        while self._lo <= from_pos <= self._hi:
            if to_pos <= self._hi:
                return self._window(from_pos, to_pos, limit)
            window = self._window(from_pos, to_pos, limit)
            if len(window) == limit:
                return window
            if self._extending is not None:
                # Another reader is fetching the rows after the window: share its read.
                await settled(self._extending)
                continue
            hi = self._hi
            d = Deferred.fromCoroutine(self._read(hi, to_pos, limit))
            self._extending = d
            try:
                fresh = await d
            finally:
                self._extending = None
            if hi != self._hi:  # the window was replaced meanwhile
                break
            self._rows.extend(fresh)
            self._hi = to_pos if len(fresh) < limit else fresh[-1].position
            self._trim()
        rows = await self._read(from_pos, to_pos, limit)
        if (from_pos >= self._hi or not self._rows) and self._extending is None:
            # Replace the window with this read (a subscriber far ahead, or a cold start).
            self._rows = list(rows)
            self._lo = from_pos
            self._hi = to_pos if len(rows) < limit else rows[-1].position
            self._trim()
        return rows

    def _window(self, from_pos: int, to_pos: int, limit: int) -> list[StreamRow]:
        i = bisect.bisect_right(self._rows, from_pos, key=_position)
        out: list[StreamRow] = []
        for row in self._rows[i:]:
            if row.position > to_pos or len(out) >= limit:
                break
            out.append(row)
        return out

    def _trim(self) -> None:
        excess = len(self._rows) - ROW_WINDOW
        if excess > 0:
            self._lo = self._rows[excess - 1].position
            del self._rows[:excess]

    async def _read(self, from_pos: int, to_pos: int, limit: int) -> list[StreamRow]:
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


def _position(row: StreamRow) -> int:
    return row.position


async def settled(d: Deferred[Any]) -> None:
    """Wait until ``d`` has fired, leaving its result to its own awaiter (the bus shares
    this: several of its waits are on Deferreds that others await too)."""
    done: Deferred[None] = Deferred()

    def fire(result: Any) -> Any:
        done.callback(None)
        return result

    d.addBoth(fire)
    await done
