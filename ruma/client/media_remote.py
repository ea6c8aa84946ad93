"""Media and the network: federation media (served and fetched) and the SSRF-safe fetcher
URL previews use.

- :func:`install_federation_media_routes`: ``GET /_matrix/federation/v1/media/download/
  {mediaId}`` and ``/thumbnail/{mediaId}``, X-Matrix authenticated, answering
  ``multipart/mixed`` with two parts (a JSON metadata object, then the bytes), as the
  server-server spec says. Only this server's media is served.
- :class:`FederationMediaSource`: fetches ``mxc://other.server/...`` over federation with the
  homeserver's federation client, falling back to the legacy ``/_matrix/media/v3/download``
  for servers that predate authenticated media; follows a ``Location`` part through the
  safe fetcher.
- :class:`SafeUrlFetcher`: plain HTTP(S) GETs that resolve the host name themselves and
  refuse to connect to any address the :class:`~ruma.outbound_http.IPRangeFilter` denies
  (private, loopback, link-local... by default), on every redirect too, with a size limit and
  a time limit.
"""

from __future__ import annotations

import re
import secrets
from email.message import Message
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IRequest, IResponse
from zope.interface import implementer

from ruma.client.http import query_bool, query_int, query_str
from ruma.client.media import BytesResponse, content_disposition
from ruma.client.router import ClientRouter
from ruma.errors import Codes
from ruma.federation.http import FederationClient, FederationError
from ruma.federation.inbound_auth import FederationAuthenticator
from ruma.media.repository import (
    FetchedMedia,
    FetchedUrl,
    MediaFetchError,
    MediaRepository,
    UrlFetcher,
)
from ruma.outbound_http import (
    AddressesEndpoint,
    Discard,
    IPRangeFilter,
    discard_if_longer,
    resolve_addresses,
)

FED_MEDIA_PREFIX = "/_matrix/federation/v1/media"
MAX_REDIRECTS = 5
FETCH_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 10.0


# -- multipart -------------------------------------------------------------------------


def build_multipart(data: bytes, content_type: str, filename: str | None) -> tuple[bytes, str]:
    """The federation media body and its Content-Type."""
    boundary = secrets.token_hex(16)
    b = boundary.encode("ascii")
    parts = [
        b"--" + b + b"\r\nContent-Type: application/json\r\n\r\n{}\r\n",
        b"--" + b + b"\r\nContent-Type: " + content_type.encode("utf-8") + b"\r\n"
        b"Content-Disposition: " + content_disposition(content_type, filename).encode("utf-8")
        + b"\r\n\r\n" + data + b"\r\n",
        b"--" + b + b"--\r\n",
    ]
    return b"".join(parts), f"multipart/mixed; boundary={boundary}"


def _header_params(value: str) -> Message:
    m = Message()
    m["content-type"] = value
    return m


def parse_multipart(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts (lower-cased headers, body) of a ``multipart/mixed`` answer."""
    boundary = _header_params(content_type).get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ValueError("multipart answer without a boundary")
    delim = b"--" + boundary.encode("latin-1")
    chunks = body.split(delim)
    parts: list[tuple[dict[str, str], bytes]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        head, sep, rest = chunk.partition(b"\r\n\r\n")
        if not sep:
            if chunk.startswith(b"\r\n"):
                head, rest = b"", chunk[2:]
            else:
                raise ValueError("malformed multipart part")
        if rest.endswith(b"\r\n"):
            rest = rest[:-2]
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n"):
            if b":" in line:
                k, _, v = line.partition(b":")
                headers[k.strip().lower().decode("latin-1")] = v.strip().decode("utf-8", "replace")
        parts.append((headers, rest))
    return parts


def filename_from_disposition(value: str | None) -> str | None:
    if not value:
        return None
    m = re.search(r"filename\*\s*=\s*utf-8''([^;]+)", value, re.IGNORECASE)
    if m:
        return unquote(m.group(1).strip())
    m = re.search(r'filename\s*=\s*"([^"]*)"', value, re.IGNORECASE) or re.search(
        r"filename\s*=\s*([^;]+)", value, re.IGNORECASE
    )
    return m.group(1).strip() if m else None


# -- serving our media over federation ---------------------------------------------------


def install_federation_media_routes(
    router: ClientRouter, authenticator: FederationAuthenticator, media: MediaRepository
) -> None:
    async def _answer(served_media: Any) -> BytesResponse:
        data = await media.read(served_media)
        body, ctype = build_multipart(data, served_media.content_type, served_media.filename)
        return BytesResponse(body, ctype)

    @router.route_raw(f"{FED_MEDIA_PREFIX}/download/<media_id>", ["GET"])
    async def download(request: IRequest, media_id: str) -> Any:
        await authenticator.authenticate(request, None)
        served, _, _ = await media.get_media(
            media.server_name,
            media_id,
            authenticated=True,
            allow_remote=False,
            timeout_ms=query_int(request, "timeout_ms"),
        )
        return await _answer(served)

    @router.route_raw(f"{FED_MEDIA_PREFIX}/thumbnail/<media_id>", ["GET"])
    async def thumbnail(request: IRequest, media_id: str) -> Any:
        await authenticator.authenticate(request, None)
        width = query_int(request, "width", required=True)
        height = query_int(request, "height", required=True)
        assert width is not None and height is not None
        served = await media.get_thumbnail(
            media.server_name,
            media_id,
            width,
            height,
            query_str(request, "method", "scale") or "scale",
            authenticated=True,
            animated=bool(query_bool(request, "animated", False)),
            allow_remote=False,
            timeout_ms=query_int(request, "timeout_ms"),
        )
        return await _answer(served)


# -- fetching other servers' media ---------------------------------------------------------


class FederationMediaSource:
    """:class:`~ruma.media.repository.RemoteMediaSource` over the federation client."""

    log = Logger()

    def __init__(self, client: FederationClient, fetcher: UrlFetcher | None = None) -> None:
        self._client = client
        self._fetcher = fetcher

    async def download(
        self, server: str, media_id: str, *, max_size: int, timeout_ms: int
    ) -> FetchedMedia:
        timeout = max(timeout_ms / 1000.0, 5.0) + 10.0
        try:
            code, headers, body = await self._client.request_raw(
                "GET",
                server,
                f"{FED_MEDIA_PREFIX}/download/{media_id}",
                query={"timeout_ms": str(timeout_ms)},
                timeout=timeout,
                max_bytes=max_size + 64 * 1024,
            )
        except FederationError as e:
            raise MediaFetchError(str(e), too_large=e.status == 502) from None
        if code == 200:
            return await self._from_multipart(headers, body, max_size)
        errcode = _errcode(body)
        if code in (404, 405, 400) and errcode in (None, Codes.UNRECOGNIZED.value):
            return await self._legacy(server, media_id, max_size, timeout_ms, timeout)
        if code == 404:
            raise MediaFetchError(f"{server} has no media {media_id}", not_found=True)
        raise MediaFetchError(f"{server} answered {code} for media {media_id}")

    async def _from_multipart(self, headers: Headers, body: bytes, max_size: int) -> FetchedMedia:
        ctype = (headers.getRawHeaders(b"content-type") or [b""])[0].decode("latin-1")
        try:
            parts = parse_multipart(body, ctype)
        except ValueError as e:
            raise MediaFetchError(f"bad multipart answer: {e}") from None
        if len(parts) < 2:
            raise MediaFetchError("multipart answer without a media part")
        part_headers, data = parts[1]
        location = part_headers.get("location")
        if location:
            if self._fetcher is None:
                raise MediaFetchError("media is behind a redirect and no fetcher is configured")
            fetched = await self._fetcher.fetch(location, max_size=max_size)
            return FetchedMedia(fetched.data, fetched.content_type, None)
        if len(data) > max_size:
            raise MediaFetchError("remote media is too large", too_large=True)
        return FetchedMedia(
            data,
            part_headers.get("content-type"),
            filename_from_disposition(part_headers.get("content-disposition")),
        )

    async def _legacy(
        self, server: str, media_id: str, max_size: int, timeout_ms: int, timeout: float
    ) -> FetchedMedia:
        try:
            code, headers, body = await self._client.request_raw(
                "GET",
                server,
                f"/_matrix/media/v3/download/{server}/{media_id}",
                query={"allow_remote": "false", "timeout_ms": str(timeout_ms)},
                sign=False,
                timeout=timeout,
                max_bytes=max_size,
            )
        except FederationError as e:
            raise MediaFetchError(str(e), too_large=e.status == 502) from None
        if code == 404:
            raise MediaFetchError(f"{server} has no media {media_id}", not_found=True)
        if code != 200:
            raise MediaFetchError(f"{server} answered {code} for media {media_id}")
        ctype = headers.getRawHeaders(b"content-type")
        disp = headers.getRawHeaders(b"content-disposition")
        return FetchedMedia(
            body,
            ctype[0].decode("latin-1") if ctype else None,
            filename_from_disposition(disp[0].decode("utf-8", "replace") if disp else None),
        )


def _errcode(body: bytes) -> str | None:
    import json

    try:
        value = json.loads(body)
    except ValueError:
        return None
    code = value.get("errcode") if isinstance(value, dict) else None
    return code if isinstance(code, str) else None


# -- the SSRF-safe fetcher -----------------------------------------------------------------


class BlockedURL(MediaFetchError):
    """Every address of the URL's host is denied."""


@implementer(IStreamClientEndpoint)
class _FilteredEndpoint:
    """Resolves the host, drops denied addresses, connects to the first allowed one."""

    def __init__(self, reactor: Any, host: str, port: int, ip_filter: IPRangeFilter) -> None:
        self._reactor = reactor
        self._host = host
        self._port = port
        self._filter = ip_filter

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        candidates = await resolve_addresses(self._reactor, self._host, self._port)
        allowed = self._filter.permitted(candidates)
        if not allowed:
            raise BlockedURL(f"{self._host} resolves only to denied addresses")
        endpoint = AddressesEndpoint(self._reactor, allowed, self._port, CONNECT_TIMEOUT_S)
        return await endpoint.connect(factory)


@implementer(IAgentEndpointFactory)
class _FilteredEndpoints:
    def __init__(self, reactor: Any, ip_filter: IPRangeFilter) -> None:
        self._reactor = reactor
        self._filter = ip_filter

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        ep: IStreamClientEndpoint = _FilteredEndpoint(self._reactor, host, uri.port, self._filter)
        if uri.scheme == b"https":
            ep = wrapClientTLS(optionsForClientTLS(host.strip("[]")), ep)
        return ep


class _LimitedBody(Protocol):
    def __init__(self, limit: int, done: Deferred[bytes]) -> None:
        self._limit = limit
        self._done = done
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._done.errback(MediaFetchError("content is too large", too_large=True))
            if self.transport is not None:
                self.transport.stopProducing()  # type: ignore[attr-defined]
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._chunks))
        else:
            self._done.errback(MediaFetchError(f"connection lost: {reason.getErrorMessage()}"))


class SafeUrlFetcher:
    """:class:`~ruma.media.repository.UrlFetcher` that never reaches denied addresses."""

    log = Logger()

    def __init__(
        self, reactor: Any, clock: IReactorTime, ip_filter: IPRangeFilter, *, agent: Any = None
    ) -> None:
        self._clock = clock
        self._agent = agent or Agent.usingEndpointFactory(
            reactor,
            _FilteredEndpoints(reactor, ip_filter),
            pool=HTTPConnectionPool(reactor, persistent=False),
        )

    async def fetch(self, url: str, *, max_size: int) -> FetchedUrl:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise MediaFetchError(f"cannot fetch {current!r}")
            d = self._agent.request(
                b"GET",
                current.encode("utf-8"),
                Headers({b"User-Agent": [b"Ruma (URL preview)"], b"Accept": [b"text/html, image/*;q=0.9, */*;q=0.5"]}),
                None,
            )
            d.addTimeout(FETCH_TIMEOUT_S, self._clock)
            try:
                response: IResponse = await d
            except MediaFetchError:
                raise
            except Exception as e:
                raise MediaFetchError(f"fetching failed: {e!r}") from None
            if response.code in (301, 302, 303, 307, 308):
                location = response.headers.getRawHeaders(b"location")
                response.deliverBody(Discard())
                if not location:
                    raise MediaFetchError("redirect without a Location")
                current = urljoin(current, location[0].decode("utf-8", "replace"))
                continue
            if discard_if_longer(response, max_size):
                raise MediaFetchError("content is too large", too_large=True)
            done: Deferred[bytes] = Deferred()
            response.deliverBody(_LimitedBody(max_size, done))
            done.addTimeout(FETCH_TIMEOUT_S, self._clock)
            try:
                data = await done
            except MediaFetchError:
                raise
            except Exception as e:
                raise MediaFetchError(f"reading failed: {e!r}") from None
            if not 200 <= response.code < 300:
                raise MediaFetchError(f"{parts.hostname} answered {response.code}")
            ctype = response.headers.getRawHeaders(b"content-type")
            return FetchedUrl(current, ctype[0].decode("latin-1") if ctype else None, data)
        raise MediaFetchError("too many redirects")


__all__ = [
    "BlockedURL",
    "FederationMediaSource",
    "SafeUrlFetcher",
    "build_multipart",
    "filename_from_disposition",
    "install_federation_media_routes",
    "parse_multipart",
]
