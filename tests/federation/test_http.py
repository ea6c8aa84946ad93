"""Outbound federation HTTP over real TLS on loopback: certificate checks, the IP deny
list, and signed JSON requests that the receiving side can verify."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ruma.federation.discovery import ServerResolver, SrvRecord, WellKnownResponse
from ruma.federation.http import (
    BlockedAddress,
    FederationAgent,
    FederationClient,
    FederationError,
    FederationTLS,
    IPRangeFilter,
)
from ruma.federation.xmatrix import parse_authorization, verify_request
from ruma.protocol.signing import generate_signing_key
from tests.interop.processes import make_test_ca

reactor: Any = _reactor


class Echo(Resource):
    """Answers every request with what it saw, as JSON; /fail answers 403 M_FORBIDDEN."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        if request.path == b"/fail":
            request.setResponseCode(403)
            return b'{"errcode": "M_FORBIDDEN", "error": "no"}'
        body = request.content.read() if request.content else b""
        return json.dumps({
            "method": request.method.decode(),
            "uri": request.uri.decode(),
            "host": (request.getHeader("host") or ""),
            "authorization": request.getHeader("authorization"),
            "body": json.loads(body) if body else None,
        }).encode()


class _TrackingSite(Site):
    """A Site that remembers its connections so a test can close them."""

    def __init__(self, resource: Resource) -> None:
        # No idle timeout: its timer would outlive a test whose client keeps the connection.
        super().__init__(resource, timeout=None)
        self.protocols: list[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        self.protocols.append(proto)
        return proto

    def close_all(self) -> Any:
        for proto in self.protocols:
            channel = getattr(proto, "_channel", proto)  # Site wraps HTTPChannel in a proxy
            transport = getattr(channel, "transport", None)
            if transport is not None and not getattr(transport, "disconnected", False):
                try:
                    transport.abortConnection()
                except AttributeError:
                    pass  # already torn down by the client's close

        return deferLater(reactor, 0.05, lambda: None)


async def _no_well_known(host: str) -> WellKnownResponse | None:
    return None


async def _no_srv(name: str) -> list[SrvRecord]:
    return []


class FederationHTTPTests(TestCase):
    def setUp(self) -> None:
        ca = make_test_ca(self.mktemp())
        leaf = ca.issue()
        self.ca_pem = ca.cert_path.read_bytes()
        cert = PrivateCertificate.loadPEM(leaf.cert_path.read_bytes() + leaf.key_path.read_bytes())
        site = _TrackingSite(Echo())
        port = reactor.listenSSL(0, site, cert.options(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        # Last cleanup to run: drop server-side connections the client left open, and let
        # their connectionLost run, so no HTTPChannel abort timer outlives the test.
        self.addCleanup(site.close_all)
        self.server = f"127.0.0.1:{port.getHost().port}"
        self.key = generate_signing_key("k1")

    def client(self, *, ca_pems: list[bytes] | None = None,
               allow: tuple[str, ...] = ("127.0.0.0/8",)) -> FederationClient:
        resolver = ServerResolver(reactor, _no_well_known, _no_srv)
        tls = FederationTLS(ca_pems=[self.ca_pem] if ca_pems is None else ca_pems)
        agent = FederationAgent(reactor, resolver, tls, IPRangeFilter(allow=allow))
        client = FederationClient(agent, reactor, "origin.test", self.key, timeout=10)
        self.addCleanup(agent._pool.closeCachedConnections)
        return client

    async def test_signed_request_verifies_on_arrival(self) -> None:
        """A PUT arrives over TLS with Host = server name and an X-Matrix header that
        verifies against our key for exactly that method, URI and body."""
        got = await self.client().put_json(self.server, "/_matrix/federation/v1/send/t 1",
                                           {"pdus": [], "edus": []})
        self.assertEqual(got["host"], self.server)
        self.assertEqual(got["uri"], "/_matrix/federation/v1/send/t%201")
        auth = parse_authorization(got["authorization"])
        verify_request(auth, method="PUT", uri=got["uri"], our_name=self.server,
                       content=got["body"], verify_key=self.key.verify_key)

    async def test_error_answers_raise_with_errcode(self) -> None:
        """A non-2xx answer raises FederationError carrying the status and errcode."""
        try:
            await self.client().get_json(self.server, "/fail")
        except FederationError as e:
            self.assertEqual((e.status, e.errcode), (403, "M_FORBIDDEN"))
        else:
            self.fail("no error raised")

    async def test_untrusted_certificate_refused(self) -> None:
        """A certificate from a CA we do not trust fails the request."""
        other_ca = make_test_ca(self.mktemp()).cert_path.read_bytes()
        with self.assertRaises(FederationError):
            await self.client(ca_pems=[other_ca]).get_json(self.server, "/x")

    async def test_private_addresses_denied_by_default(self) -> None:
        """Without an allow list entry, loopback is in the deny list and nothing connects."""
        with self.assertRaises(BlockedAddress):
            await self.client(allow=()).get_json(self.server, "/x")


class IPRangeFilterTests(TestCase):
    def test_defaults(self) -> None:
        """Private, loopback and IPv4-mapped private addresses are denied; public allowed."""
        f = IPRangeFilter()
        for ip in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "fd00::1", "::ffff:10.0.0.1",
                   "169.254.1.1"]:
            self.assertFalse(f.allowed(ip), ip)
        for ip in ["8.8.8.8", "2001:4860::8888"]:
            self.assertTrue(f.allowed(ip), ip)

    def test_allow_list_wins(self) -> None:
        """An operator's allow list entry opens a denied range."""
        self.assertTrue(IPRangeFilter(allow=["127.0.0.1/32"]).allowed("127.0.0.1"))
        self.assertFalse(IPRangeFilter(allow=["127.0.0.1/32"]).allowed("127.0.0.2"))


