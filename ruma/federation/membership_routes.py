"""The federation routes of membership handshakes (see :mod:`ruma.federation.membership`).

``make_join``/``send_join`` (v1 and v2), ``make_leave``/``send_leave`` (v1 and v2),
``make_knock``/``send_knock`` and ``invite`` (v1 and v2). Each authenticates the request
by its X-Matrix signature, parses, and hands over to :class:`ResidentMembership`.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from ruma.client.http import parse_json_object, query_list
from ruma.client.router import ClientRouter
from ruma.errors import bad_json
from ruma.federation.inbound_auth import FederationAuthenticator
from ruma.federation.membership import ResidentMembership

__all__ = ["install_membership_routes"]

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"


def install_membership_routes(
    router: ClientRouter, auth: FederationAuthenticator, resident: ResidentMembership
) -> None:
    @router.route_raw(f"{V1}/make_join/<room_id>/<user_id>", ["GET"])
    async def make_join(request: IRequest, room_id: str, user_id: str) -> dict[str, Any]:
        origin = await auth.authenticate(request, None)
        return await resident.make_join(origin, room_id, user_id, query_list(request, "ver"))

    @router.route_raw(f"{V2}/send_join/<room_id>/<event_id>", ["PUT"])
    async def send_join_v2(request: IRequest, room_id: str, event_id: str) -> dict[str, Any]:
        body = parse_json_object(request)
        origin = await auth.authenticate(request, body)
        return await resident.send_join(origin, room_id, event_id, body)

    @router.route_raw(f"{V1}/send_join/<room_id>/<event_id>", ["PUT"])
    async def send_join_v1(request: IRequest, room_id: str, event_id: str) -> Any:
        body = parse_json_object(request)
        origin = await auth.authenticate(request, body)
        answer = await resident.send_join(origin, room_id, event_id, body)
        # v1 answers the (historical) array [200, {...}].
        return 200, [200, answer]

    @router.route_raw(f"{V1}/make_leave/<room_id>/<user_id>", ["GET"])
    async def make_leave(request: IRequest, room_id: str, user_id: str) -> dict[str, Any]:
        origin = await auth.authenticate(request, None)
        return await resident.make_leave(origin, room_id, user_id)

    @router.route_raw(f"{V2}/send_leave/<room_id>/<event_id>", ["PUT"])
    async def send_leave_v2(request: IRequest, room_id: str, event_id: str) -> dict[str, Any]:
        body = parse_json_object(request)
        origin = await auth.authenticate(request, body)
        return await resident.send_leave(origin, room_id, event_id, body)

    @router.route_raw(f"{V1}/send_leave/<room_id>/<event_id>", ["PUT"])
    async def send_leave_v1(request: IRequest, room_id: str, event_id: str) -> Any:
        body = parse_json_object(request)
        origin = await auth.authenticate(request, body)
        answer = await resident.send_leave(origin, room_id, event_id, body)
        return 200, [200, answer]

    @router.route_raw(f"{V1}/make_knock/<room_id>/<user_id>", ["GET"])
    async def make_knock(request: IRequest, room_id: str, user_id: str) -> dict[str, Any]:
        origin = await auth.authenticate(request, None)
        return await resident.make_knock(origin, room_id, user_id, query_list(request, "ver"))

    @router.route_raw(f"{V1}/send_knock/<room_id>/<event_id>", ["PUT"])
    async def send_knock(request: IRequest, room_id: str, event_id: str) -> dict[str, Any]:
        body = parse_json_object(request)
        origin = await auth.authenticate(request, body)
        return await resident.send_knock(origin, room_id, event_id, body)

    @router.route_raw(f"{V2}/invite/<room_id>/<event_id>", ["PUT"])
    async def invite_v2(request: IRequest, room_id: str, event_id: str) -> dict[str, Any]:
        body = parse_json_object(request)
        origin = await auth.authenticate(request, body)
        if "event" not in body:
            raise bad_json("Missing 'event'")
        return await resident.on_invite(
            origin,
            room_id,
            event_id,
            body["event"],
            body.get("room_version"),
            body.get("invite_room_state"),
        )

    @router.route_raw(f"{V1}/invite/<room_id>/<event_id>", ["PUT"])
    async def invite_v1(request: IRequest, room_id: str, event_id: str) -> Any:
        body = parse_json_object(request)
        origin = await auth.authenticate(request, body)
        # v1 carries no room version: only rooms v1 and v2 used it.
        stripped = body.get("unsigned", {}).get("invite_room_state") if isinstance(
            body.get("unsigned"), dict
        ) else None
        answer = await resident.on_invite(origin, room_id, event_id, body, "1", stripped)
        return 200, [200, answer]

