"""Federation queries: profiles, room aliases, devices and keys, the public room list and
space hierarchies, answered for other servers and asked of them.

:class:`QueryServer` answers (``/_matrix/federation/v1/query/*``, ``/user/*``,
``/publicRooms``, ``/hierarchy``; routes in :mod:`ruma.federation.query_routes`).
:class:`QueryClient` asks other servers: the rooms layer's ``RemoteDirectory`` (client
``GET /directory/room/{alias}`` and ``POST /join/{alias}`` for remote aliases) and
``RemoteProfiles`` (client ``GET /profile/{userId}`` for remote users) seams.

End-to-end keys come from the e2ee service (``ruma.e2ee``: :class:`LocalKeys` is its
``E2EKeys``, :class:`DeviceKeys` its ``E2EStore``) when one is given; without it
``user/keys/query`` and ``user/keys/claim`` answer the spec's shapes with no keys. Only
devices with uploaded keys are listed by ``user/devices`` (its ``keys`` is required).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

from twisted.logger import Logger

from ruma.errors import Codes, MatrixError, bad_json, forbidden, invalid_param, not_found
from ruma.federation.http import FederationError
from ruma.federation.membership import RoomAccessLike
from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.ids import RoomAlias, UserID
from ruma.rooms.profile import ProfileSource
from ruma.rooms.summary import SUMMARY_TYPES, public_room_chunk
from ruma.storage.events import EventStore
from ruma.storage.rooms import RoomStore

__all__ = ["DeviceSource", "QueryClient", "QueryServer"]

FED_V1 = "/_matrix/federation/v1"
MAX_HIERARCHY_ROOMS = 50


class DeviceLike(Protocol):
    @property
    def device_id(self) -> str: ...

    @property
    def display_name(self) -> str | None: ...


class DeviceSource(Protocol):
    """Where local users' devices live (``ruma.storage.accounts.AccountStore``)."""

    async def get_devices(self, user_id: str) -> Any: ...


class LocalKeys(Protocol):
    """Our users' end-to-end keys (``ruma.e2ee.keys.E2EKeys``)."""

    async def query_local(
        self, wanted: Mapping[str, list[str]], *, requester: str | None
    ) -> dict[str, Any]: ...

    async def claim_local(
        self, wanted: list[tuple[str, str, str]]
    ) -> dict[str, dict[str, dict[str, Any]]]: ...


class DeviceKeys(Protocol):
    """Device keys and the device-list stream (``ruma.storage.e2ee.E2EStore``)."""

    async def query_device_keys(self, wanted: Any) -> dict[str, dict[str, dict[str, Any]]]: ...

    async def get_device_list_position(self, user_id: str) -> int: ...

    async def get_cross_signing_keys(self, user_ids: Any) -> Any: ...


class FederationJSON(Protocol):
    async def get_json(self, destination: str, path: str, **kw: Any) -> Any: ...


def _server_of(some_id: str) -> str:
    return some_id.partition(":")[2]


class QueryServer:
    """Answers other servers' queries about this server's users, aliases and rooms."""

    log = Logger()

    def __init__(
        self,
        *,
        server_name: str,
        profiles: ProfileSource,
        devices: DeviceSource,
        rooms: RoomStore,
        store: EventStore,
        access: RoomAccessLike | None = None,
        keys: LocalKeys | None = None,
        device_keys: DeviceKeys | None = None,
    ) -> None:
        self.keys = keys
        self.device_keys = device_keys
        self.server_name = server_name
        self._profiles = profiles
        self._devices = devices
        self._rooms = rooms
        self._store = store
        self._access = access

    def _local_user(self, user_id: str | None) -> str:
        if not user_id:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing user_id")
        try:
            UserID.parse(user_id)
        except InvalidIdentifier as e:
            raise invalid_param(f"Invalid user ID {user_id!r}") from e
        if _server_of(user_id) != self.server_name:
            raise invalid_param(f"{user_id} is not a user of this server")
        return user_id

    async def profile(self, user_id: str | None, field: str | None) -> dict[str, Any]:
        user_id = self._local_user(user_id)
        if field is not None and field not in ("displayname", "avatar_url"):
            raise invalid_param(f"Unknown profile field {field!r}")
        profile = await self._profiles.get_profile(user_id)
        if profile is None:
            raise not_found("Profile not found")
        out: dict[str, Any] = {}
        if profile.displayname is not None and field in (None, "displayname"):
            out["displayname"] = profile.displayname
        if profile.avatar_url is not None and field in (None, "avatar_url"):
            out["avatar_url"] = profile.avatar_url
        return out

    async def directory(self, room_alias: str | None) -> dict[str, Any]:
        if not room_alias:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing room_alias")
        try:
            parsed = RoomAlias.parse(room_alias)
        except InvalidIdentifier as e:
            raise invalid_param(f"Invalid room alias {room_alias!r}") from e
        if str(parsed.server) != self.server_name:
            raise invalid_param("Room alias is not on this server")
        entry = await self._rooms.get_alias(room_alias)
        if entry is None:
            raise not_found(f"Room alias {room_alias} not found")
        hosts = await self._store.get_joined_hosts(entry.room_id)
        servers = [self.server_name] + sorted(h for h in hosts if h != self.server_name)
        return {"room_id": entry.room_id, "servers": servers}

    async def user_devices(self, user_id: str) -> dict[str, Any]:
        user_id = self._local_user(user_id)
        devices = await self._devices.get_devices(user_id)
        keys: dict[str, dict[str, Any]] = {}
        stream_id = 0
        answer: dict[str, Any] = {"user_id": user_id}
        if self.device_keys is not None:
            keys = (await self.device_keys.query_device_keys({user_id: []})).get(user_id, {})
            stream_id = await self.device_keys.get_device_list_position(user_id)
            cross = (await self.device_keys.get_cross_signing_keys([user_id])).get(user_id, {})
            if "master" in cross:
                answer["master_key"] = cross["master"]
            if "self_signing" in cross:
                answer["self_signing_key"] = cross["self_signing"]
        out = []
        for d in devices:
            if d.device_id not in keys:
                # ``keys`` is required: a device that uploaded none cannot be described
                # (nor used for encryption) yet; its key upload announces it later.
                continue
            entry: dict[str, Any] = {"device_id": d.device_id, "keys": keys[d.device_id]}
            if d.display_name is not None:
                entry["device_display_name"] = d.display_name
            out.append(entry)
        answer["stream_id"] = stream_id
        answer["devices"] = out
        return answer

    async def keys_query(self, body: Mapping[str, Any]) -> dict[str, Any]:
        wanted = body.get("device_keys")
        if not isinstance(wanted, Mapping):
            raise bad_json("device_keys must be an object")
        local: dict[str, list[str]] = {}
        for user_id, devices in wanted.items():
            if isinstance(user_id, str) and _server_of(user_id) == self.server_name:
                local[user_id] = [d for d in devices if isinstance(d, str)] if isinstance(
                    devices, list
                ) else []
        if self.keys is not None:
            return await self.keys.query_local(local, requester=None)
        return {"device_keys": {u: {} for u in local}}

    async def keys_claim(self, body: Mapping[str, Any]) -> dict[str, Any]:
        wanted = body.get("one_time_keys")
        if not isinstance(wanted, Mapping):
            raise bad_json("one_time_keys must be an object")
        claims: list[tuple[str, str, str]] = []
        for user_id, devices in wanted.items():
            if not isinstance(devices, Mapping) or _server_of(user_id) != self.server_name:
                continue
            for device_id, algorithm in devices.items():
                if isinstance(device_id, str) and isinstance(algorithm, str):
                    claims.append((user_id, device_id, algorithm))
        if self.keys is None or not claims:
            return {"one_time_keys": {}}
        return {"one_time_keys": await self.keys.claim_local(claims)}

    # -- rooms -----------------------------------------------------------------------------

    async def _summary(self, room_id: str) -> dict[str, Any] | None:
        """The public summary of a room we are in (``PublicRoomsChunk`` fields)."""
        ids = await self._store.get_current_state_ids(room_id)
        if not ids:
            return None
        events = await self._store.get_events(
            [
                eid
                for (t, k), eid in ids.items()
                if k == "" and t in _SUMMARY_TYPES
            ]
        )
        state = {e.type: e for e in events.values()}
        members = await self._store.get_current_members(room_id, "join")
        out = public_room_chunk(room_id, state, len(members))
        jr = state.get("m.room.join_rules")
        rule = out["join_rule"]
        if jr is not None and rule in ("restricted", "knock_restricted"):
            # For the asking server to judge whether its users may join (hierarchy).
            out["allowed_room_ids"] = [
                a["room_id"]
                for a in jr.content.get("allow") or ()
                if isinstance(a, Mapping)
                and a.get("type") == "m.room_membership"
                and isinstance(a.get("room_id"), str)
            ]
        return out

    async def public_rooms(
        self, *, limit: int | None, since: str | None, search: str | None
    ) -> dict[str, Any]:
        room_ids = await self._rooms.get_public_room_ids()
        chunk = []
        for room_id in room_ids:
            summary = await self._summary(room_id)
            if summary is None:
                continue
            summary.pop("room_version", None)
            summary.pop("allowed_room_ids", None)
            if search:
                text = " ".join(
                    str(summary.get(k, "")) for k in ("name", "topic", "canonical_alias")
                ).lower()
                if search.lower() not in text:
                    continue
            chunk.append(summary)
        chunk.sort(key=lambda r: (-int(r["num_joined_members"]), r["room_id"]))
        start = 0
        if since:
            if not since.startswith("n") or not since[1:].isdigit():
                raise invalid_param("Invalid since token")
            start = int(since[1:])
        end = len(chunk) if limit is None else start + max(limit, 0)
        out: dict[str, Any] = {
            "chunk": chunk[start:end],
            "total_room_count_estimate": len(chunk),
        }
        if end < len(chunk):
            out["next_batch"] = f"n{end}"
        if start > 0:
            out["prev_batch"] = f"n{max(start - (limit or 0), 0)}"
        return out

    async def hierarchy(
        self, origin: str, room_id: str, *, suggested_only: bool
    ) -> dict[str, Any]:
        """The room (which must be visible to ``origin``: world-readable, public, or with
        one of its users in it) and its direct children we know of."""
        summary = await self._summary(room_id)
        if summary is None or not await self._may_peek(origin, room_id, summary):
            raise not_found("Unknown room or not accessible")
        if self._access is not None:
            await self._access.check_acl(room_id, origin)
        children_state = await self._children_state(room_id, suggested_only)
        summary["children_state"] = children_state
        children = []
        inaccessible = []
        for child in children_state[:MAX_HIERARCHY_ROOMS]:
            child_id = child["state_key"]
            child_summary = await self._summary(child_id)
            if child_summary is None:
                continue
            if not await self._may_peek(origin, child_id, child_summary):
                inaccessible.append(child_id)
                continue
            child_summary["children_state"] = await self._children_state(
                child_id, suggested_only
            )
            children.append(child_summary)
        return {"room": summary, "children": children, "inaccessible_children": inaccessible}

    async def _may_peek(self, origin: str, room_id: str, summary: Mapping[str, Any]) -> bool:
        if summary.get("world_readable") or summary.get("join_rule") in (
            "public",
            "knock",
            "knock_restricted",
        ):
            return True
        if self._access is not None and await self._access.server_in_room(room_id, origin):
            return True
        return bool(summary.get("join_rule") == "restricted")

    async def _children_state(self, room_id: str, suggested_only: bool) -> list[dict[str, Any]]:
        ids = await self._store.get_current_state_ids(room_id, ["m.space.child"])
        events = await self._store.get_events(ids.values())
        out = []
        for eid in sorted(ids.values()):
            ev = events.get(eid)
            if ev is None or not isinstance(ev.content.get("via"), list):
                continue
            if suggested_only and ev.content.get("suggested") is not True:
                continue
            out.append(
                {
                    "type": ev.type,
                    "state_key": ev.state_key,
                    "content": dict(ev.content),
                    "sender": ev.sender,
                    "origin_server_ts": ev.origin_server_ts,
                }
            )
        return out


_SUMMARY_TYPES = frozenset(SUMMARY_TYPES)


class QueryClient:
    """Asks other servers; implements the rooms layer's ``RemoteDirectory`` and
    ``RemoteProfiles``. Remote errors become our own 404s/502s."""

    log = Logger()

    def __init__(self, client: FederationJSON, server_name: str) -> None:
        self._client = client
        self.server_name = server_name

    async def _query(self, destination: str, kind: str, query: dict[str, str]) -> Any:
        try:
            return await self._client.get_json(
                destination, f"{FED_V1}/query/{quote(kind)}", query=query
            )
        except FederationError as e:
            self.log.info(
                "query {kind} to {server} failed: {e}", kind=kind, server=destination, e=e
            )
            if e.status == 404 or e.status is None:
                # Not there, or the server cannot be reached: nothing found.
                return None
            raise MatrixError(
                502, Codes.UNKNOWN, f"Could not query {destination}"
            ) from e

    async def query_alias(self, alias: str) -> tuple[str, list[str]]:
        server = _server_of(alias)
        answer = await self._query(server, "directory", {"room_alias": alias})
        if answer is None:
            raise not_found(f"Room alias {alias} not found")
        room_id = answer.get("room_id") if isinstance(answer, Mapping) else None
        servers = answer.get("servers") if isinstance(answer, Mapping) else None
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} gave an invalid alias answer")
        if not isinstance(servers, list):
            servers = []
        return room_id, [s for s in servers if isinstance(s, str)]

    async def query_profile(self, user_id: str) -> dict[str, Any]:
        server = _server_of(user_id)
        if server == self.server_name:
            raise forbidden("Not a remote user")
        answer = await self._query(server, "profile", {"user_id": user_id})
        if answer is None:
            raise not_found("Profile not found")
        if not isinstance(answer, Mapping):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} gave an invalid profile")
        out: dict[str, Any] = {}
        for key in ("displayname", "avatar_url"):
            value = answer.get(key)
            if isinstance(value, str):
                out[key] = value
        return out
