"""Session features: login tokens, refresh tokens, OpenID tokens, auth_metadata, /versions."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.client.router import ClientRouter
from ruma.client.versions import REQUIRED_ENDPOINTS, served_spec_versions
from tests.harness import make_homeserver


class LoginTokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)
        self.alice, self.token = self.hs.register("alice", "secret")

    def get_token(self) -> str:
        status, body = self.hs.request("POST", "/_matrix/client/v1/login/get_token", {}, token=self.token)
        self.assertEqual(status, 401)
        self.assertEqual(body["flows"], [{"stages": ["m.login.password"]}])
        auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "secret", "session": body["session"]}
        status, body = self.hs.request("POST", "/_matrix/client/v1/login/get_token", {"auth": auth}, token=self.token)
        self.assertEqual(status, 200)
        self.assertEqual(body["expires_in_ms"], 120_000)
        return str(body["login_token"])

    def test_login_with_token_once(self) -> None:
        """get_token (behind UIA) gives a token that logs in once, as a new device."""
        token = self.get_token()
        status, body = self.hs.request("POST", "/login", {"type": "m.login.token", "token": token})
        self.assertEqual((status, body["user_id"]), (200, self.alice))
        status, who = self.hs.request("GET", "/account/whoami", token=body["access_token"])
        self.assertEqual(who["user_id"], self.alice)
        status, body = self.hs.request("POST", "/login", {"type": "m.login.token", "token": token})
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))

    def test_token_expires(self) -> None:
        """A login token is refused after expires_in_ms."""
        token = self.get_token()
        self.hs.clock.advance(121)
        status, _ = self.hs.request("POST", "/login", {"type": "m.login.token", "token": token})
        self.assertEqual(status, 403)

    def test_capability(self) -> None:
        """/capabilities says m.get_login_token is enabled."""
        _, body = self.hs.request("GET", "/capabilities", token=self.token)
        self.assertEqual(body["capabilities"]["m.get_login_token"], {"enabled": True})


class RefreshTokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self, config_overrides={"access_token_lifetime": "10m"})
        self.hs.register("alice", "secret")

    def login(self, **extra: Any) -> dict[str, Any]:
        status, body = self.hs.request(
            "POST", "/login", {"type": "m.login.password", "user": "alice", "password": "secret", **extra}
        )
        self.assertEqual(status, 200)
        return dict(body)

    def test_login_with_refresh_rotates(self) -> None:
        """refresh_token: true gives a refresh token and an expiring access token; /refresh
        swaps both (same device) and the old ones stop working."""
        first = self.login(refresh_token=True)
        self.assertEqual(first["expires_in_ms"], 600_000)
        status, body = self.hs.request("POST", "/refresh", {"refresh_token": first["refresh_token"]})
        self.assertEqual(status, 200)
        self.assertEqual(set(body), {"access_token", "refresh_token", "expires_in_ms"})
        _, who = self.hs.request("GET", "/account/whoami", token=body["access_token"])
        self.assertEqual(who["device_id"], first["device_id"])
        status, err = self.hs.request("GET", "/account/whoami", token=first["access_token"])
        self.assertEqual((status, err["errcode"]), (401, "M_UNKNOWN_TOKEN"))
        status, err = self.hs.request("POST", "/refresh", {"refresh_token": first["refresh_token"]})
        self.assertEqual((status, err["errcode"]), (401, "M_UNKNOWN_TOKEN"))

    def test_expiry_is_soft_logout(self) -> None:
        """An expired refreshable access token is 401 with soft_logout: true."""
        body = self.login(refresh_token=True)
        self.hs.clock.advance(601)
        status, err = self.hs.request("GET", "/account/whoami", token=body["access_token"])
        self.assertEqual((status, err["errcode"], err["soft_logout"]), (401, "M_UNKNOWN_TOKEN", True))
        status, _ = self.hs.request("POST", "/refresh", {"refresh_token": body["refresh_token"]})
        self.assertEqual(status, 200)

    def test_without_refresh_no_expiry(self) -> None:
        """Without refresh_token the access token never expires and no refresh token is given."""
        body = self.login()
        self.assertNotIn("refresh_token", body)
        self.hs.clock.advance(10_000)
        self.assertEqual(self.hs.request("GET", "/account/whoami", token=body["access_token"])[0], 200)

    def test_register_with_refresh(self) -> None:
        """Registration honours refresh_token too."""
        status, body = self.hs.request(
            "POST", "/register",
            {"username": "bob", "password": "pw", "refresh_token": True, "auth": {"type": "m.login.dummy"}},
        )
        self.assertEqual(status, 200)
        self.assertIn("refresh_token", body)

    def test_logout_kills_refresh(self) -> None:
        """After logout the device's refresh token is refused."""
        body = self.login(refresh_token=True)
        self.hs.request("POST", "/logout", {}, token=body["access_token"])
        status, _ = self.hs.request("POST", "/refresh", {"refresh_token": body["refresh_token"]})
        self.assertEqual(status, 401)


class OpenIdTests(SynchronousTestCase):
    def test_request_and_userinfo(self) -> None:
        """An OpenID token names the user at the federation userinfo endpoint for an hour."""
        hs = make_homeserver(self)
        alice, token = hs.register("alice")
        status, body = hs.request("POST", f"/user/{alice}/openid/request_token", {}, token=token)
        self.assertEqual(status, 200)
        self.assertEqual((body["token_type"], body["matrix_server_name"], body["expires_in"]), ("Bearer", "test", 3600))
        path = f"/_matrix/federation/v1/openid/userinfo?access_token={body['access_token']}"
        self.assertEqual(hs.request("GET", path), (200, {"sub": alice}))
        hs.clock.advance(3601)
        status, err = hs.request("GET", path)
        self.assertEqual((status, err["errcode"]), (401, "M_UNKNOWN_TOKEN"))
        status, _ = hs.request("POST", "/user/@bob:test/openid/request_token", {}, token=token)
        self.assertEqual(status, 403)


class DiscoveryTests(SynchronousTestCase):
    def test_auth_metadata_unrecognized(self) -> None:
        """No OAuth 2.0 server: auth_metadata is 404 M_UNRECOGNIZED, as the spec says."""
        hs = make_homeserver(self)
        status, body = hs.request("GET", "/_matrix/client/v1/auth_metadata")
        self.assertEqual((status, body["errcode"]), (404, "M_UNRECOGNIZED"))

    def test_three_pids_empty(self) -> None:
        """No third-party identifiers are bound: the list is empty."""
        hs = make_homeserver(self)
        _, token = hs.register("alice")
        self.assertEqual(hs.request("GET", "/account/3pid", token=token), (200, {"threepids": []}))

    def test_versions_follow_endpoints(self) -> None:
        """/versions claims r0.x and every v1.x up to v1.12 whose endpoints are served; a
        router missing a version's endpoint stops the list before it."""
        hs = make_homeserver(self)
        _, body = hs.request("GET", "/_matrix/client/versions")
        self.assertEqual(body["versions"][:8], ["r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1"])
        self.assertEqual(body["versions"][8:], [v for v, _ in REQUIRED_ENDPOINTS])
        partial = ClientRouter()
        for method, path in REQUIRED_ENDPOINTS[0][1]:
            partial.route(path.replace("<x>", "<a>").replace("<a>/<a>", "<a>/<b>"), [method])(_noop)
        self.assertEqual(served_spec_versions(partial), ["v1.1"])
        self.assertEqual(served_spec_versions(None), [])

    def test_support_well_known(self) -> None:
        """/.well-known/matrix/support: nothing configured, 404."""
        hs = make_homeserver(self)
        self.assertEqual(hs.request("GET", "/.well-known/matrix/support")[0], 404)


async def _noop(request: Any, **kw: Any) -> dict[str, Any]:
    return {}
