"""Push rules (``/pushrules``), pushers (``/pushers``, ``/pushers/set``) and
``/notifications``: parse, authenticate, call :mod:`ruma.push`, render."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import parse_json_object, parse_json_value, query_int, query_str
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import Codes, MatrixError, missing_param
from ruma.push.service import PushServices


class PushEndpoints:
    def __init__(self, *, auth: Authenticator, push: PushServices) -> None:
        self._auth = auth
        self._push = push

    def register_routes(self, router: ClientRouter) -> None:
        r = router.route
        r("/pushrules/", ["GET"])(self.on_get_all)
        r("/pushrules/<scope>/", ["GET"])(self.on_get_scope)
        r("/pushrules/<scope>/<kind>/<rule_id>", ["GET"])(self.on_get_rule)
        r("/pushrules/<scope>/<kind>/<rule_id>", ["PUT"])(self.on_put_rule)
        r("/pushrules/<scope>/<kind>/<rule_id>", ["DELETE"])(self.on_delete_rule)
        r("/pushrules/<scope>/<kind>/<rule_id>/enabled", ["GET"])(self.on_get_enabled)
        r("/pushrules/<scope>/<kind>/<rule_id>/enabled", ["PUT"])(self.on_put_enabled)
        r("/pushrules/<scope>/<kind>/<rule_id>/actions", ["GET"])(self.on_get_actions)
        r("/pushrules/<scope>/<kind>/<rule_id>/actions", ["PUT"])(self.on_put_actions)
        r("/pushers", ["GET"])(self.on_get_pushers)
        r("/pushers/set", ["POST"])(self.on_set_pusher)
        r("/notifications", ["GET"])(self.on_notifications)

    # -- rules ---------------------------------------------------------------------------

    async def on_get_all(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        return {"global": await self._push.rules.get_ruleset(requester.user_id)}

    async def on_get_scope(self, request: IRequest, scope: str) -> JsonDict:
        requester = await self._auth.get_requester(request, allow_guest=True)
        if scope != "global":
            raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown push rule scope {scope!r}")
        return await self._push.rules.get_ruleset(requester.user_id)

    async def on_get_rule(self, request: IRequest, scope: str, kind: str, rule_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        return await self._push.rules.get_rule(requester.user_id, scope, kind, rule_id)

    async def on_put_rule(self, request: IRequest, scope: str, kind: str, rule_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        await self._push.rules.put_rule(
            requester.user_id,
            scope,
            kind,
            rule_id,
            body,
            before=query_str(request, "before"),
            after=query_str(request, "after"),
        )
        return {}

    async def on_delete_rule(
        self, request: IRequest, scope: str, kind: str, rule_id: str
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        await self._push.rules.delete_rule(requester.user_id, scope, kind, rule_id)
        return {}

    async def on_get_enabled(
        self, request: IRequest, scope: str, kind: str, rule_id: str
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        enabled = await self._push.rules.get_enabled(requester.user_id, scope, kind, rule_id)
        return {"enabled": enabled}

    async def on_put_enabled(
        self, request: IRequest, scope: str, kind: str, rule_id: str
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        if "enabled" not in body:
            raise missing_param("Missing parameter 'enabled'")
        await self._push.rules.set_enabled(
            requester.user_id, scope, kind, rule_id, body["enabled"]
        )
        return {}

    async def on_get_actions(
        self, request: IRequest, scope: str, kind: str, rule_id: str
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        actions = await self._push.rules.get_actions(requester.user_id, scope, kind, rule_id)
        return {"actions": actions}

    async def on_put_actions(
        self, request: IRequest, scope: str, kind: str, rule_id: str
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_value(request)
        if not isinstance(body, dict):
            raise MatrixError(400, Codes.BAD_JSON, "Content must be a JSON object.")
        if "actions" not in body:
            raise missing_param("Missing parameter 'actions'")
        await self._push.rules.set_actions(
            requester.user_id, scope, kind, rule_id, body["actions"]
        )
        return {}

    # -- pushers -------------------------------------------------------------------------

    async def on_get_pushers(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        return {"pushers": await self._push.pushers.get_pushers(requester.user_id)}

    async def on_set_pusher(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        await self._push.pushers.set_pusher(
            requester.user_id, requester.token_id, requester.device_id, body
        )
        return {}

    # -- notifications -------------------------------------------------------------------

    async def on_notifications(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        return await self._push.notifications.get_notifications(
            requester.user_id,
            query_str(request, "from"),
            query_int(request, "limit", 20) or 20,
            query_str(request, "only"),
        )
