"""Talking to external appservices over HTTP, and what a transaction contains.

:class:`AppserviceClient` makes every request the homeserver sends to an appservice:
``PUT /_matrix/app/v1/transactions/{txnId}``, the user and alias queries, ``POST
/_matrix/app/v1/ping`` and the third-party lookups. Each request carries the ``hs_token`` as
``Authorization: Bearer``. An appservice written before spec v1.4 reads only the legacy
``?access_token=`` query parameter: when one answers 401/403 to the header alone, the
request is repeated with the token in the query as well, and that appservice gets both from
then on.

:func:`transaction_body` turns queued items into the transaction JSON: room events in
client format and in stream order, ``ephemeral`` events (also under
``de.sorunome.msc2409.ephemeral`` when the registration used that name) and ``to_device``
messages (also under ``de.sorunome.msc2409.to_device``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from ruma.appservice.registration import Registration
from ruma.outbound_http import json_body
from ruma.protocol.events import Event
from ruma.rooms.serialize import serialize_event
from ruma.storage.appservice import EPHEMERAL, EVENT, TO_DEVICE, QueueItem

__all__ = ["AppserviceClient", "AppserviceError", "transaction_body"]

APP_PREFIX = "/_matrix/app/v1"
MAX_RESPONSE_BYTES = 10 * 1024 * 1024


class AppserviceError(Exception):
    """A request to an appservice failed; ``status`` is None when no HTTP answer came back."""

    def __init__(self, as_id: str, msg: str, status: int | None = None, body: Any = None):
        super().__init__(f"appservice {as_id}: {msg}")
        self.as_id = as_id
        self.status = status
        self.body = body

    @property
    def errcode(self) -> str | None:
        return self.body.get("errcode") if isinstance(self.body, dict) else None

    @property
    def timed_out(self) -> bool:
        return self.status is None and "timed out" in str(self)


def transaction_body(
    reg: Registration,
    items: Sequence[QueueItem],
    events: Mapping[str, Event],
    now_ms: int,
) -> dict[str, Any]:
    """The JSON of one transaction; events missing from ``events`` are left out."""
    pdus: list[dict[str, Any]] = []
    ephemeral: list[dict[str, Any]] = []
    to_device: list[dict[str, Any]] = []
    for item in items:
        if item.kind == EVENT and item.event_id is not None:
            event = events.get(item.event_id)
            if event is not None:
                pdus.append(serialize_event(event, now=now_ms))
        elif item.kind == EPHEMERAL and item.content is not None:
            ephemeral.append(dict(item.content))
        elif item.kind == TO_DEVICE and item.content is not None:
            to_device.append(dict(item.content))
    body: dict[str, Any] = {"events": pdus}
    if reg.wants_ephemeral:
        body["ephemeral"] = ephemeral
        if reg.unstable_ephemeral:
            body["de.sorunome.msc2409.ephemeral"] = ephemeral
    if reg.wants_to_device and to_device:
        body["to_device"] = to_device
        body["de.sorunome.msc2409.to_device"] = to_device
    return body


def _timed_out(result: Any, timeout: float) -> Any:
    # Whatever the cancelled request failed with (treq reports a ResponseNeverReceived),
    # it timed out.
    raise TimeoutError(timeout, "appservice request")


class AppserviceClient:
    """HTTP requests to appservices over an injected treq ``HTTPClient``."""

    log = Logger()

    def __init__(self, http: HTTPClient, clock: IReactorTime, *, timeout: float = 60.0) -> None:
        self._http = http
        self._clock = clock
        self.timeout = timeout
        # Appservices that only understood the token in the query string.
        self._legacy_auth: set[str] = set()

    async def _request(
        self,
        reg: Registration,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | Sequence[str]] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        if reg.url is None:
            raise AppserviceError(reg.id, "has no url")
        url = reg.url + path
        params: list[tuple[str, str]] = []
        for k, v in (query or {}).items():
            for one in [v] if isinstance(v, str) else v:
                params.append((k, one))
        status, answer = await self._send(reg, method, url, params, body, timeout)
        if status in (401, 403) and reg.id not in self._legacy_auth:
            # A pre-v1.4 appservice reads only ?access_token=: try once with both.
            status2, answer2 = await self._send(
                reg, method, url, [*params, ("access_token", reg.hs_token)], body, timeout
            )
            if status2 not in (401, 403):
                self.log.info(
                    "appservice {as_id} wants the hs_token in the query string (legacy auth)",
                    as_id=reg.id,
                )
                self._legacy_auth.add(reg.id)
            return status2, answer2
        return status, answer

    async def _send(
        self,
        reg: Registration,
        method: str,
        url: str,
        params: list[tuple[str, str]],
        body: Any,
        timeout: float | None,
    ) -> tuple[int, Any]:
        if reg.id in self._legacy_auth:
            params = [*params, ("access_token", reg.hs_token)]
        headers = Headers({b"Authorization": [b"Bearer " + reg.hs_token.encode("utf-8")]})
        data = json_body(headers, body) if body is not None else None
        async def call() -> tuple[int, bytes]:
            response = await self._http.request(
                method, url, params=params or None, headers=headers, data=data
            )
            content: bytes = await response.content()
            return int(response.code), content

        d = Deferred.fromCoroutine(call())
        d.addTimeout(
            timeout if timeout is not None else self.timeout,
            self._clock,
            onTimeoutCancel=_timed_out,
        )
        try:
            status, raw = await d
        except TimeoutError as e:
            raise AppserviceError(reg.id, "request timed out") from e
        except CancelledError:
            raise  # we are stopping
        except Exception as e:
            raise AppserviceError(reg.id, f"request failed: {e!r}") from e
        if len(raw) > MAX_RESPONSE_BYTES:
            raise AppserviceError(reg.id, "response too large", status)
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        return status, answer

    # -- the requests ----------------------------------------------------------------------

    async def push(self, reg: Registration, txn_id: str, body: Mapping[str, Any]) -> None:
        """``PUT /transactions/{txnId}``; raises :class:`AppserviceError` unless 2xx."""
        status, answer = await self._request(
            reg, "PUT", f"{APP_PREFIX}/transactions/{quote(txn_id, safe='')}", body=body
        )
        if not 200 <= status < 300:
            raise AppserviceError(reg.id, f"transaction {txn_id} refused with {status}", status,
                                  answer)

    async def query_user(self, reg: Registration, user_id: str) -> bool:
        """``GET /users/{userId}``: True if the appservice says it created the user."""
        return await self._query(reg, f"{APP_PREFIX}/users/{quote(user_id, safe='')}")

    async def query_alias(self, reg: Registration, alias: str) -> bool:
        """``GET /rooms/{roomAlias}``: True if the appservice says it created the alias."""
        return await self._query(reg, f"{APP_PREFIX}/rooms/{quote(alias, safe='')}")

    async def _query(self, reg: Registration, path: str) -> bool:
        if reg.url is None:
            return False
        try:
            status, _ = await self._request(reg, "GET", path, timeout=min(self.timeout, 30.0))
        except AppserviceError as e:
            self.log.warn("query to {as_id} failed: {error}", as_id=reg.id, error=str(e))
            return False
        return 200 <= status < 300

    async def ping(self, reg: Registration, transaction_id: str | None) -> tuple[int, Any]:
        """``POST /ping``; the appservice's status and body (raises if no answer)."""
        body: dict[str, Any] = {}
        if transaction_id is not None:
            body["transaction_id"] = transaction_id
        return await self._request(reg, "POST", f"{APP_PREFIX}/ping", body=body,
                                   timeout=min(self.timeout, 30.0))

    async def thirdparty(
        self, reg: Registration, path: str, query: Mapping[str, Sequence[str]]
    ) -> tuple[int, Any]:
        """``GET /thirdparty/...`` on the appservice."""
        return await self._request(reg, "GET", f"{APP_PREFIX}/thirdparty/{path}", query=query,
                                   timeout=min(self.timeout, 30.0))
