"""Discovery endpoints: ``publicRooms``, ``user_directory/search``, ``hierarchy``,
``upgrade``, ``report``, ``timestamp_to_event``, and the admins' list of reports."""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from ruma.accounts import AccountService
from ruma.client.auth import Authenticator
from ruma.client.http import (
    body_int,
    body_str,
    parse_json_object,
    parse_json_object_or_empty,
    query_bool,
    query_int,
    query_str,
)
from ruma.client.rooms import event_id_arg, room_id_arg
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import bad_json, forbidden, invalid_param, missing_param
from ruma.rooms.discovery import DiscoveryHandler, PublicRoomsQuery

__all__ = ["DiscoveryRoomEndpoints"]

DEFAULT_USER_LIMIT = 10
MAX_USER_LIMIT = 100


class DiscoveryRoomEndpoints:
    def __init__(
        self, *, auth: Authenticator, accounts: AccountService, discovery: DiscoveryHandler
    ) -> None:
        self._auth = auth
        self._accounts = accounts
        self._discovery = discovery

    def register_routes(self, router: ClientRouter) -> None:
        r = router.route
        r("/publicRooms", ["GET"])(self.on_get_public_rooms)
        r("/publicRooms", ["POST"])(self.on_post_public_rooms)
        r("/user_directory/search", ["POST"])(self.on_user_search)
        r("/rooms/<room_id>/hierarchy", ["GET"], versions=("v1",))(self.on_hierarchy)
        r("/rooms/<room_id>/upgrade", ["POST"])(self.on_upgrade)
        r("/rooms/<room_id>/report/<event_id>", ["POST"])(self.on_report_event)
        r("/rooms/<room_id>/report", ["POST"])(self.on_report_room)
        r("/rooms/<room_id>/timestamp_to_event", ["GET"], versions=("v1",))(
            self.on_timestamp_to_event
        )
        router.route_raw("/_synapse/admin/v1/event_reports", ["GET"])(self.on_list_reports)

    # -- public rooms ----------------------------------------------------------------------

    async def on_get_public_rooms(self, request: IRequest) -> JsonDict:
        # No authentication needed (the spec's GET is open), but a given token must be valid.
        if request.getHeader(b"Authorization") is not None or (request.args or {}).get(
            b"access_token"
        ):
            await self._auth.get_requester(request)
        limit = query_int(request, "limit")
        return await self._discovery.public_rooms(
            PublicRoomsQuery(
                limit=limit,
                since=query_str(request, "since"),
                server=query_str(request, "server"),
            )
        )

    async def on_post_public_rooms(self, request: IRequest) -> JsonDict:
        await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        limit = body_int(body, "limit", required=False)
        since = body_str(body, "since", required=False)
        flt = body.get("filter")
        term: str | None = None
        room_types: list[str | None] | None = None
        if flt is not None:
            if not isinstance(flt, dict):
                raise bad_json("filter must be an object")
            raw_term = flt.get("generic_search_term")
            if raw_term is not None and not isinstance(raw_term, str):
                raise bad_json("filter.generic_search_term must be a string")
            term = raw_term
            raw_types = flt.get("room_types")
            if raw_types is not None:
                if not isinstance(raw_types, list) or not all(
                    t is None or isinstance(t, str) for t in raw_types
                ):
                    raise bad_json("filter.room_types must be a list of strings or nulls")
                room_types = raw_types
        return await self._discovery.public_rooms(
            PublicRoomsQuery(
                limit=limit,
                since=since,
                search_term=term,
                room_types=room_types,
                server=query_str(request, "server"),
            )
        )

    # -- users -----------------------------------------------------------------------------

    async def on_user_search(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        term = body_str(body, "search_term")
        assert term is not None
        limit = body_int(body, "limit", required=False, default=DEFAULT_USER_LIMIT)
        assert limit is not None
        if limit < 0:
            raise invalid_param("limit must not be negative")
        users, limited = await self._discovery.search_users(
            requester.user_id, term, min(limit, MAX_USER_LIMIT)
        )
        results: list[JsonDict] = []
        for u in users:
            item: JsonDict = {"user_id": u.user_id}
            if u.display_name is not None:
                item["display_name"] = u.display_name
            if u.avatar_url is not None:
                item["avatar_url"] = u.avatar_url
            results.append(item)
        return {"results": results, "limited": limited}

    # -- spaces ----------------------------------------------------------------------------

    async def on_hierarchy(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        return await self._discovery.hierarchy(
            requester.user_id,
            room_id,
            max_depth=query_int(request, "max_depth"),
            suggested_only=bool(query_bool(request, "suggested_only", False)),
            limit=query_int(request, "limit"),
            from_token=query_str(request, "from"),
        )

    # -- upgrades --------------------------------------------------------------------------

    async def on_upgrade(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        body = parse_json_object(request)
        new_version = body_str(body, "new_version")
        assert new_version is not None
        new_room = await self._discovery.upgrade(requester.user_id, room_id, new_version)
        return {"replacement_room": new_room}

    # -- reports ---------------------------------------------------------------------------

    async def on_report_event(self, request: IRequest, room_id: str, event_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        event_id_arg(event_id)
        body = parse_json_object_or_empty(request)
        reason = body_str(body, "reason", required=False)
        score = body_int(body, "score", required=False)
        await self._discovery.report_event(requester.user_id, room_id, event_id, reason, score)
        return {}

    async def on_report_room(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        body = parse_json_object_or_empty(request)
        reason = body_str(body, "reason", required=False)
        await self._discovery.report_room(requester.user_id, room_id, reason)
        return {}

    async def on_list_reports(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        me = await self._accounts.store.get_user(requester.user_id)
        if me is None or not me.is_admin:
            raise forbidden("You are not a server admin")
        offset = query_int(request, "from", 0) or 0
        limit = query_int(request, "limit", 100) or 100
        if offset < 0 or limit < 0:
            raise invalid_param("from and limit must not be negative")
        store = self._discovery.store
        reports = await store.get_reports(offset=offset, limit=limit)
        total = await store.count_reports()
        out: dict[str, Any] = {
            "event_reports": [
                {
                    "id": r.report_id,
                    "room_id": r.room_id,
                    "event_id": r.event_id,
                    "user_id": r.user_id,
                    "reason": r.reason,
                    "score": r.score,
                    "received_ts": r.received_ts,
                }
                for r in reports
            ],
            "total": total,
        }
        if offset + len(reports) < total:
            out["next_token"] = offset + len(reports)
        return out

    # -- timestamp_to_event ------------------------------------------------------------------

    async def on_timestamp_to_event(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        ts = query_int(request, "ts")
        if ts is None:
            raise missing_param("Missing query parameter 'ts'")
        if not 0 <= ts < 2**63:
            raise invalid_param("ts must be a timestamp in milliseconds")
        direction = query_str(request, "dir")
        if direction is None:
            raise missing_param("Missing query parameter 'dir'")
        if direction not in ("f", "b"):
            raise invalid_param("dir must be 'f' or 'b'")
        event_id, origin_ts = await self._discovery.timestamp_to_event(
            requester.user_id, room_id, ts, direction == "f"
        )
        return {"event_id": event_id, "origin_server_ts": origin_ts}
