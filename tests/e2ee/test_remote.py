"""The federation seams of end-to-end encryption, with a scripted remote server: what other
servers answer is believed only about their own users, failures are reported per server,
and inbound device EDUs are believed only from the user's own server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.e2ee.remote import InboundDeviceEdus
from tests.e2ee.helpers import E2EUser, Ed25519, cross_signing_key
from tests.sync.helpers import make_sync_homeserver

REMOTE = "@carol:remote.example"


class ScriptedRemote:
    """A RemoteKeyQuerier answering from a fixed script (or failing, when told to)."""

    def __init__(self, query: Mapping[str, Any], claim: Mapping[str, Any]) -> None:
        self.query, self.claim = query, claim
        self.asked: list[tuple[str, Any]] = []
        self.fail = False

    async def query_keys(self, destination: str, device_keys: Mapping[str, list[str]],
                         timeout_ms: int) -> Mapping[str, Any]:
        self.asked.append((destination, dict(device_keys)))
        if self.fail:
            raise ConnectionError("unreachable")
        return self.query

    async def claim_keys(self, destination: str, one_time_keys: Mapping[str, Mapping[str, str]],
                         timeout_ms: int) -> Mapping[str, Any]:
        if self.fail:
            raise ConnectionError("unreachable")
        return self.claim


class RemoteKeysTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")
        self.master = Ed25519()
        carol_master = cross_signing_key(REMOTE, "master", self.master)
        self.remote = ScriptedRemote(
            query={
                "device_keys": {
                    REMOTE: {
                        "CD": {"user_id": REMOTE, "device_id": "CD", "keys": {}},
                        "LIE": {"user_id": REMOTE, "device_id": "OTHER", "keys": {}},
                    },
                    "@mallory:test": {"X": {"user_id": "@mallory:test", "device_id": "X"}},
                },
                "master_keys": {REMOTE: carol_master, "@alice:test": {"user_id": "@alice:test"}},
            },
            claim={"one_time_keys": {REMOTE: {"CD": {"signed_curve25519:A": {"key": "k"}}},
                                     "@alice:test": {"DEV1": {"x:y": "forged"}}}},
        )
        self.hs.hs.e2ee.keys.remote = self.remote  # type: ignore[union-attr]
        self.carol_master = carol_master

    def test_only_the_servers_own_users_and_consistent_devices(self) -> None:
        """Keys a server sends about users it was not asked about, or a device filed under
        another ID, are dropped."""
        got = self.alice.ok("POST", "/keys/query", {"device_keys": {REMOTE: []}})
        self.assertEqual(self.remote.asked, [("remote.example", {REMOTE: []})])
        self.assertEqual(list(got["device_keys"]), [REMOTE])
        self.assertEqual(list(got["device_keys"][REMOTE]), ["CD"])
        self.assertEqual(list(got["master_keys"]), [REMOTE])
        claimed = self.alice.ok("POST", "/keys/claim", {"one_time_keys": {REMOTE: {"CD": "signed_curve25519"}}})
        self.assertEqual(claimed["one_time_keys"], {REMOTE: {"CD": {"signed_curve25519:A": {"key": "k"}}}})

    def test_unreachable_server_is_a_failure(self) -> None:
        """A server that cannot be asked is listed under failures; local answers still come."""
        self.remote.fail = True
        got = self.alice.ok("POST", "/keys/query", {"device_keys": {REMOTE: [], self.alice.user_id: []}})
        self.assertEqual(list(got["failures"]), ["remote.example"])
        self.assertIn(self.alice.user_id, got["device_keys"])
        claimed = self.alice.ok("POST", "/keys/claim", {"one_time_keys": {REMOTE: {"CD": "a"}}})
        self.assertEqual(list(claimed["failures"]), ["remote.example"])

    def test_own_signature_of_a_remote_master_key(self) -> None:
        """Alice signs a remote user's master key with her user-signing key: stored, and
        merged into that key when she queries it again."""
        a = self.alice
        master, usk = Ed25519(), Ed25519()
        a.ok("POST", "/keys/device_signing/upload", {
            "master_key": cross_signing_key(a.user_id, "master", master),
            "user_signing_key": cross_signing_key(a.user_id, "user_signing", usk, master),
        })
        signed = usk.sign(self.carol_master, a.user_id, f"ed25519:{usk.public}")
        body = a.ok("POST", "/keys/signatures/upload", {REMOTE: {self.master.public: signed}})
        self.assertEqual(body, {"failures": {}})
        got = a.ok("POST", "/keys/query", {"device_keys": {REMOTE: []}})
        self.assertEqual(got["master_keys"][REMOTE]["signatures"][a.user_id],
                         {f"ed25519:{usk.public}": signed["signatures"][a.user_id][f"ed25519:{usk.public}"]})


class InboundDeviceEduTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")
        store = self.hs.hs.e2ee.store  # type: ignore[union-attr]
        self.edus = InboundDeviceEdus(clock=self.hs.clock, store=store, server_name="test")

    def deliver(self, origin: str, edu_type: str, content: dict[str, Any]) -> None:
        self.hs.run(self.edus.on_edu(origin, edu_type, content))

    def test_to_device_from_the_senders_server_once(self) -> None:
        """m.direct_to_device reaches our device once per message_id, and only when the
        sender belongs to the sending server."""
        content = {"sender": REMOTE, "type": "m.room_key", "message_id": "m1",
                   "messages": {self.alice.user_id: {"*": {"k": 1}}, "@x:elsewhere": {"D": {}}}}
        self.deliver("remote.example", "m.direct_to_device", content)
        self.deliver("remote.example", "m.direct_to_device", content)
        self.deliver("evil.example", "m.direct_to_device", {**content, "message_id": "m2"})
        self.deliver("remote.example", "m.direct_to_device", {"sender": REMOTE})
        events = self.alice.sync()["to_device"]["events"]
        self.assertEqual(events, [{"type": "m.room_key", "sender": REMOTE, "content": {"k": 1}}])

    def test_device_list_updates_from_the_users_server(self) -> None:
        """A device-list update for a user who shares a room marks them changed; one sent
        by another server about that user is ignored."""
        store = self.hs.hs.e2ee.store  # type: ignore[union-attr]
        start = self.hs.db.positions.current
        self.deliver("evil.example", "m.device_list_update", {"user_id": REMOTE, "device_id": "D"})
        self.assertEqual(self.hs.run(store.get_device_list_changes(start, 10**12)), set())
        self.deliver("remote.example", "m.device_list_update", {"user_id": REMOTE, "device_id": "D"})
        self.deliver("remote.example", "m.signing_key_update", {"user_id": REMOTE})
        self.assertEqual(self.hs.run(store.get_device_list_changes(start, 10**12)), {REMOTE})
