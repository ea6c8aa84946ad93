"""Read receipts: one row per (room, receipt type, user, thread), with its stream position."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ruma.storage.database import Database, Txn

UNTHREADED = ""


@dataclass(frozen=True, slots=True)
class Receipt:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str  # "" for an unthreaded receipt
    event_id: str
    ts: int
    stream_pos: int


def _in(n: int) -> str:
    return ",".join("?" * n)


class ReceiptStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set_receipt(
        self,
        room_id: str,
        receipt_type: str,
        user_id: str,
        thread_id: str,
        event_id: str,
        ts: int,
    ) -> int | None:
        """Store a receipt and take a stream position (kind ``receipt``) in one transaction.

        A receipt never moves backwards: if the user's existing receipt of this type and thread
        points at an event later in the room's stream than ``event_id`` (or at it already),
        nothing changes and None is returned.
        """

        def txn_fn(txn: Txn) -> int | None:
            row = txn.select_one(
                "SELECT event_id FROM receipts WHERE room_id = ? AND receipt_type = ?"
                " AND user_id = ? AND thread_id = ?",
                (room_id, receipt_type, user_id, thread_id),
            )
            if row is not None:
                old_event = str(row[0])
                if old_event == event_id:
                    return None
                if _stream_pos(txn, old_event) > _stream_pos(txn, event_id) >= 0:
                    return None
            pos = txn.next_stream_position(
                "receipt", room_id=room_id, user_id=user_id, ref=event_id
            )
            if row is None:
                txn.execute(
                    "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id,"
                    " ts, stream_pos) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (room_id, receipt_type, user_id, thread_id, event_id, ts, pos),
                )
            else:
                txn.execute(
                    "UPDATE receipts SET event_id = ?, ts = ?, stream_pos = ? WHERE room_id = ?"
                    " AND receipt_type = ? AND user_id = ? AND thread_id = ?",
                    (event_id, ts, pos, room_id, receipt_type, user_id, thread_id),
                )
            return pos

        return await self._db.run("set_receipt", txn_fn)

    async def get_receipts_for_rooms(
        self, room_ids: Collection[str], from_pos: int, to_pos: int
    ) -> list[Receipt]:
        """Receipts in ``room_ids`` that changed in ``(from_pos, to_pos]``."""
        if not room_ids:
            return []
        rooms = list(room_ids)

        def txn_fn(txn: Txn) -> list[Receipt]:
            out: list[Receipt] = []
            for i in range(0, len(rooms), 500):
                chunk = rooms[i : i + 500]
                rows = txn.select(
                    "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos"
                    f" FROM receipts WHERE room_id IN ({_in(len(chunk))})"
                    " AND stream_pos > ? AND stream_pos <= ? ORDER BY stream_pos",
                    (*chunk, from_pos, to_pos),
                )
                out.extend(_receipt(r) for r in rows)
            return out

        return await self._db.run("get_receipts_for_rooms", txn_fn)

    async def get_user_receipts(self, user_id: str, room_id: str) -> list[Receipt]:
        """Every receipt of ``user_id`` in ``room_id``."""

        def txn_fn(txn: Txn) -> list[Receipt]:
            rows = txn.select(
                "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos"
                " FROM receipts WHERE room_id = ? AND user_id = ?",
                (room_id, user_id),
            )
            return [_receipt(r) for r in rows]

        return await self._db.run("get_user_receipts", txn_fn)


def _receipt(r: tuple[object, ...]) -> Receipt:
    return Receipt(
        str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5]), int(r[6])  # type: ignore[call-overload]
    )


def _stream_pos(txn: Txn, event_id: str) -> int:
    """The event's position in its room's stream, or -1 if we do not have it in the timeline."""
    row = txn.select_one("SELECT stream_position FROM events WHERE event_id = ?", (event_id,))
    if row is None or row[0] is None:
        return -1
    return int(row[0])
