"""Remote servers' signing keys."""

from __future__ import annotations

from dataclasses import dataclass

from ruma.storage.database import Database, Txn


@dataclass(frozen=True, slots=True)
class StoredKey:
    server_name: str
    key_id: str
    verify_key: str  # unpadded base64
    valid_until_ts: int
    expired_ts: int | None  # set for keys the server lists as old
    fetched_ts: int
    key_json: str  # the whole signed key response it came in


class ServerKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_keys(self, server_name: str) -> dict[str, StoredKey]:
        def q(txn: Txn) -> dict[str, StoredKey]:
            rows = txn.select(
                "SELECT server_name, key_id, verify_key, valid_until_ts, expired_ts,"
                " fetched_ts, key_json FROM server_keys WHERE server_name = ?",
                (server_name,),
            )
            return {r[1]: StoredKey(*r) for r in rows}

        return await self._db.run("get_server_keys", q)

    async def store_keys(self, keys: list[StoredKey]) -> None:
        def q(txn: Txn) -> None:
            for k in keys:
                # Keep the answer that is valid longest: a notary may hand us an older one.
                row = txn.select_one(
                    "SELECT valid_until_ts FROM server_keys WHERE server_name = ? AND key_id = ?",
                    (k.server_name, k.key_id),
                )
                if row is not None and int(row[0]) > k.valid_until_ts and k.expired_ts is None:
                    continue
                txn.execute(
                    "DELETE FROM server_keys WHERE server_name = ? AND key_id = ?",
                    (k.server_name, k.key_id),
                )
                txn.execute(
                    "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts,"
                    " expired_ts, fetched_ts, key_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (k.server_name, k.key_id, k.verify_key, k.valid_until_ts, k.expired_ts,
                     k.fetched_ts, k.key_json),
                )

        await self._db.run("store_server_keys", q)
