"""The pieces Ruma's outbound HTTP clients share (ruma.outbound_http)."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from ruma.outbound_http import (
    AddressesEndpoint,
    Discard,
    IPRangeFilter,
    discard_if_longer,
    json_body,
    resolve_addresses,
)


class _Resolver:
    """A name resolver that answers from a table, at once."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    def resolveHostName(self, receiver: Any, host: str, port: int = 0) -> None:
        self.asked.append((host, port))
        receiver.resolutionBegan(None)
        for ip in self.table.get(host, []):
            receiver.addressResolved(IPv4Address("TCP", ip, port))
        receiver.resolutionComplete()


class _Reactor(MemoryReactorClock):
    def __init__(self, table: dict[str, list[str]]) -> None:
        super().__init__()
        self.nameResolver = _Resolver(table)


class _Response:
    def __init__(self, length: object) -> None:
        self.length = length
        self.delivered: list[Any] = []

    def deliverBody(self, protocol: Any) -> None:
        self.delivered.append(protocol)


class ResolveTests(SynchronousTestCase):
    def test_ip_literals_need_no_lookup(self) -> None:
        """An IPv4 or IPv6 literal (bracketed or not) is its own answer; nothing is asked."""
        reactor = _Reactor({})
        for host, ip in (("10.1.2.3", "10.1.2.3"), ("[::1]", "::1"), ("fe80::1", "fe80::1")):
            got = self.successResultOf(Deferred.fromCoroutine(resolve_addresses(reactor, host, 1)))
            self.assertEqual(got, [ip])
        self.assertEqual(reactor.nameResolver.asked, [])

    def test_names_go_through_the_reactor_resolver(self) -> None:
        """A host name yields every address the injected resolver gives, in order."""
        reactor = _Reactor({"example.org": ["192.0.2.7", "8.8.8.8"]})
        got = self.successResultOf(
            Deferred.fromCoroutine(resolve_addresses(reactor, "example.org", 8448))
        )
        self.assertEqual(got, ["192.0.2.7", "8.8.8.8"])
        self.assertEqual(reactor.nameResolver.asked, [("example.org", 8448)])

    def test_permitted_keeps_order_and_drops_denied(self) -> None:
        """The filter keeps the allowed addresses, in their order, and nothing else."""
        ips = ["8.8.8.8", "127.0.0.1", "2001:4860::8888", "::ffff:10.0.0.1", "1.1.1.1"]
        self.assertEqual(IPRangeFilter().permitted(ips), ["8.8.8.8", "2001:4860::8888", "1.1.1.1"])
        self.assertEqual(IPRangeFilter(deny=()).permitted(ips), ips)


class AddressesEndpointTests(SynchronousTestCase):
    def test_first_address_that_answers(self) -> None:
        """A refused address is passed over; the next one (IPv6 here) is connected to with
        the same port and time limit."""
        reactor = MemoryReactorClock()
        d = AddressesEndpoint(reactor, ["10.0.0.1", "fd00::2"], 8448, 7.0).connect(
            Factory.forProtocol(Protocol)
        )
        host, port, factory, timeout, _ = reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("10.0.0.1", 8448, 7.0))
        factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
        self.assertNoResult(d)
        host, port, factory, timeout, _ = reactor.tcpClients[1]
        self.assertEqual((host, port, timeout), ("fd00::2", 8448, 7.0))
        factory.buildProtocol(None).makeConnection(StringTransport())
        self.assertIsInstance(self.successResultOf(d), Protocol)

    def test_none_answers(self) -> None:
        """When every address fails, the last failure is the answer; no address at all is a
        ConnectionError."""
        reactor = MemoryReactorClock()
        d = AddressesEndpoint(reactor, ["10.0.0.1"], 80, 1.0).connect(Factory.forProtocol(Protocol))
        _, _, factory, _, _ = reactor.tcpClients[0]
        factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
        self.failureResultOf(d, ConnectionRefusedError)
        empty = AddressesEndpoint(reactor, [], 80, 1.0).connect(Factory.forProtocol(Protocol))
        self.failureResultOf(empty, ConnectionError)


class BodyTests(SynchronousTestCase):
    def test_json_body(self) -> None:
        """Compact UTF-8 JSON (non-ASCII kept as is), its length known, the Content-Type
        set, written in one go."""
        headers = Headers()
        producer = json_body(headers, {"a": [1, 2], "é": "ü"})
        self.assertEqual(headers.getRawHeaders(b"Content-Type"), [b"application/json"])
        expected = '{"a":[1,2],"é":"ü"}'.encode()
        self.assertEqual(producer.length, len(expected))
        consumer = StringTransport()
        self.successResultOf(producer.startProducing(consumer))
        self.assertEqual(consumer.value(), expected)

    def test_discard_if_longer(self) -> None:
        """Only an announced length over the limit drops the body; an unknown length or one
        within the limit leaves it to the caller."""
        long = _Response(11)
        self.assertTrue(discard_if_longer(long, 10))  # type: ignore[arg-type]
        self.assertIsInstance(long.delivered[0], Discard)
        for length in (10, object()):
            response = _Response(length)
            self.assertFalse(discard_if_longer(response, 10))  # type: ignore[arg-type]
            self.assertEqual(response.delivered, [])
