"""Room aliases on this server: create, resolve, delete, list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from twisted.logger import Logger

from ruma.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from ruma.protocol.auth import get_send_level, get_user_power_level
from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.events import Event, StateKey
from ruma.protocol.ids import RoomAlias
from ruma.storage.events import EventStore
from ruma.storage.rooms import RoomStore

__all__ = ["AliasHandler", "RemoteDirectory"]


class RemoteDirectory(Protocol):
    """Federation's part of aliases: asking an alias's server what it names."""

    async def query_alias(self, alias: str) -> tuple[str, list[str]]:
        """``(room_id, servers)`` of a remote alias; 404 ``MatrixError`` if unknown."""
        ...


class AliasHandler:
    log = Logger()

    def __init__(
        self,
        rooms: RoomStore,
        store: EventStore,
        server_name: str,
        remote: RemoteDirectory | None = None,
    ) -> None:
        self._rooms = rooms
        self._store = store
        self.server_name = server_name
        # Federation plugs itself in here (remote aliases answer 404 without it).
        self.remote = remote
        # Appservices plug in here: asked about an unknown local alias, True if they created
        # it (GET /_matrix/app/v1/rooms/{alias}).
        self.query_unknown: Callable[[str], Awaitable[bool]] | None = None

    def parse(self, alias: str) -> RoomAlias:
        try:
            return RoomAlias.parse(alias)
        except InvalidIdentifier as e:
            raise invalid_param(f"Invalid room alias {alias!r}: {e}") from e

    def _local(self, alias: str) -> str:
        parsed = self.parse(alias)
        if str(parsed.server) != self.server_name:
            raise invalid_param("Room alias must be on this server")
        return alias

    async def create(self, user_id: str, alias: str, room_id: str) -> None:
        self._local(alias)
        try:
            RoomAlias.parse(alias, strict=True)
        except InvalidIdentifier as e:
            raise invalid_param(f"Invalid room alias {alias!r}: {e}") from e
        if await self._store.get_room_version(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        if not await self._rooms.create_alias(alias, room_id, user_id):
            raise MatrixError(409, Codes.UNKNOWN, f"Room alias {alias} already exists")
        self.log.info("{user_id} created alias {alias} for {room_id}",
                      user_id=user_id, alias=alias, room_id=room_id)

    async def resolve(self, alias: str) -> tuple[str, list[str]]:
        """``(room_id, servers)``; remote aliases need federation (404 until then)."""
        parsed = self.parse(alias)
        if str(parsed.server) != self.server_name:
            if self.remote is None:
                raise not_found(
                    f"Room alias {alias} not found (remote aliases are not available)"
                )
            room_id, servers = await self.remote.query_alias(alias)
            first = str(parsed.server)
            return room_id, [first] + [s for s in servers if s != first]
        entry = await self._rooms.get_alias(alias)
        if entry is None and self.query_unknown is not None and await self.query_unknown(alias):
            entry = await self._rooms.get_alias(alias)
        if entry is None:
            raise not_found(f"Room alias {alias} not found")
        hosts = await self._store.get_joined_hosts(entry.room_id)
        servers = [self.server_name] + sorted(h for h in hosts if h != self.server_name)
        return entry.room_id, servers

    async def delete(self, user_id: str, alias: str) -> None:
        """The alias's creator, or a member who may set the canonical alias, may delete it."""
        self._local(alias)
        entry = await self._rooms.get_alias(alias)
        if entry is None:
            raise not_found(f"Room alias {alias} not found")
        if entry.creator != user_id and not await self.may_manage(entry.room_id, user_id):
            raise forbidden("You don't have permission to delete the alias")
        await self._rooms.delete_alias(alias)

    async def may_manage(self, room_id: str, user_id: str) -> bool:
        """Joined, with the level to send ``m.room.canonical_alias``."""
        keys: list[StateKey] = [
            ("m.room.create", ""),
            ("m.room.power_levels", ""),
            ("m.room.member", user_id),
        ]
        ids = await self._store.get_current_state_keys(room_id, keys)
        events: dict[str, Event] = await self._store.get_pdus(ids.values())
        state = {k: events[eid] for k, eid in ids.items() if eid in events}
        member = state.get(("m.room.member", user_id))
        if member is None or member.membership != "join":
            return False
        needed = get_send_level("m.room.canonical_alias", "", state.get(("m.room.power_levels", "")))
        return get_user_power_level(user_id, state) >= needed

    async def list_for_room(self, room_id: str) -> list[str]:
        return await self._rooms.get_aliases_for_room(room_id)
