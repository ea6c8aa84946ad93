"""The Matrix authorisation rules, room versions 1-12, as pure functions.

Two stages, as the spec's "checks performed on receipt of a PDU" use them:

* :func:`check_auth_events` checks an event's ``auth_events`` list (state-independent)
  and returns the auth state map;
* :func:`check_auth` applies the rules of the event's room version to an auth state map
  (the event's auth events, or the current state for soft failure).

Both raise :class:`AuthError`, whose ``rule`` names the rule that was broken.
"""

from __future__ import annotations

from .auth_events import check_auth_events
from .common import AuthError, AuthState
from .power_levels import (
    get_creators,
    get_named_level,
    get_notification_level,
    get_send_level,
    get_user_power_level,
    is_creator,
)
from .rules import can_federate, check_auth, room_id_for_create_event_id

__all__ = [
    "AuthError",
    "AuthState",
    "can_federate",
    "check_auth",
    "check_auth_events",
    "get_creators",
    "get_named_level",
    "get_notification_level",
    "get_send_level",
    "get_user_power_level",
    "is_creator",
    "room_id_for_create_event_id",
]
