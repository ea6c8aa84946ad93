"""Room events in the client-server format (``ClientEvent``), for every client API.

``serialize_event`` is pure; :class:`EventSerializer` adds the one thing that needs the
database, the ``transaction_id`` of events the requesting device sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from ruma.protocol.events import Event
from ruma.protocol.json import thaw
from ruma.storage.events import EventStore, TxnIdKey

__all__ = ["Bundler", "EventSerializer", "RequesterLike", "serialize_event", "txn_scope"]


class RequesterLike(Protocol):
    @property
    def user_id(self) -> str: ...

    @property
    def device_id(self) -> str | None: ...

    @property
    def token_id(self) -> int | None: ...


def txn_scope(device_id: str | None, token_id: int | None) -> str:
    """What client transaction IDs are scoped to: the device, else the access token."""
    if device_id is not None:
        return f"device:{device_id}"
    return f"token:{token_id}"


def serialize_event(
    event: Event,
    *,
    now: int,
    requester: RequesterLike | None = None,
    txn_id: TxnIdKey | None = None,
    include_room_id: bool = True,
) -> dict[str, Any]:
    """``event`` as clients see it; ``now`` in milliseconds since the epoch.

    ``txn_id`` is the transaction the event was sent with, if known: it appears as
    ``unsigned.transaction_id`` only for the same user on the same device/token.
    """
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "sender": event.sender,
        "type": event.type,
        "content": thaw(event.content),
        "origin_server_ts": event.origin_server_ts,
    }
    if include_room_id:
        out["room_id"] = event.room_id
    if event.state_key is not None:
        out["state_key"] = event.state_key
    redacts = event.redacts
    if redacts is not None:
        # Clients read the top-level key in every room version.
        out["redacts"] = redacts
    unsigned: dict[str, Any] = {}
    src = event.unsigned
    for key in ("prev_content", "prev_sender", "replaces_state", "invite_room_state",
                "knock_room_state", "m.relations"):
        if key in src:
            unsigned[key] = thaw(src[key])
    because = src.get("redacted_because")
    if isinstance(because, Mapping):
        unsigned["redacted_because"] = _serialize_pdu(because, now)
    unsigned["age"] = max(0, now - event.origin_server_ts)
    if (
        txn_id is not None
        and requester is not None
        and txn_id.user_id == requester.user_id
        and txn_id.scope == txn_scope(requester.device_id, requester.token_id)
    ):
        # Stored as "<kind>:<client txn id>" (ruma.client.rooms._txn); clients want theirs.
        unsigned["transaction_id"] = txn_id.txn_id.partition(":")[2] or txn_id.txn_id
    out["unsigned"] = unsigned
    return out


def _serialize_pdu(pdu: Mapping[str, Any], now: int) -> dict[str, Any]:
    """A PDU dict carried in ``unsigned`` (``redacted_because``) in client format."""
    out: dict[str, Any] = {
        k: thaw(pdu[k])
        for k in ("event_id", "room_id", "sender", "type", "content", "origin_server_ts",
                  "state_key", "redacts")
        if k in pdu
    }
    content = out.get("content")
    if "redacts" not in out and isinstance(content, dict) and isinstance(
        content.get("redacts"), str
    ):
        out["redacts"] = content["redacts"]
    ts = pdu.get("origin_server_ts")
    out["unsigned"] = {"age": max(0, now - ts)} if isinstance(ts, int) else {}
    return out


class Bundler(Protocol):
    """Adds bundled aggregations (``unsigned.m.relations``) for a user: ruma.rooms.relations."""

    async def bundle(self, events: Sequence[Event], user_id: str) -> list[Event]: ...


class EventSerializer:
    """Serialises batches of events for one requester, with their transaction IDs and
    (given a ``bundler``) their bundled aggregations."""

    def __init__(self, store: EventStore, bundler: Bundler | None = None) -> None:
        self._store = store
        self._bundler = bundler

    async def serialize(
        self,
        events: Iterable[Event],
        *,
        now: int,
        requester: RequesterLike | None,
        include_room_id: bool = True,
    ) -> list[dict[str, Any]]:
        events = list(events)
        txn_ids: dict[str, TxnIdKey] = {}
        if requester is not None and self._bundler is not None:
            events = await self._bundler.bundle(events, requester.user_id)
        if requester is not None:
            own = [e.event_id for e in events if e.sender == requester.user_id]
            if own:
                txn_ids = await self._store.get_txn_ids_for_events(own)
        return [
            serialize_event(
                e,
                now=now,
                requester=requester,
                txn_id=txn_ids.get(e.event_id),
                include_room_id=include_room_id,
            )
            for e in events
        ]
