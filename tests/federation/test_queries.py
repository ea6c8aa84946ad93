"""Federation queries, served and used: profiles, aliases, devices, keys, the public room
list and space hierarchies."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.http import FederationError
from ruma.storage.database import Engine
from tests.federation.rooms_fixtures import Federation, q

V1 = "/_matrix/federation/v1"


class QueryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")
        self.fed.ok(
            "a.test", "PUT", f"/profile/{q(self.alice)}/displayname",
            {"displayname": "Alice A"}, self.alice_tok,
        )

    def ask(self, method: str, path: str, body: Any = None, query: Any = None) -> Any:
        try:
            return self.fed.fed_request("b.test", "a.test", method, path, body=body, query=query)
        except FederationError as e:
            return e

    def test_profile_served(self) -> None:
        """query/profile answers a local user's profile, or one field of it."""
        self.assertEqual(
            self.ask("GET", f"{V1}/query/profile", query={"user_id": self.alice}),
            {"displayname": "Alice A"},
        )
        self.assertEqual(
            self.ask(
                "GET", f"{V1}/query/profile",
                query={"user_id": self.alice, "field": "avatar_url"},
            ),
            {},
        )

    def test_profile_unknown_or_foreign_user(self) -> None:
        """Unknown local users are 404; users of other servers are 400."""
        e = self.ask("GET", f"{V1}/query/profile", query={"user_id": "@nobody:a.test"})
        self.assertEqual((e.status, e.errcode), (404, "M_NOT_FOUND"))
        e = self.ask("GET", f"{V1}/query/profile", query={"user_id": "@x:b.test"})
        self.assertEqual(e.status, 400)

    def test_profile_used_by_client_api(self) -> None:
        """A client of b.test reads a remote profile through the federation query."""
        out = self.fed.ok("b.test", "GET", f"/profile/{q(self.alice)}", None, self.bob_tok)
        self.assertEqual(out, {"displayname": "Alice A"})
        status, body = self.fed.request(
            "b.test", "GET", f"/profile/{q('@ghost:a.test')}", None, self.bob_tok
        )
        self.assertEqual(status, 404, body)

    def test_directory_served_and_used(self) -> None:
        """query/directory answers a local alias with the room and its servers; b.test's
        client directory API uses it; an unknown alias is 404 on both."""
        room = self.fed.create_room(
            "a.test", self.alice_tok, preset="public_chat", room_alias_name="town"
        )
        answer = self.ask("GET", f"{V1}/query/directory", query={"room_alias": "#town:a.test"})
        self.assertEqual(answer, {"room_id": room, "servers": ["a.test"]})
        e = self.ask("GET", f"{V1}/query/directory", query={"room_alias": "#none:a.test"})
        self.assertEqual(e.status, 404)
        status, _ = self.fed.request("b.test", "GET", f"/directory/room/{q('#none:a.test')}")
        self.assertEqual(status, 404)

    def test_devices_and_keys(self) -> None:
        """user/devices lists the user's devices with their uploaded keys; keys/query
        returns the device keys and keys/claim hands out a one-time key, once."""
        from ruma.protocol.signing import generate_signing_key, sign_json

        device_id = self.fed.ok("a.test", "GET", "/account/whoami", None, self.alice_tok)[
            "device_id"
        ]
        key = generate_signing_key(device_id)
        device_keys = sign_json(
            {
                "user_id": self.alice,
                "device_id": device_id,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                "keys": {
                    f"ed25519:{device_id}": key.public_key_base64,
                    f"curve25519:{device_id}": "c" * 43,
                },
            },
            self.alice,
            key,
        )
        self.fed.ok(
            "a.test", "POST", "/keys/upload",
            {"device_keys": device_keys, "one_time_keys": {"curve25519:AAAA": "o" * 43}},
            self.alice_tok,
        )
        devices = self.ask("GET", f"{V1}/user/devices/{q(self.alice)}")
        self.assertEqual(devices["user_id"], self.alice)
        self.assertEqual([d["device_id"] for d in devices["devices"]], [device_id])
        self.assertEqual(devices["devices"][0]["keys"]["keys"], device_keys["keys"])
        self.assertGreater(devices["stream_id"], 0)
        keys = self.ask("POST", f"{V1}/user/keys/query", body={"device_keys": {self.alice: []}})
        self.assertEqual(
            keys["device_keys"][self.alice][device_id]["keys"], device_keys["keys"]
        )
        wanted = {"one_time_keys": {self.alice: {device_id: "curve25519"}}}
        claimed = self.ask("POST", f"{V1}/user/keys/claim", body=wanted)
        self.assertEqual(
            claimed["one_time_keys"][self.alice][device_id], {"curve25519:AAAA": "o" * 43}
        )
        again = self.ask("POST", f"{V1}/user/keys/claim", body=wanted)
        self.assertEqual(again["one_time_keys"].get(self.alice, {}).get(device_id, {}), {})

    def test_public_rooms(self) -> None:
        """publicRooms (GET and POST with a search term) lists the public rooms with
        their names and member counts, paginated."""
        for name in ("Cats", "Dogs", "Fish"):
            room = self.fed.create_room(
                "a.test", self.alice_tok, preset="public_chat", name=name, visibility="public"
            )
            self.assertTrue(room)
        self.fed.create_room("a.test", self.alice_tok, preset="private_chat", name="Hidden")
        listing = self.ask("GET", f"{V1}/publicRooms")
        self.assertEqual(sorted(r["name"] for r in listing["chunk"]), ["Cats", "Dogs", "Fish"])
        self.assertEqual(listing["total_room_count_estimate"], 3)
        self.assertEqual(listing["chunk"][0]["num_joined_members"], 1)
        page = self.ask("GET", f"{V1}/publicRooms", query={"limit": "2"})
        self.assertEqual(len(page["chunk"]), 2)
        rest = self.ask("GET", f"{V1}/publicRooms", query={"since": page["next_batch"]})
        self.assertEqual(len(rest["chunk"]), 1)
        found = self.ask(
            "POST", f"{V1}/publicRooms", body={"filter": {"generic_search_term": "dog"}}
        )
        self.assertEqual([r["name"] for r in found["chunk"]], ["Dogs"])

    def test_hierarchy(self) -> None:
        """hierarchy answers a public space with its child rooms; a private room of which
        the asking server has no member is 404."""
        child = self.fed.create_room("a.test", self.alice_tok, preset="public_chat", name="Kid")
        space = self.fed.create_room(
            "a.test", self.alice_tok, preset="public_chat", name="Space",
            creation_content={"type": "m.space"},
        )
        self.fed.ok(
            "a.test", "PUT", f"/rooms/{q(space)}/state/m.space.child/{q(child)}",
            {"via": ["a.test"]}, self.alice_tok,
        )
        answer = self.ask("GET", f"{V1}/hierarchy/{q(space)}")
        self.assertEqual(answer["room"]["room_id"], space)
        self.assertEqual(answer["room"]["room_type"], "m.space")
        self.assertEqual(
            [c["state_key"] for c in answer["room"]["children_state"]], [child]
        )
        self.assertEqual([c["name"] for c in answer["children"]], ["Kid"])
        private = self.fed.create_room("a.test", self.alice_tok, preset="private_chat")
        e = self.ask("GET", f"{V1}/hierarchy/{q(private)}")
        self.assertEqual(e.status, 404)

    def test_unsigned_query_refused(self) -> None:
        """Queries need an X-Matrix signature."""
        hs = self.fed["a.test"]
        status, body = hs.request("GET", f"{V1}/query/profile?user_id={q(self.alice)}")
        self.assertEqual(status, 401, body)


# The same tests with every server on PostgreSQL.


class QueryTestsPostgres(QueryTests):
    engine = Engine.POSTGRES
