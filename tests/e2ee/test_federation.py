"""End-to-end encryption across two in-memory homeservers: remote /keys/query and
/keys/claim through federation, to-device messages as m.direct_to_device EDUs, and device
list updates as m.device_list_update EDUs."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.e2ee.helpers import Ed25519, device_keys, one_time_keys
from tests.federation.rooms_fixtures import Federation, q


class CrossServerE2EETests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")
        self.alice_dev = self.fed["a.test"].run(
            self.fed["a.test"].hs.accounts.store.get_devices(self.alice))[0].device_id
        self.bob_dev = self.fed["b.test"].run(
            self.fed["b.test"].hs.accounts.store.get_devices(self.bob))[0].device_id
        self.alice_key = Ed25519()

    def a(self, method: str, path: str, body: Any = None) -> Any:
        return self.fed.ok("a.test", method, path, body, self.alice_tok)

    def b(self, method: str, path: str, body: Any = None) -> Any:
        return self.fed.ok("b.test", method, path, body, self.bob_tok)

    def test_remote_query_and_claim(self) -> None:
        """bob (b.test) reads alice's (a.test) device keys and claims her one-time key, once,
        through federation."""
        keys = device_keys(self.alice, self.alice_dev, self.alice_key)
        self.a("POST", "/keys/upload", {
            "device_keys": keys,
            "one_time_keys": one_time_keys(self.alice, self.alice_dev, self.alice_key, ["K"]),
        })
        got = self.b("POST", "/keys/query", {"device_keys": {self.alice: []}})
        self.assertEqual(got["failures"], {})
        served = dict(got["device_keys"][self.alice][self.alice_dev])
        served.pop("unsigned", None)
        self.assertEqual(served, keys)
        claim = {"one_time_keys": {self.alice: {self.alice_dev: "signed_curve25519"}}}
        first = self.b("POST", "/keys/claim", claim)
        self.assertEqual(list(first["one_time_keys"][self.alice][self.alice_dev]),
                         ["signed_curve25519:K"])
        second = self.b("POST", "/keys/claim", claim)
        self.assertEqual(second["one_time_keys"].get(self.alice, {}), {})

    def test_to_device_over_federation(self) -> None:
        """alice's to-device message for bob's device reaches bob's /sync on b.test."""
        self.a("PUT", "/sendToDevice/m.room_key_request/t1",
               {"messages": {self.bob: {self.bob_dev: {"hello": "bob"}}}})
        self.fed.settle()
        events = self.fed.sync("b.test", self.bob_tok)["to_device"]["events"]
        self.assertEqual(events, [{"type": "m.room_key_request", "sender": self.alice,
                                   "content": {"hello": "bob"}}])

    def test_device_list_update_over_federation(self) -> None:
        """When alice, sharing a room with bob, uploads keys, bob's /sync on b.test lists
        her as changed."""
        room = self.fed.create_room("a.test", self.alice_tok, preset="public_chat")
        self.b("POST", f"/join/{q(room)}?server_name=a.test", {})
        self.fed.settle()
        since = self.fed.sync("b.test", self.bob_tok)["next_batch"]
        self.a("POST", "/keys/upload", {
            "device_keys": device_keys(self.alice, self.alice_dev, self.alice_key)})
        self.fed.settle()
        body = self.b("GET", f"/sync?timeout=0&since={since}")
        self.assertIn(self.alice, body["device_lists"]["changed"])
