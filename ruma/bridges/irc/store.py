"""What the IRC bridge asks of its storage: a narrow, typed port.

The SQL lives with every other store, in :mod:`ruma.storage.irc`; the bridge depends only on
this protocol (which that ``IrcStore`` satisfies), so it can be tested against anything that
keeps the same promises.
"""

from __future__ import annotations

from typing import Protocol

from ruma.storage.irc import Portal, PuppetRow, RelayedMessage

__all__ = ["BridgeStore"]


class BridgeStore(Protocol):
    """Channels, DMs, puppets, virtual users, relayed messages and admin rooms. Channel and
    nick arguments are matched case-insensitively under the IRC case mapping."""

    async def add_portal(self, portal: Portal, ts: int) -> Portal:
        """Record a portal; if the channel already has one, that one is returned."""

    async def get_portals(self, network: str | None = None) -> list[Portal]:
        """Every portal (of ``network``), oldest first."""

    async def set_dm_room(self, network: str, matrix_user: str, nick: str, room_id: str) -> None:
        """The DM room between ``matrix_user`` and IRC ``nick`` is now ``room_id``."""

    async def get_dm_room(self, network: str, matrix_user: str, nick: str) -> str | None:
        """The DM room between ``matrix_user`` and IRC ``nick``, if there is one."""

    async def get_dm_by_room(self, room_id: str) -> tuple[str, str, str] | None:
        """``(network, matrix_user, nick_key)`` of a DM room."""

    async def save_puppet(self, row: PuppetRow) -> None:
        """Create or update a Matrix user's IRC puppet."""

    async def get_puppets(self, network: str) -> list[PuppetRow]:
        """Every puppet on ``network``."""

    async def set_virtual_user(self, user_id: str, network: str, nick: str) -> None:
        """The Matrix ghost ``user_id`` stands for IRC ``nick``."""

    async def get_virtual_users(self, network: str) -> dict[str, str]:
        """``user_id -> nick`` of the ghosts on ``network``."""

    async def add_message(self, m: RelayedMessage) -> None:
        """Remember a relayed message (once per event ID)."""

    async def get_message(self, event_id: str) -> RelayedMessage | None:
        """The relayed message of a Matrix event, if it was relayed."""

    async def set_admin_room(self, user_id: str, room_id: str) -> None:
        """``room_id`` is now ``user_id``'s admin room."""

    async def get_admin_room_owner(self, room_id: str) -> str | None:
        """Whose admin room ``room_id`` is, if anyone's."""

    async def get_admin_room(self, user_id: str) -> str | None:
        """``user_id``'s admin room, if any."""
