"""``/_synapse/admin/v1/register``: shared-secret registration as operators' tools use it."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.admin.register import registration_mac
from tests.harness import make_homeserver

PATH = "/_synapse/admin/v1/register"
SECRET = "test-shared-secret"


class SharedSecretRegistrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self, config_overrides={"enable_registration": False})

    def nonce(self) -> str:
        code, body = self.hs.request("GET", PATH)
        self.assertEqual(code, 200)
        nonce: str = body["nonce"]
        return nonce

    def body(self, nonce: str, username: str, password: str, admin: bool) -> dict[str, Any]:
        return {
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": admin,
            "mac": registration_mac(SECRET, nonce, username, password, admin),
        }

    def test_mac_matches_the_published_algorithm(self) -> None:
        """The MAC is hex HMAC-SHA1 over nonce, user, password and admin joined by NULs."""
        want = hmac.new(SECRET.encode(), b"n\x00u\x00p\x00admin", hashlib.sha1).hexdigest()
        self.assertEqual(registration_mac(SECRET, "n", "u", "p", True), want)
        want = hmac.new(SECRET.encode(), b"n\x00u\x00p\x00notadmin", hashlib.sha1).hexdigest()
        self.assertEqual(registration_mac(SECRET, "n", "u", "p", False), want)

    def test_register_admin(self) -> None:
        """A correct MAC registers the user (even with public registration off) as admin."""
        code, body = self.hs.request("POST", PATH, self.body(self.nonce(), "root", "pw", True))
        self.assertEqual(code, 200, body)
        self.assertEqual(body["user_id"], "@root:test")
        self.assertEqual(body["home_server"], "test")
        code, who = self.hs.request("GET", "/account/whoami", token=body["access_token"])
        self.assertEqual(who["user_id"], "@root:test")
        user = self.hs.run(self.hs.hs.account_store.get_user("@root:test"))
        self.assertTrue(user.is_admin)

    def test_displayname(self) -> None:
        """An optional displayname is stored in the profile."""
        body = {**self.body(self.nonce(), "bob", "pw", False), "displayname": "Bobby"}
        self.assertEqual(self.hs.request("POST", PATH, body)[0], 200)
        profile = self.hs.run(self.hs.hs.account_store.get_profile("@bob:test"))
        self.assertEqual(profile.displayname, "Bobby")

    def test_wrong_mac(self) -> None:
        """A MAC made with another secret is 403 and registers nobody."""
        nonce = self.nonce()
        body = self.body(nonce, "eve", "pw", True)
        body["mac"] = registration_mac("wrong", nonce, "eve", "pw", True)
        code, resp = self.hs.request("POST", PATH, body)
        self.assertEqual((code, resp["errcode"]), (403, "M_FORBIDDEN"))
        self.assertIsNone(self.hs.run(self.hs.hs.account_store.get_user("@eve:test")))

    def test_admin_flag_is_covered_by_mac(self) -> None:
        """Flipping 'admin' after computing the MAC is detected."""
        body = self.body(self.nonce(), "eve", "pw", False)
        body["admin"] = True
        self.assertEqual(self.hs.request("POST", PATH, body)[0], 403)

    def test_nonce_single_use_and_expiring(self) -> None:
        """A nonce works once, and not after a minute."""
        nonce = self.nonce()
        self.assertEqual(self.hs.request("POST", PATH, self.body(nonce, "a", "pw", False))[0], 200)
        code, body = self.hs.request("POST", PATH, self.body(nonce, "b", "pw", False))
        self.assertEqual(code, 400)
        nonce = self.nonce()
        self.hs.clock.advance(61)
        self.assertEqual(self.hs.request("POST", PATH, self.body(nonce, "c", "pw", False))[0], 400)

    def test_taken_and_invalid(self) -> None:
        """Taken and invalid usernames get the usual errors."""
        self.hs.register("alice")
        code, body = self.hs.request("POST", PATH, self.body(self.nonce(), "alice", "pw", False))
        self.assertEqual((code, body["errcode"]), (400, "M_USER_IN_USE"))
        code, body = self.hs.request("POST", PATH, self.body(self.nonce(), "a b", "pw", False))
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_USERNAME"))

    def test_missing_fields(self) -> None:
        """Every field is required."""
        body = self.body(self.nonce(), "a", "pw", False)
        del body["mac"]
        code, resp = self.hs.request("POST", PATH, body)
        self.assertEqual((code, resp["errcode"]), (400, "M_MISSING_PARAM"))

    def test_disabled_without_secret(self) -> None:
        """Without registration_shared_secret the endpoint refuses."""
        hs = make_homeserver(self, config_overrides={"registration_shared_secret": None})
        self.assertEqual(hs.request("GET", PATH)[0], 400)


class AdminEndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)

    def test_server_version(self) -> None:
        """Operator tools can read the server version."""
        code, body = self.hs.request("GET", "/_synapse/admin/v1/server_version")
        self.assertEqual(code, 200)
        self.assertTrue(body["server_version"].startswith("Ruma "))

    def test_whois(self) -> None:
        """Admins see any user's connections; users only their own."""
        admin_id, admin = self.hs.register("root", admin=True)
        user_id, user = self.hs.register("alice")
        self.hs.request("GET", "/account/whoami", token=user, headers={"User-Agent": "curl"})
        code, body = self.hs.request("GET", "/admin/whois/@alice:test", token=admin)
        self.assertEqual(code, 200)
        self.assertEqual(body["user_id"], user_id)
        [device] = body["devices"].values()
        [connection] = device["sessions"][0]["connections"]
        self.assertEqual(connection["user_agent"], "curl")
        self.assertIn("ip", connection)
        self.assertEqual(self.hs.request("GET", "/admin/whois/@alice:test", token=user)[0], 200)
        code, body = self.hs.request("GET", "/admin/whois/@root:test", token=user)
        self.assertEqual((code, body["errcode"]), (403, "M_FORBIDDEN"))
        code, body = self.hs.request("GET", "/admin/whois/@nobody:test", token=admin)
        self.assertEqual((code, body["errcode"]), (404, "M_NOT_FOUND"))
