"""The seams between end-to-end encryption and federation.

Outbound: :class:`RemoteKeyQuerier` is what ``/keys/query`` and ``/keys/claim`` use for other
servers' users. :class:`FederationKeyQuerier` implements it over anything with the
federation client's ``post_json`` (``ruma.federation.http.FederationClient``), calling
``/_matrix/federation/v1/user/keys/query`` and ``/user/keys/claim``.

Inbound: :class:`InboundDeviceEdus` handles the EDUs other servers send about devices
(``m.direct_to_device``, ``m.device_list_update``, ``m.signing_key_update``); the
federation EDU handler hands them over with ``on_edu(origin, edu_type, content)``.
Other servers' queries and claims about our users are answered by
:meth:`ruma.e2ee.keys.E2EKeys.query_local` and :meth:`~ruma.e2ee.keys.E2EKeys.claim_local`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.ids import UserID
from ruma.storage.e2ee import E2EStore

__all__ = [
    "DEVICE_EDU_TYPES",
    "FederationKeyQuerier",
    "FederationPoster",
    "InboundDeviceEdus",
    "RemoteKeyQuerier",
]

FED_V1 = "/_matrix/federation/v1"
DEVICE_EDU_TYPES = frozenset({"m.direct_to_device", "m.device_list_update", "m.signing_key_update"})


class RemoteKeyQuerier(Protocol):
    """Asks another server about its users' keys. Errors propagate (the caller records the
    server under ``failures``)."""

    async def query_keys(
        self, destination: str, device_keys: Mapping[str, list[str]], timeout_ms: int
    ) -> Mapping[str, Any]:
        """The server's ``user/keys/query`` answer (``device_keys``, ``master_keys``,
        ``self_signing_keys``)."""
        ...

    async def claim_keys(
        self, destination: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_ms: int
    ) -> Mapping[str, Any]:
        """The server's ``user/keys/claim`` answer (``one_time_keys``)."""
        ...


class FederationPoster(Protocol):
    async def post_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any: ...


class FederationKeyQuerier:
    """:class:`RemoteKeyQuerier` over the signed federation client."""

    def __init__(self, client: FederationPoster) -> None:
        self._client = client

    async def query_keys(
        self, destination: str, device_keys: Mapping[str, list[str]], timeout_ms: int
    ) -> Mapping[str, Any]:
        answer = await self._client.post_json(
            destination,
            f"{FED_V1}/user/keys/query",
            {"device_keys": dict(device_keys)},
            timeout=_seconds(timeout_ms),
        )
        return answer if isinstance(answer, Mapping) else {}

    async def claim_keys(
        self, destination: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_ms: int
    ) -> Mapping[str, Any]:
        answer = await self._client.post_json(
            destination,
            f"{FED_V1}/user/keys/claim",
            {"one_time_keys": {u: dict(d) for u, d in one_time_keys.items()}},
            timeout=_seconds(timeout_ms),
        )
        return answer if isinstance(answer, Mapping) else {}


def _seconds(timeout_ms: int) -> float:
    return max(timeout_ms, 1000) / 1000.0


def _user_of(value: Any, origin: str) -> str | None:
    """``value`` if it is a user ID of ``origin``."""
    if not isinstance(value, str):
        return None
    try:
        parsed = UserID.parse(value)
    except (InvalidIdentifier, ValueError):
        return None
    return value if str(parsed.server) == origin else None


class InboundDeviceEdus:
    """Device EDUs from other servers. Each is believed only about the sending server's
    own users; malformed ones are dropped (an EDU has no answer)."""

    log = Logger()

    def __init__(self, *, clock: IReactorTime, store: E2EStore, server_name: str) -> None:
        self._clock = clock
        self._store = store
        self._server_name = server_name

    async def on_edu(self, origin: str, edu_type: str, content: Mapping[str, Any]) -> None:
        if edu_type == "m.direct_to_device":
            await self._on_to_device(origin, content)
        elif edu_type in ("m.device_list_update", "m.signing_key_update"):
            user_id = _user_of(content.get("user_id"), origin)
            if user_id is not None:
                device_id = content.get("device_id")
                await self._store.mark_device_list_changed(
                    user_id, device_id if isinstance(device_id, str) else None
                )

    async def _on_to_device(self, origin: str, content: Mapping[str, Any]) -> None:
        sender = _user_of(content.get("sender"), origin)
        message_type = content.get("type")
        message_id = content.get("message_id")
        messages = content.get("messages")
        if (
            sender is None
            or not isinstance(message_type, str)
            or not isinstance(message_id, str)
            or not isinstance(messages, Mapping)
        ):
            return
        local: dict[str, dict[str, Mapping[str, Any]]] = {}
        for user_id, by_device in messages.items():
            if not isinstance(user_id, str) or not isinstance(by_device, Mapping):
                continue
            if user_id.partition(":")[2] != self._server_name:
                continue
            for device_id, body in by_device.items():
                if isinstance(device_id, str) and isinstance(body, Mapping):
                    local.setdefault(user_id, {})[device_id] = body
        if local:
            await self._store.add_remote_to_device(
                origin=origin,
                sender=sender,
                message_id=message_id,
                message_type=message_type,
                local=local,
                now_ms=int(self._clock.seconds() * 1000),
            )
