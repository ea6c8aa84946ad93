"""Room aliases (``/directory/room/{alias}``, ``/rooms/{id}/aliases``) and directory
visibility (``/directory/list/room/{id}``)."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import body_str, parse_json_object
from ruma.client.rooms import room_id_arg
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import forbidden, invalid_param, missing_param, not_found
from ruma.rooms.service import RoomServices

__all__ = ["DirectoryEndpoints"]


class DirectoryEndpoints:
    def __init__(self, *, auth: Authenticator, rooms: RoomServices) -> None:
        self._auth = auth
        self._rooms = rooms

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/directory/room/<alias>", ["GET"])(self.on_get_alias)
        router.route("/directory/room/<alias>", ["PUT"])(self.on_put_alias)
        router.route("/directory/room/<alias>", ["DELETE"])(self.on_delete_alias)
        router.route("/rooms/<room_id>/aliases", ["GET"])(self.on_room_aliases)
        router.route("/directory/list/room/<room_id>", ["GET"])(self.on_get_visibility)
        router.route("/directory/list/room/<room_id>", ["PUT"])(self.on_put_visibility)

    async def on_get_alias(self, request: IRequest, alias: str) -> JsonDict:
        room_id, servers = await self._rooms.aliases.resolve(alias)
        return {"room_id": room_id, "servers": servers}

    async def on_put_alias(self, request: IRequest, alias: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        room_id = body_str(body, "room_id")
        assert room_id is not None
        room_id_arg(room_id)
        await self._rooms.aliases.create(requester.user_id, alias, room_id)
        return {}

    async def on_delete_alias(self, request: IRequest, alias: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        await self._rooms.aliases.delete(requester.user_id, alias)
        return {}

    async def on_room_aliases(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        # Readable by members, and by anyone if the room is world-readable.
        await self._rooms.reader.access(requester.user_id, room_id)
        return {"aliases": await self._rooms.aliases.list_for_room(room_id)}

    async def on_get_visibility(self, request: IRequest, room_id: str) -> JsonDict:
        room_id_arg(room_id)
        public = await self._rooms.rooms.is_room_public(room_id)
        if public is None:
            raise not_found(f"Unknown room {room_id}")
        return {"visibility": "public" if public else "private"}

    async def on_put_visibility(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        body = parse_json_object(request)
        visibility = body_str(body, "visibility", required=False, default="public")
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be 'public' or 'private'")
        if await self._rooms.rooms.is_room_public(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        if not await self._rooms.aliases.may_manage(room_id, requester.user_id):
            raise forbidden("You don't have permission to change the room's visibility")
        if visibility is None:
            raise missing_param("Missing parameter 'visibility'")
        await self._rooms.rooms.set_room_public(room_id, visibility == "public")
        return {}
