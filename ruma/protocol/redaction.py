"""The per-room-version redaction algorithm (spec: rooms/vN "Redactions").

Redaction decides what the reference hash and the signatures cover, so it must match
every other server byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ruma.protocol.json import _c_redacted_view, thaw
from ruma.protocol.room_versions import RedactionRules, RoomVersion

if TYPE_CHECKING:
    from ruma.protocol.events import Event

__all__ = ["prune_event", "redact", "redacted_content_keys", "redacted_top_level_keys"]

_TOP_LEVEL_V1 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 (MSC2176) stops protecting origin, membership and prev_state.
_TOP_LEVEL_V11 = _TOP_LEVEL_V1 - {"origin", "membership", "prev_state"}

# What the reference hash and signatures cover: the redacted form without signatures
# (unsigned and age_ts are never kept).
_SIGNABLE_V1 = _TOP_LEVEL_V1 - {"signatures"}
_SIGNABLE_V11 = _TOP_LEVEL_V11 - {"signatures"}

_POWER_LEVELS_V1 = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)


def redacted_top_level_keys(room_version: RoomVersion) -> frozenset[str]:
    """The top-level PDU keys that survive redaction."""
    if room_version.redaction_rules is RedactionRules.V11:
        return _TOP_LEVEL_V11
    return _TOP_LEVEL_V1


def redacted_content_keys(room_version: RoomVersion, event_type: str) -> tuple[str, ...] | None:
    """The content keys kept for ``event_type``; ``None`` means the whole content is kept.

    Nested rules (v11's ``third_party_invite.signed``) are handled by :func:`redact`.
    """
    if type(event_type) is not str:
        return _content_keys_for(room_version.redaction_rules, event_type)
    # Looked up in a table built once by _content_keys_for below.
    return _CONTENT_KEYS[room_version.redaction_rules].get(event_type, ())


def _content_keys_for(rules: RedactionRules, event_type: str) -> tuple[str, ...] | None:
    v8 = rules in (RedactionRules.V8, RedactionRules.V9, RedactionRules.V11)
    v9 = rules in (RedactionRules.V9, RedactionRules.V11)
    v11 = rules is RedactionRules.V11
    if event_type == "m.room.member":
        return ("membership", "join_authorised_via_users_server") if v9 else ("membership",)
    if event_type == "m.room.create":
        return None if v11 else ("creator",)
    if event_type == "m.room.join_rules":
        return ("join_rule", "allow") if v8 else ("join_rule",)
    if event_type == "m.room.power_levels":
        return tuple(sorted((*_POWER_LEVELS_V1, "invite"))) if v11 else _POWER_LEVELS_V1
    if event_type == "m.room.history_visibility":
        return ("history_visibility",)
    if event_type == "m.room.aliases" and rules is RedactionRules.V1:
        return ("aliases",)
    if event_type == "m.room.redaction" and v11:
        return ("redacts",)
    return ()


# Every type with a rule; any other type keeps no content keys, in every version.
_TYPES_WITH_RULES = (
    "m.room.member",
    "m.room.create",
    "m.room.join_rules",
    "m.room.power_levels",
    "m.room.history_visibility",
    "m.room.aliases",
    "m.room.redaction",
)
_CONTENT_KEYS: dict[RedactionRules, dict[str, tuple[str, ...] | None]] = {
    rules: {t: _content_keys_for(rules, t) for t in _TYPES_WITH_RULES} for rules in RedactionRules
}


def redact(pdu: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """Return a new dict holding the redacted form of ``pdu``.

    ``unsigned`` is dropped: it is not covered by hashes or signatures and the spec's
    algorithm does not keep it. Callers that serve redacted events to clients add back
    what they need (e.g. ``redacted_because``).
    """
    # Every kept value is deep-copied into plain containers, so callers may mutate it.
    out: dict[str, Any] = thaw(_redacted_view(pdu, room_version))
    return out


def _redacted_view(
    pdu: Mapping[str, Any], room_version: RoomVersion, *, signable: bool = False
) -> dict[str, Any]:
    """The redacted form of ``pdu`` without copying what it keeps.

    The top-level dict and the ``content`` dict are new, but the values in them are
    ``pdu``'s own objects: for hashing and encoding, never for mutating. :func:`redact` is
    this plus a deep copy. ``signable`` also leaves out ``signatures``: what the reference
    hash and the signatures cover.
    """
    rules = room_version.redaction_rules
    if signable:
        keep_top = _SIGNABLE_V11 if rules is RedactionRules.V11 else _SIGNABLE_V1
    else:
        keep_top = _TOP_LEVEL_V11 if rules is RedactionRules.V11 else _TOP_LEVEL_V1
    event_type = pdu.get("type")
    keep_content = (
        _CONTENT_KEYS[rules].get(event_type, ()) if isinstance(event_type, str) else ()
    )
    content = pdu.get("content")
    if (
        _c_redacted_view is not None
        and isinstance(pdu, dict)
        and isinstance(content, dict)
        and not (
            rules is RedactionRules.V11
            and event_type == "m.room.member"
            and "third_party_invite" in content
        )
    ):
        # The same dicts, made in C: this runs for every event received (event ID).
        return _c_redacted_view(pdu, keep_top, keep_content)
    return _redacted_view_py(pdu, rules, keep_top, keep_content)


def _redacted_view_py(
    pdu: Mapping[str, Any],
    rules: RedactionRules,
    keep_top: frozenset[str],
    keep_content: tuple[str, ...] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in pdu.items() if k in keep_top}
    content = out.get("content")
    if content is None and "content" not in pdu:
        return out
    # Event content is a (frozen) dict; the ABC check only for other mappings.
    if not isinstance(content, dict) and not isinstance(content, Mapping):
        # Malformed; Event.from_pdu rejects it, but hashing must still not crash.
        out["content"] = {}
        return out
    if keep_content is None:
        new_content = dict(content)
    else:
        new_content = {k: content[k] for k in keep_content if k in content}
    if (
        rules is RedactionRules.V11
        and pdu.get("type") == "m.room.member"
        and "third_party_invite" in content
    ):
        tpi = content["third_party_invite"]
        if (isinstance(tpi, dict) or isinstance(tpi, Mapping)) and "signed" in tpi:
            # v11 keeps only the signed block of a third-party invite, which auth needs.
            new_content["third_party_invite"] = {"signed": tpi["signed"]}
    out["content"] = new_content
    return out


_SIGNABLE_ARGS = {
    rules: (
        _SIGNABLE_V11 if rules is RedactionRules.V11 else _SIGNABLE_V1,
        _CONTENT_KEYS[rules],
        rules is RedactionRules.V11,
    )
    for rules in RedactionRules
}


def prune_event(event: Event) -> Event:
    """The redacted copy of ``event``; its event ID is unchanged."""
    return event.redacted()
