"""The pre-auth PDU pipeline: format, size, reference limits, signatures, content hash."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.inbound import BadSignature, InvalidPDU, PDUChecker, WrongRoom
from ruma.federation.inbound.validate import parse_pdu
from ruma.protocol.events import add_hashes_and_signature
from ruma.protocol.room_versions import RoomVersion, RoomVersions
from ruma.protocol.signing import VerifyKey
from tests.protocol.eventfactory import (
    ALICE,
    BOB,
    CAROL,
    MALLORY,
    add_signature,
    server_key,
    standard_room,
    versions,
)


class KeyTable:
    """Verify keys per server with a validity end, like the keyring after a fetch."""

    def __init__(self, valid_until: int = 2**62) -> None:
        self.valid_until = valid_until
        self.asked: list[tuple[str, str, int | None]] = []

    async def get_verify_key(
        self, server_name: str, key_id: str, *, valid_at_ts: int | None = None
    ) -> VerifyKey:
        self.asked.append((server_name, key_id, valid_at_ts))
        key = server_key(server_name)
        if key.key_id != key_id:
            raise LookupError(f"no key {key_id}")
        if valid_at_ts is not None and valid_at_ts > self.valid_until:
            raise LookupError("expired")
        return key.verify_key


class CheckPDUTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.keys = KeyTable()
        self.checker = PDUChecker(self.keys)

    def check(self, pdu: Any, version: RoomVersion, **kw: Any) -> Any:
        return self.successResultOf(
            Deferred.fromCoroutine(self.checker.check_pdu(pdu, version, "b.test", **kw))
        )

    def check_fails(self, pdu: Any, version: RoomVersion, exc: type[Exception], **kw: Any) -> Any:
        d = Deferred.fromCoroutine(self.checker.check_pdu(pdu, version, "b.test", **kw))
        return self.failureResultOf(d, exc).value

    def test_valid_events_of_every_version_pass(self) -> None:
        """A correctly signed event of each room version comes out unchanged."""
        for version in versions():
            room = standard_room(version, members=[BOB])
            msg = room.build("m.room.message", BOB, {"body": "hi"})
            event = self.check(msg.pdu(), version)
            self.assertEqual(event.event_id, msg.event_id)
            self.assertEqual(event.content["body"], "hi")

    def test_tampered_signature_is_refused(self) -> None:
        """A signature that does not verify raises BadSignature with the event's ID."""
        room = standard_room(RoomVersions.V10, members=[BOB])
        pdu = room.build("m.room.message", BOB, {"body": "hi"}).pdu()
        sig = pdu["signatures"]["b.test"]
        key_id = next(iter(sig))
        sig[key_id] = ("A" if sig[key_id][0] != "A" else "B") + sig[key_id][1:]
        err = self.check_fails(pdu, RoomVersions.V10, BadSignature)
        self.assertIn("Signature", err.reason)

    def test_event_signed_only_by_another_server_is_refused(self) -> None:
        """An event whose sender is on m.test but which only b.test signed is refused:
        a server cannot speak for another server's users."""
        room = standard_room(RoomVersions.V10, members=[BOB])
        forged = room.build("m.room.message", MALLORY, {"body": "x"}, server_name="b.test")
        self.check_fails(forged.pdu(), RoomVersions.V10, BadSignature)

    def test_v1_event_id_server_must_sign(self) -> None:
        """In rooms v1/v2 the server in the event ID must have signed too."""
        room = standard_room(RoomVersions.V1, members=[BOB])
        ev = room.build("m.room.message", BOB, {"body": "x"})
        pdu = ev.pdu()
        pdu["event_id"] = "$spoof:a.test"
        pdu = add_hashes_and_signature(pdu, RoomVersions.V1, "b.test", server_key("b.test"))
        self.check_fails(pdu, RoomVersions.V1, BadSignature)

    def test_restricted_join_needs_authorising_servers_signature(self) -> None:
        """A restricted join naming @carol:c.test as authoriser must carry c.test's
        signature as well as the joining server's (rooms v8+)."""
        room = standard_room(RoomVersions.V10, members=[CAROL])
        join = room.build("m.room.member", BOB,
                          {"membership": "join", "join_authorised_via_users_server": CAROL},
                          BOB)
        self.check_fails(join.pdu(), RoomVersions.V10, BadSignature)
        countersigned = add_signature(join, "c.test")
        self.assertEqual(self.check(countersigned.pdu(), RoomVersions.V10).event_id,
                         join.event_id)

    def test_unsigned_event_is_refused(self) -> None:
        """No signatures at all: refused."""
        room = standard_room(RoomVersions.V11, members=[BOB])
        pdu = room.build("m.room.message", BOB, {"body": "x"}).pdu()
        pdu["signatures"] = {}
        self.check_fails(pdu, RoomVersions.V11, BadSignature)

    def test_key_validity_is_enforced_from_v5(self) -> None:
        """From v5 the key must be valid at origin_server_ts; before v5 any time will do."""
        self.keys.valid_until = 1_000
        for version, ok in ((RoomVersions.V4, True), (RoomVersions.V5, False)):
            room = standard_room(version, members=[BOB])
            pdu = room.build("m.room.message", BOB, {"body": "x"}).pdu()
            if ok:
                self.check(pdu, version)
            else:
                self.check_fails(pdu, version, BadSignature)
        self.assertIn(("b.test", server_key("b.test").key_id, None), self.keys.asked)

    def test_hash_mismatch_redacts(self) -> None:
        """Content changed after signing: the signature (over the redacted form) still holds,
        the hash does not, so the event comes back redacted instead of being refused."""
        room = standard_room(RoomVersions.V10, members=[BOB])
        ev = room.build("m.room.message", BOB, {"body": "original"})
        pdu = ev.pdu()
        pdu["content"]["body"] = "tampered"
        event = self.check(pdu, RoomVersions.V10)
        self.assertEqual(event.event_id, ev.event_id)
        self.assertEqual(dict(event.content), {})

    def test_oversized_pdu_is_refused(self) -> None:
        """A PDU over 65,536 bytes is invalid whatever it contains."""
        room = standard_room(RoomVersions.V10, members=[BOB])
        pdu = room.build("m.room.message", BOB, {"body": "x"}).pdu()
        pdu["content"]["body"] = "x" * 70_000
        big = add_hashes_and_signature(pdu, RoomVersions.V10, "b.test", server_key("b.test"))
        err = self.check_fails(big, RoomVersions.V10, InvalidPDU)
        self.assertIn("65536", err.reason)
        self.assertIsNotNone(err.event_id)

    def test_too_many_prev_events_is_refused_live_but_not_in_backfill(self) -> None:
        """21 prev_events: refused in a transaction, accepted from backfill."""
        room = standard_room(RoomVersions.V10, members=[BOB])
        prevs = [room.build("m.room.message", BOB, {"body": str(i)}) for i in range(21)]
        ev = room.build("m.room.message", BOB, {"body": "x"}, prev_events=prevs)
        err = self.check_fails(ev.pdu(), RoomVersions.V10, InvalidPDU)
        self.assertIn("prev_events", err.reason)
        self.check(ev.pdu(), RoomVersions.V10, check_limits=False)

    def test_huge_prev_events_list(self) -> None:
        """Thousands of prev_events cannot fit in a PDU: refused as invalid, no crash."""
        room = standard_room(RoomVersions.V10, members=[BOB])
        pdu = room.build("m.room.message", BOB, {"body": "x"}).pdu()
        pdu["prev_events"] = [f"$fake{i}" for i in range(5000)]
        self.check_fails(pdu, RoomVersions.V10, InvalidPDU)

    def test_malformed_pdus(self) -> None:
        """Non-objects, missing fields and wrong types are InvalidPDU, never a crash."""
        room = standard_room(RoomVersions.V10, members=[BOB])
        good = room.build("m.room.message", BOB, {"body": "x"}).pdu()
        bad: list[Any] = [None, [], "x", 5, {}]
        for key in ("sender", "room_id", "depth", "content", "prev_events", "type"):
            d = dict(good)
            del d[key]
            bad.append(d)
        bad.append({**good, "depth": "1"})
        bad.append({**good, "content": {"n": 1.5}})
        for pdu in bad:
            self.check_fails(pdu, RoomVersions.V10, InvalidPDU)

    def test_wrong_room(self) -> None:
        """expected_room_id refuses an event of another room."""
        room = standard_room(RoomVersions.V10, members=[BOB])
        ev = room.build("m.room.message", BOB, {"body": "x"})
        self.check_fails(ev.pdu(), RoomVersions.V10, WrongRoom, expected_room_id="!other:a.test")

    def test_foreign_unsigned_keys_are_dropped(self) -> None:
        """Keys of unsigned other than age/invite_room_state/knock_room_state are stripped."""
        room = standard_room(RoomVersions.V10, members=[BOB])
        pdu = room.build("m.room.message", BOB, {"body": "x"}).pdu()
        pdu["unsigned"] = {"age": 5, "redacted_because": {"x": 1}}
        event = parse_pdu(pdu, RoomVersions.V10)
        self.assertEqual(dict(event.unsigned), {"age": 5})
        self.assertEqual(ALICE.split(":")[1], "a.test")


class CachedKeysTests(SynchronousTestCase):
    def test_keys_are_asked_for_once_per_validity_horizon(self) -> None:
        """A key found valid at T answers later lookups at or before T from memory; a lookup
        after T (or a failure) goes back to the keyring."""
        from ruma.federation.inbound.signatures import CachedKeys

        table = KeyTable(valid_until=5_000)
        cache = CachedKeys(table)
        key_id = server_key("b.test").key_id

        def get(ts: int | None) -> Any:
            return Deferred.fromCoroutine(cache.get_verify_key("b.test", key_id, valid_at_ts=ts))

        self.successResultOf(get(3_000))
        self.successResultOf(get(1_000))
        self.successResultOf(get(3_000))
        self.assertEqual(len(table.asked), 1)
        self.successResultOf(get(4_000))
        self.assertEqual(len(table.asked), 2)
        self.failureResultOf(get(6_000), LookupError)
        self.assertEqual(len(table.asked), 3)
        self.successResultOf(get(None))  # no time constraint: any key found will do
        self.successResultOf(get(4_000))
        self.assertEqual(len(table.asked), 3)


class CheckPDUsBatchTests(SynchronousTestCase):
    """PDUChecker.check_pdus (one signature batch) gives each PDU what check_pdu gives."""

    def test_same_outcomes_as_one_at_a_time(self) -> None:
        version = RoomVersions.V10
        room = standard_room(version, members=[BOB, CAROL])
        good = room.build("m.room.message", BOB, {"body": "hi"}).pdu()
        tampered_sig = room.build("m.room.message", BOB, {"body": "x"}).pdu()
        sigs = tampered_sig["signatures"]["b.test"]
        key_id = next(iter(sigs))
        sigs[key_id] = ("A" if sigs[key_id][0] != "A" else "B") + sigs[key_id][1:]
        tampered_content = room.build("m.room.message", CAROL, {"body": "y"}).pdu()
        tampered_content["content"]["body"] = "changed"
        forged = room.build("m.room.message", MALLORY, {"body": "z"}, server_name="b.test").pdu()
        pdus: list[Any] = [good, tampered_sig, {"type": 5}, tampered_content, forged, good]

        def one(pdu: Any) -> Any:
            d = Deferred.fromCoroutine(PDUChecker(KeyTable()).check_pdu(pdu, version, "b.test"))
            results: list[Any] = []
            d.addBoth(results.append)
            outcome = results[0]
            if hasattr(outcome, "value"):
                return (type(outcome.value).__name__, outcome.value.reason)
            return (outcome.event_id, outcome.pdu())

        def batch_outcome(result: Any) -> Any:
            if isinstance(result, Exception):
                return (type(result).__name__, result.reason)
            return (result.event_id, result.pdu())

        batch = self.successResultOf(
            Deferred.fromCoroutine(PDUChecker(KeyTable()).check_pdus(pdus, version, "b.test"))
        )
        self.assertEqual([batch_outcome(r) for r in batch], [one(p) for p in pdus])
        kinds = [type(r).__name__ for r in batch]
        self.assertEqual(kinds, ["Event", "BadSignature", "InvalidPDU", "Event", "BadSignature",
                                 "Event"])  # fmt: skip
        # The tampered content is kept, redacted.
        self.assertNotIn("body", batch[3].content)
