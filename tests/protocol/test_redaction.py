"""The redaction algorithm of each room version."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.events import (
    Event,
    build_event,
    compute_event_id,
    compute_reference_hash,
    verify_event_signatures,
)
from ruma.protocol.json import thaw
from ruma.protocol.redaction import prune_event, redact
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, RoomVersions
from ruma.protocol.signing import generate_signing_key
from tests.protocol import load_vectors

KEY = generate_signing_key("test")

# Every content key any rule set mentions, plus a nested third_party_invite and junk.
ALL_CONTENT: dict[str, Any] = {
    "membership": "invite",
    "join_authorised_via_users_server": "@a:x",
    "third_party_invite": {"display_name": "a", "signed": {"token": "t", "mxid": "@b:x"}},
    "creator": "@a:x",
    "room_version": "1",
    "m.federate": False,
    "join_rule": "public",
    "allow": [{"type": "m.room_membership", "room_id": "!a:x"}],
    "ban": 50,
    "events": {"m.room.name": 50},
    "events_default": 0,
    "invite": 0,
    "kick": 50,
    "redact": 50,
    "state_default": 50,
    "users": {"@a:x": 100},
    "users_default": 0,
    "notifications": {"room": 50},
    "aliases": ["#a:x"],
    "history_visibility": "shared",
    "redacts": "$e:x",
    "body": "secret",
    "junk": {"nested": [1, 2]},
}
ALL_TOP_LEVEL: dict[str, Any] = {
    "event_id": "$e:x",
    "type": "X",
    "room_id": "!r:x",
    "sender": "@a:x",
    "state_key": "",
    "content": {},
    "hashes": {"sha256": "abc"},
    "signatures": {"x": {"ed25519:1": "sig"}},
    "depth": 5,
    "prev_events": ["$p"],
    "prev_state": [],
    "auth_events": ["$a"],
    "origin": "x",
    "origin_server_ts": 1,
    "membership": "join",
    "unsigned": {"age": 1, "redacted_because": {}},
    "redacts": "$e:x",
    "age_ts": 5,
    "other": 1,
}
EVENT_TYPES = (
    "m.room.member",
    "m.room.create",
    "m.room.join_rules",
    "m.room.power_levels",
    "m.room.aliases",
    "m.room.history_visibility",
    "m.room.redaction",
    "m.room.message",
    "m.room.name",
)


def _expected_content(rule_set: dict[str, Any], event_type: str) -> dict[str, Any]:
    keys = rule_set["content_keys"].get(event_type, [])
    if keys == "*":
        return dict(ALL_CONTENT)
    out: dict[str, Any] = {}
    for key in keys:
        if "." in key:
            outer, inner = key.split(".")
            out.setdefault(outer, {})[inner] = ALL_CONTENT[outer][inner]
        else:
            out[key] = ALL_CONTENT[key]
    return out


class RedactionTableTests(SynchronousTestCase):
    def test_spec_table(self) -> None:
        """For every version and event type, exactly the spec's top-level and content keys
        survive (the table in tests/vectors, transcribed from the spec's room pages)."""
        rules = load_vectors()["redaction_rules"]
        for ident, rv in KNOWN_ROOM_VERSIONS.items():
            rule_set = rules["rule_sets"][rules["room_versions"][ident]["redaction"]]
            for event_type in EVENT_TYPES:
                pdu = dict(ALL_TOP_LEVEL, type=event_type, content=ALL_CONTENT)
                got = redact(pdu, rv)
                expected_top = {k for k in ALL_TOP_LEVEL if k in rule_set["top_level_keys"]}
                self.assertEqual(set(got), expected_top, (ident, event_type))
                self.assertEqual(
                    got["content"], _expected_content(rule_set, event_type), (ident, event_type)
                )

    def test_unsigned_dropped(self) -> None:
        """unsigned never survives redaction, in any version."""
        for rv in KNOWN_ROOM_VERSIONS.values():
            self.assertNotIn("unsigned", redact(ALL_TOP_LEVEL, rv))

    def test_does_not_mutate(self) -> None:
        """redact returns new containers; the input is untouched."""
        pdu = dict(ALL_TOP_LEVEL, type="m.room.power_levels", content=dict(ALL_CONTENT))
        got = redact(pdu, RoomVersions.V11)
        got["content"]["users"]["@z:x"] = 1
        self.assertEqual(ALL_CONTENT["users"], {"@a:x": 100})
        self.assertIn("body", pdu["content"])

    def test_v11_third_party_invite_without_signed(self) -> None:
        """v11 drops third_party_invite entirely when it has no 'signed' block."""
        pdu = {"type": "m.room.member", "content": {"membership": "invite",
                                                    "third_party_invite": {"x": 1}}}
        self.assertEqual(redact(pdu, RoomVersions.V11)["content"], {"membership": "invite"})

    def test_malformed_content(self) -> None:
        """A non-object content redacts to {} and a missing one stays missing."""
        self.assertEqual(redact({"type": "m.room.member", "content": [1]}, RoomVersions.V1),
                         {"type": "m.room.member", "content": {}})
        self.assertEqual(redact({"type": "m.room.member"}, RoomVersions.V1),
                         {"type": "m.room.member"})

    def test_non_string_type(self) -> None:
        """A non-string type strips all content rather than crashing."""
        self.assertEqual(redact({"type": 5, "content": {"a": 1}}, RoomVersions.V11),
                         {"type": 5, "content": {}})


json_leaf = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8)
json_value = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=10,
)
content_keys = st.sampled_from(sorted(ALL_CONTENT)) | st.text(max_size=8)
contents = st.dictionaries(content_keys, json_value, max_size=6)
room_versions = st.sampled_from(list(KNOWN_ROOM_VERSIONS.values()))
event_types = st.sampled_from(EVENT_TYPES)


class RedactionPropertyTests(SynchronousTestCase):
    @given(room_versions, event_types, contents,
           st.dictionaries(st.sampled_from(sorted(ALL_TOP_LEVEL)), json_value))
    @settings(max_examples=300, deadline=None)
    def test_idempotent(
        self, rv: RoomVersion, event_type: str, content: dict[str, Any], top: dict[str, Any]
    ) -> None:
        """Redacting a redacted event changes nothing."""
        pdu = dict(top, type=event_type, content=content)
        once = redact(pdu, rv)
        self.assertEqual(redact(once, rv), once)

    @given(room_versions, event_types, contents, st.booleans())
    @settings(max_examples=100, deadline=None)
    def test_redacted_event_still_verifies(
        self, rv: RoomVersion, event_type: str, content: dict[str, Any], is_state: bool
    ) -> None:
        """A pruned event keeps its event ID and reference hash and its signature verifies."""
        if rv.room_id_from_create_event and event_type == "m.room.create" and is_state:
            room_id = None
        else:
            room_id = "!" + "A" * 43 if rv.room_id_from_create_event else "!r:x"
        if rv.updated_redaction_rules and event_type == "m.room.redaction":
            content.pop("redacts", None)  # a non-string content.redacts is invalid from v11
        ev = build_event(
            rv,
            room_id=room_id,
            sender="@a:x",
            type=event_type,
            content=content,
            state_key="" if is_state else None,
            prev_events=[],
            auth_events=[],
            depth=1,
            origin_server_ts=1,
            server_name="x",
            signing_key=KEY,
            event_id_localpart="e1",
        )
        pruned = prune_event(ev)
        self.assertEqual(pruned.event_id, ev.event_id)
        self.assertEqual(pruned.room_id, ev.room_id)
        self.assertEqual(thaw(pruned.content), redact(ev.pdu(), rv)["content"])
        self.assertNotIn("unsigned", pruned.pdu())
        self.assertEqual(compute_reference_hash(pruned.pdu(), rv),
                         compute_reference_hash(ev.pdu(), rv))
        self.assertEqual(compute_event_id(pruned.pdu(), rv), ev.event_id)
        verify_event_signatures(pruned, lambda server, key_id: KEY.verify_key)
        # And it is still a valid event in its own right.
        self.assertEqual(Event.from_pdu(pruned.pdu(), rv), ev)
