"""PUT /sendToDevice and /sync's to_device: delivery once, acknowledgement by the next
token, transaction idempotency, the '*' wildcard, long-poll wake-ups and remote recipients."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.e2ee.helpers import E2EUser
from tests.sync.helpers import make_sync_homeserver


class ToDeviceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")
        self.bob = E2EUser(self.hs, "bob", "BOBDEV")

    def send(self, txn: str, messages: dict, who: E2EUser | None = None) -> None:
        (who or self.alice).ok("PUT", f"/sendToDevice/m.room_key_request/{txn}", {"messages": messages})

    def test_delivered_until_acknowledged(self) -> None:
        """A message comes in every sync from an older token (a lost response is re-sent)
        and is gone once the client syncs from the token of a response that carried it."""
        start = self.bob.sync()["next_batch"]
        self.send("t1", {self.bob.user_id: {"BOBDEV": {"n": 1}}})
        first = self.bob.sync(start)
        self.assertEqual(
            first["to_device"]["events"],
            [{"type": "m.room_key_request", "sender": self.alice.user_id, "content": {"n": 1}}],
        )
        again = self.bob.sync(start)
        self.assertEqual(len(again["to_device"]["events"]), 1)
        after = self.bob.sync(again["next_batch"])
        self.assertEqual(after["to_device"]["events"], [])
        self.assertEqual(self.bob.sync(start)["to_device"]["events"], [])

    def test_initial_sync_gets_waiting_messages(self) -> None:
        """Messages sent before the device ever synced come in its initial sync, in order."""
        self.send("t1", {self.bob.user_id: {"BOBDEV": {"n": 1}}})
        self.send("t2", {self.bob.user_id: {"BOBDEV": {"n": 2}}})
        events = self.bob.sync()["to_device"]["events"]
        self.assertEqual([e["content"]["n"] for e in events], [1, 2])

    def test_transaction_ids_are_idempotent_per_device(self) -> None:
        """Retrying a transaction ID from the same device delivers nothing more; the same
        ID from another device of the same user is a new request."""
        msg = {self.bob.user_id: {"BOBDEV": {"n": 1}}}
        self.send("same", msg)
        self.send("same", msg)
        other_token = self.hs.run(self.hs.hs.accounts.login(self.alice.user_id, "DEV2")).access_token
        code, _ = self.hs.request(
            "PUT", "/sendToDevice/m.room_key_request/same", {"messages": msg}, token=other_token
        )
        self.assertEqual(code, 200)
        self.assertEqual(len(self.bob.sync()["to_device"]["events"]), 2)

    def test_wildcard_reaches_every_device_and_only_the_named_one_otherwise(self) -> None:
        """'*' means all the user's devices; a named device gets only its own message and
        unknown devices are ignored."""
        phone = self.hs.run(self.hs.hs.accounts.login(self.bob.user_id, "PHONE")).access_token
        self.send("w", {self.bob.user_id: {"*": {"all": True}}})
        self.send("n", {self.bob.user_id: {"PHONE": {"only": "phone"}, "GHOST": {"x": 1}}})
        laptop = [e["content"] for e in self.bob.sync()["to_device"]["events"]]
        self.assertEqual(laptop, [{"all": True}])
        code, body = self.hs.request("GET", "/sync?timeout=0", token=phone)
        self.assertEqual(
            [e["content"] for e in body["to_device"]["events"]], [{"all": True}, {"only": "phone"}]
        )

    def test_long_poll_woken_by_a_message(self) -> None:
        """A waiting sync returns as soon as a to-device message for the user arrives."""
        start = self.bob.sync()["next_batch"]
        d = self.hs.start_request("GET", f"/sync?since={start}&timeout=30000", self.bob.token)
        self.hs.clock.advance(1)
        self.assertNoResult(d)
        self.send("wake", {self.bob.user_id: {"BOBDEV": {"hello": 1}}})
        self.hs.tick()
        code, body = self.hs.finish(d)
        self.assertEqual(code, 200)
        self.assertEqual(body["to_device"]["events"][0]["content"], {"hello": 1})

    def test_more_than_a_page(self) -> None:
        """With more waiting than one response carries, the rest follow in the next ones
        and none is lost or repeated."""
        for i in range(130):
            self.send(f"m{i}", {self.bob.user_id: {"BOBDEV": {"i": i}}})
        first = self.bob.sync()
        got = [e["content"]["i"] for e in first["to_device"]["events"]]
        self.assertEqual(len(got), 100)
        second = self.bob.sync(first["next_batch"])
        got += [e["content"]["i"] for e in second["to_device"]["events"]]
        self.assertEqual(got, list(range(130)))
        self.assertEqual(self.bob.sync(second["next_batch"])["to_device"]["events"], [])

    def test_deleted_device_loses_its_inbox(self) -> None:
        """Logging a device out drops its queued messages."""
        self.send("x", {self.bob.user_id: {"BOBDEV": {"n": 1}}})
        self.hs.run(self.hs.hs.accounts.logout(self.bob.user_id, "BOBDEV", None))
        token = self.hs.run(self.hs.hs.accounts.login(self.bob.user_id, "BOBDEV")).access_token
        code, body = self.hs.request("GET", "/sync?timeout=0", token=token)
        self.assertEqual(body["to_device"]["events"], [])

    def test_remote_recipients_go_to_the_federation_outbox(self) -> None:
        """Messages for another server's users become one outbox entry per destination,
        at a to_device stream position, for the federation sender."""
        self.send("r", {
            "@x:remote.example": {"D1": {"a": 1}},
            "@y:remote.example": {"*": {"b": 2}},
            "@z:other.example": {"D": {"c": 3}},
        })
        store = self.hs.hs.e2ee.store  # type: ignore[union-attr]
        rows = self.hs.run(self.hs.hs.sync_services.bus.store.read_stream(0, 10**9, 1000))  # type: ignore[union-attr]
        positions = [r.position for r in rows if r.kind == "to_device" and r.ref is not None]
        self.assertEqual(len(positions), 2)
        outs = [self.hs.run(store.get_outbound_to_device(p)) for p in positions]
        by_dest = {o.destination: o for o in outs}
        self.assertEqual(set(by_dest), {"remote.example", "other.example"})
        remote = by_dest["remote.example"]
        self.assertEqual(remote.sender, self.alice.user_id)
        self.assertEqual(remote.message_type, "m.room_key_request")
        self.assertEqual(dict(remote.messages), {
            "@x:remote.example": {"D1": {"a": 1}}, "@y:remote.example": {"*": {"b": 2}}
        })

    def test_validation(self) -> None:
        """Missing messages: M_MISSING_PARAM; bad user ID: M_INVALID_PARAM; wrong shapes:
        M_BAD_JSON; no token: 401."""
        path = "/sendToDevice/m.x/v"
        code, body = self.alice.request("PUT", path, {})
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))
        code, body = self.alice.request("PUT", path, {"messages": {"nobody": {}}})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"))
        for bad in ({"messages": []}, {"messages": {"@b:test": []}},
                    {"messages": {"@b:test": {"D": "text"}}}):
            code, body = self.alice.request("PUT", path, bad)
            self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"), bad)
        code, body = self.hs.request("PUT", path, {"messages": {}})
        self.assertEqual(code, 401)


class TransactionIdLifetimeTests(SynchronousTestCase):
    def test_transaction_ids_forgotten_after_a_day(self) -> None:
        """A transaction ID is remembered for a day (retries are dropped), then forgotten."""
        hs = make_sync_homeserver(self)
        alice, bob = E2EUser(hs, "alice"), E2EUser(hs, "bob", "BOBDEV")
        msg = {"messages": {bob.user_id: {"BOBDEV": {"n": 1}}}}
        alice.ok("PUT", "/sendToDevice/m.x/t", msg)
        hs.clock.advance(3600 * 23)
        alice.ok("PUT", "/sendToDevice/m.x/t", msg)
        self.assertEqual(len(bob.sync()["to_device"]["events"]), 1)
        hs.clock.advance(3600 * 2)
        alice.ok("PUT", "/sendToDevice/m.x/other", msg)
        alice.ok("PUT", "/sendToDevice/m.x/t", msg)
        self.assertEqual(len(bob.sync()["to_device"]["events"]), 3)
