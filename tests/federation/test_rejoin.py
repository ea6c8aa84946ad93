"""Joining again a remote room our server has left: it must go through a resident server
(make_join/send_join), not be built on the room state we last saw.

Found against a real Synapse (tests/interop/test_federation_synapse.py): after the only Ruma
member of a Synapse room left, ``/join`` built the join locally on the stale state and
answered 200, even when the room had meanwhile become invite-only (Synapse then refused the
event: "not allowed to join this room"), and a rejoin never learned what happened while
the server was out of the room."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.federation.rooms_fixtures import Federation, q


class RejoinTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")
        self.room = self.fed.create_room("a.test", self.alice_tok, preset="public_chat")
        self.join()
        self.fed.settle()
        self.fed.ok("b.test", "POST", f"/rooms/{q(self.room)}/leave", {}, self.bob_tok)
        self.fed.settle()
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "leave")

    def join(self) -> tuple[int, object]:
        return self.fed.request(
            "b.test", "POST", f"/join/{q(self.room)}?server_name=a.test", {}, self.bob_tok
        )

    def test_rejoin_after_room_became_invite_only_is_refused(self) -> None:
        """The room turned invite-only while b.test was out of it: the rejoin is refused
        with 403 (by the resident server), and nobody holds Bob as joined."""
        self.fed.ok(
            "a.test", "PUT", f"/rooms/{q(self.room)}/state/m.room.join_rules",
            {"join_rule": "invite"}, self.alice_tok,
        )
        self.fed.settle()
        status, body = self.join()
        self.fed.settle()
        self.assertEqual(status, 403, body)
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "leave")
        self.assertNotEqual(self.fed.membership("b.test", self.room, self.bob), "join")

    def test_rejoin_learns_what_happened_meanwhile(self) -> None:
        """A topic set while b.test was out of the room is in b.test's state after the
        rejoin, and the rejoin reaches a.test."""
        self.fed.ok(
            "a.test", "PUT", f"/rooms/{q(self.room)}/state/m.room.topic",
            {"topic": "changed while away"}, self.alice_tok,
        )
        self.fed.settle()
        status, body = self.join()
        self.assertEqual(status, 200, body)
        self.fed.settle()
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "join")
        topic = self.fed.ok(
            "b.test", "GET", f"/rooms/{q(self.room)}/state/m.room.topic", None, self.bob_tok
        )
        self.assertEqual(topic, {"topic": "changed while away"})

    def test_rejoin_our_own_room_after_everyone_here_left(self) -> None:
        """The reverse roles: a room created on b.test that every b.test user left while
        a.test's user stayed; Bob's rejoin goes through a.test and sees a.test's changes."""
        room = self.fed.create_room("b.test", self.bob_tok, preset="public_chat")
        self.fed.ok("a.test", "POST", f"/join/{q(room)}?server_name=b.test", {}, self.alice_tok)
        self.fed.settle()
        # Alice gets the power to change the topic before Bob leaves.
        levels = self.fed.ok(
            "b.test", "GET", f"/rooms/{q(room)}/state/m.room.power_levels", None, self.bob_tok
        )
        levels["users"][self.alice] = 100
        self.fed.ok(
            "b.test", "PUT", f"/rooms/{q(room)}/state/m.room.power_levels", levels, self.bob_tok
        )
        self.fed.settle()
        self.fed.ok("b.test", "POST", f"/rooms/{q(room)}/leave", {}, self.bob_tok)
        self.fed.settle()
        self.fed.ok(
            "a.test", "PUT", f"/rooms/{q(room)}/state/m.room.topic",
            {"topic": "a.test kept it"}, self.alice_tok,
        )
        self.fed.settle()
        status, body = self.fed.request(
            "b.test", "POST", f"/join/{q(room)}?server_name=a.test", {}, self.bob_tok
        )
        self.assertEqual(status, 200, body)
        self.fed.settle()
        topic = self.fed.ok(
            "b.test", "GET", f"/rooms/{q(room)}/state/m.room.topic", None, self.bob_tok
        )
        self.assertEqual(topic, {"topic": "a.test kept it"})
        self.assertEqual(self.fed.membership("a.test", room, self.bob), "join")
