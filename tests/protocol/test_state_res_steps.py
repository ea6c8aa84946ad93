"""The steps of state resolution, each tested on its own."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.events import StateKey
from ruma.protocol.room_versions import RoomVersions
from ruma.protocol.state_res.auth_chain import auth_difference, conflicted_subgraph
from ruma.protocol.state_res.errors import MissingEventsError
from ruma.protocol.state_res.event_graph import EventGraph
from ruma.protocol.state_res.iterative_auth_check import iterative_auth_checks
from ruma.protocol.state_res.mainline_sort import mainline_sort
from ruma.protocol.state_res.power_sort import (
    is_power_event,
    power_sort_selection,
    reverse_topological_power_sort,
    sender_power_level,
)
from ruma.protocol.state_res.split_conflicted import split_v1, split_v2
from tests.protocol.test_state_res_fixtures import (
    ALICE,
    BOB,
    CHARLIE,
    EVELYN,
    POWER_LEVELS,
    ZARA,
    RoomBuilder,
)

A: StateKey = ("a", "")
B: StateKey = ("b", "")
C: StateKey = ("c", "")


class SplitConflictedTests(SynchronousTestCase):
    """Splitting state sets into unconflicted and conflicted state."""

    def test_v2_agreement_is_unconflicted(self) -> None:
        """A key every set holds with the same event is unconflicted."""
        unconflicted, conflicted = split_v2([{A: "$1", B: "$2"}, {A: "$1", B: "$3"}])
        self.assertEqual(unconflicted, {A: "$1"})
        self.assertEqual(conflicted, {B: {"$2", "$3"}})

    def test_v2_absence_is_a_conflict(self) -> None:
        """v2: a key missing from some set is conflicted, with the events held for it."""
        unconflicted, conflicted = split_v2([{A: "$1"}, {A: "$1", B: "$2"}, {B: "$2", C: "$4"}])
        self.assertEqual(unconflicted, {})
        self.assertEqual(conflicted, {A: {"$1"}, B: {"$2"}, C: {"$4"}})

    def test_v1_absence_is_no_conflict(self) -> None:
        """v1: a key some sets lack but the others agree on is unconflicted."""
        unconflicted, conflicted = split_v1([{A: "$1"}, {A: "$1", B: "$2"}, {B: "$3"}])
        self.assertEqual(unconflicted, {A: "$1"})
        self.assertEqual(conflicted, {B: {"$2", "$3"}})

    def test_inputs_untouched(self) -> None:
        """Splitting copies; the sets given are not modified."""
        first = {A: "$1", B: "$2"}
        split_v1([first, {B: "$3"}])
        split_v2([first, {B: "$3"}])
        self.assertEqual(first, {A: "$1", B: "$2"})


class AuthChainTests(SynchronousTestCase):
    """The auth difference and the conflicted state subgraph."""

    def test_auth_difference(self) -> None:
        """Events in some but not all sets' full auth chains form the auth difference:
        each fork's own power levels, and Evelyn's join only one fork cites; what both
        forks build on (the create event, the first power levels) is left out."""
        r = RoomBuilder(RoomVersions.V11).initial_room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.member("ME", EVELYN, EVELYN, "join")
        r.power("PE", ALICE, {ALICE: 100, BOB: 50, EVELYN: 50})
        r.topic("TE", EVELYN)
        r.power("PB", ALICE, {ALICE: 100, CHARLIE: 50}, prev=["IMZ"])
        r.topic("TB", ALICE)
        sets = [r.state_of("TE"), r.state_of("TB")]
        unconflicted, conflicted = split_v2(sets)
        graph = EventGraph(RoomVersions.V11, r.events)
        diff = auth_difference(graph, sets, unconflicted, conflicted.keys())
        self.assertEqual({r.labels[e] for e in diff}, {"PA", "PE", "ME", "TE", "PB", "TB"})

    def test_auth_difference_excludes_chains_of_unconflicted_state(self) -> None:
        """An event cited by unconflicted state is in every set's full auth chain."""
        r = RoomBuilder(RoomVersions.V11).initial_room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T1", BOB)
        r.topic("T2", ALICE, prev=["PA"])
        sets = [r.state_of("T1"), r.state_of("T2")]
        unconflicted, conflicted = split_v2(sets)
        graph = EventGraph(RoomVersions.V11, r.events)
        diff = auth_difference(graph, sets, unconflicted, conflicted.keys())
        self.assertEqual({r.labels[e] for e in diff}, {"T1", "T2"})

    def test_auth_difference_excludes_common_ancestors_of_conflicted_state(self) -> None:
        """Power levels both forks' power levels cite are in every auth chain, though
        no unconflicted event cites them: only the two forks' own events differ."""
        r = RoomBuilder(RoomVersions.V11).initial_room()
        r.power("PA1", ALICE, {ALICE: 100, BOB: 50})
        r.power("PA2", ALICE, {ALICE: 100, BOB: 40})
        r.power("PB2", ALICE, {ALICE: 100, BOB: 30}, prev=["PA1"])
        sets = [r.state_of("PA2"), r.state_of("PB2")]
        unconflicted, conflicted = split_v2(sets)
        graph = EventGraph(RoomVersions.V11, r.events)
        diff = auth_difference(graph, sets, unconflicted, conflicted.keys())
        self.assertEqual({r.labels[e] for e in diff}, {"PA2", "PB2"})

    def test_conflicted_subgraph(self) -> None:
        """The subgraph holds the conflicted events and every event on an auth path
        between two of them: P1, and Bob's join that P2 cites, with the join rules that
        join cites, since both cite the first power levels. Ancestors below them all
        (the create event, Alice's join) are not in it."""
        r = RoomBuilder(RoomVersions.V12).initial_room()
        r.power("P1", ALICE, {BOB: 50})
        r.power("P2", BOB, {BOB: 50, CHARLIE: 50})
        graph = EventGraph(RoomVersions.V12, r.events)
        subgraph = conflicted_subgraph(graph, [r.ids["IPOWER"], r.ids["P2"]])
        self.assertEqual({r.labels[e] for e in subgraph}, {"IPOWER", "P1", "IMB", "IJR", "P2"})

    def test_conflicted_subgraph_of_unrelated_events(self) -> None:
        """Conflicted events with no auth path between them are their own subgraph."""
        r = RoomBuilder(RoomVersions.V12).initial_room()
        r.topic("T1", ALICE)
        r.topic("T2", ALICE, prev=["IMZ"])
        graph = EventGraph(RoomVersions.V12, r.events)
        subgraph = conflicted_subgraph(graph, [r.ids["T1"], r.ids["T2"]])
        self.assertEqual({r.labels[e] for e in subgraph}, {"T1", "T2"})

    def test_ancestors_report_every_missing_event(self) -> None:
        """A walk of the auth DAG names all the absent events it runs into at once."""
        r = RoomBuilder(RoomVersions.V11).initial_room()
        events = dict(r.events)
        del events[r.ids["IPOWER"]]
        del events[r.ids["IJR"]]
        graph = EventGraph(RoomVersions.V11, events)
        with self.assertRaises(MissingEventsError) as caught:
            graph.ancestors([r.ids["IMZ"]])
        self.assertEqual(caught.exception.event_ids, {r.ids["IPOWER"], r.ids["IJR"]})

    def test_v12_create_event_is_an_implicit_auth_parent(self) -> None:
        """In v12 the create event is not listed in auth_events but is still in every
        auth chain, so a resolution without it reports it missing."""
        r = RoomBuilder(RoomVersions.V12).initial_room()
        create_id = r.ids["CREATE"]
        self.assertNotIn(create_id, r.events[r.ids["IMB"]].auth_event_ids)
        graph = EventGraph(RoomVersions.V12, r.events)
        self.assertIn(create_id, graph.ancestors([r.ids["IMB"]]))


class PowerSortTests(SynchronousTestCase):
    """Power events and the reverse topological power ordering."""

    def test_power_events(self) -> None:
        """Power levels, join rules, create, and kicks and bans are power events; joins,
        leaving on one's own, and topics are not."""
        r = RoomBuilder(RoomVersions.V11).initial_room()
        r.member("KICK", ALICE, ZARA, "leave")
        r.member("BAN", ALICE, CHARLIE, "ban")
        r.member("LEAVE", BOB, BOB, "leave")
        r.topic("T", ALICE)
        power = {label for label, event_id in r.ids.items() if is_power_event(r.events[event_id])}
        self.assertEqual(power, {"CREATE", "IPOWER", "IJR", "KICK", "BAN"})

    def test_sender_power_level_from_own_auth_events(self) -> None:
        """The sender's level comes from the power levels the event cites: Bob's event
        under power levels granting him 50 is at 50 even after a later demotion; v12
        creators are infinitely powerful; with no power levels the creator has 100."""
        r = RoomBuilder(RoomVersions.V11).initial_room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T", BOB)
        r.power("PD", ALICE, {ALICE: 100, BOB: 0})
        graph = EventGraph(RoomVersions.V11, r.events)
        self.assertEqual(sender_power_level(graph, r.events[r.ids["T"]]), 50)
        self.assertEqual(sender_power_level(graph, r.events[r.ids["IPOWER"]]), 100)
        self.assertEqual(sender_power_level(graph, r.events[r.ids["IMC"]]), 0)
        v12 = RoomBuilder(RoomVersions.V12).initial_room()
        graph12 = EventGraph(RoomVersions.V12, v12.events)
        self.assertEqual(sender_power_level(graph12, v12.events[v12.ids["IJR"]]), float("inf"))

    def _sorted(self, r: RoomBuilder, *labels: str) -> list[str]:
        graph = EventGraph(r.room_version, r.events)
        ordered = reverse_topological_power_sort(graph, [r.ids[label] for label in labels])
        return [r.labels[event_id] for event_id in ordered]

    def test_higher_power_first(self) -> None:
        """Among unrelated events, the sender with the greater level comes first, even
        with a later timestamp."""
        r = RoomBuilder(RoomVersions.V2).initial_room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.join_rules("JBOB", BOB, "public", ts=10)
        r.join_rules("JALICE", ALICE, "public", ts=20, prev=["PA"])
        self.assertEqual(self._sorted(r, "JBOB", "JALICE"), ["JALICE", "JBOB"])

    def test_equal_power_earlier_timestamp_first(self) -> None:
        """Same level: the earlier origin_server_ts comes first."""
        r = RoomBuilder(RoomVersions.V2).initial_room()
        r.join_rules("JA", ALICE, "public", ts=20)
        r.join_rules("JB", ALICE, "public", ts=10, prev=["IMZ"])
        self.assertEqual(self._sorted(r, "JA", "JB"), ["JB", "JA"])

    def test_equal_power_and_timestamp_smaller_id_first(self) -> None:
        """Same level and timestamp: the lexicographically smaller event ID first."""
        r = RoomBuilder(RoomVersions.V2).initial_room()
        r.join_rules("JY", ALICE, "public", ts=10)
        r.join_rules("JX", ALICE, "public", ts=10, prev=["IMZ"])
        self.assertEqual(self._sorted(r, "JY", "JX"), ["JX", "JY"])
        self.assertEqual(self._sorted(r, "JX", "JY"), ["JX", "JY"])

    def test_auth_ancestors_first_whatever_the_power(self) -> None:
        """An event cited (even indirectly, through unsorted events) by another comes
        before it, although its sender has less power and its timestamp is later."""
        r = RoomBuilder(RoomVersions.V2).initial_room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.power("PB", BOB, {ALICE: 100, BOB: 50, CHARLIE: 50}, ts=90)
        r.power("PC", ALICE, {ALICE: 100, BOB: 50, CHARLIE: 0}, ts=5)
        r.power("PD", ALICE, {ALICE: 100, BOB: 40, CHARLIE: 0}, ts=6)
        self.assertEqual(self._sorted(r, "PD", "PB"), ["PB", "PD"])

    def test_selection_adds_conflicted_auth_ancestors(self) -> None:
        """Step 1 takes the power events of the full conflicted set and the events of
        that set in their auth chains (Evelyn's join, cited by her kick), not other
        non-power events."""
        r = RoomBuilder(RoomVersions.V11).initial_room()
        r.member("ME", EVELYN, EVELYN, "join")
        r.topic("T", ALICE)
        r.member("KE", ALICE, EVELYN, "leave")
        full = {r.ids[label] for label in ("ME", "T", "KE")}
        graph = EventGraph(RoomVersions.V11, r.events)
        selected = power_sort_selection(graph, full)
        self.assertEqual({r.labels[e] for e in selected}, {"ME", "KE"})


class MainlineSortTests(SynchronousTestCase):
    """The mainline ordering."""

    def test_mainline_position_then_timestamp_then_id(self) -> None:
        """Events cite power levels at different mainline positions: older positions
        sort first, ties by timestamp, then by event ID. Power levels off the mainline
        count where their own chain of power levels meets it; an event that meets the
        mainline nowhere (Alice's join, older than any power levels) sorts first."""
        r = RoomBuilder(RoomVersions.V2).initial_room()
        r.topic("T0", ALICE, ts=900)
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.topic("T1B", ALICE, ts=50)
        r.topic("T1A", ALICE, ts=50, prev=["PA"])
        r.topic("T1C", ALICE, ts=10, prev=["PA"])
        r.power("PB", ALICE, {ALICE: 100, BOB: 60}, prev=["PA"])
        r.topic("T2", ALICE, ts=1)
        r.power("POFF", ALICE, {ALICE: 100, BOB: 70}, prev=["PA"])
        r.power("POFF2", ALICE, {ALICE: 100, BOB: 80})
        r.topic("TOFF", ALICE, ts=0)
        graph = EventGraph(RoomVersions.V2, r.events)
        labels = ["T2", "T1B", "TOFF", "T0", "IMA", "T1A", "T1C"]
        ordered = mainline_sort(graph, [r.ids[x] for x in labels], r.ids["PB"])
        # POFF2 -> POFF -> PA: TOFF reaches the mainline at PA, like T1*.
        self.assertEqual(
            [r.labels[e] for e in ordered], ["IMA", "T0", "TOFF", "T1C", "T1A", "T1B", "T2"]
        )

    def test_no_power_levels(self) -> None:
        """Without resolved power levels every event is off the mainline: timestamps."""
        r = RoomBuilder(RoomVersions.V2).initial_room()
        r.topic("TA", ALICE, ts=5)
        r.topic("TB", ALICE, ts=3, prev=["IMZ"])
        graph = EventGraph(RoomVersions.V2, r.events)
        ordered = mainline_sort(graph, [r.ids["TA"], r.ids["TB"]], None)
        self.assertEqual([r.labels[e] for e in ordered], ["TB", "TA"])


class IterativeAuthCheckTests(SynchronousTestCase):
    """The iterative auth checks."""

    def test_failing_events_are_skipped(self) -> None:
        """Events are applied in order; one the rules reject in the state built so far
        (Bob's topic after Alice demoted him) is skipped and the rest go on."""
        r = RoomBuilder(RoomVersions.V11).initial_room()
        r.power("PA", ALICE, {ALICE: 100, BOB: 50})
        r.topic("TB", BOB)
        r.power("PD", ALICE, {ALICE: 100, BOB: 0}, prev=["PA"])
        r.topic("TA", ALICE)
        graph = EventGraph(RoomVersions.V11, r.events)
        state = dict(r.state_of("PA"))
        order = [r.ids[label] for label in ("PD", "TB", "TA")]
        iterative_auth_checks(graph, order, state)
        self.assertEqual(r.named(state)[(POWER_LEVELS, "")], "PD")
        self.assertEqual(r.named(state)[("m.room.topic", "")], "TA")

    def test_own_auth_events_fill_gaps(self) -> None:
        """From an empty state, each event is checked against its own auth events."""
        r = RoomBuilder(RoomVersions.V12).initial_room()
        r.topic("T", ALICE)
        graph = EventGraph(RoomVersions.V12, r.events)
        state = iterative_auth_checks(graph, [r.ids["T"]], {})
        self.assertEqual(r.named(state), {("m.room.topic", ""): "T"})
