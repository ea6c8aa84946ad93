"""The real network behind :class:`~ruma.federation.discovery.ServerResolver`: SRV look-ups
with ``twisted.names`` and the ``.well-known/matrix/server`` fetch with treq.

The well-known fetch uses the same TLS policy as federation (``federation_custom_ca_list``,
``federation_verify_certificates``) and the same outbound IP filter: a host whose every
address is denied is never contacted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import treq
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from twisted.logger import Logger
from twisted.web.client import Agent
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import directlyProvides, implementer, providedBy

from ruma.federation.discovery import SrvRecord, WellKnownResponse
from ruma.federation.http import FederationTLS, IPRangeFilter

__all__ = ["make_srv_lookup", "make_well_known_fetcher"]

log = Logger(namespace="ruma.federation.network")

WELL_KNOWN_TIMEOUT = 10.0
WELL_KNOWN_MAX_BYTES = 50 * 1024


def make_srv_lookup(
    reactor: Any, resolver: Any = None
) -> Callable[[str], Awaitable[Sequence[SrvRecord]]]:
    """An SRV look-up through the system's DNS servers (``/etc/resolv.conf``), or through
    ``resolver`` (anything with twisted.names' ``lookupService``)."""
    from twisted.names import client, dns

    async def lookup(name: str) -> Sequence[SrvRecord]:
        nonlocal resolver
        if resolver is None:
            resolver = client.Resolver(resolv="/etc/resolv.conf", reactor=reactor)
        answers, _, _ = await resolver.lookupService(name)
        out: list[SrvRecord] = []
        for rr in answers:
            if rr.type == dns.SRV:
                p = rr.payload
                out.append(SrvRecord(p.priority, p.weight, p.port, str(p.target).rstrip(".")))
        return out

    return lookup


@implementer(IPolicyForHTTPS)
class _FederationPolicy:
    def __init__(self, tls: FederationTLS) -> None:
        self._tls = tls

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return self._tls.creator_for(hostname.decode("ascii"))


@implementer(IResolutionReceiver)
class _FilteringReceiver:
    def __init__(self, inner: IResolutionReceiver, ip_filter: IPRangeFilter) -> None:
        self._inner = inner
        self._filter = ip_filter

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        self._inner.resolutionBegan(resolution)

    def addressResolved(self, address: Any) -> None:
        if self._filter.allowed(address.host):
            self._inner.addressResolved(address)
        else:
            log.info("not connecting to denied address {ip}", ip=address.host)

    def resolutionComplete(self) -> None:
        self._inner.resolutionComplete()


@implementer(IHostnameResolver)
class _FilteringResolver:
    def __init__(self, inner: IHostnameResolver, ip_filter: IPRangeFilter) -> None:
        self._inner = inner
        self._filter = ip_filter

    def resolveHostName(self, resolutionReceiver: IResolutionReceiver, hostName: str,
                        portNumber: int = 0, addressTypes: Any = None,
                        transportSemantics: str = "TCP") -> IHostResolution:
        return self._inner.resolveHostName(
            _FilteringReceiver(resolutionReceiver, self._filter), hostName, portNumber,
            addressTypes, transportSemantics,
        )


class _FilteredReactor:
    """The reactor, with a name resolver that drops denied addresses."""

    def __init__(self, reactor: Any, ip_filter: IPRangeFilter) -> None:
        self._reactor = reactor
        self.nameResolver = _FilteringResolver(reactor.nameResolver, ip_filter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


def make_well_known_fetcher(
    reactor: Any, tls: FederationTLS, ip_filter: IPRangeFilter, http: Any = None
) -> Callable[[str], Awaitable[WellKnownResponse | None]]:
    """``GET https://<host>/.well-known/matrix/server`` (no redirects followed).

    ``http``: a treq-like client to use instead (tests).
    """
    clients: list[Any] = [http] if http is not None else []

    def client() -> Any:
        # Built on first use, so that wiring a homeserver on a test reactor touches nothing.
        if not clients:
            filtered = _FilteredReactor(reactor, ip_filter)
            # HostnameEndpoint adapts the reactor to its interfaces: the wrapper claims them.
            directlyProvides(filtered, *providedBy(reactor), IReactorPluggableNameResolver)
            agent = Agent(filtered, contextFactory=_FederationPolicy(tls))
            clients.append(treq.client.HTTPClient(agent))
        return clients[0]

    async def fetch(host: str) -> WellKnownResponse | None:
        url = f"https://{host}/.well-known/matrix/server"
        response = await client().get(url, timeout=WELL_KNOWN_TIMEOUT, allow_redirects=False)
        body = await response.content()
        if len(body) > WELL_KNOWN_MAX_BYTES:
            return WellKnownResponse(response.code, b"")
        cache = response.headers.getRawHeaders(b"cache-control")
        return WellKnownResponse(
            response.code, body, cache[0].decode("latin-1") if cache else None
        )

    return fetch
