"""``/profile/{userId}``: read and set display names and avatars."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import parse_json_object
from ruma.client.rooms import user_id_arg
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import bad_json, missing_param, not_found
from ruma.rooms.profile import ProfileHandler

__all__ = ["ProfileEndpoints"]

_FIELDS = ("displayname", "avatar_url")
MAX_DISPLAYNAME = 256
MAX_AVATAR_URL = 1000


class ProfileEndpoints:
    def __init__(self, *, auth: Authenticator, profiles: ProfileHandler) -> None:
        self._auth = auth
        self._profiles = profiles

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/profile/<user_id>", ["GET"])(self.on_get_profile)
        router.route("/profile/<user_id>/<field>", ["GET"])(self.on_get_field)
        router.route("/profile/<user_id>/<field>", ["PUT"])(self.on_put_field)
        router.route("/profile/<user_id>/<field>", ["DELETE"])(self.on_delete_field)

    def _field(self, field: str) -> str:
        if field not in _FIELDS:
            raise not_found(f"Unknown profile field {field!r}")
        return field

    async def on_get_profile(self, request: IRequest, user_id: str) -> JsonDict:
        user_id_arg(user_id)
        return await self._profiles.get_profile(user_id)

    async def on_get_field(self, request: IRequest, user_id: str, field: str) -> JsonDict:
        user_id_arg(user_id)
        self._field(field)
        profile = await self._profiles.get_profile(user_id)
        if field not in profile:
            raise not_found(f"The user has no {field}")
        return {field: profile[field]}

    async def on_put_field(self, request: IRequest, user_id: str, field: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        user_id_arg(user_id)
        self._field(field)
        body = parse_json_object(request)
        if field not in body:
            raise missing_param(f"Missing parameter {field!r}")
        value = body[field]
        if value is not None and not isinstance(value, str):
            raise bad_json(f"{field} must be a string")
        limit = MAX_DISPLAYNAME if field == "displayname" else MAX_AVATAR_URL
        if value is not None and len(value) > limit:
            raise bad_json(f"{field} is too long (at most {limit} characters)")
        await self._profiles.set_field(requester.user_id, user_id, field, value or None)
        return {}

    async def on_delete_field(self, request: IRequest, user_id: str, field: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        user_id_arg(user_id)
        self._field(field)
        await self._profiles.set_field(requester.user_id, user_id, field, None)
        return {}
