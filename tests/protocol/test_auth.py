"""The authorisation rules (ruma.protocol.auth) for every room version family.

Each test builds real, signed events with :mod:`tests.protocol.eventfactory`, runs both
stages (``check_auth_events`` then ``check_auth``) and checks the outcome, and for a
rejection the ``rule`` the error names. Loops over versions use ``subTest``.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.auth import (
    AuthError,
    can_federate,
    check_auth,
    check_auth_events,
    get_creators,
    get_named_level,
    get_notification_level,
    get_send_level,
    get_user_power_level,
    is_creator,
    room_id_for_create_event_id,
)
from ruma.protocol.errors import InvalidEvent, ProtocolError
from ruma.protocol.events import Event
from ruma.protocol.room_versions import RoomVersion, RoomVersions
from ruma.protocol.signing import encode_base64, sign_json
from tests.protocol.eventfactory import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    DAVE,
    MALLORY,
    RoomFactory,
    add_signature,
    server_key,
    standard_room,
    versions,
)

V1_2 = versions(1, 2)
V1_5 = versions(1, 5)
V3_PLUS = versions(3)
V6_PLUS = versions(6)
V7_PLUS = versions(7)
V8_PLUS = versions(8)
V10_PLUS = versions(10)
V1_9 = versions(1, 9)
V1_10 = versions(1, 10)
V11_PLUS = versions(11)
PRE_V12 = versions(1, 11)
V12 = RoomVersions.V12


class AuthTestCase(SynchronousTestCase):
    """Assertions shared by the auth tests."""

    def assertAllowed(self, room: RoomFactory, event: Event, extra: Iterable[Event] = ()) -> None:
        room.check(event, extra)

    def assertRejected(
        self, room: RoomFactory, event: Event, rule: str, extra: Iterable[Event] = ()
    ) -> AuthError:
        error: AuthError = self.assertRaises(AuthError, room.check, event, extra)
        self.assertEqual(error.rule, rule, error.reason)
        return error

    def each(
        self, room_versions: Iterable[RoomVersion], test: Callable[[RoomVersion], None]
    ) -> None:
        for room_version in room_versions:
            with self.subTest(room_version=room_version.identifier):
                test(room_version)


def pdu_event(event: Event, **changes: Any) -> Event:
    """A copy of ``event`` with top-level PDU keys replaced (its ID may change)."""
    pdu = event.pdu()
    pdu.update(changes)
    return Event.from_pdu(pdu, event.room_version)


# --- rule 1: m.room.create -------------------------------------------------------------------


class CreateRuleTests(AuthTestCase):
    def test_valid_create(self) -> None:
        """A create event with no prev events and a known version is allowed in every version."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            self.assertEqual(room.auth_state(room.create), {})
            check_auth(room.create, {})

        self.each(ALL_VERSIONS, test)

    def test_prev_events(self) -> None:
        """1.1: a create event with prev events is rejected in every version."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            content = room.create.content
            create = room.build(
                "m.room.create", ALICE, content, "", prev_events=[room.create], auth_events=[]
            )
            self.assertRejected(room, create, "create.has_prev_events")

        self.each(ALL_VERSIONS, test)

    def test_room_id_domain(self) -> None:
        """1.2 (v1-v11): the room ID's domain must be the sender's."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            create = room.build(
                "m.room.create", ALICE, room.create.content, "", room_id="!room:b.test"
            )
            self.assertRejected(room, create, "create.room_id_domain")

        self.each(PRE_V12, test)

    def test_v12_create_has_no_room_id(self) -> None:
        """1.2 (v12): a create event carrying a room_id never becomes an Event at all."""
        room = RoomFactory(V12)
        pdu = room.create.pdu()
        pdu["room_id"] = "!whatever:a.test"
        self.assertRaises(InvalidEvent, Event.from_pdu, pdu, V12)

    def test_v12_create_room_id_rule(self) -> None:
        """1.2 (v12): the rule itself rejects a create event whose PDU has a room_id (shown
        on a stand-in, since no Event can be built from such a PDU)."""
        create = RoomFactory(V12).create

        class WithRoomID:
            room_version = V12
            type = "m.room.create"
            sender = create.sender
            content = create.content
            prev_event_ids = ()

            def get(self, key: str, default: object = None) -> object:
                return "!whatever:a.test" if key == "room_id" else create.get(key, default)

        error = self.assertRaises(AuthError, check_auth, WithRoomID(), {})  # duck-typed Event
        self.assertEqual(error.rule, "create.has_room_id")

    def test_v12_room_id_is_create_event_id(self) -> None:
        """1.2 note (v12): the room ID is the create event's ID with the '!' sigil."""
        room = RoomFactory(V12)
        self.assertEqual(room.create.room_id, "!" + room.create.event_id[1:])
        self.assertEqual(room_id_for_create_event_id(room.create.event_id), room.room_id)

    def test_unknown_room_version(self) -> None:
        """1.3: an unrecognised (or non-string) content.room_version is rejected."""

        def test(rv: RoomVersion) -> None:
            for bad in ("13", "org.example.custom", 12, None):
                room = RoomFactory(rv, create_content={"room_version": bad})
                self.assertRejected(room, room.create, "create.unknown_room_version")

        self.each(ALL_VERSIONS, test)

    def test_room_version_absent(self) -> None:
        """1.3: content.room_version may be absent (it then means "1")."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            content = {k: v for k, v in room.create.content.items() if k != "room_version"}
            create = room.build("m.room.create", ALICE, content, "")
            self.assertAllowed(room, create)

        self.each(ALL_VERSIONS, test)

    def test_creator_required_until_v10(self) -> None:
        """1.4 (v1-v10): content.creator is required."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            create = room.build("m.room.create", ALICE, {"room_version": rv.identifier}, "")
            self.assertRejected(room, create, "create.no_creator")

        self.each(V1_10, test)

    def test_creator_not_required_from_v11(self) -> None:
        """v11+: the creator is the sender; content.creator is not needed."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            self.assertNotIn("creator", room.create.content)
            self.assertAllowed(room, room.create)

        self.each(V11_PLUS, test)

    def test_v12_additional_creators_valid(self) -> None:
        """1.4 (v12): additional_creators that are all user IDs are allowed."""
        room = RoomFactory(V12, create_content={"additional_creators": [BOB, "@x:[::1]:8448"]})
        self.assertAllowed(room, room.create)

    def test_v12_additional_creators_invalid(self) -> None:
        """1.4 (v12): additional_creators must be an array of valid user IDs."""
        for bad in ("@bob:b.test", [BOB, "bob"], [BOB, 7], ["@bob"], {"@bob:b.test": 1}):
            with self.subTest(additional_creators=bad):
                room = RoomFactory(V12, create_content={"additional_creators": bad})
                self.assertRejected(room, room.create, "create.invalid_additional_creators")

    def test_additional_creators_ignored_before_v12(self) -> None:
        """Before v12 additional_creators means nothing to the rules, valid or not."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv, create_content={"additional_creators": "nonsense"})
            self.assertAllowed(room, room.create)
            self.assertNotIn(BOB, get_creators(room.state))

        self.each(PRE_V12, test)

    def test_create_has_auth_events(self) -> None:
        """Auth events selection gives a create event no auth events (v1-v11)."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            create = room.build(
                "m.room.create",
                ALICE,
                room.create.content,
                "",
                prev_events=[],
                auth_events=[room.create],
            )
            self.assertRejected(room, create, "create.has_auth_events")

        self.each(PRE_V12, test)


# --- rules 2 and 3 (v12) / 2 (v1-v11): the auth events list ---------------------------------


class AuthEventsTests(AuthTestCase):
    def message(self, room: RoomFactory, sender: str = ALICE) -> Event:
        return room.build("m.room.message", sender, {"body": "hi", "msgtype": "m.text"})

    def test_returns_auth_state(self) -> None:
        """The map holds each auth event under its (type, state_key), and the create event
        (passed separately in v12) under ("m.room.create", "")."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            event = self.message(room)
            state = room.auth_state(event)
            self.assertEqual(
                set(state),
                {("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", ALICE)},
            )
            self.assertIs(state[("m.room.create", "")], room.create)

        self.each(ALL_VERSIONS, test)

    def test_iterable_of_events(self) -> None:
        """The auth events may be given as the events themselves, exactly those listed."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            event = self.message(room)
            listed = [room.events[i] for i in event.auth_event_ids]
            create = room.create if rv.room_id_from_create_event else None
            state = check_auth_events(event, listed, create_event=create)
            self.assertEqual(state[("m.room.member", ALICE)], room.state[("m.room.member", ALICE)])
            extra = listed + [room.state[("m.room.join_rules", "")]]
            error = self.assertRaises(
                AuthError, check_auth_events, event, extra, create_event=create
            )
            self.assertEqual(error.rule, "auth_events.not_listed")

        self.each(ALL_VERSIONS, test)

    def test_missing(self) -> None:
        """An auth event the caller did not supply is reported, never silently skipped."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            event = self.message(room)
            error = self.assertRaises(AuthError, check_auth_events, event, {})
            self.assertEqual(error.rule, "auth_events.missing")

        self.each(ALL_VERSIONS, test)

    def test_duplicate(self) -> None:
        """3.1 / 2.1: two auth events for one (type, state_key) are rejected."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            old_levels = room.state[("m.room.power_levels", "")]
            room.send("m.room.power_levels", ALICE, old_levels.content, "")
            auth = room.auth_events_for("m.room.message", ALICE, None, {}) + [old_levels]
            event = room.build("m.room.message", ALICE, {"body": "x"}, auth_events=auth)
            self.assertRejected(room, event, "auth_events.duplicate")

        self.each(ALL_VERSIONS, test)

    def test_unexpected(self) -> None:
        """3.2 / 2.2: an auth event that auth events selection would not pick is rejected."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            auth = room.auth_events_for("m.room.message", ALICE, None, {})
            auth.append(room.state[("m.room.join_rules", "")])
            event = room.build("m.room.message", ALICE, {"body": "x"}, auth_events=auth)
            self.assertRejected(room, event, "auth_events.unexpected")

        self.each(ALL_VERSIONS, test)

    def test_target_member_selected_for_membership(self) -> None:
        """3.2: a member event may list its target's member event and the join rules."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB])
            kick = room.member(BOB, "leave", sender=ALICE)
            self.assertIn(("m.room.member", BOB), room.auth_state(kick))
            self.assertAllowed(room, kick)

        self.each(ALL_VERSIONS, test)

    def test_not_state(self) -> None:
        """A message event can never be an auth event."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            message = room.add(self.message(room))
            auth = room.auth_events_for("m.room.message", ALICE, None, {}) + [message]
            event = room.build("m.room.message", ALICE, {"body": "x"}, auth_events=auth)
            self.assertRejected(room, event, "auth_events.not_state")

        self.each(ALL_VERSIONS, test)

    def test_no_create(self) -> None:
        """2.4 (v1-v11): the create event must be among the auth events."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            auth = [
                e
                for e in room.auth_events_for("m.room.message", ALICE, None, {})
                if e.type != "m.room.create"
            ]
            event = room.build("m.room.message", ALICE, {"body": "x"}, auth_events=auth)
            self.assertRejected(room, event, "auth_events.no_create")

        self.each(PRE_V12, test)

    def test_v12_create_listed(self) -> None:
        """3.2 (v12): the create event must not be listed in auth_events."""
        room = standard_room(V12)
        event = self.message(room)
        forged = pdu_event(event, auth_events=[room.create.event_id, *event.auth_event_ids])
        self.assertRejected(room, forged, "auth_events.create_listed")

    def test_wrong_room(self) -> None:
        """3.5 / 2.5: every auth event must be in the event's room."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            if rv.room_id_from_create_event:
                other = standard_room(rv, create_content={"m.federate": True})
                foreign = other.state[("m.room.power_levels", "")]
                self.assertNotEqual(foreign.room_id, room.room_id)
            else:
                foreign = pdu_event(
                    room.state[("m.room.power_levels", "")], room_id="!elsewhere:a.test"
                )
            auth = [
                e
                for e in room.auth_events_for("m.room.message", ALICE, None, {})
                if e.type != "m.room.power_levels"
            ]
            event = room.build("m.room.message", ALICE, {"body": "x"}, auth_events=[*auth, foreign])
            self.assertRejected(room, event, "auth_events.wrong_room", extra=[foreign])

        self.each(ALL_VERSIONS, test)

    def test_v12_wrong_create_event(self) -> None:
        """2 (v12): the create event given must be the one the room ID names."""
        room = standard_room(V12)
        other = RoomFactory(V12, create_content={"m.federate": True})
        event = self.message(room)
        error = self.assertRaises(
            AuthError, check_auth_events, event, room.events, create_event=other.create
        )
        self.assertEqual(error.rule, "room_id.not_create_event")

    def test_v12_check_auth_needs_the_rooms_create_event(self) -> None:
        """2 (v12): check_auth itself refuses a create event that is not the room's."""
        room = standard_room(V12)
        other = RoomFactory(V12, create_content={"m.federate": True})
        event = self.message(room)
        state = room.auth_state(event)
        state[("m.room.create", "")] = other.create
        error = self.assertRaises(AuthError, check_auth, event, state)
        self.assertEqual(error.rule, "room_id.not_create_event")

    def test_check_auth_without_create(self) -> None:
        """Without a create event in the auth state nothing but a create event passes."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            event = self.message(room)
            state = room.auth_state(event)
            del state[("m.room.create", "")]
            error = self.assertRaises(AuthError, check_auth, event, state)
            self.assertEqual(error.rule, "auth_events.no_create")

        self.each(ALL_VERSIONS, test)


# --- rule 4 (v12) / 3 (v1-v11): m.federate ----------------------------------------------------


class FederateTests(AuthTestCase):
    def test_remote_join_refused(self) -> None:
        """m.federate false: a user of another server cannot join, even a public room."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, create_content={"m.federate": False})
            self.assertFalse(can_federate(room.state))
            self.assertRejected(room, room.member(BOB, "join"), "federate.disallowed")
            self.assertAllowed(room, room.member(DAVE, "join"))

        self.each(ALL_VERSIONS, test)

    def test_federate_default(self) -> None:
        """m.federate absent or true: the room federates."""

        def test(rv: RoomVersion) -> None:
            for content in ({}, {"m.federate": True}):
                room = standard_room(rv, create_content=content)
                self.assertTrue(can_federate(room.state))
                self.assertAllowed(room, room.member(BOB, "join"))

        self.each(ALL_VERSIONS, test)

    def test_remote_message_refused(self) -> None:
        """m.federate false applies to every event, not only joins."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, create_content={"m.federate": False})
            room.set_member(BOB, "join")
            event = room.build("m.room.message", BOB, {"body": "hi"})
            self.assertRejected(room, event, "federate.disallowed")

        self.each(ALL_VERSIONS, test)


# --- v1-v5 rule 4: m.room.aliases ---------------------------------------------------------------


class AliasesTests(AuthTestCase):
    def test_own_domain_without_membership(self) -> None:
        """v1-v5: a server may set its own aliases even if the sender is not in the room."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            event = room.build("m.room.aliases", BOB, {"aliases": ["#a:b.test"]}, "b.test")
            self.assertAllowed(room, event)

        self.each(V1_5, test)

    def test_other_domain(self) -> None:
        """v1-v5: the state_key must be the sender's domain."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            event = room.build("m.room.aliases", ALICE, {"aliases": ["#a:b.test"]}, "b.test")
            self.assertRejected(room, event, "aliases.wrong_domain")

        self.each(V1_5, test)

    def test_no_state_key(self) -> None:
        """v1-v5: an m.room.aliases event without a state_key is rejected."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            event = room.build("m.room.aliases", ALICE, {"aliases": []})
            self.assertRejected(room, event, "aliases.no_state_key")

        self.each(V1_5, test)

    def test_ordinary_state_from_v6(self) -> None:
        """v6+: m.room.aliases is an ordinary state event (membership, then power)."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB])
            outsider = room.build("m.room.aliases", CAROL, {"aliases": []}, "c.test")
            self.assertRejected(room, outsider, "sender_not_joined")
            weak = room.build("m.room.aliases", BOB, {"aliases": []}, "b.test")
            self.assertRejected(room, weak, "power_level.too_low")
            other_domain = room.build("m.room.aliases", ALICE, {"aliases": []}, "b.test")
            self.assertAllowed(room, other_domain)

        self.each(V6_PLUS, test)


# --- rule 5: m.room.member ------------------------------------------------------------------


class MemberBasicsTests(AuthTestCase):
    def test_no_membership(self) -> None:
        """5.1: a member event without content.membership is rejected."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            event = room.build("m.room.member", BOB, {"displayname": "Bob"}, BOB)
            self.assertRejected(room, event, "member.no_membership")

        self.each(ALL_VERSIONS, test)

    def test_no_state_key(self) -> None:
        """5.1: a member event without a state_key is rejected."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            event = room.build("m.room.member", BOB, {"membership": "join"})
            self.assertRejected(room, event, "member.no_state_key")

        self.each(ALL_VERSIONS, test)

    def test_unknown_membership(self) -> None:
        """5.8: an unknown membership is rejected."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            self.assertRejected(room, room.member(BOB, "wave"), "member.unknown_membership")

        self.each(ALL_VERSIONS, test)

    def test_knock_unknown_before_v7(self) -> None:
        """Before v7 'knock' is an unknown membership, even under a 'knock' join rule."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, join_rule="knock")
            self.assertRejected(room, room.member(BOB, "knock"), "member.unknown_membership")

        self.each(versions(1, 6), test)


class JoinTests(AuthTestCase):
    def test_creator_first_join(self) -> None:
        """5.3.1: the creator's join right after the create event is allowed."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            self.assertAllowed(room, room.member(ALICE, "join"))

        self.each(ALL_VERSIONS, test)

    def test_first_join_needs_create_as_only_prev(self) -> None:
        """5.3.1: with another prev event the creator's join needs the join rule."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            other = room.build("m.room.message", ALICE, {"body": "x"})
            join = room.build(
                "m.room.member",
                ALICE,
                {"membership": "join"},
                ALICE,
                prev_events=[room.create, other],
            )
            self.assertRejected(room, join, "member.join.not_invited", extra=[other])

        self.each(ALL_VERSIONS, test)

    def test_first_join_content_creator_v1_10(self) -> None:
        """5.3.1 (v1-v10): "the creator" is content.creator, not the create event's sender."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv, create_content={"creator": DAVE})
            self.assertAllowed(room, room.member(DAVE, "join"))
            self.assertRejected(room, room.member(ALICE, "join"), "member.join.not_invited")

        self.each(V1_10, test)

    def test_first_join_sender_v11(self) -> None:
        """5.3.1 (v11+): "the creator" is the create event's sender; content.creator is ignored."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv, create_content={"creator": DAVE})
            self.assertAllowed(room, room.member(ALICE, "join"))
            self.assertRejected(room, room.member(DAVE, "join"), "member.join.not_invited")

        self.each(V11_PLUS, test)

    def test_v12_additional_creator_first_join(self) -> None:
        """5.3.1 (v12): only the create event's sender gets the first join, not additional
        creators."""
        room = RoomFactory(V12, create_content={"additional_creators": [DAVE]})
        self.assertRejected(room, room.member(DAVE, "join"), "member.join.not_invited")

    def test_sender_not_target(self) -> None:
        """5.3.2: nobody can join on behalf of someone else."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            self.assertRejected(
                room, room.member(BOB, "join", sender=ALICE), "member.join.sender_not_target"
            )

        self.each(ALL_VERSIONS, test)

    def test_banned(self) -> None:
        """5.3.3: a banned user cannot join, even a public room."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            room.set_member(BOB, "ban", sender=ALICE)
            self.assertRejected(room, room.member(BOB, "join"), "member.join.banned")

        self.each(ALL_VERSIONS, test)

    def test_invite_rule(self) -> None:
        """5.3.4: under 'invite', invited or joined users may join; others may not."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, join_rule="invite", members=[CAROL])
            self.assertRejected(room, room.member(BOB, "join"), "member.join.not_invited")
            self.assertAllowed(room, room.member(CAROL, "join", displayname="C"))
            room.set_member(BOB, "invite", sender=ALICE)
            self.assertAllowed(room, room.member(BOB, "join"))

        self.each(ALL_VERSIONS, test)

    def test_no_join_rules_event(self) -> None:
        """Without a join rules event nobody uninvited can join (treated as 'invite')."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            room.send("m.room.member", ALICE, {"membership": "join"}, ALICE)
            self.assertRejected(room, room.member(BOB, "join"), "member.join.not_invited")
            room.set_member(BOB, "invite", sender=ALICE)
            self.assertAllowed(room, room.member(BOB, "join"))

        self.each(ALL_VERSIONS, test)

    def test_knock_rule(self) -> None:
        """5.3.4 (v7+): under 'knock', invited users may join; others, knocking or not, may not."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, join_rule="knock")
            room.set_member(CAROL, "knock")
            self.assertRejected(room, room.member(CAROL, "join"), "member.join.not_invited")
            room.set_member(BOB, "invite", sender=ALICE)
            self.assertAllowed(room, room.member(BOB, "join"))

        self.each(V7_PLUS, test)

    def test_knock_rule_unknown_before_v7(self) -> None:
        """Before v7 'knock' is an unknown join rule: even invited users cannot join."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, join_rule="knock")
            room.set_member(BOB, "invite", sender=ALICE)
            self.assertRejected(room, room.member(BOB, "join"), "member.join.join_rule")

        self.each(versions(1, 6), test)

    def test_public(self) -> None:
        """5.3.6: anyone not banned may join a public room."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            self.assertAllowed(room, room.member(BOB, "join"))

        self.each(ALL_VERSIONS, test)

    def test_unknown_join_rule(self) -> None:
        """5.3.7: any other join rule ('private', nonsense) lets nobody in."""

        def test(rv: RoomVersion) -> None:
            for rule in ("private", "nonsense"):
                room = standard_room(rv, join_rule=rule)
                room.set_member(BOB, "invite", sender=ALICE)
                self.assertRejected(room, room.member(BOB, "join"), "member.join.join_rule")

        self.each(ALL_VERSIONS, test)


class RestrictedJoinTests(AuthTestCase):
    def restricted_room(
        self, rv: RoomVersion, join_rule: str = "restricted", **levels: Any
    ) -> RoomFactory:
        room = standard_room(rv, join_rule=join_rule, members=[CAROL], **levels)
        return room

    def via_join(self, room: RoomFactory, user: str, via: str, sign: bool = True) -> Event:
        event = room.member(user, "join", join_authorised_via_users_server=via)
        return add_signature(event, via.split(":", 1)[1]) if sign else event

    def test_authorised_join(self) -> None:
        """5.3.5.3 (v8+): a join authorised by a joined member who may invite is allowed."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv)
            self.assertAllowed(room, self.via_join(room, BOB, CAROL))
            self.assertAllowed(room, self.via_join(room, BOB, ALICE))

        self.each(V8_PLUS, test)

    def test_invited_or_joined_need_no_authoriser(self) -> None:
        """5.3.5.1 (v8+): invited and joined users join a restricted room as they are."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv)
            room.set_member(BOB, "invite", sender=ALICE)
            self.assertAllowed(room, room.member(BOB, "join"))
            self.assertAllowed(room, room.member(CAROL, "join"))

        self.each(V8_PLUS, test)

    def test_no_authoriser(self) -> None:
        """5.3.5.2 (v8+): a stranger's join without an authoriser is rejected."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv)
            self.assertRejected(
                room, room.member(BOB, "join"), "member.join.restricted.no_authoriser"
            )

        self.each(V8_PLUS, test)

    def test_authoriser_not_joined(self) -> None:
        """5.3.5.2 (v8+): the authorising user must be joined."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv)
            room.set_member(DAVE, "invite", sender=ALICE)
            event = self.via_join(room, BOB, DAVE)
            self.assertRejected(room, event, "member.join.restricted.authoriser_not_joined")

        self.each(V8_PLUS, test)

    def test_authoriser_cannot_invite(self) -> None:
        """5.3.5.2 (v8+): the authorising user must have the invite level."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv, invite=50)
            event = self.via_join(room, BOB, CAROL)
            self.assertRejected(room, event, "member.join.restricted.authoriser_cannot_invite")
            self.assertAllowed(room, self.via_join(room, BOB, ALICE))

        self.each(V8_PLUS, test)

    def test_authoriser_must_sign(self) -> None:
        """5.2.1 (v8+): the authorising user's server must have signed the event."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv)
            event = self.via_join(room, BOB, CAROL, sign=False)
            self.assertRejected(room, event, "member.join_authorised_via.unsigned")

        self.each(V8_PLUS, test)

    def test_authoriser_signature_checked_for_any_membership(self) -> None:
        """5.2 (v8+): the signature rule applies to every membership carrying the key."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv)
            room.set_member(BOB, "join")
            leave = room.member(BOB, "leave", join_authorised_via_users_server=CAROL)
            self.assertRejected(room, leave, "member.join_authorised_via.unsigned")
            self.assertAllowed(room, add_signature(leave, "c.test"))

        self.each(V8_PLUS, test)

    def test_authoriser_not_a_user_id(self) -> None:
        """5.2 (v8+): a join_authorised_via_users_server that is no user ID is rejected."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv)
            event = room.member(BOB, "join", join_authorised_via_users_server=42)
            self.assertRejected(room, event, "member.join_authorised_via.invalid")

        self.each(V8_PLUS, test)

    def test_restricted_unknown_before_v8(self) -> None:
        """Before v8 'restricted' is unknown, and join_authorised_via_users_server ignored."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv)
            event = room.member(BOB, "join", join_authorised_via_users_server=42)
            self.assertRejected(room, event, "member.join.join_rule")
            room.set_member(BOB, "invite", sender=ALICE)
            self.assertRejected(room, room.member(BOB, "join"), "member.join.join_rule")

        self.each(versions(1, 7), test)

    def test_knock_restricted_join(self) -> None:
        """5.3.4-5 (v10+): 'knock_restricted' admits authorised joins and invited users."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv, join_rule="knock_restricted")
            self.assertAllowed(room, self.via_join(room, BOB, CAROL))
            self.assertRejected(
                room, room.member(DAVE, "join"), "member.join.restricted.no_authoriser"
            )
            room.set_member(DAVE, "invite", sender=ALICE)
            self.assertAllowed(room, room.member(DAVE, "join"))

        self.each(V10_PLUS, test)

    def test_knock_restricted_unknown_before_v10(self) -> None:
        """v8-v9: 'knock_restricted' is an unknown join rule."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv, join_rule="knock_restricted")
            self.assertRejected(room, self.via_join(room, BOB, CAROL), "member.join.join_rule")

        self.each(versions(8, 9), test)

    def test_banned_even_when_authorised(self) -> None:
        """5.3.3 before 5.3.5: an authorised join by a banned user is still rejected."""

        def test(rv: RoomVersion) -> None:
            room = self.restricted_room(rv)
            room.set_member(BOB, "ban", sender=ALICE)
            self.assertRejected(room, self.via_join(room, BOB, CAROL), "member.join.banned")

        self.each(V8_PLUS, test)


class InviteTests(AuthTestCase):
    def test_invite(self) -> None:
        """5.4.4: a joined member at the invite level may invite."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, join_rule="invite", members=[CAROL])
            self.assertAllowed(room, room.member(BOB, "invite", sender=CAROL))

        self.each(ALL_VERSIONS, test)

    def test_sender_not_joined(self) -> None:
        """5.4.2: the inviter must be joined."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            room.set_member(CAROL, "invite", sender=ALICE)
            self.assertRejected(
                room, room.member(BOB, "invite", sender=CAROL), "member.invite.sender_not_joined"
            )

        self.each(ALL_VERSIONS, test)

    def test_target_joined_or_banned(self) -> None:
        """5.4.3: joined or banned users cannot be invited."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[CAROL])
            room.set_member(BOB, "ban", sender=ALICE)
            for target in (BOB, CAROL):
                self.assertRejected(
                    room,
                    room.member(target, "invite", sender=ALICE),
                    "member.invite.target_joined_or_banned",
                )

        self.each(ALL_VERSIONS, test)

    def test_reinvite_and_invite_after_leave(self) -> None:
        """5.4.3: invited, left and knocking users may be (re)invited."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            room.set_member(BOB, "invite", sender=ALICE)
            self.assertAllowed(room, room.member(BOB, "invite", sender=ALICE))
            room.set_member(BOB, "leave")
            self.assertAllowed(room, room.member(BOB, "invite", sender=ALICE))

        self.each(ALL_VERSIONS, test)

    def test_invite_level(self) -> None:
        """5.4.4-5: below the invite level, no invites."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[CAROL], invite=50)
            self.assertRejected(
                room, room.member(BOB, "invite", sender=CAROL), "member.invite.power_level"
            )

        self.each(ALL_VERSIONS, test)


IDENTITY_SERVER = "id.test"
TOKEN = "tok3n"


class ThirdPartyInviteTests(AuthTestCase):
    def room_with_3pid(self, rv: RoomVersion, **public_keys: Any) -> RoomFactory:
        room = standard_room(rv, members=[CAROL])
        key = server_key(IDENTITY_SERVER).public_key_base64
        content = public_keys or {
            "public_key": key,
            "public_keys": [{"public_key": key, "key_validity_url": "https://id.test/v"}],
        }
        room.send(
            "m.room.third_party_invite",
            ALICE,
            {
                "display_name": "b...@example.com",
                "key_validity_url": "https://id.test/v",
                **content,
            },
            TOKEN,
        )
        return room

    def signed(
        self, mxid: str = BOB, token: str = TOKEN, server: str = IDENTITY_SERVER
    ) -> dict[str, Any]:
        return sign_json(
            {"mxid": mxid, "token": token, "sender": ALICE}, server, server_key(server)
        )

    def invite(
        self, room: RoomFactory, signed: object, target: str = BOB, sender: str = ALICE
    ) -> Event:
        return room.member(
            target,
            "invite",
            sender=sender,
            third_party_invite={"display_name": "b...@example.com", "signed": signed},
        )

    def test_valid(self) -> None:
        """5.4.1.7: a signature by the invite's public key allows the invite."""

        def test(rv: RoomVersion) -> None:
            room = self.room_with_3pid(rv)
            self.assertAllowed(room, self.invite(room, self.signed()))

        self.each(ALL_VERSIONS, test)

    def test_key_forms(self) -> None:
        """5.4.1.7.1-2: the key may be in public_key or only in public_keys, in either
        base64 alphabet."""
        key = server_key(IDENTITY_SERVER)
        raw = bytes(key.verify_key)
        for content in (
            {"public_key": encode_base64(raw)},
            {
                "public_key": "bm9wZQ",
                "public_keys": [{"public_key": encode_base64(raw, urlsafe=True)}],
            },
        ):
            with self.subTest(content=content):
                room = self.room_with_3pid(RoomVersions.V10, **content)
                self.assertAllowed(room, self.invite(room, self.signed()))

    def test_bad_signature(self) -> None:
        """5.4.1.8: a signature by any other key is rejected."""

        def test(rv: RoomVersion) -> None:
            room = self.room_with_3pid(rv)
            forged = self.signed(server="evil.test")
            self.assertRejected(
                room, self.invite(room, forged), "member.invite.third_party.bad_signature"
            )
            tampered = {**self.signed(), "mxid": BOB}
            tampered["extra"] = "changed after signing"
            self.assertRejected(
                room, self.invite(room, tampered), "member.invite.third_party.bad_signature"
            )

        self.each(ALL_VERSIONS, test)

    def test_target_banned(self) -> None:
        """5.4.1.1: a banned target cannot be invited, even through a third party."""

        def test(rv: RoomVersion) -> None:
            room = self.room_with_3pid(rv)
            room.set_member(BOB, "ban", sender=ALICE)
            self.assertRejected(
                room, self.invite(room, self.signed()), "member.invite.third_party.target_banned"
            )

        self.each(ALL_VERSIONS, test)

    def test_no_signed(self) -> None:
        """5.4.1.2: third_party_invite must have a 'signed' object."""

        def test(rv: RoomVersion) -> None:
            room = self.room_with_3pid(rv)
            event = room.member(
                BOB, "invite", sender=ALICE, third_party_invite={"display_name": "b"}
            )
            self.assertRejected(room, event, "member.invite.third_party.no_signed")

        self.each(ALL_VERSIONS, test)

    def test_no_mxid_or_token(self) -> None:
        """5.4.1.3: 'signed' needs mxid and token."""

        def test(rv: RoomVersion) -> None:
            room = self.room_with_3pid(rv)
            for signed in ({"token": TOKEN}, {"mxid": BOB}):
                self.assertRejected(
                    room, self.invite(room, signed), "member.invite.third_party.no_mxid_or_token"
                )

        self.each(ALL_VERSIONS, test)

    def test_mxid_mismatch(self) -> None:
        """5.4.1.4: the signed mxid must be the invited user."""

        def test(rv: RoomVersion) -> None:
            room = self.room_with_3pid(rv)
            event = self.invite(room, self.signed(mxid=DAVE))
            self.assertRejected(room, event, "member.invite.third_party.mxid_mismatch")

        self.each(ALL_VERSIONS, test)

    def test_no_invite_event(self) -> None:
        """5.4.1.5: there must be an m.room.third_party_invite for the token."""

        def test(rv: RoomVersion) -> None:
            room = self.room_with_3pid(rv)
            event = self.invite(room, self.signed(token="other"))
            self.assertRejected(room, event, "member.invite.third_party.no_invite_event")

        self.each(ALL_VERSIONS, test)

    def test_sender_mismatch(self) -> None:
        """5.4.1.6: the member event's sender must be the one who made the 3pid invite."""

        def test(rv: RoomVersion) -> None:
            room = self.room_with_3pid(rv)
            event = self.invite(room, self.signed(), sender=CAROL)
            self.assertRejected(room, event, "member.invite.third_party.sender_mismatch")

        self.each(ALL_VERSIONS, test)

    def test_third_party_invite_event_needs_invite_level(self) -> None:
        """7: m.room.third_party_invite needs the invite level (and a joined sender)."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(
                rv, members=[CAROL], invite=50, events={"m.room.third_party_invite": 0}
            )
            event = room.build("m.room.third_party_invite", CAROL, {"display_name": "x"}, "t")
            self.assertRejected(room, event, "third_party_invite.power_level")
            event = room.build("m.room.third_party_invite", BOB, {"display_name": "x"}, "t")
            self.assertRejected(room, event, "sender_not_joined")

        self.each(ALL_VERSIONS, test)

    def test_third_party_invite_event_skips_send_level(self) -> None:
        """7 comes before 8: at the invite level, the event's own send level does not apply."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[CAROL], invite=0)
            event = room.build(
                "m.room.third_party_invite", CAROL, {"display_name": "x"}, "@alice:a.test"
            )
            self.assertAllowed(room, event)

        self.each(ALL_VERSIONS, test)


class LeaveTests(AuthTestCase):
    def test_self_leave(self) -> None:
        """5.5.1: joined and invited users may leave (or reject the invite)."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB])
            self.assertAllowed(room, room.member(BOB, "leave"))
            room.set_member(CAROL, "invite", sender=ALICE)
            self.assertAllowed(room, room.member(CAROL, "leave"))

        self.each(ALL_VERSIONS, test)

    def test_self_leave_not_in_room(self) -> None:
        """5.5.1: a user who left, never came, or is banned cannot 'leave' again."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            self.assertRejected(room, room.member(BOB, "leave"), "member.leave.not_in_room")
            room.set_member(BOB, "ban", sender=ALICE)
            self.assertRejected(room, room.member(BOB, "leave"), "member.leave.not_in_room")

        self.each(ALL_VERSIONS, test)

    def test_retract_knock(self) -> None:
        """5.5.1 (v7+): a knocking user may retract the knock."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, join_rule="knock")
            room.set_member(BOB, "knock")
            self.assertAllowed(room, room.member(BOB, "leave"))

        self.each(V7_PLUS, test)

    def test_retract_knock_before_v7(self) -> None:
        """5.5.1 (v1-v6): 'knock' is not a membership one may leave from."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            room.set_member(BOB, "knock")
            self.assertRejected(room, room.member(BOB, "leave"), "member.leave.not_in_room")

        self.each(versions(1, 6), test)

    def test_kick(self) -> None:
        """5.5.4: at the kick level and above the target, a kick is allowed."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB])
            self.assertAllowed(room, room.member(BOB, "leave", sender=ALICE))

        self.each(ALL_VERSIONS, test)

    def test_kick_sender_not_joined(self) -> None:
        """5.5.2: only joined users kick."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB])
            room.set_member(CAROL, "invite", sender=ALICE)
            self.assertRejected(
                room, room.member(BOB, "leave", sender=CAROL), "member.leave.sender_not_joined"
            )

        self.each(ALL_VERSIONS, test)

    def test_kick_level(self) -> None:
        """5.5.4-5: below the kick level, no kicks."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB, CAROL], users={CAROL: 40}, kick=50)
            self.assertRejected(
                room, room.member(BOB, "leave", sender=CAROL), "member.leave.kick_power_level"
            )

        self.each(ALL_VERSIONS, test)

    def test_kick_equal(self) -> None:
        """5.5.4-5: a user at the sender's own level cannot be kicked."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB, CAROL], users={BOB: 50, CAROL: 50})
            self.assertRejected(
                room,
                room.member(BOB, "leave", sender=CAROL),
                "member.leave.target_not_below_sender",
            )

        self.each(ALL_VERSIONS, test)

    def test_unban(self) -> None:
        """5.5.3-4: unbanning needs the ban level and the kick level."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[CAROL], users={CAROL: 60}, kick=50, ban=70)
            room.set_member(BOB, "ban", sender=ALICE)
            self.assertRejected(
                room, room.member(BOB, "leave", sender=CAROL), "member.leave.unban_power_level"
            )
            self.assertAllowed(room, room.member(BOB, "leave", sender=ALICE))

        self.each(ALL_VERSIONS, test)

    def test_revoke_invite(self) -> None:
        """5.5.4: kicking an invited user revokes the invite."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            room.set_member(BOB, "invite", sender=ALICE)
            self.assertAllowed(room, room.member(BOB, "leave", sender=ALICE))

        self.each(ALL_VERSIONS, test)


class BanTests(AuthTestCase):
    def test_ban(self) -> None:
        """5.6.2: at the ban level and above the target, a ban is allowed (even of
        someone who never joined)."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB])
            self.assertAllowed(room, room.member(BOB, "ban", sender=ALICE))
            self.assertAllowed(room, room.member(MALLORY, "ban", sender=ALICE))

        self.each(ALL_VERSIONS, test)

    def test_sender_not_joined(self) -> None:
        """5.6.1: only joined users ban."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB])
            self.assertRejected(
                room, room.member(BOB, "ban", sender=CAROL), "member.ban.sender_not_joined"
            )

        self.each(ALL_VERSIONS, test)

    def test_ban_level(self) -> None:
        """5.6.2-3: below the ban level, no bans."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB, CAROL], users={CAROL: 49})
            self.assertRejected(
                room, room.member(BOB, "ban", sender=CAROL), "member.ban.power_level"
            )

        self.each(ALL_VERSIONS, test)

    def test_ban_higher(self) -> None:
        """5.6.2-3: nobody bans a user at or above their own level."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB, CAROL], users={CAROL: 50, BOB: 60})
            self.assertRejected(
                room, room.member(BOB, "ban", sender=CAROL), "member.ban.target_not_below_sender"
            )

        self.each(ALL_VERSIONS, test)


class KnockTests(AuthTestCase):
    def test_knock(self) -> None:
        """5.7.3 (v7+): under 'knock', strangers and users who left may knock."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, join_rule="knock")
            self.assertAllowed(room, room.member(BOB, "knock"))
            room.set_member(BOB, "leave")
            self.assertAllowed(room, room.member(BOB, "knock"))

        self.each(V7_PLUS, test)

    def test_knock_join_rule(self) -> None:
        """5.7.1 (v7+): knocking needs the 'knock' (v10+: or 'knock_restricted') rule."""

        def test(rv: RoomVersion) -> None:
            for rule in ("public", "invite", "restricted"):
                room = standard_room(rv, join_rule=rule)
                self.assertRejected(room, room.member(BOB, "knock"), "member.knock.join_rule")
            room = standard_room(rv, join_rule="knock_restricted")
            if rv.knock_restricted_join_rule:
                self.assertAllowed(room, room.member(BOB, "knock"))
            else:
                self.assertRejected(room, room.member(BOB, "knock"), "member.knock.join_rule")

        self.each(V7_PLUS, test)

    def test_knock_for_someone_else(self) -> None:
        """5.7.2 (v7+): nobody knocks on behalf of someone else."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, join_rule="knock", members=[CAROL])
            self.assertRejected(
                room, room.member(BOB, "knock", sender=CAROL), "member.knock.sender_not_target"
            )

        self.each(V7_PLUS, test)

    def test_knock_when_member(self) -> None:
        """5.7.3-4 (v7+): banned, invited and joined users cannot knock."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, join_rule="knock", members=[CAROL])
            room.set_member(BOB, "ban", sender=ALICE)
            room.set_member(DAVE, "invite", sender=ALICE)
            for user in (BOB, CAROL, DAVE):
                self.assertRejected(room, room.member(user, "knock"), "member.knock.already_member")

        self.each(V7_PLUS, test)


# --- rules 6-9: every other event ---------------------------------------------------------


class SenderAndLevelTests(AuthTestCase):
    def test_sender_not_joined(self) -> None:
        """6: outside membership events, the sender must be joined."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            room.set_member(BOB, "invite", sender=ALICE)
            for sender in (BOB, CAROL):
                event = room.build("m.room.message", sender, {"body": "hi"})
                self.assertRejected(room, event, "sender_not_joined")

        self.each(ALL_VERSIONS, test)

    def test_message_levels(self) -> None:
        """8: a message needs events[type], else events_default."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(
                rv, members=[BOB], events_default=10, events={"m.reaction": 0}, users={BOB: 5}
            )
            self.assertRejected(
                room, room.build("m.room.message", BOB, {"body": "x"}), "power_level.too_low"
            )
            self.assertAllowed(room, room.build("m.reaction", BOB, {}))

        self.each(ALL_VERSIONS, test)

    def test_state_levels(self) -> None:
        """8: a state event needs events[type], else state_default (50 if absent)."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB], events={"m.room.topic": 0}, users={BOB: 49})
            self.assertRejected(
                room, room.build("m.room.name", BOB, {"name": "x"}, ""), "power_level.too_low"
            )
            self.assertAllowed(room, room.build("m.room.topic", BOB, {"topic": "x"}, ""))

        self.each(ALL_VERSIONS, test)

    def test_no_power_levels_event(self) -> None:
        """8: with no power levels event, state needs 50: members have 0, the creator 100
        (v1-v11) or infinity (v12)."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            room.send("m.room.member", ALICE, {"membership": "join"}, ALICE)
            room.set_join_rule("public")
            room.set_member(BOB, "join")
            self.assertRejected(
                room, room.build("m.room.name", BOB, {"name": "x"}, ""), "power_level.too_low"
            )
            self.assertAllowed(room, room.build("m.room.message", BOB, {"body": "x"}))
            self.assertAllowed(room, room.build("m.room.name", ALICE, {"name": "x"}, ""))

        self.each(ALL_VERSIONS, test)

    def test_state_key_of_another_user(self) -> None:
        """9: a state_key starting with '@' must be the sender's own."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB], state_default=0)
            self.assertRejected(
                room, room.build("m.custom", BOB, {}, ALICE), "state_key.other_user"
            )
            self.assertAllowed(room, room.build("m.custom", BOB, {}, BOB))
            self.assertAllowed(room, room.build("m.custom", BOB, {}, "bob"))

        self.each(ALL_VERSIONS, test)

    def test_creator_state_key_of_another_user(self) -> None:
        """9: even the most powerful user cannot use someone else's state_key."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv, members=[BOB])
            self.assertRejected(
                room, room.build("m.custom", ALICE, {}, BOB), "state_key.other_user"
            )

        self.each(ALL_VERSIONS, test)


# --- rule 10: m.room.power_levels ----------------------------------------------------------


class PowerLevelsTests(AuthTestCase):
    def levels(self, room: RoomFactory, sender: str, **content: Any) -> Event:
        return room.build("m.room.power_levels", sender, content, "")

    def base(self, rv: RoomVersion, **extra: Any) -> dict[str, Any]:
        users = {} if rv.privileged_creators else {ALICE: 100}
        users.update({BOB: 50, CAROL: 50})
        return {"users": users, **extra}

    def room(self, rv: RoomVersion, **extra: Any) -> RoomFactory:
        room = standard_room(rv, members=[BOB, CAROL])
        room.send("m.room.power_levels", ALICE, self.base(rv, **extra), "")
        return room

    def test_strings_before_v10(self) -> None:
        """v1-v9: levels may be integer strings (with sign, zeros, whitespace)."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv)
            content = self.base(rv, ban=" +050 ", events={"m.room.name": "0050"}, users_default="0")
            content["users"] = {k: str(v) for k, v in content["users"].items()}
            event = self.levels(room, ALICE, **content)
            self.assertAllowed(room, event)
            room.add(event)
            self.assertEqual(get_named_level(room.state, "ban"), 50)
            self.assertEqual(get_user_power_level(BOB, room.state), 50)

        self.each(V1_9, test)

    def test_strings_from_v10(self) -> None:
        """10.1-10.3 (v10+): every level must be a JSON integer."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv)
            for key in (
                "users_default",
                "events_default",
                "state_default",
                "ban",
                "redact",
                "kick",
                "invite",
            ):
                event = self.levels(room, ALICE, **self.base(rv, **{key: "50"}))
                self.assertRejected(room, event, "power_levels.invalid_level")
            for key in ("events", "notifications"):
                event = self.levels(room, ALICE, **self.base(rv, **{key: {"x": "50"}}))
                self.assertRejected(room, event, "power_levels.invalid_level")
            content = self.base(rv)
            content["users"][BOB] = "50"
            self.assertRejected(
                room, self.levels(room, ALICE, **content), "power_levels.invalid_users"
            )

        self.each(V10_PLUS, test)

    def test_booleans_are_not_levels(self) -> None:
        """10.1: JSON true/false are not integers, in any version."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv)
            self.assertRejected(
                room,
                self.levels(room, ALICE, **self.base(rv, ban=True)),
                "power_levels.invalid_level",
            )

        self.each(ALL_VERSIONS, test)

    def test_unreadable_values(self) -> None:
        """v1-v9: values that are not integers even as strings are rejected."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv)
            for bad in ("fifty", "5 0", "1e3", "", None, [50]):
                self.assertRejected(
                    room,
                    self.levels(room, ALICE, **self.base(rv, kick=bad)),
                    "power_levels.invalid_level",
                )
            self.assertRejected(
                room,
                self.levels(room, ALICE, **self.base(rv, events=[])),
                "power_levels.invalid_level",
            )

        self.each(V1_9, test)

    def test_floats_v1_5(self) -> None:
        """v1-v5 (no canonical JSON enforcement): float levels are truncated."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv)
            content = self.base(rv)
            content["users"][BOB] = 50.9
            event = self.levels(room, ALICE, **content)
            self.assertAllowed(room, event)
            room.add(event)
            self.assertEqual(get_user_power_level(BOB, room.state), 50)

        self.each(V1_5, test)

    def test_users_shape(self) -> None:
        """10.3: users must be an object keyed by user IDs."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv)
            for users in ([ALICE], {"alice": 10}, {"@alice": 10}, {"@alice:bad host": 10}):
                event = self.levels(room, ALICE, users=users)
                self.assertRejected(room, event, "power_levels.invalid_users")

        self.each(ALL_VERSIONS, test)

    def test_first_power_levels(self) -> None:
        """10.5: with no power levels yet, any valid power levels event is allowed from a
        sender at state_default (the creator)."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            room.send("m.room.member", ALICE, {"membership": "join"}, ALICE)
            self.assertAllowed(room, self.levels(room, ALICE, users={BOB: 1000}, ban=1000))

        self.each(ALL_VERSIONS, test)

    def test_defaults(self) -> None:
        """10.6: a top-level level may not be set above, or changed from above, the
        sender's own."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv, ban=60, kick=40, events={"m.room.power_levels": 50})
            self.assertRejected(
                room,
                self.levels(room, BOB, **self.base(rv, ban=60, kick=51)),
                "power_levels.default_new_above_sender",
            )
            self.assertRejected(
                room,
                self.levels(room, BOB, **self.base(rv, ban=50, kick=40)),
                "power_levels.default_old_above_sender",
            )
            self.assertRejected(
                room,
                self.levels(room, BOB, **self.base(rv, kick=40)),
                "power_levels.default_old_above_sender",
            )
            self.assertAllowed(
                room,
                self.levels(
                    room, BOB, **self.base(rv, ban=60, kick=50, events={"m.room.power_levels": 50})
                ),
            )
            self.assertAllowed(
                room,
                self.levels(
                    room,
                    BOB,
                    **self.base(rv, ban=60, kick=50, redact=1, events={"m.room.power_levels": 50}),
                ),
            )

        self.each(ALL_VERSIONS, test)

    def test_events(self) -> None:
        """10.7-10.8: an events entry may not be set above, or changed or removed from
        above, the sender's own level."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv, events={"m.room.power_levels": 50, "m.room.tombstone": 100})
            keep = {"m.room.power_levels": 50, "m.room.tombstone": 100}
            self.assertRejected(
                room,
                self.levels(room, BOB, **self.base(rv, events={**keep, "m.x": 51})),
                "power_levels.events_new_above_sender",
            )
            self.assertRejected(
                room,
                self.levels(room, BOB, **self.base(rv, events={**keep, "m.room.tombstone": 50})),
                "power_levels.events_old_above_sender",
            )
            self.assertRejected(
                room,
                self.levels(room, BOB, **self.base(rv, events={"m.room.power_levels": 50})),
                "power_levels.events_old_above_sender",
            )
            self.assertAllowed(
                room, self.levels(room, BOB, **self.base(rv, events={**keep, "m.x": 50}))
            )

        self.each(ALL_VERSIONS, test)

    def test_notifications_from_v6(self) -> None:
        """10.7-10.8 (v6+): notifications entries are protected like events entries."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv, events={"m.room.power_levels": 50}, notifications={"room": 80})
            keep = {"events": {"m.room.power_levels": 50}}
            self.assertRejected(
                room,
                self.levels(room, BOB, **self.base(rv, notifications={"room": 10}, **keep)),
                "power_levels.notifications_old_above_sender",
            )
            self.assertRejected(
                room,
                self.levels(
                    room, BOB, **self.base(rv, notifications={"room": 80, "x": 60}, **keep)
                ),
                "power_levels.notifications_new_above_sender",
            )
            self.assertAllowed(
                room,
                self.levels(
                    room, BOB, **self.base(rv, notifications={"room": 80, "x": 50}, **keep)
                ),
            )

        self.each(V6_PLUS, test)

    def test_notifications_before_v6(self) -> None:
        """v1-v5: notifications are not part of the rules; anyone may change them."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv, events={"m.room.power_levels": 50}, notifications={"room": 80})
            event = self.levels(
                room,
                BOB,
                **self.base(rv, notifications={"room": 99}, events={"m.room.power_levels": 50}),
            )
            self.assertAllowed(room, event)

        self.each(V1_5, test)

    def test_users(self) -> None:
        """10.9-10.10: others' entries at or above the sender's level are untouchable; new
        values may reach, not exceed, the sender's level; one may demote oneself."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv, events={"m.room.power_levels": 50})
            keep = {"events": {"m.room.power_levels": 50}}

            def with_users(**changes: int) -> Event:
                content = self.base(rv, **keep)
                content["users"].update({f"@{k}:{k[0]}.test": v for k, v in changes.items()})
                return self.levels(room, BOB, **content)

            self.assertRejected(room, with_users(carol=10), "power_levels.user_not_below_sender")
            self.assertRejected(room, with_users(dave=51), "power_levels.user_new_above_sender")
            self.assertRejected(room, with_users(bob=51), "power_levels.user_new_above_sender")
            self.assertAllowed(room, with_users(dave=50))
            self.assertAllowed(room, with_users(bob=10))
            removed = self.base(rv, **keep)
            del removed["users"][CAROL]
            self.assertRejected(
                room, self.levels(room, BOB, **removed), "power_levels.user_not_below_sender"
            )

        self.each(ALL_VERSIONS, test)

    def test_demote_lower_user(self) -> None:
        """10.9: users below the sender can be demoted or removed."""

        def test(rv: RoomVersion) -> None:
            room = self.room(rv)
            content = self.base(rv)
            del content["users"][BOB]
            self.assertAllowed(room, self.levels(room, ALICE, **content))

        self.each(ALL_VERSIONS, test)

    def test_unchanged_values_above_sender(self) -> None:
        """10.6-10.10: values above the sender that stay the same are no obstacle."""

        def test(rv: RoomVersion) -> None:
            room = self.room(
                rv, ban=100, events={"m.room.power_levels": 0, "m.room.tombstone": 100}
            )
            content = self.base(
                rv, ban=100, events={"m.room.power_levels": 0, "m.room.tombstone": 100}, topic=1
            )
            self.assertAllowed(room, self.levels(room, BOB, **content))

        self.each(ALL_VERSIONS, test)


# --- v1-v2 rule 11: redactions ----------------------------------------------------------------


class RedactionTests(AuthTestCase):
    def room(self, rv: RoomVersion) -> tuple[RoomFactory, Event, Event]:
        room = standard_room(rv, members=[BOB, DAVE], users={BOB: 0, DAVE: 0})
        from_a = room.add(room.build("m.room.message", DAVE, {"body": "a"}))
        from_b = room.add(room.build("m.room.message", BOB, {"body": "b"}))
        return room, from_a, from_b

    def redaction(self, room: RoomFactory, sender: str, target: Event) -> Event:
        return room.build("m.room.redaction", sender, {}, redacts=target.event_id)

    def test_same_server_v1_2(self) -> None:
        """v1-v2 11.2: below the redact level, events from the redaction's own server
        (by event ID domain) may be redacted."""

        def test(rv: RoomVersion) -> None:
            room, from_a, _ = self.room(rv)
            self.assertAllowed(room, self.redaction(room, DAVE, from_a))

        self.each(V1_2, test)

    def test_other_server_v1_2(self) -> None:
        """v1-v2 11.3: below the redact level, other servers' events are off limits."""

        def test(rv: RoomVersion) -> None:
            room, _, from_b = self.room(rv)
            self.assertRejected(room, self.redaction(room, DAVE, from_b), "redaction.not_allowed")

        self.each(V1_2, test)

    def test_redact_level_v1_2(self) -> None:
        """v1-v2 11.1: at the redact level anything may be redacted."""

        def test(rv: RoomVersion) -> None:
            room, _, from_b = self.room(rv)
            self.assertAllowed(room, self.redaction(room, ALICE, from_b))

        self.each(V1_2, test)

    def test_redactions_are_ordinary_from_v3(self) -> None:
        """v3+: the auth rules ignore the redact level; only the send level applies."""

        def test(rv: RoomVersion) -> None:
            room, _, from_b = self.room(rv)
            self.assertAllowed(room, self.redaction(room, DAVE, from_b))
            room.send(
                "m.room.power_levels",
                ALICE,
                {
                    "users": {} if rv.privileged_creators else {ALICE: 100},
                    "events": {"m.room.redaction": 10},
                },
                "",
            )
            self.assertRejected(room, self.redaction(room, DAVE, from_b), "power_level.too_low")

        self.each(V3_PLUS, test)


# --- v11 and v12: who the creators are -----------------------------------------------------------


class CreatorTests(AuthTestCase):
    def test_creator_from_content_v1_10(self) -> None:
        """v1-v10: content.creator is the creator (level 100 without power levels)."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv, create_content={"creator": DAVE})
            self.assertEqual(get_creators(room.state), {DAVE})
            self.assertTrue(is_creator(DAVE, room.state))
            self.assertEqual(get_user_power_level(DAVE, room.state), 100)
            self.assertEqual(get_user_power_level(ALICE, room.state), 0)

        self.each(V1_10, test)

    def test_creator_from_sender_v11(self) -> None:
        """v11: the create event's sender is the creator; content.creator means nothing."""
        room = RoomFactory(RoomVersions.V11, create_content={"creator": DAVE})
        self.assertEqual(get_creators(room.state), {ALICE})
        self.assertEqual(get_user_power_level(ALICE, room.state), 100)
        self.assertEqual(get_user_power_level(DAVE, room.state), 0)

    def test_power_levels_override_creator_v1_11(self) -> None:
        """v1-v11: once there is a power levels event, it alone decides the creator's level."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            room.set_power_levels(users={ALICE: 7})
            self.assertEqual(get_user_power_level(ALICE, room.state), 7)
            room.set_power_levels(users={})
            self.assertEqual(get_user_power_level(ALICE, room.state), 0)

        self.each(PRE_V12, test)

    def test_v12_creators_infinite(self) -> None:
        """v12: the sender and additional_creators have infinite power, power levels or not."""
        room = RoomFactory(V12, create_content={"additional_creators": [BOB]})
        self.assertEqual(get_creators(room.state), {ALICE, BOB})
        for user in (ALICE, BOB):
            self.assertEqual(get_user_power_level(user, room.state), math.inf)
        self.assertEqual(get_user_power_level(CAROL, room.state), 0)
        room.set_power_levels(users={CAROL: 100}, users_default=10)
        self.assertEqual(get_user_power_level(BOB, room.state), math.inf)
        self.assertEqual(get_user_power_level(CAROL, room.state), 100)
        self.assertEqual(get_user_power_level(DAVE, room.state), 10)

    def test_v12_creator_in_users(self) -> None:
        """10.4 (v12): power levels may not name a creator (sender or additional)."""
        room = standard_room(V12, create_content={"additional_creators": [BOB]})
        for user in (ALICE, BOB):
            event = room.build("m.room.power_levels", ALICE, {"users": {user: 100}}, "")
            self.assertRejected(room, event, "power_levels.creator_in_users")
        self.assertAllowed(
            room, room.build("m.room.power_levels", ALICE, {"users": {CAROL: 100}}, "")
        )

    def test_v12_first_power_levels_naming_creator(self) -> None:
        """10.4 before 10.5 (v12): even the first power levels event cannot name a creator."""
        room = RoomFactory(V12)
        room.send("m.room.member", ALICE, {"membership": "join"}, ALICE)
        event = room.build("m.room.power_levels", ALICE, {"users": {ALICE: 100}}, "")
        self.assertRejected(room, event, "power_levels.creator_in_users")

    def test_creator_in_users_before_v12(self) -> None:
        """v1-v11: naming the creator in users is how they get their level."""

        def test(rv: RoomVersion) -> None:
            room = standard_room(rv)
            self.assertAllowed(
                room, room.build("m.room.power_levels", ALICE, {"users": {ALICE: 100}}, "")
            )

        self.each(PRE_V12, test)

    def test_v12_creators_outrank_everyone(self) -> None:
        """v12: a creator may set any level, and kick or ban anyone at any finite level."""
        room = standard_room(V12, members=[BOB], users={BOB: 2**53 - 1})
        event = room.build("m.room.power_levels", ALICE, {"users": {BOB: 0}, "ban": 2**53 - 1}, "")
        self.assertAllowed(room, event)
        self.assertAllowed(room, room.member(BOB, "ban", sender=ALICE))
        self.assertAllowed(room, room.member(BOB, "leave", sender=ALICE))

    def test_v12_creators_cannot_remove_each_other(self) -> None:
        """v12: creators are equal (infinite) so none can kick or ban another."""
        room = standard_room(V12, members=[BOB], create_content={"additional_creators": [BOB]})
        self.assertRejected(
            room, room.member(BOB, "ban", sender=ALICE), "member.ban.target_not_below_sender"
        )
        self.assertRejected(
            room, room.member(BOB, "leave", sender=ALICE), "member.leave.target_not_below_sender"
        )

    def test_v12_additional_creator_powers(self) -> None:
        """v12: an additional creator, once joined, has every power without a level."""
        room = standard_room(
            V12, members=[BOB], create_content={"additional_creators": [BOB]}, state_default=100
        )
        self.assertAllowed(room, room.build("m.room.name", BOB, {"name": "x"}, ""))
        self.assertAllowed(room, room.build("m.room.power_levels", BOB, {"users": {CAROL: 99}}, ""))

    def test_v12_creator_must_still_be_joined(self) -> None:
        """6 (v12): infinite power does not replace membership."""
        room = standard_room(V12, create_content={"additional_creators": [BOB]})
        self.assertRejected(
            room, room.build("m.room.name", BOB, {"name": "x"}, ""), "sender_not_joined"
        )

    def test_v11_no_privileges_for_content_creator(self) -> None:
        """v11: additional_creators grant nothing before v12."""
        room = standard_room(
            RoomVersions.V11, members=[BOB], create_content={"additional_creators": [BOB]}
        )
        self.assertRejected(
            room, room.build("m.room.name", BOB, {"name": "x"}, ""), "power_level.too_low"
        )


# --- helpers and the error type ------------------------------------------------------------------


class HelperTests(AuthTestCase):
    def test_named_level_defaults(self) -> None:
        """Schema defaults: ban/kick/redact/state_default 50, the rest 0, with or without
        a power levels event; a given default overrides."""

        def test(rv: RoomVersion) -> None:
            room = RoomFactory(rv)
            expected = {
                "ban": 50,
                "kick": 50,
                "redact": 50,
                "state_default": 50,
                "invite": 0,
                "events_default": 0,
                "users_default": 0,
            }
            for state in (
                room.state,
                {**room.state, ("m.room.power_levels", ""): room.set_power_levels()},
            ):
                for name, level in expected.items():
                    self.assertEqual(get_named_level(state, name), level)
                self.assertEqual(get_named_level(state, "ban", 7), 7)
                self.assertEqual(get_notification_level(state), 50)

        self.each(ALL_VERSIONS, test)

    def test_named_levels_read(self) -> None:
        """Levels set in the power levels event are read back."""
        room = standard_room(RoomVersions.V10, ban=3, notifications={"room": 4})
        self.assertEqual(get_named_level(room.state, "ban"), 3)
        self.assertEqual(get_notification_level(room.state, "room"), 4)

    def test_send_level(self) -> None:
        """get_send_level: events[type], then state_default/events_default; 50/0 without
        a power levels event."""
        self.assertEqual(get_send_level("m.room.name", "", None), 50)
        self.assertEqual(get_send_level("m.room.message", None, None), 0)
        room = standard_room(
            RoomVersions.V9, state_default="20", events_default=5, events={"m.room.name": 30}
        )
        levels = room.state[("m.room.power_levels", "")]
        self.assertEqual(get_send_level("m.room.name", "", levels), 30)
        self.assertEqual(get_send_level("m.room.topic", "", levels), 20)
        self.assertEqual(get_send_level("m.room.message", None, levels), 5)

    def test_user_level_default(self) -> None:
        """Users not listed get users_default."""
        room = standard_room(RoomVersions.V10, users_default=3)
        self.assertEqual(get_user_power_level(MALLORY, room.state), 3)

    def test_can_federate_without_create(self) -> None:
        """With no create event known, nothing forbids federation."""
        self.assertTrue(can_federate({}))

    def test_error_names_its_rule(self) -> None:
        """AuthError is a ProtocolError carrying the rule and the reason, both in str()."""
        error = AuthError("member.join.banned", "@bob:b.test is banned")
        self.assertIsInstance(error, ProtocolError)
        self.assertEqual(
            (error.rule, error.reason), ("member.join.banned", "@bob:b.test is banned")
        )
        self.assertIn("member.join.banned", str(error))
        self.assertIn("is banned", str(error))

    def test_every_rule_is_tested(self) -> None:
        """Every rule name the auth package can raise is a dotted lower-case identifier,
        and each one is asserted somewhere in this module."""
        package = Path(__file__).resolve().parents[2] / "ruma" / "protocol" / "auth"
        names: set[str] = set()
        for path in package.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "AuthError":
                    first = node.args[0]
                    if isinstance(first, ast.Constant):
                        names.add(str(first.value))
                    else:  # f"power_levels.{name}_old_above_sender"
                        assert isinstance(first, ast.JoinedStr), ast.dump(first)
                        template = "".join(
                            str(v.value) if isinstance(v, ast.Constant) else "{}"
                            for v in first.values
                        )
                        for family in ("default", "events", "notifications"):
                            names.add(template.format(family))
        self.assertGreater(len(names), 50)
        source = Path(__file__).read_text()
        for name in sorted(names):
            with self.subTest(rule=name):
                self.assertRegex(name, r"^[a-z_0-9]+(\.[a-z_0-9]+)*$")
                self.assertTrue(f'"{name}"' in source, f"no test asserts rule {name!r}")
