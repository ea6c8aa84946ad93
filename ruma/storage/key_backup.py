"""Server-side key backups (``/room_keys``): versions and the encrypted session keys in them.

Versions are numbered per user from 1 and never reused. A version's ``etag`` is bumped
whenever the set of keys stored in it changes, so clients can tell whether to download again.
Which of two keys for the same session is kept is decided by :func:`better_key`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruma.storage.database import Database, Txn

__all__ = ["BackupVersion", "KeyBackupStore", "RoomKey", "better_key"]


@dataclass(frozen=True, slots=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: Mapping[str, Any]
    etag: int
    count: int


@dataclass(frozen=True, slots=True)
class RoomKey:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": dict(self.session_data),
        }


def better_key(new: RoomKey, old: RoomKey) -> bool:
    """Whether ``new`` replaces ``old`` (the spec's rules; a full tie keeps ``old``):
    a verified key beats an unverified one, then the lower ``first_message_index`` wins,
    then the lower ``forwarded_count``."""
    if new.is_verified != old.is_verified:
        return new.is_verified
    if new.first_message_index != old.first_message_index:
        return new.first_message_index < old.first_message_index
    return new.forwarded_count < old.forwarded_count


def _key(row: tuple[Any, ...]) -> RoomKey:
    return RoomKey(
        room_id=str(row[0]),
        session_id=str(row[1]),
        first_message_index=int(row[2]),
        forwarded_count=int(row[3]),
        is_verified=bool(row[4]),
        session_data=json.loads(row[5]),
    )


_KEY_COLS = "room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"


class KeyBackupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _version_txn(self, t: Txn, user_id: str, version: int | None) -> BackupVersion | None:
        if version is None:
            row = t.select_one(
                "SELECT version, algorithm, auth_data, etag FROM e2e_room_key_versions"
                " WHERE user_id = ? AND deleted = ? ORDER BY version DESC LIMIT 1",
                (user_id, False),
            )
        else:
            row = t.select_one(
                "SELECT version, algorithm, auth_data, etag FROM e2e_room_key_versions"
                " WHERE user_id = ? AND version = ? AND deleted = ?",
                (user_id, version, False),
            )
        if row is None:
            return None
        count = t.select_one(
            "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?",
            (user_id, int(row[0])),
        )
        return BackupVersion(
            version=int(row[0]),
            algorithm=str(row[1]),
            auth_data=json.loads(row[2]),
            etag=int(row[3]),
            count=int(count[0]) if count else 0,
        )

    async def get_version(self, user_id: str, version: int | None = None) -> BackupVersion | None:
        """A live backup version, or the newest one when ``version`` is None."""
        return await self.db.run("get_backup_version", self._version_txn, user_id, version)

    async def create_version(
        self, user_id: str, algorithm: str, auth_data: Mapping[str, Any]
    ) -> int:
        def txn(t: Txn) -> int:
            row = t.select_one(
                "SELECT MAX(version) FROM e2e_room_key_versions WHERE user_id = ?", (user_id,)
            )
            version = (int(row[0]) if row and row[0] is not None else 0) + 1
            t.execute(
                "INSERT INTO e2e_room_key_versions (user_id, version, algorithm, auth_data,"
                " etag, deleted) VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, version, algorithm, json.dumps(auth_data), 0, False),
            )
            return version

        return await self.db.run("create_backup_version", txn)

    async def update_auth_data(
        self, user_id: str, version: int, auth_data: Mapping[str, Any]
    ) -> bool:
        def txn(t: Txn) -> bool:
            t.execute(
                "UPDATE e2e_room_key_versions SET auth_data = ? WHERE user_id = ?"
                " AND version = ? AND deleted = ?",
                (json.dumps(auth_data), user_id, version, False),
            )
            return t.rowcount > 0

        return await self.db.run("update_backup_auth_data", txn)

    async def delete_version(self, user_id: str, version: int) -> bool:
        """Delete a version and its keys; False if it never existed."""

        def txn(t: Txn) -> bool:
            row = t.select_one(
                "SELECT 1 FROM e2e_room_key_versions WHERE user_id = ? AND version = ?",
                (user_id, version),
            )
            if row is None:
                return False
            t.execute(
                "UPDATE e2e_room_key_versions SET deleted = ? WHERE user_id = ? AND version = ?",
                (True, user_id, version),
            )
            t.execute(
                "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, version)
            )
            return True

        return await self.db.run("delete_backup_version", txn)

    async def put_keys(
        self, user_id: str, version: int, keys: Sequence[RoomKey]
    ) -> BackupVersion | None:
        """Store keys in a live version, each only if it beats the one held; the version
        after (None if it is not live). The etag moves if anything changed."""

        def txn(t: Txn) -> BackupVersion | None:
            current = self._version_txn(t, user_id, version)
            if current is None:
                return None
            changed = False
            for key in keys:
                row = t.select_one(
                    f"SELECT {_KEY_COLS} FROM e2e_room_keys WHERE user_id = ? AND version = ?"
                    " AND room_id = ? AND session_id = ?",
                    (user_id, version, key.room_id, key.session_id),
                )
                if row is not None and not better_key(key, _key(row)):
                    continue
                if row is not None:
                    t.execute(
                        "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?"
                        " AND room_id = ? AND session_id = ?",
                        (user_id, version, key.room_id, key.session_id),
                    )
                t.execute(
                    "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id,"
                    " first_message_index, forwarded_count, is_verified, session_data)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        user_id,
                        version,
                        key.room_id,
                        key.session_id,
                        key.first_message_index,
                        key.forwarded_count,
                        key.is_verified,
                        json.dumps(key.session_data),
                    ),
                )
                changed = True
            if changed:
                self._bump_etag_txn(t, user_id, version)
            return self._version_txn(t, user_id, version)

        return await self.db.run("put_room_keys", txn)

    def _bump_etag_txn(self, t: Txn, user_id: str, version: int) -> None:
        t.execute(
            "UPDATE e2e_room_key_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?",
            (user_id, version),
        )

    async def get_keys(
        self,
        user_id: str,
        version: int,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> list[RoomKey]:
        def txn(t: Txn) -> list[RoomKey]:
            sql = f"SELECT {_KEY_COLS} FROM e2e_room_keys WHERE user_id = ? AND version = ?"
            params: list[Any] = [user_id, version]
            if room_id is not None:
                sql += " AND room_id = ?"
                params.append(room_id)
                if session_id is not None:
                    sql += " AND session_id = ?"
                    params.append(session_id)
            return [_key(r) for r in t.select(sql + " ORDER BY room_id, session_id", params)]

        return await self.db.run("get_room_keys", txn)

    async def delete_keys(
        self,
        user_id: str,
        version: int,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> BackupVersion | None:
        """Delete keys from a live version; the version after (None if not live)."""

        def txn(t: Txn) -> BackupVersion | None:
            if self._version_txn(t, user_id, version) is None:
                return None
            sql = "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?"
            params: list[Any] = [user_id, version]
            if room_id is not None:
                sql += " AND room_id = ?"
                params.append(room_id)
                if session_id is not None:
                    sql += " AND session_id = ?"
                    params.append(session_id)
            t.execute(sql, params)
            if t.rowcount:
                self._bump_etag_txn(t, user_id, version)
            return self._version_txn(t, user_id, version)

        return await self.db.run("delete_room_keys", txn)
