"""Server-side key backups (``/room_keys``).

Clients store their megolm session keys here, encrypted to a backup key the server never
sees. Keys are written only to the newest backup version (an older version number is
``403 M_WRONG_ROOM_KEYS_VERSION`` with ``current_version``); reads and deletes may name any
live version. When a session already has a key, the better one is kept
(:func:`ruma.storage.key_backup.better_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruma.errors import Codes, MatrixError, bad_json, invalid_param, not_found
from ruma.storage.key_backup import BackupVersion, KeyBackupStore, RoomKey

__all__ = ["BACKUP_ALGORITHMS", "KeyBackups"]

BACKUP_ALGORITHMS = frozenset(
    {
        "m.megolm_backup.v1.curve25519-aes-sha2",
        # MSC3270 (symmetric backups), which some clients offer.
        "org.matrix.msc3270.v1.aes-hmac-sha2",
    }
)


def _parse_version(version: str | None) -> int:
    """A version string from a client; unknown (404) if it is not one of ours."""
    if version is None:
        raise MatrixError(400, Codes.MISSING_PARAM, "Missing the 'version' query parameter")
    if not version.isdigit() or len(version) > 18:
        raise not_found(f"Unknown backup version {version!r}")
    return int(version)


def _version_json(v: BackupVersion) -> dict[str, Any]:
    return {
        "algorithm": v.algorithm,
        "auth_data": dict(v.auth_data),
        "count": v.count,
        "etag": str(v.etag),
        "version": str(v.version),
    }


def _update_json(v: BackupVersion) -> dict[str, Any]:
    return {"etag": str(v.etag), "count": v.count}


def _nonneg_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_json(f"'{name}' must be a non-negative integer")
    return value


def parse_room_key(room_id: str, session_id: str, body: Any) -> RoomKey:
    if not isinstance(body, Mapping):
        raise bad_json(f"The key of session {session_id!r} must be an object")
    verified = body.get("is_verified")
    if not isinstance(verified, bool):
        raise bad_json("'is_verified' must be a boolean")
    data = body.get("session_data")
    if not isinstance(data, Mapping):
        raise bad_json("'session_data' must be an object")
    return RoomKey(
        room_id=room_id,
        session_id=session_id,
        first_message_index=_nonneg_int(body.get("first_message_index"), "first_message_index"),
        forwarded_count=_nonneg_int(body.get("forwarded_count"), "forwarded_count"),
        is_verified=verified,
        session_data=dict(data),
    )


def _parse_sessions(room_id: str, body: Any) -> list[RoomKey]:
    if not isinstance(body, Mapping) or not isinstance(body.get("sessions"), Mapping):
        raise bad_json(f"Room {room_id!r} must have a 'sessions' object")
    return [parse_room_key(room_id, s, k) for s, k in body["sessions"].items()]


class KeyBackups:
    def __init__(self, store: KeyBackupStore) -> None:
        self.store = store

    # -- versions ------------------------------------------------------------------------

    def _check_version_body(self, body: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        algorithm = body.get("algorithm")
        auth_data = body.get("auth_data")
        if algorithm is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'algorithm'")
        if not isinstance(algorithm, str):
            raise bad_json("'algorithm' must be a string")
        if algorithm not in BACKUP_ALGORITHMS:
            raise invalid_param(f"Unsupported backup algorithm {algorithm!r}")
        if auth_data is None:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing 'auth_data'")
        if not isinstance(auth_data, Mapping):
            raise bad_json("'auth_data' must be an object")
        return algorithm, auth_data

    async def create_version(self, user_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        algorithm, auth_data = self._check_version_body(body)
        version = await self.store.create_version(user_id, algorithm, auth_data)
        return {"version": str(version)}

    async def get_version(self, user_id: str, version: str | None) -> dict[str, Any]:
        v = await self.store.get_version(
            user_id, None if version is None else _parse_version(version)
        )
        if v is None:
            raise not_found("No current backup version" if version is None
                            else f"Unknown backup version {version}")
        return _version_json(v)

    async def update_version(
        self, user_id: str, version: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        number = _parse_version(version)
        algorithm, auth_data = self._check_version_body(body)
        given = body.get("version")
        if given is not None and given != version:
            raise invalid_param("'version' in the body does not match the path")
        current = await self.store.get_version(user_id, number)
        if current is None:
            raise not_found(f"Unknown backup version {version}")
        if algorithm != current.algorithm:
            raise invalid_param("A backup version's algorithm cannot change")
        await self.store.update_auth_data(user_id, number, auth_data)
        return {}

    async def delete_version(self, user_id: str, version: str) -> dict[str, Any]:
        if not await self.store.delete_version(user_id, _parse_version(version)):
            raise not_found(f"Unknown backup version {version}")
        return {}

    # -- keys ----------------------------------------------------------------------------

    async def _writable(self, user_id: str, version: str | None) -> int:
        number = _parse_version(version)
        current = await self.store.get_version(user_id)
        if current is None:
            raise not_found("No backup version exists")
        if current.version != number:
            raise MatrixError(
                403,
                Codes.WRONG_ROOM_KEYS_VERSION,
                "Wrong backup version: keys go to the current version",
                current_version=str(current.version),
            )
        return number

    async def put_keys(
        self,
        user_id: str,
        version: str | None,
        body: Mapping[str, Any],
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        if session_id is not None:
            assert room_id is not None
            keys = [parse_room_key(room_id, session_id, body)]
        elif room_id is not None:
            keys = _parse_sessions(room_id, body)
        else:
            rooms = body.get("rooms")
            if not isinstance(rooms, Mapping):
                raise bad_json("'rooms' must be an object")
            keys = [k for r, sessions in rooms.items() for k in _parse_sessions(r, sessions)]
        number = await self._writable(user_id, version)
        after = await self.store.put_keys(user_id, number, keys)
        if after is None:  # deleted meanwhile
            raise not_found(f"Unknown backup version {version}")
        return _update_json(after)

    async def get_keys(
        self,
        user_id: str,
        version: str | None,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        number = _parse_version(version)
        if await self.store.get_version(user_id, number) is None:
            raise not_found(f"Unknown backup version {version}")
        keys = await self.store.get_keys(user_id, number, room_id, session_id)
        if session_id is not None:
            if not keys:
                raise not_found("No such session key in the backup")
            return keys[0].to_json()
        sessions: dict[str, dict[str, Any]] = {}
        for k in keys:
            sessions.setdefault(k.room_id, {})[k.session_id] = k.to_json()
        if room_id is not None:
            return {"sessions": sessions.get(room_id, {})}
        return {"rooms": {r: {"sessions": s} for r, s in sessions.items()}}

    async def delete_keys(
        self,
        user_id: str,
        version: str | None,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        number = _parse_version(version)
        after = await self.store.delete_keys(user_id, number, room_id, session_id)
        if after is None:
            raise not_found(f"Unknown backup version {version}")
        return _update_json(after)
