"""Typing notifications: who is typing where, in memory, each change with a stream position.

Typing is ephemeral (as in Synapse): the set of typing users lives only in this object and is
empty after a restart. Every change still takes a position in the ``stream`` table (see
``SyncStore.record_typing_change``) rather than in a separate in-memory stream folded into
the sync token: that keeps the token one number that stays meaningful across restarts, lets
the bus wake long-polling syncs and reach durable subscribers (federation, appservices) the
same way as for everything else, and costs one small insert per typing *change* (a refresh of
an existing typing notification takes no position).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ruma.errors import forbidden
from ruma.storage.events import EventStore
from ruma.storage.sync import SyncStore

MAX_TIMEOUT_MS = 120_000
DEFAULT_TIMEOUT_MS = 30_000


class TypingHandler:
    log = Logger()

    def __init__(self, clock: IReactorTime, store: SyncStore, events: EventStore) -> None:
        self._clock = clock
        self._store = store
        self._events = events
        self._typing: dict[str, dict[str, IDelayedCall]] = {}

    async def set_typing(
        self,
        requester: str,
        user_id: str,
        room_id: str,
        typing: bool,
        timeout_ms: int | None = None,
    ) -> None:
        """``PUT /rooms/{roomId}/typing/{userId}`` for a local user."""
        if requester != user_id:
            raise forbidden("Cannot set another user's typing state")
        membership = await self._events.get_local_membership(user_id, room_id)
        if membership is None or membership[0] != "join":
            raise forbidden("You are not in this room")
        await self.apply(room_id, user_id, typing, timeout_ms)

    async def apply(
        self, room_id: str, user_id: str, typing: bool, timeout_ms: int | None = None
    ) -> None:
        """Record that ``user_id`` started or stopped typing (local or from federation)."""
        room = self._typing.setdefault(room_id, {})
        existing = room.get(user_id)
        changed = False
        if typing:
            timeout = min(max(timeout_ms or DEFAULT_TIMEOUT_MS, 0), MAX_TIMEOUT_MS) / 1000.0
            if existing is not None and existing.active():
                existing.reset(timeout)
            else:
                room[user_id] = self._clock.callLater(timeout, self._expire, room_id, user_id)
                changed = True
        elif existing is not None:
            if existing.active():
                existing.cancel()
            del room[user_id]
            changed = True
        if not room:
            self._typing.pop(room_id, None)
        if changed:
            await self._store.record_typing_change(room_id)

    def _expire(self, room_id: str, user_id: str) -> None:
        room = self._typing.get(room_id)
        if room is None or user_id not in room:
            return
        del room[user_id]
        if not room:
            del self._typing[room_id]
        d = Deferred.fromCoroutine(self._store.record_typing_change(room_id))
        d.addErrback(lambda f: self.log.failure("recording typing timeout", f))

    def typing_users(self, room_id: str) -> list[str]:
        return sorted(self._typing.get(room_id, {}))

    def typing_event(self, room_id: str) -> dict[str, Any]:
        """The ``m.typing`` ephemeral event for sync."""
        return {"type": "m.typing", "content": {"user_ids": self.typing_users(room_id)}}

    def stop(self) -> None:
        for room in self._typing.values():
            for call in room.values():
                if call.active():
                    call.cancel()
        self._typing.clear()
