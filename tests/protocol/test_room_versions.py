"""Room version feature flags."""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.errors import UnsupportedRoomVersion
from ruma.protocol.room_versions import (
    DEFAULT_ROOM_VERSION,
    DEFAULT_ROOM_VERSION_ID,
    KNOWN_ROOM_VERSIONS,
    EventFormat,
    RedactionRules,
    RoomVersion,
    RoomVersions,
    StateResAlgorithm,
    get_room_version,
)
from tests.protocol import load_vectors


def _since(version: RoomVersion, first: int, last: int = 12) -> bool:
    return first <= int(version.identifier) <= last


class RoomVersionTests(SynchronousTestCase):
    def test_known_versions(self) -> None:
        """Exactly the stable versions "1".."12" are known, keyed by their identifier."""
        self.assertEqual(list(KNOWN_ROOM_VERSIONS), [str(n) for n in range(1, 13)])
        for ident, v in KNOWN_ROOM_VERSIONS.items():
            self.assertEqual(v.identifier, ident)
            self.assertIs(get_room_version(ident), v)
            self.assertIs(getattr(RoomVersions, f"V{ident}"), v)
            self.assertTrue(v.stable)

    def test_unknown_version(self) -> None:
        """Unknown or non-string identifiers raise UnsupportedRoomVersion."""
        for bad in ("13", "", "org.matrix.msc0000", "1.0", 1, None):
            self.assertRaises(UnsupportedRoomVersion, get_room_version, bad)

    def test_default(self) -> None:
        """New rooms default to version 12."""
        self.assertEqual(DEFAULT_ROOM_VERSION_ID, "12")
        self.assertIs(DEFAULT_ROOM_VERSION, RoomVersions.V12)

    def test_frozen(self) -> None:
        """RoomVersion values cannot be modified, nor the registry."""
        with self.assertRaises(dataclasses.FrozenInstanceError):
            RoomVersions.V1.identifier = "x"  # type: ignore[misc]
        with self.assertRaises(TypeError):
            KNOWN_ROOM_VERSIONS["x"] = RoomVersions.V1  # type: ignore[index]

    def test_event_formats(self) -> None:
        """Event formats follow the spec: v1-2, v3, v4-11 and v12."""
        for v in KNOWN_ROOM_VERSIONS.values():
            n = int(v.identifier)
            expected = (
                EventFormat.V1 if n <= 2
                else EventFormat.V2 if n == 3
                else EventFormat.V3 if n <= 11
                else EventFormat.V4
            )
            self.assertIs(v.event_format, expected, n)
            self.assertEqual(v.event_id_in_pdu, n <= 2)

    def test_state_res(self) -> None:
        """State res v1 only in v1, v2.1 only in v12, v2 in between."""
        for v in KNOWN_ROOM_VERSIONS.values():
            n = int(v.identifier)
            expected = (
                StateResAlgorithm.V1 if n == 1
                else StateResAlgorithm.V2_1 if n == 12
                else StateResAlgorithm.V2
            )
            self.assertIs(v.state_res, expected, n)

    def test_flags(self) -> None:
        """Every feature flag switches on (or off) at the version the spec says."""
        for v in KNOWN_ROOM_VERSIONS.values():
            n = v.identifier
            self.assertEqual(v.enforce_key_validity, _since(v, 5), n)
            self.assertEqual(v.special_case_aliases_auth, _since(v, 1, 5), n)
            self.assertEqual(v.strict_canonicaljson, _since(v, 6), n)
            self.assertEqual(v.limit_notifications_power_levels, _since(v, 6), n)
            self.assertEqual(v.knock_join_rule, _since(v, 7), n)
            self.assertEqual(v.restricted_join_rule, _since(v, 8), n)
            self.assertEqual(v.restricted_join_rule_fix, _since(v, 9), n)
            self.assertEqual(v.knock_restricted_join_rule, _since(v, 10), n)
            self.assertEqual(v.enforce_int_power_levels, _since(v, 10), n)
            self.assertEqual(v.implicit_room_creator, _since(v, 11), n)
            self.assertEqual(v.updated_redaction_rules, _since(v, 11), n)
            self.assertEqual(v.room_id_from_create_event, _since(v, 12), n)
            self.assertEqual(v.hydra, _since(v, 12), n)
            self.assertEqual(v.privileged_creators, _since(v, 12), n)
            self.assertEqual(v.max_depth, 2**53 - 1 if _since(v, 6) else 2**63 - 1, n)

    def test_redaction_rules_match_spec_table(self) -> None:
        """Each version's redaction algorithm is the one the spec's table assigns to it."""
        table = load_vectors()["redaction_rules"]["room_versions"]
        names = {r: f"v{r.value}" for r in RedactionRules}
        for ident, v in KNOWN_ROOM_VERSIONS.items():
            self.assertEqual(names[v.redaction_rules], table[ident]["redaction"], ident)
