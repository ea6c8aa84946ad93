"""SQL for application services: delivery state, per-appservice queues, transactions in flight.

The appservice pusher (``ruma.appservice.scheduler``) appends what each appservice is owed
to ``appservice_queue`` in stream order, then sends it in transactions. A transaction is
fixed in ``appservice_txns`` (its ID and its last queue item) *before* it is sent, so a retry
after an error, a timeout or a restart sends the same ID with the same items; it is removed,
with its items, in the one database transaction that records its acceptance.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruma.storage.database import Database, Txn

__all__ = ["AppserviceState", "AppserviceStore", "PendingTxn", "QueueItem"]

EVENT = "event"
EPHEMERAL = "ephemeral"
TO_DEVICE = "to_device"


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One thing owed to an appservice: a room event, or an ephemeral / to-device JSON."""

    as_id: str
    position: int
    seq: int
    kind: str
    event_id: str | None = None
    content: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AppserviceState:
    as_id: str
    acked_position: int
    last_txn_id: int
    failures: int
    retry_at_ms: int | None


@dataclass(frozen=True, slots=True)
class PendingTxn:
    """A transaction fixed for sending: the same ``txn_id`` and items on every attempt."""

    as_id: str
    txn_id: int
    items: tuple[QueueItem, ...]
    last_position: int
    last_seq: int


def _state(row: Sequence[Any]) -> AppserviceState:
    return AppserviceState(
        str(row[0]),
        int(row[1]),
        int(row[2]),
        int(row[3]),
        None if row[4] is None else int(row[4]),
    )


def _item(as_id: str, row: Sequence[Any]) -> QueueItem:
    return QueueItem(
        as_id=as_id,
        position=int(row[0]),
        seq=int(row[1]),
        kind=str(row[2]),
        event_id=None if row[3] is None else str(row[3]),
        content=None if row[4] is None else json.loads(row[4]),
    )


_STATE_COLS = "as_id, acked_position, last_txn_id, failures, retry_at_ms"


class AppserviceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure_appservices(
        self, as_ids: Iterable[str], start_position: int
    ) -> dict[str, AppserviceState]:
        """The state of each appservice, creating it at ``start_position`` if new."""
        ids = list(as_ids)

        def txn_fn(txn: Txn) -> dict[str, AppserviceState]:
            out: dict[str, AppserviceState] = {}
            for as_id in ids:
                row = txn.select_one(
                    f"SELECT {_STATE_COLS} FROM appservice_state WHERE as_id = ?", (as_id,)
                )
                if row is None:
                    txn.execute(
                        f"INSERT INTO appservice_state ({_STATE_COLS}) VALUES (?, ?, ?, ?, ?)",
                        (as_id, start_position, 0, 0, None),
                    )
                    row = (as_id, start_position, 0, 0, None)
                out[as_id] = _state(row)
            return out

        return await self._db.run("ensure_appservices", txn_fn)

    async def get_state(self, as_id: str) -> AppserviceState | None:
        def txn_fn(txn: Txn) -> AppserviceState | None:
            row = txn.select_one(
                f"SELECT {_STATE_COLS} FROM appservice_state WHERE as_id = ?", (as_id,)
            )
            return None if row is None else _state(row)

        return await self._db.run("get_appservice_state", txn_fn)

    async def enqueue(self, items: Sequence[QueueItem]) -> set[str]:
        """Append items; return the appservices that got something new.

        Idempotent: an item already queued, already delivered (at or below the appservice's
        acknowledged position) or covered by the transaction in flight is skipped, so the
        bus's at-least-once replay after a crash queues nothing twice.
        """
        if not items:
            return set()

        def txn_fn(txn: Txn) -> set[str]:
            floors: dict[str, int | None] = {}
            woken: set[str] = set()
            for item in items:
                if item.as_id not in floors:
                    row = txn.select_one(
                        "SELECT acked_position FROM appservice_state WHERE as_id = ?",
                        (item.as_id,),
                    )
                    inflight = txn.select_one(
                        "SELECT last_position FROM appservice_txns WHERE as_id = ?",
                        (item.as_id,),
                    )
                    floor = None if row is None else int(row[0])
                    if inflight is not None:
                        floor = max(floor or 0, int(inflight[0]))
                    floors[item.as_id] = floor
                floor = floors[item.as_id]
                if floor is None or item.position <= floor:
                    continue
                exists = txn.select_one(
                    "SELECT 1 FROM appservice_queue WHERE as_id = ? AND position = ? AND seq = ?",
                    (item.as_id, item.position, item.seq),
                )
                if exists is not None:
                    continue
                txn.execute(
                    "INSERT INTO appservice_queue (as_id, position, seq, kind, event_id, content)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        item.as_id,
                        item.position,
                        item.seq,
                        item.kind,
                        item.event_id,
                        None if item.content is None else json.dumps(item.content),
                    ),
                )
                woken.add(item.as_id)
            return woken

        return await self._db.run("appservice_enqueue", txn_fn)

    async def next_txn(self, as_id: str, limit: int, now_ms: int) -> PendingTxn | None:
        """The transaction in flight, or a new one of up to ``limit`` items; None if idle."""

        def txn_fn(txn: Txn) -> PendingTxn | None:
            inflight = txn.select_one(
                "SELECT txn_id, last_position, last_seq FROM appservice_txns WHERE as_id = ?",
                (as_id,),
            )
            if inflight is not None:
                txn_id, last_pos, last_seq = (int(x) for x in inflight)
                rows = txn.select(
                    "SELECT position, seq, kind, event_id, content FROM appservice_queue"
                    " WHERE as_id = ? AND (position < ? OR (position = ? AND seq <= ?))"
                    " ORDER BY position, seq",
                    (as_id, last_pos, last_pos, last_seq),
                )
                return PendingTxn(
                    as_id, txn_id, tuple(_item(as_id, r) for r in rows), last_pos, last_seq
                )
            rows = txn.select(
                "SELECT position, seq, kind, event_id, content FROM appservice_queue"
                " WHERE as_id = ? ORDER BY position, seq LIMIT ?",
                (as_id, limit),
            )
            if not rows:
                return None
            state = txn.select_one(
                "SELECT last_txn_id FROM appservice_state WHERE as_id = ?", (as_id,)
            )
            txn_id = (0 if state is None else int(state[0])) + 1
            txn.execute(
                "UPDATE appservice_state SET last_txn_id = ? WHERE as_id = ?", (txn_id, as_id)
            )
            items = tuple(_item(as_id, r) for r in rows)
            last = items[-1]
            txn.execute(
                "INSERT INTO appservice_txns (as_id, txn_id, last_position, last_seq,"
                " created_ms) VALUES (?, ?, ?, ?, ?)",
                (as_id, txn_id, last.position, last.seq, now_ms),
            )
            return PendingTxn(as_id, txn_id, items, last.position, last.seq)

        return await self._db.run("appservice_next_txn", txn_fn)

    async def complete_txn(self, pending: PendingTxn) -> None:
        """The appservice accepted ``pending``: drop it and its items, move the ack forward."""

        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "DELETE FROM appservice_queue WHERE as_id = ?"
                " AND (position < ? OR (position = ? AND seq <= ?))",
                (pending.as_id, pending.last_position, pending.last_position, pending.last_seq),
            )
            txn.execute(
                "DELETE FROM appservice_txns WHERE as_id = ? AND txn_id = ?",
                (pending.as_id, pending.txn_id),
            )
            txn.execute(
                "UPDATE appservice_state SET acked_position = ?, failures = 0,"
                " retry_at_ms = NULL WHERE as_id = ? AND acked_position < ?",
                (pending.last_position, pending.as_id, pending.last_position),
            )

        await self._db.run("appservice_complete_txn", txn_fn)

    async def set_backoff(self, as_id: str, failures: int, retry_at_ms: int | None) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "UPDATE appservice_state SET failures = ?, retry_at_ms = ? WHERE as_id = ?",
                (failures, retry_at_ms, as_id),
            )

        await self._db.run("appservice_set_backoff", txn_fn)

    async def get_backlog(self) -> dict[str, int]:
        """Appservices with queued items or a transaction in flight: ``as_id -> items``."""

        def txn_fn(txn: Txn) -> dict[str, int]:
            out = {
                str(r[0]): int(r[1])
                for r in txn.select(
                    "SELECT as_id, COUNT(*) FROM appservice_queue GROUP BY as_id"
                )
            }
            for r in txn.select("SELECT as_id FROM appservice_txns"):
                out.setdefault(str(r[0]), 0)
            return out

        return await self._db.run("get_appservice_backlog", txn_fn)

    async def get_all_states(self) -> list[AppserviceState]:
        def txn_fn(txn: Txn) -> list[AppserviceState]:
            return [
                _state(r)
                for r in txn.select(
                    f"SELECT {_STATE_COLS} FROM appservice_state ORDER BY as_id"
                )
            ]

        return await self._db.run("get_appservice_states", txn_fn)
