"""Shared pieces of the authorisation rules: the error type and small state look-ups.

``auth_state`` everywhere is a map from ``(type, state_key)`` to the event that holds
that piece of state, as the rules see it: the event's auth events (plus, in room
versions with ``room_id_from_create_event``, the create event), or the current state
when checking for soft failure.
"""

from __future__ import annotations

from collections.abc import Mapping

from ruma.protocol.errors import ProtocolError
from ruma.protocol.events import Event, StateKey

CREATE: StateKey = ("m.room.create", "")
POWER_LEVELS: StateKey = ("m.room.power_levels", "")
JOIN_RULES: StateKey = ("m.room.join_rules", "")

AuthState = Mapping[StateKey, Event]


class AuthError(ProtocolError):
    """An event breaks one of the authorisation rules of its room version.

    ``rule`` is a short, stable, dotted identifier of the broken rule (for example
    ``"member.join.banned"``), suitable for logs, metrics and tests; ``reason`` is a
    sentence for humans.
    """

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason


def member_key(user_id: str) -> StateKey:
    return ("m.room.member", user_id)


def membership_of(user_id: str, auth_state: AuthState) -> str | None:
    """The user's current membership, or ``None`` if they have no member event."""
    event = auth_state.get(member_key(user_id))
    if event is None:
        return None
    membership = event.content.get("membership")
    return membership if isinstance(membership, str) else None


def join_rule_of(auth_state: AuthState) -> str:
    """The room's join rule.

    With no ``m.room.join_rules`` event the rules name no join rule at all, so a join
    can only pass as an invited/joined user. We model that as ``"invite"``, which is
    what Synapse does and gives the same outcomes for every membership but one: an
    already invited user may join. (Read literally, the spec would reject that join
    too; a room never lacks a join rules event in practice after creation.)
    """
    event = auth_state.get(JOIN_RULES)
    if event is None:
        return "invite"
    rule = event.content.get("join_rule")
    return rule if isinstance(rule, str) else ""


def domain_of(identifier: str) -> str:
    """The server part of a user ID or a v1/v2 event ID (everything after the first colon)."""
    _, sep, domain = identifier.partition(":")
    return domain if sep else ""
