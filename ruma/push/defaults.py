"""Push rules: the spec's server-default ruleset ("Predefined rules"), as data.

Rule order inside each kind is the spec's order, which is also the evaluation order. A
user's own rules and their changes to these (``enabled``, ``actions``) are merged in by
:mod:`ruma.push.rules`.
"""

from __future__ import annotations

from typing import Any

from ruma.protocol.ids import UserID

JsonDict = dict[str, Any]

_SOUND_DEFAULT: JsonDict = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT: JsonDict = {"set_tweak": "highlight"}


def _match(key: str, pattern: str) -> JsonDict:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(rule_id: str, conditions: list[JsonDict], actions: list[Any], *, enabled: bool = True) -> JsonDict:
    return {
        "rule_id": rule_id,
        "default": True,
        "enabled": enabled,
        "conditions": conditions,
        "actions": actions,
    }


def default_ruleset(user_id: str) -> JsonDict:
    """The server-default push ruleset for ``user_id`` (the body of GET /pushrules/global/)."""
    localpart = UserID.parse(user_id, strict=False).localpart
    override = [
        _rule(".m.rule.master", [], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _rule(
            ".m.rule.invite_for_me",
            [
                _match("type", "m.room.member"),
                _match("content.membership", "invite"),
                _match("state_key", user_id),
            ],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _rule(
            ".m.rule.is_user_mention",
            [
                {
                    "kind": "event_property_contains",
                    "key": "content.m\\.mentions.user_ids",
                    "value": user_id,
                }
            ],
            ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        ),
        # Deprecated since v1.7 (only for events without m.mentions), still specified.
        _rule(
            ".m.rule.contains_display_name",
            [{"kind": "contains_display_name"}],
            ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", dict(_HIGHLIGHT)],
        ),
        # Deprecated since v1.7 (only for events without m.mentions), still specified.
        _rule(
            ".m.rule.roomnotif",
            [
                _match("content.body", "@room"),
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.tombstone",
            [_match("type", "m.room.tombstone"), _match("state_key", "")],
            ["notify", dict(_HIGHLIGHT)],
        ),
        _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _rule(
            ".m.rule.room.server_acl",
            [_match("type", "m.room.server_acl"), _match("state_key", "")],
            [],
        ),
        _rule(
            ".m.rule.suppress_edits",
            [
                {
                    "kind": "event_property_is",
                    "key": "content.m\\.relates_to.rel_type",
                    "value": "m.replace",
                }
            ],
            [],
        ),
    ]
    content = [
        # Deprecated since v1.7 (only for events without m.mentions), still specified.
        {
            "rule_id": ".m.rule.contains_user_name",
            "default": True,
            "enabled": True,
            "pattern": localpart,
            "actions": ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        }
    ]
    underride = [
        _rule(
            ".m.rule.call",
            [_match("type", "m.call.invite")],
            ["notify", {"set_tweak": "sound", "value": "ring"}],
        ),
        _rule(
            ".m.rule.encrypted_room_one_to_one",
            [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted")],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(
            ".m.rule.room_one_to_one",
            [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message")],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]
    return {"override": override, "content": content, "room": [], "sender": [], "underride": underride}


def push_rules_account_data(user_id: str) -> JsonDict:
    """The ``m.push_rules`` account data event content sync sends (``{"global": ...}``)."""
    return {"global": default_ruleset(user_id)}
