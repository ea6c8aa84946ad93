"""Account data: client-set JSON per user, global or per room, delivered by /sync."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ruma.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from ruma.handlers.push_rules import push_rules_account_data
from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.ids import RoomID
from ruma.storage.account_data import AccountDataStore

# Types the server controls; clients change them through other APIs (405 M_BAD_JSON).
SERVER_GLOBAL_TYPES = frozenset({"m.push_rules"})
SERVER_ROOM_TYPES = frozenset({"m.fully_read"})


class AccountDataHandler:
    def __init__(self, store: AccountDataStore) -> None:
        self.store = store

    async def get(self, requester: str, user_id: str, room_id: str | None, data_type: str) -> dict[str, Any]:
        if requester != user_id:
            raise forbidden("Cannot get account data for other users.")
        if room_id is not None:
            _check_room_id(room_id)
        content = await self.store.get_account_data(user_id, room_id, data_type)
        if content is None:
            if room_id is None and data_type == "m.push_rules":
                return push_rules_account_data(user_id)
            raise not_found("Account data not found")
        return content

    async def put(
        self,
        requester: str,
        user_id: str,
        room_id: str | None,
        data_type: str,
        content: Mapping[str, Any],
    ) -> int:
        if requester != user_id:
            raise forbidden("Cannot add account data for other users.")
        if room_id is not None:
            _check_room_id(room_id)
        server_types = SERVER_GLOBAL_TYPES if room_id is None else SERVER_ROOM_TYPES
        if data_type in server_types:
            raise MatrixError(405, Codes.BAD_JSON, f"Cannot set {data_type} through this API.")
        return await self.store.set_account_data(user_id, room_id, data_type, content)

    async def set_fully_read(self, user_id: str, room_id: str, event_id: str) -> int:
        """The read marker, stored as room account data ``m.fully_read``."""
        return await self.store.set_account_data(
            user_id, room_id, "m.fully_read", {"event_id": event_id}
        )


def _check_room_id(room_id: str) -> None:
    try:
        RoomID.parse(room_id)
    except InvalidIdentifier:
        raise invalid_param(f"Invalid room ID {room_id!r}") from None
