"""The federation routes of queries (see :mod:`ruma.federation.queries`)."""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from ruma.client.http import parse_json_object, query_int, query_str
from ruma.client.router import ClientRouter
from ruma.errors import bad_json
from ruma.federation.inbound_auth import FederationAuthenticator
from ruma.federation.queries import QueryServer

__all__ = ["install_query_routes"]

V1 = "/_matrix/federation/v1"


def install_query_routes(
    router: ClientRouter, auth: FederationAuthenticator, queries: QueryServer
) -> None:
    @router.route_raw(f"{V1}/query/profile", ["GET"])
    async def profile(request: IRequest) -> dict[str, Any]:
        await auth.authenticate(request, None)
        return await queries.profile(query_str(request, "user_id"), query_str(request, "field"))

    @router.route_raw(f"{V1}/query/directory", ["GET"])
    async def directory(request: IRequest) -> dict[str, Any]:
        await auth.authenticate(request, None)
        return await queries.directory(query_str(request, "room_alias"))

    @router.route_raw(f"{V1}/user/devices/<user_id>", ["GET"])
    async def devices(request: IRequest, user_id: str) -> dict[str, Any]:
        await auth.authenticate(request, None)
        return await queries.user_devices(user_id)

    @router.route_raw(f"{V1}/user/keys/query", ["POST"])
    async def keys_query(request: IRequest) -> dict[str, Any]:
        body = parse_json_object(request)
        await auth.authenticate(request, body)
        return await queries.keys_query(body)

    @router.route_raw(f"{V1}/user/keys/claim", ["POST"])
    async def keys_claim(request: IRequest) -> dict[str, Any]:
        body = parse_json_object(request)
        await auth.authenticate(request, body)
        return await queries.keys_claim(body)

    @router.route_raw(f"{V1}/publicRooms", ["GET"])
    async def public_rooms(request: IRequest) -> dict[str, Any]:
        await auth.authenticate(request, None)
        return await queries.public_rooms(
            limit=query_int(request, "limit"), since=query_str(request, "since"), search=None
        )

    @router.route_raw(f"{V1}/publicRooms", ["POST"])
    async def public_rooms_post(request: IRequest) -> dict[str, Any]:
        body = parse_json_object(request)
        await auth.authenticate(request, body)
        limit = body.get("limit")
        since = body.get("since")
        flt = body.get("filter")
        search = flt.get("generic_search_term") if isinstance(flt, dict) else None
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise bad_json("limit must be an integer")
        if since is not None and not isinstance(since, str):
            raise bad_json("since must be a string")
        return await queries.public_rooms(
            limit=limit, since=since, search=search if isinstance(search, str) else None
        )

    @router.route_raw(f"{V1}/hierarchy/<room_id>", ["GET"])
    async def hierarchy(request: IRequest, room_id: str) -> dict[str, Any]:
        origin = await auth.authenticate(request, None)
        suggested = query_str(request, "suggested_only") == "true"
        return await queries.hierarchy(origin, room_id, suggested_only=suggested)
