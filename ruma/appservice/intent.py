"""The in-process appservice interface for Ruma's own bridge modules.

A built-in bridge is an appservice that lives in the process: it has a registration (its
namespaces, checked against the external appservices' like any other), it receives exactly
the transactions an external appservice would (same interest rules, same queue, same retry
on failure, same transaction IDs), and it acts through :class:`Intent` objects, which call
the same room, membership and profile services as the HTTP endpoints an external appservice
uses. A bridge and an external appservice therefore look the same to users.

    bridge = appservices.add_bridge(registration, on_transaction)
    alice = bridge.intent("@irc_alice:example.org")
    await alice.ensure_registered(displayname="alice (IRC)")
    await alice.join(room_id)
    await alice.send_message(room_id, {"msgtype": "m.text", "body": "hi"}, ts=ts)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.logger import Logger

from ruma.accounts import AccountService
from ruma.appservice.registration import Registration
from ruma.errors import Codes, MatrixError, forbidden
from ruma.rooms.creation import CreateRoomRequest
from ruma.rooms.service import RoomServices
from ruma.storage.events import TxnIdKey

__all__ = ["Bridge", "Intent", "TransactionHandler"]

# What a bridge is handed: (transaction ID, transaction body), as an external appservice's
# PUT /transactions/{txnId}. Raise to have it delivered again later.
TransactionHandler = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class Intent:
    """Acting as one user of a bridge's namespace (or its sender)."""

    log = Logger()

    def __init__(
        self, user_id: str, registration: Registration, accounts: AccountService,
        rooms: RoomServices,
    ) -> None:
        if user_id != registration.sender and not registration.is_user_in_namespace(user_id):
            raise forbidden(f"{user_id} is not in the namespace of {registration.id}")
        self.user_id = user_id
        self._reg = registration
        self._accounts = accounts
        self._rooms = rooms
        self._registered = False

    async def ensure_registered(self, displayname: str | None = None) -> None:
        """Create the account (like ``m.login.application_service`` registration) if needed."""
        if not self._registered:
            localpart = self.user_id[1:].partition(":")[0]
            created = await self._accounts.store.create_user(
                self.user_id,
                None,
                created_ts=self._accounts.now_ms(),
                appservice_id=self._reg.id,
                displayname=localpart,
            )
            self._registered = True
            if created and displayname is not None:
                await self.set_displayname(displayname)

    async def create_room(self, request: CreateRoomRequest) -> str:
        await self.ensure_registered()
        room_id, _ = await self._rooms.creator.create_room(request)
        return room_id

    async def join(self, room_id_or_alias: str, servers: list[str] | None = None) -> str:
        await self.ensure_registered()
        room_id = room_id_or_alias
        if room_id_or_alias.startswith("#"):
            room_id, alias_servers = await self._rooms.aliases.resolve(room_id_or_alias)
            servers = servers or alias_servers
        await self._rooms.membership.join(self.user_id, room_id, servers=servers or [])
        return room_id

    async def leave(self, room_id: str, reason: str | None = None) -> None:
        await self._rooms.membership.leave(self.user_id, room_id, reason=reason)

    async def invite(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        await self.ensure_registered()
        await self._rooms.membership.invite(self.user_id, room_id, user_id, reason=reason)

    async def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        await self.ensure_registered()
        await self._rooms.membership.kick(self.user_id, room_id, user_id, reason=reason)

    async def ban(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        await self.ensure_registered()
        await self._rooms.membership.ban(self.user_id, room_id, user_id, reason=reason)

    async def send_message(
        self,
        room_id: str,
        content: Mapping[str, Any],
        *,
        ts: int | None = None,
        txn_id: str | None = None,
    ) -> str:
        return await self.send_event(room_id, "m.room.message", content, ts=ts, txn_id=txn_id)

    async def send_event(
        self,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        *,
        ts: int | None = None,
        txn_id: str | None = None,
    ) -> str:
        """Send as this user; ``ts`` sets origin_server_ts, ``txn_id`` makes a retry idempotent."""
        await self.ensure_registered()
        key = None
        if txn_id is not None:
            key = TxnIdKey(self.user_id, f"appservice:{self._reg.id}", f"send:{txn_id}")
        return await self._rooms.messages.send_message(
            self.user_id, room_id, event_type, content, key, ts=ts
        )

    async def send_state(
        self,
        room_id: str,
        event_type: str,
        state_key: str,
        content: Mapping[str, Any],
        *,
        ts: int | None = None,
    ) -> str:
        await self.ensure_registered()
        return await self._rooms.messages.set_state(
            self.user_id, room_id, event_type, state_key, content, ts=ts
        )

    async def set_displayname(self, displayname: str | None) -> None:
        await self.ensure_registered()
        await self._rooms.profiles.set_field(self.user_id, self.user_id, "displayname",
                                             displayname)

    async def set_avatar_url(self, avatar_url: str | None) -> None:
        await self.ensure_registered()
        await self._rooms.profiles.set_field(self.user_id, self.user_id, "avatar_url",
                                             avatar_url)


class Bridge:
    """A bridge module's handle: its registration, its intents, and its transactions."""

    def __init__(
        self,
        registration: Registration,
        handler: TransactionHandler,
        accounts: AccountService,
        rooms: RoomServices,
    ) -> None:
        self.registration = registration
        self._handler = handler
        self._accounts = accounts
        self._rooms = rooms
        self._intents: dict[str, Intent] = {}

    @property
    def bot(self) -> Intent:
        """The bridge's own sender user."""
        return self.intent(self.registration.sender)

    def intent(self, user_id: str) -> Intent:
        """An intent for ``user_id`` (403 ``M_FORBIDDEN`` outside the namespace)."""
        intent = self._intents.get(user_id)
        if intent is None:
            try:
                intent = Intent(user_id, self.registration, self._accounts, self._rooms)
            except MatrixError as e:
                raise MatrixError(403, Codes.FORBIDDEN, e.msg) from e
            self._intents[user_id] = intent
        return intent

    async def __call__(self, reg: Registration, txn_id: str, body: Mapping[str, Any]) -> None:
        """The transaction sink: hand the transaction to the bridge's handler."""
        await self._handler(txn_id, body)
