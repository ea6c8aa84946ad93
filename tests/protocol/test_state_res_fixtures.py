"""A room-building harness for the state resolution tests (no tests of its own).

:class:`RoomBuilder` makes real, signed events with :func:`build_event`, chooses each
event's auth events from the state before it (resolving the states of its prev events
with the code under test, as a homeserver would), and checks every event it builds
against those auth events, so each scenario is a room a real server could have seen.

Events are named by a short label (``"PA"``, ``"T1"``); the V1 event format (room
versions 1 and 2) uses the label as the event ID's local part, so IDs like
``$PA:example.com`` make tie-breaks by event ID readable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ruma.protocol.auth import check_auth
from ruma.protocol.events import Event, StateKey, auth_types_for_event, build_event
from ruma.protocol.room_versions import RoomVersion
from ruma.protocol.signing import SigningKey, generate_signing_key
from ruma.protocol.state_res import resolve_state

SERVER = "example.com"
ALICE = "@alice:example.com"
BOB = "@bob:example.com"
CHARLIE = "@charlie:example.com"
EVELYN = "@evelyn:example.com"
ZARA = "@zara:example.com"

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
TOPIC = "m.room.topic"
MESSAGE = "m.room.message"

_KEY: list[SigningKey] = []


def signing_key() -> SigningKey:
    """One signing key for the whole test run (signatures do not affect event IDs)."""
    if not _KEY:
        _KEY.append(generate_signing_key("test"))
    return _KEY[0]


class RoomBuilder:
    """A room DAG under construction, with the state after each of its events."""

    def __init__(self, room_version: RoomVersion) -> None:
        self.room_version = room_version
        self.events: dict[str, Event] = {}
        self.ids: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.state_after: dict[str, dict[StateKey, str]] = {}
        # v12 room IDs come from the create event; earlier ones are chosen by the creator.
        self.room_id: str | None = (
            None if room_version.room_id_from_create_event else f"!room:{SERVER}"
        )
        self.last: str | None = None
        self._ts = 0

    # -- building ---------------------------------------------------------------------

    def add(
        self,
        label: str,
        sender: str,
        type: str,
        content: Mapping[str, Any],
        *,
        state_key: str | None = None,
        prev: Sequence[str] | None = None,
        ts: int | None = None,
    ) -> Event:
        """Add an event after ``prev`` (labels; default: the last event added)."""
        if prev is None:
            prev = [self.last] if self.last is not None else []
        prev_ids = [self.ids[name] for name in prev]
        state = self.state_before(prev_ids)
        keys = auth_types_for_event(self.room_version, type, sender, state_key, content)
        auth_events = [self.events[state[key]] for key in sorted(keys) if key in state]
        self._ts += 1
        event = build_event(
            self.room_version,
            room_id=self.room_id,
            sender=sender,
            type=type,
            content=content,
            state_key=state_key,
            prev_events=[self.events[event_id] for event_id in prev_ids],
            auth_events=auth_events,
            origin_server_ts=self._ts if ts is None else ts,
            server_name=SERVER,
            signing_key=signing_key(),
            event_id_localpart=label,
        )
        self._check_valid(event, auth_events)
        if self.room_id is None:
            self.room_id = event.room_id
        self.events[event.event_id] = event
        self.ids[label] = event.event_id
        self.labels[event.event_id] = label
        after = dict(state)
        if event.state_key is not None:
            after[event.state_key_tuple] = event.event_id
        self.state_after[event.event_id] = after
        self.last = label
        return event

    def _check_valid(self, event: Event, auth_events: Iterable[Event]) -> None:
        if event.type == CREATE:
            return  # nothing state-dependent to check; the auth tests cover it
        auth_state = {auth_event.state_key_tuple: auth_event for auth_event in auth_events}
        if self.room_version.room_id_from_create_event and event.type != CREATE:
            create_id = "$" + event.room_id[1:]
            auth_state[(CREATE, "")] = self.events[create_id]
        check_auth(event, auth_state)

    def state_before(self, prev_ids: Sequence[str]) -> dict[StateKey, str]:
        return resolve_state(
            self.room_version, [self.state_after[event_id] for event_id in prev_ids], self.events
        )

    # -- common events ----------------------------------------------------------------

    def levels(self, users: Mapping[str, int], **extra: Any) -> dict[str, Any]:
        """Power levels content; v12 creators (Alice) cannot be listed, so drop them."""
        if self.room_version.privileged_creators:
            users = {user: level for user, level in users.items() if user != ALICE}
        return {"users": dict(users), **extra}

    def member(self, label: str, sender: str, target: str, membership: str, **kwargs: Any) -> Event:
        return self.add(
            label, sender, MEMBER, {"membership": membership}, state_key=target, **kwargs
        )

    def power(self, label: str, sender: str, users: Mapping[str, int], **kwargs: Any) -> Event:
        return self.add(label, sender, POWER_LEVELS, self.levels(users), state_key="", **kwargs)

    def topic(self, label: str, sender: str, **kwargs: Any) -> Event:
        return self.add(label, sender, TOPIC, {"topic": label}, state_key="", **kwargs)

    def join_rules(self, label: str, sender: str, rule: str, **kwargs: Any) -> Event:
        return self.add(label, sender, JOIN_RULES, {"join_rule": rule}, state_key="", **kwargs)

    def initial_room(self) -> RoomBuilder:
        """Alice creates a public room (with level 100, or as v12 creator); Bob, Charlie
        and Zara join. Labels: CREATE, IMA, IPOWER, IJR, IMB, IMC, IMZ."""
        content: dict[str, Any] = {"room_version": self.room_version.identifier}
        if not self.room_version.implicit_room_creator:
            content["creator"] = ALICE
        self.add("CREATE", ALICE, CREATE, content, state_key="")
        self.member("IMA", ALICE, ALICE, "join")
        self.power("IPOWER", ALICE, {ALICE: 100})
        self.join_rules("IJR", ALICE, "public")
        self.member("IMB", BOB, BOB, "join")
        self.member("IMC", CHARLIE, CHARLIE, "join")
        self.member("IMZ", ZARA, ZARA, "join")
        return self

    # -- resolving --------------------------------------------------------------------

    def state_of(self, label: str) -> dict[StateKey, str]:
        return self.state_after[self.ids[label]]

    def resolve(self, *tips: str) -> dict[StateKey, str]:
        """Resolve the states after the events ``tips`` (the forward extremities)."""
        return resolve_state(self.room_version, [self.state_of(tip) for tip in tips], self.events)

    def named(self, state: Mapping[StateKey, str]) -> dict[StateKey, str]:
        """``state`` with event IDs replaced by their labels, for readable assertions."""
        return {key: self.labels[event_id] for key, event_id in state.items()}

    def resolve_named(self, *tips: str) -> dict[StateKey, str]:
        return self.named(self.resolve(*tips))
