"""Ruma's protocol core against real PDUs captured from Synapse (tests/vectors/synapse/).

For every room version 1-12 the captured room walks through joins, leaves, invites,
rejections, kicks, bans, knocks, restricted joins, power level changes, messages, edits
and redactions. Each class below runs the same checks on one room version: parsing,
content hashes, event IDs, signatures with Synapse's key, redaction, the auth rules, and
the room state that results, compared with Synapse's own current state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nacl.signing
from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.auth import AuthError, check_auth, check_auth_events
from ruma.protocol.errors import SignatureError
from ruma.protocol.events import (
    Event,
    StateKey,
    auth_types_for_event,
    check_content_hash,
    compute_event_id,
    verify_event_signatures,
)
from ruma.protocol.redaction import redact
from ruma.protocol.room_versions import EventFormat, RoomVersion, get_room_version
from ruma.protocol.signing import VerifyKey, decode_verify_key
from ruma.protocol.state_res import resolve_state

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "synapse"
VERSIONS = [str(v) for v in range(1, 13)]
CREATE: StateKey = ("m.room.create", "")


@cache
def load(version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"v{version}.json").read_text())
    return data


def state_key_of(key: str) -> StateKey:
    type_, _, state_key = key.partition("|")
    return (type_, state_key)


class Room:
    """One captured room, parsed by Ruma."""

    def __init__(self, version: str) -> None:
        data = load(version)
        self.data = data
        self.room_version: RoomVersion = get_room_version(data["room_version"])
        self.server_name: str = data["server_name"]
        self.keys: dict[str, VerifyKey] = {
            key_id: decode_verify_key(key_id, key) for key_id, key in data["verify_keys"].items()
        }
        self.pdus: list[dict[str, Any]] = data["events"]
        self.synapse_ids: list[str] = data["event_ids"]
        self.events: list[Event] = [Event.from_pdu(p, self.room_version) for p in self.pdus]
        self.by_id: dict[str, Event] = {e.event_id: e for e in self.events}
        self.create: Event = self.events[0]
        self.expected_state: dict[StateKey, str] = {
            state_key_of(k): v for k, v in data["expected_state"].items()
        }

    def get_verify_key(self, server: str, key_id: str) -> VerifyKey | None:
        return self.keys.get(key_id) if server == self.server_name else None

    def auth_state(self, event: Event) -> dict[StateKey, Event]:
        """The event's auth events as an auth state map (the v12 create event added)."""
        create = self.create if self.room_version.room_id_from_create_event else None
        return check_auth_events(event, self.by_id, create_event=create)

    def current_auth_state(
        self, event: Event, state: Mapping[StateKey, str]
    ) -> dict[StateKey, Event]:
        """The parts of ``state`` that auth events selection picks for ``event``."""
        wanted = auth_types_for_event(
            self.room_version, event.type, event.sender, event.state_key, event.content
        )
        wanted.add(CREATE)
        return {k: self.by_id[state[k]] for k in wanted if k in state}

    def states(self) -> list[dict[StateKey, str]]:
        """The state after each event, applying in order those that pass the auth rules
        against both their auth events and the state before them."""
        state: dict[StateKey, str] = {}
        out = []
        for event in self.events:
            if event.is_state:
                check_auth(event, self.auth_state(event))
                check_auth(event, self.current_auth_state(event, state))
                state = {**state, event.state_key_tuple: event.event_id}
            out.append(state)
        return out


if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object


class _SynapseVectors(_Base):
    """The checks, run once per captured room version by the classes below."""

    version: str

    def setUp(self) -> None:
        self.room = Room(self.version)

    def test_every_pdu_parses(self) -> None:
        """Every PDU Synapse produced parses as an Event of its room version, in its room,
        and ``Event.pdu()`` gives back exactly what Synapse sent."""
        room = self.room
        self.assertEqual(len(room.events), len(room.pdus))
        for event, pdu in zip(room.events, room.pdus, strict=True):
            self.assertEqual(event.room_id, room.data["room_id"])
            self.assertEqual(event.pdu(), pdu)
            self.assertEqual(event.room_version, room.room_version)

    def test_content_hashes(self) -> None:
        """Ruma computes the same content hash (``hashes.sha256``) as Synapse for every PDU."""
        for pdu in self.room.pdus:
            self.assertTrue(check_content_hash(pdu, self.room.room_version), pdu)

    def test_event_ids(self) -> None:
        """The event ID Ruma computes (the reference hash from v3, the ``event_id`` key in
        v1/v2) is the one Synapse stored, for every PDU."""
        room = self.room
        for pdu, event, synapse_id in zip(room.pdus, room.events, room.synapse_ids, strict=True):
            self.assertEqual(event.event_id, synapse_id)
            self.assertEqual(compute_event_id(pdu, room.room_version), synapse_id)
        if room.room_version.event_format is not EventFormat.V1:
            for pdu in room.pdus:
                self.assertFalse("event_id" in pdu)

    def test_v12_room_id_is_create_event_id(self) -> None:
        """In v12 the room ID is the create event's ID with '!'; before v12 it is not."""
        room = self.room
        derived = "!" + room.create.event_id[1:]
        self.assertEqual(
            room.data["room_id"] == derived, room.room_version.room_id_from_create_event
        )

    def test_signatures(self) -> None:
        """Every PDU's signature by Synapse verifies with Synapse's published key through
        Ruma's verification (which checks the redacted form)."""
        for event in self.room.events:
            verify_event_signatures(event, self.room.get_verify_key)

    def test_wrong_key_or_altered_event_fails(self) -> None:
        """The signature check is not vacuous: a different key, or a change to a field the
        signature covers, makes it fail."""
        room = self.room
        event = room.events[-1]
        other = nacl.signing.SigningKey(bytes(32)).verify_key  # not Synapse's key
        self.assertRaises(SignatureError, verify_event_signatures, event, lambda s, k: other)
        pdu = event.pdu()
        pdu["origin_server_ts"] += 1
        altered = Event.from_pdu(pdu, room.room_version)
        if room.room_version.event_format is not EventFormat.V1:
            self.assertFalse(altered.event_id == event.event_id)
        self.assertRaises(SignatureError, verify_event_signatures, altered, room.get_verify_key)

    def test_altered_message_body_means_redact(self) -> None:
        """A message whose body was changed in transit fails its content hash but keeps
        its event ID and a valid signature: a receiver must redact it, not reject it."""
        room = self.room
        message = next(e for e in room.events if e.type == "m.room.message")
        pdu = message.pdu()
        pdu["content"]["body"] = "tampered"
        self.assertFalse(check_content_hash(pdu, room.room_version))
        altered = Event.from_pdu(pdu, room.room_version)
        self.assertEqual(altered.event_id, message.event_id)
        verify_event_signatures(altered, room.get_verify_key)

    def test_redacted_events_still_verify(self) -> None:
        """Redacting any PDU with Ruma's ``redact`` keeps its event ID, and Synapse's
        signature still verifies on it: the redaction algorithms agree byte for byte."""
        room = self.room
        for event, pdu in zip(room.events, room.pdus, strict=True):
            redacted_pdu = redact(pdu, room.room_version)
            redacted = Event.from_pdu(redacted_pdu, room.room_version)
            self.assertEqual(redacted.event_id, event.event_id)
            verify_event_signatures(redacted, room.get_verify_key)
            self.assertEqual(event.redacted().pdu(), redacted_pdu)

    def test_redactions_target_captured_events(self) -> None:
        """The captured redactions (a message by its sender, another by a moderator, and a
        state event) point at events in the room, found via ``Event.redacts`` whichever
        place (top level or content) the room version puts it."""
        room = self.room
        redactions = [e for e in room.events if e.type == "m.room.redaction"]
        self.assertEqual(len(redactions), 3)
        targets = [room.by_id[r.redacts] for r in redactions if r.redacts]
        self.assertEqual(len(targets), 3)
        self.assertTrue(any(t.is_state for t in targets))
        self.assertTrue(any(t.sender == r.sender for t, r in zip(targets, redactions, strict=True)))

    def test_redacted_state_event_content(self) -> None:
        """Redacting the captured topic event keeps no content (m.room.topic keeps none),
        while redacting a membership keeps the membership."""
        room = self.room
        topic = next(e for e in room.events if e.type == "m.room.topic")
        self.assertEqual(topic.redacted().content, {})
        member = next(e for e in room.events if e.type == "m.room.member")
        self.assertEqual(member.redacted().content.get("membership"), "join")

    def test_auth_against_auth_events(self) -> None:
        """Every event passes the auth-events checks and the auth rules against its own
        auth events (with the create event in v12)."""
        room = self.room
        for event in room.events:
            try:
                check_auth(event, room.auth_state(event))
            except AuthError as e:
                raise AssertionError(f"{event!r} rejected: {e}") from e

    def test_auth_event_selection_matches_synapse(self) -> None:
        """For every event, the auth events Synapse chose are exactly what Ruma's
        ``auth_types_for_event`` selects from the state before the event (so events Ruma
        builds reference the same auth events Synapse's would)."""
        room = self.room
        states = [{}, *room.states()[:-1]]
        for event, before in zip(room.events, states, strict=True):
            chosen = {room.by_id[a].state_key_tuple for a in event.auth_event_ids}
            wanted = auth_types_for_event(
                room.room_version, event.type, event.sender, event.state_key, event.content
            )
            self.assertEqual(chosen, {k for k in wanted if k in before}, event)

    def test_state_matches_synapse(self) -> None:
        """Applying the state events in stream order, each authorised against its auth
        events and against the state before it, gives Synapse's current state."""
        room = self.room
        final = room.states()[-1]
        self.assertEqual(final, room.expected_state)

    def test_forbidden_topic_change_is_rejected(self) -> None:
        """Auth is not vacuous: bob's topic change (topic needs 50) passes with the power
        levels that gave him 50 and fails against the earlier power levels."""
        room = self.room
        bob_topic = next(
            e for e in room.events if e.type == "m.room.topic" and e.sender.startswith("@bob:")
        )
        pls = [e for e in room.events if e.type == "m.room.power_levels"]
        auth_state = room.auth_state(bob_topic)
        check_auth(bob_topic, auth_state)
        old = {**auth_state, ("m.room.power_levels", ""): pls[0]}
        with_old = self.assertRaises(AuthError, check_auth, bob_topic, old)
        self.assertTrue(with_old.rule, with_old)

    def test_join_without_invite_is_rejected(self) -> None:
        """Bob's join after alice's invite passes; the same join against his previous
        membership (left) and the invite-only join rule fails."""
        room = self.room
        states = room.states()
        for i, event in enumerate(room.events):
            if event.membership == "join" and event.sender.startswith("@bob:"):
                before = states[i - 1]
                prev_member = (
                    room.by_id[before[("m.room.member", event.sender)]]
                    if ("m.room.member", event.sender) in before
                    else None
                )
                if prev_member is not None and prev_member.membership == "invite":
                    break
        else:
            raise AssertionError("no invited join found")
        auth_state = room.auth_state(event)
        check_auth(event, auth_state)
        leave = next(
            e for e in room.events[:i] if e.state_key == event.sender and e.membership == "leave"
        )
        forged = {**auth_state, ("m.room.member", event.sender): leave}
        self.assertRaises(AuthError, check_auth, event, forged)

    def _resolve(self, sets: Sequence[Mapping[StateKey, str]]) -> dict[StateKey, str]:
        return resolve_state(self.room.room_version, sets, self.room.by_id)

    def test_resolve_identical_sets(self) -> None:
        """State resolution over two copies of Synapse's final state returns it."""
        room = self.room
        final = room.states()[-1]
        self.assertEqual(self._resolve([final, dict(final)]), room.expected_state)

    def test_states_match_synapse_recorded_states(self) -> None:
        """The state after each event at which Synapse's recorded state was captured (from
        its state groups) is the state Ruma reaches by applying the auth-checked events."""
        room = self.room
        states = room.states()
        index = {event_id: i for i, event_id in enumerate(room.synapse_ids)}
        recorded = room.data["recorded_states"]
        self.assertTrue(len(recorded) >= 5)
        for event_id, state in recorded.items():
            expected = {state_key_of(k): v for k, v in state.items()}
            self.assertEqual(states[index[event_id]], expected, event_id)

    def test_fork_cases_resolve_like_synapse(self) -> None:
        """A fork along the captured history: the states Synapse recorded after an earlier
        event (bob joined a public room; kicked; banned; half-way; bob's topic) and after
        the last event, resolved by Ruma, give what Synapse's own state resolution code
        gave on the same input (in v1 rooms that is not always the later state)."""
        room = self.room
        recorded = room.data["recorded_states"]
        cases = room.data["fork_cases"]
        self.assertTrue(len(cases) >= 11)
        for case in cases:
            sets = [
                {state_key_of(k): v for k, v in recorded[event_id].items()}
                for event_id in case["state_after"]
            ]
            expected = {state_key_of(k): v for k, v in case["resolved"].items()}
            self.assertEqual(self._resolve(sets), expected, case["description"])


for _v in VERSIONS:
    _name = f"SynapseRoomV{_v}Tests"
    globals()[_name] = type(
        _name,
        (_SynapseVectors, SynchronousTestCase),
        {
            "version": _v,
            "__doc__": f"Ruma's protocol core against the room of version {_v} built by Synapse.",
            "__module__": __name__,
        },
    )
del _v, _name
