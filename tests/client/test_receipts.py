"""Receipts and read markers: endpoints, sync delivery, privacy, threads, errors."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.sync.helpers import make_sync_homeserver


def receipts_in(body: dict[str, Any], room: str) -> dict[str, Any]:
    r = body["rooms"]["join"].get(room)
    if r is None:
        return {}
    for e in r["ephemeral"]["events"]:
        if e["type"] == "m.receipt":
            return dict(e["content"])
    return {}


class ReceiptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice, self.atok = self.hs.register("alice")
        self.bob, self.btok = self.hs.register("bob")
        self.room = self.hs.create_room(self.alice, preset="public_chat")
        self.hs.run(self.hs.rooms.membership.join(self.bob, self.room))
        self.e1 = self.hs.send(self.alice, self.room, "one")
        self.e2 = self.hs.send(self.alice, self.room, "two")

    def post(self, token: str, rtype: str, event_id: str, body: Any = None) -> tuple[int, Any]:
        return self.hs.request(
            "POST", f"/rooms/{self.room}/receipt/{rtype}/{event_id}",
            body if body is not None else {}, token=token,
        )

    def test_read_receipt_in_sync(self) -> None:
        """A public receipt reaches other members' sync (waking their long-poll), with ts."""
        first = self.hs.sync(self.atok)
        d = self.hs.start_request("GET", f"/sync?since={first['next_batch']}&timeout=30000", self.atok)
        self.assertEqual(self.post(self.btok, "m.read", self.e2)[0], 200)
        self.hs.tick()
        _, body = self.hs.finish(d)
        content = receipts_in(body, self.room)
        self.assertEqual(list(content), [self.e2])
        entry = content[self.e2]["m.read"][self.bob]
        self.assertEqual(entry["ts"], int(self.hs.clock.seconds() * 1000))
        self.assertNotIn("thread_id", entry)

    def test_private_receipt_only_for_owner(self) -> None:
        """m.read.private is seen by its owner only."""
        first_a = self.hs.sync(self.atok)
        first_b = self.hs.sync(self.btok)
        self.post(self.btok, "m.read.private", self.e1)
        self.assertEqual(receipts_in(self.hs.sync(self.atok, since=first_a["next_batch"]), self.room), {})
        own = receipts_in(self.hs.sync(self.btok, since=first_b["next_batch"]), self.room)
        self.assertIn(self.bob, own[self.e1]["m.read.private"])

    def test_threaded_receipt(self) -> None:
        """A threaded receipt carries thread_id and does not replace the unthreaded one."""
        self.post(self.btok, "m.read", self.e1)
        self.post(self.btok, "m.read", self.e2, {"thread_id": "main"})
        content = receipts_in(self.hs.sync(self.atok), self.room)
        self.assertNotIn("thread_id", content[self.e1]["m.read"][self.bob])
        self.assertEqual(content[self.e2]["m.read"][self.bob]["thread_id"], "main")

    def test_receipts_do_not_go_backwards(self) -> None:
        """A receipt for an older event than the current one is ignored."""
        self.post(self.btok, "m.read", self.e2)
        first = self.hs.sync(self.atok)
        self.post(self.btok, "m.read", self.e1)
        body = self.hs.sync(self.atok, since=first["next_batch"])
        self.assertEqual(receipts_in(body, self.room), {})
        self.assertIn(self.e2, receipts_in(self.hs.sync(self.atok), self.room))

    def test_fully_read_via_receipt_and_read_markers(self) -> None:
        """m.fully_read (as a receipt type or via /read_markers) is room account data;
        /read_markers also sets the read receipts."""
        first = self.hs.sync(self.btok)
        self.assertEqual(self.post(self.btok, "m.fully_read", self.e1)[0], 200)
        status, _ = self.hs.request(
            "POST", f"/rooms/{self.room}/read_markers",
            {"m.fully_read": self.e2, "m.read": self.e2, "m.read.private": self.e2},
            token=self.btok,
        )
        self.assertEqual(status, 200)
        body = self.hs.sync(self.btok, since=first["next_batch"])
        room = body["rooms"]["join"][self.room]
        self.assertEqual(
            room["account_data"]["events"],
            [{"type": "m.fully_read", "content": {"event_id": self.e2}}],
        )
        content = receipts_in(body, self.room)
        self.assertEqual(set(content[self.e2]), {"m.read", "m.read.private"})
        status, data = self.hs.request(
            "GET", f"/user/{self.bob}/rooms/{self.room}/account_data/m.fully_read", token=self.btok
        )
        self.assertEqual((status, data), (200, {"event_id": self.e2}))

    def test_errors(self) -> None:
        """Unknown receipt type, thread_id misuse, unknown event, outsiders and bad JSON."""
        status, body = self.post(self.btok, "m.unknown", self.e1)
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.post(self.btok, "m.fully_read", self.e1, {"thread_id": "main"})
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.post(self.btok, "m.read", self.e1, {"thread_id": ""})
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.post(self.btok, "m.read", self.e1, {"thread_id": 5})
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.post(self.btok, "m.read", "$nope")
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))
        carol, ctok = self.hs.register("carol")
        status, body = self.post(ctok, "m.read", self.e1)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.hs.request(
            "POST", f"/rooms/{self.room}/receipt/m.read/{self.e1}", raw_body=b"{x", token=self.btok
        )
        self.assertEqual((status, body["errcode"]), (400, "M_NOT_JSON"))
        status, body = self.hs.request(
            "POST", f"/rooms/{self.room}/read_markers", {"m.fully_read": 3}, token=self.btok
        )
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
