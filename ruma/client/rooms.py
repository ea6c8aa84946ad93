"""The client API for rooms: creation, membership, sending, state, reading.

Handlers parse and validate the request, authenticate, call :mod:`ruma.rooms` and render;
nothing else.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator, Requester
from ruma.client.http import (
    body_bool,
    body_dict,
    body_list,
    body_str,
    parse_json_object,
    parse_json_object_or_empty,
    query_int,
    query_list,
    query_str,
)
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import Codes, MatrixError, bad_json, invalid_param, missing_param
from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.ids import EventID, RoomAlias, RoomID, UserID
from ruma.protocol.json import thaw
from ruma.ratelimit import Ratelimiter
from ruma.rooms.creation import CreateRoomRequest, InitialState
from ruma.rooms.reading import EventFilter, parse_token
from ruma.rooms.serialize import EventSerializer, txn_scope
from ruma.rooms.service import RoomServices
from ruma.storage.events import TxnIdKey

__all__ = ["RoomEndpoints", "event_id_arg", "room_id_arg", "user_id_arg"]

MAX_MESSAGES_LIMIT = 1000


def room_id_arg(room_id: str) -> str:
    try:
        RoomID.parse(room_id)
    except InvalidIdentifier as e:
        raise invalid_param(f"Invalid room ID {room_id!r}") from e
    return room_id


def user_id_arg(user_id: object, name: str = "user_id") -> str:
    if not isinstance(user_id, str):
        raise bad_json(f"Parameter {name!r} must be a string")
    try:
        UserID.parse(user_id)
    except InvalidIdentifier as e:
        raise invalid_param(f"Invalid user ID {user_id!r}") from e
    return user_id


def event_id_arg(event_id: str) -> str:
    try:
        EventID.parse(event_id)
    except InvalidIdentifier as e:
        raise invalid_param(f"Invalid event ID {event_id!r}") from e
    return event_id


def _reason(body: JsonDict) -> str | None:
    return body_str(body, "reason", required=False)


class RoomEndpoints:
    """The handlers; :meth:`register_routes` puts them on a :class:`ClientRouter`."""

    def __init__(
        self,
        *,
        clock: IReactorTime,
        auth: Authenticator,
        rooms: RoomServices,
        ratelimiter: Ratelimiter | None = None,
    ) -> None:
        self._clock = clock
        self._auth = auth
        self._rooms = rooms
        self._serializer = EventSerializer(rooms.store, rooms.relations)
        self._ratelimiter = ratelimiter

    def register_routes(self, router: ClientRouter) -> None:
        r = router.route
        r("/createRoom", ["POST"])(self.on_create_room)
        r("/join/<room_id_or_alias>", ["POST"])(self.on_join)
        r("/rooms/<room_id>/join", ["POST"])(self.on_room_join)
        r("/knock/<room_id_or_alias>", ["POST"])(self.on_knock)
        r("/rooms/<room_id>/invite", ["POST"])(self.on_invite)
        r("/rooms/<room_id>/leave", ["POST"])(self.on_leave)
        r("/rooms/<room_id>/forget", ["POST"])(self.on_forget)
        r("/rooms/<room_id>/kick", ["POST"])(self.on_kick)
        r("/rooms/<room_id>/ban", ["POST"])(self.on_ban)
        r("/rooms/<room_id>/unban", ["POST"])(self.on_unban)
        r("/joined_rooms", ["GET"])(self.on_joined_rooms)
        r("/rooms/<room_id>/send/<event_type>/<txn_id>", ["PUT"])(self.on_send)
        r("/rooms/<room_id>/state", ["GET"])(self.on_get_state)  # type: ignore[arg-type]
        r("/rooms/<room_id>/state/<event_type>", ["GET"])(self.on_get_state_event)
        r("/rooms/<room_id>/state/<event_type>/<state_key>", ["GET"])(self.on_get_state_event)
        r("/rooms/<room_id>/state/<event_type>", ["PUT"])(self.on_put_state)
        r("/rooms/<room_id>/state/<event_type>/<state_key>", ["PUT"])(self.on_put_state)
        r("/rooms/<room_id>/redact/<event_id>/<txn_id>", ["PUT"])(self.on_redact)
        r("/rooms/<room_id>/members", ["GET"])(self.on_members)
        r("/rooms/<room_id>/joined_members", ["GET"])(self.on_joined_members)
        r("/rooms/<room_id>/messages", ["GET"])(self.on_messages)
        r("/rooms/<room_id>/context/<event_id>", ["GET"])(self.on_context)
        r("/rooms/<room_id>/event/<event_id>", ["GET"])(self.on_get_event)

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    def _ratelimit(self, requester: Requester) -> None:
        # Appservices registered with rate_limited: false are exempt (Requester.rate_limited).
        if self._ratelimiter is not None and requester.rate_limited:
            self._ratelimiter.check(requester.user_id)

    def _massaged_ts(self, request: IRequest, requester: Requester) -> int | None:
        """An appservice's ``?ts=`` (timestamp massaging); ignored for everyone else."""
        if requester.appservice_id is None:
            return None
        return query_int(request, "ts")

    def _txn(self, requester: Requester, kind: str, txn_id: str) -> TxnIdKey:
        scope = txn_scope(requester.device_id, requester.token_id)
        return TxnIdKey(requester.user_id, scope, f"{kind}:{txn_id}")

    async def _serialize(self, events: Any, requester: Requester) -> list[JsonDict]:
        return await self._serializer.serialize(events, now=self._now(), requester=requester)

    # -- creation --------------------------------------------------------------------------

    async def on_create_room(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        req = _parse_create_room(requester.user_id, body)
        room_id, alias = await self._rooms.creator.create_room(req)
        out: JsonDict = {"room_id": room_id}
        if alias is not None:
            out["room_alias"] = alias
        return out

    # -- membership ------------------------------------------------------------------------

    async def on_join(self, request: IRequest, room_id_or_alias: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        servers = query_list(request, "server_name") + query_list(request, "via")
        if room_id_or_alias.startswith("#"):
            room_id, alias_servers = await self._rooms.aliases.resolve(room_id_or_alias)
            servers = servers or alias_servers
        elif room_id_or_alias.startswith("!"):
            room_id = room_id_arg(room_id_or_alias)
        else:
            raise invalid_param(f"{room_id_or_alias!r} is not a room ID or alias")
        await self._rooms.membership.join(
            requester.user_id, room_id, servers=servers, reason=_reason(body)
        )
        return {"room_id": room_id}

    async def on_knock(self, request: IRequest, room_id_or_alias: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        servers = query_list(request, "server_name") + query_list(request, "via")
        if room_id_or_alias.startswith("#"):
            room_id, alias_servers = await self._rooms.aliases.resolve(room_id_or_alias)
            servers = servers or alias_servers
        elif room_id_or_alias.startswith("!"):
            room_id = room_id_arg(room_id_or_alias)
        else:
            raise invalid_param(f"{room_id_or_alias!r} is not a room ID or alias")
        await self._rooms.membership.knock(
            requester.user_id, room_id, servers=servers, reason=_reason(body)
        )
        return {"room_id": room_id}

    async def on_room_join(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        room_id_arg(room_id)
        await self._rooms.membership.join(requester.user_id, room_id, reason=_reason(body))
        return {"room_id": room_id}

    async def on_invite(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        room_id_arg(room_id)
        if "user_id" not in body:
            if "id_server" in body or "medium" in body:
                raise MatrixError(
                    400, Codes.UNRECOGNIZED, "Third-party invites are not supported"
                )
            raise missing_param("Missing parameter 'user_id'")
        target = user_id_arg(body["user_id"])
        await self._rooms.membership.invite(
            requester.user_id, room_id, target, reason=_reason(body)
        )
        return {}

    async def on_leave(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        room_id_arg(room_id)
        await self._rooms.membership.leave(requester.user_id, room_id, reason=_reason(body))
        return {}

    async def on_forget(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        parse_json_object_or_empty(request)
        room_id_arg(room_id)
        await self._rooms.membership.forget(requester.user_id, room_id)
        return {}

    async def _target(self, request: IRequest, room_id: str) -> tuple[Requester, str, JsonDict]:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        room_id_arg(room_id)
        if "user_id" not in body:
            raise missing_param("Missing parameter 'user_id'")
        return requester, user_id_arg(body["user_id"]), body

    async def on_kick(self, request: IRequest, room_id: str) -> JsonDict:
        requester, target, body = await self._target(request, room_id)
        await self._rooms.membership.kick(
            requester.user_id, room_id, target, reason=_reason(body)
        )
        return {}

    async def on_ban(self, request: IRequest, room_id: str) -> JsonDict:
        requester, target, body = await self._target(request, room_id)
        await self._rooms.membership.ban(requester.user_id, room_id, target, reason=_reason(body))
        return {}

    async def on_unban(self, request: IRequest, room_id: str) -> JsonDict:
        requester, target, body = await self._target(request, room_id)
        await self._rooms.membership.unban(
            requester.user_id, room_id, target, reason=_reason(body)
        )
        return {}

    async def on_joined_rooms(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        return {"joined_rooms": await self._rooms.reader.joined_rooms(requester.user_id)}

    # -- sending ---------------------------------------------------------------------------

    async def on_send(
        self, request: IRequest, room_id: str, event_type: str, txn_id: str
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        content = parse_json_object(request)
        room_id_arg(room_id)
        key = self._txn(requester, "send", txn_id)
        if await self._rooms.store.get_txn_event(key) is None:
            self._ratelimit(requester)
        event_id = await self._rooms.messages.send_message(
            requester.user_id,
            room_id,
            event_type,
            content,
            key,
            ts=self._massaged_ts(request, requester),
        )
        return {"event_id": event_id}

    async def on_put_state(
        self, request: IRequest, room_id: str, event_type: str, state_key: str = ""
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        content = parse_json_object(request)
        room_id_arg(room_id)
        event_id = await self._rooms.messages.set_state(
            requester.user_id,
            room_id,
            event_type,
            state_key,
            content,
            ts=self._massaged_ts(request, requester),
        )
        return {"event_id": event_id}

    async def on_redact(
        self, request: IRequest, room_id: str, event_id: str, txn_id: str
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object_or_empty(request)
        room_id_arg(room_id)
        event_id_arg(event_id)
        key = self._txn(requester, "redact", txn_id)
        if await self._rooms.store.get_txn_event(key) is None:
            self._ratelimit(requester)
        redaction_id = await self._rooms.messages.redact(
            requester.user_id, room_id, event_id, _reason(body), key
        )
        return {"event_id": redaction_id}

    # -- reading ---------------------------------------------------------------------------

    async def on_get_state(self, request: IRequest, room_id: str) -> list[JsonDict]:
        # The one handler answering a JSON array, as the spec says.
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        events = await self._rooms.reader.get_state(requester.user_id, room_id)
        return await self._serialize(events, requester)

    async def on_get_state_event(
        self, request: IRequest, room_id: str, event_type: str, state_key: str = ""
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        event = await self._rooms.reader.get_state_event(
            requester.user_id, room_id, event_type, state_key
        )
        if query_str(request, "format") == "event":
            return (await self._serialize([event], requester))[0]
        content: JsonDict = thaw(event.content)
        return content

    async def on_members(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        at = query_str(request, "at")
        events = await self._rooms.reader.get_members(
            requester.user_id,
            room_id,
            at=parse_token(at, "at") if at is not None else None,
            membership=query_str(request, "membership"),
            not_membership=query_str(request, "not_membership"),
        )
        return {"chunk": await self._serialize(events, requester)}

    async def on_joined_members(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        joined = await self._rooms.reader.get_joined_members(requester.user_id, room_id)
        return {"joined": joined}

    def _filter(self, request: IRequest) -> EventFilter:
        raw = query_str(request, "filter")
        if raw is None:
            return EventFilter()
        try:
            obj = json.loads(raw)
        except ValueError:
            raise invalid_param("filter is not valid JSON") from None
        if not isinstance(obj, dict):
            raise invalid_param("filter must be a JSON object")
        return EventFilter.from_json(obj)

    async def on_messages(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        direction = query_str(request, "dir", "b")
        if direction not in ("b", "f"):
            raise invalid_param("dir must be 'b' or 'f'")
        event_filter = self._filter(request)
        limit = query_int(request, "limit", event_filter.limit or 10)
        assert limit is not None
        if limit < 0:
            raise invalid_param("limit must not be negative")
        limit = min(limit, MAX_MESSAGES_LIMIT)
        page = await self._rooms.reader.get_messages(
            requester.user_id,
            room_id,
            from_token=query_str(request, "from"),
            to_token=query_str(request, "to"),
            backwards=direction == "b",
            limit=limit,
            event_filter=event_filter,
        )
        out: JsonDict = {
            "chunk": await self._serialize(page.events, requester),
            "start": page.start,
        }
        if page.end is not None:
            out["end"] = page.end
        if page.state:
            out["state"] = await self._serialize(page.state, requester)
        return out

    async def on_context(self, request: IRequest, room_id: str, event_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        event_id_arg(event_id)
        event_filter = self._filter(request)
        limit = query_int(request, "limit", 10)
        assert limit is not None
        if limit < 0:
            raise invalid_param("limit must not be negative")
        ctx = await self._rooms.reader.get_context(
            requester.user_id,
            room_id,
            event_id,
            limit=min(limit, MAX_MESSAGES_LIMIT),
            event_filter=event_filter,
        )
        return {
            "event": (await self._serialize([ctx.event], requester))[0],
            "events_before": await self._serialize(ctx.before, requester),
            "events_after": await self._serialize(ctx.after, requester),
            "start": ctx.start,
            "end": ctx.end,
            "state": await self._serialize(ctx.state, requester),
        }

    async def on_get_event(self, request: IRequest, room_id: str, event_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        event_id_arg(event_id)
        event = await self._rooms.reader.get_event(requester.user_id, room_id, event_id)
        return (await self._serialize([event], requester))[0]


def _parse_create_room(creator: str, body: JsonDict) -> CreateRoomRequest:
    visibility = body_str(body, "visibility", required=False, default="private")
    if visibility not in ("public", "private"):
        raise invalid_param("visibility must be 'public' or 'private'")
    preset = body_str(body, "preset", required=False)
    if preset is not None and preset not in (
        "private_chat",
        "public_chat",
        "trusted_private_chat",
    ):
        raise invalid_param(f"Unknown preset {preset!r}")
    room_version = body.get("room_version")
    if room_version is not None and not isinstance(room_version, str):
        raise MatrixError(
            400, Codes.UNSUPPORTED_ROOM_VERSION, "room_version must be a string"
        )
    alias_name = body_str(body, "room_alias_name", required=False)
    if alias_name is not None:
        if not alias_name or ":" in alias_name or any(c.isspace() for c in alias_name):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid room_alias_name")
        try:
            RoomAlias.parse(f"#{alias_name}:example.org", strict=True)
        except InvalidIdentifier as e:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Invalid room_alias_name: {e}") from e
    invite = body_list(body, "invite", required=False) or []
    invitees = [user_id_arg(u, "invite") for u in invite]
    if "invite_3pid" in body and body["invite_3pid"]:
        raise MatrixError(400, Codes.UNRECOGNIZED, "Third-party invites are not supported")
    initial: list[InitialState] = []
    for i, item in enumerate(body_list(body, "initial_state", required=False) or []):
        if not isinstance(item, dict):
            raise bad_json(f"initial_state[{i}] must be an object")
        etype = item.get("type")
        content = item.get("content")
        state_key = item.get("state_key", "")
        if not isinstance(etype, str) or not isinstance(content, dict):
            raise bad_json(f"initial_state[{i}] needs a string type and an object content")
        if not isinstance(state_key, str):
            raise bad_json(f"initial_state[{i}].state_key must be a string")
        if etype in ("m.room.create", "m.room.member"):
            raise bad_json(f"initial_state[{i}] may not set {etype}")
        initial.append(InitialState(etype, state_key, content))
    creation_content = body_dict(body, "creation_content", required=False) or {}
    pl_override = body_dict(body, "power_level_content_override", required=False)
    name = body.get("name")
    topic = body.get("topic")
    if name is not None and not isinstance(name, str):
        raise bad_json("name must be a string")
    if topic is not None and not isinstance(topic, str):
        raise bad_json("topic must be a string")
    is_direct = body_bool(body, "is_direct", required=False, default=False)
    return CreateRoomRequest(
        creator=creator,
        room_version=room_version,
        preset=preset,
        visibility=visibility or "private",
        room_alias_name=alias_name,
        name=name,
        topic=topic,
        invite=invitees,
        is_direct=bool(is_direct),
        initial_state=initial,
        creation_content=creation_content,
        power_level_content_override=pl_override,
    )

