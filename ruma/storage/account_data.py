"""Account data (global and per room), each change taking a stream position."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ruma.storage.database import Database, Txn

GLOBAL = ""  # the room_id column for global account data


@dataclass(frozen=True, slots=True)
class AccountDataChanges:
    """Account data of one user: ``global_data[type]`` and ``rooms[room_id][type]``."""

    global_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    rooms: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


class AccountDataStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set_account_data(
        self, user_id: str, room_id: str | None, data_type: str, content: Mapping[str, Any]
    ) -> int:
        """Replace one account data item; returns its new stream position."""
        encoded = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        room = room_id if room_id is not None else GLOBAL

        def txn_fn(txn: Txn) -> int:
            pos = txn.next_stream_position(
                "account_data", room_id=room_id, user_id=user_id, ref=data_type
            )
            txn.execute(
                "UPDATE account_data SET content = ?, stream_pos = ?"
                " WHERE user_id = ? AND room_id = ? AND data_type = ?",
                (encoded, pos, user_id, room, data_type),
            )
            if txn.rowcount == 0:
                txn.execute(
                    "INSERT INTO account_data (user_id, room_id, data_type, content, stream_pos)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (user_id, room, data_type, encoded, pos),
                )
            return pos

        return await self._db.run("set_account_data", txn_fn)

    async def get_account_data(
        self, user_id: str, room_id: str | None, data_type: str
    ) -> dict[str, Any] | None:
        def txn_fn(txn: Txn) -> dict[str, Any] | None:
            row = txn.select_one(
                "SELECT content FROM account_data WHERE user_id = ? AND room_id = ?"
                " AND data_type = ?",
                (user_id, room_id if room_id is not None else GLOBAL, data_type),
            )
            return json.loads(row[0]) if row is not None else None

        return await self._db.run("get_account_data", txn_fn)

    async def get_account_data_changes(
        self, user_id: str, from_pos: int, to_pos: int
    ) -> AccountDataChanges:
        """Account data of ``user_id`` that changed in ``(from_pos, to_pos]`` (0: all of it)."""

        def txn_fn(txn: Txn) -> AccountDataChanges:
            rows = txn.select(
                "SELECT room_id, data_type, content FROM account_data WHERE user_id = ?"
                " AND stream_pos > ? AND stream_pos <= ? ORDER BY stream_pos",
                (user_id, from_pos, to_pos),
            )
            out = AccountDataChanges()
            for room_id, data_type, content in rows:
                value = json.loads(content)
                if room_id == GLOBAL:
                    out.global_data[data_type] = value
                else:
                    out.rooms.setdefault(room_id, {})[data_type] = value
            return out

        return await self._db.run("get_account_data_changes", txn_fn)
