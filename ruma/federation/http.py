"""Outbound federation HTTP: discovery, TLS checked against the server name, an IP deny
list, X-Matrix signing and JSON in and out.

``FederationAgent`` is an ``IAgent`` for ``matrix-federation://<server name>/<path>`` URIs;
``FederationClient`` signs requests and speaks JSON over it. Tests hand the client another
agent (e.g. one over an in-memory federation resource). The IP deny list and the pieces the
other outbound clients share (bodies, resolving, connecting) are in :mod:`ruma.outbound_http`;
``IPRangeFilter`` and ``DEFAULT_IP_RANGE_DENYLIST`` are re-exported here for the wiring.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from ruma.federation.discovery import ResolvedServer, ServerResolver
from ruma.federation.xmatrix import sign_request
from ruma.outbound_http import DEFAULT_IP_RANGE_DENYLIST as DEFAULT_IP_RANGE_DENYLIST
from ruma.outbound_http import (
    AddressesEndpoint,
    discard_if_longer,
    json_body,
    resolve_addresses,
)
from ruma.outbound_http import IPRangeFilter as IPRangeFilter
from ruma.protocol.errors import InvalidIdentifier
from ruma.protocol.ids import ServerName
from ruma.protocol.signing import SigningKey

SCHEME = "matrix-federation"
MAX_RESPONSE_BYTES = 100 * 1024 * 1024

class FederationError(Exception):
    """A federation request failed. ``status`` is None when no HTTP answer came back."""

    def __init__(self, destination: str, msg: str, status: int | None = None,
                 body: Any = None) -> None:
        super().__init__(f"{destination}: {msg}")
        self.destination = destination
        self.status = status
        self.body = body

    @property
    def errcode(self) -> str | None:
        return self.body.get("errcode") if isinstance(self.body, dict) else None


class BlockedAddress(FederationError):
    """Every address of the destination is in the IP deny list."""


class FederationTLS:
    """Client TLS options checking the peer's certificate against the expected name.

    ``ca_pems``, when given, *replaces* the system trust roots (as Synapse's
    ``federation_custom_ca_list`` does), for private federations and tests.
    """

    def __init__(self, *, verify: bool = True, ca_pems: Sequence[bytes] = ()) -> None:
        self._verify = verify
        self._trust = (
            trustRootFromCertificates([Certificate.loadPEM(p) for p in ca_pems])
            if ca_pems else None
        )

    def creator_for(self, name: str) -> IOpenSSLClientConnectionCreator:
        if not self._verify:
            from twisted.internet.ssl import CertificateOptions

            return _NoVerify(CertificateOptions(verify=False))
        if self._trust is not None:
            return optionsForClientTLS(name, trustRoot=self._trust)
        return optionsForClientTLS(name)


@implementer(IOpenSSLClientConnectionCreator)
class _NoVerify:
    """For ``federation_verify_certificates: false`` only: TLS without identity checks."""

    def __init__(self, options: Any) -> None:
        self._options = options

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:
        from OpenSSL.SSL import Connection

        conn = Connection(self._options.getContext(), None)
        conn.set_app_data(tlsProtocol)
        return conn


@implementer(IAgentEndpointFactory)
class _Fixed:
    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        return self._endpoint


@implementer(IAgent)
class FederationAgent:
    """``IAgent`` for ``matrix-federation://`` URIs."""

    log = Logger()

    def __init__(self, reactor: Any, resolver: ServerResolver, tls: FederationTLS,
                 ip_filter: IPRangeFilter, *, connect_timeout: float = 20.0) -> None:
        self._reactor = reactor
        self._resolver = resolver
        self._tls = tls
        self._ip_filter = ip_filter
        self._connect_timeout = connect_timeout
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 5
        self._pool.cachedConnectionTimeout = 120

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: IBodyProducer | None = None) -> Deferred[IResponse]:
        return Deferred.fromCoroutine(self._request(method, uri, headers, bodyProducer))

    async def _request(self, method: bytes, uri: bytes, headers: Headers | None,
                       body: IBodyProducer | None) -> IResponse:
        parts = urlsplit(uri.decode("ascii"))
        if parts.scheme != SCHEME:
            raise ValueError(f"FederationAgent only handles {SCHEME}:// URIs")
        server = parts.netloc
        resolved = await self._resolver.resolve(server)
        addresses = await self._addresses(resolved)
        endpoint = wrapClientTLS(
            self._tls.creator_for(resolved.tls_name),
            AddressesEndpoint(self._reactor, addresses, resolved.port, self._connect_timeout),
        )
        agent = Agent.usingEndpointFactory(self._reactor, _Fixed(endpoint), pool=self._pool)
        headers = headers.copy() if headers is not None else Headers()
        headers.setRawHeaders(b"Host", [resolved.host_header.encode("ascii")])
        # The pool keys connections by this URI's host and port: one key per server name.
        target = f"https://{server}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        return await agent.request(method, target.encode("ascii"), headers, body)  # type: ignore[no-any-return]

    async def _addresses(self, resolved: ResolvedServer) -> list[str]:
        candidates = await resolve_addresses(self._reactor, resolved.connect_host, resolved.port)
        allowed = self._ip_filter.permitted(candidates)
        if not allowed:
            raise BlockedAddress(resolved.server_name,
                                 f"no permitted address (resolved to {candidates})")
        return allowed


class FederationClient:
    """Signed JSON requests to other servers."""

    log = Logger()

    def __init__(self, agent: IAgent, clock: IReactorTime, server_name: str,
                 signing_key: SigningKey, *, timeout: float = 60.0) -> None:
        self._agent = agent
        self._clock = clock
        self.server_name = server_name
        self._key = signing_key
        self._timeout = timeout

    async def request(
        self,
        method: str,
        destination: str,
        path: str,
        *,
        query: Mapping[str, str | Sequence[str]] | None = None,
        body: Any = None,
        sign: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """Send a request and return the decoded JSON answer; raise ``FederationError``."""
        d = self._send(method, destination, path, query, body, sign, timeout)
        try:
            response = await d
            raw = await _read_limited(response)
        except FederationError:
            raise
        except Exception as e:
            raise FederationError(destination, f"{method} {path} failed: {e!r}") from e
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
            if 200 <= response.code < 300:
                raise FederationError(destination, f"{method} {path}: answer is not JSON",
                                      response.code) from None
        if not 200 <= response.code < 300:
            raise FederationError(destination, f"{method} {path} answered {response.code}",
                                  response.code, decoded)
        return decoded

    async def request_raw(
        self,
        method: str,
        destination: str,
        path: str,
        *,
        query: Mapping[str, str | Sequence[str]] | None = None,
        sign: bool = True,
        timeout: float | None = None,
        max_bytes: int = MAX_RESPONSE_BYTES,
    ) -> tuple[int, Headers, bytes]:
        """A body-less request whose answer is not JSON (media): ``(status, headers, body)``
        whatever the status; ``FederationError`` only when no answer came back (or it is
        larger than ``max_bytes``)."""
        d = self._send(method, destination, path, query, None, sign, timeout)
        try:
            response = await d
            if discard_if_longer(response, max_bytes):
                raise FederationError(destination, f"{method} {path}: answer too large", 502)
            body_d = readBody(response)
            body_d.addTimeout(timeout or self._timeout, self._clock)
            raw = await body_d
        except FederationError:
            raise
        except Exception as e:
            raise FederationError(destination, f"{method} {path} failed: {e!r}") from e
        if len(raw) > max_bytes:
            raise FederationError(destination, f"{method} {path}: answer too large", 502)
        return response.code, response.headers, raw

    def _send(
        self,
        method: str,
        destination: str,
        path: str,
        query: Mapping[str, str | Sequence[str]] | None,
        body: Any,
        sign: bool,
        timeout: float | None,
    ) -> Deferred[IResponse]:
        """Start a request (its JSON ``body``, if any, signed when ``sign``) under a time
        limit; the answer is left to the caller to read."""
        _check_destination(destination)
        uri = quote(path, safe="/:@!$&'()*+,;=-._~%")
        if query:
            uri += "?" + urlencode(query, doseq=True)
        headers = Headers({b"User-Agent": [b"Ruma"]})
        producer = json_body(headers, body) if body is not None else None
        if sign:
            auth = sign_request(method=method, uri=uri, origin=self.server_name,
                                destination=destination, content=body, key=self._key)
            headers.setRawHeaders(b"Authorization", [auth.encode("utf-8")])
        url = f"{SCHEME}://{destination}{uri}".encode("ascii")
        d = self._agent.request(method.encode("ascii"), url, headers, producer)
        d.addTimeout(timeout or self._timeout, self._clock)
        return d

    async def get_json(self, destination: str, path: str, **kw: Any) -> Any:
        return await self.request("GET", destination, path, **kw)

    async def put_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any:
        return await self.request("PUT", destination, path, body=body, **kw)

    async def post_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any:
        return await self.request("POST", destination, path, body=body, **kw)


def _check_destination(destination: str) -> None:
    """A destination that is no server name (say, from a client's query string) is a
    ``FederationError`` like an unreachable one, not an encoding error deep below."""
    try:
        ServerName.parse(destination)
    except InvalidIdentifier:
        raise FederationError(destination, "not a valid server name") from None


async def _read_limited(response: IResponse) -> bytes:
    if discard_if_longer(response, MAX_RESPONSE_BYTES):
        raise ValueError(f"response of {response.length} bytes is too large")
    return await readBody(response)
