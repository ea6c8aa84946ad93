"""The end-to-end encryption stores' contract, run on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from ruma.storage.accounts import AccountStore
from ruma.storage.bus import BusStore
from ruma.storage.e2ee import E2EStore, OneTimeKeyConflict
from ruma.storage.key_backup import KeyBackupStore, RoomKey
from tests.storage.engines import EngineTestCase, PostgresEngine, SQLiteEngine

A = "@a:hs"
B = "@b:hs"


def rk(session: str, index: int = 0, forwarded: int = 0, verified: bool = False,
       tag: str = "t") -> RoomKey:
    return RoomKey("!r:hs", session, index, forwarded, verified, {"ciphertext": tag})


class E2EStoreContract(EngineTestCase if TYPE_CHECKING else object):
    def setUp(self) -> None:
        self.db = self.make_db()
        self.store = E2EStore(self.db)
        self.accounts = AccountStore(self.db)
        for user, device in ((A, "D1"), (A, "D2"), (B, "B1")):
            self.run_(self.accounts.create_device(user, device, None, created_ts=1))

    def run_(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))

    def kinds(self, after: int) -> list[tuple[str, str | None, str | None]]:
        rows = self.run_(BusStore(self.db).read_stream(after, 10**12, 1000))
        return [(r.kind, r.user_id, r.ref) for r in rows]

    def test_device_keys_change_only_when_different(self) -> None:
        """Storing keys takes a device_list position only when they differ from the stored
        ones; queries merge others' signatures and join on existing devices."""
        start = self.db.positions.current
        self.assertTrue(self.run_(self.store.set_device_keys(A, "D1", {"k": 1})))
        self.assertFalse(self.run_(self.store.set_device_keys(A, "D1", {"k": 1})))
        self.assertTrue(self.run_(self.store.set_device_keys(A, "D1", {"k": 2})))
        self.assertEqual(self.kinds(start), [("device_list", A, "D1")] * 2)
        self.run_(self.store.add_signatures([(A, "D1", A, "ed25519:ssk", "sig")]))
        got = self.run_(self.store.query_device_keys({A: [], B: []}))
        self.assertEqual(got[A]["D1"]["signatures"], {A: {"ed25519:ssk": "sig"}})
        self.assertEqual(got[B], {})
        self.assertEqual(self.run_(self.store.get_device_list_changes(start, 10**12)), {A})

    def test_one_time_keys_claimed_once_oldest_first(self) -> None:
        """Keys come out oldest upload first and never twice; a conflicting re-upload is
        refused as a whole; counts follow."""
        self.run_(self.store.add_one_time_keys(A, "D1", [("alg", "k1", {"key": "1"})]))
        self.run_(self.store.add_one_time_keys(A, "D1", [("alg", "k0", {"key": "0"}),
                                                        ("alg", "k1", {"key": "1"})]))
        self.assertEqual(self.run_(self.store.count_one_time_keys(A, "D1")), {"alg": 2})
        self.failureResultOf(
            Deferred.fromCoroutine(self.store.add_one_time_keys(
                A, "D1", [("alg", "k9", {"key": "9"}), ("alg", "k0", {"key": "other"})])),
            OneTimeKeyConflict,
        )
        self.assertEqual(self.run_(self.store.count_one_time_keys(A, "D1")), {"alg": 2})
        first = self.run_(self.store.claim_keys([(A, "D1", "alg"), (A, "D2", "alg")]))
        self.assertEqual(first, {(A, "D1"): {"alg:k1": {"key": "1"}}})
        second = self.run_(self.store.claim_keys([(A, "D1", "alg")]))
        self.assertEqual(second, {(A, "D1"): {"alg:k0": {"key": "0"}}})
        self.assertEqual(self.run_(self.store.claim_keys([(A, "D1", "alg")])), {})

    def test_fallback_keys(self) -> None:
        """The fallback key is handed out when no one-time key is left, and marked used;
        the same key re-uploaded stays used, a new one is unused."""
        self.run_(self.store.set_fallback_keys(A, "D1", [("alg", "f1", {"key": "f"})]))
        self.assertEqual(self.run_(self.store.get_unused_fallback_key_types(A, "D1")), ["alg"])
        for _ in range(2):
            got = self.run_(self.store.claim_keys([(A, "D1", "alg")]))
            self.assertEqual(got, {(A, "D1"): {"alg:f1": {"key": "f"}}})
        self.assertEqual(self.run_(self.store.get_unused_fallback_key_types(A, "D1")), [])
        self.run_(self.store.set_fallback_keys(A, "D1", [("alg", "f1", {"key": "f"})]))
        self.assertEqual(self.run_(self.store.get_unused_fallback_key_types(A, "D1")), [])
        self.run_(self.store.set_fallback_keys(A, "D1", [("alg", "f2", {"key": "g"})]))
        self.assertEqual(self.run_(self.store.get_unused_fallback_key_types(A, "D1")), ["alg"])

    def test_cross_signing_keys_and_signatures(self) -> None:
        """Keys per type; a new master key drops the old one's signatures; signatures by a
        signer are found again for that signer."""
        self.run_(self.store.set_cross_signing_keys(A, {"master": ("M1", {"keys": {"ed25519:M1": "M1"}})}))
        self.run_(self.store.add_signatures([(A, "M1", A, "ed25519:D1", "s"),
                                            (A, "M1", B, "ed25519:usk", "t")]))
        got = self.run_(self.store.get_cross_signing_keys([A]))
        self.assertEqual(got[A]["master"]["signatures"], {A: {"ed25519:D1": "s"}, B: {"ed25519:usk": "t"}})
        self.assertEqual(self.run_(self.store.get_signatures_by(B, [A])),
                         {(A, "M1"): {"ed25519:usk": "t"}})
        self.run_(self.store.set_cross_signing_keys(A, {"master": ("M2", {"keys": {"ed25519:M2": "M2"}})}))
        got = self.run_(self.store.get_cross_signing_keys([A]))
        self.assertNotIn("signatures", got[A]["master"])
        self.assertEqual(self.run_(self.store.get_signatures_by(B, [A])), {})

    def test_to_device_inbox_acknowledged_by_later_token(self) -> None:
        """Messages go to existing devices ('*' = all); a transaction ID is used once; a
        message stays until a sync from a token at or past the response that carried it."""
        base = dict(sender=B, sender_key="device:B1", message_type="m.t", remote={}, now_ms=1)
        self.assertTrue(self.run_(self.store.add_to_device(
            txn_id="t1", local={A: {"*": {"n": 1}, "GONE": {"n": 0}}}, **base)))
        self.assertFalse(self.run_(self.store.add_to_device(
            txn_id="t1", local={A: {"*": {"n": 1}}}, **base)))
        upto = self.db.positions.current
        msgs, more = self.run_(self.store.take_to_device_for_sync(A, "D1", None, upto, 10))
        self.assertEqual((msgs, more), ([{"type": "m.t", "sender": B, "content": {"n": 1}}], False))
        again, _ = self.run_(self.store.take_to_device_for_sync(A, "D1", upto - 1, upto, 10))
        self.assertEqual(len(again), 1)
        gone, _ = self.run_(self.store.take_to_device_for_sync(A, "D1", upto, upto, 10))
        self.assertEqual(gone, [])
        other, _ = self.run_(self.store.take_to_device_for_sync(A, "D2", upto, upto, 10))
        self.assertEqual(len(other), 1)

    def test_remote_to_device_outbox_and_inbound_dedup(self) -> None:
        """Remote recipients make one outbox row per destination at a to_device position;
        an inbound EDU's message ID is delivered once."""
        start = self.db.positions.current
        self.run_(self.store.add_to_device(
            sender=A, sender_key="device:D1", txn_id="t", message_type="m.t", local={},
            remote={"far": {"@x:far": {"X": {"a": 1}}}}, now_ms=1))
        ((kind, user, ref),) = self.kinds(start)
        self.assertEqual((kind, user, ref), ("to_device", None, "far"))
        out = self.run_(self.store.get_outbound_to_device(self.db.positions.current))
        self.assertEqual((out.destination, out.sender, dict(out.messages)),
                         ("far", A, {"@x:far": {"X": {"a": 1}}}))
        args = dict(origin="far", sender="@x:far", message_id="m1", message_type="m.t",
                    local={B: {"B1": {"z": 1}}}, now_ms=1)
        self.assertTrue(self.run_(self.store.add_remote_to_device(**args)))
        self.assertFalse(self.run_(self.store.add_remote_to_device(**args)))
        msgs, _ = self.run_(self.store.take_to_device_for_sync(B, "B1", None, 10**12, 10))
        self.assertEqual(msgs, [{"type": "m.t", "sender": "@x:far", "content": {"z": 1}}])

    def test_deleting_a_device_forgets_its_keys(self) -> None:
        """AccountStore.delete_devices removes the device's keys, one-time and fallback keys,
        inbox and the signatures of it; the user's other device keeps its own."""
        for d in ("D1", "D2"):
            self.run_(self.store.set_device_keys(A, d, {"d": d}))
            self.run_(self.store.add_one_time_keys(A, d, [("alg", "k", {"key": d})]))
        self.run_(self.store.set_fallback_keys(A, "D1", [("alg", "f", "fb")]))
        self.run_(self.store.add_signatures([(A, "D1", A, "ed25519:ssk", "s")]))
        self.run_(self.accounts.delete_devices(A, ["D1"]))
        self.run_(self.accounts.create_device(A, "D1", None, created_ts=2))
        self.assertEqual(list(self.run_(self.store.query_device_keys({A: []}))[A]), ["D2"])
        self.assertEqual(self.run_(self.store.count_one_time_keys(A, "D1")), {})
        self.assertEqual(self.run_(self.store.get_unused_fallback_key_types(A, "D1")), [])
        self.assertEqual(self.run_(self.store.count_one_time_keys(A, "D2")), {"alg": 1})


class KeyBackupStoreContract(EngineTestCase if TYPE_CHECKING else object):
    def setUp(self) -> None:
        self.db = self.make_db()
        self.store = KeyBackupStore(self.db)

    def run_(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))

    def test_versions_numbered_per_user_never_reused(self) -> None:
        """Versions count from 1 per user; a deleted one is not live and not reused."""
        self.assertEqual(self.run_(self.store.create_version(A, "alg", {"x": 1})), 1)
        self.assertEqual(self.run_(self.store.create_version(B, "alg", {})), 1)
        self.assertEqual(self.run_(self.store.create_version(A, "alg", {})), 2)
        self.assertTrue(self.run_(self.store.delete_version(A, 2)))
        self.assertEqual(self.run_(self.store.get_version(A)).version, 1)
        self.assertIsNone(self.run_(self.store.get_version(A, 2)))
        self.assertFalse(self.run_(self.store.delete_version(A, 7)))
        self.assertEqual(self.run_(self.store.create_version(A, "alg", {})), 3)

    def test_better_key_kept_and_etag(self) -> None:
        """put_keys keeps the better key per session, moves the etag only on change, and
        counts; delete_keys at each level."""
        self.run_(self.store.create_version(A, "alg", {}))
        v = self.run_(self.store.put_keys(A, 1, [rk("s1", index=3), rk("s2")]))
        self.assertEqual((v.count, v.etag), (2, 1))
        v = self.run_(self.store.put_keys(A, 1, [rk("s1", index=4, tag="worse")]))
        self.assertEqual(v.etag, 1)
        v = self.run_(self.store.put_keys(A, 1, [rk("s1", index=3, verified=True, tag="v")]))
        self.assertEqual(v.etag, 2)
        (k,) = self.run_(self.store.get_keys(A, 1, "!r:hs", "s1"))
        self.assertEqual(k.session_data, {"ciphertext": "v"})
        self.assertEqual(self.run_(self.store.delete_keys(A, 1, "!r:hs", "s2")).count, 1)
        self.assertEqual(self.run_(self.store.delete_keys(A, 1)).count, 0)
        self.assertIsNone(self.run_(self.store.put_keys(A, 9, [rk("s")])))


class E2EStoreSQLiteTests(E2EStoreContract, SQLiteEngine):
    pass


class E2EStorePostgresTests(E2EStoreContract, PostgresEngine):
    pass


class KeyBackupStoreSQLiteTests(KeyBackupStoreContract, SQLiteEngine):
    pass


class KeyBackupStorePostgresTests(KeyBackupStoreContract, PostgresEngine):
    pass
