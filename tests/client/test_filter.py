"""Filters: the filter API, validation, and applying filters to events."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ruma.errors import MatrixError
from ruma.sync.filter import parse_filter
from tests.sync.helpers import make_sync_homeserver


class FilterAPITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice, self.token = self.hs.register("alice")
        self.bob, self.bob_token = self.hs.register("bob")

    def test_create_and_get(self) -> None:
        """A stored filter comes back as posted, under a string ID."""
        flt = {"room": {"timeline": {"limit": 5, "types": ["m.room.message"]}}}
        status, body = self.hs.request("POST", f"/user/{self.alice}/filter", flt, token=self.token)
        self.assertEqual(status, 200)
        fid = body["filter_id"]
        self.assertIsInstance(fid, str)
        status, got = self.hs.request("GET", f"/user/{self.alice}/filter/{fid}", token=self.token)
        self.assertEqual((status, got), (200, flt))

    def test_ids_per_user(self) -> None:
        """Different filters get different IDs; another user cannot read them (403)."""
        _, a = self.hs.request("POST", f"/user/{self.alice}/filter", {}, token=self.token)
        _, b = self.hs.request(
            "POST", f"/user/{self.alice}/filter", {"presence": {"limit": 1}}, token=self.token
        )
        self.assertNotEqual(a["filter_id"], b["filter_id"])
        status, body = self.hs.request(
            "GET", f"/user/{self.alice}/filter/{a['filter_id']}", token=self.bob_token
        )
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.hs.request(
            "POST", f"/user/{self.alice}/filter", {}, token=self.bob_token
        )
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))

    def test_errors(self) -> None:
        """Unknown filter is 404; non-JSON is 400 M_NOT_JSON; invalid filters 400 M_BAD_JSON."""
        status, body = self.hs.request("GET", f"/user/{self.alice}/filter/77", token=self.token)
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))
        status, body = self.hs.request(
            "POST", f"/user/{self.alice}/filter", raw_body=b"{not json", token=self.token
        )
        self.assertEqual((status, body["errcode"]), (400, "M_NOT_JSON"))
        for bad in (
            {"room": {"timeline": {"limit": 0}}},
            {"room": {"rooms": "!x:y"}},
            {"presence": {"senders": ["not-a-user"]}},
            {"event_format": "xml"},
            {"room": {"timeline": {"lazy_load_members": "yes"}}},
        ):
            status, body = self.hs.request(
                "POST", f"/user/{self.alice}/filter", bad, token=self.token
            )
            self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"), bad)

    def test_stored_filter_in_sync(self) -> None:
        """A stored filter ID works as /sync's filter parameter."""
        flt = {"account_data": {"not_types": ["m.push_rules"]}}
        _, body = self.hs.request("POST", f"/user/{self.alice}/filter", flt, token=self.token)
        sync = self.hs.sync(self.token, filter=body["filter_id"])
        self.assertEqual(sync["account_data"]["events"], [])


class FilterMatchTests(SynchronousTestCase):
    def test_types_wildcards_and_senders(self) -> None:
        """types/not_types glob with '*'; not_ wins over the allow list; senders filter."""
        f = parse_filter(
            {"room": {"timeline": {"types": ["m.room.*"], "not_types": ["m.room.member"],
                                    "not_senders": ["@spam:hs"]}}}
        ).room.timeline
        self.assertTrue(f.matches({"type": "m.room.message", "sender": "@a:hs"}))
        self.assertFalse(f.matches({"type": "m.room.member", "sender": "@a:hs"}))
        self.assertFalse(f.matches({"type": "m.reaction", "sender": "@a:hs"}))
        self.assertFalse(f.matches({"type": "m.room.message", "sender": "@spam:hs"}))

    def test_contains_url_and_rooms(self) -> None:
        """contains_url true/false; rooms and not_rooms."""
        f = parse_filter({"room": {"timeline": {"contains_url": True}}}).room.timeline
        self.assertTrue(f.matches({"type": "m.room.message", "content": {"url": "mxc://a/b"}}))
        self.assertFalse(f.matches({"type": "m.room.message", "content": {"body": "x"}}))
        g = parse_filter({"room": {"timeline": {"contains_url": False}}}).room.timeline
        self.assertTrue(g.matches({"type": "m.room.message", "content": {"body": "x"}}))
        rf = parse_filter({"room": {"rooms": ["!a:hs", "!b:hs"], "not_rooms": ["!b:hs"]}}).room
        self.assertTrue(rf.room_allowed("!a:hs"))
        self.assertFalse(rf.room_allowed("!b:hs"))
        self.assertFalse(rf.room_allowed("!c:hs"))

    def test_event_fields(self) -> None:
        """event_fields keeps only the listed paths; '\\.' escapes a dot in a key."""
        f = parse_filter({"event_fields": ["type", "content.body", "content.m\\.relates_to"]})
        ev = {
            "type": "m.room.message",
            "sender": "@a:hs",
            "content": {"body": "hi", "msgtype": "m.text", "m.relates_to": {"x": 1}},
        }
        self.assertEqual(
            f.project(ev),
            {"type": "m.room.message", "content": {"body": "hi", "m.relates_to": {"x": 1}}},
        )

    def test_not_an_object(self) -> None:
        """A filter that is not an object is rejected."""
        with self.assertRaises(MatrixError):
            parse_filter([1, 2])
