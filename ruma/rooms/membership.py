"""Membership changes of local users: join, invite, leave, kick, ban, unban and forget.

Rooms this server takes part in are handled here. Joining (or rejecting an invite to) a
room we are not in needs the federation handshake (``make_join``/``send_join``,
``make_leave``/``send_leave``): that goes through the :class:`RemoteMembership` seam,
which the federation layer plugs in; without it such requests get an honest 404/400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from twisted.logger import Logger

from ruma.errors import Codes, MatrixError, forbidden, not_found
from ruma.protocol.auth import get_named_level, get_user_power_level
from ruma.protocol.events import Event, StateKey
from ruma.rooms.builder import LocalEventSender, NewEvent
from ruma.rooms.persistence import EventRejected
from ruma.rooms.profile import ProfileSource
from ruma.storage.events import EventStore, RoomHead, TxnIdKey

__all__ = ["MembershipHandler", "RemoteMembership"]


class RemoteMembership(Protocol):
    """Federation's part of membership: rooms this server is not in yet."""

    async def join_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        """Join ``room_id`` through one of ``servers``; return the join event's ID."""
        ...

    async def leave_remote(self, user_id: str, room_id: str, content: Mapping[str, Any]) -> str:
        """Reject an invite to (or leave) a room this server has no state of."""
        ...

    async def invite_remote(self, event: Event) -> Event:
        """Have a remote invitee's server countersign ``event``; the event to persist."""
        ...

    async def knock_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        """Knock on a room this server is not in through one of ``servers``."""
        ...


class MembershipHandler:
    log = Logger()

    def __init__(
        self,
        sender: LocalEventSender,
        store: EventStore,
        profiles: ProfileSource,
        remote: RemoteMembership | None = None,
    ) -> None:
        self._sender = sender
        self._store = store
        self._profiles = profiles
        self.remote = remote

    @property
    def server_name(self) -> str:
        return self._sender.server_name

    async def _membership(self, room_id: str, user_id: str) -> str | None:
        event = await self._store.get_current_state_event(room_id, "m.room.member", user_id)
        return event.membership if event is not None else None

    async def _head(self, room_id: str) -> RoomHead | None:
        head = await self._store.get_room_head(room_id)
        if head is None or head.current_state_group is None:
            return None
        return head

    async def _send_member(
        self,
        sender: str,
        room_id: str,
        target: str,
        content: Mapping[str, Any],
        txn_id: TxnIdKey | None = None,
    ) -> str:
        persisted = await self._sender.send(
            room_id, NewEvent("m.room.member", sender, content, target), txn_id=txn_id
        )
        return persisted.event.event_id

    async def _profile_content(self, user_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if user_id.partition(":")[2] != self.server_name:
            return out
        profile = await self._profiles.get_profile(user_id)
        if profile is not None:
            if profile.displayname is not None:
                out["displayname"] = profile.displayname
            if profile.avatar_url is not None:
                out["avatar_url"] = profile.avatar_url
        return out

    async def join(
        self,
        user_id: str,
        room_id: str,
        *,
        servers: Sequence[str] = (),
        reason: str | None = None,
        extra_content: Mapping[str, Any] | None = None,
    ) -> str:
        """Join ``user_id`` to ``room_id``; return the room ID."""
        content: dict[str, Any] = {**(extra_content or {}), "membership": "join"}
        content.update(await self._profile_content(user_id))
        if reason is not None:
            content["reason"] = reason
        head = await self._head(room_id)
        if head is None:
            if self.remote is not None and (servers or not self._is_our_room_id(room_id)):
                await self.remote.join_remote(user_id, room_id, servers, content)
                return room_id
            if self._is_our_room_id(room_id) or not servers:
                raise not_found(f"No known room {room_id}")
            raise not_found(f"Room {room_id} is not on this server and remote joins are not available")
        if self.remote is not None and not await self._store.get_local_users_in_room(room_id):
            # We hold the room's state but none of our users is in it any more: that state
            # is what we saw when we left. Join through a server still in the room, as for
            # a first join, so the join is checked against (and we learn) its state now.
            others = await self._store.get_joined_hosts(room_id)
            via = [s for s in dict.fromkeys([*servers, *sorted(others)]) if s != self.server_name]
            if via:
                await self.remote.join_remote(user_id, room_id, via, content)
                return room_id
        current = await self._store.get_current_state_event(room_id, "m.room.member", user_id)
        if current is not None and current.membership == "join":
            same = {k: v for k, v in current.content.items() if k != "reason"}
            if same == {k: v for k, v in content.items() if k != "reason"}:
                return room_id
        if current is None or current.membership not in ("join", "invite"):
            authoriser = await self._restricted_join_authoriser(head, user_id)
            if authoriser is not None:
                content["join_authorised_via_users_server"] = authoriser
        await self._send_member(user_id, room_id, user_id, content)
        return room_id

    async def _restricted_join_authoriser(self, head: RoomHead, user_id: str) -> str | None:
        """For a restricted room whose allow list ``user_id`` meets (joined to one of the
        listed rooms here): a local member who may invite, to authorise the join.

        None when the room is not restricted or the user does not qualify (the auth rules
        then refuse the join with their reason).
        """
        version = head.room_version
        rules = await self._store.get_current_state_event(head.room_id, "m.room.join_rules", "")
        rule = rules.content.get("join_rule") if rules is not None else None
        if not (
            (rule == "restricted" and version.restricted_join_rule)
            or (rule == "knock_restricted" and version.knock_restricted_join_rule)
        ):
            return None
        assert rules is not None
        allow = rules.content.get("allow")
        allowed_rooms = [
            entry.get("room_id")
            for entry in (allow if isinstance(allow, (list, tuple)) else ())
            if isinstance(entry, Mapping) and entry.get("type") == "m.room_membership"
        ]
        qualifies = False
        for allowed in allowed_rooms:
            if isinstance(allowed, str):
                local = await self._store.get_local_membership(user_id, allowed)
                if local is not None and local[0] == "join":
                    qualifies = True
                    break
        if not qualifies:
            return None
        keys: list[StateKey] = [("m.room.create", ""), ("m.room.power_levels", "")]
        ids = await self._store.get_current_state_keys(head.room_id, keys)
        base = await self._store.get_pdus(ids.values())
        auth_state = {k: base[eid] for k, eid in ids.items() if eid in base}
        invite_level = get_named_level(auth_state, "invite")
        for member in sorted(await self._store.get_local_users_in_room(head.room_id)):
            member_ids = await self._store.get_current_state_keys(
                head.room_id, [("m.room.member", member)]
            )
            events = await self._store.get_pdus(member_ids.values())
            state = dict(auth_state)
            state.update({k: events[e] for k, e in member_ids.items() if e in events})
            if get_user_power_level(member, state) >= invite_level:
                return member
        return None

    def _is_our_room_id(self, room_id: str) -> bool:
        _, sep, server = room_id.partition(":")
        return bool(sep) and server == self.server_name

    async def invite(
        self,
        sender: str,
        room_id: str,
        target: str,
        *,
        reason: str | None = None,
        extra_content: Mapping[str, Any] | None = None,
    ) -> None:
        if await self._head(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        membership = await self._membership(room_id, target)
        if membership == "join":
            raise forbidden(f"{target} is already in the room")
        if membership == "ban":
            raise forbidden(f"{target} is banned from the room")
        content: dict[str, Any] = {**(extra_content or {}), "membership": "invite"}
        content.update(await self._profile_content(target))
        if reason is not None:
            content["reason"] = reason
        if self._store.is_local_user(target) or self.remote is None:
            await self._send_member(sender, room_id, target, content)
            return
        await self._invite_remote_user(sender, room_id, target, content)

    async def _invite_remote_user(
        self, sender: str, room_id: str, target: str, content: Mapping[str, Any]
    ) -> None:
        """A remote invitee's server countersigns the invite before it is stored here (so
        an invite that server refuses is never in the room)."""
        assert self.remote is not None
        writer = self._sender.writer
        async with writer.room_lock(room_id):
            head = await self._head(room_id)
            if head is None:
                raise not_found(f"Unknown room {room_id}")
            event = await self._sender.build(
                head, NewEvent("m.room.member", sender, content, target)
            )
            # Refuse what the room would refuse before asking the other server.
            try:
                await writer.check_local(event)
            except EventRejected as e:
                raise forbidden(e.reason) from e
            signed = await self.remote.invite_remote(event)
            try:
                await writer.persist_event_locked(signed, local=True)
            except EventRejected as e:
                raise forbidden(e.reason) from e

    async def knock(
        self,
        user_id: str,
        room_id: str,
        *,
        servers: Sequence[str] = (),
        reason: str | None = None,
    ) -> str:
        """Knock on ``room_id``; return the room ID."""
        content: dict[str, Any] = {"membership": "knock"}
        content.update(await self._profile_content(user_id))
        if reason is not None:
            content["reason"] = reason
        head = await self._head(room_id)
        if head is None:
            if self.remote is None:
                raise not_found(f"No known room {room_id}")
            await self.remote.knock_remote(user_id, room_id, servers, content)
            return room_id
        await self._send_member(user_id, room_id, user_id, content)
        return room_id

    async def leave(self, user_id: str, room_id: str, *, reason: str | None = None) -> None:
        head = await self._head(room_id)
        if head is None:
            local = await self._store.get_local_membership(user_id, room_id)
            if local is not None and local[0] in ("invite", "knock"):
                content: dict[str, Any] = {"membership": "leave"}
                if reason is not None:
                    content["reason"] = reason
                if self.remote is None:
                    raise MatrixError(
                        400, Codes.UNKNOWN, "Rejecting a remote invite needs federation"
                    )
                await self.remote.leave_remote(user_id, room_id, content)
                return
            raise not_found(f"Unknown room {room_id}")
        membership = await self._membership(room_id, user_id)
        if membership in (None, "leave"):
            if membership is None:
                raise forbidden(f"{user_id} is not in the room")
            return
        content = {"membership": "leave"}
        if reason is not None:
            content["reason"] = reason
        await self._send_member(user_id, room_id, user_id, content)

    async def kick(self, sender: str, room_id: str, target: str, *, reason: str | None) -> None:
        if await self._head(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        if await self._membership(room_id, target) not in ("join", "invite", "knock"):
            raise forbidden(f"{target} is not in the room")
        content: dict[str, Any] = {"membership": "leave"}
        if reason is not None:
            content["reason"] = reason
        await self._send_member(sender, room_id, target, content)

    async def ban(self, sender: str, room_id: str, target: str, *, reason: str | None) -> None:
        if await self._head(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        content: dict[str, Any] = {"membership": "ban"}
        if reason is not None:
            content["reason"] = reason
        await self._send_member(sender, room_id, target, content)

    async def unban(self, sender: str, room_id: str, target: str, *, reason: str | None) -> None:
        if await self._head(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        if await self._membership(room_id, target) != "ban":
            raise forbidden(f"{target} is not banned")
        content: dict[str, Any] = {"membership": "leave"}
        if reason is not None:
            content["reason"] = reason
        await self._send_member(sender, room_id, target, content)

    async def forget(self, user_id: str, room_id: str) -> None:
        local = await self._store.get_local_membership(user_id, room_id)
        if local is None:
            raise not_found(f"{user_id} has never been in {room_id}")
        if local[0] in ("join", "invite", "knock"):
            raise MatrixError(400, Codes.UNKNOWN, f"{user_id} is still in {room_id}")
        await self._store.forget_room(user_id, room_id)
