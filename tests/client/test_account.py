"""Registration, login, logout, whoami, passwords and deactivation through real HTTP."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.client.auth import Requester
from tests.harness import make_homeserver

DUMMY = {"type": "m.login.dummy"}


def password_auth(user: str, password: str, session: str | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    }
    if session is not None:
        auth["session"] = session
    return auth


class RegisterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)

    def test_dummy_flow(self) -> None:
        """Without auth the server lists the dummy flow; completing it registers and logs in."""
        code, body = self.hs.request("POST", "/register", {"username": "alice", "password": "pw"})
        self.assertEqual(code, 401)
        self.assertEqual(body["flows"], [{"stages": ["m.login.dummy"]}])
        self.assertIn("session", body)
        self.assertEqual(body["params"], {})
        code, body = self.hs.request(
            "POST",
            "/register",
            {
                "username": "alice",
                "password": "pw",
                "auth": {"type": "m.login.dummy", "session": body["session"]},
            },
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(body["user_id"], "@alice:test")
        self.assertNotIn("refresh_token", body)
        code, who = self.hs.request("GET", "/account/whoami", token=body["access_token"])
        self.assertEqual(who, {"user_id": "@alice:test", "device_id": body["device_id"], "is_guest": False})

    def test_username_is_lowercased(self) -> None:
        """Clients may send capitals; the ID is registered lowercased."""
        code, body = self.hs.request(
            "POST", "/register", {"username": "Alice", "password": "pw", "auth": DUMMY}
        )
        self.assertEqual((code, body["user_id"]), (200, "@alice:test"))

    def test_parameters_from_first_request_are_remembered(self) -> None:
        """Completing the session without resending username/password still registers them."""
        _, body = self.hs.request(
            "POST", "/register", {"username": "bob", "password": "secret"}
        )
        code, body = self.hs.request(
            "POST", "/register", {"auth": {"type": "m.login.dummy", "session": body["session"]}}
        )
        self.assertEqual((code, body["user_id"]), (200, "@bob:test"))
        code, _ = self.hs.request(
            "POST", "/login", {"type": "m.login.password", "user": "bob", "password": "secret"}
        )
        self.assertEqual(code, 200)

    def test_invalid_usernames(self) -> None:
        """Names outside the user ID grammar, '_'-prefixed or all digits are M_INVALID_USERNAME."""
        for name in ("bad name", "_bridge", "12345", "caf\u00e9", "a:b", "", "x" * 300):
            code, body = self.hs.request(
                "POST", "/register", {"username": name, "password": "pw", "auth": DUMMY}
            )
            self.assertEqual((code, body["errcode"]), (400, "M_INVALID_USERNAME"), name)

    def test_taken(self) -> None:
        """A registered name is M_USER_IN_USE, before any auth stage is asked for."""
        self.hs.register("alice")
        code, body = self.hs.request("POST", "/register", {"username": "alice", "password": "pw"})
        self.assertEqual((code, body["errcode"]), (400, "M_USER_IN_USE"))

    def test_bad_bodies(self) -> None:
        """Non-JSON, non-object and mistyped fields are rejected with the field named."""
        code, body = self.hs.request("POST", "/register", raw_body=b"{nope")
        self.assertEqual((code, body["errcode"]), (400, "M_NOT_JSON"))
        code, body = self.hs.request("POST", "/register", raw_body=b"[]")
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))
        code, body = self.hs.request("POST", "/register", {"username": 5, "auth": DUMMY})
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))
        self.assertIn("username", body["error"])
        code, body = self.hs.request(
            "POST", "/register", {"username": "a", "password": ["x"], "auth": DUMMY}
        )
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))

    def test_missing_password(self) -> None:
        """Registration needs a password."""
        code, body = self.hs.request("POST", "/register", {"username": "alice", "auth": DUMMY})
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))

    def test_inhibit_login_and_device(self) -> None:
        """inhibit_login returns no token; otherwise the requested device ID and name are used."""
        code, body = self.hs.request(
            "POST",
            "/register",
            {"username": "a", "password": "pw", "auth": DUMMY, "inhibit_login": True},
        )
        self.assertEqual(code, 200)
        self.assertNotIn("access_token", body)
        code, body = self.hs.request(
            "POST",
            "/register",
            {
                "username": "b",
                "password": "pw",
                "auth": DUMMY,
                "device_id": "MYDEVICE",
                "initial_device_display_name": "Laptop",
            },
        )
        self.assertEqual(body["device_id"], "MYDEVICE")
        device = self.hs.run(self.hs.hs.account_store.get_device("@b:test", "MYDEVICE"))
        self.assertEqual(device.display_name, "Laptop")

    def test_generated_username(self) -> None:
        """Without a username the server picks one."""
        code, body = self.hs.request("POST", "/register", {"password": "pw", "auth": DUMMY})
        self.assertEqual(code, 200)
        self.assertTrue(body["user_id"].endswith(":test"))

    def test_disabled(self) -> None:
        """With enable_registration off, /register is 403 M_FORBIDDEN."""
        hs = make_homeserver(self, config_overrides={"enable_registration": False})
        code, body = hs.request("POST", "/register", {"username": "a", "password": "pw", "auth": DUMMY})
        self.assertEqual((code, body["errcode"]), (403, "M_FORBIDDEN"))

    def test_guest_forbidden_by_default(self) -> None:
        """kind=guest is refused unless allow_guest_access is on."""
        code, body = self.hs.request("POST", "/register?kind=guest", {})
        self.assertEqual((code, body["errcode"]), (403, "M_GUEST_ACCESS_FORBIDDEN"))
        code, body = self.hs.request("POST", "/register?kind=robot", {})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"))

    def test_guest_allowed(self) -> None:
        """With allow_guest_access, a guest gets a token that only guest-allowed endpoints take."""
        hs = make_homeserver(self, config_overrides={"allow_guest_access": True})
        code, body = hs.request("POST", "/register?kind=guest", {})
        self.assertEqual(code, 200)
        token = body["access_token"]
        code, who = hs.request("GET", "/account/whoami", token=token)
        self.assertEqual((code, who["is_guest"]), (200, True))
        code, err = hs.request(
            "POST", "/account/password", {"new_password": "x"}, token=token
        )
        self.assertEqual((code, err["errcode"]), (403, "M_GUEST_ACCESS_FORBIDDEN"))

    def test_session_cannot_switch_operation(self) -> None:
        """A registration UIA session cannot be reused for a password change."""
        _, body = self.hs.request("POST", "/register", {"username": "x", "password": "pw"})
        _, token = self.hs.register("alice")
        code, err = self.hs.request(
            "POST",
            "/account/password",
            {"new_password": "n", "auth": {"type": "m.login.dummy", "session": body["session"]}},
            token=token,
        )
        self.assertEqual((code, err["errcode"]), (403, "M_FORBIDDEN"))

    def test_unknown_session(self) -> None:
        """An unknown session ID is an error, not a fresh session."""
        code, body = self.hs.request(
            "POST",
            "/register",
            {"username": "x", "password": "pw", "auth": {"type": "m.login.dummy", "session": "nope"}},
        )
        self.assertEqual(code, 400)

    def test_rate_limited(self) -> None:
        """Registration is rate limited per address: 429 M_LIMIT_EXCEEDED with retry_after_ms."""
        hs = make_homeserver(
            self, config_overrides={"rc_registration": {"per_second": 0.1, "burst_count": 2}}
        )
        for name in ("a", "b"):
            code, _ = hs.request("POST", "/register", {"username": name, "password": "pw", "auth": DUMMY})
            self.assertEqual(code, 200)
        code, body = hs.request("POST", "/register", {"username": "c", "password": "pw", "auth": DUMMY})
        self.assertEqual((code, body["errcode"]), (429, "M_LIMIT_EXCEEDED"))
        self.assertEqual(body["retry_after_ms"], 10000)
        hs.clock.advance(10)
        code, _ = hs.request("POST", "/register", {"username": "c", "password": "pw", "auth": DUMMY})
        self.assertEqual(code, 200)

    def test_available(self) -> None:
        """/register/available says available, taken or invalid."""
        self.hs.register("alice")
        self.assertEqual(
            self.hs.request("GET", "/register/available?username=bob"), (200, {"available": True})
        )
        code, body = self.hs.request("GET", "/register/available?username=alice")
        self.assertEqual((code, body["errcode"]), (400, "M_USER_IN_USE"))
        code, body = self.hs.request("GET", "/register/available?username=ALICE")
        self.assertEqual((code, body["errcode"]), (400, "M_USER_IN_USE"))
        code, body = self.hs.request("GET", "/register/available?username=a%20b")
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_USERNAME"))
        code, body = self.hs.request("GET", "/register/available")
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))


class RegistrationTokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(
            self,
            config_overrides={
                "enable_registration_without_verification": False,
                "registration_requires_token": True,
                "registration_tokens": [{"token": "once", "uses_allowed": 1}, "open"],
            },
        )

    def register(self, name: str, token: str | None) -> tuple[int, Any]:
        _, body = self.hs.request("POST", "/register", {"username": name, "password": "pw"})
        self.assertEqual(body["flows"], [{"stages": ["m.login.registration_token"]}])
        auth: dict[str, Any] = {"type": "m.login.registration_token", "session": body["session"]}
        if token is not None:
            auth["token"] = token
        return self.hs.request(
            "POST", "/register", {"username": name, "password": "pw", "auth": auth}
        )

    def test_token_required(self) -> None:
        """The dummy stage is not offered and does not complete registration."""
        code, body = self.hs.request(
            "POST", "/register", {"username": "a", "password": "pw", "auth": DUMMY}
        )
        self.assertEqual(code, 401)
        self.assertNotIn("completed", body)

    def test_wrong_token(self) -> None:
        """A wrong token fails the stage: 401 with an errcode and the flows again."""
        code, body = self.register("a", "wrong")
        self.assertEqual(code, 401)
        self.assertEqual(body["errcode"], "M_UNAUTHORIZED")
        self.assertIn("flows", body)

    def test_limited_token(self) -> None:
        """A token with uses_allowed 1 registers one user, then is invalid."""
        self.assertEqual(self.register("a", "once")[0], 200)
        self.assertEqual(self.register("b", "once")[0], 401)
        self.assertEqual(self.register("b", "open")[0], 200)

    def test_validity(self) -> None:
        """The v1 validity endpoint reflects whether a token can still be used."""
        path = "/_matrix/client/v1/register/m.login.registration_token/validity?token="
        self.assertEqual(self.hs.request("GET", path + "once"), (200, {"valid": True}))
        self.assertEqual(self.hs.request("GET", path + "nope"), (200, {"valid": False}))
        self.register("a", "once")
        self.assertEqual(self.hs.request("GET", path + "once"), (200, {"valid": False}))


class LoginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)
        self.user_id, self.token = self.hs.register("alice", "secret")

    def login(self, body: dict[str, Any]) -> tuple[int, Any]:
        return self.hs.request("POST", "/login", body)

    def test_flows(self) -> None:
        """GET /login offers password login and login tokens (with get_login_token)."""
        self.assertEqual(
            self.hs.request("GET", "/login"),
            (
                200,
                {
                    "flows": [
                        {"type": "m.login.password"},
                        {"type": "m.login.token", "get_login_token": True},
                    ]
                },
            ),
        )

    def test_identifier_legacy_and_full_id(self) -> None:
        """m.id.user, the deprecated 'user' field and a full user ID all work."""
        for body in (
            {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}},
            {"type": "m.login.password", "user": "alice"},
            {"type": "m.login.password", "user": "@alice:test"},
            {"type": "m.login.password", "user": "ALICE"},
        ):
            code, resp = self.login({**body, "password": "secret"})
            self.assertEqual((code, resp["user_id"]), (200, "@alice:test"), body)
            self.assertEqual(resp["home_server"], "test")
            self.assertTrue(resp["access_token"])
            self.assertNotIn("refresh_token", resp)

    def test_r0_path(self) -> None:
        """Old clients log in on /r0/login."""
        code, _ = self.hs.request(
            "POST",
            "/_matrix/client/r0/login",
            {"type": "m.login.password", "user": "alice", "password": "secret"},
        )
        self.assertEqual(code, 200)

    def test_wrong_password_and_unknown_user(self) -> None:
        """Both are 403 M_FORBIDDEN with the same message."""
        c1, b1 = self.login({"type": "m.login.password", "user": "alice", "password": "nope"})
        c2, b2 = self.login({"type": "m.login.password", "user": "nobody", "password": "nope"})
        self.assertEqual((c1, b1), (c2, b2))
        self.assertEqual((c1, b1["errcode"]), (403, "M_FORBIDDEN"))

    def test_remote_user(self) -> None:
        """A user of another server cannot log in here."""
        code, body = self.login({"type": "m.login.password", "user": "@alice:elsewhere", "password": "secret"})
        self.assertEqual((code, body["errcode"]), (403, "M_FORBIDDEN"))

    def test_bad_requests(self) -> None:
        """Unknown login types, 3PIDs, and missing fields are 400s."""
        code, body = self.login({"type": "m.login.bogus", "token": "x"})
        self.assertEqual((code, body["errcode"]), (400, "M_UNKNOWN"))
        code, body = self.login(
            {"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b"}, "password": "x"}
        )
        self.assertEqual((code, body["errcode"]), (400, "M_UNKNOWN"))
        code, body = self.login({"type": "m.login.password", "user": "alice"})
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))
        code, body = self.login({"type": "m.login.password", "password": "secret"})
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))
        code, body = self.login({"password": "secret", "user": "alice"})
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))
        code, body = self.hs.request("POST", "/login", raw_body=b"")
        self.assertEqual((code, body["errcode"]), (400, "M_NOT_JSON"))

    def test_device_reuse(self) -> None:
        """Logging in with an existing device_id reuses that device."""
        body = {"type": "m.login.password", "user": "alice", "password": "secret", "device_id": "PHONE"}
        _, first = self.login(body)
        _, second = self.login(body)
        self.assertEqual(first["device_id"], "PHONE")
        self.assertEqual(second["device_id"], "PHONE")
        devices = self.hs.run(self.hs.hs.account_store.get_devices(self.user_id))
        self.assertEqual(len([d for d in devices if d.device_id == "PHONE"]), 1)

    def test_failed_attempts_rate_limited(self) -> None:
        """After burst_count wrong passwords the account is rate limited, even for the right one."""
        hs = make_homeserver(
            self,
            config_overrides={
                "rc_login": {"failed_attempts": {"per_second": 0.1, "burst_count": 2}}
            },
        )
        hs.register("bob", "right")
        bad = {"type": "m.login.password", "user": "bob", "password": "wrong"}
        for _ in range(2):
            self.assertEqual(hs.request("POST", "/login", bad)[0], 403)
        code, body = hs.request("POST", "/login", {**bad, "password": "right"})
        self.assertEqual((code, body["errcode"]), (429, "M_LIMIT_EXCEEDED"))
        self.assertGreater(body["retry_after_ms"], 0)
        hs.clock.advance(20)
        self.assertEqual(hs.request("POST", "/login", {**bad, "password": "right"})[0], 200)

    def test_address_rate_limited(self) -> None:
        """Login attempts from one address are limited by rc_login.address."""
        hs = make_homeserver(
            self, config_overrides={"rc_login": {"address": {"per_second": 0.01, "burst_count": 1}}}
        )
        hs.register("bob", "right")
        good = {"type": "m.login.password", "user": "bob", "password": "right"}
        self.assertEqual(hs.request("POST", "/login", good)[0], 200)
        self.assertEqual(hs.request("POST", "/login", good)[0], 429)

    def test_well_known_in_login(self) -> None:
        """With public_baseurl set, login includes well_known discovery information."""
        hs = make_homeserver(self, config_overrides={"public_baseurl": "https://m.example.com"})
        hs.register("bob", "pw")
        _, body = hs.request("POST", "/login", {"type": "m.login.password", "user": "bob", "password": "pw"})
        self.assertEqual(body["well_known"], {"m.homeserver": {"base_url": "https://m.example.com/"}})


class TokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)
        self.user_id, self.token = self.hs.register("alice", "secret")

    def test_missing_and_unknown_token(self) -> None:
        """No token: 401 M_MISSING_TOKEN; a bad one: 401 M_UNKNOWN_TOKEN; soft_logout false."""
        code, body = self.hs.request("GET", "/account/whoami")
        self.assertEqual((code, body["errcode"], body["soft_logout"]), (401, "M_MISSING_TOKEN", False))
        code, body = self.hs.request("GET", "/account/whoami", token="nope")
        self.assertEqual((code, body["errcode"], body["soft_logout"]), (401, "M_UNKNOWN_TOKEN", False))
        code, body = self.hs.request(
            "GET", "/account/whoami", headers={"Authorization": "Basic abc"}
        )
        self.assertEqual((code, body["errcode"]), (401, "M_MISSING_TOKEN"))

    def test_query_token(self) -> None:
        """The deprecated ?access_token= works too."""
        code, body = self.hs.request("GET", f"/account/whoami?access_token={self.token}")
        self.assertEqual((code, body["user_id"]), (200, self.user_id))

    def test_last_seen_recorded_and_debounced(self) -> None:
        """A request records the device's last-seen time and user agent, at most every 2 min."""
        _, who = self.hs.request("GET", "/account/whoami", token=self.token, headers={"User-Agent": "ua1"})
        store = self.hs.hs.account_store
        dev = self.hs.run(store.get_device(self.user_id, who["device_id"]))
        self.assertEqual((dev.last_seen_ts, dev.last_seen_user_agent), (0, "ua1"))
        self.assertIsNotNone(dev.last_seen_ip)
        self.hs.clock.advance(60)
        self.hs.request("GET", "/account/whoami", token=self.token, headers={"User-Agent": "ua2"})
        dev = self.hs.run(store.get_device(self.user_id, who["device_id"]))
        self.assertEqual(dev.last_seen_user_agent, "ua1")
        self.hs.clock.advance(61)
        self.hs.request("GET", "/account/whoami", token=self.token, headers={"User-Agent": "ua2"})
        dev = self.hs.run(store.get_device(self.user_id, who["device_id"]))
        self.assertEqual((dev.last_seen_ts, dev.last_seen_user_agent), (121000, "ua2"))

    def test_logout(self) -> None:
        """Logout revokes the token and deletes the device; other devices keep working."""
        _, other = self.hs.register("bob")
        login = self.hs.run(self.hs.hs.accounts.login(self.user_id))
        _, who = self.hs.request("GET", "/account/whoami", token=self.token)
        self.assertEqual(self.hs.request("POST", "/logout", token=self.token), (200, {}))
        code, body = self.hs.request("GET", "/account/whoami", token=self.token)
        self.assertEqual((code, body["errcode"]), (401, "M_UNKNOWN_TOKEN"))
        self.assertIsNone(self.hs.run(self.hs.hs.account_store.get_device(self.user_id, who["device_id"])))
        self.assertEqual(self.hs.request("GET", "/account/whoami", token=login.access_token)[0], 200)
        self.assertEqual(self.hs.request("GET", "/account/whoami", token=other)[0], 200)

    def test_logout_all(self) -> None:
        """/logout/all revokes every token of the user, and only that user's."""
        _, other = self.hs.register("bob")
        login = self.hs.run(self.hs.hs.accounts.login(self.user_id))
        self.assertEqual(self.hs.request("POST", "/logout/all", {}, token=self.token), (200, {}))
        for token in (self.token, login.access_token):
            self.assertEqual(self.hs.request("GET", "/account/whoami", token=token)[0], 401)
        self.assertEqual(self.hs.request("GET", "/account/whoami", token=other)[0], 200)


class PasswordAndDeactivateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self)
        self.user_id, self.token = self.hs.register("alice", "old")
        self.other = self.hs.run(self.hs.hs.accounts.login(self.user_id)).access_token

    def change(self, body: dict[str, Any], token: str | None = None) -> tuple[int, Any]:
        return self.hs.request("POST", "/account/password", body, token=token or self.token)

    def test_password_change_flow(self) -> None:
        """UIA with the old password changes it and logs out the other devices only."""
        code, body = self.change({"new_password": "new"})
        self.assertEqual(code, 401)
        self.assertEqual(body["flows"], [{"stages": ["m.login.password"]}])
        code, body = self.change(
            {"new_password": "new", "auth": password_auth("alice", "old", body["session"])}
        )
        self.assertEqual((code, body), (200, {}))
        self.assertEqual(self.hs.request("GET", "/account/whoami", token=self.token)[0], 200)
        self.assertEqual(self.hs.request("GET", "/account/whoami", token=self.other)[0], 401)
        login = {"type": "m.login.password", "user": "alice"}
        self.assertEqual(self.hs.request("POST", "/login", {**login, "password": "old"})[0], 403)
        self.assertEqual(self.hs.request("POST", "/login", {**login, "password": "new"})[0], 200)

    def test_keep_devices(self) -> None:
        """logout_devices: false keeps the other sessions."""
        code, _ = self.change(
            {"new_password": "new", "logout_devices": False, "auth": password_auth("alice", "old")}
        )
        self.assertEqual(code, 200)
        self.assertEqual(self.hs.request("GET", "/account/whoami", token=self.other)[0], 200)

    def test_wrong_password(self) -> None:
        """A wrong current password fails the stage: 401 with M_FORBIDDEN, nothing changed."""
        code, body = self.change({"new_password": "new", "auth": password_auth("alice", "bad")})
        self.assertEqual((code, body["errcode"]), (401, "M_FORBIDDEN"))
        self.assertIn("flows", body)
        self.assertTrue(self.hs.run(self.hs.hs.accounts.check_password(self.user_id, "old")))

    def test_cannot_auth_as_someone_else(self) -> None:
        """The password stage must name the requesting user."""
        self.hs.register("bob", "bobpw")
        code, body = self.change({"new_password": "new", "auth": password_auth("bob", "bobpw")})
        self.assertEqual((code, body["errcode"]), (401, "M_FORBIDDEN"))

    def test_missing_new_password(self) -> None:
        """new_password is required."""
        code, body = self.change({"auth": password_auth("alice", "old")})
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))

    def test_deactivate(self) -> None:
        """Deactivation needs the password, revokes every token and keeps the ID taken."""
        called: list[str] = []

        async def hook(user_id: str) -> None:
            called.append(user_id)

        self.hs.hs.accounts.deactivation_hooks.append(hook)
        code, body = self.hs.request("POST", "/account/deactivate", {}, token=self.token)
        self.assertEqual(code, 401)
        code, body = self.hs.request(
            "POST",
            "/account/deactivate",
            {"auth": password_auth("alice", "old", body["session"])},
            token=self.token,
        )
        self.assertEqual((code, body), (200, {"id_server_unbind_result": "no-support"}))
        self.assertEqual(called, [self.user_id])
        for token in (self.token, self.other):
            self.assertEqual(self.hs.request("GET", "/account/whoami", token=token)[0], 401)
        code, body = self.hs.request(
            "POST", "/login", {"type": "m.login.password", "user": "alice", "password": "old"}
        )
        self.assertEqual((code, body["errcode"]), (403, "M_USER_DEACTIVATED"))
        code, body = self.hs.request(
            "POST", "/register", {"username": "alice", "password": "x", "auth": DUMMY}
        )
        self.assertEqual((code, body["errcode"]), (400, "M_USER_IN_USE"))


class DiscoveryTests(SynchronousTestCase):
    def test_versions(self) -> None:
        """/versions needs no auth and lists r0 and v1.x versions."""
        hs = make_homeserver(self)
        code, body = hs.request("GET", "/_matrix/client/versions")
        self.assertEqual(code, 200)
        self.assertIn("r0.6.1", body["versions"])
        self.assertIn("v1.1", body["versions"])
        self.assertIsInstance(body["unstable_features"], dict)

    def test_capabilities(self) -> None:
        """Capabilities list all 12 room versions, the configured default and our features."""
        hs = make_homeserver(self, config_overrides={"default_room_version": "10"})
        _, token = hs.register("alice")
        code, body = hs.request("GET", "/capabilities", token=token)
        self.assertEqual(code, 200)
        caps = body["capabilities"]
        self.assertEqual(caps["m.room_versions"]["default"], "10")
        self.assertEqual(
            sorted(caps["m.room_versions"]["available"], key=int), [str(i) for i in range(1, 13)]
        )
        self.assertEqual(caps["m.change_password"], {"enabled": True})
        self.assertEqual(caps["m.set_displayname"], {"enabled": True})
        self.assertEqual(caps["m.set_avatar_url"], {"enabled": True})
        self.assertEqual(caps["m.3pid_changes"], {"enabled": False})
        self.assertEqual(hs.request("GET", "/capabilities")[0], 401)

    def test_well_known(self) -> None:
        """/.well-known/matrix/client is served only when public_baseurl is set."""
        hs = make_homeserver(self)
        self.assertEqual(hs.request("GET", "/.well-known/matrix/client")[0], 404)
        hs = make_homeserver(self, config_overrides={"public_baseurl": "https://m.example.com/"})
        self.assertEqual(
            hs.request("GET", "/.well-known/matrix/client"),
            (200, {"m.homeserver": {"base_url": "https://m.example.com/"}}),
        )

    def test_3pids(self) -> None:
        """We hold no third-party identifiers."""
        hs = make_homeserver(self)
        _, token = hs.register("alice")
        self.assertEqual(hs.request("GET", "/account/3pid", token=token), (200, {"threepids": []}))




class _OneAppservice:
    """A stand-in for the appservice registry: one as_token, namespace @bridge_*."""

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name

    async def requester_for_token(
        self, token: str, user_id: str | None, device_id: str | None
    ) -> Requester | None:
        if token != "as_token":
            return None
        return Requester(
            user_id=user_id or f"@bridgebot:{self.server_name}",
            device_id=device_id,
            token_id=None,
            appservice_id="bridge",
        )

    async def can_register(self, appservice_id: str, user_id: str) -> bool:
        return user_id.startswith("@bridge_")

    async def is_exclusive_user(self, user_id: str) -> bool:
        return user_id.startswith("@bridge_")


class AppserviceHookTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_homeserver(self, config_overrides={"enable_registration": False})
        self.hs.hs.auth.appservices = _OneAppservice("test")

    def test_as_token_authenticates_and_masquerades(self) -> None:
        """An as_token authenticates through the hook, acting as ?user_id= when given."""
        code, body = self.hs.request("GET", "/account/whoami", token="as_token")
        self.assertEqual((code, body["user_id"]), (200, "@bridgebot:test"))
        code, body = self.hs.request(
            "GET", "/account/whoami?user_id=%40bridge_x%3Atest", token="as_token"
        )
        self.assertEqual(body["user_id"], "@bridge_x:test")

    def test_appservice_registration(self) -> None:
        """m.login.application_service registers in-namespace users even with registration off."""
        body = {"type": "m.login.application_service", "username": "bridge_alice"}
        code, resp = self.hs.request(
            "POST", "/register", {**body, "auth": {"type": "m.login.application_service"}},
            token="as_token",
        )  # fmt: skip
        self.assertEqual((code, resp["user_id"]), (200, "@bridge_alice:test"))
        code, resp = self.hs.request(
            "POST", "/register", {"username": "bridge_alice", "auth": {"type": "m.login.application_service"}},
            token="as_token",
        )  # fmt: skip
        self.assertEqual((code, resp["errcode"]), (400, "M_USER_IN_USE"))
        code, resp = self.hs.request(
            "POST", "/register", {"username": "alice", "auth": {"type": "m.login.application_service"}},
            token="as_token",
        )  # fmt: skip
        self.assertEqual((code, resp["errcode"]), (400, "M_EXCLUSIVE"))
        code, resp = self.hs.request(
            "POST", "/register", {"username": "bridge_b", "auth": {"type": "m.login.application_service"}},
        )  # fmt: skip
        self.assertEqual((code, resp["errcode"]), (401, "M_MISSING_TOKEN"))

    def test_exclusive_namespace_is_reserved(self) -> None:
        """Ordinary registration of a name in an exclusive appservice namespace is M_EXCLUSIVE."""
        hs = make_homeserver(self)
        hs.hs.auth.appservices = _OneAppservice("test")
        code, body = hs.request(
            "POST", "/register", {"username": "bridge_x", "password": "pw", "auth": DUMMY}
        )
        self.assertEqual((code, body["errcode"]), (400, "M_EXCLUSIVE"))
        code, body = hs.request("GET", "/register/available?username=bridge_x")
        self.assertEqual((code, body["errcode"]), (400, "M_EXCLUSIVE"))

    def test_appservice_login(self) -> None:
        """An appservice can log in as one of its users and gets a normal device and token."""
        self.hs.request(
            "POST", "/register", {"username": "bridge_alice", "auth": {"type": "m.login.application_service"}},
            token="as_token",
        )  # fmt: skip
        _, flows = self.hs.request("GET", "/login")
        self.assertIn({"type": "m.login.application_service"}, flows["flows"])
        code, body = self.hs.request(
            "POST",
            "/login",
            {"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": "bridge_alice"}},
            token="as_token",
        )
        self.assertEqual((code, body["user_id"]), (200, "@bridge_alice:test"))
        code, _ = self.hs.request(
            "POST", "/login",
            {"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": "bridge_alice"}},
        )  # fmt: skip
        self.assertEqual(code, 401)


class RefreshTests(SynchronousTestCase):
    def test_unknown_refresh_tokens(self) -> None:
        """An unknown refresh token is 401 M_UNKNOWN_TOKEN (tests/client/test_sessions.py
        covers the ones we issue)."""
        hs = make_homeserver(self)
        code, body = hs.request("POST", "/refresh", {"refresh_token": "x"})
        self.assertEqual((code, body["errcode"], body["soft_logout"]), (401, "M_UNKNOWN_TOKEN", False))
        code, _ = hs.request("POST", "/_matrix/client/v1/refresh", {"refresh_token": "x"})
        self.assertEqual(code, 401)
        code, body = hs.request("POST", "/refresh", {})
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))


class AppserviceRegistrationLimitsTests(SynchronousTestCase):
    def test_appservices_are_not_registration_limited(self) -> None:
        """A bridge creating many puppets is not held back by rc_registration, and the
        r0-era top-level 'type' works too."""
        hs = make_homeserver(
            self,
            config_overrides={"rc_registration": {"per_second": 0.01, "burst_count": 1}},
        )
        hs.hs.auth.appservices = _OneAppservice("test")
        for i in range(5):
            code, body = hs.request(
                "POST",
                "/register",
                {"type": "m.login.application_service", "username": f"bridge_{i}"},
                token="as_token",
            )
            self.assertEqual((code, body.get("user_id")), (200, f"@bridge_{i}:test"))

    def test_failed_attempts_do_not_use_up_registrations(self) -> None:
        """UIA round trips and refused names do not count against rc_registration."""
        hs = make_homeserver(
            self,
            config_overrides={"rc_registration": {"per_second": 0.01, "burst_count": 1}},
        )
        for _ in range(3):
            self.assertEqual(hs.request("POST", "/register", {"username": "a", "password": "pw"})[0], 401)
            self.assertEqual(
                hs.request("POST", "/register", {"username": "_a", "password": "pw", "auth": DUMMY})[0],
                400,
            )
        self.assertEqual(
            hs.request("POST", "/register", {"username": "a", "password": "pw", "auth": DUMMY})[0], 200
        )
        code, body = hs.request("POST", "/register", {"username": "b", "password": "pw", "auth": DUMMY})
        self.assertEqual((code, body["errcode"]), (429, "M_LIMIT_EXCEEDED"))


class TokenCacheTests(SynchronousTestCase):
    def test_revocation_elsewhere_is_seen_within_a_minute(self) -> None:
        """Valid tokens are cached for at most 60 s: a token deleted behind the service's back
        (another process sharing the database) stops working once that time has passed."""
        hs = make_homeserver(self)
        _, token = hs.register("alice")
        self.assertEqual(hs.request("GET", "/account/whoami", token=token)[0], 200)
        self.successResultOf(
            hs.db.run("delete_tokens", lambda t: t.execute("DELETE FROM access_tokens"))
        )
        self.assertEqual(hs.request("GET", "/account/whoami", token=token)[0], 200)
        hs.clock.advance(61)
        self.assertEqual(hs.request("GET", "/account/whoami", token=token)[0], 401)

    def test_local_revocations_are_immediate(self) -> None:
        """Logging out, password changes and device deletion take effect on the next request."""
        hs = make_homeserver(self)
        user_id, token = hs.register("alice", "pw")
        other = hs.run(hs.hs.accounts.login(user_id, "OTHER")).access_token
        for t in (token, other):
            self.assertEqual(hs.request("GET", "/account/whoami", token=t)[0], 200)
        hs.request(
            "POST",
            "/delete_devices",
            {"devices": ["OTHER"], "auth": password_auth("alice", "pw")},
            token=token,
        )
        self.assertEqual(hs.request("GET", "/account/whoami", token=other)[0], 401)
        hs.request("POST", "/logout", token=token)
        self.assertEqual(hs.request("GET", "/account/whoami", token=token)[0], 401)
