"""POST /keys/upload, /keys/query, /keys/claim and GET /keys/changes, through the
homeserver's HTTP API."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.e2ee.helpers import E2EUser, Ed25519, device_keys, one_time_keys
from tests.sync.helpers import make_sync_homeserver


class KeyUploadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")

    def test_upload_device_keys_and_query_them(self) -> None:
        """Self-signed device keys are stored as sent and served by /keys/query with the
        device's display name under unsigned."""
        keys = device_keys(self.alice.user_id, "DEV1", self.alice.key)
        self.alice.ok("PUT", "/devices/DEV1", {"display_name": "Laptop"})
        body = self.alice.ok("POST", "/keys/upload", {"device_keys": keys})
        self.assertEqual(body, {"one_time_key_counts": {"signed_curve25519": 0}})
        got = self.alice.ok("POST", "/keys/query", {"device_keys": {self.alice.user_id: []}})
        served = got["device_keys"][self.alice.user_id]["DEV1"]
        self.assertEqual(served.pop("unsigned"), {"device_display_name": "Laptop"})
        self.assertEqual(served, keys)
        self.assertEqual(got["failures"], {})

    def test_device_keys_must_be_the_requesters_own(self) -> None:
        """Keys naming another user or another device are M_INVALID_PARAM."""
        other = device_keys("@bob:test", "DEV1", self.alice.key)
        code, body = self.alice.request("POST", "/keys/upload", {"device_keys": other})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"))
        other = device_keys(self.alice.user_id, "OTHER", self.alice.key)
        code, body = self.alice.request("POST", "/keys/upload", {"device_keys": other})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"))

    def test_device_keys_must_be_self_signed(self) -> None:
        """Keys signed by a key other than the device's ed25519 key, or tampered with after
        signing, are M_INVALID_SIGNATURE; unsigned ones too."""
        keys = device_keys(self.alice.user_id, "DEV1", self.alice.key)
        keys["keys"]["ed25519:DEV1"] = Ed25519().public
        code, body = self.alice.request("POST", "/keys/upload", {"device_keys": keys})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_SIGNATURE"))
        keys = device_keys(self.alice.user_id, "DEV1", self.alice.key)
        keys["algorithms"].append("m.extra")
        code, body = self.alice.request("POST", "/keys/upload", {"device_keys": keys})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_SIGNATURE"))
        del keys["signatures"]
        code, body = self.alice.request("POST", "/keys/upload", {"device_keys": keys})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_SIGNATURE"))

    def test_malformed_uploads(self) -> None:
        """Wrong shapes are M_BAD_JSON; a non-object body too; missing token is 401."""
        for bad in (
            {"device_keys": "x"},
            {"one_time_keys": {"nocolon": "k"}},
            {"one_time_keys": {"signed_curve25519:A": 5}},
            {"one_time_keys": {"signed_curve25519:A": {"signatures": {}}}},
            {"fallback_keys": []},
        ):
            code, body = self.alice.request("POST", "/keys/upload", bad)
            self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"), bad)
        code, body = self.hs.request("POST", "/keys/upload", {})
        self.assertEqual((code, body["errcode"]), (401, "M_MISSING_TOKEN"))

    def test_one_time_key_counts(self) -> None:
        """Counts per algorithm; re-uploading the same key is harmless; the same key ID with
        other content is refused and nothing of that upload is stored."""
        a = self.alice
        otks = one_time_keys(a.user_id, "DEV1", a.key, ["A", "B", "C"])
        body = a.ok("POST", "/keys/upload", {"one_time_keys": otks})
        self.assertEqual(body["one_time_key_counts"], {"signed_curve25519": 3})
        body = a.ok("POST", "/keys/upload", {"one_time_keys": otks, "device_keys": device_keys(
            a.user_id, "DEV1", a.key)})
        self.assertEqual(body["one_time_key_counts"], {"signed_curve25519": 3})
        clash = {"signed_curve25519:A": {"key": "different", "signatures": {}},
                 "signed_curve25519:D": {"key": "new", "signatures": {}}}
        code, err = a.request("POST", "/keys/upload", {"one_time_keys": clash})
        self.assertEqual((code, err["errcode"]), (400, "M_INVALID_PARAM"))
        body = a.ok("POST", "/keys/upload", {"one_time_keys": {"curve25519:X": "plainkey"}})
        self.assertEqual(body["one_time_key_counts"], {"signed_curve25519": 3, "curve25519": 1})

    def test_fallback_keys_one_per_algorithm(self) -> None:
        """Two fallback keys of one algorithm in one upload are M_INVALID_PARAM."""
        a = self.alice
        two = one_time_keys(a.user_id, "DEV1", a.key, ["F1", "F2"], fallback=True)
        code, err = a.request("POST", "/keys/upload", {"fallback_keys": two})
        self.assertEqual((code, err["errcode"]), (400, "M_INVALID_PARAM"))


class KeyClaimTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")
        self.bob = E2EUser(self.hs, "bob", "BOBDEV")

    def claim(self, who: E2EUser, device: str = "DEV1", alg: str = "signed_curve25519") -> dict:
        body = who.ok(
            "POST", "/keys/claim", {"one_time_keys": {self.alice.user_id: {device: alg}}}
        )
        self.assertEqual(body["failures"], {})
        return body["one_time_keys"].get(self.alice.user_id, {}).get(device, {})  # type: ignore[no-any-return]

    def test_claimed_once_in_upload_order_then_fallback(self) -> None:
        """One-time keys come out oldest upload first, each exactly once; then the fallback
        key, again and again, which /sync then reports as used (no unused type left)."""
        a = self.alice
        a.ok("POST", "/keys/upload", {"one_time_keys": one_time_keys(a.user_id, "DEV1", a.key, ["Z"])})
        a.ok("POST", "/keys/upload", {
            "one_time_keys": one_time_keys(a.user_id, "DEV1", a.key, ["A"]),
            "fallback_keys": one_time_keys(a.user_id, "DEV1", a.key, ["FB"], fallback=True),
        })
        sync = a.sync()
        self.assertEqual(sync["device_unused_fallback_key_types"], ["signed_curve25519"])
        self.assertEqual(sync["device_one_time_keys_count"], {"signed_curve25519": 2})
        self.assertEqual(list(self.claim(self.bob)), ["signed_curve25519:Z"])
        self.assertEqual(list(self.claim(self.bob)), ["signed_curve25519:A"])
        fb = self.claim(self.bob)
        self.assertEqual(list(fb), ["signed_curve25519:FB"])
        self.assertTrue(fb["signed_curve25519:FB"]["fallback"])
        self.assertEqual(list(self.claim(self.bob)), ["signed_curve25519:FB"])
        sync = a.sync()
        self.assertEqual(sync["device_unused_fallback_key_types"], [])
        self.assertEqual(sync["device_one_time_keys_count"], {"signed_curve25519": 0})

    def test_new_fallback_key_is_unused(self) -> None:
        """Replacing a used fallback key makes the algorithm unused again; re-uploading the
        same used key does not."""
        a = self.alice
        fb = one_time_keys(a.user_id, "DEV1", a.key, ["FB"], fallback=True)
        a.ok("POST", "/keys/upload", {"fallback_keys": fb})
        self.claim(self.bob)
        a.ok("POST", "/keys/upload", {"fallback_keys": fb})
        self.assertEqual(a.sync()["device_unused_fallback_key_types"], [])
        fb2 = one_time_keys(a.user_id, "DEV1", a.key, ["FB2"], fallback=True)
        a.ok("POST", "/keys/upload", {"fallback_keys": fb2})
        self.assertEqual(a.sync()["device_unused_fallback_key_types"], ["signed_curve25519"])
        self.assertEqual(list(self.claim(self.bob)), ["signed_curve25519:FB2"])

    def test_unknown_devices_and_algorithms_are_left_out(self) -> None:
        """No keys, an unknown device or algorithm: the device is missing, no failure."""
        self.assertEqual(self.claim(self.bob), {})
        self.assertEqual(self.claim(self.bob, "NOPE"), {})
        a = self.alice
        a.ok("POST", "/keys/upload", {"one_time_keys": one_time_keys(a.user_id, "DEV1", a.key, ["A"])})
        self.assertEqual(self.claim(self.bob, alg="other_alg"), {})

    def test_claim_validation(self) -> None:
        """A non-object, a bad user ID or a non-string algorithm is refused."""
        code, body = self.bob.request("POST", "/keys/claim", {"one_time_keys": []})
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))
        code, body = self.bob.request("POST", "/keys/claim", {"one_time_keys": {"bob": {}}})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"))
        code, body = self.bob.request(
            "POST", "/keys/claim", {"one_time_keys": {self.alice.user_id: {"DEV1": 1}}}
        )
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))

    def test_remote_users_without_federation_are_failures(self) -> None:
        """A remote user's server is listed under failures when it cannot be asked."""
        self.hs.hs.e2ee.keys.remote = None  # type: ignore[union-attr]
        body = self.bob.ok(
            "POST", "/keys/claim", {"one_time_keys": {"@x:elsewhere.example": {"D": "a"}}}
        )
        self.assertIn("elsewhere.example", body["failures"])
        body = self.bob.ok("POST", "/keys/query", {"device_keys": {"@x:elsewhere.example": []}})
        self.assertIn("elsewhere.example", body["failures"])


class KeyQueryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")

    def test_query_devices_filter_and_deleted_devices(self) -> None:
        """Asking for named devices returns only those; a deleted device's keys are gone,
        and so are its one-time keys (a device re-created with the same ID starts clean)."""
        a = self.alice
        second = self.hs.run(self.hs.hs.accounts.login(a.user_id, "DEV2")).access_token
        key2 = Ed25519()
        self.hs.request("POST", "/keys/upload", {
            "device_keys": device_keys(a.user_id, "DEV2", key2),
            "one_time_keys": one_time_keys(a.user_id, "DEV2", key2, ["A"]),
        }, token=second)
        a.upload_device_keys()
        q = a.ok("POST", "/keys/query", {"device_keys": {a.user_id: ["DEV2"]}})
        self.assertEqual(list(q["device_keys"][a.user_id]), ["DEV2"])
        self.hs.run(self.hs.hs.accounts.logout(a.user_id, "DEV2", None))
        q = a.ok("POST", "/keys/query", {"device_keys": {a.user_id: []}})
        self.assertEqual(list(q["device_keys"][a.user_id]), ["DEV1"])
        self.hs.run(self.hs.hs.accounts.login(a.user_id, "DEV2"))
        q = a.ok("POST", "/keys/query", {"device_keys": {a.user_id: []}})
        self.assertEqual(list(q["device_keys"][a.user_id]), ["DEV1"])
        claimed = a.ok("POST", "/keys/claim", {"one_time_keys": {a.user_id: {"DEV2": "signed_curve25519"}}})
        self.assertEqual(claimed["one_time_keys"], {})

    def test_unknown_local_user(self) -> None:
        """An unknown local user answers an empty device map, not a failure."""
        q = self.alice.ok("POST", "/keys/query", {"device_keys": {"@nobody:test": []}})
        self.assertEqual(q["device_keys"], {"@nobody:test": {}})
        self.assertEqual(q["failures"], {})

    def test_query_validation(self) -> None:
        """device_keys must map user IDs to arrays of strings."""
        for bad in ({}, {"device_keys": []}, {"device_keys": {"@a:test": "DEV1"}}):
            code, body = self.alice.request("POST", "/keys/query", bad)
            self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"), bad)
        code, body = self.alice.request("POST", "/keys/query", {"device_keys": {"x": []}})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"))
        code, body = self.alice.request(
            "POST", "/keys/query", {"device_keys": {}, "timeout": "soon"}
        )
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))


class KeyChangesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")
        self.bob = E2EUser(self.hs, "bob", "BOBDEV")
        self.carol = E2EUser(self.hs, "carol", "CAROLDEV")

    def test_changes_between_tokens(self) -> None:
        """/keys/changes lists users sharing a room whose keys changed between the two
        tokens, and users who left every shared room; strangers never appear."""
        room = self.alice.create_room(preset="public_chat")
        self.bob.join(room)
        start = self.alice.sync()["next_batch"]
        self.bob.upload_device_keys()
        self.carol.upload_device_keys()
        mid = self.alice.sync(start)["next_batch"]
        body = self.alice.ok("GET", f"/keys/changes?from={start}&to={mid}")
        self.assertEqual(body, {"changed": [self.bob.user_id], "left": []})
        self.bob.leave(room)
        end = self.alice.sync(mid)["next_batch"]
        body = self.alice.ok("GET", f"/keys/changes?from={mid}&to={end}")
        self.assertEqual(body, {"changed": [], "left": [self.bob.user_id]})

    def test_bad_tokens(self) -> None:
        """Missing or malformed tokens are 400s naming the parameter."""
        code, body = self.alice.request("GET", "/keys/changes?from=s1")
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))
        code, body = self.alice.request("GET", "/keys/changes?from=xyz&to=s2")
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"))
