"""Build real, signed events of any room version for auth-rule tests.

``RoomFactory`` keeps a room's current state and builds each new event with the auth
events that auth events selection picks from it, so a test can set a room up with a few
``send`` calls and then check one candidate event against the rules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ruma.protocol.auth import check_auth, check_auth_events
from ruma.protocol.events import Event, StateKey, auth_types_for_event, build_event
from ruma.protocol.redaction import redact
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from ruma.protocol.signing import SigningKey, sign_json, signing_key_from_seed

ALL_VERSIONS: tuple[RoomVersion, ...] = tuple(KNOWN_ROOM_VERSIONS.values())

ALICE = "@alice:a.test"  # the creator
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:a.test"
MALLORY = "@mallory:m.test"


def versions(first: int = 1, last: int = 12) -> list[RoomVersion]:
    """The known room versions numbered ``first`` to ``last`` inclusive."""
    return [v for v in ALL_VERSIONS if first <= int(v.identifier) <= last]


def server_key(server_name: str) -> SigningKey:
    """A fixed signing key per server name, so runs are reproducible."""
    seed = hashlib.sha256(server_name.encode()).digest()
    return signing_key_from_seed("t1", seed)


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def add_signature(event: Event, server_name: str) -> Event:
    """``event`` with an extra signature by ``server_name`` (its ID is unchanged)."""
    pdu = event.pdu()
    signed = sign_json(
        redact(pdu, event.room_version),
        server_name,
        server_key(server_name),
        strict=event.room_version.strict_canonicaljson,
    )
    pdu["signatures"] = signed["signatures"]
    return Event.from_pdu(pdu, event.room_version)


class RoomFactory:
    """A room under construction: its events, its current state, and a builder."""

    def __init__(
        self,
        room_version: RoomVersion,
        creator: str = ALICE,
        *,
        create_content: Mapping[str, Any] | None = None,
    ) -> None:
        self.room_version = room_version
        self.creator = creator
        self.state: dict[StateKey, Event] = {}
        self.events: dict[str, Event] = {}
        self.latest: list[Event] = []
        self._ts = 1_700_000_000_000
        self._counter = 0
        content: dict[str, Any] = {"room_version": room_version.identifier}
        if not room_version.implicit_room_creator:
            content["creator"] = creator
        if create_content is not None:
            content.update(create_content)
        self.room_id: str | None = (
            None if room_version.room_id_from_create_event else f"!room:{server_of(creator)}"
        )
        self.create = self.add(self.build("m.room.create", creator, content, state_key=""))
        self.room_id = self.create.room_id

    # -- building ---------------------------------------------------------------------------

    def auth_events_for(
        self, type: str, sender: str, state_key: str | None, content: Mapping[str, Any]
    ) -> list[Event]:
        wanted = auth_types_for_event(self.room_version, type, sender, state_key, content)
        return [self.state[key] for key in sorted(wanted) if key in self.state]

    def build(
        self,
        type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        prev_events: Sequence[Event] | None = None,
        auth_events: Sequence[Event] | None = None,
        redacts: str | None = None,
        room_id: str | None = None,
        server_name: str | None = None,
    ) -> Event:
        """Build (but do not add) an event on top of the room's latest event."""
        self._counter += 1
        self._ts += 1
        is_create = type == "m.room.create" and state_key == ""
        if auth_events is None:
            auth_events = self.auth_events_for(type, sender, state_key, content)
        if prev_events is None:
            prev_events = [] if is_create else self.latest
        if room_id is None and not (is_create and self.room_version.room_id_from_create_event):
            room_id = self.room_id
        server_name = server_name or server_of(sender)
        return build_event(
            self.room_version,
            room_id=room_id,
            sender=sender,
            type=type,
            content=content,
            state_key=state_key,
            prev_events=prev_events,
            auth_events=auth_events,
            origin_server_ts=self._ts,
            server_name=server_name,
            signing_key=server_key(server_name),
            redacts=redacts,
            event_id_localpart=f"e{self._counter}",
        )

    def add(self, event: Event) -> Event:
        """Make ``event`` part of the room without checking it."""
        self.events[event.event_id] = event
        if event.state_key is not None:
            self.state[event.state_key_tuple] = event
        self.latest = [event]
        return event

    # -- checking ---------------------------------------------------------------------------

    def auth_state(self, event: Event, extra: Iterable[Event] = ()) -> dict[StateKey, Event]:
        """Run :func:`check_auth_events` on ``event``'s own auth events."""
        known = dict(self.events)
        known.update((e.event_id, e) for e in extra)
        create = self.create if self.room_version.room_id_from_create_event else None
        return check_auth_events(event, known, create_event=create)

    def check(self, event: Event, extra: Iterable[Event] = ()) -> None:
        """Both stages of auth against the event's auth events; raises AuthError."""
        check_auth(event, self.auth_state(event, extra))

    def send(
        self, type: str, sender: str, content: Mapping[str, Any], state_key: str | None = None
    ) -> Event:
        """Build, authorise and add an event; a setup step that must pass."""
        event = self.build(type, sender, content, state_key)
        self.check(event)
        return self.add(event)

    # -- common set-ups ---------------------------------------------------------------------

    def member(
        self, user: str, membership: str, sender: str | None = None, **content: Any
    ) -> Event:
        """Build a member event for ``user`` (sent by ``sender``, default ``user``)."""
        return self.build(
            "m.room.member", sender or user, {"membership": membership, **content}, user
        )

    def set_member(self, user: str, membership: str, sender: str | None = None) -> Event:
        """Add a member event without checking it (to reach a state quickly)."""
        return self.add(self.member(user, membership, sender))

    def set_power_levels(self, sender: str | None = None, **content: Any) -> Event:
        """Add an ``m.room.power_levels`` event without checking it."""
        return self.add(self.build("m.room.power_levels", sender or self.creator, content, ""))

    def set_join_rule(self, join_rule: str, **content: Any) -> Event:
        return self.add(
            self.build("m.room.join_rules", self.creator, {"join_rule": join_rule, **content}, "")
        )


def standard_room(
    room_version: RoomVersion,
    *,
    join_rule: str = "public",
    users: Mapping[str, int] | None = None,
    members: Iterable[str] = (),
    create_content: Mapping[str, Any] | None = None,
    **power_levels: Any,
) -> RoomFactory:
    """A room as ``/createRoom`` makes it, every step authorised: create, the creator's
    join, power levels (creator at 100 unless v12 creators are implicit), the join rule;
    then each of ``members`` joins (through a public join rule, then the rule is set)."""
    room = RoomFactory(room_version, create_content=create_content)
    room.send("m.room.member", room.creator, {"membership": "join"}, room.creator)
    levels: dict[str, int] = {} if room_version.privileged_creators else {room.creator: 100}
    levels.update(users or {})
    room.send("m.room.power_levels", room.creator, {"users": levels, **power_levels}, "")
    members = list(members)
    if members:
        room.send("m.room.join_rules", room.creator, {"join_rule": "public"}, "")
        for user in members:
            room.send("m.room.member", user, {"membership": "join"}, user)
    room.send("m.room.join_rules", room.creator, {"join_rule": join_rule}, "")
    return room
