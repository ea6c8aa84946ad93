"""The federation routes serving room history (see :mod:`ruma.federation.history`)."""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from ruma.client.http import parse_json_object, query_int, query_list, query_str
from ruma.client.router import ClientRouter
from ruma.errors import bad_json, missing_param
from ruma.federation.history import FederationHistory
from ruma.federation.inbound_auth import FederationAuthenticator

__all__ = ["install_history_routes"]

V1 = "/_matrix/federation/v1"


def _str_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_json(f"{name} must be a list of event IDs")
    return value


def _int(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_json(f"{name} must be an integer")
    return value


def install_history_routes(
    router: ClientRouter, auth: FederationAuthenticator, history: FederationHistory
) -> None:
    @router.route_raw(f"{V1}/event/<event_id>", ["GET"])
    async def event(request: IRequest, event_id: str) -> dict[str, Any]:
        origin = await auth.authenticate(request, None)
        return await history.get_event(origin, event_id)

    @router.route_raw(f"{V1}/state/<room_id>", ["GET"])
    async def state(request: IRequest, room_id: str) -> dict[str, Any]:
        origin = await auth.authenticate(request, None)
        event_id = query_str(request, "event_id", required=True)
        assert event_id is not None
        return await history.get_state(origin, room_id, event_id)

    @router.route_raw(f"{V1}/state_ids/<room_id>", ["GET"])
    async def state_ids(request: IRequest, room_id: str) -> dict[str, Any]:
        origin = await auth.authenticate(request, None)
        event_id = query_str(request, "event_id", required=True)
        assert event_id is not None
        return await history.get_state_ids(origin, room_id, event_id)

    @router.route_raw(f"{V1}/event_auth/<room_id>/<event_id>", ["GET"])
    async def event_auth(request: IRequest, room_id: str, event_id: str) -> dict[str, Any]:
        origin = await auth.authenticate(request, None)
        return await history.get_event_auth(origin, room_id, event_id)

    @router.route_raw(f"{V1}/get_missing_events/<room_id>", ["POST"])
    async def get_missing_events(request: IRequest, room_id: str) -> dict[str, Any]:
        body = parse_json_object(request)
        origin = await auth.authenticate(request, body)
        return await history.get_missing_events(
            origin,
            room_id,
            earliest_events=_str_list(body, "earliest_events"),
            latest_events=_str_list(body, "latest_events"),
            limit=_int(body, "limit", 10),
            min_depth=_int(body, "min_depth", 0),
        )

    @router.route_raw(f"{V1}/backfill/<room_id>", ["GET"])
    async def backfill(request: IRequest, room_id: str) -> dict[str, Any]:
        origin = await auth.authenticate(request, None)
        v = query_list(request, "v")
        if not v:
            raise missing_param("Missing query parameter 'v'")
        limit = query_int(request, "limit", required=True)
        assert limit is not None
        return await history.backfill(origin, room_id, v, limit)
