"""Presence: the status endpoints, timeouts on the clock, and delivery in /sync."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.sync.helpers import make_sync_homeserver


class PresenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice, self.token = self.hs.register("alice")
        self.bob, self.bob_token = self.hs.register("bob")

    def test_set_and_get_own(self) -> None:
        """PUT then GET of one's own status, with status_msg."""
        path = f"/presence/{self.alice}/status"
        status, _ = self.hs.request(
            "PUT", path, {"presence": "unavailable", "status_msg": "lunch"}, token=self.token
        )
        self.assertEqual(status, 200)
        status, body = self.hs.request("GET", path, token=self.token)
        self.assertEqual(status, 200)
        self.assertEqual(body["presence"], "unavailable")
        self.assertEqual(body["status_msg"], "lunch")
        self.assertFalse(body["currently_active"])

    def test_never_seen_is_offline(self) -> None:
        """A user who never synced nor set presence reads as offline."""
        _, body = self.hs.request("GET", f"/presence/{self.alice}/status", token=self.token)
        self.assertEqual(body, {"presence": "offline"})

    def test_errors(self) -> None:
        """Setting another's presence is 403, a bad state 400, bad JSON 400, and reading a
        user you share no room with is 403."""
        status, body = self.hs.request(
            "PUT", f"/presence/{self.alice}/status", {"presence": "online"}, token=self.bob_token
        )
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.hs.request(
            "PUT", f"/presence/{self.alice}/status", {"presence": "busy"}, token=self.token
        )
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        status, body = self.hs.request(
            "PUT", f"/presence/{self.alice}/status", {}, token=self.token
        )
        self.assertEqual((status, body["errcode"]), (400, "M_MISSING_PARAM"))
        status, body = self.hs.request(
            "PUT", f"/presence/{self.alice}/status", raw_body=b"x", token=self.token
        )
        self.assertEqual((status, body["errcode"]), (400, "M_NOT_JSON"))
        status, body = self.hs.request(
            "GET", f"/presence/{self.alice}/status", token=self.bob_token
        )
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))

    def test_sync_online_then_timeouts(self) -> None:
        """Syncing makes a user online with last_active_ago counting on the clock; they go
        unavailable when idle and offline once they stop syncing."""
        self.hs.sync(self.token)
        path = f"/presence/{self.alice}/status"
        _, body = self.hs.request("GET", path, token=self.token)
        self.assertEqual(body["presence"], "online")
        self.hs.clock.advance(20)
        _, body = self.hs.request("GET", path, token=self.token)
        self.assertEqual(body["last_active_ago"], 20_000)
        # Keep syncing (every 20 s) but without activity (set_presence=unavailable).
        for _ in range(20):
            self.hs.sync(self.token, set_presence="unavailable")
            self.hs.clock.advance(20)
        _, body = self.hs.request("GET", path, token=self.token)
        self.assertEqual(body["presence"], "unavailable")
        self.hs.clock.advance(60)
        _, body = self.hs.request("GET", path, token=self.token)
        self.assertEqual(body["presence"], "offline")

    def test_idle_online_becomes_unavailable(self) -> None:
        """An online user who keeps a sync open but is idle for 5 minutes turns unavailable."""
        first = self.hs.sync(self.token)
        d = self.hs.start_request(
            "GET", f"/sync?since={first['next_batch']}&timeout=290000", self.token
        )
        self.hs.clock.advance(301)
        self.hs.finish(d)
        _, body = self.hs.request("GET", f"/presence/{self.alice}/status", token=self.token)
        self.assertEqual(body["presence"], "unavailable")

    def test_presence_in_incremental_sync(self) -> None:
        """A user's own status change arrives in their next incremental sync."""
        first = self.hs.sync(self.token)
        self.hs.request(
            "PUT", f"/presence/{self.alice}/status",
            {"presence": "online", "status_msg": "here"}, token=self.token,
        )
        body = self.hs.sync(self.token, since=first["next_batch"])
        events = body["presence"]["events"]
        self.assertEqual([e["sender"] for e in events], [self.alice])
        self.assertEqual(events[0]["content"]["status_msg"], "here")
        self.assertEqual(events[0]["type"], "m.presence")
