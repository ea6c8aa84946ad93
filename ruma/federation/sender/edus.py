"""Outbound EDUs: what local users' typing, receipts and presence become for other servers.

Each source turns one ``stream`` row of its kinds into EDUs with their destinations. The
sender stores them in the outbox with the row's position, so they travel in stream order
with the PDUs. More sources (device list updates ``m.device_list_update``, to-device
messages ``m.direct_to_device``) plug in the same way through
:meth:`FederationSender.add_edu_source` once their streams exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime

from ruma.bus import StreamRow
from ruma.federation.sender.hosts import RoomHosts, server_of
from ruma.handlers.typing import TypingHandler
from ruma.storage.events import EventStore
from ruma.storage.presence import PresenceStore
from ruma.storage.receipts import UNTHREADED, ReceiptStore

__all__ = ["EduSource", "OutboundEdu", "PresenceEdus", "ReceiptEdus", "TypingEdus"]

# A typing notification not delivered within this long is not worth delivering.
TYPING_TTL_MS = 30_000


@dataclass(frozen=True, slots=True)
class OutboundEdu:
    destinations: frozenset[str]
    edu_type: str
    content: Mapping[str, Any]
    # Of EDUs with the same key in one transaction only the newest is sent.
    coalesce_key: str | None = None
    # Drop the EDU if it could not be sent within this many milliseconds.
    ttl_ms: int | None = None


class EduSource(Protocol):
    """Turns ``stream`` rows of ``kinds`` into EDUs for other servers."""

    @property
    def kinds(self) -> frozenset[str]: ...

    async def edus_for(self, row: StreamRow) -> list[OutboundEdu]: ...


class TypingEdus:
    """``m.typing`` for local users: one EDU per user whose typing started or stopped.

    Typing lives in memory only (:class:`~ruma.handlers.typing.TypingHandler`) and a stream
    row says only *which room* changed, so this compares the room's local typers with those
    last announced.
    """

    kinds = frozenset({"typing"})

    def __init__(self, typing: TypingHandler, hosts: RoomHosts, server_name: str) -> None:
        self._typing = typing
        self._hosts = hosts
        self._server_name = server_name
        self._announced: dict[str, frozenset[str]] = {}

    async def edus_for(self, row: StreamRow) -> list[OutboundEdu]:
        room_id = row.room_id
        if room_id is None:
            return []
        now = frozenset(
            u for u in self._typing.typing_users(room_id) if server_of(u) == self._server_name
        )
        before = self._announced.get(room_id, frozenset())
        if now:
            self._announced[room_id] = now
        else:
            self._announced.pop(room_id, None)
        changes = [(u, True) for u in sorted(now - before)]
        changes += [(u, False) for u in sorted(before - now)]
        if not changes:
            return []
        destinations = await self._hosts.current_hosts(room_id)
        return [
            OutboundEdu(
                destinations,
                "m.typing",
                {"room_id": room_id, "user_id": user_id, "typing": typing},
                coalesce_key=f"m.typing {room_id} {user_id}",
                ttl_ms=TYPING_TTL_MS,
            )
            for user_id, typing in changes
        ]


class ReceiptEdus:
    """``m.receipt`` for local users' public read receipts (never ``m.read.private``)."""

    kinds = frozenset({"receipt"})

    def __init__(self, receipts: ReceiptStore, hosts: RoomHosts, server_name: str) -> None:
        self._receipts = receipts
        self._hosts = hosts
        self._server_name = server_name

    async def edus_for(self, row: StreamRow) -> list[OutboundEdu]:
        if row.room_id is None or row.user_id is None:
            return []
        if server_of(row.user_id) != self._server_name:
            return []  # a remote user's receipt, received over federation
        room_id = row.room_id
        changed = await self._receipts.get_receipts_for_rooms(
            [room_id], row.position - 1, row.position
        )
        edus: list[OutboundEdu] = []
        destinations: frozenset[str] | None = None
        for r in changed:
            if r.receipt_type != "m.read" or server_of(r.user_id) != self._server_name:
                continue
            if destinations is None:
                destinations = await self._hosts.current_hosts(room_id)
            data: dict[str, Any] = {"ts": r.ts}
            if r.thread_id != UNTHREADED:
                data["thread_id"] = r.thread_id
            edus.append(
                OutboundEdu(
                    destinations,
                    "m.receipt",
                    {
                        room_id: {
                            r.receipt_type: {
                                r.user_id: {"event_ids": [r.event_id], "data": data}
                            }
                        }
                    },
                    coalesce_key=f"m.receipt {room_id} {r.receipt_type} {r.user_id}"
                    f" {r.thread_id}",
                )
            )
        return edus


class PresenceEdus:
    """``m.presence`` for local users, to every server sharing a room with them."""

    kinds = frozenset({"presence"})

    def __init__(
        self,
        presence: PresenceStore,
        events: EventStore,
        hosts: RoomHosts,
        clock: IReactorTime,
        server_name: str,
    ) -> None:
        self._presence = presence
        self._events = events
        self._hosts = hosts
        self._clock = clock
        self._server_name = server_name

    async def edus_for(self, row: StreamRow) -> list[OutboundEdu]:
        user_id = row.user_id
        if user_id is None or server_of(user_id) != self._server_name:
            return []
        state = await self._presence.get_presence(user_id)
        if state is None or state.stream_pos != row.position:
            return []  # changed again since: the newer row carries it
        rooms = await self._events.get_rooms_for_local_user(user_id, ("join",))
        destinations = await self._hosts.current_hosts_of_rooms(r[0] for r in rooms)
        if not destinations:
            return []
        now_ms = int(self._clock.seconds() * 1000)
        push: dict[str, Any] = {
            "user_id": user_id,
            "presence": state.state,
            "currently_active": state.currently_active and state.state == "online",
        }
        if state.last_active_ts:
            push["last_active_ago"] = max(0, now_ms - state.last_active_ts)
        if state.status_msg is not None:
            push["status_msg"] = state.status_msg
        return [
            OutboundEdu(
                destinations,
                "m.presence",
                {"push": [push]},
                coalesce_key=f"m.presence {user_id}",
            )
        ]
