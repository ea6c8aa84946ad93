"""Server-side key backups: /room_keys/version CRUD and /room_keys/keys with the spec's
"better key wins" rules, etags and counts, and M_WRONG_ROOM_KEYS_VERSION."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.e2ee.helpers import E2EUser
from tests.sync.helpers import make_sync_homeserver

ALG = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:test"


def key(index: int = 0, forwarded: int = 0, verified: bool = False, tag: str = "x") -> dict[str, Any]:
    return {
        "first_message_index": index,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": {"ephemeral": tag, "ciphertext": tag, "mac": tag},
    }


class BackupVersionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")

    def test_version_lifecycle(self) -> None:
        """Create, read (latest and by number), update auth_data, delete; deleting twice
        succeeds, an unknown version is 404, and numbers are never reused."""
        a = self.alice
        code, body = a.request("GET", "/room_keys/version")
        self.assertEqual((code, body["errcode"]), (404, "M_NOT_FOUND"))
        v1 = a.ok("POST", "/room_keys/version", {"algorithm": ALG, "auth_data": {"public_key": "a"}})
        self.assertEqual(v1, {"version": "1"})
        got = a.ok("GET", "/room_keys/version")
        self.assertEqual(got, {"algorithm": ALG, "auth_data": {"public_key": "a"}, "count": 0,
                               "etag": got["etag"], "version": "1"})
        v2 = a.ok("POST", "/room_keys/version", {"algorithm": ALG, "auth_data": {"public_key": "b"}})
        self.assertEqual(a.ok("GET", "/room_keys/version")["version"], v2["version"])
        self.assertEqual(a.ok("GET", "/room_keys/version/1")["auth_data"], {"public_key": "a"})
        a.ok("PUT", "/room_keys/version/2", {"algorithm": ALG, "auth_data": {"public_key": "c"},
                                             "version": "2"})
        self.assertEqual(a.ok("GET", "/room_keys/version/2")["auth_data"], {"public_key": "c"})
        self.assertEqual(a.ok("DELETE", "/room_keys/version/2"), {})
        self.assertEqual(a.ok("DELETE", "/room_keys/version/2"), {})
        self.assertEqual(a.ok("GET", "/room_keys/version")["version"], "1")
        for path in ("/room_keys/version/2", "/room_keys/version/99", "/room_keys/version/abc"):
            code, body = a.request("GET", path)
            self.assertEqual((code, body["errcode"]), (404, "M_NOT_FOUND"), path)
        code, body = a.request("DELETE", "/room_keys/version/99")
        self.assertEqual(code, 404)
        self.assertEqual(a.ok("POST", "/room_keys/version", {"algorithm": ALG, "auth_data": {}}),
                         {"version": "3"})

    def test_version_validation(self) -> None:
        """Missing or wrong fields are refused; the algorithm of a version cannot change and
        a body version must match the path."""
        a = self.alice
        for bad, err in (
            ({"auth_data": {}}, "M_MISSING_PARAM"),
            ({"algorithm": ALG}, "M_MISSING_PARAM"),
            ({"algorithm": 1, "auth_data": {}}, "M_BAD_JSON"),
            ({"algorithm": ALG, "auth_data": []}, "M_BAD_JSON"),
            ({"algorithm": "m.unknown", "auth_data": {}}, "M_INVALID_PARAM"),
        ):
            code, body = a.request("POST", "/room_keys/version", bad)
            self.assertEqual((code, body["errcode"]), (400, err), bad)
        a.ok("POST", "/room_keys/version", {"algorithm": ALG, "auth_data": {}})
        code, body = a.request("PUT", "/room_keys/version/1", {
            "algorithm": "org.matrix.msc3270.v1.aes-hmac-sha2", "auth_data": {}})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"))
        code, body = a.request("PUT", "/room_keys/version/1", {
            "algorithm": ALG, "auth_data": {}, "version": "7"})
        self.assertEqual((code, body["errcode"]), (400, "M_INVALID_PARAM"))
        code, body = a.request("PUT", "/room_keys/version/5", {"algorithm": ALG, "auth_data": {}})
        self.assertEqual(code, 404)

    def test_backups_are_per_user(self) -> None:
        """Another user sees neither the versions nor the keys."""
        a = self.alice
        a.ok("POST", "/room_keys/version", {"algorithm": ALG, "auth_data": {}})
        a.ok("PUT", f"/room_keys/keys/{ROOM}/s1?version=1", key())
        bob = E2EUser(self.hs, "bob", "B")
        self.assertEqual(bob.request("GET", "/room_keys/version")[0], 404)
        self.assertEqual(bob.request("GET", "/room_keys/keys?version=1")[0], 404)


class BackupKeyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice = E2EUser(self.hs, "alice")
        self.alice.ok("POST", "/room_keys/version", {"algorithm": ALG, "auth_data": {}})

    def put(self, body: dict[str, Any], session: str = "s1") -> dict[str, Any]:
        return self.alice.ok("PUT", f"/room_keys/keys/{ROOM}/{session}?version=1", body)  # type: ignore[no-any-return]

    def stored(self, session: str = "s1") -> dict[str, Any]:
        return self.alice.ok("GET", f"/room_keys/keys/{ROOM}/{session}?version=1")  # type: ignore[no-any-return]

    def test_better_key_wins(self) -> None:
        """Verified beats unverified; then lower first_message_index; then lower
        forwarded_count; a full tie or a worse key keeps the stored one (etag unchanged)."""
        first = self.put(key(index=5, forwarded=2, tag="a"))
        self.assertEqual(first["count"], 1)
        self.assertEqual(self.put(key(index=9, tag="worse"))["etag"], first["etag"])
        self.assertEqual(self.stored()["session_data"]["ephemeral"], "a")
        self.put(key(index=5, forwarded=1, tag="fewer-forwards"))
        self.assertEqual(self.stored()["session_data"]["ephemeral"], "fewer-forwards")
        self.put(key(index=1, forwarded=9, tag="earlier"))
        self.assertEqual(self.stored()["session_data"]["ephemeral"], "earlier")
        self.put(key(index=9, forwarded=9, verified=True, tag="verified"))
        self.assertEqual(self.stored()["session_data"]["ephemeral"], "verified")
        self.put(key(index=0, forwarded=0, verified=False, tag="unverified"))
        self.assertEqual(self.stored()["session_data"]["ephemeral"], "verified")
        before = self.alice.ok("GET", "/room_keys/version/1")["etag"]
        self.put(key(index=9, forwarded=9, verified=True, tag="tie"))
        self.assertEqual(self.stored()["session_data"]["ephemeral"], "verified")
        self.assertEqual(self.alice.ok("GET", "/room_keys/version/1")["etag"], before)

    def test_bulk_upload_read_and_delete(self) -> None:
        """All keys, one room's, one session's: stored, read back in the spec's shapes,
        counted, and deleted at each level with etag and count updated."""
        a = self.alice
        body = a.ok("PUT", "/room_keys/keys?version=1", {"rooms": {
            ROOM: {"sessions": {"s1": key(), "s2": key()}},
            "!other:test": {"sessions": {"s3": key()}},
        }})
        self.assertEqual(body["count"], 3)
        a.ok("PUT", f"/room_keys/keys/{ROOM}?version=1", {"sessions": {"s4": key()}})
        everything = a.ok("GET", "/room_keys/keys?version=1")
        self.assertEqual(set(everything["rooms"][ROOM]["sessions"]), {"s1", "s2", "s4"})
        self.assertEqual(a.ok("GET", f"/room_keys/keys/{ROOM}?version=1")["sessions"]["s2"], key())
        self.assertEqual(a.ok("GET", "/room_keys/keys/!none:test?version=1"), {"sessions": {}})
        self.assertEqual(a.ok("GET", "/room_keys/version")["count"], 4)
        etag = a.ok("GET", "/room_keys/version")["etag"]
        after = a.ok("DELETE", f"/room_keys/keys/{ROOM}/s1?version=1")
        self.assertEqual(after["count"], 3)
        self.assertNotEqual(after["etag"], etag)
        self.assertEqual(a.ok("DELETE", f"/room_keys/keys/{ROOM}?version=1")["count"], 1)
        self.assertEqual(a.ok("DELETE", "/room_keys/keys?version=1")["count"], 0)
        self.assertEqual(a.ok("GET", "/room_keys/keys?version=1"), {"rooms": {}})
        code, body = a.request("GET", f"/room_keys/keys/{ROOM}/s1?version=1")
        self.assertEqual((code, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_only_the_current_version_is_writable(self) -> None:
        """Writing to an older version is 403 M_WRONG_ROOM_KEYS_VERSION naming the current
        one; reading it still works; an unknown version is 404."""
        a = self.alice
        self.put(key(tag="old"))
        a.ok("POST", "/room_keys/version", {"algorithm": ALG, "auth_data": {}})
        code, body = a.request("PUT", f"/room_keys/keys/{ROOM}/s1?version=1", key())
        self.assertEqual(
            (code, body["errcode"], body["current_version"]),
            (403, "M_WRONG_ROOM_KEYS_VERSION", "2"),
        )
        self.assertEqual(self.stored()["session_data"]["ephemeral"], "old")
        code, body = a.request("GET", "/room_keys/keys?version=9")
        self.assertEqual((code, body["errcode"]), (404, "M_NOT_FOUND"))
        code, body = a.request("PUT", f"/room_keys/keys/{ROOM}/s1", key())
        self.assertEqual((code, body["errcode"]), (400, "M_MISSING_PARAM"))

    def test_key_validation(self) -> None:
        """Each field of a session key must have its type: M_BAD_JSON otherwise."""
        for bad in (
            {**key(), "first_message_index": -1},
            {**key(), "forwarded_count": "1"},
            {**key(), "is_verified": 1},
            {**key(), "session_data": "x"},
        ):
            code, body = self.alice.request("PUT", f"/room_keys/keys/{ROOM}/s?version=1", bad)
            self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"), bad)
        code, body = self.alice.request("PUT", "/room_keys/keys?version=1", {"rooms": []})
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))
        code, body = self.alice.request("PUT", f"/room_keys/keys/{ROOM}?version=1", {})
        self.assertEqual((code, body["errcode"]), (400, "M_BAD_JSON"))
