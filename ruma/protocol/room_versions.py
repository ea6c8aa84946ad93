"""Room versions 1-12 as frozen sets of feature flags.

Code asks a :class:`RoomVersion` what applies; it never compares version strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from types import MappingProxyType

from ruma.protocol.errors import UnsupportedRoomVersion

__all__ = [
    "DEFAULT_ROOM_VERSION",
    "DEFAULT_ROOM_VERSION_ID",
    "KNOWN_ROOM_VERSIONS",
    "EventFormat",
    "RedactionRules",
    "RoomVersion",
    "RoomVersions",
    "StateResAlgorithm",
    "get_room_version",
]


class EventFormat(Enum):
    """How event IDs are formed and how prev/auth events are referenced."""

    V1 = 1  # v1, v2: '$local:server' in the event; [[id, {hashes}]] references
    V2 = 2  # v3: '$' + standard unpadded base64 of the reference hash
    V3 = 3  # v4-v11: '$' + url-safe unpadded base64 of the reference hash
    V4 = 4  # v12: as V3, and the room ID is derived from the create event's ID


class StateResAlgorithm(Enum):
    V1 = 1
    V2 = 2
    V2_1 = 3  # v12: empty initial state for the conflicted part; conflicted subgraph


class RedactionRules(Enum):
    """Which redaction algorithm (by the spec fragment that defines it)."""

    V1 = 1
    V6 = 6  # m.room.aliases content no longer kept
    V8 = 8  # join_rules keeps 'allow'
    V9 = 9  # member keeps 'join_authorised_via_users_server'
    V11 = 11  # MSC2176/MSC3821/MSC3989 changes


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    event_format: EventFormat
    state_res: StateResAlgorithm
    redaction_rules: RedactionRules
    # Whether the room version is marked stable by the spec.
    stable: bool
    # v5+: signing keys must be valid at the event's origin_server_ts.
    enforce_key_validity: bool
    # v1-v5: m.room.aliases has its own auth rule (state_key must be the sender's domain).
    special_case_aliases_auth: bool
    # v6+: integers outside +/-(2**53-1) and floats make an event invalid.
    strict_canonicaljson: bool
    # v6+: the 'notifications' key of power levels is enforced in auth.
    limit_notifications_power_levels: bool
    # v7+
    knock_join_rule: bool
    # v8+
    restricted_join_rule: bool
    # v9+: redaction keeps join_authorised_via_users_server.
    restricted_join_rule_fix: bool
    # v10+
    knock_restricted_join_rule: bool
    # v10+: power level values must be integers, not strings.
    enforce_int_power_levels: bool
    # v11+: the room creator is the create event's sender, not content.creator.
    implicit_room_creator: bool
    # v11+: redaction algorithm from MSC2176 and friends.
    updated_redaction_rules: bool
    # v12: room ID is derived from the create event; create event not in auth_events.
    room_id_from_create_event: bool
    # v12: creators (sender + additional_creators) have infinite power.
    privileged_creators: bool

    @property
    def hydra(self) -> bool:
        """The v12 "Project Hydra" changes (alias for room_id_from_create_event)."""
        return self.room_id_from_create_event

    @property
    def event_id_in_pdu(self) -> bool:
        """Whether the event ID is carried in the PDU (only the V1 format)."""
        return self.event_format is EventFormat.V1

    @property
    def max_depth(self) -> int:
        # Strict versions cap integers at 2**53-1; earlier versions allowed int64.
        return 2**53 - 1 if self.strict_canonicaljson else 2**63 - 1


_V1 = RoomVersion(
    identifier="1",
    event_format=EventFormat.V1,
    state_res=StateResAlgorithm.V1,
    redaction_rules=RedactionRules.V1,
    stable=True,
    enforce_key_validity=False,
    special_case_aliases_auth=True,
    strict_canonicaljson=False,
    limit_notifications_power_levels=False,
    knock_join_rule=False,
    restricted_join_rule=False,
    restricted_join_rule_fix=False,
    knock_restricted_join_rule=False,
    enforce_int_power_levels=False,
    implicit_room_creator=False,
    updated_redaction_rules=False,
    room_id_from_create_event=False,
    privileged_creators=False,
)
_V2 = replace(_V1, identifier="2", state_res=StateResAlgorithm.V2)
_V3 = replace(_V2, identifier="3", event_format=EventFormat.V2)
_V4 = replace(_V3, identifier="4", event_format=EventFormat.V3)
_V5 = replace(_V4, identifier="5", enforce_key_validity=True)
_V6 = replace(
    _V5,
    identifier="6",
    redaction_rules=RedactionRules.V6,
    special_case_aliases_auth=False,
    strict_canonicaljson=True,
    limit_notifications_power_levels=True,
)
_V7 = replace(_V6, identifier="7", knock_join_rule=True)
_V8 = replace(_V7, identifier="8", redaction_rules=RedactionRules.V8, restricted_join_rule=True)
_V9 = replace(
    _V8, identifier="9", redaction_rules=RedactionRules.V9, restricted_join_rule_fix=True
)
_V10 = replace(
    _V9, identifier="10", knock_restricted_join_rule=True, enforce_int_power_levels=True
)
_V11 = replace(
    _V10,
    identifier="11",
    redaction_rules=RedactionRules.V11,
    implicit_room_creator=True,
    updated_redaction_rules=True,
)
_V12 = replace(
    _V11,
    identifier="12",
    event_format=EventFormat.V4,
    state_res=StateResAlgorithm.V2_1,
    room_id_from_create_event=True,
    privileged_creators=True,
)


class RoomVersions:
    """Namespace of the known versions, for readable references (``RoomVersions.V10``)."""

    V1 = _V1
    V2 = _V2
    V3 = _V3
    V4 = _V4
    V5 = _V5
    V6 = _V6
    V7 = _V7
    V8 = _V8
    V9 = _V9
    V10 = _V10
    V11 = _V11
    V12 = _V12


KNOWN_ROOM_VERSIONS: Mapping[str, RoomVersion] = MappingProxyType(
    {v.identifier: v for v in (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11, _V12)}
)

# The version new rooms get unless asked otherwise. The spec recommends v12 as the default
# since Matrix 1.16 and Synapse defaults to it as well.
DEFAULT_ROOM_VERSION_ID = "12"
DEFAULT_ROOM_VERSION = _V12


def get_room_version(identifier: object) -> RoomVersion:
    """Look up a room version by its identifier or raise :class:`UnsupportedRoomVersion`."""
    if not isinstance(identifier, str):
        raise UnsupportedRoomVersion(identifier)
    try:
        return KNOWN_ROOM_VERSIONS[identifier]
    except KeyError:
        raise UnsupportedRoomVersion(identifier) from None
