"""Account data endpoints: global and per room, errors, and delivery by /sync."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.sync.helpers import make_sync_homeserver


class AccountDataTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice, self.token = self.hs.register("alice")
        self.bob, self.bob_token = self.hs.register("bob")

    def test_global_round_trip(self) -> None:
        """PUT then GET returns the content; a second PUT replaces it."""
        path = f"/user/{self.alice}/account_data/m.direct"
        self.assertEqual(self.hs.request("PUT", path, {"@b:hs": ["!r:hs"]}, token=self.token)[0], 200)
        self.assertEqual(self.hs.request("GET", path, token=self.token), (200, {"@b:hs": ["!r:hs"]}))
        self.hs.request("PUT", path, {}, token=self.token)
        self.assertEqual(self.hs.request("GET", path, token=self.token), (200, {}))

    def test_room_round_trip(self) -> None:
        """Room account data is separate from global data of the same type."""
        room = "!room:test"
        rpath = f"/user/{self.alice}/rooms/{room}/account_data/m.tag"
        self.hs.request("PUT", rpath, {"tags": {"u.work": {}}}, token=self.token)
        self.assertEqual(self.hs.request("GET", rpath, token=self.token)[1], {"tags": {"u.work": {}}})
        status, body = self.hs.request(
            "GET", f"/user/{self.alice}/account_data/m.tag", token=self.token
        )
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_errors(self) -> None:
        """Other users' data is 403; bad JSON 400; server-controlled types 405; bad room 400."""
        path = f"/user/{self.alice}/account_data/x.y"
        status, body = self.hs.request("PUT", path, {}, token=self.bob_token)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.hs.request("GET", path, token=self.bob_token)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.hs.request("PUT", path, raw_body=b"[1,", token=self.token)
        self.assertEqual((status, body["errcode"]), (400, "M_NOT_JSON"))
        status, body = self.hs.request("PUT", path, [1, 2], token=self.token)
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        status, body = self.hs.request(
            "PUT", f"/user/{self.alice}/account_data/m.push_rules", {}, token=self.token
        )
        self.assertEqual((status, body["errcode"]), (405, "M_BAD_JSON"))
        status, body = self.hs.request(
            "PUT", f"/user/{self.alice}/rooms/!r:test/account_data/m.fully_read", {}, token=self.token
        )
        self.assertEqual((status, body["errcode"]), (405, "M_BAD_JSON"))
        status, body = self.hs.request(
            "PUT", f"/user/{self.alice}/rooms/not-a-room/account_data/x", {}, token=self.token
        )
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))

    def test_push_rules_readable(self) -> None:
        """GET of m.push_rules account data returns the ruleset even though nobody set it."""
        status, body = self.hs.request(
            "GET", f"/user/{self.alice}/account_data/m.push_rules", token=self.token
        )
        self.assertEqual(status, 200)
        self.assertIn("override", body["global"])

    def test_global_in_sync_and_filtered(self) -> None:
        """Global account data appears in sync, filtered by the account_data filter."""
        self.hs.request("PUT", f"/user/{self.alice}/account_data/a.one", {"n": 1}, token=self.token)
        self.hs.request("PUT", f"/user/{self.alice}/account_data/b.two", {"n": 2}, token=self.token)
        body = self.hs.sync(self.token, filter={"account_data": {"types": ["a.*"]}})
        self.assertEqual(body["account_data"]["events"], [{"type": "a.one", "content": {"n": 1}}])
