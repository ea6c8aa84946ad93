"""/sync's device_lists: who is changed (keys or devices changed, or newly sharing a room)
and who left (shares no room any more), and the long-poll wake-ups for them."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.e2ee.helpers import E2EUser, Ed25519, device_keys
from tests.sync.helpers import make_sync_homeserver


class DeviceListSyncTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")
        self.bob = E2EUser(self.hs, "bob", "BOBDEV")
        self.carol = E2EUser(self.hs, "carol", "CAROLDEV")
        self.room = self.alice.create_room(preset="public_chat")
        self.bob.join(self.room)

    def lists(self, since: str) -> tuple[list[str], list[str], str]:
        body = self.alice.sync(since)
        return body["device_lists"]["changed"], body["device_lists"]["left"], body["next_batch"]

    def test_initial_sync_has_no_device_lists(self) -> None:
        """An initial sync carries empty device_lists and the key counts of the device."""
        self.bob.upload_device_keys()
        body = self.alice.sync()
        self.assertEqual(body["device_lists"], {"changed": [], "left": []})
        self.assertEqual(body["device_one_time_keys_count"], {"signed_curve25519": 0})
        self.assertEqual(body["device_unused_fallback_key_types"], [])

    def test_room_mates_keys_and_devices(self) -> None:
        """A room-mate's key upload, new device and deleted device each mark them changed;
        a stranger's never does; re-uploading identical keys changes nothing."""
        since = self.alice.sync()["next_batch"]
        self.bob.upload_device_keys()
        self.carol.upload_device_keys()
        changed, left, since = self.lists(since)
        self.assertEqual((changed, left), ([self.bob.user_id], []))
        self.bob.upload_device_keys()
        self.assertEqual(self.lists(since)[0], [])
        self.hs.run(self.hs.hs.accounts.login(self.bob.user_id, "NEWDEV"))
        changed, _, since = self.lists(since)
        self.assertEqual(changed, [self.bob.user_id])
        self.hs.run(self.hs.hs.accounts.logout(self.bob.user_id, "NEWDEV", None))
        changed, _, since = self.lists(since)
        self.assertEqual(changed, [self.bob.user_id])

    def test_own_other_device(self) -> None:
        """The user's own new device's keys mark the user themself changed."""
        since = self.alice.sync()["next_batch"]
        token = self.hs.run(self.hs.hs.accounts.login(self.alice.user_id, "DEV2")).access_token
        self.hs.request("POST", "/keys/upload", {
            "device_keys": device_keys(self.alice.user_id, "DEV2", Ed25519())}, token=token)
        self.assertIn(self.alice.user_id, self.lists(since)[0])

    def test_joins_make_users_changed(self) -> None:
        """Someone joining one of the user's rooms, or the user joining a room of others,
        puts the new room-mates in changed."""
        since = self.alice.sync()["next_batch"]
        self.carol.join(self.room)
        changed, _, since = self.lists(since)
        self.assertEqual(changed, [self.carol.user_id])
        dave = E2EUser(self.hs, "dave", "DAVEDEV")
        other = dave.create_room(preset="public_chat")
        self.alice.join(other)
        changed, _, _ = self.lists(since)
        self.assertEqual(changed, [dave.user_id])

    def test_left_only_when_no_room_is_shared(self) -> None:
        """Leaving one of two shared rooms is not 'left'; leaving the last one is; the user
        leaving a room makes its members left too."""
        second = self.alice.create_room(preset="public_chat")
        self.bob.join(second)
        since = self.alice.sync()["next_batch"]
        self.bob.leave(second)
        changed, left, since = self.lists(since)
        self.assertEqual(left, [])
        self.bob.leave(self.room)
        changed, left, since = self.lists(since)
        self.assertEqual((changed, left), ([], [self.bob.user_id]))
        self.carol.join(self.room)
        _, _, since = self.lists(since)
        self.alice.leave(self.room)
        _, left, _ = self.lists(since)
        self.assertEqual(left, [self.carol.user_id])

    def test_long_poll_woken_by_room_mates_keys(self) -> None:
        """A waiting sync wakes when a room-mate uploads keys, and not for a stranger."""
        since = self.alice.sync()["next_batch"]
        d = self.hs.start_request("GET", f"/sync?since={since}&timeout=30000", self.alice.token)
        self.carol.upload_device_keys()
        self.hs.tick()
        self.hs.clock.advance(1)
        self.assertNoResult(d)
        self.bob.upload_device_keys()
        self.hs.tick()
        code, body = self.hs.finish(d)
        self.assertEqual(code, 200)
        self.assertEqual(body["device_lists"]["changed"], [self.bob.user_id])
