"""Rule 5.4.1 (v12 numbering): an invite that redeems a third-party invite token.

The ``signed`` object in ``content.third_party_invite`` must carry an ed25519 signature
made by one of the public keys published in the matching ``m.room.third_party_invite``
state event (``public_key`` and every ``public_keys[].public_key``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from nacl.signing import VerifyKey

from ruma.protocol.errors import KeyFormatError, SignatureError
from ruma.protocol.events import Event
from ruma.protocol.signing import decode_base64, verify_signed_json

from .common import AuthError, AuthState, membership_of


def _public_keys(invite_event: Event) -> Iterator[VerifyKey]:
    """``public_key`` and each ``public_keys[].public_key`` (unpadded base64, either
    alphabet: identity servers use both)."""
    content = invite_event.content
    keys: list[object] = [content.get("public_key")]
    extra = content.get("public_keys")
    if isinstance(extra, list | tuple):
        keys.extend(entry.get("public_key") for entry in extra if isinstance(entry, Mapping))
    for key in keys:
        if not isinstance(key, str):
            continue
        try:
            raw = decode_base64(key)
        except KeyFormatError:
            continue
        if len(raw) == 32:
            yield VerifyKey(raw)


def _signature_ids(signed: Mapping[str, object]) -> Iterator[tuple[str, str]]:
    """Every ``(server, key_id)`` with an ed25519 signature in ``signed``."""
    signatures = signed.get("signatures")
    if not isinstance(signatures, Mapping):
        return
    for server, by_key in signatures.items():
        if isinstance(by_key, Mapping):
            for key_id in by_key:
                if isinstance(key_id, str) and key_id.startswith("ed25519:"):
                    yield server, key_id


def signed_by_any(signed: Mapping[str, object], public_keys: list[VerifyKey]) -> bool:
    """Whether any ed25519 signature in ``signed`` verifies under any of ``public_keys``."""
    for server, key_id in _signature_ids(signed):
        for public_key in public_keys:
            try:
                verify_signed_json(signed, server, key_id, public_key)
            except SignatureError:
                continue
            return True
    return False


def check_third_party_invite_membership(event: Event, auth_state: AuthState) -> None:
    """Rules 5.4.1.1-5.4.1.8: returns (allow) or raises."""
    target = event.state_key
    assert target is not None
    if membership_of(target, auth_state) == "ban":
        raise AuthError("member.invite.third_party.target_banned", f"{target} is banned")
    third_party = event.content.get("third_party_invite")
    signed = third_party.get("signed") if isinstance(third_party, Mapping) else None
    if not isinstance(signed, Mapping):
        raise AuthError("member.invite.third_party.no_signed", "third_party_invite has no 'signed'")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError(
            "member.invite.third_party.no_mxid_or_token", "'signed' lacks mxid or token"
        )
    if mxid != target:
        raise AuthError("member.invite.third_party.mxid_mismatch", f"{mxid} is not {target}")
    invite_event = auth_state.get(("m.room.third_party_invite", token))
    if invite_event is None:
        raise AuthError(
            "member.invite.third_party.no_invite_event", f"no third-party invite {token!r}"
        )
    if invite_event.sender != event.sender:
        raise AuthError(
            "member.invite.third_party.sender_mismatch",
            f"the third-party invite was sent by {invite_event.sender}, not {event.sender}",
        )
    if not signed_by_any(signed, list(_public_keys(invite_event))):
        raise AuthError(
            "member.invite.third_party.bad_signature",
            "no signature in 'signed' matches the third-party invite's public keys",
        )
