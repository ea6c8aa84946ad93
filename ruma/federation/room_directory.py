"""Asking other servers about their rooms for clients: ``publicRooms`` and ``hierarchy``.

Implements :class:`ruma.rooms.discovery.RemoteDiscovery`. A remote failure becomes our own
404, never the remote's error body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

from twisted.logger import Logger

from ruma.errors import not_found
from ruma.federation.http import FederationError

__all__ = ["FederationRoomDirectory"]

FED_V1 = "/_matrix/federation/v1"


class _JSONClient(Protocol):
    async def get_json(self, destination: str, path: str, **kw: Any) -> Any: ...

    async def post_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any: ...


class FederationRoomDirectory:
    log = Logger()

    def __init__(self, client: _JSONClient) -> None:
        self._client = client

    async def public_rooms(
        self, server: str, *, limit: int | None, since: str | None, filter: Mapping[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if limit is not None:
            body["limit"] = limit
        if since is not None:
            body["since"] = since
        if filter:
            body["filter"] = dict(filter)
        try:
            answer = await self._client.post_json(server, f"{FED_V1}/publicRooms", body)
        except FederationError as e:
            self.log.info("publicRooms from {server} failed: {e}", server=server, e=e)
            # Like an unreachable alias server: our own 404, never the remote's error.
            raise not_found(f"Could not get the public rooms of {server}") from e
        if not isinstance(answer, dict):
            raise not_found(f"{server} gave no usable public rooms list")
        return answer

    async def hierarchy(
        self, server: str, room_id: str, *, suggested_only: bool
    ) -> dict[str, Any] | None:
        try:
            answer = await self._client.get_json(
                server,
                f"{FED_V1}/hierarchy/{quote(room_id, safe='')}",
                query={"suggested_only": "true" if suggested_only else "false"},
            )
        except FederationError as e:
            self.log.info("hierarchy of {room_id} from {server} failed: {e}",
                          room_id=room_id, server=server, e=e)
            return None
        return answer if isinstance(answer, dict) else None
