"""Presence of local users: the current state per user, each change taking a position."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ruma.storage.database import Database, Txn


@dataclass(frozen=True, slots=True)
class PresenceRow:
    user_id: str
    state: str  # online, unavailable, offline
    status_msg: str | None
    last_active_ts: int  # ms since the epoch; 0 = never
    currently_active: bool
    stream_pos: int


_COLS = "user_id, state, status_msg, last_active_ts, currently_active, stream_pos"


def _row(r: tuple[object, ...]) -> PresenceRow:
    return PresenceRow(
        str(r[0]),
        str(r[1]),
        None if r[2] is None else str(r[2]),
        int(r[3]),  # type: ignore[call-overload]
        bool(r[4]),
        int(r[5]),  # type: ignore[call-overload]
    )


class PresenceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set_presence(
        self,
        user_id: str,
        state: str,
        status_msg: str | None,
        last_active_ts: int,
        currently_active: bool,
    ) -> PresenceRow:
        """Store a user's presence and take a stream position (kind ``presence``)."""

        def txn_fn(txn: Txn) -> PresenceRow:
            pos = txn.next_stream_position("presence", user_id=user_id)
            txn.execute(
                "UPDATE presence SET state = ?, status_msg = ?, last_active_ts = ?,"
                " currently_active = ?, stream_pos = ? WHERE user_id = ?",
                (state, status_msg, last_active_ts, currently_active, pos, user_id),
            )
            if txn.rowcount == 0:
                txn.execute(
                    f"INSERT INTO presence ({_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (user_id, state, status_msg, last_active_ts, currently_active, pos),
                )
            return PresenceRow(user_id, state, status_msg, last_active_ts, currently_active, pos)

        return await self._db.run("set_presence", txn_fn)

    async def get_presence(self, user_id: str) -> PresenceRow | None:
        def txn_fn(txn: Txn) -> PresenceRow | None:
            r = txn.select_one(f"SELECT {_COLS} FROM presence WHERE user_id = ?", (user_id,))
            return _row(r) if r is not None else None

        return await self._db.run("get_presence", txn_fn)

    async def get_presence_changes(
        self, user_ids: Collection[str], from_pos: int, to_pos: int
    ) -> list[PresenceRow]:
        """Presence of ``user_ids`` that changed in ``(from_pos, to_pos]``."""
        users = list(user_ids)
        if not users:
            return []

        def txn_fn(txn: Txn) -> list[PresenceRow]:
            out: list[PresenceRow] = []
            for i in range(0, len(users), 500):
                chunk = users[i : i + 500]
                rows = txn.select(
                    f"SELECT {_COLS} FROM presence WHERE user_id IN ({','.join('?' * len(chunk))})"
                    " AND stream_pos > ? AND stream_pos <= ? ORDER BY stream_pos",
                    (*chunk, from_pos, to_pos),
                )
                out.extend(_row(r) for r in rows)
            return out

        return await self._db.run("get_presence_changes", txn_fn)

    async def get_all_changes(self, from_pos: int, to_pos: int) -> list[PresenceRow]:
        """Presence of every user that changed in ``(from_pos, to_pos]``."""

        def txn_fn(txn: Txn) -> list[PresenceRow]:
            rows = txn.select(
                f"SELECT {_COLS} FROM presence WHERE stream_pos > ? AND stream_pos <= ?"
                " ORDER BY stream_pos",
                (from_pos, to_pos),
            )
            return [_row(r) for r in rows]

        return await self._db.run("get_all_presence_changes", txn_fn)

    async def get_active_presence(self) -> list[PresenceRow]:
        """Everyone not offline (the presence timers' working set after a restart)."""

        def txn_fn(txn: Txn) -> list[PresenceRow]:
            rows = txn.select(f"SELECT {_COLS} FROM presence WHERE state != 'offline'")
            return [_row(r) for r in rows]

        return await self._db.run("get_active_presence", txn_fn)
