"""Serving history to other servers: /event, /state, /state_ids, /event_auth,
/get_missing_events and /backfill, only to servers in the room, honouring ACLs and
history visibility."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.events import Event
from tests.federation.receiver_fixture import Servers, q

V1 = "/_matrix/federation/v1"


class HistoryRouteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Servers(self, ("a.test", "b.test", "c.test"))
        self.alice, self.alice_tok = self.s["a.test"].register("alice")
        self.room = self.s.create_room("a.test", self.alice_tok)
        self.bob = "@bob:b.test"
        self.join_from("b.test", self.bob)
        self.msgs = [self.say(f"m{i}") for i in range(5)]

    def join_from(self, server: str, user: str, room: str | None = None) -> str:
        room = room or self.room
        join = self.s.forge(server, "a.test", room, user, "m.room.member",
                            {"membership": "join"}, user)
        _, body = self.s.send_txn(server, "a.test", f"join-{user}-{room}", [join])
        self.assertEqual(body, {"pdus": {join.event_id: {}}})
        return join.event_id

    def say(self, text: str, room: str | None = None) -> str:
        out = self.s.ok("a.test", "PUT",
                        f"/rooms/{q(room or self.room)}/send/m.room.message/{text}",
                        {"msgtype": "m.text", "body": text}, self.alice_tok)
        event_id: str = out["event_id"]
        return event_id

    def get(self, origin: str, path: str, query: dict[str, Any] | None = None) -> Any:
        return self.s.fed(origin, "a.test", "GET", path, query=query)

    def test_event(self) -> None:
        """/event gives the PDU to a server in the room; 403 to one that is not; 404 for an
        unknown event."""
        status, body = self.get("b.test", f"{V1}/event/{q(self.msgs[0])}")
        self.assertEqual(status, 200)
        self.assertEqual(body["origin"], "a.test")
        [pdu] = body["pdus"]
        self.assertEqual(pdu["content"]["body"], "m0")
        status, body = self.get("c.test", f"{V1}/event/{q(self.msgs[0])}")
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.get("b.test", f"{V1}/event/{q('$nope')}")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_state_ids_and_state(self) -> None:
        """The state before an event, as IDs and as PDUs, with its auth chain."""
        status, body = self.get("b.test", f"{V1}/state_ids/{q(self.room)}",
                                {"event_id": self.msgs[0]})
        self.assertEqual(status, 200)
        state = self.s.run(self.s.store("a.test").get_current_state_ids(self.room))
        self.assertEqual(set(body["pdu_ids"]), set(state.values()))
        self.assertTrue(set(body["auth_chain_ids"]) <= set(state.values()))
        self.assertTrue(body["auth_chain_ids"])
        status, full = self.get("b.test", f"{V1}/state/{q(self.room)}",
                                {"event_id": self.msgs[0]})
        self.assertEqual(status, 200)
        self.assertEqual(len(full["pdus"]), len(body["pdu_ids"]))
        self.assertEqual(len(full["auth_chain"]), len(body["auth_chain_ids"]))
        for origin in ("c.test",):
            status, _ = self.get(origin, f"{V1}/state_ids/{q(self.room)}",
                                 {"event_id": self.msgs[0]})
            self.assertEqual(status, 403)
        status, _ = self.get("b.test", f"{V1}/state_ids/{q(self.room)}", {"event_id": "$x"})
        self.assertEqual(status, 404)

    def test_event_auth(self) -> None:
        """/event_auth: the auth chain of a message (create, power levels, sender's join)."""
        status, body = self.get("b.test", f"{V1}/event_auth/{q(self.room)}/{q(self.msgs[0])}")
        self.assertEqual(status, 200)
        types = {(p["type"], p.get("state_key")) for p in body["auth_chain"]}
        self.assertIn(("m.room.create", ""), types)
        self.assertIn(("m.room.power_levels", ""), types)
        self.assertIn(("m.room.member", self.alice), types)
        status, _ = self.get("c.test", f"{V1}/event_auth/{q(self.room)}/{q(self.msgs[0])}")
        self.assertEqual(status, 403)

    def test_backfill(self) -> None:
        """/backfill from the latest message, limit 3: it and the two before, newest first."""
        status, body = self.get("b.test", f"{V1}/backfill/{q(self.room)}",
                                {"v": [self.msgs[-1]], "limit": "3"})
        self.assertEqual(status, 200)
        self.assertEqual([p["content"]["body"] for p in body["pdus"]], ["m4", "m3", "m2"])
        status, _ = self.get("c.test", f"{V1}/backfill/{q(self.room)}",
                             {"v": [self.msgs[-1]], "limit": "3"})
        self.assertEqual(status, 403)
        status, _ = self.get("b.test", f"{V1}/backfill/{q(self.room)}", {"limit": "3"})
        self.assertEqual(status, 400)

    def test_get_missing_events(self) -> None:
        """The events between earliest and latest (neither included), oldest first."""
        status, body = self.s.fed(
            "b.test", "a.test", "POST", f"{V1}/get_missing_events/{q(self.room)}",
            {"earliest_events": [self.msgs[0]], "latest_events": [self.msgs[4]], "limit": 10},
        )
        self.assertEqual(status, 200)
        self.assertEqual([p["content"]["body"] for p in body["events"]], ["m1", "m2", "m3"])
        status, body = self.s.fed(
            "b.test", "a.test", "POST", f"{V1}/get_missing_events/{q(self.room)}",
            {"earliest_events": [], "latest_events": [self.msgs[4]], "limit": 2},
        )
        self.assertEqual([p["content"]["body"] for p in body["events"]], ["m2", "m3"])
        status, _ = self.s.fed(
            "c.test", "a.test", "POST", f"{V1}/get_missing_events/{q(self.room)}",
            {"earliest_events": [], "latest_events": [self.msgs[4]]},
        )
        self.assertEqual(status, 403)
        status, body = self.s.fed(
            "b.test", "a.test", "POST", f"{V1}/get_missing_events/{q(self.room)}",
            {"earliest_events": "x", "latest_events": []},
        )
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))

    def test_server_acl(self) -> None:
        """A server denied by the room's ACL gets 403 even though its user is joined."""
        self.s.ok("a.test", "PUT", f"/rooms/{q(self.room)}/state/m.room.server_acl/",
                  {"allow": ["*"], "deny": ["b.test"]}, self.alice_tok)
        status, body = self.get("b.test", f"{V1}/event/{q(self.msgs[0])}")
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, _ = self.get("b.test", f"{V1}/backfill/{q(self.room)}",
                             {"v": [self.msgs[-1]], "limit": "3"})
        self.assertEqual(status, 403)

    def test_history_visibility_joined(self) -> None:
        """In a room with 'joined' history, a server that joined later gets the earlier
        messages pruned (the DAG stays whole), and its own join and later ones whole."""
        room = self.s.create_room("a.test", self.alice_tok,
                                  initial_state=[{"type": "m.room.history_visibility",
                                                  "state_key": "",
                                                  "content": {"history_visibility": "joined"}}])
        early = self.say("early", room)
        join = self.join_from("c.test", "@carol:c.test", room)
        late = self.say("late", room)
        status, body = self.get("c.test", f"{V1}/backfill/{q(room)}",
                                {"v": [late], "limit": "10"})
        self.assertEqual(status, 200)
        version = self.s.run(self.s.store("a.test").get_room_version(room))
        by_id = {Event.from_pdu(p, version).event_id: p for p in body["pdus"]}
        self.assertEqual(by_id[late]["content"]["body"], "late")
        self.assertEqual(by_id[join]["content"]["membership"], "join")
        self.assertNotIn("body", by_id[early]["content"])

    def test_rejected_events_are_not_served(self) -> None:
        """An event a.test rejected is never handed out."""
        msg = self.s.forge("c.test", "a.test", self.room, "@carol:c.test", "m.room.message",
                           {"body": "not a member"})
        _, body = self.s.send_txn("c.test", "a.test", "r1", [msg])
        self.assertIn("error", body["pdus"][msg.event_id])
        self.assertTrue(self.s.stored("a.test", msg.event_id))
        status, _ = self.get("b.test", f"{V1}/event/{q(msg.event_id)}")
        self.assertEqual(status, 404)
