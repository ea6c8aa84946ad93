"""Stored sync filters (``POST /user/{userId}/filter``): IDs count up per user."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ruma.storage.database import Database, Txn


class FilterStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_filter(self, user_id: str, filter_json: Mapping[str, Any]) -> int:
        """Store a filter and return its new ID (an existing identical filter is reused)."""
        encoded = json.dumps(filter_json, sort_keys=True, separators=(",", ":"))

        def txn_fn(txn: Txn) -> int:
            row = txn.select_one(
                "SELECT filter_id FROM user_filters WHERE user_id = ? AND filter_json = ?",
                (user_id, encoded),
            )
            if row is not None:
                return int(row[0])
            row = txn.select_one(
                "SELECT MAX(filter_id) FROM user_filters WHERE user_id = ?", (user_id,)
            )
            filter_id = int(row[0]) + 1 if row is not None and row[0] is not None else 0
            txn.execute(
                "INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)",
                (user_id, filter_id, encoded),
            )
            return filter_id

        return await self._db.run("add_filter", txn_fn)

    async def get_filter(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        def txn_fn(txn: Txn) -> dict[str, Any] | None:
            row = txn.select_one(
                "SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
                (user_id, filter_id),
            )
            return json.loads(row[0]) if row is not None else None

        return await self._db.run("get_filter", txn_fn)
