"""POST /search through real HTTP: ranking, recency, pagination, keys, filters, context,
groupings, and that only what the user may read is ever found."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from tests.harness import TestHomeserver, make_homeserver

_txn = itertools.count()


def q(s: str) -> str:
    return quote(s, safe="")


class SearchHTTPCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs: TestHomeserver = make_homeserver(self)
        self.alice, self.ta = self.hs.register("alice")
        self.bob, self.tb = self.hs.register("bob")
        self.room = self.create(self.ta, name="Gardening club", topic="tomatoes and roses")

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, out = self.hs.request(method, path, body, token)
        self.assertEqual(status, 200, out)
        return out

    def create(self, token: str, **body: Any) -> str:
        body.setdefault("preset", "public_chat")
        room_id: str = self.ok("POST", "/createRoom", body, token)["room_id"]
        return room_id

    def say(self, body: str, token: str | None = None, room: str | None = None) -> str:
        out = self.ok(
            "PUT",
            f"/rooms/{q(room or self.room)}/send/m.room.message/s{next(_txn)}",
            {"msgtype": "m.text", "body": body},
            token or self.ta,
        )
        event_id: str = out["event_id"]
        return event_id

    def search(self, token: str | None = None, next_batch: str | None = None,
               **room_events: Any) -> Any:
        path = "/search" + (f"?next_batch={q(next_batch)}" if next_batch else "")
        out = self.ok("POST", path, {"search_categories": {"room_events": room_events}},
                      token or self.ta)
        return out["search_categories"]["room_events"]

    def ids(self, found: Any) -> list[str]:
        return [r["result"]["event_id"] for r in found["results"]]


class SearchTests(SearchHTTPCase):
    def test_rank_and_highlights(self) -> None:
        """Matching is by words (stemmed, prefix); the better match ranks first; count and
        highlights are given; non-matching messages are not found."""
        weak = self.say("I planted potatoes yesterday, and the weather was fine")
        strong = self.say("potatoes potatoes potatoes")
        self.say("nothing to see here")
        found = self.search(search_term="potato")
        self.assertEqual(self.ids(found), [strong, weak])
        self.assertEqual(found["count"], 2)
        self.assertIn("potato", found["highlights"])
        self.assertGreater(found["results"][0]["rank"], found["results"][1]["rank"])
        self.assertEqual(found["results"][0]["result"]["room_id"], self.room)

    def test_recent_order_and_pagination(self) -> None:
        """order_by=recent gives newest first; next_batch pages through every hit once."""
        sent = [self.say(f"apple number {i}") for i in range(7)]
        seen: list[str] = []
        token = None
        for _ in range(5):
            found = self.search(next_batch=token, search_term="apple", order_by="recent",
                                filter={"limit": 3})
            seen += self.ids(found)
            token = found.get("next_batch")
            if token is None:
                break
        self.assertEqual(seen, list(reversed(sent)))

    def test_rank_pagination(self) -> None:
        """Rank order pages through every hit once too."""
        sent = {self.say(f"pear {i}") for i in range(5)}
        seen: list[str] = []
        token = None
        for _ in range(5):
            found = self.search(next_batch=token, search_term="pear", filter={"limit": 2})
            seen += self.ids(found)
            token = found.get("next_batch")
            if token is None:
                break
        self.assertEqual(len(seen), 5)
        self.assertEqual(set(seen), sent)

    def test_keys_name_and_topic(self) -> None:
        """content.name and content.topic are searchable when asked for; a body-only search
        does not find them."""
        found = self.search(search_term="roses", keys=["content.topic"])
        self.assertEqual(len(found["results"]), 1)
        self.assertEqual(found["results"][0]["result"]["type"], "m.room.topic")
        found = self.search(search_term="gardening", keys=["content.name"])
        self.assertEqual(found["results"][0]["result"]["type"], "m.room.name")
        self.assertEqual(self.search(search_term="roses", keys=["content.body"])["results"], [])

    def test_only_joined_rooms(self) -> None:
        """Rooms the user is not in are never searched; leaving a room stops finding it;
        the filter narrows to rooms."""
        other = self.create(self.tb)
        self.say("secret banana", self.tb, other)
        self.assertEqual(self.search(search_term="banana")["results"], [])
        self.ok("POST", f"/join/{q(other)}", {}, self.ta)
        self.assertEqual(len(self.search(search_term="banana")["results"]), 1)
        self.assertEqual(
            self.search(search_term="banana", filter={"rooms": [self.room]})["results"], []
        )
        self.ok("POST", f"/rooms/{q(other)}/leave", {}, self.ta)
        self.assertEqual(self.search(search_term="banana")["results"], [])

    def test_history_visibility(self) -> None:
        """With joined history visibility, messages from before the user joined are not
        found; later ones are."""
        room = self.create(self.tb, initial_state=[{
            "type": "m.room.history_visibility", "content": {"history_visibility": "joined"},
        }])
        self.say("kiwi before", self.tb, room)
        self.ok("POST", f"/join/{q(room)}", {}, self.ta)
        after = self.say("kiwi after", self.tb, room)
        self.assertEqual(self.ids(self.search(search_term="kiwi")), [after])

    def test_redacted_not_found(self) -> None:
        """A redacted message is no longer found."""
        event_id = self.say("grape juice")
        self.ok("PUT", f"/rooms/{q(self.room)}/redact/{q(event_id)}/r1", {}, self.ta)
        self.assertEqual(self.search(search_term="grape")["results"], [])

    def test_sender_filter(self) -> None:
        """filter.senders / not_senders narrow the hits."""
        self.ok("POST", f"/join/{q(self.room)}", {}, self.tb)
        mine = self.say("melon a")
        theirs = self.say("melon b", self.tb)
        self.assertEqual(self.ids(self.search(search_term="melon",
                                              filter={"senders": [self.bob]})), [theirs])
        self.assertEqual(self.ids(self.search(search_term="melon",
                                              filter={"not_senders": [self.bob]})), [mine])

    def test_context_and_profile(self) -> None:
        """event_context brings events before and after with profile_info of senders."""
        before = self.say("first")
        hit = self.say("the plum is here")
        after = self.say("last")
        found = self.search(search_term="plum", event_context={
            "before_limit": 1, "after_limit": 1, "include_profile": True,
        })
        ctx = found["results"][0]["context"]
        self.assertEqual([e["event_id"] for e in ctx["events_before"]], [before])
        self.assertEqual([e["event_id"] for e in ctx["events_after"]], [after])
        self.assertIn(self.alice, ctx["profile_info"])
        self.assertIn("start", ctx)
        self.assertIn("end", ctx)
        self.assertEqual(found["results"][0]["result"]["event_id"], hit)

    def test_groupings_and_state(self) -> None:
        """groupings by room_id and sender list result IDs with an order; include_state
        gives the rooms' state."""
        hit = self.say("cherry")
        found = self.search(search_term="cherry", include_state=True, groupings={
            "group_by": [{"key": "room_id"}, {"key": "sender"}],
        })
        self.assertEqual(found["groups"]["room_id"][self.room], {"results": [hit], "order": 1})
        self.assertEqual(found["groups"]["sender"][self.alice]["results"], [hit])
        types = {e["type"] for e in found["state"][self.room]}
        self.assertIn("m.room.create", types)

    def test_errors(self) -> None:
        """Malformed requests are 400s with the right codes; odd search terms are safe."""
        for body, code in (
            ({}, "M_BAD_JSON"),
            ({"search_categories": {"room_events": {}}}, "M_BAD_JSON"),
            ({"search_categories": {"room_events": {"search_term": "x", "order_by": "z"}}},
             "M_INVALID_PARAM"),
            ({"search_categories": {"room_events": {"search_term": "x", "keys": ["c"]}}},
             "M_INVALID_PARAM"),
        ):
            status, out = self.hs.request("POST", "/search", body, self.ta)
            self.assertEqual((status, out["errcode"]), (400, code), body)
        for term in ('"', "AND OR NOT", "*", "(x", "'; DROP TABLE", ""):
            self.search(search_term=term)
        status, out = self.hs.request("POST", "/search?next_batch=zz",
                                      {"search_categories": {"room_events": {"search_term": "x"}}},
                                      self.ta)
        self.assertEqual((status, out["errcode"]), (400, "M_INVALID_PARAM"))
