"""What Ruma's outbound HTTP clients share: request bodies, draining unwanted answers, and
reaching only the addresses the operator allows.

Three clients talk to the outside world: the federation client (:mod:`ruma.federation.http`),
the appservice client (:mod:`ruma.appservice.pusher`) and the remote-media fetcher
(:mod:`ruma.client.media_remote`). The federation client and the media fetcher resolve host
names themselves, so that an address in the deny list is refused before any connection is
made (a server name or URL pointing at ``127.0.0.1`` or a private network must not turn Ruma
into a proxy into its own network), then connect to the first permitted address that
answers.

No treq or Klein here, only Twisted's web client interfaces, so a service below the HTTP
edges may use it too.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import (
    IConsumer,
    IHostResolution,
    IProtocol,
    IProtocolFactory,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

__all__ = [
    "DEFAULT_IP_RANGE_DENYLIST",
    "AddressesEndpoint",
    "BytesProducer",
    "Discard",
    "IPRangeFilter",
    "discard_if_longer",
    "json_body",
    "resolve_addresses",
]

# Addresses no outbound request may reach unless the operator allows them: loopback,
# private, link-local, carrier-grade NAT, documentation, multicast and reserved ranges.
DEFAULT_IP_RANGE_DENYLIST = (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "192.0.0.0/24", "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "0.0.0.0/8", "240.0.0.0/4",
    "::1/128", "::/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10",
    "64:ff9b::/96", "::ffff:0:0/96",
)  # fmt: skip


class IPRangeFilter:
    """Decides which IPs outbound requests may reach. The allow list wins over the deny list."""

    def __init__(
        self, deny: Iterable[str] = DEFAULT_IP_RANGE_DENYLIST, allow: Iterable[str] = ()
    ) -> None:
        self._deny = [ipaddress.ip_network(n, strict=False) for n in deny]
        self._allow = [ipaddress.ip_network(n, strict=False) for n in allow]

    def allowed(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip.strip("[]"))
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return self.allowed(str(addr.ipv4_mapped))
        if any(addr in net for net in self._allow if net.version == addr.version):
            return True
        return not any(addr in net for net in self._deny if net.version == addr.version)

    def permitted(self, ips: Iterable[str]) -> list[str]:
        """The allowed ones of ``ips``, in their order."""
        return [ip for ip in ips if self.allowed(ip)]


# -- finding and reaching a host -----------------------------------------------------------


@implementer(IResolutionReceiver)
class _Collect:
    """Gathers every address a name resolution yields."""

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.done: Deferred[list[str]] = Deferred()

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self.addresses.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


async def resolve_addresses(
    reactor: IReactorPluggableNameResolver, host: str, port: int
) -> list[str]:
    """Every IP ``host`` resolves to through the reactor's resolver; an IP literal (IPv6 in
    brackets or not) is its own answer."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        collect = _Collect()
        reactor.nameResolver.resolveHostName(collect, bare, port)
        return await collect.done
    return [bare]


@implementer(IStreamClientEndpoint)
class AddressesEndpoint:
    """Connects to the first of several IP addresses that answers (errors of the others are
    passed over; the last one's is raised when none answers)."""

    def __init__(
        self, reactor: IReactorTCP, addresses: Sequence[str], port: int, timeout: float
    ) -> None:
        self._reactor = reactor
        self._addresses = addresses
        self._port = port
        self._timeout = timeout

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        last: Exception | None = None
        for ip in self._addresses:
            ep: IStreamClientEndpoint
            if ":" in ip:
                ep = TCP6ClientEndpoint(self._reactor, ip, self._port, timeout=self._timeout)
            else:
                ep = TCP4ClientEndpoint(self._reactor, ip, self._port, timeout=self._timeout)
            try:
                return await ep.connect(factory)
            except Exception as e:
                last = e
        raise last or ConnectionError("no addresses")


# -- bodies --------------------------------------------------------------------------------


@implementer(IBodyProducer)
class BytesProducer:
    """A request body already in memory, written in one go (treq's default producer needs
    the global reactor's cooperator; this needs nothing)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def json_body(headers: Headers, value: Any) -> BytesProducer:
    """``value`` as compact UTF-8 JSON, the request body; says so in ``headers``."""
    headers.setRawHeaders(b"Content-Type", [b"application/json"])
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return BytesProducer(data)


class Discard(Protocol):
    """Reads an answer's body and drops it (so the connection is freed)."""

    def dataReceived(self, data: bytes) -> None:
        pass


def discard_if_longer(response: IResponse, limit: int) -> bool:
    """True, with the body dropped unread, when ``response`` announces more than ``limit``
    bytes; False when it announces no more (or no length at all)."""
    if isinstance(response.length, int) and response.length > limit:
        response.deliverBody(Discard())
        return True
    return False
