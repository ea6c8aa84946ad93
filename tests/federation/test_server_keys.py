"""The key routes of the federation listener, and X-Matrix authentication of inbound
requests, over in-memory HTTP between two servers."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest

from ruma.client.router import ClientRouter
from ruma.federation.http import FederationClient, FederationError
from ruma.federation.inbound_auth import FederationAuthenticator
from ruma.federation.keyring import Keyring
from ruma.federation.server import install_key_routes, install_version_route
from ruma.protocol.signing import generate_signing_key, verify_signed_json
from ruma.storage.database import Database, Engine
from ruma.storage.server_keys import ServerKeyStore
from tests.federation.memory import MemoryFederationAgent, run


class Server:
    """A minimal federating server: keys, version, and one authenticated echo route."""

    def __init__(self, test: SynchronousTestCase, name: str, clock: Clock,
                 net: MemoryFederationAgent) -> None:
        self.name = name
        self.key = generate_signing_key("k" + name[0])
        db = Database.inline(Engine.SQLITE, test.mktemp())
        test.successResultOf(Deferred.fromCoroutine(db.prepare()))
        self.client = FederationClient(net, clock, name, self.key)
        self.keyring = Keyring(clock, ServerKeyStore(db), self.client, server_name=name,
                               signing_keys=[self.key])
        self.auth = FederationAuthenticator(clock, self.keyring, name)
        router = ClientRouter()
        install_key_routes(router, self.keyring)
        install_version_route(router)

        @router.route_raw("/_matrix/federation/v1/echo", ["PUT", "GET"])
        async def echo(request: IRequest) -> dict[str, Any]:
            from ruma.client.http import parse_json_value, read_body

            body = parse_json_value(request) if read_body(request) else None
            origin = await self.auth.authenticate(request, body)
            return {"origin": origin, "body": body}

        net.add_server(name, router.resource())


class ServerKeyRouteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.net = MemoryFederationAgent()
        self.a = Server(self, "a.test", self.clock, self.net)
        self.b = Server(self, "b.test", self.clock, self.net)

    def call(self, coro: Any) -> Any:
        return run(Deferred.fromCoroutine(coro), self.net)

    def test_key_server_route(self) -> None:
        """GET /_matrix/key/v2/server answers our self-signed key response."""
        resp = self.call(self.a.client.get_json("b.test", "/_matrix/key/v2/server", sign=False))
        verify_signed_json(resp, "b.test", self.b.key.key_id, self.b.key.verify_key)

    def test_version(self) -> None:
        """/_matrix/federation/v1/version names the server software."""
        resp = self.call(self.a.client.get_json("b.test", "/_matrix/federation/v1/version",
                                                sign=False))
        self.assertEqual(resp["server"]["name"], "Ruma")

    def test_signed_request_accepted(self) -> None:
        """B authenticates A's signed PUT by fetching A's key over federation."""
        resp = self.call(self.a.client.put_json("b.test", "/_matrix/federation/v1/echo",
                                                {"hello": "world"}))
        self.assertEqual(resp, {"origin": "a.test", "body": {"hello": "world"}})

    def test_unsigned_and_forged_requests_refused(self) -> None:
        """No header → 401; a header signed with a key A does not own → 401."""
        with self.assertRaises(FederationError) as cm:
            self.call(self.a.client.get_json("b.test", "/_matrix/federation/v1/echo", sign=False))
        self.assertEqual(cm.exception.status, 401)
        forger = FederationClient(self.net, self.clock, "a.test", generate_signing_key("ka"))
        with self.assertRaises(FederationError) as cm:
            self.call(forger.put_json("b.test", "/_matrix/federation/v1/echo", {"x": 1}))
        self.assertEqual(cm.exception.status, 401)

    def test_notary_query_route(self) -> None:
        """POST /_matrix/key/v2/query returns A's keys countersigned by B."""
        resp = self.call(self.a.client.post_json(
            "b.test", "/_matrix/key/v2/query", {"server_keys": {"a.test": {}}}))
        (entry,) = resp["server_keys"]
        verify_signed_json(entry, "a.test", self.a.key.key_id, self.a.key.verify_key)
        verify_signed_json(entry, "b.test", self.b.key.key_id, self.b.key.verify_key)
