"""Stored and inline sync filters."""

from __future__ import annotations

import json
from typing import Any

from ruma.errors import Codes, MatrixError, forbidden, not_found
from ruma.storage.filters import FilterStore
from ruma.sync.filter import DEFAULT_FILTER, Filter, parse_filter


class FilterHandler:
    def __init__(self, store: FilterStore, is_local_user: Any) -> None:
        self._store = store
        self._is_local = is_local_user

    async def create(self, requester: str, user_id: str, body: dict[str, Any]) -> str:
        if requester != user_id:
            raise forbidden("Cannot create filters for other users")
        if not self._is_local(user_id):
            raise MatrixError(400, Codes.INVALID_PARAM, "Can only create filters for local users")
        parse_filter(body)
        return str(await self._store.add_filter(user_id, body))

    async def get(self, requester: str, user_id: str, filter_id: str) -> dict[str, Any]:
        if requester != user_id:
            raise forbidden("Cannot get filters for other users")
        if not filter_id.isdigit():
            raise not_found("No such filter")
        found = await self._store.get_filter(user_id, int(filter_id))
        if found is None:
            raise not_found("No such filter")
        return found

    async def resolve(self, user_id: str, param: str | None) -> Filter:
        """The ``filter`` query parameter of /sync: a stored filter ID or inline JSON."""
        if param is None or param == "":
            return DEFAULT_FILTER
        if param.startswith("{"):
            try:
                body = json.loads(param)
            except ValueError:
                raise MatrixError(400, Codes.NOT_JSON, "filter is not valid JSON") from None
            return parse_filter(body)
        if not param.isdigit():
            raise MatrixError(400, Codes.INVALID_PARAM, "filter must be an ID or a JSON object")
        found = await self._store.get_filter(user_id, int(param))
        if found is None:
            raise not_found("No such filter")
        return parse_filter(found)
