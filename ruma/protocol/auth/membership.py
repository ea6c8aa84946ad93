"""Rule 5 (v12 numbering; rule 4 in v6-v11, rule 5 in v1-v5): ``m.room.member`` events.

Each function returns to *allow* the event and raises :class:`AuthError` to reject it.
"""

from __future__ import annotations

from ruma.protocol.events import Event

from .common import CREATE, AuthError, AuthState, join_rule_of, membership_of
from .power_levels import creators_of, get_named_level, get_user_power_level
from .third_party_invite import check_third_party_invite_membership

AUTHORISER_KEY = "join_authorised_via_users_server"


def check_member(event: Event, auth_state: AuthState) -> None:
    room_version = event.room_version
    # 5.1: a state_key and a membership.
    if event.state_key is None:
        raise AuthError("member.no_state_key", "member event without a state_key")
    membership = event.content.get("membership")
    if membership is None:
        raise AuthError("member.no_membership", "member event without content.membership")
    # 5.2 (v8+): the authorising server must have signed a restricted join.
    if room_version.restricted_join_rule and AUTHORISER_KEY in event.content:
        _check_authoriser_signed(event)
    if membership == "join":
        _check_join(event, auth_state)
    elif membership == "invite":
        _check_invite(event, auth_state)
    elif membership == "leave":
        _check_leave(event, auth_state)
    elif membership == "ban":
        _check_ban(event, auth_state)
    elif membership == "knock" and room_version.knock_join_rule:
        _check_knock(event, auth_state)
    else:
        # 5.8: unknown membership (knock before v7 included).
        raise AuthError("member.unknown_membership", f"unknown membership {membership!r}")


def _check_authoriser_signed(event: Event) -> None:
    """Rule 5.2.1. Verifying the signature itself belongs to the signature checks on
    receipt of a PDU (they hold the keys); here we insist it is present."""
    authoriser = event.content.get(AUTHORISER_KEY)
    if not isinstance(authoriser, str) or ":" not in authoriser:
        raise AuthError("member.join_authorised_via.invalid", f"{AUTHORISER_KEY} is not a user ID")
    server = authoriser.split(":", 1)[1]
    if server not in event.signatures:
        raise AuthError(
            "member.join_authorised_via.unsigned",
            f"the event is not signed by {server}, the server of {authoriser}",
        )


def _is_first_join_of_creator(event: Event, auth_state: AuthState) -> bool:
    """Rule 5.3.1: the only prev event is the create event and the target is its creator
    (v1-v10 ``content.creator``, v11+ the create event's ``sender``)."""
    create = auth_state.get(CREATE)
    if create is None or list(event.prev_event_ids) != [create.event_id]:
        return False
    if create.room_version.implicit_room_creator:
        return event.state_key == create.sender
    return event.state_key in creators_of(create)


def _check_join(event: Event, auth_state: AuthState) -> None:
    """Rule 5.3."""
    room_version = event.room_version
    if _is_first_join_of_creator(event, auth_state):
        return
    if event.sender != event.state_key:
        raise AuthError("member.join.sender_not_target", "cannot join on behalf of another user")
    current = membership_of(event.sender, auth_state)
    if current == "ban":
        raise AuthError("member.join.banned", f"{event.sender} is banned")
    join_rule = join_rule_of(auth_state)
    # 5.3.4: invite (and knock, v7+) rooms let invited or joined users join.
    if join_rule == "invite" or (join_rule == "knock" and room_version.knock_join_rule):
        if current in ("invite", "join"):
            return
        raise AuthError("member.join.not_invited", f"{event.sender} is not invited")
    # 5.3.5: restricted (v8+) and knock_restricted (v10+) rooms.
    if (join_rule == "restricted" and room_version.restricted_join_rule) or (
        join_rule == "knock_restricted" and room_version.knock_restricted_join_rule
    ):
        if current in ("invite", "join"):
            return
        _check_join_authoriser(event, auth_state)
        return
    # 5.3.6: public rooms.
    if join_rule == "public":
        return
    raise AuthError("member.join.join_rule", f"cannot join under join rule {join_rule!r}")


def _check_join_authoriser(event: Event, auth_state: AuthState) -> None:
    """Rule 5.3.5.2: the authorising user is joined and may invite."""
    authoriser = event.content.get(AUTHORISER_KEY)
    if not isinstance(authoriser, str):
        raise AuthError(
            "member.join.restricted.no_authoriser", f"restricted join without {AUTHORISER_KEY}"
        )
    if membership_of(authoriser, auth_state) != "join":
        raise AuthError(
            "member.join.restricted.authoriser_not_joined", f"{authoriser} is not in the room"
        )
    if get_user_power_level(authoriser, auth_state) < get_named_level(auth_state, "invite"):
        raise AuthError(
            "member.join.restricted.authoriser_cannot_invite", f"{authoriser} may not invite"
        )


def _check_invite(event: Event, auth_state: AuthState) -> None:
    """Rule 5.4."""
    if "third_party_invite" in event.content:
        check_third_party_invite_membership(event, auth_state)
        return
    target = event.state_key
    assert target is not None
    if membership_of(event.sender, auth_state) != "join":
        raise AuthError("member.invite.sender_not_joined", f"{event.sender} is not in the room")
    if membership_of(target, auth_state) in ("join", "ban"):
        raise AuthError(
            "member.invite.target_joined_or_banned", f"{target} is already joined or banned"
        )
    if get_user_power_level(event.sender, auth_state) < get_named_level(auth_state, "invite"):
        raise AuthError("member.invite.power_level", f"{event.sender} may not invite")


def _check_leave(event: Event, auth_state: AuthState) -> None:
    """Rule 5.5: leaving, rejecting an invite, retracting a knock, kicking, unbanning."""
    target = event.state_key
    assert target is not None
    if event.sender == target:
        allowed = {"invite", "join"}
        if event.room_version.knock_join_rule:
            allowed.add("knock")
        if membership_of(target, auth_state) in allowed:
            return
        raise AuthError("member.leave.not_in_room", f"{target} cannot leave from here")
    if membership_of(event.sender, auth_state) != "join":
        raise AuthError("member.leave.sender_not_joined", f"{event.sender} is not in the room")
    sender_level = get_user_power_level(event.sender, auth_state)
    if membership_of(target, auth_state) == "ban" and sender_level < get_named_level(
        auth_state, "ban"
    ):
        raise AuthError("member.leave.unban_power_level", f"{event.sender} may not unban")
    if sender_level < get_named_level(auth_state, "kick"):
        raise AuthError("member.leave.kick_power_level", f"{event.sender} may not kick")
    if get_user_power_level(target, auth_state) >= sender_level:
        raise AuthError(
            "member.leave.target_not_below_sender", f"{target} is not below {event.sender}"
        )


def _check_ban(event: Event, auth_state: AuthState) -> None:
    """Rule 5.6."""
    target = event.state_key
    assert target is not None
    if membership_of(event.sender, auth_state) != "join":
        raise AuthError("member.ban.sender_not_joined", f"{event.sender} is not in the room")
    sender_level = get_user_power_level(event.sender, auth_state)
    if sender_level < get_named_level(auth_state, "ban"):
        raise AuthError("member.ban.power_level", f"{event.sender} may not ban")
    if get_user_power_level(target, auth_state) >= sender_level:
        raise AuthError(
            "member.ban.target_not_below_sender", f"{target} is not below {event.sender}"
        )


def _check_knock(event: Event, auth_state: AuthState) -> None:
    """Rule 5.7 (v7+)."""
    room_version = event.room_version
    join_rule = join_rule_of(auth_state)
    knockable = join_rule == "knock" or (
        join_rule == "knock_restricted" and room_version.knock_restricted_join_rule
    )
    if not knockable:
        raise AuthError("member.knock.join_rule", f"cannot knock under join rule {join_rule!r}")
    if event.sender != event.state_key:
        raise AuthError("member.knock.sender_not_target", "cannot knock on behalf of another user")
    if membership_of(event.sender, auth_state) in ("ban", "invite", "join"):
        raise AuthError(
            "member.knock.already_member", f"{event.sender} is banned, invited or joined"
        )
