"""Refresh tokens, login tokens and OpenID tokens (all stored as SHA-256 digests)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ruma.storage.accounts import hash_token
from ruma.storage.database import Database, Txn


@dataclass(frozen=True, slots=True)
class RefreshedTokens:
    access_token_id: int


class SessionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- refresh tokens ------------------------------------------------------------------

    async def add_refresh_token(
        self,
        token: str,
        user_id: str,
        device_id: str,
        access_token_id: int,
        *,
        now_ms: int,
        expires_ts: int | None,
    ) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "INSERT INTO refresh_tokens (id, token_hash, user_id, device_id, access_token_id,"
                " created_ts, expires_ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (secrets.randbits(62), hash_token(token), user_id, device_id, access_token_id,
                 now_ms, expires_ts),
            )

        await self._db.run("add_refresh_token", txn_fn)

    async def use_refresh_token(self, token: str, now_ms: int) -> tuple[str, str] | None:
        """Consume a refresh token: ``(user_id, device_id)``, its access token revoked; None
        if it is unknown, used, expired, or its device is gone."""

        def txn_fn(txn: Txn) -> tuple[str, str] | None:
            row = txn.select_one(
                "SELECT id, user_id, device_id, access_token_id, expires_ts FROM refresh_tokens"
                " WHERE token_hash = ?",
                (hash_token(token),),
            )
            if row is None:
                return None
            rid, user_id, device_id, access_id, expires = row
            txn.execute("DELETE FROM refresh_tokens WHERE id = ?", (rid,))
            txn.execute("DELETE FROM access_tokens WHERE id = ?", (access_id,))
            if expires is not None and int(expires) <= now_ms:
                return None
            device = txn.select_one(
                "SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
            )
            if device is None:
                return None
            return str(user_id), str(device_id)

        return await self._db.run("use_refresh_token", txn_fn)

    async def set_access_token_expiry(self, access_token_id: int, expires_ts: int) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "UPDATE access_tokens SET expires_ts = ? WHERE id = ?", (expires_ts, access_token_id)
            )

        await self._db.run("set_access_token_expiry", txn_fn)

    async def get_access_token_expiry(self, access_token_id: int) -> int | None:
        def txn_fn(txn: Txn) -> int | None:
            row = txn.select_one("SELECT expires_ts FROM access_tokens WHERE id = ?", (access_token_id,))
            return None if row is None or row[0] is None else int(row[0])

        return await self._db.run("get_access_token_expiry", txn_fn)

    # -- login tokens ------------------------------------------------------------------

    async def add_login_token(self, token: str, user_id: str, expires_ts: int) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)",
                (hash_token(token), user_id, expires_ts),
            )

        await self._db.run("add_login_token", txn_fn)

    async def use_login_token(self, token: str, now_ms: int) -> str | None:
        """The user a login token logs in (it can be used once, before it expires)."""

        def txn_fn(txn: Txn) -> str | None:
            h = hash_token(token)
            row = txn.select_one(
                "SELECT user_id, expires_ts FROM login_tokens WHERE token_hash = ?", (h,)
            )
            txn.execute("DELETE FROM login_tokens WHERE token_hash = ? OR expires_ts <= ?", (h, now_ms))
            if row is None or int(row[1]) <= now_ms:
                return None
            return str(row[0])

        return await self._db.run("use_login_token", txn_fn)

    # -- OpenID tokens -----------------------------------------------------------------

    async def add_openid_token(self, token: str, user_id: str, expires_ts: int) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)",
                (hash_token(token), user_id, expires_ts),
            )

        await self._db.run("add_openid_token", txn_fn)

    async def get_openid_user(self, token: str, now_ms: int) -> str | None:
        def txn_fn(txn: Txn) -> str | None:
            row = txn.select_one(
                "SELECT user_id FROM openid_tokens WHERE token_hash = ? AND expires_ts > ?",
                (hash_token(token), now_ms),
            )
            return None if row is None else str(row[0])

        return await self._db.run("get_openid_user", txn_fn)
