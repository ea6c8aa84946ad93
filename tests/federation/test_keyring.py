"""The keyring: our key response, fetching others' keys directly and via a notary, and
refusing key responses that are not properly signed."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.keyring import KeyLookupError, Keyring, TrustedKeyServer
from ruma.protocol.errors import SignatureError
from ruma.protocol.signing import generate_signing_key, sign_json, verify_signed_json
from ruma.storage.database import Database, Engine
from ruma.storage.server_keys import ServerKeyStore


class Network:
    """Routes key requests to the keyrings of named servers, as federation would."""

    def __init__(self) -> None:
        self.servers: dict[str, Keyring] = {}
        self.down: set[str] = set()
        self.tamper: dict[str, Any] = {}
        self.requests: list[tuple[str, str]] = []

    async def get_json(self, destination: str, path: str, **kw: Any) -> Any:
        self.requests.append((destination, path))
        if destination in self.down:
            raise ConnectionError("down")
        if destination in self.tamper:
            return self.tamper[destination]
        assert path == "/_matrix/key/v2/server"
        return self.servers[destination].own_key_response()

    async def post_json(self, destination: str, path: str, body: Any, **kw: Any) -> Any:
        self.requests.append((destination, path))
        if destination in self.down:
            raise ConnectionError("down")
        assert path == "/_matrix/key/v2/query"
        return {"server_keys": await self.servers[destination].notary_query(body["server_keys"])}


class KeyringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.net = Network()
        self.keys = {name: generate_signing_key("v1") for name in ("a", "b", "notary")}

    def keyring(self, name: str, trusted: list[TrustedKeyServer] | None = None) -> Keyring:
        db = Database.inline(Engine.SQLITE, self.mktemp())
        self.successResultOf(Deferred.fromCoroutine(db.prepare()))
        k = Keyring(self.clock, ServerKeyStore(db), self.net, server_name=name,
                    signing_keys=[self.keys[name]], trusted_key_servers=trusted or [])
        self.net.servers[name] = k
        return k

    def test_own_key_response_is_self_signed(self) -> None:
        """Our key response lists our key, says how long it is valid, and verifies."""
        a = self.keyring("a")
        resp = a.own_key_response()
        key = self.keys["a"]
        self.assertEqual(resp["verify_keys"], {key.key_id: {"key": key.public_key_base64}})
        self.assertGreater(resp["valid_until_ts"], 1_700_000_000_000)
        verify_signed_json(resp, "a", key.key_id, key.verify_key)

    def test_direct_fetch_and_cache(self) -> None:
        """A's keyring fetches B's key once and then answers from its store."""
        a, _ = self.keyring("a"), self.keyring("b")
        kid = self.keys["b"].key_id
        for _ in range(3):
            vk = self.successResultOf(Deferred.fromCoroutine(a.get_verify_key("b", kid)))
            self.assertEqual(bytes(vk), bytes(self.keys["b"].verify_key))
        self.assertEqual(self.net.requests, [("b", "/_matrix/key/v2/server")])

    def test_verify_json_for_server(self) -> None:
        """An object B signed verifies; a changed one does not."""
        a, _ = self.keyring("a"), self.keyring("b")
        obj = sign_json({"x": 1}, "b", self.keys["b"])
        self.successResultOf(Deferred.fromCoroutine(a.verify_json_for_server(obj, "b")))
        obj["x"] = 2
        self.failureResultOf(Deferred.fromCoroutine(a.verify_json_for_server(obj, "b")),
                             SignatureError)

    def test_unsigned_or_foreign_key_response_refused(self) -> None:
        """A key response not signed by the server itself, or for another server, is
        refused and nothing is stored."""
        a, _ = self.keyring("a"), self.keyring("b")
        forged = generate_signing_key("v1")
        bad = {"server_name": "b", "valid_until_ts": 2**40,
               "verify_keys": {forged.key_id: {"key": forged.public_key_base64}}}
        self.net.tamper["b"] = bad  # unsigned
        self.failureResultOf(Deferred.fromCoroutine(a.get_verify_key("b", forged.key_id)),
                             KeyLookupError)
        self.net.tamper["b"] = sign_json(dict(bad, server_name="c"), "c", forged)
        self.failureResultOf(Deferred.fromCoroutine(a.get_verify_key("b", forged.key_id)),
                             KeyLookupError)

    def test_notary_used_when_origin_is_down(self) -> None:
        """With B unreachable, A gets B's key from a trusted notary that had it cached,
        checking the notary's countersignature."""
        notary = self.keyring("notary")
        b = self.keyring("b")
        kid = self.keys["b"].key_id
        self.successResultOf(Deferred.fromCoroutine(notary.get_verify_key("b", kid)))
        self.net.down.add("b")
        trusted = TrustedKeyServer("notary", {self.keys["notary"].key_id:
                                              self.keys["notary"].public_key_base64})
        a = self.keyring("a", [trusted])
        vk = self.successResultOf(Deferred.fromCoroutine(a.get_verify_key("b", kid)))
        self.assertEqual(bytes(vk), bytes(b._signing_keys[0].verify_key))

    def test_notary_with_wrong_key_refused(self) -> None:
        """A notary whose countersignature does not match the configured key is ignored."""
        notary = self.keyring("notary")
        self.keyring("b")
        kid = self.keys["b"].key_id
        self.successResultOf(Deferred.fromCoroutine(notary.get_verify_key("b", kid)))
        self.net.down.add("b")
        wrong = generate_signing_key("v1")
        a = self.keyring("a", [TrustedKeyServer("notary", {self.keys["notary"].key_id:
                                                           wrong.public_key_base64})])
        self.failureResultOf(Deferred.fromCoroutine(a.get_verify_key("b", kid)),
                             KeyLookupError)

    def test_expired_key_not_used_for_later_timestamps(self) -> None:
        """A key is not accepted for a time after its valid_until_ts (room v5+ rule)."""
        a, _ = self.keyring("a"), self.keyring("b")
        kid = self.keys["b"].key_id
        far = int((self.clock.seconds() + 30 * 24 * 3600) * 1000)
        self.failureResultOf(
            Deferred.fromCoroutine(a.get_verify_key("b", kid, valid_at_ts=far)), KeyLookupError)
        now = int(self.clock.seconds() * 1000)
        self.successResultOf(Deferred.fromCoroutine(a.get_verify_key("b", kid, valid_at_ts=now)))
