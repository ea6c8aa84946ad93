"""Asking appservices about users, aliases and third-party networks.

- When a client touches a local user or alias that does not exist and that lies in an
  appservice's *exclusive* namespace, the homeserver asks that appservice
  (``GET /_matrix/app/v1/users/{userId}`` or ``/rooms/{roomAlias}``); a 2xx answer means the
  appservice has now created it, and the lookup is tried again.
- The third-party lookup endpoints (``/_matrix/client/v3/thirdparty/*``) are answered from
  the appservices that declare the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.logger import Logger

from ruma.appservice.namespaces import Registry
from ruma.appservice.pusher import AppserviceClient, AppserviceError
from ruma.errors import Codes, MatrixError, not_found

__all__ = ["AppserviceQueries"]


class AppserviceQueries:
    log = Logger()

    def __init__(self, registry: Registry, client: AppserviceClient) -> None:
        self._registry = registry
        self._client = client

    async def query_user(self, user_id: str) -> bool:
        """Ask the owner of ``user_id``'s exclusive namespace to create it; True if it did."""
        reg = self._registry.exclusive_user_owner(user_id)
        if reg is None or reg.url is None:
            return False
        return await self._client.query_user(reg, user_id)

    async def query_alias(self, alias: str) -> bool:
        """Ask the appservices whose alias namespace holds ``alias``; True if one created it."""
        owner = self._registry.exclusive_alias_owner(alias)
        candidates = [owner] if owner is not None else self._registry.interested_in_alias(alias)
        for reg in candidates:
            if reg.url is not None and await self._client.query_alias(reg, alias):
                return True
        return False

    # -- third-party networks --------------------------------------------------------------

    async def protocols(self) -> dict[str, Any]:
        """``GET /thirdparty/protocols``: each declared protocol's metadata."""
        out: dict[str, Any] = {}
        names = sorted({p for reg in self._registry.all for p in reg.protocols})
        for name in names:
            info = await self._protocol_info(name)
            if info is not None:
                out[name] = info
        return out

    async def protocol(self, protocol: str) -> dict[str, Any]:
        if not self._registry.with_protocol(protocol):
            raise not_found(f"Unknown protocol {protocol!r}")
        info = await self._protocol_info(protocol)
        if info is None:
            raise not_found(f"No appservice answered for protocol {protocol!r}")
        return info

    async def _protocol_info(self, protocol: str) -> dict[str, Any] | None:
        merged: dict[str, Any] | None = None
        for reg in self._registry.with_protocol(protocol):
            answer = await self._ask(reg.id, f"protocol/{_seg(protocol)}", {})
            if not isinstance(answer, dict):
                continue
            if merged is None:
                merged = dict(answer)
                merged["instances"] = []
            for inst in answer.get("instances", []) or []:
                if isinstance(inst, dict):
                    inst = dict(inst)
                    # The spec wants instance_id to be unique across appservices.
                    inst.setdefault("instance_id", inst.get("network_id"))
                    inst.setdefault("appservice_id", reg.id)
                    merged["instances"].append(inst)
        return merged

    async def lookup(
        self, kind: str, protocol: str | None, query: Mapping[str, Sequence[str]]
    ) -> list[Any]:
        """``location``/``user`` lookups: by protocol with fields, or reverse by alias/userid."""
        if protocol is not None:
            regs = self._registry.with_protocol(protocol)
            if not regs:
                raise not_found(f"Unknown protocol {protocol!r}")
            path = f"{kind}/{_seg(protocol)}"
        else:
            regs = [r for r in self._registry.all if r.protocols]
            path = kind
        results: list[Any] = []
        for reg in regs:
            answer = await self._ask(reg.id, path, query)
            if isinstance(answer, list):
                results.extend(a for a in answer if isinstance(a, dict))
        return results

    async def _ask(
        self, as_id: str, path: str, query: Mapping[str, Sequence[str]]
    ) -> Any:
        reg = self._registry.get(as_id)
        if reg is None or reg.url is None:
            return None
        try:
            status, answer = await self._client.thirdparty(reg, path, query)
        except AppserviceError as e:
            self.log.warn("third-party lookup at {as_id} failed: {error}", as_id=as_id,
                          error=str(e))
            return None
        if not 200 <= status < 300:
            return None
        return answer


def _seg(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


def unknown_protocol(protocol: str) -> MatrixError:
    return MatrixError(404, Codes.NOT_FOUND, f"Unknown protocol {protocol!r}")
