"""Receiving transactions: two in-memory homeservers, and hand-forged PDUs that must be
refused with the spec's answer and stored nowhere."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.events import add_hashes_and_signature
from ruma.storage.database import Engine
from tests.federation.receiver_fixture import Servers


class TransactionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Servers(self)
        self.alice, self.alice_tok = self.s["a.test"].register("alice")
        self.room = self.s.create_room("a.test", self.alice_tok)
        self.bob = "@bob:b.test"

    def join_bob(self) -> None:
        join = self.s.forge("b.test", "a.test", self.room, self.bob, "m.room.member",
                            {"membership": "join"}, self.bob)
        status, body = self.s.send_txn("b.test", "a.test", "join", [join])
        self.assertEqual((status, body), (200, {"pdus": {join.event_id: {}}}))

    def message(self, text: str, **kw: Any) -> Any:
        return self.s.forge("b.test", "a.test", self.room, self.bob, "m.room.message",
                            {"msgtype": "m.text", "body": text}, **kw)

    def test_join_and_message_reach_the_timeline(self) -> None:
        """A remote join then a message: both accepted ({}), in the room's timeline, and
        the message visible to Alice through /messages."""
        self.join_bob()
        msg = self.message("hello")
        status, body = self.s.send_txn("b.test", "a.test", "t1", [msg])
        self.assertEqual((status, body), (200, {"pdus": {msg.event_id: {}}}))
        self.assertIn(msg.event_id, [e.event_id for e in self.s.timeline("a.test", self.room)])
        out = self.s.ok("a.test", "GET", f"/rooms/{self.room}/messages?dir=b&limit=5",
                        None, self.alice_tok)
        self.assertEqual(out["chunk"][0]["content"]["body"], "hello")
        members = self.s.run(self.s.store("a.test").get_current_members(self.room, "join"))
        self.assertIn(self.bob, members)

    def test_every_room_version(self) -> None:
        """Join and message from another server are accepted in rooms v1 to v12."""
        for version in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"):
            room = self.s.create_room("a.test", self.alice_tok, room_version=version)
            join = self.s.forge("b.test", "a.test", room, self.bob, "m.room.member",
                                {"membership": "join"}, self.bob)
            msg_pdus = [join]
            status, body = self.s.send_txn("b.test", "a.test", f"v{version}", msg_pdus)
            self.assertEqual(body, {"pdus": {join.event_id: {}}}, version)
            msg = self.s.forge("b.test", "a.test", room, self.bob, "m.room.message",
                               {"body": "x"})
            status, body = self.s.send_txn("b.test", "a.test", f"m{version}", [msg])
            self.assertEqual(body, {"pdus": {msg.event_id: {}}}, version)

    def test_bad_signature_is_refused_and_not_stored(self) -> None:
        """A PDU whose signature does not verify gets an error and is stored nowhere."""
        self.join_bob()
        pdu = self.message("forged").pdu()
        sigs = pdu["signatures"]["b.test"]
        k = next(iter(sigs))
        sigs[k] = ("A" if sigs[k][0] != "A" else "B") + sigs[k][1:]
        eid = self.message("x").event_id  # another event: the forged one keeps its own ID
        status, body = self.s.send_txn("b.test", "a.test", "t1", [pdu])
        self.assertEqual(status, 200)
        [(bad_id, result)] = body["pdus"].items()
        self.assertIn("Signature", result["error"])
        self.assertFalse(self.s.stored("a.test", bad_id))
        self.assertNotEqual(bad_id, eid)

    def test_wrong_origin_is_refused(self) -> None:
        """A transaction whose body claims another origin than the signer: 403, and none of
        its PDUs is processed."""
        self.join_bob()
        msg = self.message("x")
        status, body = self.s.send_txn("b.test", "a.test", "t1", [msg], body_origin="c.test")
        self.assertEqual(status, 403)
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        self.assertFalse(self.s.stored("a.test", msg.event_id))

    def test_unsigned_request_is_refused(self) -> None:
        """No X-Matrix header: 401."""
        hs = self.s["a.test"]
        status, body = hs.request("PUT", "/_matrix/federation/v1/send/x",
                                  {"origin": "b.test", "pdus": []})
        self.assertEqual((status, body["errcode"]), (401, "M_UNAUTHORIZED"))

    def test_event_of_another_servers_user_is_refused(self) -> None:
        """b.test sending an event of @mallory:c.test that only b.test signed: refused (the
        sender's server must sign), stored nowhere."""
        self.join_bob()
        forged = self.s.forge("b.test", "a.test", self.room, "@mallory:c.test",
                              "m.room.message", {"body": "x"})
        status, body = self.s.send_txn("b.test", "a.test", "t1", [forged])
        self.assertIn("error", body["pdus"][forged.event_id])
        self.assertFalse(self.s.stored("a.test", forged.event_id))

    def test_oversized_pdu(self) -> None:
        """A PDU over 64 KiB: error, stored nowhere."""
        self.join_bob()
        pdu = self.message("x").pdu()
        pdu["content"]["body"] = "y" * 70_000
        version = self.s.run(self.s.store("a.test").get_room_version(self.room))
        big = add_hashes_and_signature(pdu, version, "b.test",
                                       self.s["b.test"].hs.signing_key)
        status, body = self.s.send_txn("b.test", "a.test", "t1", [big])
        [(eid, result)] = body["pdus"].items()
        self.assertIn("65536", result["error"])
        self.assertFalse(self.s.stored("a.test", eid))

    def test_too_many_pdus_or_edus(self) -> None:
        """51 PDUs or 101 EDUs: 400 M_BAD_JSON and nothing processed."""
        self.join_bob()
        msgs = [self.message(str(i)) for i in range(51)]
        status, body = self.s.send_txn("b.test", "a.test", "t1", msgs)
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        self.assertFalse(self.s.stored("a.test", msgs[0].event_id))
        edus = [{"edu_type": "m.typing", "content": {}}] * 101
        status, body = self.s.send_txn("b.test", "a.test", "t2", [], edus)
        self.assertEqual(status, 400)

    def test_hash_mismatch_is_stored_redacted(self) -> None:
        """Content changed after signing: accepted, stored (it passes auth) but redacted."""
        self.join_bob()
        msg = self.message("original")
        pdu = msg.pdu()
        pdu["content"]["body"] = "tampered"
        status, body = self.s.send_txn("b.test", "a.test", "t1", [pdu])
        self.assertEqual(body, {"pdus": {msg.event_id: {}}})
        stored = self.s.run(self.s.store("a.test").get_pdus([msg.event_id]))[msg.event_id]
        self.assertEqual(dict(stored.content), {})
        self.assertIn(msg.event_id, [e.event_id for e in self.s.timeline("a.test", self.room)])

    def test_event_failing_auth_is_rejected(self) -> None:
        """Bob (not joined) sends a message: rejected by the auth rules (error), kept only
        as a rejected event, never in the timeline."""
        msg = self.message("not a member")
        status, body = self.s.send_txn("b.test", "a.test", "t1", [msg])
        self.assertIn("Rejected", body["pdus"][msg.event_id]["error"])
        self.assertNotIn(msg.event_id,
                         [e.event_id for e in self.s.timeline("a.test", self.room)])
        meta = self.s.meta("a.test", msg.event_id)
        self.assertIsNotNone(meta.rejected_reason)
        self.assertIsNone(meta.stream_position)

    def test_power_level_change_without_power_is_rejected(self) -> None:
        """A joined remote user changing the power levels: rejected."""
        self.join_bob()
        pl = self.s.forge("b.test", "a.test", self.room, self.bob, "m.room.power_levels",
                          {"users": {self.bob: 100}}, "")
        status, body = self.s.send_txn("b.test", "a.test", "t1", [pl])
        self.assertIn("error", body["pdus"][pl.event_id])
        state = self.s.run(self.s.store("a.test").get_current_state_keys(
            self.room, [("m.room.power_levels", "")]))
        self.assertNotEqual(state[("m.room.power_levels", "")], pl.event_id)

    def test_soft_failed_event_is_accepted_but_not_in_timeline(self) -> None:
        """Bob is banned now, but sends a message built before the ban (valid at its own
        place in the DAG): soft-failed, answered {}, kept out of the timeline."""
        self.join_bob()
        head = self.s.run(self.s.store("a.test").get_room_head(self.room))
        before_ban = list(self.s.run(self.s.store("a.test").get_pdus(head.forward_extremities))
                          .values())
        auth_ids = self.s.run(self.s.store("a.test").get_current_state_keys(
            self.room, [("m.room.power_levels", ""), ("m.room.member", self.bob)]))
        auth = list(self.s.run(self.s.store("a.test").get_pdus(auth_ids.values())).values())
        create = self.s.run(self.s.store("a.test").get_current_state_keys(
            self.room, [("m.room.create", "")]))
        auth += list(self.s.run(self.s.store("a.test").get_pdus(create.values())).values())
        self.s.ok("a.test", "POST", f"/rooms/{self.room}/ban", {"user_id": self.bob},
                  self.alice_tok)
        msg = self.message("sneaky", prev_events=before_ban, auth_events=auth)
        status, body = self.s.send_txn("b.test", "a.test", "t1", [msg])
        self.assertEqual(body, {"pdus": {msg.event_id: {}}})
        meta = self.s.meta("a.test", msg.event_id)
        self.assertTrue(meta.soft_failed)
        self.assertIsNone(meta.stream_position)
        self.assertNotIn(msg.event_id,
                         [e.event_id for e in self.s.timeline("a.test", self.room)])

    def test_replayed_transaction(self) -> None:
        """The same transaction ID again: the same answer, nothing processed or stored twice
        (even when the replay carries different PDUs)."""
        self.join_bob()
        msg = self.message("once")
        first = self.s.send_txn("b.test", "a.test", "t1", [msg])
        count = len(self.s.timeline("a.test", self.room))
        other = self.message("other")
        again = self.s.send_txn("b.test", "a.test", "t1", [msg, other])
        self.assertEqual(first, again)
        self.assertEqual(len(self.s.timeline("a.test", self.room)), count)
        self.assertFalse(self.s.stored("a.test", other.event_id))
        # Another server may use the same transaction ID: it is its own.
        self.assertEqual(self.s.send_txn("b.test", "a.test", "t2", [other])[1],
                         {"pdus": {other.event_id: {}}})

    def test_huge_prev_events_list(self) -> None:
        """A PDU listing 5,000 prev events: refused as invalid, nothing fetched or stored."""
        self.join_bob()
        version = self.s.run(self.s.store("a.test").get_room_version(self.room))
        pdu = self.message("x").pdu()
        pdu["prev_events"] = [f"$fake{i}" for i in range(5000)] if not version.event_id_in_pdu \
            else [[f"$fake{i}:b.test", {}] for i in range(5000)]
        signed = add_hashes_and_signature(pdu, version, "b.test",
                                          self.s["b.test"].hs.signing_key)
        requests_before = len(self.s.requests)
        status, body = self.s.send_txn("b.test", "a.test", "t1", [signed])
        [(eid, result)] = body["pdus"].items()
        self.assertIn("error", result)
        self.assertFalse(self.s.stored("a.test", eid))
        # Only the transaction itself: no fetches of the fake prev events.
        self.assertEqual(len(self.s.requests), requests_before + 1)

    def test_too_many_prev_events(self) -> None:
        """21 prev events (one over the limit): refused."""
        self.join_bob()
        prevs = [self.message(str(i)) for i in range(21)]
        msg = self.message("wide", prev_events=prevs)
        status, body = self.s.send_txn("b.test", "a.test", "t1", [msg])
        self.assertIn("prev_events", body["pdus"][msg.event_id]["error"])
        self.assertFalse(self.s.stored("a.test", msg.event_id))

    def test_unknown_room(self) -> None:
        """A PDU for a room a.test does not know: 'Unknown room', stored nowhere."""
        other_room = self.s.create_room("a.test", self.alice_tok)
        msg = self.s.forge("b.test", "a.test", other_room, self.bob, "m.room.message",
                           {"body": "x"})
        pdu = msg.pdu()
        pdu["room_id"] = "!nowhere:c.test"
        status, body = self.s.send_txn("b.test", "a.test", "t1", [pdu])
        self.assertEqual(status, 200)
        [(eid, result)] = body["pdus"].items()
        self.assertIn("Unknown room", result["error"])
        self.assertFalse(self.s.stored("a.test", eid))

    def test_server_acl_denies_origin(self) -> None:
        """With an ACL denying b.test, its PDUs get an error and are not stored; EDUs from it
        about the room are ignored."""
        self.join_bob()
        self.s.ok("a.test", "PUT", f"/rooms/{self.room}/state/m.room.server_acl/",
                  {"allow": ["*"], "deny": ["b.test"]}, self.alice_tok)
        msg = self.message("denied")
        typing = {"edu_type": "m.typing",
                  "content": {"room_id": self.room, "user_id": self.bob, "typing": True}}
        status, body = self.s.send_txn("b.test", "a.test", "t1", [msg], [typing])
        self.assertIn("ACL", body["pdus"][msg.event_id]["error"])
        self.assertFalse(self.s.stored("a.test", msg.event_id))
        typing_users = self.s["a.test"].hs.sync_services.typing.typing_users(self.room)  # type: ignore[union-attr]
        self.assertEqual(typing_users, [])

    def test_several_rooms_in_one_transaction(self) -> None:
        """PDUs of two rooms, sent child before parent: each room's PDUs are handled in
        depth order and all are accepted."""
        self.join_bob()
        room2 = self.s.create_room("a.test", self.alice_tok)
        join2 = self.s.forge("b.test", "a.test", room2, self.bob, "m.room.member",
                             {"membership": "join"}, self.bob)
        m1 = self.message("one")
        m2 = self.message("two", prev_events=[m1])
        m3 = self.s.forge("b.test", "a.test", room2, self.bob, "m.room.message", {"body": "3"},
                          prev_events=[join2], extra_auth=[join2])
        status, body = self.s.send_txn("b.test", "a.test", "t1", [m2, m3, m1, join2])
        self.assertEqual(body["pdus"], {e.event_id: {} for e in (m1, m2, m3, join2)})
        self.assertEqual([e.event_id for e in self.s.timeline("a.test", self.room)][-2:],
                         [m1.event_id, m2.event_id])

    def test_edus_typing_and_receipts(self) -> None:
        """Typing and receipt EDUs about a joined remote user are applied; about a user of
        another server than the sender, ignored."""
        self.join_bob()
        msg = self.message("read me")
        self.s.send_txn("b.test", "a.test", "t1", [msg])
        edus = [
            {"edu_type": "m.typing",
             "content": {"room_id": self.room, "user_id": self.bob, "typing": True}},
            {"edu_type": "m.typing",
             "content": {"room_id": self.room, "user_id": self.alice, "typing": True}},
            {"edu_type": "m.receipt", "content": {self.room: {"m.read": {self.bob: {
                "event_ids": [msg.event_id], "data": {"ts": 5}}}}}},
            {"edu_type": "m.presence", "content": {"push": [
                {"user_id": self.bob, "presence": "online", "last_active_ago": 10}]}},
            {"edu_type": "m.device_list_update", "content": {}},
            "junk",
        ]
        status, body = self.s.send_txn("b.test", "a.test", "t2", [], edus)
        self.assertEqual((status, body), (200, {"pdus": {}}))
        sync = self.s["a.test"].hs.sync_services  # type: ignore[union-attr]
        self.assertEqual(sync.typing.typing_users(self.room), [self.bob])
        receipts = self.s.run(sync.receipt_store.get_user_receipts(self.bob, self.room))
        self.assertEqual([r.event_id for r in receipts], [msg.event_id])
        presence = self.s.run(sync.presence_store.get_presence(self.bob))
        self.assertEqual(presence.state, "online")

    def test_presence_only_for_users_sharing_a_room(self) -> None:
        """Presence of a remote user who shares no room with our users is not stored."""
        edu = {"edu_type": "m.presence", "content": {"push": [
            {"user_id": "@stranger:b.test", "presence": "online"}]}}
        self.assertEqual(self.s.send_txn("b.test", "a.test", "p1", [], [edu])[0], 200)
        sync = self.s["a.test"].hs.sync_services  # type: ignore[union-attr]
        self.assertIsNone(self.s.run(sync.presence_store.get_presence("@stranger:b.test")))

    def test_device_edus_reach_e2ee(self) -> None:
        """A to-device EDU from b.test for Alice is delivered to her devices (seen in
        /sync); one claiming a sender of another server is dropped."""
        edus = [
            {"edu_type": "m.direct_to_device", "content": {
                "sender": self.bob, "type": "m.test", "message_id": "m1",
                "messages": {self.alice: {"*": {"hello": "alice"}}}}},
            {"edu_type": "m.direct_to_device", "content": {
                "sender": "@eve:c.test", "type": "m.test", "message_id": "m2",
                "messages": {self.alice: {"*": {"hello": "forged"}}}}},
        ]
        status, body = self.s.send_txn("b.test", "a.test", "d1", [], edus)
        self.assertEqual((status, body), (200, {"pdus": {}}))
        sync = self.s.ok("a.test", "GET", "/sync?timeout=0", None, self.alice_tok)
        events = sync["to_device"]["events"]
        self.assertEqual([(e["sender"], e["content"]) for e in events],
                         [(self.bob, {"hello": "alice"})])


class TransactionTestsPostgres(TransactionTests):
    """The same on PostgreSQL."""

    engine = Engine.POSTGRES
