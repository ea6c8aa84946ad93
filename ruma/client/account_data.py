"""``GET/PUT /user/{userId}/account_data/{type}`` and the per-room variant."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import parse_json_object
from ruma.client.router import ClientRouter, JsonDict
from ruma.handlers.account_data import AccountDataHandler


class AccountDataEndpoints:
    def __init__(self, *, auth: Authenticator, account_data: AccountDataHandler) -> None:
        self._auth = auth
        self._data = account_data

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/user/<user_id>/account_data/<data_type>", ["GET"])(self.on_get)
        router.route("/user/<user_id>/account_data/<data_type>", ["PUT"])(self.on_put)
        router.route("/user/<user_id>/rooms/<room_id>/account_data/<data_type>", ["GET"])(
            self.on_get_room
        )
        router.route("/user/<user_id>/rooms/<room_id>/account_data/<data_type>", ["PUT"])(
            self.on_put_room
        )

    async def on_get(self, request: IRequest, user_id: str, data_type: str) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        return await self._data.get(requester.user_id, user_id, None, data_type)

    async def on_put(self, request: IRequest, user_id: str, data_type: str) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        body = parse_json_object(request)
        await self._data.put(requester.user_id, user_id, None, data_type, body)
        return {}

    async def on_get_room(
        self, request: IRequest, user_id: str, room_id: str, data_type: str
    ) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        return await self._data.get(requester.user_id, user_id, room_id, data_type)

    async def on_put_room(
        self, request: IRequest, user_id: str, room_id: str, data_type: str
    ) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        body = parse_json_object(request)
        await self._data.put(requester.user_id, user_id, room_id, data_type, body)
        return {}
