"""Server discovery: the spec's resolution order, SRV choice and well-known caching."""

from __future__ import annotations

import random
from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.discovery import (
    ResolvedServer,
    ServerResolver,
    SrvRecord,
    WellKnownResponse,
    pick_srv,
)


class FakeNetwork:
    """Scripted answers for the two look-ups; records what was asked."""

    def __init__(self) -> None:
        self.well_known: dict[str, WellKnownResponse | Exception] = {}
        self.srv: dict[str, list[SrvRecord]] = {}
        self.asked: list[str] = []

    async def fetch(self, host: str) -> WellKnownResponse | None:
        self.asked.append("wk:" + host)
        answer = self.well_known.get(host)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def lookup(self, name: str) -> Sequence[SrvRecord]:
        self.asked.append("srv:" + name)
        return self.srv.get(name, [])


class DiscoveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.net = FakeNetwork()
        self.resolver = ServerResolver(self.clock, self.net.fetch, self.net.lookup,
                                       random.Random(1))

    def resolve(self, name: str) -> ResolvedServer:
        return self.successResultOf(Deferred.fromCoroutine(self.resolver.resolve(name)))

    def test_ip_literals_and_explicit_ports_skip_lookups(self) -> None:
        """IP literals and names with a port are used as given, with no DNS or HTTP."""
        self.assertEqual(self.resolve("1.2.3.4"),
                         ResolvedServer("1.2.3.4", "1.2.3.4", "1.2.3.4", "1.2.3.4", 8448))
        self.assertEqual(self.resolve("[::1]:8449"),
                         ResolvedServer("[::1]:8449", "[::1]:8449", "[::1]", "::1", 8449))
        self.assertEqual(self.resolve("example.org:1234"),
                         ResolvedServer("example.org:1234", "example.org:1234", "example.org",
                                        "example.org", 1234))
        self.assertEqual(self.net.asked, [])

    def test_well_known_delegation_with_port(self) -> None:
        """A delegated name with a port is connected to directly; Host and TLS use it."""
        self.net.well_known["example.org"] = WellKnownResponse(
            200, b'{"m.server": "matrix.example.org:443"}')
        r = self.resolve("example.org")
        self.assertEqual((r.host_header, r.tls_name, r.connect_host, r.port),
                         ("matrix.example.org:443", "matrix.example.org", "matrix.example.org", 443))

    def test_well_known_then_srv_of_delegated_name(self) -> None:
        """Without a port, the delegated name's SRV record decides where to connect."""
        self.net.well_known["example.org"] = WellKnownResponse(
            200, b'{"m.server": "matrix.example.org"}')
        self.net.srv["_matrix-fed._tcp.matrix.example.org"] = [
            SrvRecord(10, 0, 8555, "fed1.example.org")]
        r = self.resolve("example.org")
        self.assertEqual((r.host_header, r.tls_name, r.connect_host, r.port),
                         ("matrix.example.org", "matrix.example.org", "fed1.example.org", 8555))

    def test_srv_then_legacy_srv_then_default(self) -> None:
        """No well-known: _matrix-fed._tcp, then _matrix._tcp, then port 8448."""
        self.net.srv["_matrix._tcp.legacy.org"] = [SrvRecord(0, 0, 9000, "old.legacy.org")]
        r = self.resolve("legacy.org")
        self.assertEqual((r.host_header, r.tls_name, r.connect_host, r.port),
                         ("legacy.org", "legacy.org", "old.legacy.org", 9000))
        self.assertEqual(self.net.asked, ["wk:legacy.org", "srv:_matrix-fed._tcp.legacy.org",
                                          "srv:_matrix._tcp.legacy.org"])
        r = self.resolve("plain.org")
        self.assertEqual((r.connect_host, r.port), ("plain.org", 8448))

    def test_bad_well_known_falls_through(self) -> None:
        """Errors, non-JSON, wrong types and an invalid delegated name are all ignored."""
        for answer in [WellKnownResponse(404, b""), WellKnownResponse(200, b"not json"),
                       WellKnownResponse(200, b'{"m.server": 5}'),
                       WellKnownResponse(200, b'{"m.server": "bad name!"}'),
                       RuntimeError("connection refused")]:
            self.resolver._well_known.clear()
            self.net.well_known["x.org"] = answer
            self.assertEqual(self.resolve("x.org").connect_host, "x.org")

    def test_well_known_is_cached_by_cache_control(self) -> None:
        """max-age decides how long a delegation is reused; then it is fetched again."""
        self.net.well_known["c.org"] = WellKnownResponse(
            200, b'{"m.server": "d.org:1"}', "public, max-age=60")
        self.resolve("c.org")
        self.resolve("c.org")
        self.assertEqual(self.net.asked.count("wk:c.org"), 1)
        self.clock.advance(61)
        self.resolve("c.org")
        self.assertEqual(self.net.asked.count("wk:c.org"), 2)

    def test_failures_are_cached_for_an_hour(self) -> None:
        """A server with no well-known is not asked again for an hour."""
        self.resolve("none.org")
        self.clock.advance(3599)
        self.resolve("none.org")
        self.assertEqual(self.net.asked.count("wk:none.org"), 1)
        self.clock.advance(2)
        self.resolve("none.org")
        self.assertEqual(self.net.asked.count("wk:none.org"), 2)

    def test_pick_srv(self) -> None:
        """Lowest priority wins; weights share the load; '.' means no service."""
        rng = random.Random(7)
        recs = [SrvRecord(20, 100, 1, "late"), SrvRecord(10, 1, 2, "a"), SrvRecord(10, 3, 3, "b")]
        picks = {pick_srv(recs, rng).target for _ in range(50)}  # type: ignore[union-attr]
        self.assertEqual(picks, {"a", "b"})
        self.assertIsNone(pick_srv([SrvRecord(0, 0, 0, ".")], rng))

    def test_invalid_server_name_raises(self) -> None:
        """A server name that breaks the grammar is refused before any look-up."""
        d = Deferred.fromCoroutine(self.resolver.resolve("bad name"))
        self.failureResultOf(d, ValueError)
        self.assertEqual(self.net.asked, [])
