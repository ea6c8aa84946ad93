"""Profiles: reading and setting them, and carrying changes into every joined room."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from twisted.logger import Logger

from ruma.errors import MatrixError, forbidden, not_found
from ruma.rooms.builder import LocalEventSender, NewEvent
from ruma.storage.events import EventStore

__all__ = ["ProfileHandler", "ProfileLike", "ProfileSource", "RemoteProfiles"]


class RemoteProfiles(Protocol):
    """Federation's part of profiles: asking a remote user's server."""

    async def query_profile(self, user_id: str) -> dict[str, Any]:
        """The remote user's profile fields; 404 ``MatrixError`` if unknown."""
        ...


class ProfileLike(Protocol):
    @property
    def displayname(self) -> str | None: ...

    @property
    def avatar_url(self) -> str | None: ...


class ProfileSource(Protocol):
    """Where local users' profiles live (``ruma.storage.accounts.AccountStore``)."""

    async def get_profile(self, user_id: str) -> ProfileLike | None: ...

    async def set_displayname(self, user_id: str, displayname: str | None) -> None: ...

    async def set_avatar_url(self, user_id: str, avatar_url: str | None) -> None: ...


class ProfileHandler:
    log = Logger()

    def __init__(
        self, profiles: ProfileSource, sender: LocalEventSender, store: EventStore
    ) -> None:
        self._profiles = profiles
        self._sender = sender
        self._store = store
        # Federation plugs itself in here (remote profiles answer 404 without it).
        self.remote: RemoteProfiles | None = None
        # Appservices plug in here: asked about an unknown local user, True if they created
        # it (GET /_matrix/app/v1/users/{userId}).
        self.query_unknown: Callable[[str], Awaitable[bool]] | None = None

    def is_local(self, user_id: str) -> bool:
        return user_id.partition(":")[2] == self._sender.server_name

    async def get_profile(self, user_id: str) -> dict[str, Any]:
        """The profile fields that are set; 404 for unknown users (remote: not yet)."""
        if not self.is_local(user_id):
            if self.remote is None:
                raise not_found("Profile of a remote user is not available")
            return await self.remote.query_profile(user_id)
        profile = await self._profiles.get_profile(user_id)
        if profile is None and self.query_unknown is not None and await self.query_unknown(
            user_id
        ):
            profile = await self._profiles.get_profile(user_id)
        if profile is None:
            raise not_found("Profile not found")
        out: dict[str, Any] = {}
        if profile.displayname is not None:
            out["displayname"] = profile.displayname
        if profile.avatar_url is not None:
            out["avatar_url"] = profile.avatar_url
        return out

    async def set_field(
        self, requester: str, user_id: str, field: str, value: str | None
    ) -> None:
        """Set ``displayname`` or ``avatar_url`` and update every joined room."""
        if requester != user_id:
            raise forbidden("Cannot set another user's profile")
        if not self.is_local(user_id) or await self._profiles.get_profile(user_id) is None:
            raise not_found("Profile not found")
        if field == "displayname":
            await self._profiles.set_displayname(user_id, value)
        else:
            await self._profiles.set_avatar_url(user_id, value)
        await self.propagate(user_id)

    async def propagate(self, user_id: str) -> None:
        """Send a fresh join event with the current profile into each joined room."""
        profile = await self._profiles.get_profile(user_id)
        if profile is None:
            return
        for room_id, *_ in await self._store.get_rooms_for_local_user(user_id):
            current = await self._store.get_current_state_event(room_id, "m.room.member", user_id)
            if current is None or current.membership != "join":
                continue
            content: dict[str, Any] = dict(current.content)
            for key, value in (
                ("displayname", profile.displayname),
                ("avatar_url", profile.avatar_url),
            ):
                if value is None:
                    content.pop(key, None)
                else:
                    content[key] = value
            if content == dict(current.content):
                continue
            try:
                await self._sender.send(
                    room_id, NewEvent("m.room.member", user_id, content, user_id)
                )
            except MatrixError as e:
                # One room refusing (e.g. power levels) must not stop the others.
                self.log.warn(
                    "profile update of {user_id} refused in {room_id}: {error}",
                    user_id=user_id,
                    room_id=room_id,
                    error=e.msg,
                )
