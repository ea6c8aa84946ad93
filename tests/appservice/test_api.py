"""Acting as an appservice, the ping, queries, third-party lookups and in-process bridges."""

from __future__ import annotations

from typing import Any

from ruma.appservice.registration import parse_registration
from ruma.errors import MatrixError
from tests.appservice.support import AS_TOKEN, registration, write_registration
from tests.appservice.test_delivery import AS_HOST, DeliveryTestCase


class ActingTests(DeliveryTestCase):
    def test_whoami_and_masquerade(self) -> None:
        """The as_token acts as the sender, or as a registered namespace user via user_id."""
        status, body = self.as_request("GET", "/account/whoami")
        self.assertEqual((status, body["user_id"]), (200, "@irc_bot:test"))
        status, body = self.as_request("GET", "/account/whoami?user_id=@irc_bob:test")
        self.assertEqual((status, body["user_id"]), (200, "@irc_bob:test"))

    def test_masquerade_refused(self) -> None:
        """Outside the namespace, or a namespace user never registered: 403."""
        status, body = self.as_request("GET", f"/account/whoami?user_id={self.alice}")
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.as_request("GET", "/account/whoami?user_id=@irc_ghost:test")
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))

    def test_registration_rules(self) -> None:
        """Namespace users are registered by the appservice (M_USER_IN_USE the second time);
        outside its namespace it gets M_EXCLUSIVE; others may not take exclusive IDs."""
        body = {"type": "m.login.application_service", "username": "irc_carol"}
        status, answer = self.as_request("POST", "/register", body)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["user_id"], "@irc_carol:test")
        status, answer = self.as_request("POST", "/register", body)
        self.assertEqual((status, answer["errcode"]), (400, "M_USER_IN_USE"))
        status, answer = self.as_request(
            "POST", "/register", {"type": "m.login.application_service", "username": "dave"}
        )
        self.assertEqual((status, answer["errcode"]), (400, "M_EXCLUSIVE"))
        status, answer = self.hs.request(
            "POST", "/register",
            {"username": "irc_eve", "password": "pw", "auth": {"type": "m.login.dummy"}},
        )
        self.assertEqual((status, answer["errcode"]), (400, "M_EXCLUSIVE"))
        status, answer = self.hs.request("GET", "/register/available?username=irc_eve")
        self.assertEqual((status, answer["errcode"]), (400, "M_EXCLUSIVE"))
        # Its own sender exists already (created at startup): heisenbridge expects this.
        status, answer = self.as_request(
            "POST", "/register", {"type": "m.login.application_service", "username": "irc_bot"}
        )
        self.assertEqual((status, answer["errcode"]), (400, "M_USER_IN_USE"))

    def test_login(self) -> None:
        """``m.login.application_service`` logs in a namespace user with the as_token."""
        status, body = self.as_request(
            "POST", "/login",
            {"type": "m.login.application_service",
             "identifier": {"type": "m.id.user", "user": "irc_bob"}},
        )
        self.assertEqual(status, 200, body)
        status, who = self.hs.request("GET", "/account/whoami", token=body["access_token"])
        self.assertEqual(who["user_id"], "@irc_bob:test")
        status, body = self.hs.request(
            "POST", "/login",
            {"type": "m.login.application_service",
             "identifier": {"type": "m.id.user", "user": "irc_bob"}},
            token=self.alice_token,
        )
        self.assertEqual(status, 401)

    def test_timestamp_massaging(self) -> None:
        """``?ts=`` sets origin_server_ts for appservices (state too), not for users."""
        status, body = self.as_request(
            "PUT", f"/rooms/{self.room_id}/send/m.room.message/t1?user_id=@irc_bob:test&ts=1234",
            {"msgtype": "m.text", "body": "old"},
        )
        self.assertEqual(status, 200, body)
        status, event = self.hs.request(
            "GET", f"/rooms/{self.room_id}/event/{body['event_id']}", token=self.alice_token
        )
        self.assertEqual(event["origin_server_ts"], 1234)
        status, body = self.hs.request(
            "PUT", f"/rooms/{self.room_id}/send/m.room.message/t2?ts=1234",
            {"msgtype": "m.text", "body": "now"}, token=self.alice_token,
        )
        status, event = self.hs.request(
            "GET", f"/rooms/{self.room_id}/event/{body['event_id']}", token=self.alice_token
        )
        self.assertNotEqual(event["origin_server_ts"], 1234)

    def test_device_masquerading_needs_msc3202(self) -> None:
        """Without org.matrix.msc3202 the device_id parameter is ignored."""
        status, body = self.as_request(
            "GET", "/account/whoami?user_id=@irc_bob:test&org.matrix.msc3202.device_id=NOPE"
        )
        self.assertEqual(status, 200, body)
        self.assertNotIn("device_id", body)


class Msc3202Tests(DeliveryTestCase):
    registration_extra = {"org.matrix.msc3202": True}

    def test_device_masquerading(self) -> None:
        """With org.matrix.msc3202 an appservice acts as one of the user's devices, and an
        unknown device is refused."""
        status, body = self.as_request(
            "POST", "/login",
            {"type": "m.login.application_service", "device_id": "DEV1",
             "identifier": {"type": "m.id.user", "user": "irc_bob"}},
        )
        self.assertEqual(status, 200, body)
        status, body = self.as_request(
            "GET", "/account/whoami?user_id=@irc_bob:test&org.matrix.msc3202.device_id=DEV1"
        )
        self.assertEqual((status, body.get("device_id")), (200, "DEV1"))
        status, body = self.as_request(
            "GET", "/account/whoami?user_id=@irc_bob:test&org.matrix.msc3202.device_id=NOPE"
        )
        self.assertEqual(status, 400)


class RateLimitTests(DeliveryTestCase):
    def build(self, files: list[str] | None = None) -> Any:
        from tests.appservice.support import AppserviceHomeserver

        limited = registration("limited", url=None, prefix="lim_", as_token="lim-as",
                               hs_token="lim-hs", rate_limited=True)
        path = write_registration(self.dir, limited)
        return AppserviceHomeserver(
            self, self.dir, [self.reg_file, path], self.agent,
            config_overrides={"rc_message": {"per_second": 0.001, "burst_count": 2}},
        )

    def test_rate_limited_flag(self) -> None:
        """``rate_limited: false`` exempts the appservice; ``true`` limits it like a user."""
        for i in range(6):
            status, body = self.as_request(
                "PUT", f"/rooms/{self.room_id}/send/m.room.message/x{i}?user_id=@irc_bob:test",
                {"msgtype": "m.text", "body": str(i)},
            )
            self.assertEqual(status, 200, body)
        self.hs.request("POST", f"/rooms/{self.room_id}/invite", {"user_id": "@lim_bot:test"},
                        token=self.alice_token)
        self.hs.request("POST", f"/rooms/{self.room_id}/join", {}, token="lim-as")
        statuses = []
        for i in range(6):
            status, body = self.hs.request(
                "PUT", f"/rooms/{self.room_id}/send/m.room.message/y{i}",
                {"msgtype": "m.text", "body": str(i)}, token="lim-as",
            )
            statuses.append(status)
        self.assertIn(429, statuses)


class PingTests(DeliveryTestCase):
    def ping(self, as_id: str = "irc", token: str = AS_TOKEN) -> tuple[int, Any]:
        return self.hs.request(
            "POST", f"/_matrix/client/v1/appservice/{as_id}/ping", {"transaction_id": "p1"},
            token=token,
        )

    def test_ping_ok(self) -> None:
        """The homeserver POSTs /ping with the transaction_id and answers duration_ms."""
        status, body = self.ping()
        self.assertEqual(status, 200, body)
        self.assertIn("duration_ms", body)
        self.assertEqual(self.fake.pings, [{"transaction_id": "p1"}])

    def test_ping_errors(self) -> None:
        """Another appservice's id: 403; an error answer: 502 M_BAD_STATUS with its status;
        unreachable: 502 M_CONNECTION_FAILED."""
        status, body = self.ping("other")
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        self.fake.status = 500
        status, body = self.ping()
        self.assertEqual((status, body["errcode"], body["status"]), (502, "M_BAD_STATUS", 500))
        self.fake.status = 200
        self.agent.down.add(AS_HOST.encode())
        status, body = self.ping()
        self.assertEqual((status, body["errcode"]), (502, "M_CONNECTION_FAILED"))

    def test_ping_timeout(self) -> None:
        """No answer within the timeout: 504 M_CONNECTION_TIMEOUT."""
        self.fake.hang = True
        d = self.hs.treq.post(
            self.hs.url("/_matrix/client/v1/appservice/irc/ping"), json={},
            headers={b"Authorization": [b"Bearer " + AS_TOKEN.encode()]},
        )
        self.hs.pump()
        self.hs.advance(31)
        response = self.successResultOf(d)
        self.assertEqual(response.code, 504)

    def test_ping_without_url(self) -> None:
        """An appservice registered with ``url: null``: 400 M_URL_NOT_SET."""
        path = write_registration(self.dir, registration("nourl", url=None, prefix="n_",
                                                         as_token="n-as", hs_token="n-hs"))
        self.hs.shutdown()
        self.hs = self.build([self.reg_file, path])
        status, body = self.ping("nourl", "n-as")
        self.assertEqual((status, body["errcode"]), (400, "M_URL_NOT_SET"))


class QueryTests(DeliveryTestCase):
    def test_user_query_on_unknown_profile(self) -> None:
        """Looking up an unknown user in an exclusive namespace asks the appservice, which
        creates it; the lookup then succeeds. Users outside namespaces are not asked about."""
        def create(user_id: str) -> None:
            self.hs.run(self.hs.hs.accounts.store.create_user(user_id, None, created_ts=0,
                                                              displayname="made"))
            self.fake.users.add(user_id)

        self.fake.on_user_query = create
        status, body = self.hs.request("GET", "/profile/@irc_new:test", token=self.alice_token)
        self.assertEqual((status, body.get("displayname")), (200, "made"))
        asked = [u for m, u in self.fake.requests if b"/users/" in u]
        status, _ = self.hs.request("GET", "/profile/@nobody:test", token=self.alice_token)
        self.assertEqual(status, 404)
        self.assertEqual(len([u for m, u in self.fake.requests if b"/users/" in u]), len(asked))

    def test_alias_query_on_join(self) -> None:
        """Joining an unknown alias in an exclusive namespace asks the appservice."""
        status, body = self.hs.request("POST", "/createRoom", {}, token=self.alice_token)
        portal = body["room_id"]

        def create(alias: str) -> None:
            if alias != "#irc_portal:test":
                return
            self.hs.run(self.hs.hs.rooms.rooms.create_alias(alias, portal, "@irc_bot:test"))  # type: ignore[union-attr]
            self.fake.aliases.add(alias)

        self.fake.on_alias_query = create
        status, body = self.hs.request("GET", "/directory/room/%23irc_portal:test")
        self.assertEqual((status, body.get("room_id")), (200, portal))
        status, body = self.hs.request("GET", "/directory/room/%23irc_nothing:test")
        self.assertEqual(status, 404)

    def test_thirdparty(self) -> None:
        """Third-party lookups go to the appservices declaring the protocol."""
        reg = registration(protocols=["irc"])
        self.reg_file = write_registration(self.dir, reg)
        self.hs.shutdown()
        self.hs = self.build()
        self.fake.thirdparty = {
            "protocol/irc": {"user_fields": ["nick"], "location_fields": ["channel"],
                             "icon": "", "field_types": {}, "instances": [
                                 {"network_id": "libera", "desc": "Libera", "fields": {}}]},
            "location/irc": [{"alias": "#irc_x:test", "protocol": "irc", "fields": {}}],
        }
        status, body = self.hs.request("GET", "/thirdparty/protocols", token=self.alice_token)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["irc"]["instances"][0]["instance_id"], "libera")
        status, body = self.hs.request("GET", "/thirdparty/location/irc?channel=%23x",
                                       token=self.alice_token)
        self.assertEqual((status, body[0]["alias"]), (200, "#irc_x:test"))
        status, body = self.hs.request("GET", "/thirdparty/protocol/xmpp", token=self.alice_token)
        self.assertEqual(status, 404)


class BridgeTests(DeliveryTestCase):
    def test_in_process_bridge_matches_external(self) -> None:
        """A bridge attached in process gets the same transactions as the external
        appservice in the same room, and its intents act like masquerading."""
        received: list[tuple[str, Any]] = []

        async def on_txn(txn_id: str, body: Any) -> None:
            received.append((txn_id, body))

        self.hs.shutdown()
        self.hs = self.build_unstarted()
        bridge_reg = parse_registration(
            registration("builtin", url=None, prefix="bi_", as_token="bi-as", hs_token="bi-hs"),
            filename="builtin", server_name="test",
        )
        bridge = self.hs.appservices.add_bridge(bridge_reg, on_txn)
        self.hs.start()
        puppet = bridge.intent("@bi_zed:test")
        self.hs.request("POST", f"/rooms/{self.room_id}/invite", {"user_id": "@bi_zed:test"},
                        token=self.alice_token)
        self.hs.run(puppet.join(self.room_id))
        event_id = self.hs.run(puppet.send_message(
            self.room_id, {"msgtype": "m.text", "body": "from the bridge"}, ts=999))
        self.hs.send_text(self.alice_token, self.room_id, "to both")
        self.hs.pump()
        mine = [e for _, b in received for e in b["events"]]
        theirs = [e for e in self.fake.events() if e["event_id"] in {x["event_id"] for x in mine}]
        self.assertEqual([e["event_id"] for e in mine], [e["event_id"] for e in theirs])
        bodies = [e["content"].get("body") for e in mine]
        self.assertEqual(bodies[-2:], ["from the bridge", "to both"])
        self.assertEqual([e for e in mine if e["event_id"] == event_id][0]["origin_server_ts"], 999)
        with self.assertRaises(MatrixError):
            bridge.intent(self.alice)

    def build_unstarted(self) -> Any:
        from tests.appservice.support import AppserviceHomeserver

        return AppserviceHomeserver(self, self.dir, [self.reg_file], self.agent, start=False)


class PingRecoveryTests(DeliveryTestCase):
    def test_ping_ends_the_backoff(self) -> None:
        """A successful ping while deliveries back off sends the queue at once."""
        self.agent.down.add(AS_HOST.encode())
        self.hs.send_text(self.alice_token, self.room_id, "queued")
        self.hs.advance(3)
        self.hs.advance(5)  # two failures: the next try is several seconds away
        self.agent.down.discard(AS_HOST.encode())
        status, body = self.hs.request(
            "POST", "/_matrix/client/v1/appservice/irc/ping", {}, token=AS_TOKEN
        )
        self.assertEqual(status, 200, body)
        self.hs.pump()
        self.assertEqual(self.bodies(), ["queued"])


class MasqueradingRegistrationTests(DeliveryTestCase):
    def test_register_while_masquerading_as_the_new_user(self) -> None:
        """mautrix registers a puppet with ``?user_id=`` naming that (unregistered) puppet;
        registration authenticates the appservice itself, so this works."""
        status, body = self.as_request(
            "POST", "/register?kind=user&user_id=@irc_newbie:test",
            {"type": "m.login.application_service", "username": "irc_newbie",
             "inhibit_login": True},
        )
        self.assertEqual((status, body.get("user_id")), (200, "@irc_newbie:test"), body)
