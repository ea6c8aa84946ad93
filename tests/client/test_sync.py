"""GET /sync without rooms: tokens, account data, presence, long-polling and restarts."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.sync.helpers import make_sync_homeserver


class SyncBasicsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice, self.token = self.hs.register("alice")

    def test_initial_sync_shape(self) -> None:
        """An initial sync has next_batch, the room sections, push rules in account data and
        the user's own presence (syncing made them online)."""
        body = self.hs.sync(self.token)
        self.assertRegex(body["next_batch"], r"^s\d+$")
        self.assertEqual(set(body["rooms"]), {"join", "invite", "leave", "knock"})
        types = [e["type"] for e in body["account_data"]["events"]]
        self.assertIn("m.push_rules", types)
        presence = body["presence"]["events"]
        self.assertEqual([p["sender"] for p in presence], [self.alice])
        self.assertEqual(presence[0]["content"]["presence"], "online")

    def test_incremental_returns_only_changes(self) -> None:
        """An incremental sync returns account data changed since the token, nothing else."""
        first = self.hs.sync(self.token)
        status, _ = self.hs.request(
            "PUT", f"/user/{self.alice}/account_data/org.example.x", {"a": 1}, token=self.token
        )
        self.assertEqual(status, 200)
        second = self.hs.sync(self.token, since=first["next_batch"])
        self.assertEqual(
            second["account_data"]["events"], [{"type": "org.example.x", "content": {"a": 1}}]
        )
        self.assertEqual(second["presence"]["events"], [])
        third = self.hs.sync(self.token, since=second["next_batch"])
        self.assertEqual(third["account_data"]["events"], [])
        self.assertEqual(third["next_batch"], second["next_batch"])

    def test_long_poll_woken_by_change(self) -> None:
        """A sync with a timeout waits, and is answered on the next turn after a change."""
        first = self.hs.sync(self.token)
        d = self.hs.start_request(
            "GET", f"/sync?since={first['next_batch']}&timeout=30000", self.token
        )
        self.assertNoResult(d)
        self.hs.clock.advance(5)
        self.assertNoResult(d)
        status, _ = self.hs.request(
            "PUT", f"/user/{self.alice}/account_data/org.example.y", {"b": 2}, token=self.token
        )
        self.assertEqual(status, 200)
        self.hs.tick()
        status, body = self.hs.finish(d)
        self.assertEqual(status, 200)
        self.assertEqual(
            body["account_data"]["events"], [{"type": "org.example.y", "content": {"b": 2}}]
        )
        self.assertNotEqual(body["next_batch"], first["next_batch"])

    def test_long_poll_timeout(self) -> None:
        """With nothing new, a long-poll answers an empty response when its timeout expires,
        and another user's private change does not wake it."""
        bob, bob_token = self.hs.register("bob")
        first = self.hs.sync(self.token)
        d = self.hs.start_request(
            "GET", f"/sync?since={first['next_batch']}&timeout=10000", self.token
        )
        self.hs.request("PUT", f"/user/{bob}/account_data/x.y", {}, token=bob_token)
        self.hs.tick()
        self.assertNoResult(d)
        self.hs.clock.advance(9.9)
        self.assertNoResult(d)
        self.hs.clock.advance(0.2)
        status, body = self.hs.finish(d)
        self.assertEqual(status, 200)
        self.assertEqual(body["account_data"]["events"], [])
        self.assertEqual(body["rooms"]["join"], {})

    def test_timeout_zero_returns_at_once(self) -> None:
        """timeout=0 (and no timeout) answers immediately even when nothing changed."""
        first = self.hs.sync(self.token)
        body = self.hs.sync(self.token, since=first["next_batch"], timeout=0)
        self.assertEqual(body["next_batch"], first["next_batch"])

    def test_bad_tokens(self) -> None:
        """A malformed since token is 400 M_INVALID_PARAM; a bad filter is rejected."""
        status, body = self.hs.request("GET", "/sync?since=garbage", token=self.token)
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.hs.request("GET", "/sync?filter=%7Bnope", token=self.token)
        self.assertEqual((status, body["errcode"]), (400, "M_NOT_JSON"))
        status, body = self.hs.request("GET", "/sync?filter=12345", token=self.token)
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))
        status, body = self.hs.request("GET", "/sync?set_presence=busy", token=self.token)
        self.assertEqual((status, body["errcode"]), (400, "M_INVALID_PARAM"))
        status, body = self.hs.request("GET", "/sync")
        self.assertEqual((status, body["errcode"]), (401, "M_MISSING_TOKEN"))

    def test_token_from_the_future(self) -> None:
        """A token ahead of the server's position is answered from now, not waited on."""
        body = self.hs.sync(self.token, since="s999999", timeout=30000)
        self.assertRegex(body["next_batch"], r"^s\d+$")

    def test_set_presence_offline_does_not_change_presence(self) -> None:
        """set_presence=offline syncs without marking the user online."""
        body = self.hs.sync(self.token, set_presence="offline")
        self.assertEqual(body["presence"]["events"], [])

    def test_use_state_after_accepted(self) -> None:
        """matrix-js-sdk's org.matrix.msc4222.use_state_after=true is accepted."""
        status, _ = self.hs.request(
            "GET", "/sync?org.matrix.msc4222.use_state_after=true", token=self.token
        )
        self.assertEqual(status, 200)


class SyncRestartTests(SynchronousTestCase):
    def test_token_survives_restart(self) -> None:
        """A since token handed out before a restart means the same position after it: the
        next sync returns exactly what changed after it."""
        hs1 = make_sync_homeserver(self)
        alice, token = hs1.register("alice")
        hs1.request("PUT", f"/user/{alice}/account_data/a.before", {"v": 1}, token=token)
        first = hs1.sync(token)
        hs1.request("PUT", f"/user/{alice}/account_data/a.after", {"v": 2}, token=token)
        data_dir = hs1.data_dir  # type: ignore[attr-defined]

        hs2 = make_sync_homeserver(self, data_dir)
        body = hs2.sync(token, since=first["next_batch"])
        self.assertEqual(
            body["account_data"]["events"], [{"type": "a.after", "content": {"v": 2}}]
        )
        again = hs2.sync(token, since=body["next_batch"])
        self.assertEqual(again["account_data"]["events"], [])
