"""Power levels: reading them out of room state, and the ``m.room.power_levels`` rule.

Defaults follow the ``m.room.power_levels`` schema: ``ban``, ``kick``, ``redact`` and
``state_default`` are 50, ``invite``, ``events_default`` and ``users_default`` are 0, and
the ``room`` notification level is 50. Without a power levels event the room creator has
level 100 (v1-v11); in room versions with ``privileged_creators`` (v12) every creator has
an infinite level whether or not a power levels event exists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeGuard

from ruma.protocol.events import Event
from ruma.protocol.ids import is_valid_user_id
from ruma.protocol.room_versions import EventFormat, RoomVersion

from .common import CREATE, POWER_LEVELS, AuthError, AuthState

#: The top-level integer properties compared by rule 10.6 (v12 numbering).
LEVEL_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")

NAMED_DEFAULTS: Mapping[str, int] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}

#: v1-v9 accept power levels written as strings: optional whitespace, one sign, digits.
_STRINGY_INT = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)

Level = int | float  # float only ever for math.inf (v12 creators)


def _is_strict_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_level(value: object, room_version: RoomVersion) -> int | None:
    """Read one power level value as the room version allows, or ``None`` if invalid.

    v10+ take JSON integers only. Older versions also take integer strings
    (``" +050 "``), and finite floats, which are truncated (only v1-v5 can carry those
    since v6 enforces canonical JSON on the way in).
    """
    if _is_strict_int(value):
        assert isinstance(value, int)
        return value
    if room_version.enforce_int_power_levels:
        return None
    if isinstance(value, str) and _STRINGY_INT.fullmatch(value):
        return int(value.strip())
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _content_of(power_levels: Event | None) -> Mapping[str, object]:
    return power_levels.content if power_levels is not None else {}


def _level_in(
    content: Mapping[str, object], key: str, default: int, room_version: RoomVersion
) -> int:
    if key not in content:
        return default
    parsed = parse_level(content[key], room_version)
    return default if parsed is None else parsed


def _is_map(value: object) -> TypeGuard[Mapping[str, object]]:
    # Event content is frozen dicts all the way down: test the concrete type first, the
    # slow ABC check only for other mappings.
    return isinstance(value, dict) or isinstance(value, Mapping)


def _sub_map(content: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = content.get(key)
    return value if _is_map(value) else {}


# --- creators ---------------------------------------------------------------------------


def creators_of(create: Event) -> frozenset[str]:
    """The room creators named by a create event, as its room version defines them.

    v1-v10: ``content.creator``; v11: the create event's ``sender``; v12: the ``sender``
    plus every string in ``content.additional_creators``.
    """
    # Asked for every event a room's auth checks see. From v3 the event ID is the hash of
    # the redacted event, which keeps the sender and every creator field, so an ID always
    # names the same creators and the answer can be remembered by it.
    memo = create.room_version.event_format is not EventFormat.V1
    if memo:
        hit = _creators_memo.get(create.event_id)
        if hit is not None:
            return hit
    room_version = create.room_version
    if not room_version.implicit_room_creator:
        creator = create.content.get("creator")
        creators = frozenset([creator]) if isinstance(creator, str) else frozenset()
    else:
        result = {create.sender}
        if room_version.privileged_creators:
            extra = create.content.get("additional_creators")
            if isinstance(extra, list | tuple):
                result.update(user for user in extra if isinstance(user, str))
        creators = frozenset(result)
    if memo:
        if len(_creators_memo) >= 1024:
            _creators_memo.clear()
        _creators_memo[create.event_id] = creators
    return creators


_creators_memo: dict[str, frozenset[str]] = {}


def get_creators(auth_state: AuthState) -> frozenset[str]:
    """The room's creators according to the create event in ``auth_state``."""
    create = auth_state.get(CREATE)
    return creators_of(create) if create is not None else frozenset()


def is_creator(user_id: str, auth_state: AuthState) -> bool:
    """Whether ``user_id`` is one of the room's creators (see :func:`creators_of`)."""
    return user_id in get_creators(auth_state)


# --- reading levels ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A power levels event's levels, each read as its room version allows; unreadable
    entries are left out, so a lookup falls back to the default exactly as reading the
    content each time would."""

    top: dict[str, int]
    users: dict[str, int]
    events: dict[str, int]


def _parsed(power_levels: Event) -> _Parsed:
    # Every event checked in a room asks for levels from the same power levels event:
    # read them once per Event object (a redacted copy starts afresh).
    parsed = power_levels._derived
    if isinstance(parsed, _Parsed):
        return parsed
    room_version = power_levels.room_version
    content = power_levels.content
    parsed = _Parsed(
        top=_levels({k: content[k] for k in LEVEL_KEYS if k in content}, room_version),
        users=_levels(content.get("users"), room_version),
        events=_levels(content.get("events"), room_version),
    )
    object.__setattr__(power_levels, "_derived", parsed)
    return parsed


def get_user_power_level(user_id: str, auth_state: AuthState) -> Level:
    """The user's power level: ``math.inf`` for v12 creators, else an int."""
    create = auth_state.get(CREATE)
    power_levels = auth_state.get(POWER_LEVELS)
    privileged = create is not None and create.room_version.privileged_creators
    if privileged and create is not None and user_id in creators_of(create):
        return math.inf
    if power_levels is not None:
        parsed = _parsed(power_levels)
        level = parsed.users.get(user_id)
        if level is not None:
            return level
        return parsed.top.get("users_default", 0)
    # No power levels event: v1-v11 creators get 100, everyone else 0.
    if not privileged and create is not None and user_id in creators_of(create):
        return 100
    return 0


def get_named_level(auth_state: AuthState, name: str, default: int | None = None) -> int:
    """A top-level level such as ``"ban"`` or ``"invite"`` from the power levels event.

    ``default`` overrides the schema default (:data:`NAMED_DEFAULTS`, else 0).
    """
    if default is None:
        default = NAMED_DEFAULTS.get(name, 0)
    power_levels = auth_state.get(POWER_LEVELS)
    if power_levels is None:
        return default
    if name in NAMED_DEFAULTS:
        return _parsed(power_levels).top.get(name, default)
    return _level_in(power_levels.content, name, default, power_levels.room_version)


def get_notification_level(auth_state: AuthState, key: str = "room") -> int:
    """The level to trigger a notification of kind ``key`` (``"room"`` defaults to 50)."""
    power_levels = auth_state.get(POWER_LEVELS)
    if power_levels is None:
        return 50
    notifications = _sub_map(power_levels.content, "notifications")
    return _level_in(notifications, key, 50, power_levels.room_version)


def get_send_level(event_type: str, state_key: str | None, power_levels: Event | None) -> int:
    """The level needed to send an event of this type: ``events[type]``, else
    ``state_default`` for state events or ``events_default`` for the rest."""
    if power_levels is None:
        if state_key is not None:
            return NAMED_DEFAULTS["state_default"]
        return NAMED_DEFAULTS["events_default"]
    parsed = _parsed(power_levels)
    level = parsed.events.get(event_type)
    if level is not None:
        return level
    if state_key is not None:
        return parsed.top.get("state_default", 50)
    return parsed.top.get("events_default", 0)


# --- the m.room.power_levels rule (rule 10 in v12 numbering) -------------------------------


def _check_shape(event: Event) -> None:
    """Rules 10.1-10.3: the content's values are levels and ``users`` keys are user IDs.

    v10+ spell out integers-only for every property. v1-v9 only ask this of ``users``,
    but every other value must still be readable as a level for rules 10.6-10.8 to be
    applied at all, so unreadable ones are rejected too (as Synapse does).
    """
    room_version = event.room_version
    content = event.content
    for key in LEVEL_KEYS:
        if key in content and parse_level(content[key], room_version) is None:
            raise AuthError("power_levels.invalid_level", f"{key!r} is not an integer")
    map_keys = ["events"]
    if room_version.limit_notifications_power_levels or room_version.enforce_int_power_levels:
        map_keys.append("notifications")
    for key in map_keys:
        if key not in content:
            continue
        value = content[key]
        if not _is_map(value) or any(
            parse_level(level, room_version) is None for level in value.values()
        ):
            raise AuthError("power_levels.invalid_level", f"{key!r} is not a map of integers")
    users = content.get("users", {})
    if not _is_map(users):
        raise AuthError("power_levels.invalid_users", "'users' is not an object")
    for user_id, level in users.items():
        if not isinstance(user_id, str) or not is_valid_user_id(user_id):
            raise AuthError("power_levels.invalid_users", f"{user_id!r} is not a user ID")
        if parse_level(level, room_version) is None:
            raise AuthError("power_levels.invalid_users", f"level of {user_id} is not an integer")


def _levels(value: object, room_version: RoomVersion) -> dict[str, int]:
    """Parse a map of levels, ignoring unreadable entries (already-accepted old state)."""
    if not _is_map(value):
        return {}
    result: dict[str, int] = {}
    for key, raw in value.items():
        level = parse_level(raw, room_version)
        if level is not None:
            result[key] = level
    return result


def _check_map_changes(
    name: str, old: dict[str, int], new: dict[str, int], sender_level: Level
) -> None:
    """Rules 10.6-10.8: nobody may touch a level above their own, or set one above it."""
    for key in old.keys() | new.keys():
        if old.get(key) == new.get(key):
            continue
        if key in old and old[key] > sender_level:
            raise AuthError(
                f"power_levels.{name}_old_above_sender",
                f"{name} level {key!r} is {old[key]}, above the sender's {sender_level}",
            )
        if key in new and new[key] > sender_level:
            raise AuthError(
                f"power_levels.{name}_new_above_sender",
                f"{name} level {key!r} would be {new[key]}, above the sender's {sender_level}",
            )


def _check_user_changes(
    sender: str, old: dict[str, int], new: dict[str, int], sender_level: Level
) -> None:
    """Rules 10.9-10.10: only demote users below you (or yourself); promote up to you."""
    for user_id in old.keys() | new.keys():
        if old.get(user_id) == new.get(user_id):
            continue
        if user_id != sender and user_id in old and old[user_id] >= sender_level:
            raise AuthError(
                "power_levels.user_not_below_sender",
                f"{user_id} has level {old[user_id]}, not below the sender's {sender_level}",
            )
        if user_id in new and new[user_id] > sender_level:
            raise AuthError(
                "power_levels.user_new_above_sender",
                f"{user_id} would get {new[user_id]}, above the sender's {sender_level}",
            )


def check_power_levels(event: Event, auth_state: AuthState) -> None:
    """Rule 10 (v12 numbering; 9 in v6-v11, 10 in v1-v5): ``m.room.power_levels``."""
    room_version = event.room_version
    _check_shape(event)
    # 10.4 (v12): creators cannot be given a level at all.
    if room_version.privileged_creators:
        users = event.content.get("users", {})
        assert _is_map(users)
        named = sorted(get_creators(auth_state).intersection(users))
        if named:
            raise AuthError(
                "power_levels.creator_in_users", f"room creators cannot be listed: {named}"
            )
    # 10.5: the first power levels event is allowed.
    current = auth_state.get(POWER_LEVELS)
    if current is None:
        return
    sender_level = get_user_power_level(event.sender, auth_state)
    old_rv = current.room_version
    old, new = _parsed(current), _parsed(event)
    _check_map_changes("default", old.top, new.top, sender_level)
    _check_map_changes("events", old.events, new.events, sender_level)
    if room_version.limit_notifications_power_levels:
        _check_map_changes(
            "notifications",
            _levels(current.content.get("notifications"), old_rv),
            _levels(event.content.get("notifications"), room_version),
            sender_level,
        )
    _check_user_changes(event.sender, old.users, new.users, sender_level)
