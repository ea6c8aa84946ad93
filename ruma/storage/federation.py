"""Inbound federation bookkeeping: the transactions other servers sent and our answers."""

from __future__ import annotations

import json
from typing import Any

from ruma.storage.database import Database, Txn

__all__ = ["FederationInboundStore"]


class FederationInboundStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_txn_response(self, origin: str, txn_id: str) -> dict[str, Any] | None:
        """The answer we gave to ``origin``'s transaction ``txn_id``, if we saw it."""

        def txn_fn(txn: Txn) -> dict[str, Any] | None:
            row = txn.select_one(
                "SELECT response_json FROM federation_inbound_txns"
                " WHERE origin = ? AND txn_id = ?",
                (origin, txn_id),
            )
            return json.loads(row[0]) if row else None

        result: dict[str, Any] | None = await self._db.run("get_inbound_txn", txn_fn)
        return result

    async def store_txn_response(
        self, origin: str, txn_id: str, response: dict[str, Any], now_ms: int
    ) -> None:
        """Remember the answer (a second store of the same transaction keeps the first)."""
        data = json.dumps(response, separators=(",", ":"))

        def txn_fn(txn: Txn) -> None:
            row = txn.select_one(
                "SELECT 1 FROM federation_inbound_txns WHERE origin = ? AND txn_id = ?",
                (origin, txn_id),
            )
            if row is None:
                txn.execute(
                    "INSERT INTO federation_inbound_txns (origin, txn_id, response_json,"
                    " received_ts) VALUES (?, ?, ?, ?)",
                    (origin, txn_id, data, now_ms),
                )

        await self._db.run("store_inbound_txn", txn_fn)

    async def shares_room_with_local_users(self, user_id: str) -> bool:
        """Whether ``user_id`` (of another server) is joined to a room a local user is in."""

        def txn_fn(txn: Txn) -> bool:
            rooms = [
                r[0]
                for r in txn.select(
                    "SELECT DISTINCT room_id FROM local_memberships WHERE membership = ?",
                    ("join",),
                )
            ]
            for room_id in rooms:
                row = txn.select_one(
                    "SELECT e.json FROM current_state c JOIN events e"
                    " ON e.event_id = c.event_id"
                    " WHERE c.room_id = ? AND c.type = ? AND c.state_key = ?",
                    (room_id, "m.room.member", user_id),
                )
                if row is not None and json.loads(row[0]).get("content", {}).get(
                    "membership"
                ) == "join":
                    return True
            return False

        shared: bool = await self._db.run("get_shares_room_with_local_users", txn_fn)
        return shared

    async def prune_txns(self, before_ms: int) -> int:
        """Forget transactions received before ``before_ms``; return how many."""

        def txn_fn(txn: Txn) -> int:
            txn.execute(
                "DELETE FROM federation_inbound_txns WHERE received_ts < ?", (before_ms,)
            )
            return txn.rowcount

        n: int = await self._db.run("prune_inbound_txns", txn_fn)
        return n
