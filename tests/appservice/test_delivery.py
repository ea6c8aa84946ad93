"""Pushing transactions: order, interest, retries with one transaction ID, outages, restarts."""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.appservice.support import (
    AS_TOKEN,
    AppserviceHomeserver,
    FakeAppservice,
    MemoryAgent,
    registration,
    write_registration,
)

AS_HOST = "as.test:9000"


class DeliveryTestCase(SynchronousTestCase):
    """A homeserver with the ``irc`` appservice (users ``@irc_*``) and a room it is in."""

    registration_extra: dict[str, Any] = {}

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.agent = MemoryAgent()
        self.fake = FakeAppservice()
        self.agent.add(AS_HOST, self.fake)
        self.reg_file = write_registration(self.dir, registration(**self.registration_extra))
        self.hs = self.build()
        self.alice, self.alice_token = self.hs.register("alice")
        self.room_id = self.make_room()

    def build(self, files: list[str] | None = None) -> AppserviceHomeserver:
        return AppserviceHomeserver(self, self.dir, files or [self.reg_file], self.agent)

    def as_request(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return self.hs.request(method, path, body, token=AS_TOKEN, **kw)

    def register_puppet(self, localpart: str) -> str:
        status, body = self.as_request(
            "POST",
            "/register",
            {"type": "m.login.application_service", "username": localpart},
        )
        self.assertEqual(status, 200, body)
        return str(body["user_id"])

    def make_room(self) -> str:
        status, body = self.hs.request("POST", "/createRoom", {}, token=self.alice_token)
        self.assertEqual(status, 200, body)
        room_id = str(body["room_id"])
        puppet = self.register_puppet("irc_bob")
        self.hs.request("POST", f"/rooms/{room_id}/invite", {"user_id": puppet},
                        token=self.alice_token)
        status, body = self.as_request("POST", f"/rooms/{room_id}/join?user_id={puppet}", {})
        self.assertEqual(status, 200, body)
        self.hs.pump()
        return room_id

    def bodies(self) -> list[str]:
        return [
            e["content"]["body"]
            for e in self.fake.events()
            if e["type"] == "m.room.message" and e["room_id"] == self.room_id
        ]


class OrderAndInterestTests(DeliveryTestCase):
    def test_room_events_in_order_once(self) -> None:
        """Events of a room with a namespace member arrive in order, each once, as client
        events, with the hs_token as a Bearer header."""
        for i in range(5):
            self.hs.send_text(self.alice_token, self.room_id, f"m{i}")
        self.hs.pump()
        self.assertEqual(self.bodies(), [f"m{i}" for i in range(5)])
        event = self.fake.events()[-1]
        self.assertEqual(event["sender"], self.alice)
        self.assertIn("origin_server_ts", event)
        self.assertNotIn("hashes", event)
        ids = [e["event_id"] for e in self.fake.events()]
        self.assertEqual(len(ids), len(set(ids)))
        # The invite and join of the puppet came too, before the messages.
        types = [(e["type"], e.get("state_key")) for e in self.fake.events()]
        self.assertIn(("m.room.member", "@irc_bob:test"), types)

    def test_uninteresting_room(self) -> None:
        """A room without namespace members, aliases or ids is not sent."""
        status, body = self.hs.request("POST", "/createRoom", {}, token=self.alice_token)
        other = body["room_id"]
        self.hs.send_text(self.alice_token, other, "private")
        self.hs.pump()
        self.assertNotIn(other, {e["room_id"] for e in self.fake.events()})

    def test_membership_cache_follows_leaves(self) -> None:
        """After the last namespace member leaves, the room's messages stop coming, without
        reloading membership from the database."""
        loads = self.hs.appservices.interest.loads
        self.as_request("POST", f"/rooms/{self.room_id}/leave?user_id=@irc_bob:test", {})
        self.hs.send_text(self.alice_token, self.room_id, "after")
        self.hs.pump()
        self.assertNotIn("after", self.bodies())
        self.assertEqual(self.hs.appservices.interest.loads, loads)

    def test_alias_namespace_interest(self) -> None:
        """A room with a local alias in the appservice's alias namespace is interesting."""
        status, body = self.hs.request("POST", "/createRoom", {}, token=self.alice_token)
        other = body["room_id"]
        status, body = self.hs.request(
            "PUT", "/directory/room/%23irc_chan:test", {"room_id": other}, token=self.alice_token
        )
        self.assertEqual(status, 200, body)
        self.hs.send_text(self.alice_token, other, "aliased")
        self.hs.pump()
        self.assertIn(other, {e["room_id"] for e in self.fake.events()})


class RetryTests(DeliveryTestCase):
    def test_error_then_success_same_txn_id(self) -> None:
        """An appservice answering 500 gets the same transaction again after a backoff; the
        next transaction has a new ID."""
        self.hs.pump()
        before = len(self.fake.transactions)
        self.fake.status = 500
        self.hs.send_text(self.alice_token, self.room_id, "one")
        self.hs.pump()
        self.assertEqual(len(self.fake.transactions), before)
        failed_id = self.fake.attempts[-1]
        self.fake.status = 200
        self.hs.advance(1.0)  # backoff starts at ~2 s: nothing yet
        self.assertEqual(self.fake.attempts[-1], failed_id)
        self.assertEqual(len(self.fake.transactions), before)
        self.hs.advance(5.0)
        self.assertEqual(self.fake.transactions[-1][0], failed_id)
        self.assertEqual(self.bodies(), ["one"])
        self.hs.send_text(self.alice_token, self.room_id, "two")
        self.hs.pump()
        self.assertEqual(int(self.fake.transactions[-1][0]), int(failed_id) + 1)

    def test_timeout_then_same_txn_id(self) -> None:
        """A transaction the appservice never answers times out and is retried, same ID."""
        self.fake.hang = True
        self.hs.send_text(self.alice_token, self.room_id, "slow")
        self.hs.pump()
        txn_id = self.fake.attempts[-1]
        self.hs.advance(61.0)  # the request times out, then the backoff starts
        self.fake.hang = False
        self.hs.advance(10.0)
        self.assertEqual(self.fake.transactions[-1][0], txn_id)
        self.assertEqual(self.bodies(), ["slow"])

    def test_down_for_a_while(self) -> None:
        """While the appservice is down, events queue; the backoff grows; when it is back
        they all arrive in order, once each."""
        delays: list[float] = []
        self.hs.appservices.pusher.on_backoff = lambda as_id, d: delays.append(d)
        self.agent.down.add(AS_HOST.encode())
        for i in range(150):  # more than one transaction's worth
            self.hs.send_text(self.alice_token, self.room_id, f"m{i}")
            if i % 30 == 0:
                self.hs.advance(100)
        self.hs.advance(100)
        self.assertEqual(self.bodies(), [])
        self.assertGreater(len(delays), 3)
        self.assertGreater(delays[3], delays[0] * 4)
        self.agent.down.discard(AS_HOST.encode())
        self.hs.advance(400)
        self.assertEqual(self.bodies(), [f"m{i}" for i in range(150)])
        txn_ids = [int(t) for t, _ in self.fake.transactions]
        self.assertEqual(txn_ids, sorted(set(txn_ids)))

    def test_one_appservice_down_does_not_block_another(self) -> None:
        """Two appservices in one room: one is down, the other still gets everything."""
        other = FakeAppservice(hs_token="other-hs")
        self.agent.add("other.test:9000", other)
        reg2 = registration("slack", url="http://other.test:9000", prefix="slack_",
                            as_token="other-as", hs_token="other-hs")
        file2 = write_registration(self.dir, reg2)
        self.hs.shutdown()
        self.hs = self.build([self.reg_file, file2])
        status, body = self.hs.request(
            "POST", "/register", {"type": "m.login.application_service", "username": "slack_x"},
            token="other-as",
        )
        self.assertEqual(status, 200, body)
        self.hs.request("POST", f"/rooms/{self.room_id}/invite", {"user_id": "@slack_x:test"},
                        token=self.alice_token)
        self.hs.request("POST", f"/rooms/{self.room_id}/join?user_id=@slack_x:test", {},
                        token="other-as")
        self.agent.down.add(AS_HOST.encode())
        self.hs.send_text(self.alice_token, self.room_id, "hello both")
        self.hs.pump()
        self.assertIn("hello both", [e["content"].get("body") for e in other.events()])
        self.assertNotIn("hello both", self.bodies())

    def test_legacy_access_token(self) -> None:
        """An appservice that reads only ``?access_token=`` still gets its transactions."""
        self.fake.legacy_only = True
        self.hs.send_text(self.alice_token, self.room_id, "legacy")
        self.hs.pump()
        self.assertEqual(self.bodies(), ["legacy"])
        self.assertIn(b"access_token=hs-secret", self.fake.requests[-1][1])


class RestartTests(DeliveryTestCase):
    def test_restart_with_backlog(self) -> None:
        """Ruma crashes while the appservice is down; rebuilt on the same database with the
        appservice back, it delivers every missed event once, in order, and the transaction
        that was being retried keeps its ID."""
        self.agent.down.add(AS_HOST.encode())
        self.hs.pump()
        delivered_before = list(self.fake.transactions)
        for i in range(5):
            self.hs.send_text(self.alice_token, self.room_id, f"missed{i}")
        self.hs.pump()
        self.hs.crash()
        self.agent.down.discard(AS_HOST.encode())
        self.fake.hang = True  # see the ID of the first attempt after the restart
        self.hs = self.build()
        first_after = self.fake.attempts[-1]
        self.fake.hang = False
        self.hs.advance(61)
        self.hs.advance(10)
        self.assertEqual(self.bodies(), [f"missed{i}" for i in range(5)])
        new = self.fake.transactions[len(delivered_before):]
        self.assertEqual(new[0][0], first_after)

    def test_restart_after_delivery_sends_nothing_again(self) -> None:
        """Events delivered before a clean restart are not delivered again."""
        self.hs.send_text(self.alice_token, self.room_id, "once")
        self.hs.pump()
        count = len(self.fake.transactions)
        self.hs.shutdown()
        self.hs = self.build()
        self.hs.advance(10)
        self.assertEqual(len(self.fake.transactions), count)
        self.assertEqual(self.bodies(), ["once"])


class EphemeralTests(DeliveryTestCase):
    registration_extra = {"de.sorunome.msc2409.push_ephemeral": True}

    def test_typing_and_receipts(self) -> None:
        """With push_ephemeral, typing and receipts of interesting rooms arrive under both
        ``ephemeral`` and ``de.sorunome.msc2409.ephemeral``."""
        event_id = self.hs.send_text(self.alice_token, self.room_id, "read me")
        self.hs.request("PUT", f"/rooms/{self.room_id}/typing/{self.alice}",
                        {"typing": True, "timeout": 10000}, token=self.alice_token)
        self.hs.request("POST", f"/rooms/{self.room_id}/receipt/m.read/{event_id}", {},
                        token=self.alice_token)
        self.hs.pump()
        ephemeral = [e for _, b in self.fake.transactions for e in b.get("ephemeral", [])]
        unstable = [
            e for _, b in self.fake.transactions
            for e in b.get("de.sorunome.msc2409.ephemeral", [])
        ]
        self.assertEqual(ephemeral, unstable)
        types = [e["type"] for e in ephemeral]
        self.assertIn("m.typing", types)
        self.assertIn("m.receipt", types)
        typing = [e for e in ephemeral if e["type"] == "m.typing"][0]
        self.assertEqual(typing["room_id"], self.room_id)
        self.assertEqual(typing["content"]["user_ids"], [self.alice])
        receipt = [e for e in ephemeral if e["type"] == "m.receipt"][0]
        self.assertIn(self.alice, receipt["content"][event_id]["m.read"])

    def test_no_ephemeral_without_asking(self) -> None:
        """Without receive_ephemeral nothing ephemeral is sent (see the other registration)."""
        reg = self.hs.appservices.registry.get("irc")
        assert reg is not None
        self.assertTrue(reg.wants_ephemeral)


class NoEphemeralTests(DeliveryTestCase):
    def test_no_ephemeral_key(self) -> None:
        """A registration that did not ask gets no ephemeral events (and no key)."""
        self.hs.request("PUT", f"/rooms/{self.room_id}/typing/{self.alice}",
                        {"typing": True, "timeout": 10000}, token=self.alice_token)
        self.hs.pump()
        for _, body in self.fake.transactions:
            self.assertNotIn("ephemeral", body)
