"""Client endpoints of the application-service support.

- ``POST /_matrix/client/v1/appservice/{appserviceId}/ping``: an appservice asks the
  homeserver to ping it (``POST /_matrix/app/v1/ping``) and learns how long that took, or why
  it failed (``M_URL_NOT_SET``, ``M_BAD_STATUS``, ``M_CONNECTION_FAILED``,
  ``M_CONNECTION_TIMEOUT``).
- ``/_matrix/client/v3/thirdparty/*``: third-party network lookups, answered by the
  appservices that declare the protocol.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ruma.appservice.pusher import AppserviceError
from ruma.appservice.service import AppserviceServices
from ruma.client.auth import Authenticator
from ruma.client.http import body_str, parse_json_object_or_empty
from ruma.client.router import ClientRouter, JsonDict
from ruma.errors import Codes, MatrixError, forbidden

__all__ = ["AppserviceEndpoints"]


class AppserviceEndpoints:
    def __init__(
        self, *, clock: IReactorTime, auth: Authenticator, appservices: AppserviceServices
    ) -> None:
        self._clock = clock
        self._auth = auth
        self._as = appservices

    def register_routes(self, router: ClientRouter) -> None:
        router.route("/appservice/<appservice_id>/ping", ["POST"], versions=("v1",))(
            self.on_ping
        )
        r = router.route
        r("/thirdparty/protocols", ["GET"])(self.on_protocols)
        r("/thirdparty/protocol/<protocol>", ["GET"])(self.on_protocol)
        r("/thirdparty/location/<protocol>", ["GET"])(self.on_location)
        r("/thirdparty/user/<protocol>", ["GET"])(self.on_user)
        r("/thirdparty/location", ["GET"])(self.on_location_reverse)
        r("/thirdparty/user", ["GET"])(self.on_user_reverse)

    async def on_ping(self, request: IRequest, appservice_id: str) -> JsonDict:
        requester = await self._auth.get_requester(request)
        if requester.appservice_id != appservice_id:
            raise forbidden("This access token does not belong to that application service")
        body = parse_json_object_or_empty(request)
        transaction_id = body_str(body, "transaction_id", required=False)
        reg = self._as.registry.get(appservice_id)
        if reg is None:
            raise forbidden("Unknown application service")
        if reg.url is None:
            raise MatrixError(400, Codes.URL_NOT_SET, "Application service has no URL")
        started = self._clock.seconds()
        try:
            status, answer = await self._as.client.ping(reg, transaction_id)
        except AppserviceError as e:
            if e.timed_out:
                raise MatrixError(
                    504, Codes.CONNECTION_TIMEOUT, "Timed out waiting for the application service"
                ) from e
            raise MatrixError(
                502, Codes.CONNECTION_FAILED, "Could not reach the application service"
            ) from e
        if not 200 <= status < 300:
            raise MatrixError(
                502,
                Codes.BAD_STATUS,
                "The application service answered with an error",
                status=status,
                body=json.dumps(answer) if answer is not None else "",
            )
        # The appservice is up: a delivery backing off from it retries now.
        self._as.pusher.appservice_is_up(appservice_id)
        return {"duration_ms": int(round((self._clock.seconds() - started) * 1000))}

    # -- third-party lookups ---------------------------------------------------------------

    async def on_protocols(self, request: IRequest) -> JsonDict:
        await self._auth.get_requester(request)
        return await self._as.queries.protocols()

    async def on_protocol(self, request: IRequest, protocol: str) -> JsonDict:
        await self._auth.get_requester(request)
        return await self._as.queries.protocol(protocol)

    async def on_location(self, request: IRequest, protocol: str) -> Any:
        await self._auth.get_requester(request)
        return await self._as.queries.lookup("location", protocol, _query(request))

    async def on_user(self, request: IRequest, protocol: str) -> Any:
        await self._auth.get_requester(request)
        return await self._as.queries.lookup("user", protocol, _query(request))

    async def on_location_reverse(self, request: IRequest) -> Any:
        await self._auth.get_requester(request)
        query = _query(request)
        if "alias" not in query:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter 'alias'")
        return await self._as.queries.lookup("location", None, query)

    async def on_user_reverse(self, request: IRequest) -> Any:
        await self._auth.get_requester(request)
        query = _query(request)
        if "userid" not in query:
            raise MatrixError(400, Codes.MISSING_PARAM, "Missing parameter 'userid'")
        return await self._as.queries.lookup("user", None, query)


def _query(request: IRequest) -> dict[str, list[str]]:
    """The query string minus the access token, as ``name -> values``."""
    args: dict[bytes, list[bytes]] = request.args or {}
    out: dict[str, list[str]] = {}
    for k, vs in args.items():
        name = k.decode("utf-8", "replace")
        if name in ("access_token", "user_id"):
            continue
        out[name] = [v.decode("utf-8", "replace") for v in vs]
    return out
