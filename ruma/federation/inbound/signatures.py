"""Stage 2 of handling an incoming PDU: signatures, then the content hash.

- Every server the spec requires (the sender's; for rooms v1/v2 also the event ID's; for a
  restricted join also the authorising user's server) must have signed the redacted event
  with a key we can fetch, which from room v5 (``enforce_key_validity``) must be valid at
  the event's ``origin_server_ts``. Otherwise :class:`BadSignature`: the event is dropped.
- A content hash that does not match means the content was tampered with on the way, not
  that the event is invalid: it is kept *redacted* (spec, "Validating hashes and
  signatures on received events") and goes on to the auth checks in that form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from twisted.logger import Logger

from ruma.federation.inbound.errors import BadSignature
from ruma.protocol.events import (
    Event,
    GetVerifyKey,
    required_signature_servers,
    verify_events_signatures,
)
from ruma.protocol.signing import ED25519, VerifyKey

__all__ = [
    "CachedKeys",
    "KeySource",
    "check_hash",
    "check_many_signatures",
    "find_keys",
]

log = Logger(namespace="ruma.federation.inbound.signatures")


class KeySource(Protocol):
    """What the checks need of :class:`~ruma.federation.keyring.Keyring`."""

    async def get_verify_key(
        self, server_name: str, key_id: str, *, valid_at_ts: int | None = None
    ) -> VerifyKey: ...


class CachedKeys:
    """Remembers keys the keyring found, so a burst of PDUs does not ask it per PDU.

    A key found usable at time T is usable at any earlier time (validity only has an end),
    so a hit needs ``valid_at_ts`` no later than the latest time it was found valid at.
    A key ID never changes its key, so entries need no expiry, only a size bound.
    """

    def __init__(self, keys: KeySource, size: int = 1000) -> None:
        self._keys = keys
        self._size = size
        # (server, key_id) -> (key, latest valid_at_ts it was found usable at; None = any)
        self._cache: dict[tuple[str, str], tuple[VerifyKey, int | None]] = {}

    async def get_verify_key(
        self, server_name: str, key_id: str, *, valid_at_ts: int | None = None
    ) -> VerifyKey:
        hit = self._cache.get((server_name, key_id))
        if hit is not None:
            key, checked = hit
            if valid_at_ts is None or (checked is not None and valid_at_ts <= checked):
                return key
        key = await self._keys.get_verify_key(server_name, key_id, valid_at_ts=valid_at_ts)
        if len(self._cache) >= self._size:
            self._cache.clear()
        if hit is not None and valid_at_ts is not None and hit[1] is not None:
            valid_at_ts = max(valid_at_ts, hit[1])
        self._cache[(server_name, key_id)] = (key, valid_at_ts)
        return key


async def find_keys(event: Event, keys: KeySource) -> GetVerifyKey:
    """Fetch the keys ``event``'s required signatures name; the lookup for its checks.

    A key that cannot be found (or, from room v5, is not valid at the event's
    ``origin_server_ts``) is looked up as ``None``: the check then fails only if no other
    signature of that server verifies.
    """
    valid_at = event.origin_server_ts if event.room_version.enforce_key_validity else None
    found: dict[tuple[str, str], VerifyKey] = {}
    for server in sorted(required_signature_servers(event)):
        sigs = event.signatures.get(server) or {}
        for key_id in sorted(sigs):
            if not key_id.startswith(ED25519 + ":"):
                continue
            try:
                found[(server, key_id)] = await keys.get_verify_key(
                    server, key_id, valid_at_ts=valid_at
                )
            except Exception as e:  # KeyLookupError, or the fetch itself failing
                log.info(
                    "no key {key_id} of {server} for {event_id}: {e}",
                    key_id=key_id,
                    server=server,
                    event_id=event.event_id,
                    e=e,
                )
    return lambda s, k: found.get((s, k))


async def check_many_signatures(
    events: Sequence[Event], keys: KeySource
) -> list[BadSignature | None]:
    """For each event in order: ``None`` if every required server signed it, else its
    :class:`BadSignature`. The keys are fetched first, then every
    ed25519 check runs in one batch (:func:`~ruma.protocol.events.verify_events_signatures`,
    faster than one at a time)."""
    lookups = [(event, await find_keys(event, keys)) for event in events]
    return [
        None if error is None else BadSignature(f"Signature check failed: {error}", ev.event_id)
        for (ev, _), error in zip(lookups, verify_events_signatures(lookups), strict=True)
    ]


def check_hash(event: Event) -> Event:
    """``event``, or its redacted form if its content hash does not match."""
    if event.content_hash_matches():
        return event
    log.info("content hash mismatch on {event_id}: keeping it redacted", event_id=event.event_id)
    return event.redacted()
