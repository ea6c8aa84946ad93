"""The room endpoints through real HTTP (the harness): success and error paths."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from tests.harness import TestHomeserver, make_homeserver


def q(s: str) -> str:
    return quote(s, safe="")


class RoomsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs: TestHomeserver = make_homeserver(self)
        self.alice, self.ta = self.hs.register("alice")
        self.bob, self.tb = self.hs.register("bob")
        self.carol, self.tc = self.hs.register("carol")

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, out = self.hs.request(method, path, body, token)
        self.assertEqual(status, 200, out)
        return out

    def err(
        self, status: int, errcode: str, method: str, path: str, body: Any = None,
        token: str | None = None,
    ) -> Any:
        got, out = self.hs.request(method, path, body, token)
        self.assertEqual((got, out.get("errcode") if out else None), (status, errcode), out)
        return out

    def create(self, token: str | None = None, **body: Any) -> str:
        room_id: str = self.ok("POST", "/createRoom", body, token or self.ta)["room_id"]
        return room_id

    def send(self, room: str, body: str, token: str | None = None, txn: str | None = None) -> str:
        txn = txn or f"t{body}"
        out = self.ok("PUT", f"/rooms/{q(room)}/send/m.room.message/{txn}",
                      {"msgtype": "m.text", "body": body}, token or self.ta)
        event_id: str = out["event_id"]
        return event_id

    def state(self, room: str, etype: str, key: str = "", token: str | None = None) -> Any:
        return self.ok("GET", f"/rooms/{q(room)}/state/{etype}/{q(key)}", None,
                       token or self.ta)


class CreateRoomTests(RoomsTestCase):
    def test_create_defaults(self) -> None:
        """A bare createRoom makes a private_chat room of the default version (12) with
        the creator joined and not listed in the power levels (v12 creators)."""
        room = self.create()
        create = self.state(room, "m.room.create")
        self.assertEqual(create["room_version"], "12")
        self.assertEqual(self.state(room, "m.room.join_rules")["join_rule"], "invite")
        self.assertEqual(self.state(room, "m.room.history_visibility")["history_visibility"],
                         "shared")
        self.assertEqual(self.state(room, "m.room.guest_access")["guest_access"], "can_join")
        pl = self.state(room, "m.room.power_levels")
        self.assertNotIn(self.alice, pl["users"])
        self.assertEqual(pl["events"]["m.room.tombstone"], 150)
        self.assertEqual(self.state(room, "m.room.member", self.alice)["membership"], "join")
        self.assertEqual(self.ok("GET", "/joined_rooms", None, self.ta)["joined_rooms"], [room])

    def test_create_full(self) -> None:
        """Name, topic, alias, public preset, initial_state, invites with is_direct and a
        power level override all land in the room."""
        out = self.ok("POST", "/createRoom", {
            "preset": "public_chat", "visibility": "public", "room_alias_name": "pub",
            "name": "Pub", "topic": "Drinks", "invite": [self.bob], "is_direct": True,
            "room_version": "10",
            "initial_state": [{"type": "m.room.encryption", "state_key": "",
                               "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
            "power_level_content_override": {"events_default": 10},
        }, self.ta)
        room = out["room_id"]
        self.assertEqual(out["room_alias"], "#pub:test")
        self.assertEqual(self.state(room, "m.room.name")["name"], "Pub")
        self.assertEqual(self.state(room, "m.room.topic")["topic"], "Drinks")
        self.assertEqual(self.state(room, "m.room.canonical_alias")["alias"], "#pub:test")
        self.assertEqual(self.state(room, "m.room.join_rules")["join_rule"], "public")
        self.assertEqual(self.state(room, "m.room.encryption")["algorithm"],
                         "m.megolm.v1.aes-sha2")
        pl = self.state(room, "m.room.power_levels")
        self.assertEqual(pl["events_default"], 10)
        self.assertEqual(pl["users"], {self.alice: 100})
        invite = self.state(room, "m.room.member", self.bob)
        self.assertEqual((invite["membership"], invite["is_direct"]), ("invite", True))
        self.assertEqual(self.ok("GET", f"/directory/room/{q('#pub:test')}")["room_id"], room)
        self.assertEqual(
            self.ok("GET", f"/directory/list/room/{q(room)}")["visibility"], "public")

    def test_trusted_private_chat_creators(self) -> None:
        """trusted_private_chat: in v12 invitees join additional_creators (with those of
        creation_content); before v12 they get the creator's power level."""
        room = self.create(preset="trusted_private_chat", invite=[self.bob],
                           creation_content={"additional_creators": [self.carol]})
        create = self.state(room, "m.room.create")
        self.assertEqual(set(create["additional_creators"]), {self.bob, self.carol})
        self.assertNotIn(self.bob, self.state(room, "m.room.power_levels")["users"])
        old = self.create(preset="trusted_private_chat", invite=[self.bob], room_version="11")
        self.assertEqual(self.state(old, "m.room.power_levels")["users"],
                         {self.alice: 100, self.bob: 100})

    def test_create_errors(self) -> None:
        """Unsupported versions, bad presets, bad JSON, taken aliases, bad invitees and
        power levels that forbid the initial state are refused with the spec's codes."""
        self.err(400, "M_UNSUPPORTED_ROOM_VERSION", "POST", "/createRoom",
                 {"room_version": "13"}, self.ta)
        self.err(400, "M_UNSUPPORTED_ROOM_VERSION", "POST", "/createRoom",
                 {"room_version": 12}, self.ta)
        self.err(400, "M_INVALID_PARAM", "POST", "/createRoom", {"preset": "party"}, self.ta)
        self.err(400, "M_INVALID_PARAM", "POST", "/createRoom", {"visibility": "x"}, self.ta)
        self.err(400, "M_BAD_JSON", "POST", "/createRoom", {"name": 5}, self.ta)
        self.err(400, "M_BAD_JSON", "POST", "/createRoom", [], self.ta)
        status, out = self.hs.request("POST", "/createRoom", raw_body=b"{nope", token=self.ta)
        self.assertEqual((status, out["errcode"]), (400, "M_NOT_JSON"))
        self.err(400, "M_INVALID_PARAM", "POST", "/createRoom", {"invite": ["bob"]}, self.ta)
        self.create(room_alias_name="taken")
        self.err(400, "M_ROOM_IN_USE", "POST", "/createRoom", {"room_alias_name": "taken"},
                 self.ta)
        self.err(400, "M_INVALID_PARAM", "POST", "/createRoom", {"room_alias_name": "a:b"},
                 self.ta)
        self.err(400, "M_INVALID_ROOM_STATE", "POST", "/createRoom",
                 {"room_version": "10", "power_level_content_override":
                  {"users": {self.alice: 10}}, "name": "x"}, self.ta)
        self.err(401, "M_MISSING_TOKEN", "POST", "/createRoom", {})


class MembershipTests(RoomsTestCase):
    def test_join_invite_leave_forget(self) -> None:
        """Invite, join by ID, leave and forget: memberships and joined_rooms follow."""
        room = self.create()
        self.err(403, "M_FORBIDDEN", "POST", f"/rooms/{q(room)}/join", {}, self.tb)
        self.ok("POST", f"/rooms/{q(room)}/invite", {"user_id": self.bob}, self.ta)
        self.assertEqual(self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tb),
                         {"room_id": room})
        self.assertEqual(self.ok("GET", "/joined_rooms", None, self.tb)["joined_rooms"], [room])
        # Joining again changes nothing.
        before = self.state(room, "m.room.member", self.bob, self.tb)
        self.ok("POST", f"/join/{q(room)}", {}, self.tb)
        self.assertEqual(self.state(room, "m.room.member", self.bob, self.tb), before)
        self.err(400, "M_UNKNOWN", "POST", f"/rooms/{q(room)}/forget", {}, self.tb)
        self.ok("POST", f"/rooms/{q(room)}/leave", {"reason": "bye"}, self.tb)
        self.assertEqual(self.ok("GET", "/joined_rooms", None, self.tb)["joined_rooms"], [])
        member = self.state(room, "m.room.member", self.bob)
        self.assertEqual((member["membership"], member["reason"]), ("leave", "bye"))
        self.ok("POST", f"/rooms/{q(room)}/forget", {}, self.tb)

    def test_join_by_alias_and_public(self) -> None:
        """Anyone may join a public room, also through its alias."""
        room = self.create(preset="public_chat", room_alias_name="open")
        self.assertEqual(self.ok("POST", f"/join/{q('#open:test')}", {}, self.tb)["room_id"],
                         room)
        self.assertEqual(self.state(room, "m.room.member", self.bob)["displayname"], "bob")

    def test_join_errors(self) -> None:
        """Unknown rooms and aliases are 404; a malformed ID is 400; remote rooms are 404
        until federation joins exist."""
        self.err(404, "M_NOT_FOUND", "POST", f"/join/{q('!nope:test')}", {}, self.tb)
        self.err(404, "M_NOT_FOUND", "POST", f"/join/{q('#nope:test')}", {}, self.tb)
        self.err(404, "M_NOT_FOUND", "POST", f"/join/{q('!room:elsewhere.test')}", {}, self.tb)
        self.err(404, "M_NOT_FOUND", "POST", f"/rooms/{q('!nope:test')}/join", {}, self.tb)
        self.err(400, "M_INVALID_PARAM", "POST", f"/join/{q('nope')}", {}, self.tb)
        self.err(400, "M_INVALID_PARAM", "POST", f"/rooms/{q('nope')}/join", {}, self.tb)

    def test_invite_errors(self) -> None:
        """Invites need membership (403), a known room (404) and a valid user ID (400)."""
        room = self.create()
        self.err(403, "M_FORBIDDEN", "POST", f"/rooms/{q(room)}/invite",
                 {"user_id": self.carol}, self.tb)
        self.err(404, "M_NOT_FOUND", "POST", f"/rooms/{q('!x:test')}/invite",
                 {"user_id": self.carol}, self.ta)
        self.err(400, "M_INVALID_PARAM", "POST", f"/rooms/{q(room)}/invite",
                 {"user_id": "carol"}, self.ta)
        self.err(400, "M_MISSING_PARAM", "POST", f"/rooms/{q(room)}/invite", {}, self.ta)
        self.ok("POST", f"/rooms/{q(room)}/invite", {"user_id": self.bob}, self.ta)
        self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tb)
        self.err(403, "M_FORBIDDEN", "POST", f"/rooms/{q(room)}/invite",
                 {"user_id": self.bob}, self.ta)

    def test_kick_ban_unban(self) -> None:
        """Kick and ban need the power to; unban lifts a ban; a banned user cannot join."""
        room = self.create(preset="public_chat", room_version="11")
        self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tb)
        self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tc)
        self.err(403, "M_FORBIDDEN", "POST", f"/rooms/{q(room)}/kick",
                 {"user_id": self.carol}, self.tb)
        self.ok("POST", f"/rooms/{q(room)}/kick", {"user_id": self.carol, "reason": "r"},
                self.ta)
        self.err(403, "M_FORBIDDEN", "POST", f"/rooms/{q(room)}/kick",
                 {"user_id": self.carol}, self.ta)
        self.ok("POST", f"/rooms/{q(room)}/ban", {"user_id": self.bob}, self.ta)
        self.assertEqual(self.state(room, "m.room.member", self.bob)["membership"], "ban")
        self.err(403, "M_FORBIDDEN", "POST", f"/rooms/{q(room)}/join", {}, self.tb)
        self.err(403, "M_FORBIDDEN", "POST", f"/rooms/{q(room)}/unban",
                 {"user_id": self.carol}, self.ta)
        self.ok("POST", f"/rooms/{q(room)}/unban", {"user_id": self.bob}, self.ta)
        self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tb)
        self.err(400, "M_MISSING_PARAM", "POST", f"/rooms/{q(room)}/ban", {}, self.ta)


class SendTests(RoomsTestCase):
    def test_send_and_idempotency(self) -> None:
        """PUT send returns an event ID; the same txnId from the same device returns the
        same event, another device's same txnId makes a new one; transaction_id is shown
        only to the sending device."""
        room = self.create()
        first = self.send(room, "hi", txn="abc")
        self.assertEqual(self.send(room, "hi", txn="abc"), first)
        _, other_token = self.hs.register("alice2")
        login = self.hs.run(self.hs.hs.accounts.login(self.alice))
        second = self.send(room, "hi", token=login.access_token, txn="abc")
        self.assertNotEqual(first, second)
        mine = self.ok("GET", f"/rooms/{q(room)}/event/{q(first)}", None, self.ta)
        self.assertEqual(mine["unsigned"]["transaction_id"], "abc")
        self.assertEqual(mine["content"]["body"], "hi")
        theirs = self.ok("GET", f"/rooms/{q(room)}/event/{q(first)}", None,
                         login.access_token)
        self.assertNotIn("transaction_id", theirs["unsigned"])

    def test_send_errors(self) -> None:
        """Not joined is 403, unknown room 404, malformed room ID 400, bad bodies 400."""
        room = self.create()
        self.err(403, "M_FORBIDDEN", "PUT", f"/rooms/{q(room)}/send/m.room.message/1",
                 {"body": "x"}, self.tb)
        self.err(404, "M_NOT_FOUND", "PUT", f"/rooms/{q('!nope:test')}/send/m.room.message/1",
                 {"body": "x"}, self.ta)
        self.err(400, "M_INVALID_PARAM", "PUT", f"/rooms/{q('nope')}/send/m.room.message/1",
                 {"body": "x"}, self.ta)
        self.err(400, "M_BAD_JSON", "PUT", f"/rooms/{q(room)}/send/m.room.message/1",
                 [1], self.ta)
        status, out = self.hs.request("PUT", f"/rooms/{q(room)}/send/m.room.message/2",
                                      raw_body=b"nope", token=self.ta)
        self.assertEqual((status, out["errcode"]), (400, "M_NOT_JSON"))

    def test_concurrent_sends(self) -> None:
        """Twenty sends issued together all succeed and form a chain of single parents."""
        room = self.create()
        ds = [
            self.hs.treq.put(
                self.hs.url(f"/rooms/{q(room)}/send/m.room.message/c{i}"),
                data=json.dumps({"body": str(i)}).encode(),
                headers={b"Authorization": [b"Bearer " + self.ta.encode()]},
            )
            for i in range(20)
        ]
        self.hs.treq.flush()
        for d in ds:
            self.assertEqual(self.successResultOf(d).code, 200)
        rooms = self.hs.hs.rooms
        assert rooms is not None
        head = self.hs.run(rooms.store.get_room_head(room))
        self.assertEqual(len(head.forward_extremities), 1)
        rows = self.hs.run(rooms.store.get_room_events(room, from_pos=0, to_pos=10**12,
                                                       limit=100, backwards=False))
        for (_, a), (_, b) in zip(rows, rows[1:], strict=False):
            self.assertEqual(b.prev_event_ids, (a.event_id,))


class StateTests(RoomsTestCase):
    def test_put_get_state(self) -> None:
        """State PUT/GET with and without a state key (trailing slash = empty key);
        ?format=event returns the whole event; GET /state lists the room state."""
        room = self.create()
        path = f"/rooms/{q(room)}/state/m.room.topic"
        eid = self.ok("PUT", path, {"topic": "a"}, self.ta)["event_id"]
        self.assertEqual(self.ok("PUT", path + "/", {"topic": "a"}, self.ta)["event_id"], eid)
        self.assertEqual(self.ok("GET", path, None, self.ta), {"topic": "a"})
        self.assertEqual(self.ok("GET", path + "/", None, self.ta), {"topic": "a"})
        keyed = f"/rooms/{q(room)}/state/org.example.thing/{q('a/b')}"
        self.ok("PUT", keyed, {"x": 1}, self.ta)
        self.assertEqual(self.ok("GET", keyed, None, self.ta), {"x": 1})
        full = self.ok("GET", path + "?format=event", None, self.ta)
        self.assertEqual((full["event_id"], full["state_key"]), (eid, ""))
        status, listing = self.hs.request("GET", f"/rooms/{q(room)}/state", None, self.ta)
        self.assertEqual(status, 200)
        keys = {(e["type"], e["state_key"]) for e in listing}
        self.assertIn(("m.room.topic", ""), keys)
        self.assertIn(("org.example.thing", "a/b"), keys)

    def test_state_errors(self) -> None:
        """Missing state is 404, non-members get 403, under-powered senders 403."""
        room = self.create()
        self.err(404, "M_NOT_FOUND", "GET", f"/rooms/{q(room)}/state/m.room.name", None,
                 self.ta)
        self.err(403, "M_FORBIDDEN", "GET", f"/rooms/{q(room)}/state/m.room.create", None,
                 self.tb)
        self.err(403, "M_FORBIDDEN", "GET", f"/rooms/{q(room)}/state", None, self.tb)
        self.err(404, "M_NOT_FOUND", "GET", f"/rooms/{q('!x:test')}/state", None, self.tb)
        self.ok("POST", f"/rooms/{q(room)}/invite", {"user_id": self.bob}, self.ta)
        self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tb)
        out = self.err(403, "M_FORBIDDEN", "PUT", f"/rooms/{q(room)}/state/m.room.name",
                       {"name": "x"}, self.tb)
        self.assertIn("needs level", out["error"])

    def test_left_user_sees_state_at_leave(self) -> None:
        """A user who left reads the state as it was when they left."""
        room = self.create(preset="public_chat", name="before")
        self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tb)
        self.ok("POST", f"/rooms/{q(room)}/leave", {}, self.tb)
        self.ok("PUT", f"/rooms/{q(room)}/state/m.room.name", {"name": "after"}, self.ta)
        self.assertEqual(self.state(room, "m.room.name", token=self.tb)["name"], "before")


class RedactionTests(RoomsTestCase):
    def test_redact(self) -> None:
        """Redacting one's own event prunes it (with redacted_because); redacting someone
        else's needs the redact level; retries with the same txnId are idempotent."""
        room = self.create(preset="public_chat")
        self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tb)
        mine = self.send(room, "oops", self.tb)
        path = f"/rooms/{q(room)}/redact/{q(mine)}/r1"
        rid = self.ok("PUT", path, {"reason": "typo"}, self.tb)["event_id"]
        self.assertEqual(self.ok("PUT", path, {"reason": "typo"}, self.tb)["event_id"], rid)
        event = self.ok("GET", f"/rooms/{q(room)}/event/{q(mine)}", None, self.ta)
        self.assertEqual(event["content"], {})
        self.assertEqual(event["unsigned"]["redacted_because"]["event_id"], rid)
        self.assertEqual(event["unsigned"]["redacted_because"]["content"]["reason"], "typo")
        theirs = self.send(room, "alice's")
        self.err(403, "M_FORBIDDEN", "PUT", f"/rooms/{q(room)}/redact/{q(theirs)}/r2", {},
                 self.tb)
        self.ok("PUT", f"/rooms/{q(room)}/redact/{q(mine)}/r3", {}, self.ta)
        self.err(400, "M_INVALID_PARAM", "PUT", f"/rooms/{q(room)}/redact/nope/r4", {},
                 self.ta)
        redaction = self.ok("GET", f"/rooms/{q(room)}/event/{q(rid)}", None, self.ta)
        self.assertEqual(redaction["redacts"], mine)


class ReadingTests(RoomsTestCase):
    def test_members_and_joined_members(self) -> None:
        """/members filters by membership and not_membership and answers at a token;
        /joined_members maps joined users to display names."""
        room = self.create(preset="public_chat")
        self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tb)
        at = self.ok("GET", f"/rooms/{q(room)}/messages?dir=b&limit=1", None, self.ta)["start"]
        self.ok("POST", f"/rooms/{q(room)}/invite", {"user_id": self.carol}, self.ta)
        members = self.ok("GET", f"/rooms/{q(room)}/members", None, self.ta)["chunk"]
        self.assertEqual({m["state_key"] for m in members}, {self.alice, self.bob, self.carol})
        joined = self.ok("GET", f"/rooms/{q(room)}/members?membership=join", None, self.ta)
        self.assertEqual({m["state_key"] for m in joined["chunk"]}, {self.alice, self.bob})
        not_joined = self.ok("GET", f"/rooms/{q(room)}/members?not_membership=join", None,
                             self.ta)
        self.assertEqual([m["state_key"] for m in not_joined["chunk"]], [self.carol])
        then = self.ok("GET", f"/rooms/{q(room)}/members?at={at}", None, self.ta)
        self.assertEqual({m["state_key"] for m in then["chunk"]}, {self.alice, self.bob})
        jm = self.ok("GET", f"/rooms/{q(room)}/joined_members", None, self.ta)["joined"]
        self.assertEqual(jm[self.bob], {"display_name": "bob", "avatar_url": None})
        self.err(403, "M_FORBIDDEN", "GET", f"/rooms/{q(room)}/joined_members", None, self.tc)
        self.err(400, "M_INVALID_PARAM", "GET", f"/rooms/{q(room)}/members?at=zzz", None,
                 self.ta)

    def test_messages_pagination(self) -> None:
        """/messages pages backwards with chained end tokens, forwards from a token, filters
        by type and lazy-loads members; bad parameters are 400."""
        room = self.create(preset="public_chat")
        self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tb)
        sent = [self.send(room, str(i), self.ta if i % 2 else self.tb) for i in range(7)]
        page1 = self.ok("GET", f"/rooms/{q(room)}/messages?dir=b&limit=3", None, self.ta)
        self.assertEqual([e["event_id"] for e in page1["chunk"]], sent[:-4:-1])
        page2 = self.ok("GET", f"/rooms/{q(room)}/messages?dir=b&limit=3&from={page1['end']}",
                        None, self.ta)
        self.assertEqual([e["event_id"] for e in page2["chunk"]], sent[3:0:-1])
        self.assertEqual(page2["start"], page1["end"])
        fwd = self.ok("GET", f"/rooms/{q(room)}/messages?dir=f&limit=2&from={page2['end']}",
                      None, self.ta)
        self.assertEqual([e["event_id"] for e in fwd["chunk"]], sent[1:3])
        # Walking back to the start of the room ends without an 'end' token.
        token, seen = page2["end"], 0
        while True:
            page = self.ok("GET", f"/rooms/{q(room)}/messages?dir=b&limit=50&from={token}",
                           None, self.ta)
            seen += len(page["chunk"])
            if "end" not in page:
                break
            token = page["end"]
        self.assertEqual(page["chunk"][-1]["type"], "m.room.create")
        flt = q(json.dumps({"types": ["m.room.member"], "lazy_load_members": True}))
        members = self.ok("GET", f"/rooms/{q(room)}/messages?dir=b&limit=10&filter={flt}",
                          None, self.ta)
        self.assertTrue(all(e["type"] == "m.room.member" for e in members["chunk"]))
        self.assertEqual({e["state_key"] for e in members["state"]}, {self.alice, self.bob})
        senders = q(json.dumps({"senders": [self.bob], "types": ["m.room.message"]}))
        bobs = self.ok("GET", f"/rooms/{q(room)}/messages?dir=b&filter={senders}", None, self.ta)
        self.assertEqual([e["event_id"] for e in bobs["chunk"]], sent[6::-2])
        self.err(400, "M_INVALID_PARAM", "GET", f"/rooms/{q(room)}/messages?dir=x", None,
                 self.ta)
        self.err(400, "M_INVALID_PARAM", "GET", f"/rooms/{q(room)}/messages?from=x", None,
                 self.ta)
        self.err(400, "M_INVALID_PARAM", "GET", f"/rooms/{q(room)}/messages?filter=%7B", None,
                 self.ta)
        self.err(403, "M_FORBIDDEN", "GET", f"/rooms/{q(room)}/messages", None, self.tc)
        topo = self.ok("GET", f"/rooms/{q(room)}/messages?dir=b&limit=1&from=t5_{page1['end'][1:]}",
                       None, self.ta)
        self.assertEqual(topo["chunk"][0]["event_id"], sent[3])

    def test_context(self) -> None:
        """/context returns the event with neighbours on both sides, tokens and state."""
        room = self.create()
        sent = [self.send(room, str(i)) for i in range(6)]
        ctx = self.ok("GET", f"/rooms/{q(room)}/context/{q(sent[3])}?limit=4", None, self.ta)
        self.assertEqual(ctx["event"]["event_id"], sent[3])
        self.assertEqual([e["event_id"] for e in ctx["events_before"]], [sent[2], sent[1]])
        self.assertEqual([e["event_id"] for e in ctx["events_after"]], [sent[4], sent[5]])
        self.assertIn(("m.room.create", ""), {(e["type"], e["state_key"]) for e in ctx["state"]})
        before = self.ok("GET", f"/rooms/{q(room)}/messages?dir=b&limit=1&from={ctx['start']}",
                         None, self.ta)
        self.assertEqual(before["chunk"][0]["event_id"], sent[0])
        self.err(404, "M_NOT_FOUND", "GET", f"/rooms/{q(room)}/context/{q('$nope')}", None,
                 self.ta)

    def test_history_visibility(self) -> None:
        """joined: a late joiner cannot see what came before; shared: they can;
        world_readable: even a non-member can read."""
        room = self.create(preset="public_chat")
        self.ok("PUT", f"/rooms/{q(room)}/state/m.room.history_visibility",
                {"history_visibility": "joined"}, self.ta)
        hidden = self.send(room, "hidden")
        self.ok("PUT", f"/rooms/{q(room)}/state/m.room.history_visibility",
                {"history_visibility": "shared"}, self.ta)
        shared = self.send(room, "shared")
        self.ok("POST", f"/rooms/{q(room)}/join", {}, self.tb)
        self.err(404, "M_NOT_FOUND", "GET", f"/rooms/{q(room)}/event/{q(hidden)}", None, self.tb)
        self.ok("GET", f"/rooms/{q(room)}/event/{q(shared)}", None, self.tb)
        page = self.ok("GET", f"/rooms/{q(room)}/messages?dir=b&limit=50", None, self.tb)
        ids = {e["event_id"] for e in page["chunk"]}
        self.assertIn(shared, ids)
        self.assertNotIn(hidden, ids)
        self.err(403, "M_FORBIDDEN", "GET", f"/rooms/{q(room)}/event/{q(shared)}", None, self.tc)
        self.ok("PUT", f"/rooms/{q(room)}/state/m.room.history_visibility",
                {"history_visibility": "world_readable"}, self.ta)
        readable = self.send(room, "public")
        self.ok("GET", f"/rooms/{q(room)}/event/{q(readable)}", None, self.tc)

    def test_event_errors(self) -> None:
        """Unknown events and events of another room are 404."""
        room = self.create()
        other = self.create()
        eid = self.send(other, "elsewhere")
        self.err(404, "M_NOT_FOUND", "GET", f"/rooms/{q(room)}/event/{q(eid)}", None, self.ta)
        self.err(404, "M_NOT_FOUND", "GET", f"/rooms/{q(room)}/event/{q('$x')}", None, self.ta)


class LimitsTests(RoomsTestCase):
    def test_too_large_event(self) -> None:
        """An event over 64 KiB is refused with 413 M_TOO_LARGE and nothing is sent."""
        room = self.create()
        self.err(413, "M_TOO_LARGE", "PUT", f"/rooms/{q(room)}/send/m.room.message/big",
                 {"body": "x" * 70_000}, self.ta)
