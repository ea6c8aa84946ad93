"""Federation as the homeserver wires it: the routes a listener serves, the real outbound
agent built from the config, and the outbound IP filter applied to name resolution."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHostResolution, IResolutionReceiver
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from ruma.federation.config import FederationConfig
from ruma.federation.http import FederationAgent, IPRangeFilter
from ruma.federation.network import _FilteringResolver
from ruma.federation.service import make_federation_agent
from ruma.protocol.signing import decode_verify_key, verify_signed_json
from tests.harness import make_homeserver


class WiringTests(SynchronousTestCase):
    def test_homeserver_serves_keys_and_federation(self) -> None:
        """A built homeserver answers /_matrix/key/v2/server (self-signed) and
        /_matrix/federation/v1/version, and refuses unsigned /send with 401."""
        hs = make_homeserver(self, server_name="a.test")
        status, keys = hs.request("GET", "/_matrix/key/v2/server")
        self.assertEqual(status, 200)
        self.assertEqual(keys["server_name"], "a.test")
        [(key_id, entry)] = keys["verify_keys"].items()
        verify_signed_json(keys, "a.test", key_id, decode_verify_key(key_id, entry["key"]))
        status, version = hs.request("GET", "/_matrix/federation/v1/version")
        self.assertEqual((status, version["server"]["name"]), (200, "Ruma"))
        status, _ = hs.request("PUT", "/_matrix/federation/v1/send/1", {"origin": "x"})
        self.assertEqual(status, 401)
        assert hs.hs.federation is not None
        self.assertIs(hs.hs.federation_resource, hs.hs.federation.resource)

    def test_client_only_listener_does_not_serve_federation(self) -> None:
        """A listener naming only 'client' has no /_matrix/federation or /_matrix/key."""
        hs = make_homeserver(self, server_name="a.test")
        from treq.testing import StubTreq

        treq = StubTreq(hs.hs.root_resource(("client",)))
        d = treq.get("http://a.test/_matrix/key/v2/server")
        treq.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 404)

    def test_real_agent_from_config(self) -> None:
        """Without an injected agent the homeserver gets a real FederationAgent (built
        without touching the network)."""
        agent = make_federation_agent(MemoryReactorClock(), MemoryReactorClock(),
                                      FederationConfig())
        self.assertIsInstance(agent, FederationAgent)

    def test_resolver_drops_denied_addresses(self) -> None:
        """The well-known fetch's name resolution passes on only permitted addresses."""

        @implementer(IResolutionReceiver)
        class Receiver:
            def __init__(self) -> None:
                self.addresses: list[str] = []
                self.done = False

            def resolutionBegan(self, resolution: IHostResolution) -> None:
                pass

            def addressResolved(self, address: Any) -> None:
                self.addresses.append(address.host)

            def resolutionComplete(self) -> None:
                self.done = True

        class Inner:
            def resolveHostName(self, receiver: Any, host: str, port: int = 0,
                                address_types: Any = None, semantics: str = "TCP") -> Any:
                receiver.resolutionBegan(None)
                for ip in ("10.0.0.1", "93.184.216.34", "127.0.0.1"):
                    receiver.addressResolved(IPv4Address("TCP", ip, port))
                receiver.resolutionComplete()
                return None

        got = Receiver()
        _FilteringResolver(Inner(), IPRangeFilter()).resolveHostName(  # type: ignore[arg-type]
            got, "example.org", 443
        )
        self.assertEqual((got.addresses, got.done), (["93.184.216.34"], True))
        allowed = Receiver()
        _FilteringResolver(Inner(), IPRangeFilter(allow=["10.0.0.0/8"])).resolveHostName(  # type: ignore[arg-type]
            allowed, "example.org", 443
        )
        self.assertEqual(allowed.addresses, ["10.0.0.1", "93.184.216.34"])


class NetworkTests(SynchronousTestCase):
    def test_srv_lookup_parses_records(self) -> None:
        """SRV answers become SrvRecords (trailing dot dropped); other record types are
        ignored."""
        from twisted.internet.defer import succeed
        from twisted.names import dns

        from ruma.federation.discovery import SrvRecord
        from ruma.federation.network import make_srv_lookup

        class Resolver:
            def __init__(self) -> None:
                self.asked: list[str] = []

            def lookupService(self, name: str) -> Any:
                self.asked.append(name)
                answers = [
                    dns.RRHeader(name, dns.SRV, payload=dns.Record_SRV(10, 5, 8448,
                                                                        "m.example.org.")),
                    dns.RRHeader(name, dns.A, payload=dns.Record_A("1.2.3.4")),
                ]
                return succeed((answers, [], []))

        resolver = Resolver()
        lookup = make_srv_lookup(MemoryReactorClock(), resolver)
        from twisted.internet.defer import Deferred

        got = self.successResultOf(Deferred.fromCoroutine(
            lookup("_matrix-fed._tcp.example.org")))  # type: ignore[arg-type]
        self.assertEqual(list(got), [SrvRecord(10, 5, 8448, "m.example.org")])
        self.assertEqual(resolver.asked, ["_matrix-fed._tcp.example.org"])

    def test_well_known_fetch(self) -> None:
        """The well-known fetch returns status, body and Cache-Control over real HTTP
        parsing; an oversized body is returned empty."""
        from treq.testing import StubTreq
        from twisted.internet.defer import Deferred
        from twisted.web.resource import Resource

        from ruma.federation.http import FederationTLS
        from ruma.federation.network import make_well_known_fetcher

        class WellKnown(Resource):
            isLeaf = True
            body = b'{"m.server": "m.example.org:443"}'

            def render_GET(self, request: Any) -> bytes:
                request.setHeader(b"Cache-Control", b"max-age=600")
                return self.body

        res = WellKnown()
        stub = StubTreq(res)
        fetch = make_well_known_fetcher(MemoryReactorClock(), FederationTLS(), IPRangeFilter(),
                                        stub)
        d = Deferred.fromCoroutine(fetch("example.org"))  # type: ignore[arg-type]
        stub.flush()
        got = self.successResultOf(d)
        assert got is not None
        self.assertEqual((got.status, got.body, got.cache_control),
                         (200, res.body, "max-age=600"))
        res.body = b"x" * 60_000
        d = Deferred.fromCoroutine(fetch("example.org"))  # type: ignore[arg-type]
        stub.flush()
        got = self.successResultOf(d)
        assert got is not None
        self.assertEqual(got.body, b"")
