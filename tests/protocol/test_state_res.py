"""State resolution scenarios: the classic forks, run through ``resolve_state``.

The scenarios are those every implementation's suite tells (ban against power levels,
topic reset, join rule evasion, ...), rebuilt here with real signed events. Each runs
on room version 2 (state res v2, readable event IDs), 11 (v2, hashed IDs) and 12
(v2.1); where v2 and v2.1 disagree the tests say so. Room version 1 has its own tests.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, ClassVar

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.events import StateKey
from ruma.protocol.room_versions import RoomVersion, RoomVersions
from ruma.protocol.state_res import MissingEventsError, resolve_state
from tests.protocol.test_state_res_fixtures import (
    ALICE,
    BOB,
    CHARLIE,
    EVELYN,
    JOIN_RULES,
    MEMBER,
    MESSAGE,
    POWER_LEVELS,
    TOPIC,
    ZARA,
    RoomBuilder,
)

PL: StateKey = (POWER_LEVELS, "")
JR: StateKey = (JOIN_RULES, "")
TOPIC_KEY: StateKey = (TOPIC, "")


def member(user: str) -> StateKey:
    return (MEMBER, user)


if TYPE_CHECKING:
    _TestCase = SynchronousTestCase
else:
    _TestCase = object


class _V2Scenarios(_TestCase):
    """Scenarios whose outcome is the same under state res v2 and v2.1."""

    room_version: ClassVar[RoomVersion]

    def room(self) -> RoomBuilder:
        return RoomBuilder(self.room_version).initial_room()

    def test_ban_vs_power_levels(self) -> None:
        """Alice bans Bob on one fork while Bob, whom Alice had made a moderator, sends
        power levels on the other: the ban sorts first (higher sender level), so Bob's
        power levels no longer pass and the ban stands."""
        r = self.room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.member("MA", ALICE, ALICE, "join")
        r.member("MB", ALICE, BOB, "ban")
        r.power("PB", BOB, {ALICE: 100, BOB: 50}, prev=["PA"])
        state = r.resolve_named("MB", "PB")
        self.assertEqual(state[PL], "PA")
        self.assertEqual(state[member(ALICE)], "MA")
        self.assertEqual(state[member(BOB)], "MB")

    def test_join_rule_evasion(self) -> None:
        """Evelyn joins on one fork while Alice makes the room invite-only on the other:
        the join rules are a power event and apply first, so the join is dropped."""
        r = self.room()
        r.join_rules("JR", ALICE, "invite")
        r.member("ME", EVELYN, EVELYN, "join", prev=["IMZ"])
        state = r.resolve_named("JR", "ME")
        self.assertEqual(state[JR], "JR")
        self.assertNotIn(member(EVELYN), state)

    def test_offtopic_power_levels(self) -> None:
        """A chain of power levels changes (Alice, then Bob, then Charlie lowering
        himself) against its own start resolves to the end of the chain."""
        r = self.room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.power("PB", BOB, {ALICE: 100, BOB: 50, CHARLIE: 50})
        r.power("PC", CHARLIE, {ALICE: 100, BOB: 50, CHARLIE: 0})
        self.assertEqual(r.resolve_named("PC", "PA")[PL], "PC")

    def test_topic_basic(self) -> None:
        """Bob sets a topic on a fork where he is still a moderator, while Alice demoted
        him on the other: the demotion wins, Bob's power levels and topic fail, and
        Alice's last topic stays."""
        r = self.room()
        r.topic("T1", ALICE)
        r.power("PA1", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T2", ALICE)
        r.power("PA2", ALICE, {ALICE: 100, BOB: 0})
        r.power("PB", BOB, {ALICE: 100, BOB: 50}, prev=["PA1"])
        r.topic("T3", BOB)
        state = r.resolve_named("PA2", "T3")
        self.assertEqual(state[PL], "PA2")
        self.assertEqual(state[TOPIC_KEY], "T2")

    def test_topic_reset(self) -> None:
        """Bob changes the topic and is then banned by Alice; against a fork still on
        the first topic, the ban stands and Bob's topic is dropped for the old one."""
        r = self.room()
        r.topic("T1", ALICE)
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T2", BOB)
        r.member("MB", ALICE, BOB, "ban")
        state = r.resolve_named("MB", "T1")
        self.assertEqual(state[TOPIC_KEY], "T1")
        self.assertEqual(state[PL], "PA")
        self.assertEqual(state[member(BOB)], "MB")

    def test_topic_through_a_merge(self) -> None:
        """Zara's message merges a fork where Bob was demoted with one where he set a
        topic; Alice's topic after the merge and her demotion both hold."""
        r = self.room()
        r.topic("T1", ALICE)
        r.power("PA1", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T2", ALICE)
        r.power("PA2", ALICE, {ALICE: 100, BOB: 0})
        r.power("PB", BOB, {ALICE: 100, BOB: 50}, prev=["PA1"])
        r.topic("T3", BOB)
        r.add("MZ1", ZARA, MESSAGE, {"body": "hi"}, prev=["PA2", "T3"])
        r.topic("T4", ALICE)
        state = r.named(r.state_of("T4"))
        self.assertEqual(state[TOPIC_KEY], "T4")
        self.assertEqual(state[PL], "PA2")

    def test_mainline_sort_beats_timestamp(self) -> None:
        """A topic authorised by an older power levels event sorts before one authorised
        by a newer one even when its timestamp is later, so the newer one wins."""
        r = self.room()
        r.power("PA1", ALICE, {ALICE: 100, BOB: 50})
        r.topic("TOLD", BOB, ts=1000)
        r.power("PA2", ALICE, {ALICE: 100, BOB: 50, CHARLIE: 50}, prev=["PA1"])
        r.topic("TNEW", BOB, ts=500)
        state = r.resolve_named("TOLD", "TNEW")
        self.assertEqual(state[PL], "PA2")
        self.assertEqual(state[TOPIC_KEY], "TNEW")

    def test_same_mainline_position_uses_timestamp(self) -> None:
        """Two topics authorised by the same power levels sort by timestamp: the later
        one is applied last and wins, whichever fork it is on."""
        r = self.room()
        r.topic("TA", ALICE, ts=300)
        r.topic("TB", ALICE, ts=200, prev=["IMZ"])
        self.assertEqual(r.resolve_named("TA", "TB")[TOPIC_KEY], "TA")
        self.assertEqual(r.resolve_named("TB", "TA")[TOPIC_KEY], "TA")

    def test_unconflicted_state_is_kept(self) -> None:
        """Every key the sets agree on keeps its event in the result."""
        r = self.room()
        r.topic("T1", ALICE)
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T2", BOB)
        r.member("MB", ALICE, BOB, "ban")
        sets = [r.state_of("MB"), r.state_of("T1")]
        resolved = resolve_state(self.room_version, sets, r.events)
        for key, event_id in sets[0].items():
            if sets[1].get(key) == event_id:
                self.assertEqual(resolved[key], event_id)

    def test_unconflicted_state_wins_over_auth_difference(self) -> None:
        """An older join rules event reached only through one set's auth chains is in
        the auth difference and is re-applied by the iterative auth checks, but the
        join rules both sets agree on are put back at the end."""
        r = self.room()
        r.join_rules("J1", ALICE, "public")
        r.member("ME", EVELYN, EVELYN, "join")
        r.join_rules("J2", ALICE, "invite", prev=["IMZ"])
        r.topic("T", ALICE)
        first = dict(r.state_of("ME"))
        first[JR] = r.ids["J2"]
        second = r.state_of("T")
        state = r.named(resolve_state(self.room_version, [first, second], r.events))
        self.assertEqual(state[JR], "J2")

    def test_order_of_state_sets_does_not_matter(self) -> None:
        """Resolving the same sets in another order gives the same state."""
        r = self.room()
        r.topic("T1", ALICE)
        r.power("PA1", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T2", ALICE)
        r.power("PA2", ALICE, {ALICE: 100, BOB: 0})
        r.power("PB", BOB, {ALICE: 100, BOB: 50}, prev=["PA1"])
        r.topic("T3", BOB)
        r.member("ME", EVELYN, EVELYN, "join", prev=["IMZ"])
        self.assertEqual(r.resolve("PA2", "T3", "ME"), r.resolve("ME", "T3", "PA2"))

    def test_single_state_set_is_returned(self) -> None:
        """One state set resolves to itself, as a new dict."""
        r = self.room()
        state = r.state_of("IMZ")
        resolved = resolve_state(self.room_version, [state], r.events)
        self.assertEqual(resolved, state)
        self.assertIsNot(resolved, state)

    def test_no_state_sets(self) -> None:
        """Nothing to resolve is the empty state."""
        self.assertEqual(resolve_state(self.room_version, [], {}), {})

    def test_identical_sets_need_no_events(self) -> None:
        """Sets without a conflict resolve without looking at a single event."""
        r = self.room()
        state = r.state_of("IMZ")
        self.assertEqual(resolve_state(self.room_version, [state, dict(state)], {}), state)

    def test_missing_auth_chain_event(self) -> None:
        """An event of a conflicted event's auth chain that the caller did not supply
        is reported by ID, so the caller can fetch it and retry."""
        r = self.room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T1", BOB)
        r.topic("T2", ALICE, prev=["PA"])
        events = dict(r.events)
        del events[r.ids["PA"]]
        with self.assertRaises(MissingEventsError) as caught:
            resolve_state(self.room_version, [r.state_of("T1"), r.state_of("T2")], events)
        self.assertIn(r.ids["PA"], caught.exception.event_ids)
        # With it supplied again the same call succeeds.
        state = r.named(
            resolve_state(self.room_version, [r.state_of("T1"), r.state_of("T2")], r.events)
        )
        self.assertEqual(state[TOPIC_KEY], "T2")

    def test_missing_state_event(self) -> None:
        """A conflicted state event absent from the event map is reported."""
        r = self.room()
        r.topic("T1", ALICE)
        r.topic("T2", ALICE, prev=["IMZ"])
        events = dict(r.events)
        del events[r.ids["T2"]]
        with self.assertRaises(MissingEventsError) as caught:
            resolve_state(self.room_version, [r.state_of("T1"), r.state_of("T2")], events)
        self.assertEqual(caught.exception.event_ids, frozenset([r.ids["T2"]]))

    def test_rejected_event_is_not_admitted(self) -> None:
        """An event the caller marks as rejected never enters the state, even though
        the rules would allow it during resolution."""
        r = self.room()
        r.topic("T1", ALICE)
        r.topic("T2", ALICE, prev=["IMZ"])
        sets = [r.state_of("T1"), r.state_of("T2")]
        rejected = {r.ids["T2"]}
        state = r.named(
            resolve_state(self.room_version, sets, r.events, rejected_event_ids=rejected)
        )
        self.assertEqual(state[TOPIC_KEY], "T1")

    def test_inputs_are_not_modified(self) -> None:
        """Resolution neither mutates the state sets nor the event map."""
        r = self.room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.member("MB", ALICE, BOB, "ban")
        r.power("PB", BOB, {ALICE: 100, BOB: 50}, prev=["PA"])
        sets = [dict(r.state_of("MB")), dict(r.state_of("PB"))]
        copies = [dict(s) for s in sets]
        events = dict(r.events)
        resolve_state(self.room_version, sets, events)
        self.assertEqual(sets, copies)
        self.assertEqual(events, r.events)


class StateResV2Tests(_V2Scenarios, SynchronousTestCase):
    """The scenarios in room version 2: state res v2 with readable event IDs."""

    room_version = RoomVersions.V2


class StateResV11Tests(_V2Scenarios, SynchronousTestCase):
    """The scenarios in room version 11: state res v2 with hashed event IDs."""

    room_version = RoomVersions.V11


class StateResV12Tests(_V2Scenarios, SynchronousTestCase):
    """The scenarios in room version 12: state res v2.1, creators above power levels."""

    room_version = RoomVersions.V12


class _ResetScenarios:
    """Scenarios on which v2 and v2.1 deliberately disagree."""

    @staticmethod
    def reset_power_levels(room_version: RoomVersion) -> tuple[RoomBuilder, dict[StateKey, str]]:
        """Alice makes Bob a moderator (P1), Evelyn joins under P1, Bob sends P2. One set
        has P2; the other has Evelyn's join but power levels reset to the first ones.
        P1 is in every set's auth chains (Evelyn's join cites it), so it is not in the
        auth difference, but it lies on the auth path from P2 to the first power levels:
        the conflicted state subgraph."""
        r = RoomBuilder(room_version).initial_room()
        r.power("P1", ALICE, {ALICE: 100, BOB: 50})
        r.member("ME", EVELYN, EVELYN, "join")
        r.power("P2", BOB, {ALICE: 100, BOB: 50, EVELYN: 50})
        reset = dict(r.state_of("ME"))
        reset[PL] = r.ids["IPOWER"]
        resolved = resolve_state(room_version, [reset, r.state_of("P2")], r.events)
        return r, r.named(resolved)

    @staticmethod
    def kicked_topic_setter(
        room_version: RoomVersion,
    ) -> tuple[RoomBuilder, dict[StateKey, str]]:
        """Bob, a moderator, sets a topic and is then kicked; Alice set an older-stamped
        topic on the other fork. Both sets agree Bob was kicked."""
        r = RoomBuilder(room_version).initial_room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.topic("TBOB", BOB, ts=200)
        r.member("K", ALICE, BOB, "leave")
        r.topic("TALICE", ALICE, ts=100, prev=["PA"])
        other = dict(r.state_of("TALICE"))
        other[member(BOB)] = r.ids["K"]
        resolved = resolve_state(room_version, [r.state_of("K"), other], r.events)
        return r, r.named(resolved)


class StateResV2VersusV21Tests(_ResetScenarios, SynchronousTestCase):
    """Where room version 12's state res v2.1 deliberately departs from v2."""

    def test_v2_resets_power_levels_outside_auth_difference(self) -> None:
        """v2: P1 is not in the full conflicted set, so Bob's P2 is checked against the
        first power levels, where Bob has no power, and the room resets to them."""
        _, state = self.reset_power_levels(RoomVersions.V11)
        self.assertEqual(state[PL], "IPOWER")

    def test_v21_replays_conflicted_subgraph(self) -> None:
        """v2.1: P1 joins the full conflicted set through the conflicted subgraph and is
        replayed before P2, so Bob's power levels hold."""
        _, state = self.reset_power_levels(RoomVersions.V12)
        self.assertEqual(state[PL], "P2")
        self.assertEqual(state[member(EVELYN)], "ME")

    def test_v2_checks_conflicted_events_against_unconflicted_state(self) -> None:
        """v2: the iterative auth checks start from the unconflicted state, where Bob is
        already kicked, so his topic fails and Alice's stays."""
        _, state = self.kicked_topic_setter(RoomVersions.V11)
        self.assertEqual(state[TOPIC_KEY], "TALICE")
        self.assertEqual(state[member(BOB)], "K")

    def test_v21_starts_iterative_checks_from_empty_state(self) -> None:
        """v2.1: the checks start from an empty state, so Bob's topic is checked against
        its own auth events (Bob joined, a moderator), passes, and being later wins; the
        unconflicted kick is still in the result."""
        _, state = self.kicked_topic_setter(RoomVersions.V12)
        self.assertEqual(state[TOPIC_KEY], "TBOB")
        self.assertEqual(state[member(BOB)], "K")


class StateResV1Tests(SynchronousTestCase):
    """Room version 1: resolution by depth and sha1 of the event ID."""

    def room(self) -> RoomBuilder:
        return RoomBuilder(RoomVersions.V1).initial_room()

    def test_deeper_topic_wins(self) -> None:
        """For an ordinary key, the event with the greatest depth that passes auth wins."""
        r = self.room()
        r.topic("T1", ALICE)
        r.add("M1", ALICE, MESSAGE, {"body": "x"}, prev=["IMZ"])
        r.topic("T2", ALICE)
        self.assertEqual(r.resolve_named("T1", "T2")[TOPIC_KEY], "T2")
        self.assertEqual(r.resolve_named("T2", "T1")[TOPIC_KEY], "T2")

    def test_deepest_failing_topic_is_skipped(self) -> None:
        """A deeper topic whose sender may not set it loses to a shallower valid one."""
        r = self.room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T1", ALICE)
        r.power("PC", ALICE, {ALICE: 100, BOB: 0})
        r.power("PB", BOB, {ALICE: 100, BOB: 50}, prev=["PA"])
        r.add("M1", BOB, MESSAGE, {"body": "x"})
        r.topic("T2", BOB)
        # PB is shallower than PC, so goes in first; Alice's PC then passes on top.
        state = r.resolve_named("PC", "T2")
        self.assertEqual(state[PL], "PC")
        self.assertEqual(state[TOPIC_KEY], "T1")

    def test_power_levels_run_stops_at_first_failure(self) -> None:
        """Conflicting power levels are taken shallowest first; the next one replaces it
        only if the rules allow it there. Alice's demotion of Bob (shallower) goes in,
        and Bob's deeper change then fails, so Alice's stands."""
        r = self.room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T0", ALICE)
        r.power("PB", BOB, {ALICE: 100, BOB: 50, CHARLIE: 50})
        r.power("PC", ALICE, {ALICE: 100, BOB: 0}, prev=["PA"])
        self.assertEqual(r.resolve_named("PB", "PC")[PL], "PC")

    def test_absent_key_is_not_a_conflict(self) -> None:
        """A key only one set holds is kept as it is, without any auth check."""
        r = self.room()
        r.topic("T1", ALICE)
        state = r.named(
            resolve_state(RoomVersions.V1, [r.state_of("T1"), r.state_of("IMZ")], r.events)
        )
        self.assertEqual(state[TOPIC_KEY], "T1")

    def test_equal_depth_breaks_on_sha1(self) -> None:
        """Two topics at the same depth: the one whose event ID has the lower sha1 wins."""
        r = self.room()
        r.topic("TX", ALICE)
        r.topic("TY", ALICE, prev=["IMZ"])

        def sha1(label: str) -> str:
            return hashlib.sha1(r.ids[label].encode()).hexdigest()

        expected = min(["TX", "TY"], key=sha1)
        self.assertEqual(r.resolve_named("TX", "TY")[TOPIC_KEY], expected)
        self.assertEqual(r.resolve_named("TY", "TX")[TOPIC_KEY], expected)

    def test_ban_vs_power_levels(self) -> None:
        """v1 resolves power levels before members: Bob's power levels and Alice's ban
        are each resolved against the state after the power levels pass."""
        r = self.room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.member("MB", ALICE, BOB, "ban")
        r.power("PB", BOB, {ALICE: 100, BOB: 50}, prev=["PA"])
        state = r.resolve_named("MB", "PB")
        self.assertEqual(state[member(BOB)], "MB")
        self.assertIn(state[PL], ("PA", "PB"))

    def test_missing_conflicted_event(self) -> None:
        """A conflicted event absent from the event map is reported."""
        r = self.room()
        r.topic("T1", ALICE)
        r.topic("T2", ALICE, prev=["IMZ"])
        events = dict(r.events)
        del events[r.ids["T1"]]
        with self.assertRaises(MissingEventsError) as caught:
            resolve_state(RoomVersions.V1, [r.state_of("T1"), r.state_of("T2")], events)
        self.assertEqual(caught.exception.event_ids, frozenset([r.ids["T1"]]))
