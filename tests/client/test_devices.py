"""Device management with end-to-end keys: a device per login with its name and last-seen
address and time; deleting a device (with UIA) logs it out and removes its keys."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.client.test_account import password_auth
from tests.e2ee.helpers import E2EUser, one_time_keys
from tests.sync.helpers import make_sync_homeserver


class DeviceKeyLifecycleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")
        self.bob = E2EUser(self.hs, "bob", "BOBDEV")

    def test_login_creates_a_device_with_name_and_last_seen(self) -> None:
        """Logging in with a display name makes a device listed with it; using its token
        records the address and time it was last seen."""
        code, body = self.hs.request("POST", "/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "pw", "initial_device_display_name": "Work laptop"})
        self.assertEqual(code, 200)
        token, device_id = body["access_token"], body["device_id"]
        self.hs.clock.advance(10)
        self.hs.request("GET", "/account/whoami", token=token)
        listed = {d["device_id"]: d for d in self.alice.ok("GET", "/devices")["devices"]}
        mine = listed[device_id]
        self.assertEqual(mine["display_name"], "Work laptop")
        self.assertEqual(mine["last_seen_ts"], int(self.hs.clock.seconds() * 1000))
        self.assertIsInstance(mine["last_seen_ip"], str)
        self.assertIn("DEV1", listed)

    def test_rename_shows_in_key_queries(self) -> None:
        """A renamed device's new name is what other users' /keys/query shows."""
        self.alice.upload_device_keys()
        self.alice.ok("PUT", "/devices/DEV1", {"display_name": "Phone"})
        got = self.bob.ok("POST", "/keys/query", {"device_keys": {self.alice.user_id: []}})
        self.assertEqual(got["device_keys"][self.alice.user_id]["DEV1"]["unsigned"],
                         {"device_display_name": "Phone"})

    def test_delete_device_with_uia_removes_keys_and_token(self) -> None:
        """DELETE /devices/{id} asks for the password; then the device's token is dead, its
        keys are gone from /keys/query and /keys/claim, and room-mates see it changed."""
        a = self.alice
        other = self.hs.run(self.hs.hs.accounts.login(a.user_id, "OTHER")).access_token
        a.upload_device_keys()
        a.ok("POST", "/keys/upload", {"one_time_keys": one_time_keys(a.user_id, "DEV1", a.key, ["A"])})
        room = a.create_room(preset="public_chat")
        self.bob.join(room)
        since = self.bob.sync()["next_batch"]
        code, body = self.hs.request("DELETE", "/devices/DEV1", {}, token=other)
        self.assertEqual(code, 401)
        code, _ = self.hs.request(
            "DELETE", "/devices/DEV1", {"auth": password_auth("alice", "pw", body["session"])},
            token=other)
        self.assertEqual(code, 200)
        self.assertEqual(a.request("GET", "/account/whoami")[0], 401)
        got = self.bob.ok("POST", "/keys/query", {"device_keys": {a.user_id: []}})
        self.assertEqual(got["device_keys"][a.user_id], {})
        claimed = self.bob.ok("POST", "/keys/claim", {"one_time_keys": {a.user_id: {"DEV1": "signed_curve25519"}}})
        self.assertEqual(claimed["one_time_keys"], {})
        self.assertIn(a.user_id, self.bob.sync(since)["device_lists"]["changed"])

    def test_delete_devices_bulk(self) -> None:
        """POST /delete_devices removes several devices and their keys after UIA."""
        a = self.alice
        for d in ("T1", "T2"):
            self.hs.run(self.hs.hs.accounts.login(a.user_id, d))
        code, body = a.request("POST", "/delete_devices", {"devices": ["T1", "T2"]})
        self.assertEqual(code, 401)
        a.ok("POST", "/delete_devices", {"devices": ["T1", "T2"],
                                         "auth": password_auth("alice", "pw", body["session"])})
        ids = [d["device_id"] for d in a.ok("GET", "/devices")["devices"]]
        self.assertEqual(ids, ["DEV1"])
        code, body = a.request("POST", "/delete_devices", {"devices": "T1"})
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))

    def test_wrong_password_is_refused(self) -> None:
        """A wrong password keeps the device."""
        code, body = self.alice.request("DELETE", "/devices/DEV1", {})
        code, body = self.alice.request(
            "DELETE", "/devices/DEV1", {"auth": password_auth("alice", "nope", body["session"])})
        self.assertEqual((code, body["errcode"]), (401, "M_FORBIDDEN"))
        self.assertEqual(self.alice.request("GET", "/account/whoami")[0], 200)
