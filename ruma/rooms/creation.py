"""``POST /createRoom``: the events of a new room, in the order the spec lists them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from ruma.errors import Codes, MatrixError
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from ruma.rooms.builder import LocalEventSender, NewEvent
from ruma.rooms.membership import MembershipHandler
from ruma.rooms.profile import ProfileSource
from ruma.storage.rooms import RoomStore

__all__ = ["CreateRoomRequest", "InitialState", "RoomCreator", "PRESETS"]

# preset -> (join_rule, history_visibility, guest_access or None)
PRESETS: Mapping[str, tuple[str, str, str | None]] = {
    "private_chat": ("invite", "shared", "can_join"),
    "trusted_private_chat": ("invite", "shared", "can_join"),
    "public_chat": ("public", "shared", "forbidden"),
}


@dataclass(frozen=True, slots=True)
class InitialState:
    type: str
    state_key: str
    content: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CreateRoomRequest:
    """A validated createRoom body (see :mod:`ruma.client.rooms` for the parsing)."""

    creator: str
    room_version: str | None = None
    preset: str | None = None
    visibility: str = "private"
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: Sequence[str] = ()
    is_direct: bool = False
    initial_state: Sequence[InitialState] = ()
    creation_content: Mapping[str, Any] = field(default_factory=dict)
    power_level_content_override: Mapping[str, Any] | None = None


def _random_room_localpart() -> str:
    return secrets.token_urlsafe(12).replace("-", "a").replace("_", "b")


class RoomCreator:
    log = Logger()

    def __init__(
        self,
        sender: LocalEventSender,
        membership: MembershipHandler,
        rooms: RoomStore,
        profiles: ProfileSource,
        *,
        default_room_version: str,
        room_localpart: Callable[[], str] = _random_room_localpart,
    ) -> None:
        self._sender = sender
        self._membership = membership
        self._rooms = rooms
        self._profiles = profiles
        self._default_version = default_room_version
        self._room_localpart = room_localpart

    @property
    def server_name(self) -> str:
        return self._sender.server_name

    async def create_room(self, req: CreateRoomRequest) -> tuple[str, str | None]:
        """Create the room; return ``(room_id, room_alias)``."""
        version_id = req.room_version or self._default_version
        room_version = KNOWN_ROOM_VERSIONS.get(version_id)
        if room_version is None:
            raise MatrixError(
                400,
                Codes.UNSUPPORTED_ROOM_VERSION,
                f"Room version {version_id!r} is not supported by this server",
            )
        preset = req.preset or ("public_chat" if req.visibility == "public" else "private_chat")
        if preset not in PRESETS:
            raise MatrixError(400, Codes.INVALID_PARAM, f"Unknown preset {preset!r}")
        alias: str | None = None
        if req.room_alias_name is not None:
            alias = f"#{req.room_alias_name}:{self.server_name}"
            if await self._rooms.get_alias(alias) is not None:
                raise MatrixError(400, Codes.ROOM_IN_USE, "Room alias already taken")
        invitees = list(dict.fromkeys(u for u in req.invite if u != req.creator))

        # 1. m.room.create
        create_content: dict[str, Any] = dict(req.creation_content)
        create_content["room_version"] = room_version.identifier
        if room_version.implicit_room_creator:
            create_content.pop("creator", None)
        else:
            create_content["creator"] = req.creator
        additional: list[str] = []
        if room_version.privileged_creators:
            extra = create_content.get("additional_creators", [])
            if not isinstance(extra, list) or not all(isinstance(u, str) for u in extra):
                raise MatrixError(
                    400, Codes.BAD_JSON, "creation_content.additional_creators must be user IDs"
                )
            additional = list(dict.fromkeys(extra))
            if preset == "trusted_private_chat":
                additional = list(dict.fromkeys([*additional, *invitees]))
            additional = [u for u in additional if u != req.creator]
            if additional:
                create_content["additional_creators"] = additional
            else:
                create_content.pop("additional_creators", None)
        room_id: str | None = None
        if not room_version.room_id_from_create_event:
            room_id = f"!{self._room_localpart()}:{self.server_name}"
        create = await self._sender.create_room_event(
            room_version,
            room_id,
            NewEvent("m.room.create", req.creator, create_content, state_key=""),
            is_public=req.visibility == "public",
        )
        room_id = create.event.room_id

        try:
            await self._populate(req, room_id, room_version, preset, alias, invitees, additional)
        except MatrixError as e:
            if e.errcode is Codes.FORBIDDEN:
                raise MatrixError(
                    400, Codes.INVALID_ROOM_STATE, f"Invalid initial room state: {e.msg}"
                ) from e
            raise
        self.log.info(
            "{creator} created room {room_id} (v{version})",
            creator=req.creator,
            room_id=room_id,
            version=room_version.identifier,
        )
        return room_id, alias

    async def _populate(
        self,
        req: CreateRoomRequest,
        room_id: str,
        room_version: RoomVersion,
        preset: str,
        alias: str | None,
        invitees: list[str],
        additional_creators: list[str],
    ) -> None:
        creator = req.creator

        async def state(etype: str, content: Mapping[str, Any], state_key: str = "") -> None:
            await self._sender.send(room_id, NewEvent(etype, creator, content, state_key))

        # 2. the creator joins
        profile = await self._profiles.get_profile(creator)
        join: dict[str, Any] = {"membership": "join"}
        if profile is not None:
            if profile.displayname is not None:
                join["displayname"] = profile.displayname
            if profile.avatar_url is not None:
                join["avatar_url"] = profile.avatar_url
        await state("m.room.member", join, creator)

        # 3. power levels
        await state(
            "m.room.power_levels",
            self._power_levels(req, room_version, preset, invitees, additional_creators),
        )

        # 4. canonical alias
        if alias is not None:
            if not await self._rooms.create_alias(alias, room_id, creator):
                raise MatrixError(400, Codes.ROOM_IN_USE, "Room alias already taken")
            await state("m.room.canonical_alias", {"alias": alias})

        # 5. preset
        join_rule, history_visibility, guest_access = PRESETS[preset]
        initial = {(s.type, s.state_key): s for s in req.initial_state}
        if ("m.room.join_rules", "") not in initial:
            await state("m.room.join_rules", {"join_rule": join_rule})
        if ("m.room.history_visibility", "") not in initial:
            await state("m.room.history_visibility", {"history_visibility": history_visibility})
        if guest_access is not None and ("m.room.guest_access", "") not in initial:
            await state("m.room.guest_access", {"guest_access": guest_access})

        # 6. initial_state (name and topic below win over it)
        for s in req.initial_state:
            if (s.type, s.state_key) in (("m.room.name", ""), ("m.room.topic", "")) and (
                (s.type == "m.room.name" and req.name is not None)
                or (s.type == "m.room.topic" and req.topic is not None)
            ):
                continue
            await state(s.type, s.content, s.state_key)

        # 7. name and topic
        if req.name is not None:
            await state("m.room.name", {"name": req.name})
        if req.topic is not None:
            await state(
                "m.room.topic",
                {
                    "topic": req.topic,
                    "m.topic": [{"body": req.topic, "mimetype": "text/plain"}],
                },
            )

        # 8. invites
        for invitee in invitees:
            extra = {"is_direct": True} if req.is_direct else {}
            await self._membership.invite(creator, room_id, invitee, extra_content=extra)

    def _power_levels(
        self,
        req: CreateRoomRequest,
        room_version: RoomVersion,
        preset: str,
        invitees: list[str],
        additional_creators: list[str],
    ) -> dict[str, Any]:
        users: dict[str, int] = {}
        if not room_version.privileged_creators:
            users[req.creator] = 100
            if preset == "trusted_private_chat":
                for invitee in invitees:
                    users[invitee] = 100
        events: dict[str, int] = {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 150 if room_version.privileged_creators else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        }
        content: dict[str, Any] = {
            "users": users,
            "users_default": 0,
            "events": events,
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": 50 if preset == "public_chat" else 0,
            "historical": 100,
        }
        override = req.power_level_content_override
        if override:
            for key, value in override.items():
                content[key] = value
        if room_version.privileged_creators and isinstance(content.get("users"), dict):
            # Creators have infinite power in v12 and must not be listed.
            creators = {req.creator, *additional_creators}
            content["users"] = {u: v for u, v in content["users"].items() if u not in creators}
        return content
