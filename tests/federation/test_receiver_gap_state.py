"""The state fetched at the edge of a long gap keeps the state events we already hold.

Found against a real Synapse (benchmarks/federation.py): a Synapse joined a big room after
Ruma had; its join's prev events were a fork Ruma lacked, so Ruma fetched the state there
(``state_ids``) and logged "state at $…: 102 state events unusable". Every state event it
already held (from its own send_join) was dropped unless it was an auth event of the prev
event, so the state at the gap held three events; every later message of the room's
creator was then rejected with "sender_not_joined"."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.federation.receiver_fixture import Servers, q


class GapStateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Servers(self, joins=True)
        self.alice, self.alice_tok = self.s["a.test"].register("alice")
        self.bob, self.bob_tok = self.s["b.test"].register("bob")
        self.carol, self.carol_tok = self.s["b.test"].register("carol")
        self.room = self.s.create_room("a.test", self.alice_tok)
        self.s.ok("b.test", "POST", f"/join/{q(self.room)}?via=a.test", {}, self.bob_tok)

    def push(self, event_id: str, txn: str) -> dict[str, object]:
        pdu = self.s.run(self.s.store("b.test").get_pdus([event_id]))[event_id]
        status, body = self.s.send_txn("b.test", "a.test", txn, [pdu])
        self.assertEqual(status, 200)
        result: dict[str, object] = body["pdus"]
        return result

    def test_known_state_events_kept_at_a_long_gap(self) -> None:
        """Carol (b.test) joins and a.test gets her join. Bob then sends five messages
        a.test never gets, and Carol speaks; only Carol's message is pushed, with gap
        filling limited so that a.test must take the state at the gap's edge. That state
        holds Carol's join, which a.test already had and which is no auth event of Bob's
        messages: Carol's message is accepted, not rejected as from a non-member."""
        self.s.ok("b.test", "POST", f"/join/{q(self.room)}", {}, self.carol_tok)
        join = self.s.run(self.s.store("b.test").get_current_state_event(
            self.room, "m.room.member", self.carol))
        self.assertEqual(self.push(join.event_id, "t-join"), {join.event_id: {}})
        for i in range(5):
            self.s.ok("b.test", "PUT", f"/rooms/{q(self.room)}/send/m.room.message/b{i}",
                      {"msgtype": "m.text", "body": f"bob {i}"}, self.bob_tok)
        said = self.s.ok("b.test", "PUT", f"/rooms/{q(self.room)}/send/m.room.message/c",
                         {"msgtype": "m.text", "body": "carol"}, self.carol_tok)["event_id"]
        fed = self.s["a.test"].hs.federation
        assert fed is not None
        fed.gaps.max_events = 2
        fed.gaps.max_hops = 1
        self.assertEqual(self.push(said, "t-said"), {said: {}})
        meta = self.s.meta("a.test", said)
        self.assertIsNone(meta.rejected_reason)
        self.assertFalse(meta.soft_failed)
        self.assertIn(said, [e.event_id for e in self.s.timeline("a.test", self.room)])
