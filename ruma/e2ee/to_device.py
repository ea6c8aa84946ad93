"""Send-to-device messaging: ``PUT /sendToDevice/{type}/{txnId}`` and ``/sync``'s
``to_device``.

A request is handled once per sending device and transaction ID. Messages for our users
wait in their devices' inboxes until a sync response has carried them and the client has
acknowledged it by syncing from that response's token. Messages for other servers' users
go into the federation outbox, one ``m.direct_to_device`` EDU per destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.errors import bad_json, invalid_param
from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.ids import UserID
from ruma.storage.e2ee import E2EStore

__all__ = ["MAX_TO_DEVICE_PER_SYNC", "ToDevice"]

# Like Synapse: a sync carries at most this many; the rest follow in the next responses.
MAX_TO_DEVICE_PER_SYNC = 100
# A client retries a transaction within minutes; its ID is remembered for a day, and the
# forgetting runs at most once an hour, on a send.
TXN_ID_LIFETIME_S = 24 * 3600.0
PRUNE_INTERVAL_S = 3600.0


class ToDevice:
    log = Logger()

    def __init__(self, *, store: E2EStore, clock: IReactorTime, server_name: str) -> None:
        self._store = store
        self._clock = clock
        self._server_name = server_name
        self._last_prune = clock.seconds()

    async def send(
        self,
        *,
        sender: str,
        sender_key: str,
        event_type: str,
        txn_id: str,
        messages: Any,
    ) -> bool:
        """Queue the messages; False if this transaction was handled before.

        ``sender_key`` names the sending device (or access token) the transaction ID
        belongs to.
        """
        if not isinstance(messages, Mapping):
            raise bad_json("'messages' must be an object")
        local: dict[str, dict[str, Mapping[str, Any]]] = {}
        remote: dict[str, dict[str, dict[str, Mapping[str, Any]]]] = {}
        for user_id, by_device in messages.items():
            try:
                server = str(UserID.parse(user_id).server)
            except (InvalidIdentifier, ValueError, TypeError):
                raise invalid_param(f"Invalid user ID {user_id!r}") from None
            if not isinstance(by_device, Mapping):
                raise bad_json(f"'messages.{user_id}' must be an object")
            for device_id, content in by_device.items():
                if not isinstance(content, Mapping):
                    raise bad_json(f"'messages.{user_id}.{device_id}' must be an object")
            if server == self._server_name:
                local[user_id] = dict(by_device)
            else:
                remote.setdefault(server, {})[user_id] = dict(by_device)
        now = self._clock.seconds()
        if now - self._last_prune >= PRUNE_INTERVAL_S:
            self._last_prune = now
            await self._store.delete_old_to_device_txns(int((now - TXN_ID_LIFETIME_S) * 1000))
        return await self._store.add_to_device(
            sender=sender,
            sender_key=sender_key,
            txn_id=txn_id,
            message_type=event_type,
            local=local,
            remote=remote,
            now_ms=int(self._clock.seconds() * 1000),
        )

    async def for_sync(
        self, user_id: str, device_id: str, since: int | None, upto: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """The device's to-device events for a response ending at ``upto`` (acknowledging
        those of responses up to ``since``), and whether more are waiting."""
        return await self._store.take_to_device_for_sync(
            user_id, device_id, since, upto, MAX_TO_DEVICE_PER_SYNC
        )
