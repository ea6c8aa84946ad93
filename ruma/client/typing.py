"""``PUT /rooms/{roomId}/typing/{userId}``."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import body_bool, body_int, parse_json_object
from ruma.client.router import ClientRouter, JsonDict
from ruma.handlers.typing import TypingHandler


class TypingEndpoints:
    def __init__(self, *, auth: Authenticator, typing: TypingHandler) -> None:
        self._auth = auth
        self._typing = typing

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/rooms/<room_id>/typing/<user_id>", ["PUT"])(self.on_typing)

    async def on_typing(self, request: IRequest, room_id: str, user_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        typing = body_bool(body, "typing", required=True)
        timeout = body_int(body, "timeout", required=False)
        await self._typing.set_typing(requester.user_id, user_id, room_id, bool(typing), timeout)
        return {}
