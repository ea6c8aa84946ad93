"""Sending messages and state, and redacting, as a local user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruma.errors import forbidden, not_found
from ruma.protocol.auth import get_named_level, get_user_power_level
from ruma.protocol.events import Event, StateKey
from ruma.rooms.builder import LocalEventSender, NewEvent
from ruma.storage.events import EventStore, RoomHead, TxnIdKey

__all__ = ["MessageSender"]

_POWER_KEYS: tuple[StateKey, ...] = (("m.room.create", ""), ("m.room.power_levels", ""))


class MessageSender:
    def __init__(self, sender: LocalEventSender, store: EventStore) -> None:
        self._sender = sender
        self._store = store

    async def send_message(
        self,
        user_id: str,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        txn_id: TxnIdKey | None,
        *,
        ts: int | None = None,
    ) -> str:
        """Send a message event; a retried ``txn_id`` returns the first event's ID.

        ``ts`` sets origin_server_ts (appservices' timestamp massaging)."""
        persisted = await self._sender.send(
            room_id,
            NewEvent(event_type, user_id, content, origin_server_ts=ts),
            txn_id=txn_id,
        )
        return persisted.event.event_id

    async def set_state(
        self,
        user_id: str,
        room_id: str,
        event_type: str,
        state_key: str,
        content: Mapping[str, Any],
        *,
        ts: int | None = None,
    ) -> str:
        """Send a state event, unless the same sender already set exactly this content."""
        current = await self._store.get_current_state_event(room_id, event_type, state_key)
        if (
            current is not None
            and current.sender == user_id
            and dict(current.content) == dict(content)
            and "redacted_because" not in current.unsigned
        ):
            return current.event_id
        persisted = await self._sender.send(
            room_id, NewEvent(event_type, user_id, content, state_key, origin_server_ts=ts)
        )
        return persisted.event.event_id

    async def redact(
        self,
        user_id: str,
        room_id: str,
        target_id: str,
        reason: str | None,
        txn_id: TxnIdKey | None,
    ) -> str:
        """Redact ``target_id``: one's own events, or others' with the redact level."""
        targets = await self._store.get_pdus([target_id])
        target = targets.get(target_id)
        if target is not None and target.room_id != room_id:
            raise not_found("Event not found in this room")

        async def allowed(head: RoomHead) -> None:
            if target is None or target.sender == user_id:
                return
            if not await self._may_redact_others(room_id, user_id):
                raise forbidden("You don't have permission to redact events of other users")

        content: dict[str, Any] = {}
        if reason is not None:
            content["reason"] = reason
        persisted = await self._sender.send(
            room_id,
            NewEvent("m.room.redaction", user_id, content, redacts=target_id),
            txn_id=txn_id,
            check=allowed,
        )
        return persisted.event.event_id

    async def _may_redact_others(self, room_id: str, user_id: str) -> bool:
        keys = [*_POWER_KEYS, ("m.room.member", user_id)]
        ids = await self._store.get_current_state_keys(room_id, keys)
        events: dict[str, Event] = await self._store.get_pdus(ids.values())
        auth_state = {k: events[eid] for k, eid in ids.items() if eid in events}
        return get_user_power_level(user_id, auth_state) >= get_named_level(auth_state, "redact")
