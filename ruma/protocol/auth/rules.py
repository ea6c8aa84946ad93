"""``check_auth``: the authorisation rules of the spec, for every room version.

Rule numbers in comments are those of room version 12, where the list is longest. In
v6-v11 every rule after the first is one lower (there is no rule 2, "room ID of the create
event"). In v1-v5 the auth events and m.federate rules are one lower (2 and 3), then come
the aliases rule (4), and from the membership rule (5) on the numbers match v12, plus the
redaction rule 11.
"""

from __future__ import annotations

from ruma.protocol.events import Event
from ruma.protocol.ids import UserID
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat

from .common import CREATE, POWER_LEVELS, AuthError, AuthState, domain_of
from .membership import check_member
from .power_levels import (
    check_power_levels,
    get_named_level,
    get_send_level,
    get_user_power_level,
)


def can_federate(auth_state: AuthState) -> bool:
    """False only if the create event sets ``m.federate`` to ``false``."""
    create = auth_state.get(CREATE)
    return create is None or create.content.get("m.federate", True) is not False


def room_id_for_create_event_id(create_event_id: str) -> str:
    """v12: a room's ID is its create event's ID with the sigil ``!`` instead of ``$``."""
    return "!" + create_event_id[1:]


def check_auth(event: Event, auth_state: AuthState) -> None:
    """Authorise ``event`` against ``auth_state``; raise :class:`AuthError` if it fails.

    ``auth_state`` is what :func:`check_auth_events` returned for the event's own auth
    events (the create event included, also in v12), or the relevant current state when
    checking for soft failure. Checks that need keys (the event's signatures, and the
    signature of ``join_authorised_via_users_server``'s server) belong to the checks on
    receipt of a PDU; those on its auth events (duplicates, selection, rejection) to
    :func:`check_auth_events`.
    """
    room_version = event.room_version
    # 1: the create event.
    if event.type == "m.room.create":
        check_create(event)
        return
    create = auth_state.get(CREATE)
    if create is None:
        raise AuthError("auth_events.no_create", "no m.room.create event in the auth state")
    # 2 (v12): the room ID is the create event's ID.
    if room_version.room_id_from_create_event and event.room_id != "!" + create.event_id[1:]:
        raise AuthError(
            "room_id.not_create_event",
            f"room {event.room_id} is not that of create event {create.event_id}",
        )
    # 4 (3 before v12): m.federate.
    if create.content.get("m.federate", True) is False and domain_of(event.sender) != domain_of(
        create.sender
    ):
        raise AuthError("federate.disallowed", "the room does not federate with this server")
    # v1-v5 rule 4: m.room.aliases.
    if event.type == "m.room.aliases" and room_version.special_case_aliases_auth:
        check_aliases(event)
        return
    # 5: membership.
    if event.type == "m.room.member":
        check_member(event, auth_state)
        return
    # 6: everything else needs a joined sender.
    sender_member = auth_state.get(("m.room.member", event.sender))
    if sender_member is None or sender_member.content.get("membership") != "join":
        raise AuthError("sender_not_joined", f"{event.sender} is not in the room")
    sender_level = get_user_power_level(event.sender, auth_state)
    # 7: third-party invites need the invite level.
    if event.type == "m.room.third_party_invite":
        if sender_level < get_named_level(auth_state, "invite"):
            raise AuthError("third_party_invite.power_level", f"{event.sender} may not invite")
        return
    # 8: the event type's required power level.
    required = get_send_level(event.type, event.state_key, auth_state.get(POWER_LEVELS))
    if required > sender_level:
        raise AuthError(
            "power_level.too_low",
            f"{event.type} needs level {required}; {event.sender} has {sender_level}",
        )
    # 9: state keys naming another user are theirs alone.
    if (
        event.state_key is not None
        and event.state_key.startswith("@")
        and event.state_key != event.sender
    ):
        raise AuthError("state_key.other_user", f"state_key {event.state_key} is not the sender")
    # 10: power levels.
    if event.type == "m.room.power_levels":
        check_power_levels(event, auth_state)
        return
    # v1-v2 rule 11: redactions.
    if event.type == "m.room.redaction" and room_version.event_format is EventFormat.V1:
        check_redaction_v1(event, auth_state, sender_level)
    # 11: otherwise, allow.


def check_create(event: Event) -> None:
    """Rule 1: ``m.room.create``."""
    room_version = event.room_version
    content = event.content
    # 1.1
    if event.prev_event_ids:
        raise AuthError("create.has_prev_events", "the create event has prev_events")
    # 1.2
    if room_version.room_id_from_create_event:
        if _has_room_id(event):
            raise AuthError("create.has_room_id", "a v12 create event has no room_id")
    elif domain_of(event.room_id) != domain_of(event.sender):
        raise AuthError(
            "create.room_id_domain", f"room {event.room_id} is not on {domain_of(event.sender)}"
        )
    # 1.3
    if "room_version" in content and content["room_version"] not in KNOWN_ROOM_VERSIONS:
        raise AuthError(
            "create.unknown_room_version", f"unknown room version {content['room_version']!r}"
        )
    # 1.4 (v1-v10): an explicit creator.
    if not room_version.implicit_room_creator and "creator" not in content:
        raise AuthError("create.no_creator", "content has no creator")
    # 1.4 (v12): additional_creators are user IDs.
    if room_version.privileged_creators and "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list | tuple) or not all(
            isinstance(user, str) and UserID.is_valid(user) for user in extra
        ):
            raise AuthError(
                "create.invalid_additional_creators",
                "additional_creators is not a list of user IDs",
            )


def _has_room_id(event: Event) -> bool:
    # Event.from_pdu refuses such a PDU already; kept so the rule stands on its own.
    return event.get("room_id") is not None


def check_aliases(event: Event) -> None:
    """v1-v5 rule 4: ``m.room.aliases`` is the business of the server in its state_key."""
    if event.state_key is None:
        raise AuthError("aliases.no_state_key", "m.room.aliases without a state_key")
    if event.state_key != domain_of(event.sender):
        raise AuthError(
            "aliases.wrong_domain", f"{event.sender} cannot set aliases of {event.state_key}"
        )


def check_redaction_v1(event: Event, auth_state: AuthState, sender_level: int | float) -> None:
    """v1-v2 rule 11: redact level, or a redaction of an event from the same server."""
    if sender_level >= get_named_level(auth_state, "redact"):
        return
    redacts = event.redacts
    if redacts is not None and domain_of(redacts) == domain_of(event.event_id):
        return
    raise AuthError(
        "redaction.not_allowed",
        f"{event.sender} may not redact {redacts}: below the redact level and another server",
    )
