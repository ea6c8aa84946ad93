"""Authenticating inbound federation requests by their ``X-Matrix`` header."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ruma.errors import Codes, MatrixError
from ruma.federation.keyring import KeyLookupError, Keyring
from ruma.federation.xmatrix import XMatrixError, parse_authorization, verify_request
from ruma.protocol.ids import is_valid_server_name


class FederationAuthenticator:
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        keyring: Keyring,
        server_name: str,
        *,
        domain_whitelist: Collection[str] | None = None,
    ) -> None:
        self._clock = clock
        self._keyring = keyring
        self._server_name = server_name
        self._whitelist = set(domain_whitelist) if domain_whitelist is not None else None
        self._origin_listeners: list[Callable[[str], None]] = []

    def add_origin_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(origin)`` after each request that authenticates (the federation
        sender uses it to retry at once a server it was backing off from)."""
        self._origin_listeners.append(listener)

    async def authenticate(self, request: IRequest, content: Any) -> str:
        """The origin server name of a correctly signed request; else 401 or 403."""
        headers = request.requestHeaders.getRawHeaders(b"authorization") or []
        if not headers:
            raise MatrixError(401, Codes.UNAUTHORIZED, "Missing X-Matrix Authorization header")
        last_error = "no X-Matrix header"
        for raw in headers:
            try:
                auth = parse_authorization(raw.decode("utf-8"))
            except (XMatrixError, UnicodeDecodeError) as e:
                last_error = str(e)
                continue
            if not is_valid_server_name(auth.origin):
                last_error = "origin is not a valid server name"
                continue
            if self._whitelist is not None and auth.origin not in self._whitelist:
                raise MatrixError(403, Codes.FORBIDDEN, "Federation denied with this server")
            now_ms = int(self._clock.seconds() * 1000)
            try:
                key = await self._keyring.get_verify_key(auth.origin, auth.key_id,
                                                         valid_at_ts=now_ms)
                verify_request(auth, method=request.method.decode("ascii"),
                               uri=request.uri.decode("utf-8"), our_name=self._server_name,
                               content=content, verify_key=key)
            except (KeyLookupError, XMatrixError) as e:
                last_error = str(e)
                continue
            for listener in self._origin_listeners:
                try:
                    listener(auth.origin)
                except Exception:
                    self.log.failure("origin listener failed for {origin}", origin=auth.origin)
            return auth.origin
        self.log.info("refused federation request: {why}", why=last_error)
        raise MatrixError(401, Codes.UNAUTHORIZED, f"Invalid X-Matrix signature: {last_error}")
