"""Server-side key backup endpoints: ``/room_keys/version[/{version}]`` and
``/room_keys/keys[/{roomId}[/{sessionId}]]``."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import parse_json_object, query_str
from ruma.client.router import ClientRouter, JsonDict
from ruma.e2ee.backup import KeyBackups

__all__ = ["RoomKeyEndpoints"]


class RoomKeyEndpoints:
    def __init__(self, *, auth: Authenticator, backups: KeyBackups) -> None:
        self._auth = auth
        self._backups = backups

    def register_routes(self, router: ClientRouter) -> None:
        r = router.route
        r("/room_keys/version", ["POST"])(self.on_create_version)
        r("/room_keys/version", ["GET"])(self.on_get_current_version)
        r("/room_keys/version/<version>", ["GET"])(self.on_get_version)
        r("/room_keys/version/<version>", ["PUT"])(self.on_update_version)
        r("/room_keys/version/<version>", ["DELETE"])(self.on_delete_version)
        r("/room_keys/keys", ["GET", "PUT", "DELETE"])(self.on_keys)
        r("/room_keys/keys/<room_id>", ["GET", "PUT", "DELETE"])(self.on_room_keys)
        r("/room_keys/keys/<room_id>/<session_id>", ["GET", "PUT", "DELETE"])(
            self.on_session_key
        )

    async def _user(self, request: IRequest) -> str:
        return (await self._auth.get_requester(request)).user_id

    async def on_create_version(self, request: IRequest) -> JsonDict:
        user_id = await self._user(request)
        return await self._backups.create_version(user_id, parse_json_object(request))

    async def on_get_current_version(self, request: IRequest) -> JsonDict:
        return await self._backups.get_version(await self._user(request), None)

    async def on_get_version(self, request: IRequest, version: str) -> JsonDict:
        return await self._backups.get_version(await self._user(request), version)

    async def on_update_version(self, request: IRequest, version: str) -> JsonDict:
        user_id = await self._user(request)
        return await self._backups.update_version(user_id, version, parse_json_object(request))

    async def on_delete_version(self, request: IRequest, version: str) -> JsonDict:
        return await self._backups.delete_version(await self._user(request), version)

    async def _keys(
        self, request: IRequest, room_id: str | None, session_id: str | None
    ) -> JsonDict:
        user_id = await self._user(request)
        version = query_str(request, "version")
        method = request.method
        if method == b"PUT":
            body = parse_json_object(request)
            return await self._backups.put_keys(user_id, version, body, room_id, session_id)
        if method == b"DELETE":
            return await self._backups.delete_keys(user_id, version, room_id, session_id)
        return await self._backups.get_keys(user_id, version, room_id, session_id)

    async def on_keys(self, request: IRequest) -> JsonDict:
        return await self._keys(request, None, None)

    async def on_room_keys(self, request: IRequest, room_id: str) -> JsonDict:
        return await self._keys(request, room_id, None)

    async def on_session_key(self, request: IRequest, room_id: str, session_id: str) -> JsonDict:
        return await self._keys(request, room_id, session_id)
