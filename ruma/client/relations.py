"""``/v1/rooms/{roomId}/relations/...`` and ``/v1/rooms/{roomId}/threads``."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator
from ruma.client.http import query_bool, query_int, query_str
from ruma.client.rooms import event_id_arg, room_id_arg
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import invalid_param
from ruma.rooms.serialize import EventSerializer
from ruma.rooms.service import RoomServices

__all__ = ["RelationEndpoints"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


class RelationEndpoints:
    def __init__(self, *, clock: IReactorTime, auth: Authenticator, rooms: RoomServices) -> None:
        self._clock = clock
        self._auth = auth
        self._rooms = rooms
        self._serializer = EventSerializer(rooms.store, rooms.relations)

    def register_routes(self, router: ClientRouter) -> None:
        base = "/rooms/<room_id>/relations/<event_id>"
        v1 = ("v1",)
        router.route(base, ["GET"], versions=v1)(self.on_relations)
        router.route(base + "/<rel_type>", ["GET"], versions=v1)(self.on_relations)
        router.route(base + "/<rel_type>/<event_type>", ["GET"], versions=v1)(self.on_relations)
        router.route("/rooms/<room_id>/threads", ["GET"], versions=v1)(self.on_threads)

    def _limit(self, request: IRequest) -> int:
        limit = query_int(request, "limit", DEFAULT_LIMIT)
        assert limit is not None
        if limit < 0:
            raise invalid_param("limit must not be negative")
        return min(limit, MAX_LIMIT)

    async def on_relations(
        self,
        request: IRequest,
        room_id: str,
        event_id: str,
        rel_type: str | None = None,
        event_type: str | None = None,
    ) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        event_id_arg(event_id)
        direction = query_str(request, "dir", "b")
        if direction not in ("b", "f"):
            raise invalid_param("dir must be 'b' or 'f'")
        recurse = bool(query_bool(request, "recurse", False))
        page = await self._rooms.relations.get_relations(
            requester.user_id,
            room_id,
            event_id,
            rel_type=rel_type,
            event_type=event_type,
            from_token=query_str(request, "from"),
            to_token=query_str(request, "to"),
            limit=self._limit(request),
            backwards=direction == "b",
            recurse=recurse,
        )
        now = int(self._clock.seconds() * 1000)
        out: JsonDict = {
            "chunk": await self._serializer.serialize(page.events, now=now, requester=requester)
        }
        if page.next_batch is not None:
            out["next_batch"] = page.next_batch
        if page.prev_batch is not None:
            out["prev_batch"] = page.prev_batch
        if page.recursion_depth is not None:
            out["recursion_depth"] = page.recursion_depth
        return out

    async def on_threads(self, request: IRequest, room_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        room_id_arg(room_id)
        include = query_str(request, "include", "all")
        if include not in ("all", "participated"):
            raise invalid_param("include must be 'all' or 'participated'")
        page = await self._rooms.relations.get_threads(
            requester.user_id,
            room_id,
            participated_only=include == "participated",
            from_token=query_str(request, "from"),
            limit=self._limit(request),
        )
        now = int(self._clock.seconds() * 1000)
        out: JsonDict = {
            "chunk": await self._serializer.serialize(page.roots, now=now, requester=requester)
        }
        if page.next_batch is not None:
            out["next_batch"] = page.next_batch
        return out
