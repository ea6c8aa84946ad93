"""Discovery endpoints through real HTTP: publicRooms (GET/POST, filters, paging, another
server's list over federation), user_directory/search, hierarchy (spaces, remote children),
reports (stored for admins), knock, timestamp_to_event."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from tests.federation.rooms_fixtures import Federation
from tests.harness import TestHomeserver, make_homeserver

_txn = itertools.count()


def q(s: str) -> str:
    return quote(s, safe="")


V1 = "/_matrix/client/v1"


class DiscoveryCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs: TestHomeserver = make_homeserver(self)
        self.alice, self.ta = self.hs.register("alice")
        self.bob, self.tb = self.hs.register("bob")
        self.carol, self.tc = self.hs.register("carol")

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, out = self.hs.request(method, path, body, token)
        self.assertEqual(status, 200, out)
        return out

    def err(self, status: int, code: str, method: str, path: str, body: Any = None,
            token: str | None = None) -> None:
        got, out = self.hs.request(method, path, body, token)
        self.assertEqual((got, out.get("errcode") if out else None), (status, code), out)

    def create(self, token: str, **body: Any) -> str:
        room_id: str = self.ok("POST", "/createRoom", body, token)["room_id"]
        return room_id

    def say(self, room: str, body: str, token: str) -> str:
        out = self.ok("PUT", f"/rooms/{q(room)}/send/m.room.message/d{next(_txn)}",
                      {"msgtype": "m.text", "body": body}, token)
        event_id: str = out["event_id"]
        return event_id


class PublicRoomsTests(DiscoveryCase):
    def setUp(self) -> None:
        super().setUp()
        self.big = self.create(self.ta, visibility="public", preset="public_chat",
                               name="Big room", topic="everyone is here")
        for token in (self.tb, self.tc):
            self.ok("POST", f"/join/{q(self.big)}", {}, token)
        self.small = self.create(self.tb, visibility="public", preset="public_chat",
                                 name="Knitting")
        self.space = self.create(self.tc, visibility="public", preset="public_chat",
                                 name="A space", creation_content={"type": "m.space"})
        self.hidden = self.create(self.ta, preset="public_chat", name="Not listed")

    def test_get_lists_public_rooms_by_size(self) -> None:
        """GET /publicRooms lists only published rooms, biggest first, with the
        PublicRoomsChunk fields; it needs no access token."""
        out = self.ok("GET", "/publicRooms")
        ids = [r["room_id"] for r in out["chunk"]]
        self.assertEqual(ids[0], self.big)
        self.assertEqual(set(ids), {self.big, self.small, self.space})
        self.assertEqual(out["total_room_count_estimate"], 3)
        big = out["chunk"][0]
        self.assertEqual(
            (big["name"], big["topic"], big["num_joined_members"], big["join_rule"]),
            ("Big room", "everyone is here", 3, "public"),
        )
        self.assertFalse(big["world_readable"])
        self.assertFalse(big["guest_can_join"])
        space = next(r for r in out["chunk"] if r["room_id"] == self.space)
        self.assertEqual(space["room_type"], "m.space")

    def test_paging(self) -> None:
        """limit/since page through the list with next_batch and prev_batch."""
        page1 = self.ok("GET", "/publicRooms?limit=2")
        self.assertEqual(len(page1["chunk"]), 2)
        page2 = self.ok("GET", f"/publicRooms?limit=2&since={page1['next_batch']}")
        self.assertEqual(len(page2["chunk"]), 1)
        self.assertNotIn("next_batch", page2)
        self.assertIn("prev_batch", page2)
        seen = {r["room_id"] for r in page1["chunk"] + page2["chunk"]}
        self.assertEqual(seen, {self.big, self.small, self.space})
        self.err(400, "M_INVALID_PARAM", "GET", "/publicRooms?since=garbage")

    def test_post_filters(self) -> None:
        """POST filters by generic_search_term (name/topic/alias) and room_types
        (null meaning plain rooms)."""
        out = self.ok("POST", "/publicRooms", {"filter": {"generic_search_term": "knit"}},
                      self.ta)
        self.assertEqual([r["room_id"] for r in out["chunk"]], [self.small])
        out = self.ok("POST", "/publicRooms", {"filter": {"room_types": ["m.space"]}}, self.ta)
        self.assertEqual([r["room_id"] for r in out["chunk"]], [self.space])
        out = self.ok("POST", "/publicRooms", {"filter": {"room_types": [None]}}, self.ta)
        self.assertEqual({r["room_id"] for r in out["chunk"]}, {self.big, self.small})
        self.err(401, "M_MISSING_TOKEN", "POST", "/publicRooms", {})
        self.err(400, "M_BAD_JSON", "POST", "/publicRooms", {"filter": []}, self.ta)

    def test_directory_visibility_moves_rooms(self) -> None:
        """Publishing and unpublishing through /directory/list/room changes the list."""
        self.ok("PUT", f"/directory/list/room/{q(self.hidden)}", {"visibility": "public"},
                self.ta)
        self.assertIn(self.hidden, [r["room_id"] for r in self.ok("GET", "/publicRooms")["chunk"]])
        self.ok("PUT", f"/directory/list/room/{q(self.hidden)}", {"visibility": "private"},
                self.ta)
        self.assertNotIn(self.hidden,
                         [r["room_id"] for r in self.ok("GET", "/publicRooms")["chunk"]])

    def test_aliases_listed(self) -> None:
        """GET /rooms/{id}/aliases lists the room's local aliases to members."""
        self.ok("PUT", f"/directory/room/{q('#big:test')}", {"room_id": self.big}, self.ta)
        out = self.ok("GET", f"/rooms/{q(self.big)}/aliases", None, self.tb)
        self.assertEqual(out["aliases"], ["#big:test"])


class RemotePublicRoomsTests(SynchronousTestCase):
    def test_server_param_asks_the_other_server(self) -> None:
        """?server= another server asks it over federation (publicRooms) and returns its
        list; an unreachable server is our own 404, a malformed name too."""
        fed = Federation(self)
        _, ta = fed["a.test"].register("alice")
        _, tb = fed["b.test"].register("bob")
        room = fed.create_room("b.test", tb, visibility="public", preset="public_chat",
                               name="Remote room")
        out = fed.ok("a.test", "GET", "/publicRooms?server=b.test", None, ta)
        self.assertEqual([r["room_id"] for r in out["chunk"]], [room])
        self.assertEqual(out["chunk"][0]["name"], "Remote room")
        out = fed.ok("a.test", "POST", "/publicRooms?server=b.test",
                     {"filter": {"generic_search_term": "nothing like it"}}, ta)
        self.assertEqual(out["chunk"], [])
        fed.agent.down.add("b.test")
        status, body = fed.request("a.test", "GET", "/publicRooms?server=b.test", None, ta)
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))
        status, body = fed.request("a.test", "GET", "/publicRooms?server=%C3%A9x", None, ta)
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))


class UserDirectoryTests(DiscoveryCase):
    def test_search(self) -> None:
        """Users sharing a room, in public rooms, and local users are found by ID or
        display name; limit sets limited."""
        self.ok("PUT", f"/profile/{q(self.bob)}/displayname", {"displayname": "Bobby Tables"},
                self.tb)
        out = self.ok("POST", "/user_directory/search", {"search_term": "bobby"}, self.ta)
        self.assertEqual(out["results"], [{"user_id": self.bob, "display_name": "Bobby Tables"}])
        self.assertFalse(out["limited"])
        out = self.ok("POST", "/user_directory/search", {"search_term": "test", "limit": 2},
                      self.ta)
        self.assertEqual(len(out["results"]), 2)
        self.assertTrue(out["limited"])
        self.assertEqual(
            self.ok("POST", "/user_directory/search", {"search_term": "zzz"}, self.ta)["results"],
            [],
        )

    def test_members_of_shared_rooms(self) -> None:
        """A room member's per-room display name is what is searched and shown."""
        room = self.create(self.ta, preset="public_chat")
        self.ok("POST", f"/join/{q(room)}", {}, self.tc)
        self.ok("PUT", f"/rooms/{q(room)}/state/m.room.member/{q(self.carol)}",
                {"membership": "join", "displayname": "Captain C"}, self.tc)
        out = self.ok("POST", "/user_directory/search", {"search_term": "captain"}, self.ta)
        self.assertEqual(out["results"][0]["user_id"], self.carol)

    def test_errors(self) -> None:
        """search_term is required; a token is required."""
        self.err(400, "M_MISSING_PARAM", "POST", "/user_directory/search", {}, self.ta)
        self.err(401, "M_MISSING_TOKEN", "POST", "/user_directory/search", {"search_term": "x"})


class HierarchyTests(DiscoveryCase):
    def child(self, space: str, room: str, token: str, **content: Any) -> None:
        content.setdefault("via", ["test"])
        self.ok("PUT", f"/rooms/{q(space)}/state/m.space.child/{q(room)}", content, token)

    def test_tree(self) -> None:
        """The hierarchy walks m.space.child breadth first, with children_state, honouring
        order, max_depth, suggested_only and limit/from."""
        space = self.create(self.ta, preset="public_chat", name="Space",
                            creation_content={"type": "m.space"})
        sub = self.create(self.ta, preset="public_chat", name="Sub",
                          creation_content={"type": "m.space"})
        r1 = self.create(self.ta, preset="public_chat", name="One")
        r2 = self.create(self.ta, preset="public_chat", name="Two")
        deep = self.create(self.ta, preset="public_chat", name="Deep")
        self.child(space, r1, self.ta, order="b")
        self.child(space, r2, self.ta, order="a", suggested=True)
        self.child(space, sub, self.ta, order="c")
        self.child(sub, deep, self.ta)
        out = self.ok("GET", f"{V1}/rooms/{q(space)}/hierarchy", None, self.ta)
        ids = [r["room_id"] for r in out["rooms"]]
        self.assertEqual(ids, [space, r2, r1, sub, deep])
        self.assertEqual(len(out["rooms"][0]["children_state"]), 3)
        self.assertEqual(out["rooms"][0]["room_type"], "m.space")
        shallow = self.ok("GET", f"{V1}/rooms/{q(space)}/hierarchy?max_depth=1", None, self.ta)
        self.assertEqual([r["room_id"] for r in shallow["rooms"]], [space, r2, r1, sub])
        suggested = self.ok("GET", f"{V1}/rooms/{q(space)}/hierarchy?suggested_only=true",
                            None, self.ta)
        self.assertEqual([r["room_id"] for r in suggested["rooms"]], [space, r2])
        page = self.ok("GET", f"{V1}/rooms/{q(space)}/hierarchy?limit=2", None, self.ta)
        self.assertEqual([r["room_id"] for r in page["rooms"]], [space, r2])
        rest = self.ok("GET", f"{V1}/rooms/{q(space)}/hierarchy?limit=10&from="
                              f"{page['next_batch']}", None, self.ta)
        self.assertEqual([r["room_id"] for r in rest["rooms"]], [r1, sub, deep])
        self.assertNotIn("next_batch", rest)

    def test_private_rooms_hidden(self) -> None:
        """A private child the user is not in is left out; a private space is 403."""
        space = self.create(self.ta, preset="public_chat", creation_content={"type": "m.space"})
        secret = self.create(self.ta, preset="private_chat")
        self.child(space, secret, self.ta)
        out = self.ok("GET", f"{V1}/rooms/{q(space)}/hierarchy", None, self.tb)
        self.assertEqual([r["room_id"] for r in out["rooms"]], [space])
        self.err(403, "M_FORBIDDEN", "GET", f"{V1}/rooms/{q(secret)}/hierarchy", None, self.tb)
        self.err(400, "M_INVALID_PARAM", "GET",
                 f"{V1}/rooms/{q(space)}/hierarchy?max_depth=-1", None, self.ta)


class RemoteHierarchyTests(SynchronousTestCase):
    def test_remote_child(self) -> None:
        """A child room only another server is in is described by that server's
        federation hierarchy."""
        fed = Federation(self)
        _, ta = fed["a.test"].register("alice")
        _, tb = fed["b.test"].register("bob")
        space = fed.create_room("a.test", ta, preset="public_chat",
                                creation_content={"type": "m.space"})
        remote = fed.create_room("b.test", tb, preset="public_chat", name="Over there")
        fed.ok("a.test", "PUT", f"/rooms/{q(space)}/state/m.space.child/{q(remote)}",
               {"via": ["b.test"]}, ta)
        out = fed.ok("a.test", "GET", f"{V1}/rooms/{q(space)}/hierarchy", None, ta)
        self.assertEqual([r["room_id"] for r in out["rooms"]], [space, remote])
        self.assertEqual(out["rooms"][1]["name"], "Over there")


class ReportTests(DiscoveryCase):
    def test_reports_stored_for_admins(self) -> None:
        """Event and room reports are stored and listed to admins only; reporting an
        event one cannot see is 404."""
        room = self.create(self.ta, preset="public_chat")
        self.ok("POST", f"/join/{q(room)}", {}, self.tb)
        event = self.say(room, "rude", self.ta)
        self.ok("POST", f"/rooms/{q(room)}/report/{q(event)}", {"reason": "rude", "score": -100},
                self.tb)
        self.ok("POST", f"/rooms/{q(room)}/report", {"reason": "whole room"}, self.tb)
        self.err(404, "M_NOT_FOUND", "POST", f"/rooms/{q(room)}/report/{q(event)}", {},
                 self.tc)
        self.err(404, "M_NOT_FOUND", "POST", f"/rooms/{q('!nope:test')}/report", {}, self.tc)
        self.err(403, "M_FORBIDDEN", "GET", "/_synapse/admin/v1/event_reports", None, self.tb)
        _, admin = self.hs.register("admin", admin=True)
        out = self.ok("GET", "/_synapse/admin/v1/event_reports", None, admin)
        self.assertEqual(out["total"], 2)
        first, second = out["event_reports"]
        self.assertEqual((first["event_id"], first["reason"]), (None, "whole room"))
        self.assertEqual((second["event_id"], second["score"], second["user_id"]),
                         (event, -100, self.bob))


class KnockTests(DiscoveryCase):
    def test_local_knock(self) -> None:
        """A local user knocks on a knock room; a member sees the knock and can invite
        them in."""
        room = self.create(self.ta, preset="private_chat", initial_state=[
            {"type": "m.room.join_rules", "content": {"join_rule": "knock"}},
        ])
        out = self.ok("POST", f"/knock/{q(room)}", {"reason": "let me in"}, self.tb)
        self.assertEqual(out["room_id"], room)
        member = self.ok("GET", f"/rooms/{q(room)}/state/m.room.member/{q(self.bob)}", None,
                         self.ta)
        self.assertEqual(member["membership"], "knock")
        self.ok("POST", f"/rooms/{q(room)}/invite", {"user_id": self.bob}, self.ta)
        self.ok("POST", f"/join/{q(room)}", {}, self.tb)
        invite_only = self.create(self.ta, preset="private_chat")
        self.err(403, "M_FORBIDDEN", "POST", f"/knock/{q(invite_only)}", {}, self.tc)


class TimestampToEventTests(DiscoveryCase):
    def test_both_directions(self) -> None:
        """The nearest visible event at/after (dir=f) or at/before (dir=b) a timestamp."""
        room = self.create(self.ta, preset="public_chat")
        self.hs.clock.advance(100)
        first = self.say(room, "one", self.ta)
        t1 = int(self.hs.clock.seconds() * 1000)
        self.hs.clock.advance(100)
        second = self.say(room, "two", self.ta)
        t2 = int(self.hs.clock.seconds() * 1000)
        path = f"{V1}/rooms/{q(room)}/timestamp_to_event"
        out = self.ok("GET", f"{path}?ts={t1 + 1}&dir=f", None, self.ta)
        self.assertEqual(out, {"event_id": second, "origin_server_ts": t2})
        out = self.ok("GET", f"{path}?ts={t2 - 1}&dir=b", None, self.ta)
        self.assertEqual(out["event_id"], first)
        self.err(404, "M_NOT_FOUND", "GET", f"{path}?ts={t2 + 10}&dir=f", None, self.ta)
        self.err(400, "M_INVALID_PARAM", "GET", f"{path}?ts=1&dir=x", None, self.ta)
        self.err(400, "M_INVALID_PARAM", "GET", f"{path}?ts={2**70}&dir=f", None, self.ta)
        self.err(400, "M_MISSING_PARAM", "GET", f"{path}?dir=f", None, self.ta)
        self.err(403, "M_FORBIDDEN", "GET", f"{path}?ts=1&dir=f", None, self.tc)
