"""Joining and leaving rooms across servers: make_join/send_join both ways, by ID and by
alias, every room version, unsupported versions, forged send_join bodies, leave, kick and
ban across servers."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS
from ruma.storage.database import Engine
from tests.federation.rooms_fixtures import Federation, q


class JoinTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")

    def join_from_b(self, room: str, via: str = "a.test") -> Any:
        return self.fed.ok("b.test", "POST", f"/join/{q(room)}?server_name={via}", {}, self.bob_tok)

    def test_join_remote_room_by_id(self) -> None:
        """Bob on b.test joins a room of a.test by ID: both servers have him joined, b.test
        holds the room's state (name, create, alice's membership) and can send."""
        room = self.fed.create_room("a.test", self.alice_tok, name="Lobby", preset="public_chat")
        out = self.join_from_b(room)
        self.assertEqual(out, {"room_id": room})
        self.assertEqual(self.fed.membership("a.test", room, self.bob), "join")
        self.assertEqual(self.fed.membership("b.test", room, self.bob), "join")
        self.assertEqual(self.fed.membership("b.test", room, self.alice), "join")
        name = self.fed.ok(
            "b.test", "GET", f"/rooms/{q(room)}/state/m.room.name", None, self.bob_tok
        )
        self.assertEqual(name, {"name": "Lobby"})
        rooms = self.fed.ok("b.test", "GET", "/joined_rooms", None, self.bob_tok)
        self.assertEqual(rooms["joined_rooms"], [room])
        event_id = self.fed.send_text("b.test", self.bob_tok, room, "hello from b", "t1")
        self.assertTrue(event_id.startswith("$"))

    def test_join_shows_in_sync_with_state(self) -> None:
        """After the remote join Bob's /sync lists the room as joined with its state."""
        room = self.fed.create_room("a.test", self.alice_tok, name="Synced", preset="public_chat")
        self.join_from_b(room)
        body = self.fed.sync("b.test", self.bob_tok)
        joined = body["rooms"]["join"]
        self.assertIn(room, joined)
        section = joined[room]
        everything = section["state"]["events"] + section["timeline"]["events"]
        types = {e["type"] for e in everything}
        self.assertIn("m.room.name", types)
        self.assertIn("m.room.create", types)
        self.assertIn(self.bob, [e.get("state_key") for e in section["timeline"]["events"]])

    def test_join_by_remote_alias(self) -> None:
        """A remote alias is resolved with a directory query to its server, then joined."""
        room = self.fed.create_room(
            "a.test", self.alice_tok, preset="public_chat", room_alias_name="lobby"
        )
        resolved = self.fed.ok("b.test", "GET", f"/directory/room/{q('#lobby:a.test')}")
        self.assertEqual(resolved["room_id"], room)
        self.assertEqual(resolved["servers"][0], "a.test")
        out = self.fed.ok("b.test", "POST", f"/join/{q('#lobby:a.test')}", {}, self.bob_tok)
        self.assertEqual(out["room_id"], room)
        self.assertEqual(self.fed.membership("a.test", room, self.bob), "join")

    def test_reverse_roles(self) -> None:
        """Alice on a.test joins a room created on b.test."""
        room = self.fed.create_room("b.test", self.bob_tok, preset="public_chat")
        self.fed.ok("a.test", "POST", f"/join/{q(room)}?via=b.test", {}, self.alice_tok)
        self.assertEqual(self.fed.membership("b.test", room, self.alice), "join")
        self.assertEqual(self.fed.membership("a.test", room, self.alice), "join")

    def test_every_room_version_can_be_joined(self) -> None:
        """A room of each version 1-12 on a.test can be joined from b.test, and Bob can
        then send into it."""
        for version in KNOWN_ROOM_VERSIONS:
            room = self.fed.create_room(
                "a.test", self.alice_tok, preset="public_chat", room_version=version
            )
            self.join_from_b(room)
            self.assertEqual(self.fed.membership("a.test", room, self.bob), "join", version)
            self.assertEqual(self.fed.membership("b.test", room, self.bob), "join", version)
            self.fed.send_text("b.test", self.bob_tok, room, f"hi {version}", f"v{version}")

    def test_private_room_refuses_join(self) -> None:
        """An invite-only room refuses a remote join: 403 and nothing joined anywhere."""
        room = self.fed.create_room("a.test", self.alice_tok, preset="private_chat")
        status, body = self.fed.request(
            "b.test", "POST", f"/join/{q(room)}?server_name=a.test", {}, self.bob_tok
        )
        self.assertEqual(status, 403, body)
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        self.assertIsNone(self.fed.membership("a.test", room, self.bob))
        self.assertEqual(
            self.fed.ok("b.test", "GET", "/joined_rooms", None, self.bob_tok)["joined_rooms"], []
        )

    def test_unreachable_server(self) -> None:
        """With the room's server down the join fails with our own 404 naming the servers
        tried, and nothing is joined."""
        room = self.fed.create_room("a.test", self.alice_tok, preset="public_chat")
        self.fed.agent.down.add("a.test")
        status, body = self.fed.request(
            "b.test", "POST", f"/join/{q(room)}?server_name=a.test", {}, self.bob_tok
        )
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"), body)
        self.assertIn("a.test", body["error"])
        self.assertEqual(
            self.fed.ok("b.test", "GET", "/joined_rooms", None, self.bob_tok)["joined_rooms"], []
        )

    def test_leave_across_servers(self) -> None:
        """Bob leaves: the leave reaches the room on a.test (once sent), and b.test has him
        left."""
        room = self.fed.create_room("a.test", self.alice_tok, preset="public_chat")
        self.join_from_b(room)
        self.fed.ok("b.test", "POST", f"/rooms/{q(room)}/leave", {}, self.bob_tok)
        self.assertEqual(self.fed.membership("b.test", room, self.bob), "leave")
        self.assertEqual(
            self.fed.ok("b.test", "GET", "/joined_rooms", None, self.bob_tok)["joined_rooms"], []
        )


class ResidentServerTests(SynchronousTestCase):
    """The resident side's answers to make_join and send_join, driven directly."""

    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.room = self.fed.create_room("a.test", self.alice_tok, preset="public_chat")

    def make_join(self, versions: list[str]) -> Any:
        from ruma.federation.http import FederationError

        try:
            return self.fed.fed_request(
                "b.test", "a.test", "GET",
                f"/_matrix/federation/v1/make_join/{q(self.room)}/{q('@bob:b.test')}",
                query={"ver": versions},
            )
        except FederationError as e:
            return e

    def test_make_join_unsupported_version(self) -> None:
        """make_join offering only versions the room is not → 400
        M_INCOMPATIBLE_ROOM_VERSION naming the room's version."""
        e = self.make_join(["1", "2"])
        self.assertEqual(e.status, 400)
        self.assertEqual(e.errcode, "M_INCOMPATIBLE_ROOM_VERSION")
        self.assertEqual(e.body["room_version"], "12")

    def test_make_join_template(self) -> None:
        """The template is an unsigned join of the user with the room's prev/auth events."""
        answer = self.make_join([str(v) for v in range(1, 13)])
        self.assertEqual(answer["room_version"], "12")
        template = answer["event"]
        self.assertEqual(template["type"], "m.room.member")
        self.assertEqual(template["state_key"], "@bob:b.test")
        self.assertEqual(template["content"]["membership"], "join")
        self.assertNotIn("signatures", template)
        self.assertTrue(template["prev_events"])

    def test_make_join_for_another_servers_user(self) -> None:
        """b.test may not ask for a template for a user of another server."""
        from ruma.federation.http import FederationError

        with self.assertRaises(FederationError) as cm:
            self.fed.fed_request(
                "b.test", "a.test", "GET",
                f"/_matrix/federation/v1/make_join/{q(self.room)}/{q('@carol:c.test')}",
                query={"ver": ["12"]},
            )
        self.assertEqual(cm.exception.status, 403)

    def test_server_acl_refuses_make_join(self) -> None:
        """A server denied by the room's m.room.server_acl gets 403 from make_join."""
        self.fed.ok(
            "a.test", "PUT", f"/rooms/{q(self.room)}/state/m.room.server_acl",
            {"allow": ["*"], "deny": ["b.test"], "allow_ip_literals": True}, self.alice_tok,
        )
        e = self.make_join(["12"])
        self.assertEqual((e.status, e.errcode), (403, "M_FORBIDDEN"))

    def test_send_join_v1_answers_the_old_array(self) -> None:
        """The v1 send_join (for old peers) answers ``[200, {state, auth_chain, ...}]``."""
        from ruma.protocol.events import compute_event_id
        from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS

        pdu = self._signed_join()
        event_id = compute_event_id(pdu, KNOWN_ROOM_VERSIONS["12"])
        answer = self.fed.fed_request(
            "b.test", "a.test", "PUT",
            f"/_matrix/federation/v1/send_join/{q(self.room)}/{q(event_id)}", body=pdu,
        )
        self.assertEqual(answer[0], 200)
        self.assertIn("state", answer[1])
        self.assertIn("auth_chain", answer[1])
        self.assertEqual(self.fed.membership("a.test", self.room, "@bob:b.test"), "join")

    def _signed_join(self, tamper: Any = None) -> dict[str, Any]:
        from ruma.protocol.events import add_hashes_and_signature
        from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS

        answer = self.make_join(["12"])
        pdu = dict(answer["event"])
        pdu["origin_server_ts"] = 1
        pdu["hashes"] = {}
        pdu["signatures"] = {}
        b = self.fed["b.test"].hs
        signed = add_hashes_and_signature(pdu, KNOWN_ROOM_VERSIONS["12"], "b.test", b.signing_key)
        if tamper is not None:
            tamper(signed)
        return signed

    def _send_join(self, pdu: dict[str, Any], event_id: str) -> Any:
        from ruma.federation.http import FederationError

        try:
            return self.fed.fed_request(
                "b.test", "a.test", "PUT",
                f"/_matrix/federation/v2/send_join/{q(self.room)}/{q(event_id)}", body=pdu,
            )
        except FederationError as e:
            return e

    def _stored(self, event_id: str) -> bool:
        a = self.fed["a.test"]
        return bool(a.run(a.hs.rooms.store.have_events([event_id])))  # type: ignore[union-attr]

    def test_send_join_answer(self) -> None:
        """A valid send_join is persisted and answered with the state before it, its auth
        chain, members_omitted false and the servers in the room."""
        from ruma.protocol.events import compute_event_id
        from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS

        pdu = self._signed_join()
        event_id = compute_event_id(pdu, KNOWN_ROOM_VERSIONS["12"])
        answer = self._send_join(pdu, event_id)
        self.assertFalse(answer["members_omitted"])
        self.assertEqual(answer["servers_in_room"], ["a.test", "b.test"])
        types = {(e["type"], e.get("state_key")) for e in answer["state"]}
        self.assertIn(("m.room.create", ""), types)
        self.assertIn(("m.room.member", self.alice), types)
        self.assertNotIn(("m.room.member", "@bob:b.test"), types)
        self.assertTrue(answer["auth_chain"])
        self.assertEqual(self.fed.membership("a.test", self.room, "@bob:b.test"), "join")

    def test_send_join_forged_signature(self) -> None:
        """A join whose signature does not verify is refused and not stored."""
        from ruma.protocol.events import compute_event_id
        from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS

        def forge(pdu: dict[str, Any]) -> None:
            sig = pdu["signatures"]["b.test"]
            key = next(iter(sig))
            sig[key] = "A" * 86

        pdu = self._signed_join(forge)
        event_id = compute_event_id(pdu, KNOWN_ROOM_VERSIONS["12"])
        e = self._send_join(pdu, event_id)
        self.assertEqual(e.status, 400)
        self.assertFalse(self._stored(event_id))
        self.assertIsNone(self.fed.membership("a.test", self.room, "@bob:b.test"))

    def test_send_join_tampered_content(self) -> None:
        """A join whose content no longer matches its hash is refused and not stored."""
        from ruma.protocol.events import compute_event_id
        from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS

        def tamper(pdu: dict[str, Any]) -> None:
            pdu["content"] = {**pdu["content"], "displayname": "Mallory"}

        pdu = self._signed_join(tamper)
        event_id = compute_event_id(pdu, KNOWN_ROOM_VERSIONS["12"])
        e = self._send_join(pdu, event_id)
        self.assertEqual(e.status, 400)
        self.assertFalse(self._stored(event_id))

    def test_send_join_wrong_event_id_or_membership(self) -> None:
        """A join sent under another event ID, or a non-join sent to send_join, is refused
        and not stored."""
        from ruma.protocol.events import add_hashes_and_signature, compute_event_id
        from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS

        pdu = self._signed_join()
        event_id = compute_event_id(pdu, KNOWN_ROOM_VERSIONS["12"])
        e = self._send_join(pdu, "$" + "x" * 43)
        self.assertEqual(e.status, 400)
        self.assertFalse(self._stored(event_id))

        leave = dict(pdu)
        leave["content"] = {"membership": "leave"}
        leave["signatures"] = {}
        leave = add_hashes_and_signature(
            leave, KNOWN_ROOM_VERSIONS["12"], "b.test", self.fed["b.test"].hs.signing_key
        )
        leave_id = compute_event_id(leave, KNOWN_ROOM_VERSIONS["12"])
        e = self._send_join(leave, leave_id)
        self.assertEqual(e.status, 400)
        self.assertFalse(self._stored(leave_id))

    def test_send_join_from_another_origin(self) -> None:
        """A server may only send joins of its own users: bob's (valid) join sent by
        a.test's own client is refused with 403 and not stored."""
        from ruma.federation.http import FederationError
        from ruma.protocol.events import compute_event_id
        from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS

        pdu = self._signed_join()
        event_id = compute_event_id(pdu, KNOWN_ROOM_VERSIONS["12"])
        with self.assertRaises(FederationError) as cm:
            self.fed.fed_request(
                "a.test", "a.test", "PUT",
                f"/_matrix/federation/v2/send_join/{q(self.room)}/{q(event_id)}", body=pdu,
            )
        self.assertEqual(cm.exception.status, 403)
        self.assertFalse(self._stored(event_id))


class MessagesAcrossTests(SynchronousTestCase):
    """With the federation sender running, messages and membership changes travel."""

    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")
        self.room = self.fed.create_room("a.test", self.alice_tok, preset="public_chat")
        self.fed.ok("b.test", "POST", f"/join/{q(self.room)}?via=a.test", {}, self.bob_tok)
        self.fed.settle()

    def bodies(self, server: str, token: str) -> list[str]:
        out = self.fed.ok(
            server, "GET", f"/rooms/{q(self.room)}/messages?dir=b&limit=50", None, token
        )
        return [e["content"].get("body") for e in out["chunk"] if e["type"] == "m.room.message"]

    def test_messages_both_ways(self) -> None:
        """Bob's message reaches a.test and Alice's reaches b.test."""
        self.fed.send_text("b.test", self.bob_tok, self.room, "from bob", "1")
        self.fed.settle()
        self.fed.send_text("a.test", self.alice_tok, self.room, "from alice", "2")
        self.fed.settle()
        self.assertEqual(self.bodies("a.test", self.alice_tok), ["from alice", "from bob"])
        self.assertEqual(self.bodies("b.test", self.bob_tok), ["from alice", "from bob"])

    def test_kick_across_servers(self) -> None:
        """Alice kicks Bob: both servers have him left, and he can no longer send."""
        self.fed.ok(
            "a.test", "POST", f"/rooms/{q(self.room)}/kick",
            {"user_id": self.bob, "reason": "bye"}, self.alice_tok,
        )
        self.fed.settle()
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "leave")
        self.assertEqual(self.fed.membership("b.test", self.room, self.bob), "leave")
        status, _ = self.fed.request(
            "b.test", "PUT", f"/rooms/{q(self.room)}/send/m.room.message/x",
            {"msgtype": "m.text", "body": "still here?"}, self.bob_tok,
        )
        self.assertEqual(status, 403)

    def test_ban_across_servers(self) -> None:
        """Alice bans Bob: both servers have him banned and he cannot rejoin."""
        self.fed.ok(
            "a.test", "POST", f"/rooms/{q(self.room)}/ban", {"user_id": self.bob}, self.alice_tok
        )
        self.fed.settle()
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "ban")
        self.assertEqual(self.fed.membership("b.test", self.room, self.bob), "ban")
        status, _ = self.fed.request(
            "b.test", "POST", f"/join/{q(self.room)}?via=a.test", {}, self.bob_tok
        )
        self.assertEqual(status, 403)

    def test_rejoin_after_kick(self) -> None:
        """Kicked, Bob joins again: b.test, no longer in the room, goes through a.test."""
        self.fed.ok(
            "a.test", "POST", f"/rooms/{q(self.room)}/kick", {"user_id": self.bob}, self.alice_tok
        )
        self.fed.settle()
        self.fed.ok("b.test", "POST", f"/join/{q(self.room)}?via=a.test", {}, self.bob_tok)
        self.fed.settle()
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "join")
        self.assertEqual(self.fed.membership("b.test", self.room, self.bob), "join")
        self.fed.send_text("b.test", self.bob_tok, self.room, "back again", "back")
        self.fed.settle()
        self.assertEqual(self.bodies("a.test", self.alice_tok)[0], "back again")

    def test_banned_user_cannot_rejoin_before_hearing_of_the_ban(self) -> None:
        """Bob is banned while b.test cannot be reached; his join from b.test (which still
        has him kicked, not banned) is refused by a.test: 403, and not joined anywhere."""
        self.fed.ok(
            "a.test", "POST", f"/rooms/{q(self.room)}/kick", {"user_id": self.bob}, self.alice_tok
        )
        self.fed.settle()
        self.fed.agent.down.add("b.test")
        self.fed.ok(
            "a.test", "POST", f"/rooms/{q(self.room)}/ban", {"user_id": self.bob}, self.alice_tok
        )
        self.fed.settle()
        self.assertEqual(self.fed.membership("b.test", self.room, self.bob), "leave")
        status, body = self.fed.request(
            "b.test", "POST", f"/join/{q(self.room)}?via=a.test", {}, self.bob_tok
        )
        self.assertEqual(status, 403, body)
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "ban")
        self.assertNotEqual(self.fed.membership("b.test", self.room, self.bob), "join")

    def test_invited_again_after_kick(self) -> None:
        """Kicked Bob is invited back: the invite shows in his /sync though b.test still
        holds the room's old state, and he can join."""
        self.fed.ok(
            "a.test", "POST", f"/rooms/{q(self.room)}/kick", {"user_id": self.bob}, self.alice_tok
        )
        self.fed.settle()
        self.fed.ok(
            "a.test", "POST", f"/rooms/{q(self.room)}/invite", {"user_id": self.bob},
            self.alice_tok,
        )
        self.fed.settle()
        sync = self.fed.sync("b.test", self.bob_tok)
        self.assertIn(self.room, sync["rooms"]["invite"])
        self.fed.ok("b.test", "POST", f"/rooms/{q(self.room)}/join", {}, self.bob_tok)
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "join")

    def test_leave_reaches_resident(self) -> None:
        """Bob's leave (made on b.test) reaches a.test."""
        self.fed.ok("b.test", "POST", f"/rooms/{q(self.room)}/leave", {}, self.bob_tok)
        self.fed.settle()
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "leave")

    def test_third_server_joins_and_hears_of_it(self) -> None:
        """A join on a.test by c.test's user is relayed to b.test."""
        fed = Federation(self, ("a.test", "b.test", "c.test"))
        alice, alice_tok = fed["a.test"].register("alice")
        bob, bob_tok = fed["b.test"].register("bob")
        carol, carol_tok = fed["c.test"].register("carol")
        room = fed.create_room("a.test", alice_tok, preset="public_chat")
        fed.ok("b.test", "POST", f"/join/{q(room)}?via=a.test", {}, bob_tok)
        fed.settle()
        fed.ok("c.test", "POST", f"/join/{q(room)}?via=a.test", {}, carol_tok)
        fed.settle()
        self.assertEqual(fed.membership("b.test", room, carol), "join")
        fed.send_text("c.test", carol_tok, room, "hi all", "c1")
        fed.settle()
        out = fed.ok("b.test", "GET", f"/rooms/{q(room)}/messages?dir=b&limit=5", None, bob_tok)
        self.assertEqual(out["chunk"][0]["content"].get("body"), "hi all")


# The same tests with every server on PostgreSQL.


class JoinTestsPostgres(JoinTests):
    engine = Engine.POSTGRES


class ResidentServerTestsPostgres(ResidentServerTests):
    engine = Engine.POSTGRES


class MessagesAcrossTestsPostgres(MessagesAcrossTests):
    engine = Engine.POSTGRES
