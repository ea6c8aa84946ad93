"""Device management endpoints."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.client.test_account import password_auth
from tests.harness import make_homeserver


class DeviceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)
        self.user_id, _ = self.hs.register("alice", "pw")
        _, body = self.hs.request(
            "POST",
            "/login",
            {
                "type": "m.login.password",
                "user": "alice",
                "password": "pw",
                "device_id": "PHONE",
                "initial_device_display_name": "My phone",
            },
        )
        self.token = body["access_token"]

    def test_list_and_get(self) -> None:
        """Devices list with name and last-seen data; one device reads back by ID."""
        code, body = self.hs.request("GET", "/devices", token=self.token)
        self.assertEqual(code, 200)
        phone = [d for d in body["devices"] if d["device_id"] == "PHONE"]
        self.assertEqual(len(body["devices"]), 2)
        self.assertEqual(phone[0]["display_name"], "My phone")
        self.assertIn("last_seen_ts", phone[0])
        self.assertIn("last_seen_ip", phone[0])
        code, body = self.hs.request("GET", "/devices/PHONE", token=self.token)
        self.assertEqual((code, body["device_id"]), (200, "PHONE"))
        code, body = self.hs.request("GET", "/devices/NOPE", token=self.token)
        self.assertEqual((code, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_other_users_devices_are_invisible(self) -> None:
        """A user cannot read another user's device."""
        _, bob = self.hs.register("bob")
        self.assertEqual(self.hs.request("GET", "/devices/PHONE", token=bob)[0], 404)

    def test_rename(self) -> None:
        """PUT renames; an unknown device is 404; a mistyped name is M_BAD_JSON."""
        self.assertEqual(
            self.hs.request("PUT", "/devices/PHONE", {"display_name": "Old phone"}, token=self.token),
            (200, {}),
        )
        _, body = self.hs.request("GET", "/devices/PHONE", token=self.token)
        self.assertEqual(body["display_name"], "Old phone")
        code, body = self.hs.request("PUT", "/devices/NOPE", {"display_name": "x"}, token=self.token)
        self.assertEqual((code, body["errcode"]), (404, "M_NOT_FOUND"))
        code, body = self.hs.request("PUT", "/devices/PHONE", {"display_name": 3}, token=self.token)
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))

    def test_delete_needs_password(self) -> None:
        """DELETE asks for UIA, then deletes the device and revokes its token."""
        _, other = self.hs.register("alice2")
        code, body = self.hs.request("DELETE", "/devices/PHONE", token=self.token)
        self.assertEqual(code, 401)
        self.assertEqual(body["flows"], [{"stages": ["m.login.password"]}])
        code, body = self.hs.request(
            "DELETE",
            "/devices/PHONE",
            {"auth": password_auth("alice", "pw", body["session"])},
            token=self.token,
        )
        self.assertEqual((code, body), (200, {}))
        self.assertEqual(self.hs.request("GET", "/account/whoami", token=self.token)[0], 401)
        self.assertEqual(self.hs.request("GET", "/account/whoami", token=other)[0], 200)

    def test_delete_many(self) -> None:
        """POST /delete_devices removes the listed devices after UIA."""
        login = self.hs.run(self.hs.hs.accounts.login(self.user_id, "TABLET"))
        code, body = self.hs.request(
            "POST",
            "/delete_devices",
            {"devices": ["TABLET"], "auth": password_auth("alice", "pw")},
            token=self.token,
        )
        self.assertEqual(code, 200)
        self.assertEqual(self.hs.request("GET", "/account/whoami", token=login.access_token)[0], 401)
        code, body = self.hs.request(
            "POST", "/delete_devices", {"devices": "TABLET"}, token=self.token
        )
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))
