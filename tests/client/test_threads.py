"""Relations, threads, edits and references through real HTTP: /relations, /threads and the
bundled aggregations (unsigned.m.relations) in /messages, /event, /context and /sync."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from tests.harness import TestHomeserver, make_homeserver

_txn = itertools.count()


def q(s: str) -> str:
    return quote(s, safe="")


class RelationsHTTPCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs: TestHomeserver = make_homeserver(self)
        self.alice, self.ta = self.hs.register("alice")
        self.bob, self.tb = self.hs.register("bob")
        self.carol, self.tc = self.hs.register("carol")
        self.room = self.ok("POST", "/createRoom", {"preset": "public_chat"}, self.ta)["room_id"]
        self.ok("POST", f"/join/{q(self.room)}", {}, self.tb)

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, out = self.hs.request(method, path, body, token)
        self.assertEqual(status, 200, out)
        return out

    def send(self, content: dict[str, Any], token: str, etype: str = "m.room.message") -> str:
        out = self.ok(
            "PUT", f"/rooms/{q(self.room)}/send/{etype}/x{next(_txn)}", content, token
        )
        event_id: str = out["event_id"]
        return event_id

    def text(self, body: str, token: str | None = None, **rel: Any) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if rel:
            content["m.relates_to"] = rel
        return self.send(content, token or self.ta)

    def reply(self, root: str, body: str, token: str | None = None) -> str:
        return self.text(body, token, rel_type="m.thread", event_id=root)

    def edit(self, target: str, body: str, token: str | None = None) -> str:
        content = {
            "msgtype": "m.text",
            "body": f"* {body}",
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        }
        return self.send(content, token or self.ta)

    def v1(self, path: str) -> str:
        return "/_matrix/client/v1" + path

    def relations(self, event_id: str, suffix: str = "", query: str = "",
                  token: str | None = None) -> Any:
        path = self.v1(f"/rooms/{q(self.room)}/relations/{q(event_id)}{suffix}")
        return self.ok("GET", path + (f"?{query}" if query else ""), None, token or self.ta)

    def get_event(self, event_id: str, token: str | None = None) -> Any:
        return self.ok("GET", f"/rooms/{q(self.room)}/event/{q(event_id)}", None,
                       token or self.ta)


class RelationsEndpointTests(RelationsHTTPCase):
    def test_relations_newest_first_and_filters(self) -> None:
        """/relations lists every relating event newest first; relType and eventType
        narrow it; an unrelated event is never listed."""
        root = self.text("root")
        r1 = self.reply(root, "one")
        e1 = self.edit(root, "root!")
        react = self.send(
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}},
            self.tb, "m.reaction",
        )
        self.text("unrelated")
        out = self.relations(root)
        self.assertEqual([e["event_id"] for e in out["chunk"]], [react, e1, r1])
        self.assertNotIn("next_batch", out)
        only_threads = self.relations(root, "/m.thread")
        self.assertEqual([e["event_id"] for e in only_threads["chunk"]], [r1])
        reactions = self.relations(root, "/m.annotation/m.reaction")
        self.assertEqual([e["event_id"] for e in reactions["chunk"]], [react])
        self.assertEqual(self.relations(root, "/m.annotation/m.room.message")["chunk"], [])

    def test_pagination_both_directions(self) -> None:
        """limit/next_batch walk all relations without gaps or repeats, backwards and
        forwards; prev_batch echoes from."""
        root = self.text("root")
        replies = [self.reply(root, f"r{i}") for i in range(5)]
        seen: list[str] = []
        token = None
        for _ in range(5):
            query = "limit=2" + (f"&from={token}" if token else "")
            page = self.relations(root, "/m.thread", query)
            seen += [e["event_id"] for e in page["chunk"]]
            if token:
                self.assertEqual(page["prev_batch"], token)
            token = page.get("next_batch")
            if token is None:
                break
        self.assertEqual(seen, list(reversed(replies)))
        seen = []
        token = None
        for _ in range(5):
            query = "dir=f&limit=2" + (f"&from={token}" if token else "")
            page = self.relations(root, "", query)
            seen += [e["event_id"] for e in page["chunk"]]
            token = page.get("next_batch")
            if token is None:
                break
        self.assertEqual(seen, replies)

    def test_recurse(self) -> None:
        """recurse=true adds relations of relations (an edit of a thread reply) and says
        how deep it went; without it only direct relations come back."""
        root = self.text("root")
        reply = self.reply(root, "reply")
        edit = self.edit(reply, "reply!")
        self.assertEqual([e["event_id"] for e in self.relations(root)["chunk"]], [reply])
        out = self.relations(root, "", "recurse=true")
        self.assertEqual([e["event_id"] for e in out["chunk"]], [edit, reply])
        self.assertEqual(out["recursion_depth"], 3)

    def test_redacted_relation_disappears(self) -> None:
        """A redacted reaction is no longer a relation."""
        root = self.text("root")
        react = self.send(
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "x"}},
            self.tb, "m.reaction",
        )
        self.ok("PUT", f"/rooms/{q(self.room)}/redact/{q(react)}/r1", {}, self.tb)
        self.assertEqual(self.relations(root)["chunk"], [])

    def test_errors(self) -> None:
        """Outsiders get 403, an unknown parent 404, a bad dir 400."""
        root = self.text("root")
        status, out = self.hs.request(
            "GET", self.v1(f"/rooms/{q(self.room)}/relations/{q(root)}"), None, self.tc
        )
        self.assertEqual((status, out["errcode"]), (403, "M_FORBIDDEN"))
        status, out = self.hs.request(
            "GET", self.v1(f"/rooms/{q(self.room)}/relations/{q('$nope')}"), None, self.ta
        )
        self.assertEqual((status, out["errcode"]), (404, "M_NOT_FOUND"))
        status, out = self.hs.request(
            "GET", self.v1(f"/rooms/{q(self.room)}/relations/{q(root)}?dir=x"), None, self.ta
        )
        self.assertEqual((status, out["errcode"]), (400, "M_INVALID_PARAM"))


class BundledAggregationTests(RelationsHTTPCase):
    def test_thread_summary(self) -> None:
        """A thread root carries m.thread: the latest reply, the count, and whether the
        requesting user took part (sent the root or a reply)."""
        root = self.text("root")
        self.reply(root, "one", self.tb)
        latest = self.reply(root, "two", self.tb)
        for token, participated in ((self.ta, True), (self.tb, True)):
            thread = self.get_event(root, token)["unsigned"]["m.relations"]["m.thread"]
            self.assertEqual(thread["latest_event"]["event_id"], latest)
            self.assertEqual(thread["latest_event"]["content"]["body"], "two")
            self.assertEqual(thread["count"], 2)
            self.assertEqual(thread["current_user_participated"], participated)
        self.ok("POST", f"/join/{q(self.room)}", {}, self.tc)
        thread = self.get_event(root, self.tc)["unsigned"]["m.relations"]["m.thread"]
        self.assertFalse(thread["current_user_participated"])

    def test_latest_valid_edit(self) -> None:
        """m.replace is the newest edit by the original sender, whole; another user's
        'edit' is ignored and the original content stays as sent."""
        root = self.text("root")
        self.edit(root, "first")
        self.hs.clock.advance(1)
        second = self.edit(root, "second")
        self.hs.clock.advance(1)
        self.edit(root, "forged", self.tb)
        served = self.get_event(root)
        self.assertEqual(served["content"]["body"], "root")
        replace = served["unsigned"]["m.relations"]["m.replace"]
        self.assertEqual(replace["event_id"], second)
        self.assertEqual(replace["content"]["m.new_content"]["body"], "second")

    def test_references(self) -> None:
        """m.reference lists the referencing events' IDs."""
        root = self.text("root")
        ref = self.text("see above", rel_type="m.reference", event_id=root)
        served = self.get_event(root)
        self.assertEqual(
            served["unsigned"]["m.relations"]["m.reference"], {"chunk": [{"event_id": ref}]}
        )

    def test_no_relations_no_key(self) -> None:
        """An event nobody relates to has no m.relations, and reactions bundle nothing."""
        root = self.text("root")
        self.send(
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "x"}},
            self.tb, "m.reaction",
        )
        self.assertNotIn("m.relations", self.get_event(root)["unsigned"])

    def test_bundles_in_messages_and_sync(self) -> None:
        """/messages and /sync timelines carry the same bundled aggregations."""
        root = self.text("root")
        reply = self.reply(root, "reply", self.tb)
        msgs = self.ok("GET", f"/rooms/{q(self.room)}/messages?dir=b&limit=5", None, self.ta)
        by_id = {e["event_id"]: e for e in msgs["chunk"]}
        self.assertEqual(
            by_id[root]["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"], reply
        )
        sync = self.ok("GET", "/sync", None, self.ta)
        timeline = sync["rooms"]["join"][self.room]["timeline"]["events"]
        served = {e["event_id"]: e for e in timeline}
        self.assertEqual(served[root]["unsigned"]["m.relations"]["m.thread"]["count"], 1)


class ThreadsEndpointTests(RelationsHTTPCase):
    def threads(self, query: str = "", token: str | None = None) -> Any:
        path = self.v1(f"/rooms/{q(self.room)}/threads")
        return self.ok("GET", path + (f"?{query}" if query else ""), None, token or self.ta)

    def test_threads_by_latest_activity(self) -> None:
        """/threads lists roots by their latest reply, newest first, with bundled m.thread;
        pagination goes through all of them."""
        t1 = self.text("t1")
        t2 = self.text("t2")
        self.reply(t1, "a")
        self.reply(t2, "b")
        self.reply(t1, "c")
        out = self.threads()
        self.assertEqual([e["event_id"] for e in out["chunk"]], [t1, t2])
        self.assertEqual(out["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"], 2)
        page1 = self.threads("limit=1")
        self.assertEqual([e["event_id"] for e in page1["chunk"]], [t1])
        page2 = self.threads(f"limit=1&from={page1['next_batch']}")
        self.assertEqual([e["event_id"] for e in page2["chunk"]], [t2])
        self.assertNotIn("next_batch", self.threads(f"limit=5&from={page1['next_batch']}"))

    def test_participated(self) -> None:
        """include=participated keeps threads the user started or replied in."""
        mine = self.text("mine")
        theirs = self.text("theirs", self.tb)
        joined_in = self.text("joined", self.tb)
        self.reply(mine, "x", self.tb)
        self.reply(theirs, "y", self.tb)
        self.reply(joined_in, "z", self.ta)
        out = self.threads("include=participated")
        self.assertEqual({e["event_id"] for e in out["chunk"]}, {mine, joined_in})
        self.assertEqual(len(self.threads("include=all")["chunk"]), 3)

    def test_threads_errors(self) -> None:
        """A bad include is 400; an outsider is refused."""
        status, out = self.hs.request(
            "GET", self.v1(f"/rooms/{q(self.room)}/threads?include=some"), None, self.ta
        )
        self.assertEqual((status, out["errcode"]), (400, "M_INVALID_PARAM"))
        status, out = self.hs.request(
            "GET", self.v1(f"/rooms/{q(self.room)}/threads"), None, self.tc
        )
        self.assertEqual((status, out["errcode"]), (403, "M_FORBIDDEN"))

    def test_thread_receipts(self) -> None:
        """Read receipts per thread (thread_id in the body) are accepted and served."""
        root = self.text("root")
        reply = self.reply(root, "r", self.tb)
        self.ok("POST", f"/rooms/{q(self.room)}/receipt/m.read/{q(reply)}",
                {"thread_id": root}, self.ta)
        sync = self.ok("GET", "/sync", None, self.tb)
        ephemeral = sync["rooms"]["join"][self.room]["ephemeral"]["events"]
        receipts = [e for e in ephemeral if e["type"] == "m.receipt"]
        self.assertEqual(
            receipts[0]["content"][reply]["m.read"][self.alice]["thread_id"], root
        )
