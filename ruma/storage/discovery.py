"""SQL for discovery: the user directory, reports, and finding events by timestamp."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ruma.storage.database import Database, Txn

__all__ = ["DirectoryUser", "DiscoveryStore", "RoomReport"]


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    user_id: str
    display_name: str | None
    avatar_url: str | None


@dataclass(frozen=True, slots=True)
class RoomReport:
    report_id: int
    room_id: str
    event_id: str | None
    user_id: str
    reason: str | None
    score: int | None
    received_ts: int


def _like(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class DiscoveryStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def search_local_users(self, words: list[str], limit: int) -> list[DirectoryUser]:
        """Active local users whose ID or display name contains every word."""

        def txn_fn(txn: Txn) -> list[DirectoryUser]:
            sql = "SELECT user_id, displayname, avatar_url FROM users WHERE deactivated = ?"
            params: list[Any] = [False]
            for w in words:
                sql += (
                    " AND (LOWER(user_id) LIKE ? ESCAPE '\\'"
                    " OR LOWER(COALESCE(displayname, '')) LIKE ? ESCAPE '\\')"
                )
                params += [_like(w), _like(w)]
            sql += " ORDER BY user_id LIMIT ?"
            params.append(limit)
            return [DirectoryUser(r[0], r[1], r[2]) for r in txn.select(sql, params)]

        return await self._db.run("get_local_directory_users", txn_fn)

    async def get_joined_members_profiles(
        self, room_ids: Collection[str]
    ) -> dict[str, DirectoryUser]:
        """Joined members of ``room_ids`` with the profile from their member events."""
        rooms = sorted(set(room_ids))

        def txn_fn(txn: Txn) -> dict[str, DirectoryUser]:
            out: dict[str, DirectoryUser] = {}
            for i in range(0, len(rooms), 200):
                chunk = rooms[i : i + 200]
                rows = txn.select(
                    "SELECT c.state_key, e.json FROM current_state c JOIN events e"
                    " ON e.event_id = c.event_id WHERE c.type = ?"
                    f" AND c.room_id IN ({','.join('?' for _ in chunk)})",
                    ["m.room.member", *chunk],
                )
                for user_id, pdu in rows:
                    content = json.loads(pdu).get("content", {})
                    if not isinstance(content, dict) or content.get("membership") != "join":
                        continue
                    name = content.get("displayname")
                    avatar = content.get("avatar_url")
                    out.setdefault(
                        user_id,
                        DirectoryUser(
                            user_id,
                            name if isinstance(name, str) else None,
                            avatar if isinstance(avatar, str) else None,
                        ),
                    )
            return out

        if not rooms:
            return {}
        return await self._db.run("get_joined_members_profiles", txn_fn)

    async def add_report(
        self,
        *,
        room_id: str,
        event_id: str | None,
        user_id: str,
        reason: str | None,
        score: int | None,
        now_ms: int,
    ) -> int:
        def txn_fn(txn: Txn) -> int:
            row = txn.select_one("SELECT MAX(report_id) FROM room_reports")
            report_id = (int(row[0]) if row and row[0] is not None else 0) + 1
            txn.execute(
                "INSERT INTO room_reports (report_id, room_id, event_id, user_id, reason,"
                " score, received_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (report_id, room_id, event_id, user_id, reason, score, now_ms),
            )
            return report_id

        return await self._db.run("add_room_report", txn_fn)

    async def get_reports(self, *, offset: int = 0, limit: int = 100) -> list[RoomReport]:
        def txn_fn(txn: Txn) -> list[RoomReport]:
            rows = txn.select(
                "SELECT report_id, room_id, event_id, user_id, reason, score, received_ts"
                " FROM room_reports ORDER BY report_id DESC LIMIT ? OFFSET ?",
                (limit, offset),
            )
            return [
                RoomReport(
                    int(r[0]), r[1], r[2], r[3], r[4], None if r[5] is None else int(r[5]),
                    int(r[6]),
                )
                for r in rows
            ]

        return await self._db.run("get_room_reports", txn_fn)

    async def count_reports(self) -> int:
        def txn_fn(txn: Txn) -> int:
            row = txn.select_one("SELECT COUNT(*) FROM room_reports")
            return int(row[0]) if row else 0

        return await self._db.run("get_room_report_count", txn_fn)

    async def events_near_ts(
        self, room_id: str, ts: int, forwards: bool, limit: int = 20
    ) -> list[tuple[str, int, int]]:
        """Timeline events at or after (``forwards``) / at or before ``ts``, nearest first:
        ``(event_id, origin_server_ts, stream_position)``."""

        def txn_fn(txn: Txn) -> list[tuple[str, int, int]]:
            if forwards:
                sql = (
                    "SELECT event_id, origin_server_ts, stream_position FROM events"
                    " WHERE room_id = ? AND stream_position IS NOT NULL"
                    " AND origin_server_ts >= ?"
                    " ORDER BY origin_server_ts ASC, stream_position ASC LIMIT ?"
                )
            else:
                sql = (
                    "SELECT event_id, origin_server_ts, stream_position FROM events"
                    " WHERE room_id = ? AND stream_position IS NOT NULL"
                    " AND origin_server_ts <= ?"
                    " ORDER BY origin_server_ts DESC, stream_position DESC LIMIT ?"
                )
            return [
                (r[0], int(r[1]), int(r[2])) for r in txn.select(sql, (room_id, ts, limit))
            ]

        return await self._db.run("get_events_near_ts", txn_fn)
