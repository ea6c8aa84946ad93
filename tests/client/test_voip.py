"""GET /voip/turnServer."""

from __future__ import annotations

import base64
import hashlib
import hmac

from twisted.trial.unittest import SynchronousTestCase

from tests.harness import make_homeserver

URIS = ["turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp"]


class TurnServerTests(SynchronousTestCase):
    def test_shared_secret(self) -> None:
        """Time-limited credentials: username expiry:user, password base64 HMAC-SHA1."""
        hs = make_homeserver(self, config_overrides={
            "turn_uris": URIS, "turn_shared_secret": "s3cret", "turn_user_lifetime": "1h"})
        alice, token = hs.register("alice")
        status, body = hs.request("GET", "/voip/turnServer", token=token)
        self.assertEqual(status, 200)
        expiry = int(hs.clock.seconds()) + 3600
        self.assertEqual(body["username"], f"{expiry}:{alice}")
        mac = hmac.new(b"s3cret", body["username"].encode(), hashlib.sha1).digest()
        self.assertEqual(body["password"], base64.b64encode(mac).decode())
        self.assertEqual((body["uris"], body["ttl"]), (URIS, 3600))

    def test_static_credentials(self) -> None:
        """turn_username/turn_password are handed out as they are."""
        hs = make_homeserver(self, config_overrides={"turn_uris": URIS, "turn_username": "u", "turn_password": "p"})
        _, token = hs.register("alice")
        _, body = hs.request("GET", "/voip/turnServer", token=token)
        self.assertEqual((body["username"], body["password"]), ("u", "p"))

    def test_unconfigured(self) -> None:
        """No TURN URIs: {} (no TURN server); a token is still required."""
        hs = make_homeserver(self)
        _, token = hs.register("alice")
        self.assertEqual(hs.request("GET", "/voip/turnServer", token=token), (200, {}))
        self.assertEqual(hs.request("GET", "/voip/turnServer")[0], 401)
