"""``POST /search`` (the ``room_events`` category)."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ruma.client.auth import Authenticator, Requester
from ruma.client.http import parse_json_object, query_str
from ruma.client.router import ClientRouter, JsonDict
from ruma.protocol.events import Event
from ruma.rooms.serialize import EventSerializer
from ruma.search.handler import SearchHandler, parse_search_body

__all__ = ["SearchEndpoints"]


class SearchEndpoints:
    def __init__(
        self,
        *,
        clock: IReactorTime,
        auth: Authenticator,
        search: SearchHandler,
        serializer: EventSerializer,
    ) -> None:
        self._clock = clock
        self._auth = auth
        self._search = search
        self._serializer = serializer

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/search", ["POST"])(self.on_search)

    async def _events(self, events: list[Event], requester: Requester) -> list[JsonDict]:
        now = int(self._clock.seconds() * 1000)
        return await self._serializer.serialize(events, now=now, requester=requester)

    async def on_search(self, request: IRequest) -> JsonDict:
        requester = await self._auth.get_requester(request)
        body = parse_json_object(request)
        query = parse_search_body(body, query_str(request, "next_batch"))
        found = await self._search.search(requester.user_id, query)
        served = await self._events([r.event for r in found.results], requester)
        results: list[JsonDict] = []
        for result, event in zip(found.results, served, strict=True):
            item: JsonDict = {"rank": result.rank, "result": event}
            if result.start is not None:
                context: JsonDict = {
                    "events_before": await self._events(result.before, requester),
                    "events_after": await self._events(result.after, requester),
                    "start": result.start,
                    "end": result.end,
                }
                if query.include_profile:
                    context["profile_info"] = result.profiles
                item["context"] = context
            results.append(item)
        room_events: JsonDict = {
            "count": found.count,
            "highlights": found.highlights,
            "results": results,
        }
        if found.next_batch is not None:
            room_events["next_batch"] = found.next_batch
        if found.groups:
            room_events["groups"] = {
                key: {
                    value: {"results": g.results, "order": g.order}
                    for value, g in grouped.items()
                }
                for key, grouped in found.groups.items()
            }
        if found.state:
            room_events["state"] = {
                room_id: await self._events(events, requester)
                for room_id, events in found.state.items()
            }
        return {"search_categories": {"room_events": room_events}}
