"""Local accounts: users, devices, access tokens, profiles, registration-token uses.

One async method per query; every method runs one transaction through ``Database.run``.
Tokens are never stored: callers pass the SHA-256 hex digest (:func:`hash_token`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from ruma.storage.database import Database, Txn
from ruma.storage.e2ee import purge_device_txn, purge_user_devices_txn

# Stream kind taken when a user's device list changes (a device is created or deleted), so
# sync and federation can tell other users' clients to refresh their device lists.
DEVICE_LIST_STREAM = "device_list"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: str
    password_hash: str | None
    created_ts: int
    is_admin: bool
    is_guest: bool
    deactivated: bool
    appservice_id: str | None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    user_id: str
    device_id: str
    display_name: str | None
    created_ts: int
    last_seen_ts: int | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What an access token stands for."""

    token_id: int
    user_id: str
    device_id: str | None
    is_guest: bool
    deactivated: bool
    appservice_id: str | None
    # Milliseconds since the epoch after which the token no longer works (None: never).
    expires_ts: int | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    displayname: str | None
    avatar_url: str | None


_USER_COLS = "user_id, password_hash, created_ts, is_admin, is_guest, deactivated, appservice_id"
_DEVICE_COLS = (
    "user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip, "
    "last_seen_user_agent"
)


def _user(row: tuple[object, ...]) -> UserInfo:
    return UserInfo(
        user_id=str(row[0]),
        password_hash=None if row[1] is None else str(row[1]),
        created_ts=int(row[2]),  # type: ignore[call-overload]
        is_admin=bool(row[3]),
        is_guest=bool(row[4]),
        deactivated=bool(row[5]),
        appservice_id=None if row[6] is None else str(row[6]),
    )


def _device(row: tuple[object, ...]) -> DeviceInfo:
    return DeviceInfo(
        user_id=str(row[0]),
        device_id=str(row[1]),
        display_name=None if row[2] is None else str(row[2]),
        created_ts=int(row[3]),  # type: ignore[call-overload]
        last_seen_ts=None if row[4] is None else int(row[4]),  # type: ignore[call-overload]
        last_seen_ip=None if row[5] is None else str(row[5]),
        last_seen_user_agent=None if row[6] is None else str(row[6]),
    )


class AccountStore:
    """Users, devices and access tokens. The only place with SQL about accounts."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- users ---------------------------------------------------------------------------

    async def create_user(
        self,
        user_id: str,
        password_hash: str | None,
        *,
        created_ts: int,
        is_admin: bool = False,
        is_guest: bool = False,
        appservice_id: str | None = None,
        displayname: str | None = None,
    ) -> bool:
        """Insert a user; False (and nothing written) if the ID, in any case, is taken."""

        def txn(t: Txn) -> bool:
            if t.select_one("SELECT 1 FROM users WHERE LOWER(user_id) = ?", (user_id.lower(),)):
                return False
            t.execute(
                "INSERT INTO users (user_id, password_hash, created_ts, is_admin, is_guest,"
                " deactivated, appservice_id, displayname) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    password_hash,
                    created_ts,
                    is_admin,
                    is_guest,
                    False,
                    appservice_id,
                    displayname,
                ),
            )
            return True

        return await self.db.run("create_user", txn)

    async def user_exists(self, user_id: str) -> bool:
        """Whether the ID (compared case-insensitively) was ever registered."""

        def txn(t: Txn) -> bool:
            row = t.select_one("SELECT 1 FROM users WHERE LOWER(user_id) = ?", (user_id.lower(),))
            return row is not None

        return await self.db.run("get_user_exists", txn)

    async def get_user(self, user_id: str) -> UserInfo | None:
        def txn(t: Txn) -> UserInfo | None:
            row = t.select_one(f"SELECT {_USER_COLS} FROM users WHERE user_id = ?", (user_id,))
            return None if row is None else _user(row)

        return await self.db.run("get_user", txn)

    async def count_users(self) -> int:
        def txn(t: Txn) -> int:
            row = t.select_one("SELECT COUNT(*) FROM users WHERE NOT is_guest")
            return int(row[0]) if row else 0

        return await self.db.run("get_user_count", txn)

    async def set_password_hash(self, user_id: str, password_hash: str | None) -> None:
        def txn(t: Txn) -> None:
            t.execute(
                "UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id)
            )

        await self.db.run("set_password_hash", txn)

    async def set_admin(self, user_id: str, is_admin: bool) -> None:
        def txn(t: Txn) -> None:
            t.execute("UPDATE users SET is_admin = ? WHERE user_id = ?", (is_admin, user_id))

        await self.db.run("set_admin", txn)

    async def deactivate_user(self, user_id: str) -> None:
        """Mark deactivated, forget the password, and delete every device and token."""

        def txn(t: Txn) -> None:
            t.execute(
                "UPDATE users SET deactivated = ?, password_hash = NULL WHERE user_id = ?",
                (True, user_id),
            )
            t.execute("DELETE FROM access_tokens WHERE user_id = ?", (user_id,))
            t.execute("DELETE FROM devices WHERE user_id = ?", (user_id,))
            purge_user_devices_txn(t, user_id)
            t.next_stream_position(DEVICE_LIST_STREAM, user_id=user_id)

        await self.db.run("deactivate_user", txn)

    # -- profiles ------------------------------------------------------------------------

    async def get_profile(self, user_id: str) -> Profile | None:
        """A local user's profile; None if no such user exists."""

        def txn(t: Txn) -> Profile | None:
            row = t.select_one(
                "SELECT displayname, avatar_url FROM users WHERE user_id = ?", (user_id,)
            )
            if row is None:
                return None
            return Profile(
                displayname=None if row[0] is None else str(row[0]),
                avatar_url=None if row[1] is None else str(row[1]),
            )

        return await self.db.run("get_profile", txn)

    async def set_displayname(self, user_id: str, displayname: str | None) -> None:
        def txn(t: Txn) -> None:
            t.execute("UPDATE users SET displayname = ? WHERE user_id = ?", (displayname, user_id))

        await self.db.run("set_displayname", txn)

    async def set_avatar_url(self, user_id: str, avatar_url: str | None) -> None:
        def txn(t: Txn) -> None:
            t.execute("UPDATE users SET avatar_url = ? WHERE user_id = ?", (avatar_url, user_id))

        await self.db.run("set_avatar_url", txn)

    # -- devices -------------------------------------------------------------------------

    async def create_device(
        self, user_id: str, device_id: str, display_name: str | None, *, created_ts: int
    ) -> bool:
        """Create the device if it does not exist; True if it was created.

        An existing device keeps its display name unless a new one is given (logging in
        again with the same ``device_id`` reuses the device).
        """

        def txn(t: Txn) -> bool:
            row = t.select_one(
                "SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
            )
            if row is not None:
                if display_name is not None:
                    t.execute(
                        "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                        (display_name, user_id, device_id),
                    )
                return False
            t.execute(
                "INSERT INTO devices (user_id, device_id, display_name, created_ts)"
                " VALUES (?, ?, ?, ?)",
                (user_id, device_id, display_name, created_ts),
            )
            t.next_stream_position(DEVICE_LIST_STREAM, user_id=user_id, ref=device_id)
            return True

        return await self.db.run("create_device", txn)

    async def get_device(self, user_id: str, device_id: str) -> DeviceInfo | None:
        def txn(t: Txn) -> DeviceInfo | None:
            row = t.select_one(
                f"SELECT {_DEVICE_COLS} FROM devices WHERE user_id = ? AND device_id = ?",
                (user_id, device_id),
            )
            return None if row is None else _device(row)

        return await self.db.run("get_device", txn)

    async def get_devices(self, user_id: str) -> list[DeviceInfo]:
        def txn(t: Txn) -> list[DeviceInfo]:
            rows = t.select(
                f"SELECT {_DEVICE_COLS} FROM devices WHERE user_id = ? ORDER BY device_id",
                (user_id,),
            )
            return [_device(r) for r in rows]

        return await self.db.run("get_devices", txn)

    async def set_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> bool:
        """Rename a device; False if it does not exist."""

        def txn(t: Txn) -> bool:
            t.execute(
                "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                (display_name, user_id, device_id),
            )
            return t.rowcount > 0

        return await self.db.run("set_device_display_name", txn)

    async def update_device_last_seen(
        self, user_id: str, device_id: str, *, ip: str, user_agent: str | None, ts: int
    ) -> None:
        def txn(t: Txn) -> None:
            t.execute(
                "UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?, last_seen_user_agent = ?"
                " WHERE user_id = ? AND device_id = ?",
                (ts, ip, user_agent, user_id, device_id),
            )

        await self.db.run("update_device_last_seen", txn)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and every access token bound to them."""

        def txn(t: Txn) -> None:
            for device_id in device_ids:
                t.execute(
                    "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id),
                )
                t.execute(
                    "DELETE FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
                )
                if t.rowcount:
                    purge_device_txn(t, user_id, device_id)
                    t.next_stream_position(DEVICE_LIST_STREAM, user_id=user_id, ref=device_id)

        await self.db.run("delete_devices", txn)

    async def delete_all_devices(self, user_id: str, *, except_device_id: str | None = None) -> None:
        """Delete every device (and its tokens) except ``except_device_id``."""

        def txn(t: Txn) -> None:
            rows = t.select("SELECT device_id FROM devices WHERE user_id = ?", (user_id,))
            for (device_id,) in rows:
                if device_id == except_device_id:
                    continue
                t.execute(
                    "DELETE FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
                )
                purge_device_txn(t, user_id, str(device_id))
                t.next_stream_position(DEVICE_LIST_STREAM, user_id=user_id, ref=str(device_id))
            if except_device_id is None:
                t.execute("DELETE FROM access_tokens WHERE user_id = ?", (user_id,))
            else:
                t.execute(
                    "DELETE FROM access_tokens WHERE user_id = ?"
                    " AND (device_id IS NULL OR device_id <> ?)",
                    (user_id, except_device_id),
                )

        await self.db.run("delete_all_devices", txn)

    # -- access tokens -------------------------------------------------------------------

    async def add_access_token(
        self,
        token_hash: str,
        user_id: str,
        device_id: str | None,
        *,
        created_ts: int,
        expires_ts: int | None = None,
    ) -> int:
        """Store a token's hash; return its id."""
        token_id = secrets.randbits(62)

        def txn(t: Txn) -> int:
            t.execute(
                "INSERT INTO access_tokens (id, token_hash, user_id, device_id, created_ts,"
                " expires_ts) VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, token_hash, user_id, device_id, created_ts, expires_ts),
            )
            return token_id

        return await self.db.run("add_access_token", txn)

    async def get_token_info(self, token_hash: str) -> TokenInfo | None:
        def txn(t: Txn) -> TokenInfo | None:
            row = t.select_one(
                "SELECT a.id, a.user_id, a.device_id, u.is_guest, u.deactivated, u.appservice_id,"
                " a.expires_ts FROM access_tokens a JOIN users u ON u.user_id = a.user_id"
                " WHERE a.token_hash = ?",
                (token_hash,),
            )
            if row is None:
                return None
            return TokenInfo(
                token_id=int(row[0]),
                user_id=str(row[1]),
                device_id=None if row[2] is None else str(row[2]),
                is_guest=bool(row[3]),
                deactivated=bool(row[4]),
                appservice_id=None if row[5] is None else str(row[5]),
                expires_ts=None if row[6] is None else int(row[6]),
            )

        return await self.db.run("get_token_info", txn)

    async def delete_access_token(self, token_id: int) -> None:
        def txn(t: Txn) -> None:
            t.execute("DELETE FROM access_tokens WHERE id = ?", (token_id,))

        await self.db.run("delete_access_token", txn)

    # -- registration tokens -------------------------------------------------------------

    async def use_registration_token(self, token: str, uses_allowed: int | None) -> bool:
        """Count one completed registration with ``token``; False if it is used up."""

        def txn(t: Txn) -> bool:
            row = t.select_one(
                "SELECT completed FROM registration_token_uses WHERE token = ?", (token,)
            )
            completed = int(row[0]) if row else 0
            if uses_allowed is not None and completed >= uses_allowed:
                return False
            if row is None:
                t.execute(
                    "INSERT INTO registration_token_uses (token, completed) VALUES (?, 1)",
                    (token,),
                )
            else:
                t.execute(
                    "UPDATE registration_token_uses SET completed = completed + 1 WHERE token = ?",
                    (token,),
                )
            return True

        return await self.db.run("use_registration_token", txn)

    async def get_registration_token_uses(self, token: str) -> int:
        def txn(t: Txn) -> int:
            row = t.select_one(
                "SELECT completed FROM registration_token_uses WHERE token = ?", (token,)
            )
            return int(row[0]) if row else 0

        return await self.db.run("get_registration_token_uses", txn)
