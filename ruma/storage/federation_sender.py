"""SQL for the federation sender: what each server is owed, and how far each has got.

The database is the queue (see ``0013_federation_sender.sql``). The sender's bus subscriber
appends to ``federation_outbox`` (:meth:`FederationSenderStore.enqueue`); each destination
then, one transaction at a time, reads what it is owed after its ``last_acked_position``
(:meth:`read_queue`), records the transaction it is about to send with its ID and bounds
(:meth:`save_pending`), and once the peer has answered, moves ``last_acked_position`` to the
transaction's upper bound and drops the delivered rows (:meth:`ack_pending`), all in one
database transaction each. A crash anywhere leaves either the pending transaction (sent again
with the same ID and body) or rows after the acknowledged position (sent in a new one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruma.protocol.json import encode_json
from ruma.storage.database import Database, Txn

__all__ = [
    "DestinationState",
    "FederationSenderStore",
    "OutboxItem",
    "PendingTransaction",
    "QueuedItem",
]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """Something to append to a destination's queue: a PDU (``event_id``) or one EDU."""

    destination: str
    position: int
    seq: int = 0
    event_id: str | None = None
    edu_type: str | None = None
    edu_content: Mapping[str, Any] | None = None
    coalesce_key: str | None = None
    expires_ms: int | None = None


@dataclass(frozen=True, slots=True)
class QueuedItem:
    """A row of a destination's queue as read back, with the PDU's JSON for events."""

    position: int
    seq: int
    event_id: str | None
    pdu: Mapping[str, Any] | None
    edu_type: str | None
    edu_content: Mapping[str, Any] | None
    coalesce_key: str | None
    expires_ms: int | None


@dataclass(frozen=True, slots=True)
class PendingTransaction:
    """A transaction built for a destination and not yet acknowledged.

    ``edu_expiry[i]`` is when ``body["edus"][i]`` stops being worth sending (None: never):
    a retry leaves out EDUs that expired meanwhile, but is otherwise the same transaction.
    """

    txn_id: str
    from_position: int
    to_position: int
    body: Mapping[str, Any]
    edu_expiry: tuple[int | None, ...] = ()


@dataclass(frozen=True, slots=True)
class DestinationState:
    destination: str
    last_acked_position: int
    pending: PendingTransaction | None
    failures: int
    retry_at_ms: int | None
    down_since_ms: int | None


_DEST_COLUMNS = (
    "destination, last_acked_position, pending_txn_id, pending_from, pending_to, pending_body,"
    " failures, retry_at_ms, down_since_ms"
)


def _dest(row: Sequence[Any]) -> DestinationState:
    pending = None
    if row[2] is not None:
        stored = json.loads(row[5])
        pending = PendingTransaction(
            str(row[2]),
            int(row[3]),
            int(row[4]),
            stored["body"],
            tuple(stored.get("edu_expiry", ())),
        )
    return DestinationState(
        destination=str(row[0]),
        last_acked_position=int(row[1]),
        pending=pending,
        failures=int(row[6]),
        retry_at_ms=int(row[7]) if row[7] is not None else None,
        down_since_ms=int(row[8]) if row[8] is not None else None,
    )


class FederationSenderStore:
    """SQL for the outbox, the destinations' progress and relayed events."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- the subscriber side ---------------------------------------------------------------

    async def enqueue(self, items: Iterable[OutboxItem], now_ms: int) -> set[str]:
        """Append ``items`` to their destinations' queues in one transaction.

        Idempotent: an item already queued, or at or below its destination's acknowledged
        position (already delivered: the subscriber is replaying after a crash), is skipped.
        Returns the destinations that got something new.
        """
        todo = list(items)
        if not todo:
            return set()

        def txn_fn(txn: Txn) -> set[str]:
            acked: dict[str, int] = {}
            for dest in sorted({i.destination for i in todo}):
                row = txn.select_one(
                    "SELECT last_acked_position FROM federation_destinations"
                    " WHERE destination = ?",
                    (dest,),
                )
                if row is None:
                    txn.execute(
                        "INSERT INTO federation_destinations (destination, last_acked_position,"
                        " failures) VALUES (?, ?, ?)",
                        (dest, 0, 0),
                    )
                    acked[dest] = 0
                else:
                    acked[dest] = int(row[0])
            woken: set[str] = set()
            for item in todo:
                if item.position <= acked[item.destination]:
                    continue
                exists = txn.select_one(
                    "SELECT 1 FROM federation_outbox WHERE destination = ? AND position = ?"
                    " AND seq = ?",
                    (item.destination, item.position, item.seq),
                )
                if exists is not None:
                    continue
                txn.execute(
                    "INSERT INTO federation_outbox (destination, position, seq, event_id,"
                    " edu_type, edu_content, coalesce_key, expires_ms, queued_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        item.destination,
                        item.position,
                        item.seq,
                        item.event_id,
                        item.edu_type,
                        None
                        if item.edu_content is None
                        else encode_json(item.edu_content).decode("utf-8"),
                        item.coalesce_key,
                        item.expires_ms,
                        now_ms,
                    ),
                )
                woken.add(item.destination)
            return woken

        return await self._db.run("enqueue_federation_outbox", txn_fn)

    async def add_relay(self, event_id: str, origin: str) -> None:
        """Remember to pass ``event_id`` (from ``origin``) on to the room's other servers."""

        def txn_fn(txn: Txn) -> None:
            row = txn.select_one(
                "SELECT 1 FROM federation_relays WHERE event_id = ?", (event_id,)
            )
            if row is None:
                txn.execute(
                    "INSERT INTO federation_relays (event_id, origin) VALUES (?, ?)",
                    (event_id, origin),
                )

        await self._db.run("add_federation_relay", txn_fn)

    async def get_relay_origin(self, event_id: str) -> str | None:
        """The server a relayed event came from, or None if it is not to be relayed."""

        def txn_fn(txn: Txn) -> str | None:
            row = txn.select_one(
                "SELECT origin FROM federation_relays WHERE event_id = ?", (event_id,)
            )
            return str(row[0]) if row is not None else None

        return await self._db.run("get_federation_relay", txn_fn)

    async def get_current_state_group(self, room_id: str) -> int | None:
        """The state group of the room's current state, or None for an unknown room."""

        def txn_fn(txn: Txn) -> int | None:
            row = txn.select_one(
                "SELECT current_state_group FROM rooms WHERE room_id = ?", (room_id,)
            )
            return int(row[0]) if row is not None and row[0] is not None else None

        return await self._db.run("get_room_current_state_group", txn_fn)

    async def get_memberships(self, event_ids: Iterable[str]) -> dict[str, str]:
        """``event_id -> membership`` of the given member events (those we hold)."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}

        def txn_fn(txn: Txn) -> dict[str, str]:
            out: dict[str, str] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                for event_id, pdu in txn.select(
                    "SELECT event_id, json FROM events WHERE event_id IN"
                    f" ({','.join('?' for _ in chunk)})",
                    chunk,
                ):
                    content = json.loads(pdu).get("content")
                    membership = content.get("membership") if isinstance(content, dict) else None
                    if isinstance(membership, str):
                        out[str(event_id)] = membership
            return out

        return await self._db.run("get_member_event_memberships", txn_fn)

    # -- the destination side --------------------------------------------------------------

    async def get_destination(self, destination: str) -> DestinationState | None:
        def txn_fn(txn: Txn) -> DestinationState | None:
            row = txn.select_one(
                f"SELECT {_DEST_COLUMNS} FROM federation_destinations WHERE destination = ?",
                (destination,),
            )
            return _dest(row) if row is not None else None

        return await self._db.run("get_federation_destination", txn_fn)

    async def get_destinations_with_backlog(self) -> list[DestinationState]:
        """Destinations with a pending transaction or queued rows (woken at start-up)."""

        def txn_fn(txn: Txn) -> list[DestinationState]:
            rows = txn.select(
                f"SELECT {_DEST_COLUMNS} FROM federation_destinations d"
                " WHERE d.pending_txn_id IS NOT NULL OR EXISTS (SELECT 1 FROM federation_outbox o"
                " WHERE o.destination = d.destination AND o.position > d.last_acked_position)"
                " ORDER BY d.destination"
            )
            return [_dest(r) for r in rows]

        return await self._db.run("get_federation_backlog", txn_fn)

    async def read_queue(self, destination: str, after: int, limit: int) -> list[QueuedItem]:
        """The destination's queue after position ``after``, in order, at most ``limit`` rows
        (PDUs carry their stored JSON; a PDU whose event is gone is returned without it)."""

        def txn_fn(txn: Txn) -> list[QueuedItem]:
            rows = txn.select(
                "SELECT o.position, o.seq, o.event_id, e.json, o.edu_type, o.edu_content,"
                " o.coalesce_key, o.expires_ms FROM federation_outbox o"
                " LEFT JOIN events e ON e.event_id = o.event_id"
                " WHERE o.destination = ? AND o.position > ?"
                " ORDER BY o.position, o.seq LIMIT ?",
                (destination, after, limit),
            )
            return [
                QueuedItem(
                    position=int(r[0]),
                    seq=int(r[1]),
                    event_id=r[2],
                    pdu=json.loads(r[3]) if r[3] is not None else None,
                    edu_type=r[4],
                    edu_content=json.loads(r[5]) if r[5] is not None else None,
                    coalesce_key=r[6],
                    expires_ms=int(r[7]) if r[7] is not None else None,
                )
                for r in rows
            ]

        return await self._db.run("read_federation_queue", txn_fn)

    async def save_pending(self, destination: str, txn: PendingTransaction) -> None:
        """Record the transaction about to be sent (before it is sent)."""
        body = encode_json({"body": txn.body, "edu_expiry": list(txn.edu_expiry)}).decode("utf-8")

        def txn_fn(t: Txn) -> None:
            t.execute(
                "UPDATE federation_destinations SET pending_txn_id = ?, pending_from = ?,"
                " pending_to = ?, pending_body = ? WHERE destination = ?",
                (txn.txn_id, txn.from_position, txn.to_position, body, destination),
            )
            if t.rowcount == 0:
                t.execute(
                    "INSERT INTO federation_destinations (destination, last_acked_position,"
                    " pending_txn_id, pending_from, pending_to, pending_body, failures)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        destination,
                        txn.from_position,
                        txn.txn_id,
                        txn.from_position,
                        txn.to_position,
                        body,
                        0,
                    ),
                )

        await self._db.run("save_federation_pending", txn_fn)

    async def ack_pending(self, destination: str, txn_id: str) -> int | None:
        """The pending transaction ``txn_id`` was answered: advance and drop delivered rows.

        Returns the new acknowledged position (None if ``txn_id`` was not pending).
        """

        def txn_fn(txn: Txn) -> int | None:
            row = txn.select_one(
                "SELECT pending_to FROM federation_destinations WHERE destination = ?"
                " AND pending_txn_id = ?",
                (destination, txn_id),
            )
            if row is None:
                return None
            upto = int(row[0])
            txn.execute(
                "UPDATE federation_destinations SET last_acked_position = ?,"
                " pending_txn_id = NULL, pending_from = NULL, pending_to = NULL,"
                " pending_body = NULL WHERE destination = ?",
                (upto, destination),
            )
            txn.execute(
                "DELETE FROM federation_outbox WHERE destination = ? AND position <= ?",
                (destination, upto),
            )
            return upto

        return await self._db.run("ack_federation_pending", txn_fn)

    async def skip_to(self, destination: str, position: int) -> None:
        """Treat everything queued up to ``position`` as delivered (rows nobody can send)."""

        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "UPDATE federation_destinations SET last_acked_position = ?"
                " WHERE destination = ? AND last_acked_position < ? AND pending_txn_id IS NULL",
                (position, destination, position),
            )
            txn.execute(
                "DELETE FROM federation_outbox WHERE destination = ? AND position <= ?",
                (destination, position),
            )

        await self._db.run("skip_federation_queue", txn_fn)

    async def set_backoff(
        self, destination: str, failures: int, retry_at_ms: int | None, now_ms: int
    ) -> None:
        """Record the destination as down (``failures`` > 0) or up (``failures`` == 0)."""

        def txn_fn(txn: Txn) -> None:
            if failures == 0:
                txn.execute(
                    "UPDATE federation_destinations SET failures = 0, retry_at_ms = NULL,"
                    " down_since_ms = NULL WHERE destination = ?",
                    (destination,),
                )
            else:
                txn.execute(
                    "UPDATE federation_destinations SET failures = ?, retry_at_ms = ?,"
                    " down_since_ms = COALESCE(down_since_ms, ?) WHERE destination = ?",
                    (failures, retry_at_ms, now_ms, destination),
                )

        await self._db.run("set_federation_backoff", txn_fn)
