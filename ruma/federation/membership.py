"""Membership across servers: joining, leaving, inviting and knocking over federation.

Two sides, one module:

- :class:`FederationMembership` is the joining (leaving, inviting, knocking) server. It
  fills the rooms layer's :class:`~ruma.rooms.membership.RemoteMembership` seam:
  ``make_join`` to candidate servers (offering every room version we support), a join
  event built and signed from the template, ``send_join`` (v2, v1 for old peers), then
  the returned state and auth chain checked (format, signatures, hashes: the inbound
  :class:`~ruma.federation.inbound.check.PDUChecker`) and persisted as outliers in auth
  order, and the join persisted as the room's first timeline event with that state, all
  under the room's write lock. Leaving a room we have no state of (rejecting an invite,
  withdrawing a knock) is ``make_leave``/``send_leave``; inviting a remote user asks the
  invitee's server to countersign before anything is stored.
- :class:`ResidentMembership` is the resident server: it answers ``make_join``/
  ``send_join``, ``make_leave``/``send_leave``, ``make_knock``/``send_knock`` (signing
  restricted joins as the authorising server) and ``invite`` (countersigning invites of
  local users and recording them for their ``/sync``).

Errors that come back from another server are never passed on as ours: a failed remote
join becomes our own :class:`~ruma.errors.MatrixError`, naming the servers tried.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.errors import Codes, MatrixError, bad_json, forbidden, not_found
from ruma.federation.event_fetcher import EventFetcher, FetchError
from ruma.federation.http import FederationError
from ruma.federation.inbound.errors import PDUError
from ruma.federation.inbound.joining import JoiningRooms, joining_rooms
from ruma.federation.inbound.validate import guess_event_id
from ruma.protocol.auth import (
    AuthError,
    check_auth,
    get_named_level,
    get_user_power_level,
)
from ruma.protocol.errors import InvalidEvent
from ruma.protocol.events import (
    Event,
    StateKey,
    add_hashes_and_signature,
    auth_types_for_event,
    build_event,
    check_content_hash,
)
from ruma.protocol.json import thaw
from ruma.protocol.redaction import redact
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS, EventFormat, RoomVersion
from ruma.protocol.signing import SigningKey, sign_json
from ruma.rooms.builder import LocalEventSender, NewEvent
from ruma.rooms.persistence import PersistedEvent, RoomWriter
from ruma.storage.events import EventStore, NewRoom

__all__ = [
    "FederationMembership",
    "ResidentMembership",
    "STRIPPED_STATE_TYPES",
    "persist_outliers",
    "stripped_state",
]

FED_V1 = "/_matrix/federation/v1"
FED_V2 = "/_matrix/federation/v2"

# The state a server shares with someone invited or knocking (and with a room's directory).
STRIPPED_STATE_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
)

CREATE: StateKey = ("m.room.create", "")
JOIN_RULES: StateKey = ("m.room.join_rules", "")
POWER_LEVELS: StateKey = ("m.room.power_levels", "")


def _q(value: str) -> str:
    return quote(value, safe="")


def _server_of(some_id: str) -> str:
    return some_id.partition(":")[2]


def _random_localpart() -> str:
    return secrets.token_urlsafe(18)


class FederationJSON(Protocol):
    """The part of :class:`~ruma.federation.http.FederationClient` used here."""

    async def get_json(self, destination: str, path: str, **kw: Any) -> Any: ...

    async def put_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any: ...


class RoomAccessLike(Protocol):
    """The part of :class:`~ruma.federation.access.RoomAccess` used here (server ACLs)."""

    async def check_acl(self, room_id: str, server_name: str) -> None: ...

    async def server_in_room(self, room_id: str, server_name: str) -> bool: ...


class VerifiesJSON(Protocol):
    """The part of :class:`~ruma.federation.keyring.Keyring` used here."""

    async def verify_json_for_server(
        self, obj: Mapping[str, Any], server_name: str, *, valid_at_ts: int | None = None
    ) -> None: ...


def stripped(event: Event) -> dict[str, Any]:
    return {
        "type": event.type,
        "state_key": event.state_key,
        "content": thaw(event.content),
        "sender": event.sender,
    }


async def stripped_state(
    store: EventStore, room_id: str, extra: Iterable[Event] = ()
) -> list[dict[str, Any]]:
    """The stripped state of a room (invite/knock room state, directory summaries)."""
    ids = await store.get_current_state_keys(room_id, [(t, "") for t in STRIPPED_STATE_TYPES])
    events = await store.get_events(ids.values())
    out = [stripped(events[i]) for i in sorted(ids.values()) if i in events]
    out.extend(stripped(e) for e in extra)
    return out


def auth_order(events: Iterable[Event]) -> list[Event]:
    """``events`` ordered so that each comes after the auth events it has among them
    (the create event first); ties by depth then ID, cycles (never valid) at the end."""
    by_id = {e.event_id: e for e in events}
    deps: dict[str, set[str]] = {}
    create_id: str | None = None
    for e in by_id.values():
        if e.type == "m.room.create" and e.state_key == "":
            create_id = e.event_id
    for e in by_id.values():
        d = {a for a in e.auth_event_ids if a in by_id and a != e.event_id}
        if create_id is not None and e.event_id != create_id:
            d.add(create_id)  # v12 events do not name it, but need it first all the same
        deps[e.event_id] = d
    out: list[Event] = []
    done: set[str] = set()
    remaining = dict(deps)
    while remaining:
        ready = sorted(
            (by_id[eid] for eid, d in remaining.items() if d <= done),
            key=lambda ev: (ev.depth, ev.event_id),
        )
        if not ready:
            out.extend(
                sorted((by_id[eid] for eid in remaining), key=lambda ev: (ev.depth, ev.event_id))
            )
            break
        for ev in ready:
            out.append(ev)
            done.add(ev.event_id)
            del remaining[ev.event_id]
    return out


async def persist_outliers(
    writer: RoomWriter,
    events: Iterable[Event],
    *,
    room_version: RoomVersion,
    locked: bool,
) -> dict[str, PersistedEvent]:
    """Persist a bag of events of one room (a state and its auth chain) as outliers, each
    checked against its own auth events, in auth order.

    If the room is not known here yet, the bag's create event makes it known (without
    state). ``locked``: the caller holds the room's write lock.
    """
    ordered = auth_order(events)
    if not ordered:
        return {}
    store = writer.store
    room_id = ordered[0].room_id
    if not locked:
        async with writer.room_lock(room_id):
            return await persist_outliers(
                writer, ordered, room_version=room_version, locked=True
            )
    out: dict[str, PersistedEvent] = {}
    if await store.get_room_version(room_id) is None:
        # The create event makes the room known; it must come first (auth order).
        create = ordered[0]
        if create.type != "m.room.create" or create.state_key != "":
            return out  # no create event: nothing of this room can be stored
        out[create.event_id] = await writer.persist_event_locked(
            create, outlier=True, new_room=NewRoom(room_version, create.sender, False)
        )
        ordered = ordered[1:]
    out.update(await writer.persist_outliers_locked(ordered))
    return out


def _check_create(create: Event, room_id: str, room_version: RoomVersion) -> None:
    claimed = create.content.get("room_version", "1")
    if claimed != room_version.identifier:
        raise InvalidEvent("content.room_version", f"create event says v{claimed}")
    if room_version.room_id_from_create_event and room_id != "!" + create.event_id[1:]:
        raise InvalidEvent("room_id", "does not match the create event")


@dataclass(frozen=True, slots=True)
class _Attempt:
    server: str
    status: int | None
    errcode: str | None


class _RemoteFailed(Exception):
    def __init__(self, attempts: list[_Attempt]) -> None:
        super().__init__(", ".join(a.server for a in attempts))
        self.attempts = attempts


def _remote_failure(what: str, room_id: str, attempts: list[_Attempt]) -> MatrixError:
    """Our own error for a handshake that no server would complete."""
    tried = ", ".join(a.server for a in attempts) or "none"
    codes = {a.errcode for a in attempts}
    if Codes.INCOMPATIBLE_ROOM_VERSION.value in codes:
        return MatrixError(
            400,
            Codes.INCOMPATIBLE_ROOM_VERSION,
            f"{room_id} has a room version this server does not support",
        )
    if not attempts:
        return not_found(f"No server to {what} {room_id} through")
    if any(a.status == 403 for a in attempts):
        return forbidden(f"Not allowed to {what} {room_id} (servers tried: {tried})")
    if all(a.status == 404 for a in attempts):
        return not_found(f"No server knows {room_id} (servers tried: {tried})")
    if all(a.status is None or a.status == 404 for a in attempts):
        # Nobody answered (unreachable, or not a Matrix server): as far as we can tell
        # there is no such room.
        return not_found(f"Could not reach any server of {room_id} (tried: {tried})")
    return MatrixError(
        502, Codes.UNKNOWN, f"Could not {what} {room_id} through any server (tried: {tried})"
    )


class FederationMembership:
    """The joining side; see the module docstring. Implements ``RemoteMembership``."""

    log = Logger()

    def __init__(
        self,
        *,
        client: FederationJSON,
        fetcher: EventFetcher,
        keyring: VerifiesJSON,
        writer: RoomWriter,
        clock: IReactorTime,
        server_name: str,
        signing_key: SigningKey,
        event_id_localpart: Callable[[], str] = _random_localpart,
    ) -> None:
        self._client = client
        self._fetcher = fetcher
        self._keyring = keyring
        self._writer = writer
        self._store = writer.store
        self._clock = clock
        self.server_name = server_name
        self._key = signing_key
        self._localpart = event_id_localpart
        # PDUs pushed to us while a join is in flight wait for it (see .inbound.joining).
        self.joining: JoiningRooms = joining_rooms(self._store)

    def _now_ms(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- candidate servers -----------------------------------------------------------------

    async def _candidates(self, user_id: str, room_id: str, servers: Sequence[str]) -> list[str]:
        """Where to send the handshake: ``servers`` (``via``, the alias's server), then the
        server that invited the user, then the room ID's server (before v12)."""
        out = list(servers)
        local = await self._store.get_local_membership(user_id, room_id)
        if local is not None and local[0] in ("invite", "knock"):
            membership = await self._store.get_pdus([local[1]])
            ev = membership.get(local[1])
            if ev is not None:
                out.append(_server_of(ev.sender))
                for s in ev.unsigned.get("invite_room_state") or ev.unsigned.get(
                    "knock_room_state"
                ) or ():
                    sender = s.get("sender") if isinstance(s, Mapping) else None
                    if isinstance(sender, str):
                        out.append(_server_of(sender))
        room_server = _server_of(room_id)
        if room_server:
            out.append(room_server)
        return [s for s in dict.fromkeys(out) if s and s != self.server_name]

    # -- building from a template ----------------------------------------------------------

    def _from_template(
        self,
        answer: Any,
        *,
        room_id: str,
        user_id: str,
        membership: str,
        content: Mapping[str, Any],
        offered: Sequence[str],
    ) -> Event:
        """Our signed membership event built on a ``make_*`` answer."""
        if not isinstance(answer, Mapping) or not isinstance(answer.get("event"), Mapping):
            raise InvalidEvent("event", "the answer has no event template")
        version_id = answer.get("room_version", "1")
        if version_id not in offered:
            raise InvalidEvent("room_version", f"v{version_id!r} was not offered")
        room_version = KNOWN_ROOM_VERSIONS[version_id]
        template = answer["event"]
        if (
            template.get("type") != "m.room.member"
            or template.get("room_id") != room_id
            or template.get("sender") != user_id
            or template.get("state_key") != user_id
        ):
            raise InvalidEvent("event", "the template is not our membership in this room")
        template_content = template.get("content")
        new_content = dict(content)
        new_content["membership"] = membership
        if isinstance(template_content, Mapping) and membership == "join":
            via = template_content.get("join_authorised_via_users_server")
            if isinstance(via, str) and room_version.restricted_join_rule:
                new_content["join_authorised_via_users_server"] = via
        pdu: dict[str, Any] = {
            "type": "m.room.member",
            "room_id": room_id,
            "sender": user_id,
            "state_key": user_id,
            "content": new_content,
            "prev_events": template.get("prev_events"),
            "auth_events": template.get("auth_events"),
            "depth": template.get("depth"),
            "origin_server_ts": self._now_ms(),
            "hashes": {},
            "signatures": {},
        }
        if not room_version.updated_redaction_rules:
            pdu["origin"] = self.server_name
        if room_version.event_format is EventFormat.V1:
            pdu["event_id"] = f"${self._localpart()}:{self.server_name}"
        signed = add_hashes_and_signature(pdu, room_version, self.server_name, self._key)
        return Event.from_pdu(signed, room_version)

    async def _make(
        self,
        kind: str,
        server: str,
        room_id: str,
        user_id: str,
        versions: Sequence[str],
    ) -> Any:
        query = {"ver": list(versions)} if versions else None
        return await self._client.get_json(
            server, f"{FED_V1}/make_{kind}/{_q(room_id)}/{_q(user_id)}", query=query
        )

    async def _handshake(
        self,
        kind: str,
        membership: str,
        user_id: str,
        room_id: str,
        servers: Sequence[str],
        content: Mapping[str, Any],
        versions: Sequence[str],
    ) -> tuple[str, Event, Any]:
        """``make_<kind>`` then ``send_<kind>`` to the first server that completes both."""
        attempts: list[_Attempt] = []
        for server in servers:
            try:
                answer = await self._make(kind, server, room_id, user_id, versions)
                event = self._from_template(
                    answer,
                    room_id=room_id,
                    user_id=user_id,
                    membership=membership,
                    content=content,
                    offered=versions or list(KNOWN_ROOM_VERSIONS),
                )
                if kind == "join":
                    # PDUs pushed to us during send_join are queued under this version.
                    self.joining.set_room_version(room_id, event.room_version)
                response = await self._send(kind, server, event)
            except FederationError as e:
                self.log.info(
                    "{kind} of {user_id} to {room_id} via {server} failed: {e}",
                    kind=kind, user_id=user_id, room_id=room_id, server=server, e=e,
                )
                attempts.append(_Attempt(server, e.status, e.errcode))
                continue
            except InvalidEvent as e:
                self.log.info(
                    "bad {kind} template for {room_id} from {server}: {e}",
                    kind=kind, room_id=room_id, server=server, e=e,
                )
                attempts.append(_Attempt(server, None, None))
                continue
            return server, event, response
        raise _RemoteFailed(attempts)

    async def _send(self, kind: str, server: str, event: Event) -> Any:
        path = f"{_q(event.room_id)}/{_q(event.event_id)}"
        if kind == "knock":
            return await self._client.put_json(server, f"{FED_V1}/send_knock/{path}", event.pdu())
        try:
            return await self._client.put_json(server, f"{FED_V2}/send_{kind}/{path}", event.pdu())
        except FederationError as e:
            if e.status not in (400, 404) or e.errcode not in (None, Codes.UNRECOGNIZED.value):
                raise
        # A peer without the v2 API answers v1's [200, {...}].
        answer = await self._client.put_json(server, f"{FED_V1}/send_{kind}/{path}", event.pdu())
        if isinstance(answer, list) and len(answer) == 2 and isinstance(answer[1], Mapping):
            return answer[1]
        return answer

    # -- join ------------------------------------------------------------------------------

    async def join_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        candidates = await self._candidates(user_id, room_id, servers)
        versions = list(KNOWN_ROOM_VERSIONS)
        # From here until the join is persisted, PDUs pushed to us for the room are queued.
        self.joining.begin(room_id)
        joined = False
        try:
            persisted = await self._join(user_id, room_id, candidates, content, versions)
            joined = persisted.rejected_reason is None and not persisted.soft_failed
        finally:
            self.joining.finish(room_id, joined=joined)
        if not joined:
            raise forbidden(
                f"The join is not allowed by the room state: {persisted.rejected_reason}"
            )
        return persisted.event.event_id

    async def _join(
        self,
        user_id: str,
        room_id: str,
        candidates: Sequence[str],
        content: Mapping[str, Any],
        versions: Sequence[str],
    ) -> PersistedEvent:
        try:
            server, event, response = await self._handshake(
                "join", "join", user_id, room_id, candidates, content, versions
            )
        except _RemoteFailed as e:
            raise _remote_failure("join", room_id, e.attempts) from e
        try:
            persisted = await self._complete_join(server, event, response)
        except (PDUError, InvalidEvent, FetchError) as e:
            self.log.info(
                "send_join answer from {server} for {room_id} unusable: {e}",
                server=server, room_id=room_id, e=e,
            )
            raise MatrixError(
                502, Codes.UNKNOWN, f"{server} answered the join with an unusable room state"
            ) from e
        self.log.info(
            "join of {user_id} to {room_id} via {server} persisted (rejected: {rejected})",
            user_id=user_id, room_id=room_id, server=server, rejected=persisted.rejected_reason,
        )
        return persisted

    async def _complete_join(self, server: str, event: Event, response: Any) -> PersistedEvent:
        room_id = event.room_id
        room_version = event.room_version
        if not isinstance(response, Mapping):
            raise InvalidEvent("send_join", "the answer is not an object")
        returned = response.get("event")
        if isinstance(returned, Mapping) and event.content.get(
            "join_authorised_via_users_server"
        ):
            # A restricted join: the resident server signed it as the authorising server.
            signed = await self._fetcher.checker.check_pdu(
                returned, room_version, server, expected_room_id=room_id
            )
            if signed.event_id != event.event_id or not check_content_hash(
                returned, room_version
            ):
                raise InvalidEvent("event", "the returned join is not ours")
            event = signed
        state_pdus = response.get("state")
        chain_pdus = response.get("auth_chain")
        if not isinstance(state_pdus, list) or not isinstance(chain_pdus, list):
            raise InvalidEvent("send_join", "the answer has no state or auth_chain list")
        state = await self._fetcher.check_pdus(
            state_pdus, room_version, server, room_id=room_id
        )
        # Most of the auth chain is the state again: check only what the state lacks.
        checked = {e.event_id for e in state}
        chain = await self._fetcher.check_pdus(
            [p for p in chain_pdus if guess_event_id(p, room_version) not in checked],
            room_version,
            server,
            room_id=room_id,
        )
        state_map: dict[StateKey, str] = {}
        bag: dict[str, Event] = {}
        for ev in chain:
            bag[ev.event_id] = ev
        for ev in state:
            bag[ev.event_id] = ev
            if ev.state_key is None:
                raise InvalidEvent("state", f"{ev.event_id} is not a state event")
            state_map[ev.state_key_tuple] = ev.event_id
        create_id = state_map.get(CREATE)
        if create_id is None:
            raise InvalidEvent("state", "no create event")
        _check_create(bag[create_id], room_id, room_version)
        # Auth events neither answer list holds: ask the same server once.
        wanted = {a for ev in bag.values() for a in ev.auth_event_ids} | set(
            event.auth_event_ids
        )
        missing = wanted - bag.keys() - await self._store.have_events(wanted - bag.keys())
        if missing:
            fetched = await self._fetcher.get_events(server, room_version, missing, room_id=room_id)
            bag.update(fetched)
        async with self._writer.room_lock(room_id):
            known = await self._store.get_room_version(room_id)
            if known is not None and known != room_version:
                raise InvalidEvent("room_version", f"we hold {room_id} as v{known.identifier}")
            results = await persist_outliers(
                self._writer, bag.values(), room_version=room_version, locked=True
            )
            bad = {eid for eid, r in results.items() if r.rejected_reason is not None}
            if bad:
                self.log.info(
                    "{n} events of the state of {room_id} from {server} were rejected",
                    n=len(bad), room_id=room_id, server=server,
                )
            before = {k: v for k, v in state_map.items() if v not in bad}
            return await self._writer.persist_event_locked(
                event, state_before=before, soft_failed=False
            )

    # -- leave (rejecting invites, withdrawing knocks) -------------------------------------

    async def leave_remote(self, user_id: str, room_id: str, content: Mapping[str, Any]) -> str:
        candidates = await self._candidates(user_id, room_id, ())
        try:
            _, event, _ = await self._handshake(
                "leave", "leave", user_id, room_id, candidates, content, ()
            )
        except _RemoteFailed as e:
            self.log.info(
                "no server took the leave of {user_id} from {room_id}; leaving locally",
                user_id=user_id, room_id=room_id,
            )
            event = await self._local_leave(user_id, room_id, content, e)
        await self._writer.persist_event(event, out_of_room=True)
        return event.event_id

    async def _local_leave(
        self, user_id: str, room_id: str, content: Mapping[str, Any], failure: _RemoteFailed
    ) -> Event:
        """The leave of an invite whose servers are unreachable: built on the invite
        alone, so the user is out of it here (its inviter may never hear of it)."""
        local = await self._store.get_local_membership(user_id, room_id)
        if local is None:
            raise _remote_failure("leave", room_id, failure.attempts)
        invite = (await self._store.get_pdus([local[1]])).get(local[1])
        if invite is None:
            raise _remote_failure("leave", room_id, failure.attempts)
        new_content = {**content, "membership": "leave"}
        return build_event(
            invite.room_version,
            room_id=room_id,
            sender=user_id,
            type="m.room.member",
            state_key=user_id,
            content=new_content,
            prev_events=[invite],
            auth_events=[invite],
            origin_server_ts=self._now_ms(),
            server_name=self.server_name,
            signing_key=self._key,
            event_id_localpart=self._localpart(),
        )

    # -- knock -----------------------------------------------------------------------------

    async def knock_remote(
        self, user_id: str, room_id: str, servers: Sequence[str], content: Mapping[str, Any]
    ) -> str:
        candidates = await self._candidates(user_id, room_id, servers)
        versions = [v.identifier for v in KNOWN_ROOM_VERSIONS.values() if v.knock_join_rule]
        try:
            server, event, response = await self._handshake(
                "knock", "knock", user_id, room_id, candidates, content, versions
            )
        except _RemoteFailed as e:
            raise _remote_failure("knock on", room_id, e.attempts) from e
        room_state = response.get("knock_room_state") if isinstance(response, Mapping) else None
        if not isinstance(room_state, list):
            room_state = []
        room_state = [s for s in room_state if isinstance(s, Mapping)]
        kept = event.with_unsigned({"knock_room_state": room_state})
        await self._persist_out_of_room(kept, room_state)
        return event.event_id

    async def _persist_out_of_room(
        self, event: Event, room_state: Sequence[Mapping[str, Any]]
    ) -> PersistedEvent:
        new_room = None
        if await self._store.get_room_version(event.room_id) is None:
            creator = event.sender
            for s in room_state:
                if s.get("type") == "m.room.create" and isinstance(s.get("sender"), str):
                    creator = s["sender"]
            new_room = NewRoom(event.room_version, creator, False)
        return await self._writer.persist_event(event, out_of_room=True, new_room=new_room)

    # -- invite ----------------------------------------------------------------------------

    async def invite_remote(self, event: Event) -> Event:
        """Have the invitee's server countersign ``event`` (our invite of a remote user);
        returns the event with both signatures. 403 if that server refuses."""
        assert event.state_key is not None
        destination = _server_of(event.state_key)
        room_state = await stripped_state(self._store, event.room_id)
        sender_member = await self._store.get_current_state_event(
            event.room_id, "m.room.member", event.sender
        )
        if sender_member is not None:
            room_state.append(stripped(sender_member))
        path = f"{_q(event.room_id)}/{_q(event.event_id)}"
        body = {
            "event": event.pdu(),
            "room_version": event.room_version.identifier,
            "invite_room_state": room_state,
        }
        try:
            answer = await self._client.put_json(destination, f"{FED_V2}/invite/{path}", body)
        except FederationError as e:
            self.log.info(
                "{server} refused the invite {event_id}: {e}",
                server=destination, event_id=event.event_id, e=e,
            )
            if e.errcode == Codes.INCOMPATIBLE_ROOM_VERSION.value:
                raise MatrixError(
                    400,
                    Codes.INCOMPATIBLE_ROOM_VERSION,
                    f"{destination} does not support this room's version",
                ) from e
            if e.status in (400, 403):
                raise forbidden(f"{destination} refused the invite") from e
            raise MatrixError(502, Codes.UNKNOWN, f"Could not reach {destination}") from e
        returned = answer.get("event") if isinstance(answer, Mapping) else None
        theirs = returned.get("signatures", {}).get(destination) if isinstance(
            returned, Mapping
        ) else None
        if not isinstance(theirs, Mapping) or not theirs:
            raise MatrixError(502, Codes.UNKNOWN, f"{destination} did not sign the invite")
        pdu = event.pdu()
        pdu["signatures"] = {**thaw(event.signatures), destination: thaw(theirs)}
        try:
            merged = Event.from_pdu(pdu, event.room_version)
            await self._keyring.verify_json_for_server(
                redact(merged.pdu(), event.room_version),
                destination,
                valid_at_ts=event.origin_server_ts
                if event.room_version.enforce_key_validity
                else None,
            )
        except Exception as e:
            self.log.info(
                "bad countersignature of {server} on {event_id}: {e}",
                server=destination, event_id=event.event_id, e=e,
            )
            raise MatrixError(
                502, Codes.UNKNOWN, f"{destination} answered the invite with a bad signature"
            ) from e
        return merged


# -- the resident side ---------------------------------------------------------------------


class ResidentMembership:
    """Answers other servers' membership handshakes for rooms we are in."""

    log = Logger()

    def __init__(
        self,
        *,
        sender: LocalEventSender,
        fetcher: EventFetcher,
        server_name: str,
        signing_key: SigningKey,
        clock: IReactorTime,
        access: RoomAccessLike | None = None,
        relay: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self._access = access
        # The federation sender's relay: a remote user's membership received here goes
        # on to the room's other servers (registered before it is persisted).
        self.relay = relay
        self._sender = sender
        self._writer = sender.writer
        self._store = sender.store
        self._fetcher = fetcher
        self._checker = fetcher.checker
        self.server_name = server_name
        self._key = signing_key
        self._clock = clock

    # -- helpers ---------------------------------------------------------------------------

    async def _room(self, room_id: str, origin: str) -> RoomVersion:
        head = await self._store.get_room_head(room_id)
        if head is None or head.current_state_group is None:
            raise not_found(f"Unknown room {room_id}")
        if not await self._store.get_local_users_in_room(room_id):
            raise not_found(f"This server is not in {room_id}")
        if self._access is not None:
            await self._access.check_acl(room_id, origin)
        return head.room_version

    async def _auth_state(self, event: Event) -> dict[StateKey, Event]:
        """The current state's events that authorise ``event``."""
        keys = set(
            auth_types_for_event(
                event.room_version, event.type, event.sender, event.state_key, event.content
            )
        )
        keys.add(CREATE)
        ids = await self._store.get_current_state_keys(event.room_id, keys)
        pdus = await self._store.get_pdus(ids.values())
        return {k: pdus[eid] for k, eid in ids.items() if eid in pdus}

    async def _template(
        self, origin: str, room_id: str, user_id: str, membership: str,
        content: Mapping[str, Any] | None = None,
    ) -> tuple[RoomVersion, dict[str, Any]]:
        if _server_of(user_id) != origin:
            raise forbidden(f"{origin} may not act for {user_id}")
        head = await self._store.get_room_head(room_id)
        if head is None:
            raise not_found(f"Unknown room {room_id}")
        new_content: dict[str, Any] = {**(content or {}), "membership": membership}
        event = await self._sender.build(
            head, NewEvent("m.room.member", user_id, new_content, user_id)
        )
        try:
            check_auth(event, await self._auth_state(event))
        except AuthError as e:
            raise forbidden(f"{user_id} may not {membership} {room_id}: {e.reason}") from e
        pdu = event.pdu()
        for key in ("hashes", "signatures", "event_id", "unsigned"):
            pdu.pop(key, None)
        if not event.room_version.updated_redaction_rules:
            pdu["origin"] = self.server_name
        return event.room_version, pdu

    def _require_version(self, room_version: RoomVersion, offered: Sequence[str]) -> None:
        if room_version.identifier not in offered:
            raise MatrixError(
                400,
                Codes.INCOMPATIBLE_ROOM_VERSION,
                f"Your homeserver does not support the features required to join this "
                f"room (v{room_version.identifier})",
                room_version=room_version.identifier,
            )

    async def _incoming(
        self, origin: str, room_id: str, event_id: str, pdu: Any, membership: str,
        *, sign_first: bool = False,
    ) -> Event:
        """Check a ``send_*`` body; nothing is stored if it fails."""
        room_version = await self._room(room_id, origin)
        if not isinstance(pdu, Mapping):
            raise bad_json("The body must be an event")
        if sign_first:
            pdu = self._countersign(pdu, room_version)
        try:
            event = await self._checker.check_pdu(
                pdu, room_version, origin, expected_room_id=room_id
            )
        except PDUError as e:
            raise MatrixError(400, Codes.BAD_JSON, f"Invalid event: {e.reason}") from e
        if not check_content_hash(pdu, room_version):
            raise MatrixError(400, Codes.BAD_JSON, "The event's content hash does not match")
        if event.event_id != event_id:
            raise MatrixError(400, Codes.BAD_JSON, "The event ID does not match the path")
        if (
            event.type != "m.room.member"
            or event.state_key != event.sender
            or event.membership != membership
        ):
            raise MatrixError(400, Codes.BAD_JSON, f"Not a {membership} of its sender")
        if _server_of(event.sender) != origin:
            raise forbidden(f"{origin} may not send a {membership} for {event.sender}")
        try:
            check_auth(event, await self._auth_state(event))
        except AuthError as e:
            raise forbidden(f"The {membership} is not allowed: {e.reason}") from e
        return event

    def _countersign(self, pdu: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
        """``pdu`` with our signature added (over its redacted form)."""
        try:
            ours = sign_json(
                redact(pdu, room_version),
                self.server_name,
                self._key,
                strict=room_version.strict_canonicaljson,
            )["signatures"][self.server_name]
        except Exception as e:
            raise MatrixError(400, Codes.BAD_JSON, f"Cannot sign the event: {e}") from e
        out = dict(pdu)
        sigs = pdu.get("signatures")
        out["signatures"] = {**(dict(sigs) if isinstance(sigs, Mapping) else {}),
                             self.server_name: ours}
        return out

    async def _persist(self, event: Event, origin: str) -> PersistedEvent:
        if self.relay is not None:
            await self.relay(event.event_id, origin)
        try:
            persisted = await self._writer.persist_event(event)
        except ValueError as e:  # prev events we do not know
            raise MatrixError(400, Codes.BAD_JSON, f"Cannot place the event: {e}") from e
        if persisted.rejected_reason is not None or persisted.soft_failed:
            raise forbidden(f"The event is not allowed: {persisted.rejected_reason or 'soft fail'}")
        return persisted

    # -- join ------------------------------------------------------------------------------

    async def make_join(
        self, origin: str, room_id: str, user_id: str, versions: Sequence[str]
    ) -> dict[str, Any]:
        room_version = await self._room(room_id, origin)
        self._require_version(room_version, versions or ["1"])
        content = await self._restricted_content(room_id, user_id, room_version)
        version, template = await self._template(origin, room_id, user_id, "join", content)
        return {"room_version": version.identifier, "event": template}

    async def _restricted_content(
        self, room_id: str, user_id: str, room_version: RoomVersion
    ) -> dict[str, Any]:
        """For a restricted room the user is not invited to or in: a local user who may
        invite, to authorise the join (400 ``M_UNABLE_TO_GRANT_JOIN`` if none can)."""
        if not room_version.restricted_join_rule:
            return {}
        state_ids = await self._store.get_current_state_keys(
            room_id, [JOIN_RULES, POWER_LEVELS, CREATE, ("m.room.member", user_id)]
        )
        events = await self._store.get_pdus(state_ids.values())
        state = {k: events[v] for k, v in state_ids.items() if v in events}
        rules = state.get(JOIN_RULES)
        rule = rules.content.get("join_rule") if rules is not None else None
        restricted = ("restricted", "knock_restricted") if room_version.knock_restricted_join_rule \
            else ("restricted",)
        if rule not in restricted:
            return {}
        member = state.get(("m.room.member", user_id))
        if member is not None and member.membership in ("join", "invite"):
            return {}
        assert rules is not None
        allowed = False
        for entry in rules.content.get("allow") or ():
            if not isinstance(entry, Mapping) or entry.get("type") != "m.room_membership":
                continue
            other = entry.get("room_id")
            if not isinstance(other, str):
                continue
            m = await self._store.get_current_state_event(other, "m.room.member", user_id)
            if m is not None and m.membership == "join":
                allowed = True
                break
        if not allowed:
            raise forbidden(f"{user_id} is not in any room that allows them to join {room_id}")
        invite_level = get_named_level(state, "invite")
        for local in sorted(await self._store.get_local_users_in_room(room_id)):
            m_ids = await self._store.get_current_state_keys(room_id, [("m.room.member", local)])
            m_events = await self._store.get_pdus(m_ids.values())
            with_member = dict(state)
            with_member.update({k: m_events[v] for k, v in m_ids.items() if v in m_events})
            if get_user_power_level(local, with_member) >= invite_level:
                return {"join_authorised_via_users_server": local}
        raise MatrixError(
            400, Codes.UNABLE_TO_GRANT_JOIN, "No user of this server can authorise the join"
        )

    async def send_join(
        self, origin: str, room_id: str, event_id: str, pdu: Any
    ) -> dict[str, Any]:
        via = pdu.get("content", {}).get("join_authorised_via_users_server") if isinstance(
            pdu, Mapping
        ) and isinstance(pdu.get("content"), Mapping) else None
        authorising = isinstance(via, str) and _server_of(via) == self.server_name
        event = await self._incoming(
            origin, room_id, event_id, pdu, "join", sign_first=authorising
        )
        await self._persist(event, origin)
        state_ids = await self._store.get_state_ids_for_event(event.event_id, before=True)
        if state_ids is None:
            raise MatrixError(500, Codes.UNKNOWN, "The join has no state")
        state = await self._store.get_pdus(state_ids.values())
        chain = await self._auth_chain(
            [*state_ids.values(), *event.auth_event_ids], exclude=set()
        )
        out: dict[str, Any] = {
            "origin": self.server_name,
            "state": [state[i].pdu() for i in sorted(state_ids.values()) if i in state],
            "auth_chain": [e.pdu() for e in chain],
            "members_omitted": False,
            "servers_in_room": sorted(await self._store.get_joined_hosts(room_id)),
        }
        if authorising:
            out["event"] = event.pdu()
        self.log.info("{user_id} joined {room_id} from {origin}",
                      user_id=event.sender, room_id=room_id, origin=origin)
        return out

    async def _auth_chain(self, event_ids: Iterable[str], exclude: set[str]) -> list[Event]:
        """The auth chains of ``event_ids`` (the events themselves included)."""
        seen: dict[str, Event] = {}
        todo = set(event_ids) - exclude
        while todo:
            found = await self._store.get_pdus(todo)
            seen.update(found)
            nxt: set[str] = set()
            for ev in found.values():
                nxt.update(ev.auth_event_ids)
                if ev.room_version.room_id_from_create_event and ev.type != "m.room.create":
                    nxt.add("$" + ev.room_id[1:])
            todo = nxt - seen.keys()
            if not found:
                break
        return sorted(seen.values(), key=lambda e: (e.depth, e.event_id))

    # -- leave -----------------------------------------------------------------------------

    async def make_leave(self, origin: str, room_id: str, user_id: str) -> dict[str, Any]:
        await self._room(room_id, origin)
        version, template = await self._template(origin, room_id, user_id, "leave")
        return {"room_version": version.identifier, "event": template}

    async def send_leave(
        self, origin: str, room_id: str, event_id: str, pdu: Any
    ) -> dict[str, Any]:
        event = await self._incoming(origin, room_id, event_id, pdu, "leave")
        await self._persist(event, origin)
        return {}

    # -- knock -----------------------------------------------------------------------------

    async def make_knock(
        self, origin: str, room_id: str, user_id: str, versions: Sequence[str]
    ) -> dict[str, Any]:
        room_version = await self._room(room_id, origin)
        if not room_version.knock_join_rule:
            raise MatrixError(
                400, Codes.INCOMPATIBLE_ROOM_VERSION,
                "This room's version does not support knocking",
                room_version=room_version.identifier,
            )
        self._require_version(room_version, versions or ["1"])
        version, template = await self._template(origin, room_id, user_id, "knock")
        return {"room_version": version.identifier, "event": template}

    async def send_knock(
        self, origin: str, room_id: str, event_id: str, pdu: Any
    ) -> dict[str, Any]:
        event = await self._incoming(origin, room_id, event_id, pdu, "knock")
        await self._persist(event, origin)
        return {"knock_room_state": await stripped_state(self._store, room_id)}

    # -- invite ----------------------------------------------------------------------------

    async def on_invite(
        self,
        origin: str,
        room_id: str,
        event_id: str,
        pdu: Any,
        room_version_id: Any,
        invite_room_state: Any,
    ) -> dict[str, Any]:
        """``PUT /invite``: countersign an invite of a local user and record it for them."""
        room_version = KNOWN_ROOM_VERSIONS.get(room_version_id) if isinstance(
            room_version_id, str
        ) else None
        if room_version is None:
            raise MatrixError(
                400,
                Codes.INCOMPATIBLE_ROOM_VERSION,
                f"This server does not support room version {room_version_id!r}",
                room_version=room_version_id if isinstance(room_version_id, str) else None,
            )
        if not isinstance(pdu, Mapping):
            raise bad_json("'event' must be an event")
        try:
            event = await self._checker.check_pdu(
                pdu, room_version, origin, expected_room_id=room_id
            )
        except PDUError as e:
            raise MatrixError(400, Codes.BAD_JSON, f"Invalid event: {e.reason}") from e
        if not check_content_hash(pdu, room_version):
            raise MatrixError(400, Codes.BAD_JSON, "The event's content hash does not match")
        if event.event_id != event_id:
            raise MatrixError(400, Codes.BAD_JSON, "The event ID does not match the path")
        if event.type != "m.room.member" or event.membership != "invite":
            raise MatrixError(400, Codes.BAD_JSON, "Not an invite")
        target = event.state_key or ""
        if _server_of(target) != self.server_name:
            raise forbidden(f"{target} is not a user of this server")
        if _server_of(event.sender) != origin:
            raise forbidden(f"{origin} may not invite on behalf of {event.sender}")
        known = await self._store.get_room_version(room_id)
        if known is not None and known != room_version:
            raise MatrixError(400, Codes.BAD_JSON, "The room version does not match")
        if known is not None and self._access is not None:
            await self._access.check_acl(room_id, origin)
        signed_pdu = self._countersign(event.pdu(), room_version)
        state = [s for s in invite_room_state if isinstance(s, Mapping)] if isinstance(
            invite_room_state, list
        ) else []
        if not await self._store.get_local_users_in_room(room_id):
            # We are not in the room: keep the invite (with the room's stripped state) for
            # the invitee's /sync. A room we are in hears of it through /send as well.
            stored = Event.from_pdu(
                {**signed_pdu, "unsigned": {"invite_room_state": state}}, room_version
            )
            new_room = None
            if known is None:
                creator = event.sender
                for s in state:
                    if s.get("type") == "m.room.create" and isinstance(s.get("sender"), str):
                        creator = s["sender"]
                new_room = NewRoom(room_version, creator, False)
            await self._writer.persist_event(stored, out_of_room=True, new_room=new_room)
        self.log.info("{sender} invited {target} to {room_id}",
                      sender=event.sender, target=target, room_id=room_id)
        return {"event": signed_pdu}
