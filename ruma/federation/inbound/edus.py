"""EDUs from other servers: typing, read receipts, presence.

Each EDU is only believed about users of the server that sent it, and for rooms only
when the room's server ACL allows that server and the user is joined to the room.
Malformed EDUs are dropped quietly (an EDU has no answer). ``m.device_list_update``,
``m.signing_key_update`` and ``m.direct_to_device`` go to :attr:`EDUHandler.devices`
(``ruma.e2ee.remote.InboundDeviceEdus``, plugged in by ``ruma.tap`` once end-to-end
encryption is built), and are dropped when nothing is plugged in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.federation.access import RoomAccess, server_of
from ruma.storage.events import EventStore
from ruma.storage.presence import PresenceStore
from ruma.storage.receipts import UNTHREADED, ReceiptStore

__all__ = ["DeviceEduSink", "EDUHandler", "TypingSink"]

PRESENCE_STATES = frozenset({"online", "unavailable", "offline"})
# Remote typing notifications carry no timeout; Synapse's is 30 s too.
REMOTE_TYPING_TIMEOUT_MS = 30_000
DEVICE_EDUS = frozenset({"m.device_list_update", "m.signing_key_update", "m.direct_to_device"})


class DeviceEduSink(Protocol):
    """:meth:`ruma.e2ee.remote.InboundDeviceEdus.on_edu`."""

    async def on_edu(self, origin: str, edu_type: str, content: Mapping[str, Any]) -> None: ...


class SharedRooms(Protocol):
    """:meth:`ruma.storage.federation.FederationInboundStore.shares_room_with_local_users`."""

    async def shares_room_with_local_users(self, user_id: str) -> bool: ...


class TypingSink(Protocol):
    """:meth:`ruma.handlers.typing.TypingHandler.apply`."""

    async def apply(
        self, room_id: str, user_id: str, typing: bool, timeout_ms: int | None = None
    ) -> None: ...


class EDUHandler:
    log = Logger()

    def __init__(
        self,
        *,
        clock: IReactorTime,
        events: EventStore,
        access: RoomAccess,
        typing: TypingSink | None = None,
        receipts: ReceiptStore | None = None,
        presence: PresenceStore | None = None,
        rooms: SharedRooms | None = None,
    ) -> None:
        self._clock = clock
        self._events = events
        self._access = access
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._rooms = rooms
        # The seam for device EDUs (set after construction: e2ee is built later).
        self.devices: DeviceEduSink | None = None

    async def on_edu(self, origin: str, edu: Any) -> None:
        if not isinstance(edu, Mapping):
            return
        edu_type = edu.get("edu_type")
        content = edu.get("content")
        if not isinstance(edu_type, str) or not isinstance(content, Mapping):
            return
        try:
            if edu_type == "m.typing":
                await self._on_typing(origin, content)
            elif edu_type == "m.receipt":
                await self._on_receipt(origin, content)
            elif edu_type == "m.presence":
                await self._on_presence(origin, content)
            elif edu_type in DEVICE_EDUS:
                if self.devices is not None:
                    await self.devices.on_edu(origin, edu_type, content)
            else:
                self.log.debug("unknown EDU {edu_type} from {origin}", edu_type=edu_type,
                               origin=origin)
        except Exception:
            self.log.failure("handling {edu_type} from {origin}", edu_type=edu_type,
                             origin=origin)

    async def _user_in_room(self, origin: str, user_id: Any, room_id: Any) -> bool:
        if not isinstance(user_id, str) or not isinstance(room_id, str):
            return False
        if server_of(user_id) != origin:
            return False
        if not await self._access.acl_allows(room_id, origin):
            return False
        member = await self._events.get_current_state_event(room_id, "m.room.member", user_id)
        return member is not None and member.membership == "join"

    async def _on_typing(self, origin: str, content: Mapping[str, Any]) -> None:
        if self._typing is None:
            return
        room_id, user_id, typing = (
            content.get("room_id"),
            content.get("user_id"),
            content.get("typing"),
        )
        if not isinstance(typing, bool) or not await self._user_in_room(origin, user_id,
                                                                         room_id):
            return
        assert isinstance(room_id, str) and isinstance(user_id, str)
        await self._typing.apply(room_id, user_id, typing, REMOTE_TYPING_TIMEOUT_MS)

    async def _on_receipt(self, origin: str, content: Mapping[str, Any]) -> None:
        if self._receipts is None:
            return
        for room_id, by_type in content.items():
            if not isinstance(by_type, Mapping):
                continue
            receipts = by_type.get("m.read")
            if not isinstance(receipts, Mapping):
                continue
            for user_id, receipt in receipts.items():
                if not isinstance(receipt, Mapping):
                    continue
                event_ids = receipt.get("event_ids")
                if not isinstance(event_ids, list) or not event_ids:
                    continue
                event_id = event_ids[-1]
                if not isinstance(event_id, str):
                    continue
                if not await self._user_in_room(origin, user_id, room_id):
                    continue
                data = receipt.get("data")
                data = data if isinstance(data, Mapping) else {}
                ts = data.get("ts")
                if not isinstance(ts, int) or isinstance(ts, bool):
                    ts = int(self._clock.seconds() * 1000)
                thread = data.get("thread_id")
                await self._receipts.set_receipt(
                    room_id,
                    "m.read",
                    user_id,
                    thread if isinstance(thread, str) else UNTHREADED,
                    event_id,
                    ts,
                )

    async def _on_presence(self, origin: str, content: Mapping[str, Any]) -> None:
        if self._presence is None:
            return
        push = content.get("push")
        if not isinstance(push, list):
            return
        now = int(self._clock.seconds() * 1000)
        for item in push:
            if not isinstance(item, Mapping):
                continue
            user_id, state = item.get("user_id"), item.get("presence")
            if not isinstance(user_id, str) or server_of(user_id) != origin:
                continue
            if state not in PRESENCE_STATES:
                continue
            # Only about users our users can see: those sharing a room with one of them.
            if self._rooms is not None and not await self._rooms.shares_room_with_local_users(
                user_id
            ):
                continue
            ago = item.get("last_active_ago")
            ago = ago if isinstance(ago, int) and not isinstance(ago, bool) and ago >= 0 else 0
            status = item.get("status_msg")
            await self._presence.set_presence(
                user_id,
                state,
                status if isinstance(status, str) else None,
                now - ago,
                item.get("currently_active") is True,
            )
