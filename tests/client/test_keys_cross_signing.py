"""Cross-signing: POST /keys/device_signing/upload (UIA only to replace existing keys) and
POST /keys/signatures/upload (each signature checked, failures reported per key)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.client.test_account import password_auth
from tests.e2ee.helpers import E2EUser, Ed25519, cross_signing_key
from tests.sync.helpers import make_sync_homeserver


class CrossSigningUser(E2EUser):
    def make_keys(self) -> dict[str, Any]:
        self.master, self.ssk, self.usk = Ed25519(), Ed25519(), Ed25519()
        return {
            "master_key": cross_signing_key(self.user_id, "master", self.master),
            "self_signing_key": cross_signing_key(self.user_id, "self_signing", self.ssk, self.master),
            "user_signing_key": cross_signing_key(self.user_id, "user_signing", self.usk, self.master),
        }


class DeviceSigningUploadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = CrossSigningUser(self.hs, "alice")
        self.bob = CrossSigningUser(self.hs, "bob", "BOBDEV")

    def test_first_upload_needs_no_uia_and_is_served(self) -> None:
        """The first keys upload without UIA; /keys/query serves master and self-signing
        keys to everyone and the user-signing key only to its owner."""
        keys = self.alice.make_keys()
        self.assertEqual(self.alice.ok("POST", "/keys/device_signing/upload", keys), {})
        mine = self.alice.ok("POST", "/keys/query", {"device_keys": {self.alice.user_id: []}})
        self.assertEqual(mine["master_keys"][self.alice.user_id], keys["master_key"])
        self.assertEqual(mine["self_signing_keys"][self.alice.user_id], keys["self_signing_key"])
        self.assertEqual(mine["user_signing_keys"][self.alice.user_id], keys["user_signing_key"])
        theirs = self.bob.ok("POST", "/keys/query", {"device_keys": {self.alice.user_id: []}})
        self.assertIn(self.alice.user_id, theirs["master_keys"])
        self.assertEqual(theirs["user_signing_keys"], {})

    def test_same_keys_again_need_no_uia_new_keys_do(self) -> None:
        """Repeating the stored keys is idempotent without UIA (a lost response); new keys
        once a master key exists need the password, after which they replace the old."""
        keys = self.alice.make_keys()
        self.alice.ok("POST", "/keys/device_signing/upload", keys)
        self.assertEqual(self.alice.ok("POST", "/keys/device_signing/upload", keys), {})
        new = self.alice.make_keys()
        code, body = self.alice.request("POST", "/keys/device_signing/upload", new)
        self.assertEqual(code, 401)
        self.assertEqual(body["flows"], [{"stages": ["m.login.password"]}])
        new["auth"] = password_auth("alice", "pw", body["session"])
        self.assertEqual(self.alice.ok("POST", "/keys/device_signing/upload", new), {})
        got = self.alice.ok("POST", "/keys/query", {"device_keys": {self.alice.user_id: []}})
        self.assertEqual(got["master_keys"][self.alice.user_id]["keys"],
                         new["master_key"]["keys"])

    def test_signatures_checked(self) -> None:
        """A self-signing key not signed by the master key is M_INVALID_SIGNATURE; without
        any master key it is M_MISSING_PARAM; nothing is stored on failure."""
        keys = self.alice.make_keys()
        keys["self_signing_key"] = cross_signing_key(
            self.alice.user_id, "self_signing", Ed25519(), Ed25519()
        )
        code, body = self.alice.request("POST", "/keys/device_signing/upload", keys)
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_SIGNATURE"))
        got = self.alice.ok("POST", "/keys/query", {"device_keys": {self.alice.user_id: []}})
        self.assertEqual(got["master_keys"], {})
        only_ssk = {"self_signing_key": self.alice.make_keys()["self_signing_key"]}
        code, body = self.alice.request("POST", "/keys/device_signing/upload", only_ssk)
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))

    def test_malformed_keys(self) -> None:
        """Wrong user, wrong usage, two keys in one: M_INVALID_PARAM; a non-object: M_BAD_JSON."""
        keys = self.alice.make_keys()
        for field, value in (
            ("master_key", {**keys["master_key"], "user_id": self.bob.user_id}),
            ("master_key", {**keys["master_key"], "usage": ["self_signing"]}),
            ("master_key", {**keys["master_key"], "keys": {"ed25519:a": "a", "ed25519:b": "b"}}),
            ("master_key", {**keys["master_key"], "keys": {"ed25519:abc": "xyz"}}),
        ):
            code, body = self.alice.request("POST", "/keys/device_signing/upload", {field: value})
            self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"), value)
        code, body = self.alice.request("POST", "/keys/device_signing/upload", {"master_key": 1})
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))

    def test_a_key_may_not_be_a_device_id(self) -> None:
        """A cross-signing public key equal to one of the user's device IDs is 403."""
        keys = self.alice.make_keys()
        self.hs.run(self.hs.hs.accounts.login(self.alice.user_id, self.alice.master.public))
        code, body = self.alice.request("POST", "/keys/device_signing/upload", keys)
        self.assertEqual((code, body["errcode"]), (403, "M_FORBIDDEN"))


class SignatureUploadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = CrossSigningUser(self.hs, "alice")
        self.bob = CrossSigningUser(self.hs, "bob", "BOBDEV")
        self.alice_keys = self.alice.make_keys()
        self.alice.ok("POST", "/keys/device_signing/upload", self.alice_keys)
        self.bob_keys = self.bob.make_keys()
        self.bob.ok("POST", "/keys/device_signing/upload", self.bob_keys)
        self.alice.upload_device_keys()

    def _device(self) -> dict[str, Any]:
        got = self.alice.ok("POST", "/keys/query", {"device_keys": {self.alice.user_id: []}})
        dev = got["device_keys"][self.alice.user_id]["DEV1"]
        dev.pop("unsigned")
        return dev  # type: ignore[no-any-return]

    def test_self_signing_a_device(self) -> None:
        """A device signed by the user's self-signing key: stored and served with it."""
        a = self.alice
        signed = a.ssk.sign(self._device(), a.user_id, f"ed25519:{a.ssk.public}")
        body = a.ok("POST", "/keys/signatures/upload", {a.user_id: {"DEV1": signed}})
        self.assertEqual(body, {"failures": {}})
        self.assertEqual(self._device()["signatures"], signed["signatures"])

    def test_device_signing_the_master_key(self) -> None:
        """The master key signed by one of the user's devices is accepted."""
        a = self.alice
        signed = a.key.sign(self.alice_keys["master_key"], a.user_id, "ed25519:DEV1")
        body = a.ok("POST", "/keys/signatures/upload", {a.user_id: {a.master.public: signed}})
        self.assertEqual(body, {"failures": {}})
        got = a.ok("POST", "/keys/query", {"device_keys": {a.user_id: []}})
        self.assertIn("ed25519:DEV1", got["master_keys"][a.user_id]["signatures"][a.user_id])

    def test_signing_another_users_master_key(self) -> None:
        """Alice's user-signing key signs Bob's master key; Alice sees the signature, Bob's
        other viewers do not."""
        a, b = self.alice, self.bob
        signed = a.usk.sign(self.bob_keys["master_key"], a.user_id, f"ed25519:{a.usk.public}")
        body = a.ok("POST", "/keys/signatures/upload", {b.user_id: {b.master.public: signed}})
        self.assertEqual(body, {"failures": {}})
        seen = a.ok("POST", "/keys/query", {"device_keys": {b.user_id: []}})
        self.assertIn(a.user_id, seen["master_keys"][b.user_id]["signatures"])
        carol = E2EUser(self.hs, "carol", "C")
        seen = carol.ok("POST", "/keys/query", {"device_keys": {b.user_id: []}})
        self.assertNotIn(a.user_id, seen["master_keys"][b.user_id].get("signatures", {}))

    def test_failures_are_per_key(self) -> None:
        """A bad signature, a tampered object and an unknown key each fail on their own;
        a good one in the same request is still stored."""
        a, b = self.alice, self.bob
        good = a.ssk.sign(self._device(), a.user_id, f"ed25519:{a.ssk.public}")
        forged = Ed25519().sign(self._device(), a.user_id, f"ed25519:{a.ssk.public}")
        tampered = a.usk.sign(
            {**self.bob_keys["master_key"], "usage": ["master", "x"]},
            a.user_id,
            f"ed25519:{a.usk.public}",
        )
        body = a.ok("POST", "/keys/signatures/upload", {
            a.user_id: {"DEV1": good, "NOSUCH": good},
            b.user_id: {b.master.public: tampered},
        })
        failures = body["failures"]
        self.assertEqual(failures[a.user_id]["NOSUCH"]["errcode"], "M_NOT_FOUND")
        self.assertEqual(failures[b.user_id][b.master.public]["errcode"], "M_INVALID_SIGNATURE")
        self.assertNotIn("DEV1", failures[a.user_id])
        body = a.ok("POST", "/keys/signatures/upload", {a.user_id: {"DEV1": forged}})
        self.assertEqual(body["failures"][a.user_id]["DEV1"]["errcode"], "M_INVALID_SIGNATURE")
        code, err = a.request("POST", "/keys/signatures/upload", {a.user_id: ["x"]})
        self.assertEqual((code, err["errcode"]), (400, "M_BAD_JSON"))

    def test_signature_upload_changes_device_lists(self) -> None:
        """Bob, sharing a room, sees Alice in device_lists.changed after she signs her device."""
        a, b = self.alice, self.bob
        room = a.create_room(preset="public_chat")
        b.join(room)
        since = b.sync()["next_batch"]
        signed = a.ssk.sign(self._device(), a.user_id, f"ed25519:{a.ssk.public}")
        a.ok("POST", "/keys/signatures/upload", {a.user_id: {"DEV1": signed}})
        self.assertIn(a.user_id, b.sync(since)["device_lists"]["changed"])
