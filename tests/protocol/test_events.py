"""Events: validation per room version, hashes, event IDs, signatures and the builder."""

from __future__ import annotations

import copy
import pickle
import re
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.errors import InvalidEvent, SignatureError
from ruma.protocol.events import (
    MAX_PDU_SIZE,
    Event,
    add_hashes_and_signature,
    auth_types_for_event,
    build_event,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    required_signature_servers,
    verify_event_signatures,
    verify_events_signatures,
)
from ruma.protocol.ids import RoomID
from ruma.protocol.redaction import redact
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion, RoomVersions
from ruma.protocol.signing import (
    SigningKey,
    VerifyKey,
    decode_base64,
    decode_signing_key,
    encode_base64,
    generate_signing_key,
    sign_json,
    verify_signed_json,
)
from tests.protocol import load_vectors

KEY = generate_signing_key("k1")
OTHER_KEY = generate_signing_key("k2")
ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS.values())
HASH_ROOM = "!" + "A" * 43


def keys_of(**servers: SigningKey) -> Callable[[str, str], VerifyKey | None]:
    """A get_verify_key callback knowing exactly the given servers' keys."""

    def get(server: str, key_id: str) -> VerifyKey | None:
        k = servers.get(server.replace(".", "_"))
        return k.verify_key if k is not None and k.key_id == key_id else None

    return get


class Room:
    """A tiny room built with build_event, for any room version."""

    def __init__(self, rv: RoomVersion, server: str = "hs", key: SigningKey = KEY) -> None:
        self.rv = rv
        self.server = server
        self.key = key
        self.n = 0
        self.events: list[Event] = []
        self.create = self.send(
            "m.room.create", {"room_version": rv.identifier, "creator": "@alice:hs"}, ""
        )
        self.room_id = self.create.room_id
        self.alice_join = self.send("m.room.member", {"membership": "join"}, "@alice:hs")
        self.power = self.send("m.room.power_levels", {"users": {"@alice:hs": 100}}, "")

    def send(
        self,
        type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        sender: str = "@alice:hs",
        **kw: Any,
    ) -> Event:
        self.n += 1
        is_create = type == "m.room.create"
        room_id = None if is_create and self.rv.room_id_from_create_event else (
            "!room:hs" if is_create else self.room_id
        )
        ev = build_event(
            self.rv,
            room_id=room_id,
            sender=sender,
            type=type,
            content=content,
            state_key=state_key,
            prev_events=self.events[-1:],
            auth_events=[e for e in self.events if e.is_state][:3],
            origin_server_ts=1000 + self.n,
            server_name=self.server,
            signing_key=self.key,
            event_id_localpart=f"ev{self.n}",
            **kw,
        )
        self.events.append(ev)
        return ev


def valid_pdu(rv: RoomVersion) -> dict[str, Any]:
    """A signed, valid non-create PDU for ``rv``."""
    return Room(rv).send("m.room.message", {"body": "hi", "msgtype": "m.text"}).pdu()


class EventSigningVectorTests(SynchronousTestCase):
    def _key(self) -> SigningKey:
        v = load_vectors()["signing_key"]
        return decode_signing_key("ed25519", v["key_id"].split(":")[1], v["seed_base64"])

    def test_spec_vectors(self) -> None:
        """Hashing then signing the spec's events (v1 rules) reproduces them exactly."""
        key = self._key()
        for v in load_vectors()["event_signing"]["vectors"]:
            signed = add_hashes_and_signature(v["input"], RoomVersions.V1, "domain", key)
            self.assertEqual(signed, v["expected_signed"])
            self.assertTrue(check_content_hash(signed))
            verify_signed_json(redact(signed, RoomVersions.V1), "domain", "ed25519:1",
                               key.verify_key)

    def test_vectors_use_pre_v11_rules(self) -> None:
        """The first vector signs identically under v1-v10 rules but not v11's, which
        no longer protect 'origin' (why the vectors are pinned to v1 rules)."""
        key = self._key()
        vector = load_vectors()["event_signing"]["vectors"][0]
        for rv in ALL_VERSIONS:
            signed = add_hashes_and_signature(vector["input"], rv, "domain", key)
            self.assertEqual(signed == vector["expected_signed"], int(rv.identifier) <= 10)

    def test_does_not_mutate(self) -> None:
        """add_hashes_and_signature returns a new dict and leaves its input alone."""
        pdu = load_vectors()["event_signing"]["vectors"][0]["input"]
        before = copy.deepcopy(pdu)
        add_hashes_and_signature(pdu, RoomVersions.V1, "domain", self._key())
        self.assertEqual(pdu, before)


class EventIdTests(SynchronousTestCase):
    def test_formats(self) -> None:
        """v1/v2 IDs are '$local:server'; v3 is standard and v4+ url-safe base64 of the
        reference hash."""
        for rv in ALL_VERSIONS:
            ev = Room(rv).alice_join
            ref = compute_reference_hash(ev.pdu(), rv)
            if rv.event_format is EventFormat.V1:
                self.assertEqual(ev.event_id, "$ev2:hs")
                self.assertEqual(ev.pdu()["event_id"], "$ev2:hs")
            elif rv.event_format is EventFormat.V2:
                self.assertEqual(ev.event_id, "$" + encode_base64(ref))
                self.assertNotIn("event_id", ev.pdu())
            else:
                self.assertEqual(ev.event_id, "$" + encode_base64(ref, urlsafe=True))
                self.assertRegex(ev.event_id, r"^\$[A-Za-z0-9_-]{43}$")
                self.assertNotIn("event_id", ev.pdu())
            self.assertEqual(compute_event_id(ev.pdu(), rv), ev.event_id)

    def test_v3_alphabet(self) -> None:
        """Room v3 IDs use '+' and '/' (never '-' or '_') across many events."""
        room = Room(RoomVersions.V3)
        ids = "".join(room.send("m.room.message", {"n": i}).event_id for i in range(40))
        self.assertNotRegex(ids, r"[-_]")
        self.assertRegex(ids, r"[+/]")

    def test_stray_event_id_ignored(self) -> None:
        """An event_id in a v3+ PDU is ignored: the ID is always the reference hash."""
        for rv in ALL_VERSIONS[2:]:
            pdu = valid_pdu(rv)
            ev = Event.from_pdu(pdu, rv)
            ev2 = Event.from_pdu(dict(pdu, event_id="$bogus"), rv)
            self.assertEqual(ev2.event_id, ev.event_id)
            self.assertNotIn("event_id", ev2.pdu())

    def test_v1_event_id_required(self) -> None:
        """v1/v2 PDUs must carry a '$local:server' event_id."""
        for rv in (RoomVersions.V1, RoomVersions.V2):
            pdu = valid_pdu(rv)
            for bad in (None, 5, "$nocolon", "nosigil:hs", "$a:bad_server"):
                p = dict(pdu, event_id=bad) if bad is not None else {
                    k: v for k, v in pdu.items() if k != "event_id"}
                with self.assertRaises(InvalidEvent) as cm:
                    Event.from_pdu(p, rv)
                self.assertEqual(cm.exception.field, "event_id")


class V12Tests(SynchronousTestCase):
    def test_room_id_from_create_event(self) -> None:
        """The v12 room ID is the create event's ID with '!' for '$'; the create PDU has
        no room_id, and later events carry the derived ID."""
        room = Room(RoomVersions.V12)
        create = room.create
        self.assertEqual(create.room_id, "!" + create.event_id[1:])
        self.assertTrue(RoomID.parse(create.room_id, strict=True).is_hash_form)
        self.assertNotIn("room_id", create.pdu())
        self.assertEqual(room.alice_join.room_id, create.room_id)
        self.assertEqual(room.alice_join.pdu()["room_id"], create.room_id)

    def test_create_event_never_an_auth_event(self) -> None:
        """build_event leaves the create event out of v12 auth_events (only there)."""
        for rv in ALL_VERSIONS:
            room = Room(rv)
            self.assertEqual(room.create.event_id in room.power.auth_event_ids,
                             not rv.room_id_from_create_event)

    def test_create_with_room_id_rejected(self) -> None:
        """A v12 create PDU that carries a room_id is invalid."""
        pdu = Room(RoomVersions.V12).create.pdu()
        with self.assertRaises(InvalidEvent) as cm:
            Event.from_pdu(dict(pdu, room_id=HASH_ROOM), RoomVersions.V12)
        self.assertEqual(cm.exception.field, "room_id")

    def test_classic_room_id_rejected(self) -> None:
        """Non-create v12 events must use the hash form of room ID, and earlier
        versions must not lack a room_id."""
        pdu = valid_pdu(RoomVersions.V12)
        with self.assertRaises(InvalidEvent) as cm:
            Event.from_pdu(dict(pdu, room_id="!room:hs"), RoomVersions.V12)
        self.assertEqual(cm.exception.field, "room_id")
        create = Room(RoomVersions.V11).create.pdu()
        del create["room_id"]
        self.assertRaises(InvalidEvent, Event.from_pdu, create, RoomVersions.V11)

    def test_create_event_redacts_and_verifies(self) -> None:
        """A redacted v12 create event keeps its whole content (v11 rules), its derived
        room ID, and its signature."""
        create = build_event(RoomVersions.V12, room_id=None, sender="@alice:hs",
                             type="m.room.create", state_key="",
                             content={"room_version": "12", "additional_creators": ["@bob:hs"]},
                             prev_events=[], auth_events=[], origin_server_ts=1,
                             server_name="hs", signing_key=KEY)
        pruned = create.redacted()
        self.assertEqual(pruned.content, create.content)
        self.assertEqual(pruned.room_id, create.room_id)
        self.assertIsNone(pruned.get("room_id"))
        verify_event_signatures(pruned, keys_of(hs=KEY))
        self.assertEqual(auth_types_for_event(RoomVersions.V12, "m.room.member", "@bob:hs",
                                              "@bob:hs", {"membership": "join"}),
                         {("m.room.power_levels", ""), ("m.room.member", "@bob:hs"),
                          ("m.room.join_rules", "")})

    def test_builder_misuse(self) -> None:
        """build_event refuses a room_id on a v12 create and a missing one elsewhere."""
        kw: dict[str, Any] = dict(sender="@a:hs", content={}, prev_events=[], auth_events=[],
                                  origin_server_ts=1, server_name="hs", signing_key=KEY)
        self.assertRaises(ValueError, build_event, RoomVersions.V12, room_id=HASH_ROOM,
                          type="m.room.create", state_key="", **kw)
        self.assertRaises(ValueError, build_event, RoomVersions.V11, room_id=None,
                          type="m.room.create", state_key="", **kw)
        self.assertRaises(ValueError, build_event, RoomVersions.V1, room_id="!r:hs",
                          type="m.room.create", state_key="", **kw)


class BuildRoundTripTests(SynchronousTestCase):
    def test_every_version(self) -> None:
        """For each version 1..12, built events survive pdu() -> from_pdu() unchanged,
        have a correct content hash and verify under the server's key."""
        for rv in ALL_VERSIONS:
            room = Room(rv)
            msg = room.send("m.room.message", {"body": "hello", "msgtype": "m.text"})
            red = room.send("m.room.redaction", {}, redacts=msg.event_id)
            for ev in room.events:
                again = Event.from_pdu(ev.pdu(), rv)
                self.assertEqual(again, ev)
                self.assertEqual(again.pdu(), ev.pdu())
                self.assertEqual(again.event_id, ev.event_id)
                self.assertEqual(again.room_id, ev.room_id)
                self.assertTrue(check_content_hash(ev.pdu()), (rv.identifier, ev))
                verify_event_signatures(again, keys_of(hs=KEY))
            self.assertEqual(red.redacts, msg.event_id)
            self.assertEqual(msg.prev_event_ids, (room.power.event_id,))
            self.assertEqual(msg.depth, 4)

    def test_v1_references_carry_reference_hashes(self) -> None:
        """In v1/v2, prev/auth events are [id, {"sha256": reference hash}] pairs."""
        for rv in (RoomVersions.V1, RoomVersions.V2):
            room = Room(rv)
            prev = room.events[-1]
            msg = room.send("m.room.message", {})
            expected = encode_base64(compute_reference_hash(prev.pdu(), rv))
            self.assertEqual(msg.pdu()["prev_events"], [[prev.event_id, {"sha256": expected}]])
            self.assertEqual(msg.prev_event_ids, (prev.event_id,))
            self.assertEqual(len(msg.auth_events), 3)

    def test_depth(self) -> None:
        """Depth defaults to max(prev depths) + 1 and is capped at the version's maximum."""
        room = Room(RoomVersions.V10)
        self.assertEqual([e.depth for e in room.events], [1, 2, 3])
        self.assertEqual(room.send("m.room.message", {}, depth=7).depth, 7)
        self.assertEqual(room.send("m.room.message", {}).depth, 8)
        capped = room.send("m.room.message", {}, depth=2**60)
        self.assertEqual(capped.depth, 2**53 - 1)
        self.assertEqual(room.send("m.room.message", {}).depth, 2**53 - 1)
        old = Room(RoomVersions.V5)
        self.assertEqual(old.send("m.room.message", {}, depth=2**60).depth, 2**60)

    def test_redacts_location(self) -> None:
        """Before v11 'redacts' is top-level; from v11 it is in content."""
        for rv in ALL_VERSIONS:
            room = Room(rv)
            red = room.send("m.room.redaction", {"reason": "x"}, redacts="$target")
            pdu = red.pdu()
            if rv.updated_redaction_rules:
                self.assertEqual(pdu["content"]["redacts"], "$target")
                self.assertNotIn("redacts", pdu)
            else:
                self.assertEqual(pdu["redacts"], "$target")
                self.assertNotIn("redacts", pdu["content"])
            self.assertEqual(red.redacts, "$target")

    def test_redacts_prefers_content_from_v11(self) -> None:
        """From v11 content.redacts wins over a stray top-level key; before, it is ignored."""
        for rv, expected in ((RoomVersions.V10, "$top"), (RoomVersions.V11, "$content")):
            pdu = Room(rv).send("m.room.redaction", {"redacts": "$content"}).pdu()
            pdu["redacts"] = "$top"
            self.assertEqual(Event.from_pdu(pdu, rv).redacts, expected)

    def test_floats_rejected_in_strict_versions(self) -> None:
        """Building with a float in content fails from v6 and works before."""
        for rv in ALL_VERSIONS:
            room = Room(rv)
            if rv.strict_canonicaljson:
                self.assertRaises(InvalidEvent, room.send, "m.room.message", {"n": 1.5})
                self.assertRaises(InvalidEvent, room.send, "m.room.message", {"n": 2**53})
            else:
                ev = room.send("m.room.message", {"n": 1.5, "big": 2**60})
                self.assertEqual(ev.content["n"], 1.5)
                verify_event_signatures(Event.from_pdu(ev.pdu(), rv), keys_of(hs=KEY))

    def test_unsigned_not_signed(self) -> None:
        """unsigned is carried but changing it alters neither ID nor signatures."""
        room = Room(RoomVersions.V10)
        ev = room.send("m.room.message", {}, unsigned={"age": 1})
        self.assertEqual(ev.unsigned, {"age": 1})
        changed = Event.from_pdu(dict(ev.pdu(), unsigned={"age": 2}), RoomVersions.V10)
        self.assertEqual(changed.event_id, ev.event_id)
        verify_event_signatures(changed, keys_of(hs=KEY))
        self.assertEqual(ev.with_unsigned({"x": 1}).unsigned, {"x": 1})
        self.assertNotIn("unsigned", ev.with_unsigned(None).pdu())


class EventObjectTests(SynchronousTestCase):
    def test_attributes(self) -> None:
        """Attributes mirror the PDU; state_key_tuple and membership work."""
        room = Room(RoomVersions.V11)
        join = room.alice_join
        self.assertEqual(join.type, "m.room.member")
        self.assertEqual(join.sender, "@alice:hs")
        self.assertTrue(join.is_state)
        self.assertEqual(join.state_key_tuple, ("m.room.member", "@alice:hs"))
        self.assertEqual(join.membership, "join")
        self.assertIsNone(join.redacts)
        self.assertIsNone(join.origin)
        self.assertEqual(join.origin_server_ts, 1002)
        self.assertIn("sha256", join.hashes)
        self.assertIn("hs", join.signatures)
        self.assertEqual(join.unsigned, {})
        self.assertIs(join.room_version, RoomVersions.V11)
        msg = room.send("m.room.message", {"membership": "join"})
        self.assertFalse(msg.is_state)
        self.assertIsNone(msg.membership)
        self.assertRaises(ValueError, lambda: msg.state_key_tuple)
        self.assertIn(msg.event_id, repr(msg))

    def test_immutable(self) -> None:
        """Events and their content cannot be modified; pdu() is an independent copy."""
        ev = Room(RoomVersions.V10).power
        with self.assertRaises(AttributeError):
            ev.type = "x"
        with self.assertRaises(AttributeError):
            del ev.type
        with self.assertRaises(TypeError):
            ev.content["users"]["@x:hs"] = 1
        pdu = ev.pdu()
        pdu["content"]["users"]["@x:hs"] = 1
        self.assertNotIn("@x:hs", ev.content["users"])
        self.assertRaises(TypeError, Event)

    def test_input_copied(self) -> None:
        """Mutating the dict passed to from_pdu afterwards does not change the event."""
        rv = RoomVersions.V10
        pdu = valid_pdu(rv)
        ev = Event.from_pdu(pdu, rv)
        pdu["content"]["body"] = "changed"
        self.assertEqual(ev.content["body"], "hi")

    def test_equality_and_hash(self) -> None:
        """Events compare and hash by event ID."""
        rv = RoomVersions.V10
        pdu = valid_pdu(rv)
        a, b = Event.from_pdu(pdu, rv), Event.from_pdu(pdu, rv)
        self.assertEqual(a, b)
        self.assertEqual(len({a, b}), 1)
        self.assertNotEqual(a, Room(rv).create)
        self.assertNotEqual(a, "x")

    def test_pickle(self) -> None:
        """Events pickle and unpickle to an equal event."""
        ev = Room(RoomVersions.V12).power
        back = pickle.loads(pickle.dumps(ev))
        self.assertEqual(back, ev)
        self.assertEqual(back.pdu(), ev.pdu())


class ContentHashTests(SynchronousTestCase):
    def test_tampered_content(self) -> None:
        """Changing message content breaks the content hash but not the signature (the
        signature covers only the redacted form): receivers redact such events."""
        rv = RoomVersions.V10
        pdu = valid_pdu(rv)
        pdu["content"]["body"] = "evil"
        self.assertFalse(check_content_hash(pdu))
        verify_event_signatures(Event.from_pdu(pdu, rv), keys_of(hs=KEY))

    def test_malformed_hashes(self) -> None:
        """Missing, non-string or non-base64 hashes mean "does not match"."""
        pdu = valid_pdu(RoomVersions.V10)
        for hashes in ({}, None, {"sha256": 5}, {"sha256": "!!"}, {"sha256": "AAAA"}):
            self.assertFalse(check_content_hash(dict(pdu, hashes=hashes)))

    def test_excludes_unsigned_signatures_hashes(self) -> None:
        """The content hash ignores unsigned, signatures and hashes."""
        pdu = valid_pdu(RoomVersions.V10)
        h = compute_content_hash(pdu)
        self.assertEqual(compute_content_hash(dict(pdu, unsigned={"a": 1}, signatures={},
                                                   hashes={"x": "y"})), h)
        self.assertEqual(len(h), 32)
        self.assertEqual(decode_base64(pdu["hashes"]["sha256"]), h)


class SignatureVerificationTests(SynchronousTestCase):
    def test_wrong_or_missing_key(self) -> None:
        """No known key, or the wrong key, for the sender's server fails."""
        ev = Room(RoomVersions.V10).power
        self.assertRaises(SignatureError, verify_event_signatures, ev, keys_of())
        self.assertRaises(SignatureError, verify_event_signatures, ev,
                          lambda s, k: OTHER_KEY.verify_key)

    def test_tampered_protected_field(self) -> None:
        """Changing a field covered by the redacted form invalidates the signature (v1/v2
        only: later versions change the event ID instead, so check both)."""
        for rv in ALL_VERSIONS:
            pdu = Room(rv).power.pdu()
            pdu["content"]["users"] = {"@mallory:evil": 100}
            ev = Event.from_pdu(pdu, rv)
            self.assertRaises(SignatureError, verify_event_signatures, ev, keys_of(hs=KEY))

    def test_sender_server_required(self) -> None:
        """An event must be signed by its sender's server, not just by anyone."""
        room = Room(RoomVersions.V10)
        ev = room.send("m.room.message", {}, sender="@bob:other")
        self.assertEqual(required_signature_servers(ev), {"other"})
        self.assertRaises(SignatureError, verify_event_signatures, ev, keys_of(hs=KEY))

    def test_v1_event_id_server_required(self) -> None:
        """In v1/v2 the server named in the event ID must sign too."""
        room = Room(RoomVersions.V1, server="origin")
        ev = room.send("m.room.message", {}, sender="@bob:other")
        self.assertEqual(required_signature_servers(ev), {"origin", "other"})
        both = sign_json(redact(ev.pdu(), RoomVersions.V1), "other", OTHER_KEY, strict=False)
        pdu = dict(ev.pdu(), signatures=both["signatures"])
        ev2 = Event.from_pdu(pdu, RoomVersions.V1)
        verify_event_signatures(ev2, keys_of(origin=KEY, other=OTHER_KEY))
        self.assertRaises(SignatureError, verify_event_signatures, ev2, keys_of(other=OTHER_KEY))

    def test_restricted_join_needs_authorising_server(self) -> None:
        """From v8 a join with join_authorised_via_users_server needs that server's
        signature as well; before v8 the key is meaningless."""
        for rv in ALL_VERSIONS:
            room = Room(rv)
            join = room.send("m.room.member", {"membership": "join",
                                               "join_authorised_via_users_server": "@c:auth"},
                             "@bob:hs", sender="@bob:hs")
            servers = required_signature_servers(join)
            self.assertEqual(servers, {"hs", "auth"} if rv.restricted_join_rule else {"hs"})
            if rv.restricted_join_rule:
                self.assertRaises(SignatureError, verify_event_signatures, join, keys_of(hs=KEY))
                resigned = add_hashes_and_signature(join.pdu(), rv, "auth", OTHER_KEY)
                ev = Event.from_pdu(resigned, rv)
                verify_event_signatures(ev, keys_of(hs=KEY, auth=OTHER_KEY))

    def test_third_party_invite_exempt_from_sender(self) -> None:
        """An invite made from a third-party invite need not be signed by the sender's
        server (it may be relayed by another)."""
        room = Room(RoomVersions.V10, server="relay")
        ev = room.send("m.room.member", {"membership": "invite",
                                         "third_party_invite": {"signed": {"token": "t"}}},
                       "@bob:x", sender="@alice:inviter")
        self.assertEqual(required_signature_servers(ev), set())
        verify_event_signatures(ev, keys_of())

    def test_bad_signature_with_known_key_fails(self) -> None:
        """A known key whose signature does not verify fails, even if another verifies."""
        ev = Room(RoomVersions.V10).power
        pdu = ev.pdu()
        pdu["signatures"]["hs"]["ed25519:k2"] = pdu["signatures"]["hs"]["ed25519:k1"]
        ev2 = Event.from_pdu(pdu, RoomVersions.V10)

        def both(server: str, key_id: str) -> VerifyKey | None:
            return {"ed25519:k1": KEY, "ed25519:k2": OTHER_KEY}[key_id].verify_key

        self.assertRaises(SignatureError, verify_event_signatures, ev2, both)
        # Unknown extra keys and other algorithms are skipped.
        pdu["signatures"]["hs"]["ed25519:k2"] = "garbage"
        pdu["signatures"]["hs"]["other:x"] = "garbage"
        verify_event_signatures(Event.from_pdu(pdu, RoomVersions.V10), keys_of(hs=KEY))


class BatchSignatureTests(SynchronousTestCase):
    """verify_events_signatures gives, per event, exactly what verify_event_signatures
    raises (or not) for it."""

    def test_same_answers_as_one_at_a_time(self) -> None:
        events: list[Event] = []
        for rv in ALL_VERSIONS:
            room = Room(rv)
            events.extend(room.events)
            tampered = room.power.pdu()
            tampered["content"]["users"] = {"@mallory:evil": 100}
            events.append(Event.from_pdu(tampered, rv))
            events.append(room.send("m.room.message", {}, sender="@bob:other"))
            bad_b64 = room.power.pdu()
            bad_b64["signatures"]["hs"]["ed25519:k1"] = "!!!"
            events.append(Event.from_pdu(bad_b64, rv))
            short = room.power.pdu()
            short["signatures"]["hs"]["ed25519:k1"] = "AAAA"
            events.append(Event.from_pdu(short, rv))
            unsigned = room.power.pdu()
            unsigned["signatures"] = {}
            events.append(Event.from_pdu(unsigned, rv))
        for get_key in (keys_of(hs=KEY), keys_of(), lambda s, k: OTHER_KEY.verify_key):
            batch = verify_events_signatures([(ev, get_key) for ev in events])
            self.assertEqual(len(batch), len(events))
            for ev, got in zip(events, batch, strict=True):
                try:
                    verify_event_signatures(ev, get_key)
                    expected = None
                except SignatureError as e:
                    expected = str(e)
                self.assertEqual(None if got is None else str(got), expected, ev.event_id)
        self.assertIn(None, verify_events_signatures([(ev, keys_of(hs=KEY)) for ev in events]))
        self.assertEqual(verify_events_signatures([]), [])


class AuthTypesTests(SynchronousTestCase):
    def test_create(self) -> None:
        """A create event has no auth events."""
        for rv in ALL_VERSIONS:
            self.assertEqual(auth_types_for_event(rv, "m.room.create", "@a:hs", "", {}), set())

    def test_plain_event(self) -> None:
        """Other events need create (not in v12), power levels and the sender's member."""
        base = {("m.room.power_levels", ""), ("m.room.member", "@a:hs")}
        for rv in ALL_VERSIONS:
            expected = base if rv.room_id_from_create_event else base | {("m.room.create", "")}
            self.assertEqual(auth_types_for_event(rv, "m.room.message", "@a:hs", None, {}),
                             expected)

    def test_membership(self) -> None:
        """Member events add the target, join rules for join/invite/knock, the 3pid token
        and the authorising user for restricted joins."""
        rv = RoomVersions.V10
        common = {("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", "@a:hs")}
        target = ("m.room.member", "@b:hs")
        jr = ("m.room.join_rules", "")

        def types(content: dict[str, Any], rv: RoomVersion = rv) -> set[tuple[str, str]]:
            return auth_types_for_event(rv, "m.room.member", "@a:hs", "@b:hs", content)

        self.assertEqual(types({"membership": "leave"}), common | {target})
        self.assertEqual(types({"membership": "ban"}), common | {target})
        self.assertEqual(types({"membership": "join"}), common | {target, jr})
        self.assertEqual(types({"membership": "knock"}), common | {target, jr})
        self.assertEqual(types({"membership": "invite", "third_party_invite": {
            "signed": {"token": "tok"}}}),
            common | {target, jr, ("m.room.third_party_invite", "tok")})
        self.assertEqual(types({"membership": "invite", "third_party_invite": {"signed": 5}}),
                         common | {target, jr})
        self.assertEqual(types({"membership": "join", "join_authorised_via_users_server": "@c:x"}),
                         common | {target, jr, ("m.room.member", "@c:x")})
        self.assertEqual(
            types({"membership": "join", "join_authorised_via_users_server": "@c:x"},
                  RoomVersions.V7), common | {target, jr})
        self.assertEqual(types({"membership": "knock"}, RoomVersions.V6), common | {target})
        self.assertEqual(types({}), common | {target})


def _drop(pdu: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in pdu.items() if k != key}


class ValidationTests(SynchronousTestCase):
    def assertInvalid(self, pdu: Any, rv: RoomVersion, field: str) -> None:
        with self.assertRaises(InvalidEvent) as cm:
            Event.from_pdu(pdu, rv)
        self.assertEqual(cm.exception.field, field, cm.exception.reason)

    def test_required_fields(self) -> None:
        """Each required field, when missing or of the wrong type, is reported by name."""
        for rv in ALL_VERSIONS:
            pdu = valid_pdu(rv)
            for field in ("type", "sender", "content", "depth", "origin_server_ts", "hashes",
                          "signatures", "prev_events", "auth_events", "room_id"):
                self.assertInvalid(_drop(pdu, field), rv, field)
            for field, bad in (("type", 5), ("sender", "alice"), ("content", []),
                               ("depth", "1"), ("depth", True), ("depth", -1),
                               ("origin_server_ts", None), ("hashes", {"sha256": 1}),
                               ("signatures", {"hs": "x"}), ("prev_events", "x"),
                               ("auth_events", {}), ("room_id", "room"), ("state_key", 5),
                               ("state_key", None), ("unsigned", []), ("origin", 5)):
                self.assertInvalid(dict(pdu, **{field: bad}), rv, field)

    def test_reference_formats(self) -> None:
        """prev/auth events must be ID strings (v3+) or [id, hashes] pairs (v1/v2)."""
        for rv in ALL_VERSIONS:
            pdu = valid_pdu(rv)
            for bad in ([5], ["noslash"], [["$a:hs", {}], 1], [["$a:hs"]]):
                self.assertInvalid(dict(pdu, prev_events=bad), rv, "prev_events")
            if rv.event_format is EventFormat.V1:
                self.assertInvalid(dict(pdu, auth_events=["$a:hs"]), rv, "auth_events")
                Event.from_pdu(dict(pdu, auth_events=[["$a:hs", {"sha256": "x"}]]), rv)
            else:
                self.assertInvalid(dict(pdu, auth_events=[["$a", {}]]), rv, "auth_events")

    def test_identifier_lengths(self) -> None:
        """type, state_key, sender and room_id are limited to 255 bytes (UTF-8)."""
        rv = RoomVersions.V10
        pdu = valid_pdu(rv)
        Event.from_pdu(dict(pdu, type="t" * 255), rv)
        self.assertInvalid(dict(pdu, type="t" * 256), rv, "type")
        self.assertInvalid(dict(pdu, type="é" * 128), rv, "type")
        self.assertInvalid(dict(pdu, state_key="s" * 256), rv, "state_key")
        self.assertInvalid(dict(pdu, sender="@" + "a" * 255 + ":hs"), rv, "sender")
        self.assertInvalid(dict(pdu, room_id="!" + "r" * 255 + ":hs"), rv, "room_id")
        self.assertInvalid(dict(pdu, prev_events=["$" + "e" * 255]), rv, "prev_events")

    def test_size_limit(self) -> None:
        """A PDU over 65536 bytes of canonical JSON is rejected."""
        rv = RoomVersions.V10
        pdu = valid_pdu(rv)
        pdu["content"]["body"] = ""
        from ruma.protocol.json import encode_canonical_json

        base = len(encode_canonical_json(pdu))
        pdu["content"]["body"] = "x" * (MAX_PDU_SIZE - base)
        Event.from_pdu(pdu, rv)
        pdu["content"]["body"] += "x"
        self.assertInvalid(pdu, rv, "pdu")

    def test_strict_canonical_json(self) -> None:
        """From v6, floats or out-of-range integers anywhere invalidate the PDU."""
        for rv in ALL_VERSIONS:
            pdu = valid_pdu(rv)
            for bad in ({"content": {"n": 1.5}}, {"content": {"n": 2**53}},
                        {"origin_server_ts": 2**53}, {"unsigned": {"f": 0.5}}):
                p = dict(pdu, **bad)
                if rv.strict_canonicaljson:
                    self.assertInvalid(p, rv, "pdu")
                else:
                    Event.from_pdu(p, rv)

    def test_non_json(self) -> None:
        """Non-JSON values and non-mappings are InvalidEvent, not TypeError."""
        rv = RoomVersions.V10
        pdu = valid_pdu(rv)
        bad: Any
        for bad in (None, [], "x", 5, dict(pdu, content={1: 2}), dict(pdu, x={1, 2}),
                    dict(pdu, x=b"b"), dict(pdu, x=float("nan")), dict(pdu, x=object())):
            self.assertInvalid(bad, rv, "pdu")

    def test_deeply_nested_content(self) -> None:
        """Deep but sane nesting is fine; beyond the fixed limit it is InvalidEvent."""
        rv = RoomVersions.V10
        room = Room(rv)

        def nest(n: int) -> Any:
            v: Any = {}
            for _ in range(n):
                v = {"a": v}
            return v

        ev = room.send("m.room.message", {"deep": nest(200)})
        self.assertEqual(Event.from_pdu(ev.pdu(), rv), ev)
        pdu = dict(ev.pdu(), content={"deep": nest(1000)})
        self.assertInvalid(pdu, rv, "pdu")

    def test_v12_create_with_auth_events(self) -> None:
        """A v12 create event may not list auth events."""
        rv = RoomVersions.V12
        pdu = Room(rv).create.pdu()
        self.assertInvalid(dict(pdu, auth_events=["$x"]), rv, "auth_events")


# -- fuzzing --------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
)
json_value: st.SearchStrategy[Any] = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=4)
    | st.dictionaries(st.text(max_size=10), c, max_size=4)
    | st.tuples(c, c),
    max_leaves=20,
)
weird = st.sampled_from([b"bytes", {1, 2}, object(), float("nan"), {1: "x"}, ("t",), 2**70])
PDU_KEYS = ["type", "sender", "room_id", "content", "state_key", "depth", "origin_server_ts",
            "hashes", "signatures", "prev_events", "auth_events", "event_id", "redacts",
            "unsigned", "origin"]
versions = st.sampled_from(ALL_VERSIONS)
VALID_PDUS = {rv.identifier: valid_pdu(rv) for rv in ALL_VERSIONS}
VALID_CREATES = {rv.identifier: Room(rv).create.pdu() for rv in ALL_VERSIONS}


def _path_set(obj: Any, path: list[int], value: Any) -> Any:
    """Replace a value somewhere inside obj (choosing by indices), returning a copy."""
    if not path or not isinstance(obj, (dict, list)) or not obj:
        return value
    if isinstance(obj, dict):
        keys = sorted(obj)
        k = keys[path[0] % len(keys)]
        return dict(obj, **{k: _path_set(obj[k], path[1:], value)})
    i = path[0] % len(obj)
    out = list(obj)
    out[i] = _path_set(obj[i], path[1:], value)
    return out


class FuzzTests(SynchronousTestCase):
    def _only_invalid_event(self, pdu: Any, rv: RoomVersion) -> None:
        try:
            ev = Event.from_pdu(pdu, rv)
        except InvalidEvent:
            return
        # Whatever is accepted must be usable.
        ev.pdu()
        self.assertTrue(re.match(r"^\$", ev.event_id))
        compute_reference_hash(ev.pdu(), rv)
        verify_event_signatures_safe(ev)

    @given(versions, st.dictionaries(st.sampled_from(PDU_KEYS) | st.text(max_size=5),
                                     json_value | weird, max_size=15))
    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test_arbitrary_data(self, rv: RoomVersion, pdu: dict[str, Any]) -> None:
        """Arbitrary JSON-ish (and non-JSON) data never raises anything but InvalidEvent."""
        self._only_invalid_event(pdu, rv)

    @given(versions, json_value | weird)
    @settings(max_examples=100, deadline=None)
    def test_arbitrary_top_level(self, rv: RoomVersion, value: Any) -> None:
        """Non-object top-level values are InvalidEvent too."""
        self._only_invalid_event(value, rv)

    @given(versions, st.booleans(), st.lists(st.integers(0, 50), max_size=4),
           json_value | weird, st.sampled_from(["set", "delete", "add"]), st.text(max_size=5))
    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test_mutated_valid_pdus(
        self, rv: RoomVersion, create: bool, path: list[int], value: Any, op: str, new_key: str
    ) -> None:
        """Mutating any part of a valid PDU yields either a valid Event or InvalidEvent."""
        base = copy.deepcopy((VALID_CREATES if create else VALID_PDUS)[rv.identifier])
        keys = sorted(base)
        key = keys[path[0] % len(keys)] if path else keys[0]
        if op == "delete":
            del base[key]
        elif op == "add":
            base[new_key] = value
        else:
            base[key] = _path_set(base[key], path[1:], value)
        self._only_invalid_event(base, rv)


def verify_event_signatures_safe(ev: Event) -> None:
    """Signature checking of any accepted event raises only SignatureError."""
    try:
        verify_event_signatures(ev, keys_of(hs=KEY))
    except SignatureError:
        pass


class FromJsonTests(SynchronousTestCase):
    """Event.from_json (decode and validate in one pass) agrees with
    decode_json + Event.from_pdu, and content_hash_matches with check_content_hash."""

    def _both(self, text: bytes, rv: RoomVersion) -> tuple[Any, Any]:
        def run(f: Callable[[], Event]) -> Any:
            try:
                ev = f()
            except InvalidEvent:
                return "invalid"
            return (ev.event_id, ev.pdu(), ev.content_hash_matches())

        def old() -> Event:
            from ruma.protocol.json import decode_json

            try:
                pdu = decode_json(text, strict=rv.strict_canonicaljson)
            except ValueError as e:
                raise InvalidEvent("pdu", str(e)) from e
            return Event.from_pdu(pdu, rv)

        return run(lambda: Event.from_json(text, rv)), run(old)

    def test_valid_events_of_every_version(self) -> None:
        import json

        for rv in ALL_VERSIONS:
            pdu = valid_pdu(rv)
            new, old = self._both(json.dumps(pdu).encode(), rv)
            self.assertEqual(new, old, rv.identifier)
            self.assertNotEqual(new, "invalid")
            self.assertTrue(new[2])

    def test_numbers_orjson_reads_differently(self) -> None:
        """Floats and integers beyond 64 bits take the exact decoder: kept as sent in old
        rooms, refused where canonical JSON is enforced."""
        import json

        for rv in ALL_VERSIONS:
            for number in ("1.5", "18446744073709551616", "9007199254740992", "1e3"):
                text = json.dumps(valid_pdu(rv)).replace('"hi"', number).encode()
                new, old = self._both(text, rv)
                self.assertEqual(new, old, (rv.identifier, number))

    def test_bad_json_is_invalid_event(self) -> None:
        rv = RoomVersions.V10
        for text in (b"", b"[]", b"{", b'{"a": NaN}', b"\xff", b'"x"', b"{}", b"null"):
            with self.assertRaises(InvalidEvent):
                Event.from_json(text, rv)

    def test_content_hash_matches_tampering(self) -> None:
        import json

        for rv in ALL_VERSIONS:
            pdu = valid_pdu(rv)
            pdu["content"]["body"] = "evil"
            ev = Event.from_json(json.dumps(pdu).encode(), rv)
            self.assertFalse(ev.content_hash_matches())
            self.assertFalse(check_content_hash(ev.pdu(), rv))
            # Another spelling of the right hash (padded, URL-safe) still matches.
            good = valid_pdu(rv)
            h = good["hashes"]["sha256"]
            for spelling in (h + "=", h.replace("+", "-").replace("/", "_")):
                alt = dict(good, hashes={"sha256": spelling})
                ev = Event.from_pdu(alt, rv)
                self.assertEqual(
                    ev.content_hash_matches(), check_content_hash(alt, rv), (rv.identifier, spelling)
                )

    def test_content_hash_after_with_unsigned_and_redaction(self) -> None:
        rv = RoomVersions.V10
        ev = Event.from_pdu(valid_pdu(rv), rv)
        self.assertTrue(ev.with_unsigned({"age": 1.5}).content_hash_matches())
        self.assertFalse(ev.redacted().content_hash_matches())


class MemoPathTests(SynchronousTestCase):
    """Events whose sender and room are already in the identifier memos skip the grammar
    checks; they must come out exactly as when the memos are empty."""

    def _parse_cold_and_warm(self, pdu: dict[str, Any], rv: RoomVersion) -> tuple[Any, Any]:
        from ruma.protocol import events as ev_module

        def outcome() -> Any:
            try:
                ev = Event.from_pdu(pdu, rv)
            except InvalidEvent as e:
                return ("invalid", e.field)
            return (ev.event_id, ev.room_id, ev.sender, ev.type, ev.state_key, ev.depth,
                    ev.prev_event_ids, ev.auth_event_ids, ev.pdu())  # fmt: skip

        ev_module._valid_senders.clear()
        ev_module._valid_room_ids.clear()
        cold = outcome()
        warm = outcome()  # the memos now know this sender and room (if valid)
        return cold, warm

    def test_same_event_either_way(self) -> None:
        for rv in ALL_VERSIONS:
            room = Room(rv)
            for ev in [*room.events, room.send("m.room.message", {"body": "x"}),
                       room.send("m.room.redaction", {}, redacts=room.events[-1].event_id)]:
                cold, warm = self._parse_cold_and_warm(ev.pdu(), rv)
                self.assertEqual(cold, warm, (rv.identifier, ev.type))

    def test_v12_event_in_a_room_id_known_from_another_version(self) -> None:
        """A v12 event must carry a hash room ID, even when its (server-form) room ID is
        remembered as valid from an older room."""
        v10 = Room(RoomVersions.V10)
        Event.from_pdu(v10.events[-1].pdu(), RoomVersions.V10)  # remember v10's room ID
        v12 = Room(RoomVersions.V12)
        pdu = v12.send("m.room.message", {"body": "x"}).pdu()
        pdu["room_id"] = v10.room_id
        with self.assertRaises(InvalidEvent) as cm:
            Event.from_pdu(pdu, RoomVersions.V12)
        self.assertEqual(cm.exception.field, "room_id")
