"""``POST /user/{userId}/filter`` and ``GET /user/{userId}/filter/{filterId}``."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import parse_json_object
from ruma.client.router import ClientRouter, JsonDict
from ruma.handlers.filters import FilterHandler


class FilterEndpoints:
    def __init__(self, *, auth: Authenticator, filters: FilterHandler) -> None:
        self._auth = auth
        self._filters = filters

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/user/<user_id>/filter", ["POST"])(self.on_create)
        router.route("/user/<user_id>/filter/<filter_id>", ["GET"])(self.on_get)

    async def on_create(self, request: IRequest, user_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        body = parse_json_object(request)
        return {"filter_id": await self._filters.create(requester.user_id, user_id, body)}

    async def on_get(self, request: IRequest, user_id: str, filter_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        return await self._filters.get(requester.user_id, user_id, filter_id)
