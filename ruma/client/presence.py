"""``GET/PUT /presence/{userId}/status``."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import body_required_str, parse_json_object
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import bad_json
from ruma.handlers.presence import PresenceHandler


class PresenceEndpoints:
    def __init__(self, *, auth: Authenticator, presence: PresenceHandler) -> None:
        self._auth = auth
        self._presence = presence

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/presence/<user_id>/status", ["GET"])(self.on_get)
        router.route("/presence/<user_id>/status", ["PUT"])(self.on_put)

    async def on_get(self, request: IRequest, user_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        return await self._presence.get_status(requester.user_id, user_id)

    async def on_put(self, request: IRequest, user_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        state = body_required_str(body, "presence")
        status_msg = body.get("status_msg")
        if status_msg is not None and not isinstance(status_msg, str):
            raise bad_json("status_msg must be a string")
        await self._presence.set_state(requester.user_id, user_id, state, status_msg)
        return {}
