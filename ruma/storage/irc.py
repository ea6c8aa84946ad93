"""SQL for the IRC bridge (migration ``0040_irc_bridge.sql``): portals, DM rooms, puppets,
virtual users, relayed messages and admin rooms.

The bridge (``ruma.bridges.irc``) sees this store only through the narrow
``ruma.bridges.irc.store.BridgeStore`` protocol. Channel and nick keys are folded with the
RFC 1459 case mapping, so ``#Chan`` and ``#chan`` (or ``[x]`` and ``{x}``) are one row.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruma.storage.database import Database, Txn

__all__ = ["IrcStore", "Portal", "PuppetRow", "RelayedMessage"]


@dataclass(frozen=True, slots=True)
class Portal:
    network: str
    channel: str
    room_id: str
    kind: str  # "static" | "dynamic"


@dataclass(frozen=True, slots=True)
class PuppetRow:
    network: str
    user_id: str
    nick: str
    wanted_nick: str | None
    last_active_ts: int


@dataclass(frozen=True, slots=True)
class RelayedMessage:
    event_id: str
    room_id: str
    network: str
    target: str
    nick: str
    msgid: str | None
    body: str
    direction: str  # "to_irc" | "to_matrix"
    ts: int


def _key(name: str) -> str:
    return name.lower().translate(str.maketrans("[]\\~", "{}|^"))


class IrcStore:
    """The IRC bridge's rows in the homeserver's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- portals -----------------------------------------------------------------------

    async def add_portal(self, portal: Portal, ts: int) -> Portal:
        """Record a portal; if the channel already has one, that one is returned."""

        def txn_fn(txn: Txn) -> Portal:
            row = txn.select_one(
                "SELECT channel, room_id, kind FROM irc_portals WHERE network = ? AND "
                "channel_key = ?", (portal.network, _key(portal.channel)))
            if row is not None:
                return Portal(portal.network, row[0], row[1], row[2])
            txn.execute(
                "INSERT INTO irc_portals (network, channel_key, channel, room_id, kind, "
                "created_ts) VALUES (?, ?, ?, ?, ?, ?)",
                (portal.network, _key(portal.channel), portal.channel, portal.room_id,
                 portal.kind, ts))
            return portal

        return await self._db.run("add_irc_portal", txn_fn)

    async def get_portals(self, network: str | None = None) -> list[Portal]:
        def txn_fn(txn: Txn) -> list[Portal]:
            sql = "SELECT network, channel, room_id, kind FROM irc_portals"
            args: tuple[str, ...] = ()
            if network is not None:
                sql += " WHERE network = ?"
                args = (network,)
            return [Portal(*row) for row in txn.select(sql + " ORDER BY created_ts", args)]

        return await self._db.run("get_irc_portals", txn_fn)

    async def delete_portal(self, network: str, channel: str) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM irc_portals WHERE network = ? AND channel_key = ?",
                        (network, _key(channel)))

        await self._db.run("delete_irc_portal", txn_fn)

    # -- direct messages -----------------------------------------------------------------

    async def set_dm_room(self, network: str, matrix_user: str, nick: str, room_id: str) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "DELETE FROM irc_dm_rooms WHERE network = ? AND matrix_user = ? AND nick_key = ?",
                (network, matrix_user, _key(nick)))
            txn.execute(
                "INSERT INTO irc_dm_rooms (network, matrix_user, nick_key, room_id) "
                "VALUES (?, ?, ?, ?)", (network, matrix_user, _key(nick), room_id))

        await self._db.run("set_irc_dm_room", txn_fn)

    async def get_dm_room(self, network: str, matrix_user: str, nick: str) -> str | None:
        def txn_fn(txn: Txn) -> str | None:
            row = txn.select_one(
                "SELECT room_id FROM irc_dm_rooms WHERE network = ? AND matrix_user = ? AND "
                "nick_key = ?", (network, matrix_user, _key(nick)))
            return str(row[0]) if row else None

        return await self._db.run("get_irc_dm_room", txn_fn)

    async def get_dm_by_room(self, room_id: str) -> tuple[str, str, str] | None:
        """``(network, matrix_user, nick_key)`` of a DM room."""

        def txn_fn(txn: Txn) -> tuple[str, str, str] | None:
            row = txn.select_one(
                "SELECT network, matrix_user, nick_key FROM irc_dm_rooms WHERE room_id = ?",
                (room_id,))
            return (row[0], row[1], row[2]) if row else None

        return await self._db.run("get_irc_dm_by_room", txn_fn)

    # -- puppets -------------------------------------------------------------------------

    async def save_puppet(self, row: PuppetRow) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "INSERT INTO irc_puppets (network, user_id, nick, wanted_nick, last_active_ts) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (network, user_id) DO UPDATE SET "
                "nick = excluded.nick, wanted_nick = excluded.wanted_nick, "
                "last_active_ts = excluded.last_active_ts",
                (row.network, row.user_id, row.nick, row.wanted_nick, row.last_active_ts))

        await self._db.run("save_irc_puppet", txn_fn)

    async def get_puppets(self, network: str) -> list[PuppetRow]:
        def txn_fn(txn: Txn) -> list[PuppetRow]:
            return [PuppetRow(*r) for r in txn.select(
                "SELECT network, user_id, nick, wanted_nick, last_active_ts FROM irc_puppets "
                "WHERE network = ?", (network,))]

        return await self._db.run("get_irc_puppets", txn_fn)

    async def delete_puppet(self, network: str, user_id: str) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM irc_puppets WHERE network = ? AND user_id = ?",
                        (network, user_id))

        await self._db.run("delete_irc_puppet", txn_fn)

    # -- virtual users -------------------------------------------------------------------

    async def set_virtual_user(self, user_id: str, network: str, nick: str) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute(
                "INSERT INTO irc_virtual_users (user_id, network, nick) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET nick = excluded.nick",
                (user_id, network, nick))

        await self._db.run("set_irc_virtual_user", txn_fn)

    async def get_virtual_users(self, network: str) -> dict[str, str]:
        """``user_id -> nick``."""

        def txn_fn(txn: Txn) -> dict[str, str]:
            return {r[0]: r[1] for r in txn.select(
                "SELECT user_id, nick FROM irc_virtual_users WHERE network = ?", (network,))}

        return await self._db.run("get_irc_virtual_users", txn_fn)

    # -- messages ------------------------------------------------------------------------

    async def add_message(self, m: RelayedMessage) -> None:
        def txn_fn(txn: Txn) -> None:
            if txn.select_one("SELECT 1 FROM irc_messages WHERE event_id = ?", (m.event_id,)):
                return
            txn.execute(
                "INSERT INTO irc_messages (event_id, room_id, network, target, nick, msgid, "
                "body, direction, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (m.event_id, m.room_id, m.network, m.target, m.nick, m.msgid, m.body[:2000],
                 m.direction, m.ts))

        await self._db.run("add_irc_message", txn_fn)

    async def get_message(self, event_id: str) -> RelayedMessage | None:
        def txn_fn(txn: Txn) -> RelayedMessage | None:
            row = txn.select_one(
                "SELECT event_id, room_id, network, target, nick, msgid, body, direction, ts "
                "FROM irc_messages WHERE event_id = ?", (event_id,))
            return RelayedMessage(*row) if row else None

        return await self._db.run("get_irc_message", txn_fn)

    async def get_message_by_msgid(self, network: str, msgid: str) -> RelayedMessage | None:
        def txn_fn(txn: Txn) -> RelayedMessage | None:
            row = txn.select_one(
                "SELECT event_id, room_id, network, target, nick, msgid, body, direction, ts "
                "FROM irc_messages WHERE network = ? AND msgid = ?", (network, msgid))
            return RelayedMessage(*row) if row else None

        return await self._db.run("get_irc_message_by_msgid", txn_fn)

    # -- admin rooms ---------------------------------------------------------------------

    async def set_admin_room(self, user_id: str, room_id: str) -> None:
        def txn_fn(txn: Txn) -> None:
            txn.execute("DELETE FROM irc_admin_rooms WHERE user_id = ?", (user_id,))
            txn.execute("INSERT INTO irc_admin_rooms (user_id, room_id) VALUES (?, ?)",
                        (user_id, room_id))

        await self._db.run("set_irc_admin_room", txn_fn)

    async def get_admin_room_owner(self, room_id: str) -> str | None:
        def txn_fn(txn: Txn) -> str | None:
            row = txn.select_one("SELECT user_id FROM irc_admin_rooms WHERE room_id = ?",
                                 (room_id,))
            return str(row[0]) if row else None

        return await self._db.run("get_irc_admin_room_owner", txn_fn)

    async def get_admin_room(self, user_id: str) -> str | None:
        def txn_fn(txn: Txn) -> str | None:
            row = txn.select_one("SELECT room_id FROM irc_admin_rooms WHERE user_id = ?",
                                 (user_id,))
            return str(row[0]) if row else None

        return await self._db.run("get_irc_admin_room", txn_fn)
