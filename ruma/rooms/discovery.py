"""Finding rooms and people: the public room directory, the user directory, space
hierarchies, room upgrades, reports and ``timestamp_to_event``.

Remote parts (another server's public rooms, child rooms of a space that live only on other
servers) go through :class:`RemoteDiscovery`, which federation plugs in; without it those
answer as if the other server had nothing.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ruma.errors import Codes, MatrixError, forbidden, invalid_param, not_found
from ruma.protocol.auth import get_send_level, get_user_power_level
from ruma.protocol.events import Event, StateKey
from ruma.protocol.json import thaw
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS
from ruma.rooms.creation import CreateRoomRequest, InitialState
from ruma.rooms.service import RoomServices
from ruma.rooms.summary import SUMMARY_TYPES, public_room_chunk
from ruma.rooms.visibility import filter_events_for_user
from ruma.storage.discovery import DirectoryUser, DiscoveryStore

__all__ = [
    "DiscoveryHandler",
    "PublicRoomsQuery",
    "RemoteDiscovery",
]

_SUMMARY_TYPES = (*SUMMARY_TYPES, "m.room.encryption")
# State copied into the replacement room of an upgrade (power levels go separately).
UPGRADE_STATE = (
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.join_rules",
    "m.room.canonical_alias",
    "m.room.retention",
)
MAX_HIERARCHY_DEPTH = 10
DEFAULT_HIERARCHY_LIMIT = 50
MAX_HIERARCHY_LIMIT = 200
_ORDER = re.compile(r"^[\x20-\x7e]{0,50}$")
_OFFSET = re.compile(r"^[nh](\d{1,9})$")


class RemoteDiscovery(Protocol):
    """Federation's part: asking other servers (errors are raised as ``MatrixError``)."""

    async def public_rooms(
        self, server: str, *, limit: int | None, since: str | None, filter: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def hierarchy(
        self, server: str, room_id: str, *, suggested_only: bool
    ) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class PublicRoomsQuery:
    limit: int | None = None
    since: str | None = None
    search_term: str | None = None
    room_types: Sequence[str | None] | None = None
    server: str | None = None


def _offset(token: str | None, param: str) -> int:
    if token is None:
        return 0
    m = _OFFSET.match(token)
    if m is None:
        raise invalid_param(f"Invalid {param} token")
    return int(m.group(1))


class DiscoveryHandler:
    log = Logger()

    def __init__(
        self,
        rooms: RoomServices,
        store: DiscoveryStore,
        clock: IReactorTime,
        server_name: str,
    ) -> None:
        self._rooms = rooms
        self._events = rooms.store
        self._store = store
        self.store = store
        self._clock = clock
        self.server_name = server_name
        # Federation plugs itself in here.
        self.remote: RemoteDiscovery | None = None

    def _now(self) -> int:
        return int(self._clock.seconds() * 1000)

    # -- summaries -------------------------------------------------------------------------

    async def summary(self, room_id: str) -> dict[str, Any] | None:
        """The room's ``PublicRoomsChunk``-shaped summary (plus ``room_version`` and
        ``encryption``), or None for a room we hold no state of."""
        ids = await self._events.get_current_state_keys(
            room_id, [(t, "") for t in _SUMMARY_TYPES]
        )
        if ("m.room.create", "") not in ids:
            return None
        events = await self._events.get_events(ids.values())
        state = {e.type: e for e in events.values()}
        members = await self._events.get_current_members(room_id, "join")
        out = public_room_chunk(room_id, state, len(members))
        enc = state.get("m.room.encryption")
        algorithm = enc.content.get("algorithm") if enc is not None else None
        if isinstance(algorithm, str):
            out["encryption"] = algorithm
        return out

    # -- public rooms ----------------------------------------------------------------------

    async def public_rooms(self, query: PublicRoomsQuery) -> dict[str, Any]:
        if query.limit is not None and query.limit < 0:
            raise invalid_param("limit must not be negative")
        if query.server and query.server != self.server_name:
            return await self._remote_public_rooms(query)
        start = _offset(query.since, "since")
        chunk: list[dict[str, Any]] = []
        term = (query.search_term or "").strip().lower()
        for room_id in await self._rooms.rooms.get_public_room_ids():
            summary = await self.summary(room_id)
            if summary is None:
                continue
            summary.pop("room_version", None)
            summary.pop("encryption", None)
            if query.room_types is not None and summary.get("room_type") not in query.room_types:
                continue
            if term:
                text = " ".join(
                    str(summary.get(k, "")) for k in ("name", "topic", "canonical_alias", "room_id")
                ).lower()
                if term not in text:
                    continue
            chunk.append(summary)
        chunk.sort(key=lambda r: (-int(r["num_joined_members"]), r["room_id"]))
        end = len(chunk) if query.limit is None else start + query.limit
        out: dict[str, Any] = {
            "chunk": chunk[start:end],
            "total_room_count_estimate": len(chunk),
        }
        if end < len(chunk):
            out["next_batch"] = f"n{end}"
        if start > 0:
            out["prev_batch"] = f"n{max(start - (query.limit or start), 0)}"
        return out

    async def _remote_public_rooms(self, query: PublicRoomsQuery) -> dict[str, Any]:
        assert query.server is not None
        if self.remote is None:
            raise not_found(f"Cannot ask {query.server} for its public rooms")
        flt: dict[str, Any] = {}
        if query.search_term:
            flt["generic_search_term"] = query.search_term
        if query.room_types is not None:
            flt["room_types"] = list(query.room_types)
        answer = await self.remote.public_rooms(
            query.server, limit=query.limit, since=query.since, filter=flt
        )
        chunk = answer.get("chunk")
        out: dict[str, Any] = {
            "chunk": [
                r for r in chunk if isinstance(r, dict) and isinstance(r.get("room_id"), str)
            ]
            if isinstance(chunk, list)
            else [],
        }
        for key in ("next_batch", "prev_batch"):
            if isinstance(answer.get(key), str):
                out[key] = answer[key]
        estimate = answer.get("total_room_count_estimate")
        if isinstance(estimate, int) and not isinstance(estimate, bool):
            out["total_room_count_estimate"] = estimate
        return out

    # -- user directory --------------------------------------------------------------------

    async def search_users(
        self, user_id: str, term: str, limit: int
    ) -> tuple[list[DirectoryUser], bool]:
        """Users sharing a room with ``user_id`` or in a public room, and local users,
        whose ID or display name contains every word of ``term``."""
        words = [w.lower() for w in term.split() if w]
        if not words:
            return [], False
        joined = [r[0] for r in await self._events.get_rooms_for_local_user(user_id, ("join",))]
        public = await self._rooms.rooms.get_public_room_ids()
        found: dict[str, DirectoryUser] = {}
        members = await self._store.get_joined_members_profiles([*joined, *public])
        for uid, u in members.items():
            text = f"{uid} {u.display_name or ''}".lower()
            if all(w in text for w in words):
                found[uid] = u
        for u in await self._store.search_local_users(words, limit + 1):
            found.setdefault(u.user_id, u)
        ordered = sorted(
            found.values(),
            key=lambda u: (u.user_id not in members, (u.display_name or u.user_id).lower()),
        )
        return ordered[:limit], len(ordered) > limit

    # -- spaces ----------------------------------------------------------------------------

    async def _may_see(self, user_id: str, room_id: str, summary: Mapping[str, Any]) -> bool:
        local = await self._events.get_local_membership(user_id, room_id)
        if local is not None and local[0] in ("join", "invite", "knock"):
            return True
        if summary.get("world_readable") or summary.get("join_rule") in (
            "public",
            "knock",
            "knock_restricted",
        ):
            return True
        return summary.get("join_rule") == "restricted"

    async def _children_state(
        self, room_id: str, suggested_only: bool
    ) -> list[dict[str, Any]]:
        ids = await self._events.get_current_state_ids(room_id, ["m.space.child"])
        events = await self._events.get_events(ids.values())
        children: list[Event] = []
        for ev in events.values():
            via = ev.content.get("via")
            if not isinstance(via, Sequence) or isinstance(via, str) or not via:
                continue
            if suggested_only and ev.content.get("suggested") is not True:
                continue
            children.append(ev)

        def order_key(ev: Event) -> tuple[int, str, int, str]:
            order = ev.content.get("order")
            if isinstance(order, str) and _ORDER.match(order):
                return (0, order, ev.origin_server_ts, ev.state_key or "")
            return (1, "", ev.origin_server_ts, ev.state_key or "")

        children.sort(key=order_key)
        return [
            {
                "type": ev.type,
                "state_key": ev.state_key,
                "content": thaw(ev.content),
                "sender": ev.sender,
                "origin_server_ts": ev.origin_server_ts,
            }
            for ev in children
        ]

    async def hierarchy(
        self,
        user_id: str,
        room_id: str,
        *,
        max_depth: int | None,
        suggested_only: bool,
        limit: int | None,
        from_token: str | None,
    ) -> dict[str, Any]:
        if max_depth is not None and max_depth < 0:
            raise invalid_param("max_depth must not be negative")
        if limit is not None and limit <= 0:
            raise invalid_param("limit must be positive")
        depth_cap = min(max_depth if max_depth is not None else MAX_HIERARCHY_DEPTH,
                        MAX_HIERARCHY_DEPTH)
        want = min(limit or DEFAULT_HIERARCHY_LIMIT, MAX_HIERARCHY_LIMIT)
        skip = _offset(from_token, "from")
        root = await self.summary(room_id)
        if root is None or not await self._may_see(user_id, room_id, root):
            raise forbidden("You may not preview this room")
        rooms: list[dict[str, Any]] = []
        seen = {room_id}
        queue: deque[tuple[str, int, list[str], dict[str, Any] | None]] = deque(
            [(room_id, 0, [], root)]
        )
        remote_summaries: dict[str, dict[str, Any]] = {}
        index = 0
        more = False
        while queue:
            current, depth, via, summary = queue.popleft()
            children_state: list[dict[str, Any]]
            if current in remote_summaries and summary is not None:
                # Described by a remote server's answer for its parent.
                children_state = [
                    c for c in summary.get("children_state", []) if isinstance(c, dict)
                ]
            else:
                if summary is None:
                    summary = await self.summary(current)
                if summary is not None:
                    if not await self._may_see(user_id, current, summary):
                        continue
                    children_state = await self._children_state(current, suggested_only)
                else:
                    fetched = await self._remote_room(current, via, suggested_only)
                    if fetched is None:
                        continue
                    summary, children_state, remote_children = fetched
                    remote_summaries.update(remote_children)
            if index >= skip:
                if len(rooms) == want:
                    more = True
                    break
                entry = dict(summary)
                entry.pop("encryption", None)
                entry.pop("room_version", None)
                entry["children_state"] = children_state
                rooms.append(entry)
            index += 1
            if depth >= depth_cap:
                continue
            for child in children_state:
                child_id = child.get("state_key")
                if not isinstance(child_id, str) or child_id in seen:
                    continue
                seen.add(child_id)
                child_via = child.get("content", {}).get("via", [])
                known = remote_summaries.get(child_id)
                queue.append(
                    (child_id, depth + 1, [v for v in child_via if isinstance(v, str)],
                     dict(known) if known is not None else None)
                )
        out: dict[str, Any] = {"rooms": rooms}
        if more:
            out["next_batch"] = f"h{index}"
        return out

    async def _remote_room(
        self, room_id: str, via: Sequence[str], suggested_only: bool
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict[str, Any]]] | None:
        """A child room we are not in, from the first of its ``via`` servers that answers."""
        if self.remote is None:
            return None
        for server in via[:3]:
            if server == self.server_name:
                continue
            try:
                answer = await self.remote.hierarchy(server, room_id, suggested_only=suggested_only)
            except MatrixError:
                continue
            if not isinstance(answer, Mapping):
                continue
            room = answer.get("room")
            if not isinstance(room, Mapping) or room.get("room_id") != room_id:
                continue
            summary = {k: v for k, v in room.items() if k != "children_state"}
            summary.setdefault("num_joined_members", 0)
            summary.setdefault("world_readable", False)
            summary.setdefault("guest_can_join", False)
            children_state = [c for c in room.get("children_state", []) if isinstance(c, dict)]
            children: dict[str, dict[str, Any]] = {}
            for child in answer.get("children", []) or []:
                if isinstance(child, Mapping) and isinstance(child.get("room_id"), str):
                    children[child["room_id"]] = dict(child)
            return summary, children_state, children
        return None

    # -- upgrades --------------------------------------------------------------------------

    async def upgrade(self, user_id: str, room_id: str, new_version: str) -> str:
        """Replace the room by a new one of ``new_version``; return the new room's ID."""
        version = KNOWN_ROOM_VERSIONS.get(new_version)
        if version is None:
            raise MatrixError(
                400, Codes.UNSUPPORTED_ROOM_VERSION,
                f"Room version {new_version!r} is not supported by this server",
            )
        state_ids = await self._events.get_current_state_ids(room_id)
        if not state_ids:
            raise not_found(f"Unknown room {room_id}")
        pdus = await self._events.get_pdus(state_ids.values())
        state: dict[StateKey, Event] = {k: pdus[e] for k, e in state_ids.items() if e in pdus}
        member = state.get(("m.room.member", user_id))
        if member is None or member.membership != "join":
            raise forbidden("You are not in this room")
        needed = get_send_level("m.room.tombstone", "", state.get(("m.room.power_levels", "")))
        if get_user_power_level(user_id, state) < needed:
            raise forbidden("You don't have permission to upgrade the room")
        if ("m.room.tombstone", "") in state:
            raise MatrixError(400, Codes.INVALID_PARAM, "This room has already been replaced")

        old_create = state[("m.room.create", "")]
        creation: dict[str, Any] = {"predecessor": {"room_id": room_id}}
        room_type = old_create.content.get("type")
        if isinstance(room_type, str):
            creation["type"] = room_type
        initial = [
            InitialState(key[0], key[1], dict(ev.content))
            for key, ev in sorted(state.items())
            if key[0] in UPGRADE_STATE and key[1] == "" and ev.content
        ]
        old_pl = state.get(("m.room.power_levels", ""))
        pl: dict[str, Any] | None = None
        restore: dict[str, Any] | None = None
        if old_pl is not None:
            pl = thaw(old_pl.content)
            if not isinstance(pl.get("users"), dict):
                pl["users"] = {}
            users = pl["users"]
            old_version = KNOWN_ROOM_VERSIONS.get(str(old_create.content.get("room_version")))
            if (
                old_version is not None
                and old_version.privileged_creators
                and not version.privileged_creators
            ):
                # The old room's creators had unlimited power outside the levels: keep them
                # in charge in a room version where only the levels count.
                extra = old_create.content.get("additional_creators")
                for creator in [old_create.sender, *(extra if isinstance(extra, list) else [])]:
                    if isinstance(creator, str):
                        users[creator] = max(100, users.get(creator, 0))
            if not version.privileged_creators and isinstance(users, dict):
                # The upgrader needs enough power to write the copied state; the old levels
                # are put back once the room is built.
                mine = users.get(user_id, pl.get("users_default", 0))
                top = max([100, *(v for v in pl.get("events", {}).values() if isinstance(v, int))])
                if not isinstance(mine, int) or mine < top:
                    restore = thaw(pl)
                    users[user_id] = top
        public = bool(await self._rooms.rooms.is_room_public(room_id))
        new_room, _ = await self._rooms.creator.create_room(
            CreateRoomRequest(
                creator=user_id,
                room_version=version.identifier,
                preset="private_chat",
                visibility="public" if public else "private",
                initial_state=initial,
                creation_content=creation,
                power_level_content_override=pl,
            )
        )
        messages = self._rooms.messages
        # Bans carry over.
        for (etype, target), ev in state.items():
            if etype == "m.room.member" and ev.membership == "ban":
                try:
                    await self._rooms.membership.ban(user_id, new_room, target, reason=None)
                except MatrixError:
                    self.log.info("could not carry the ban of {target} over", target=target)
        if restore is not None:
            await messages.set_state(user_id, new_room, "m.room.power_levels", "", restore)
        await messages.set_state(
            user_id, room_id, "m.room.tombstone", "",
            {"body": "This room has been replaced", "replacement_room": new_room},
        )
        await self._restrict_old_room(user_id, room_id, old_pl)
        # Aliases move to the new room; the old one loses its canonical alias.
        for alias in await self._rooms.rooms.get_aliases_for_room(room_id):
            entry = await self._rooms.rooms.get_alias(alias)
            await self._rooms.rooms.delete_alias(alias)
            await self._rooms.rooms.create_alias(
                alias, new_room, entry.creator if entry is not None else user_id
            )
        if ("m.room.canonical_alias", "") in state:
            try:
                await messages.set_state(user_id, room_id, "m.room.canonical_alias", "", {})
            except MatrixError:
                self.log.info("could not clear the old room's canonical alias")
        if public:
            await self._rooms.rooms.set_room_public(room_id, False)
        self.log.info("{user_id} upgraded {old} to {new} (v{version})", user_id=user_id,
                      old=room_id, new=new_room, version=version.identifier)
        return new_room

    async def _restrict_old_room(self, user_id: str, room_id: str, old_pl: Event | None) -> None:
        """Stop ordinary members talking or inviting in the replaced room."""
        content: dict[str, Any] = thaw(old_pl.content) if old_pl is not None else {}
        default = content.get("users_default", 0)
        level = max(50, (default if isinstance(default, int) else 0) + 1)
        changed = False
        for key in ("events_default", "invite"):
            current = content.get(key, 0 if key == "events_default" else 0)
            if not isinstance(current, int) or current < level:
                content[key] = level
                changed = True
        if not changed:
            return
        try:
            await self._rooms.messages.set_state(
                user_id, room_id, "m.room.power_levels", "", content
            )
        except MatrixError:
            self.log.info("could not restrict the old room {room_id}", room_id=room_id)

    # -- reports ---------------------------------------------------------------------------

    async def report_event(
        self, user_id: str, room_id: str, event_id: str, reason: str | None, score: int | None
    ) -> None:
        # 404 unless the reporter may see the event (the spec's answer for both cases).
        try:
            await self._rooms.reader.get_event(user_id, room_id, event_id)
        except MatrixError as e:
            if e.errcode is Codes.FORBIDDEN:
                raise not_found("Event not found") from e
            raise
        report_id = await self._store.add_report(
            room_id=room_id, event_id=event_id, user_id=user_id, reason=reason, score=score,
            now_ms=self._now(),
        )
        self.log.info("{user_id} reported {event_id} in {room_id} (report {report_id})",
                      user_id=user_id, event_id=event_id, room_id=room_id, report_id=report_id)

    async def report_room(self, user_id: str, room_id: str, reason: str | None) -> None:
        if await self._events.get_room_version(room_id) is None:
            raise not_found(f"Unknown room {room_id}")
        report_id = await self._store.add_report(
            room_id=room_id, event_id=None, user_id=user_id, reason=reason, score=None,
            now_ms=self._now(),
        )
        self.log.info("{user_id} reported room {room_id} (report {report_id})",
                      user_id=user_id, room_id=room_id, report_id=report_id)

    # -- timestamp_to_event ------------------------------------------------------------------

    async def timestamp_to_event(
        self, user_id: str, room_id: str, ts: int, forwards: bool
    ) -> tuple[str, int]:
        cap = await self._rooms.reader.access(user_id, room_id)
        for _ in range(5):
            rows = await self._store.events_near_ts(room_id, ts, forwards)
            if cap is not None:
                rows = [r for r in rows if r[2] <= cap]
            if not rows:
                break
            events = await self._events.get_events(r[0] for r in rows)
            visible = {
                e.event_id
                for e in await filter_events_for_user(self._events, user_id, list(events.values()))
            }
            for event_id, origin_ts, _ in rows:
                if event_id in visible:
                    return event_id, origin_ts
            ts = rows[-1][1] + (1 if forwards else -1)
        raise not_found(f"No event found {'after' if forwards else 'before'} {ts}")
