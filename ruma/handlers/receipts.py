"""Read receipts (``m.read``, ``m.read.private``, threaded) and read markers (``m.fully_read``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ruma.errors import forbidden, invalid_param, not_found
from ruma.handlers.account_data import AccountDataHandler
from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.ids import EventID
from ruma.storage.events import EventStore
from ruma.storage.receipts import UNTHREADED, Receipt, ReceiptStore

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = frozenset({READ, READ_PRIVATE})


class ReceiptHandler:
    def __init__(
        self,
        clock: IReactorTime,
        store: ReceiptStore,
        events: EventStore,
        account_data: AccountDataHandler,
    ) -> None:
        self._clock = clock
        self.store = store
        self._events = events
        self._account_data = account_data

    async def post_receipt(
        self,
        user_id: str,
        room_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
    ) -> None:
        """``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}``."""
        if receipt_type not in RECEIPT_TYPES and receipt_type != FULLY_READ:
            raise invalid_param(f"Receipt type {receipt_type!r} is not supported")
        if thread_id is not None:
            if receipt_type == FULLY_READ:
                raise invalid_param("thread_id is not allowed for m.fully_read")
            if thread_id != "main":
                _check_event_id(thread_id, "thread_id")
        await self._check_can_see(user_id, room_id, event_id)
        if receipt_type == FULLY_READ:
            await self._account_data.set_fully_read(user_id, room_id, event_id)
            return
        await self.store.set_receipt(
            room_id,
            receipt_type,
            user_id,
            thread_id if thread_id is not None else UNTHREADED,
            event_id,
            int(self._clock.seconds() * 1000),
        )

    async def set_read_markers(
        self,
        user_id: str,
        room_id: str,
        fully_read: str | None,
        read: str | None,
        read_private: str | None,
    ) -> None:
        """``POST /rooms/{roomId}/read_markers``: the marker and optional receipts."""
        for event_id in (fully_read, read, read_private):
            if event_id is not None:
                await self._check_can_see(user_id, room_id, event_id)
        if fully_read is not None:
            await self._account_data.set_fully_read(user_id, room_id, fully_read)
        now = int(self._clock.seconds() * 1000)
        if read is not None:
            await self.store.set_receipt(room_id, READ, user_id, UNTHREADED, read, now)
        if read_private is not None:
            await self.store.set_receipt(room_id, READ_PRIVATE, user_id, UNTHREADED, read_private, now)

    async def _check_can_see(self, user_id: str, room_id: str, event_id: str) -> None:
        _check_event_id(event_id, "event ID")
        membership = await self._events.get_local_membership(user_id, room_id)
        if membership is None or membership[0] != "join":
            raise forbidden("You are not in this room")
        event = await self._events.get_event(event_id)
        if event is None or event.room_id != room_id:
            raise not_found("Unknown event")


def receipt_event(receipts: Iterable[Receipt], viewer: str) -> dict[str, Any] | None:
    """The ``m.receipt`` ephemeral event for ``viewer`` (others' private receipts hidden)."""
    content: dict[str, Any] = defaultdict(lambda: defaultdict(dict))
    any_seen = False
    for r in receipts:
        if r.receipt_type == READ_PRIVATE and r.user_id != viewer:
            continue
        data: dict[str, Any] = {"ts": r.ts}
        if r.thread_id != UNTHREADED:
            data["thread_id"] = r.thread_id
        content[r.event_id][r.receipt_type][r.user_id] = data
        any_seen = True
    if not any_seen:
        return None
    return {
        "type": "m.receipt",
        "content": {ev: {t: dict(users) for t, users in types.items()} for ev, types in content.items()},
    }


def _check_event_id(value: str, what: str) -> None:
    try:
        EventID.parse(value)
    except InvalidIdentifier:
        raise invalid_param(f"Invalid {what} {value!r}") from None
