"""``GET /pushrules/`` and ``GET /pushrules/global/`` (the server-default ruleset for now)."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.router import ClientRouter, JsonDict
from ruma.handlers.push_rules import default_ruleset


class PushRulesEndpoints:
    def __init__(self, *, auth: Authenticator) -> None:
        self._auth = auth

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/pushrules/", ["GET"])(self.on_get_all)
        router.route("/pushrules/global/", ["GET"])(self.on_get_global)

    async def on_get_all(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        return {"global": default_ruleset(requester.user_id)}

    async def on_get_global(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        return default_ruleset(requester.user_id)
