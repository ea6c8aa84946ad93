"""Invites across servers: countersigned by the invitee's server before they are stored,
shown in the invitee's /sync with the room's stripped state, accepted by joining through
the inviter's server, rejected through make_leave/send_leave (or locally when the
inviter's server is gone), and forged invites refused."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.http import FederationError
from ruma.protocol.events import build_event
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS
from ruma.storage.database import Engine
from tests.federation.rooms_fixtures import Federation, q


class InviteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")
        self.room = self.fed.create_room(
            "a.test", self.alice_tok, name="Secret", preset="private_chat"
        )

    def invite_bob(self) -> None:
        self.fed.ok(
            "a.test", "POST", f"/rooms/{q(self.room)}/invite", {"user_id": self.bob},
            self.alice_tok,
        )

    def test_invite_is_countersigned_and_stored_on_both(self) -> None:
        """A's invite of B's user carries both servers' signatures and is Bob's membership
        on both servers."""
        self.invite_bob()
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "invite")
        a = self.fed["a.test"]
        ev = a.run(a.hs.rooms.store.get_current_state_event(  # type: ignore[union-attr]
            self.room, "m.room.member", self.bob))
        self.assertEqual(set(ev.signatures), {"a.test", "b.test"})
        b = self.fed["b.test"]
        local = b.run(b.hs.rooms.store.get_local_membership(self.bob, self.room))  # type: ignore[union-attr]
        self.assertEqual(local[0], "invite")

    def test_invite_in_sync_then_join(self) -> None:
        """Bob sees the invite in /sync (with the room's name and create event in
        invite_state), joins without naming a server, and is joined on both."""
        self.invite_bob()
        sync = self.fed.sync("b.test", self.bob_tok)
        invite = sync["rooms"]["invite"][self.room]
        types = {e["type"]: e for e in invite["invite_state"]["events"]}
        self.assertEqual(types["m.room.name"]["content"], {"name": "Secret"})
        self.assertIn("m.room.create", types)
        self.assertEqual(types["m.room.member"]["state_key"], self.bob)
        self.fed.ok("b.test", "POST", f"/rooms/{q(self.room)}/join", {}, self.bob_tok)
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "join")
        self.assertEqual(self.fed.membership("b.test", self.room, self.bob), "join")
        sync = self.fed.sync("b.test", self.bob_tok)
        self.assertIn(self.room, sync["rooms"]["join"])
        self.assertNotIn(self.room, sync["rooms"]["invite"])

    def test_reverse_invite(self) -> None:
        """B's user invites A's user into a room of b.test, who then joins."""
        room = self.fed.create_room("b.test", self.bob_tok, preset="private_chat")
        self.fed.ok(
            "b.test", "POST", f"/rooms/{q(room)}/invite", {"user_id": self.alice}, self.bob_tok
        )
        sync = self.fed.sync("a.test", self.alice_tok)
        self.assertIn(room, sync["rooms"]["invite"])
        self.fed.ok("a.test", "POST", f"/join/{q(room)}", {}, self.alice_tok)
        self.assertEqual(self.fed.membership("b.test", room, self.alice), "join")

    def test_reject_invite(self) -> None:
        """Bob rejects: the leave goes through a.test's make_leave/send_leave, so Alice's
        server has him left too, and his /sync no longer lists the invite."""
        self.invite_bob()
        self.fed.sync("b.test", self.bob_tok)
        self.fed.ok("b.test", "POST", f"/rooms/{q(self.room)}/leave", {}, self.bob_tok)
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "leave")
        b = self.fed["b.test"]
        local = b.run(b.hs.rooms.store.get_local_membership(self.bob, self.room))  # type: ignore[union-attr]
        self.assertEqual(local[0], "leave")
        sync = self.fed.sync("b.test", self.bob_tok)
        self.assertNotIn(self.room, sync["rooms"]["invite"])

    def test_reject_invite_while_inviter_is_down(self) -> None:
        """With the inviting server unreachable, the rejection still takes effect locally."""
        self.invite_bob()
        self.fed.agent.down.add("a.test")
        self.fed.ok("b.test", "POST", f"/rooms/{q(self.room)}/leave", {}, self.bob_tok)
        b = self.fed["b.test"]
        local = b.run(b.hs.rooms.store.get_local_membership(self.bob, self.room))  # type: ignore[union-attr]
        self.assertEqual(local[0], "leave")

    def test_invitee_server_down(self) -> None:
        """An invite whose invitee's server cannot be reached is not stored anywhere."""
        self.fed.agent.down.add("b.test")
        status, body = self.fed.request(
            "a.test", "POST", f"/rooms/{q(self.room)}/invite", {"user_id": self.bob},
            self.alice_tok,
        )
        self.assertEqual(status, 502, body)
        self.assertIsNone(self.fed.membership("a.test", self.room, self.bob))

    def test_unauthorised_invite_is_not_sent(self) -> None:
        """A user without invite power is refused before the invitee's server is asked."""
        fed = self.fed
        carol, carol_tok = fed["a.test"].register("carol")
        room = fed.create_room(
            "a.test", self.alice_tok, preset="public_chat",
            power_level_content_override={"invite": 50},
        )
        fed.ok("a.test", "POST", f"/join/{q(room)}", {}, carol_tok)
        status, _ = fed.request(
            "a.test", "POST", f"/rooms/{q(room)}/invite", {"user_id": self.bob}, carol_tok
        )
        self.assertEqual(status, 403)
        b = fed["b.test"]
        self.assertIsNone(
            b.run(b.hs.rooms.store.get_local_membership(self.bob, room))  # type: ignore[union-attr]
        )


class InboundInviteTests(SynchronousTestCase):
    """b.test's PUT /v2/invite, driven directly by a.test's signed client."""

    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, _ = self.fed["b.test"].register("bob")
        self.room = self.fed.create_room("a.test", self.alice_tok, preset="private_chat")

    def _invite(self, target: str, *, signer: str = "a.test") -> dict[str, Any]:
        a = self.fed["a.test"].hs
        store = a.rooms.store  # type: ignore[union-attr]
        head = self.fed["a.test"].run(store.get_room_head(self.room))
        prevs = self.fed["a.test"].run(store.get_pdus(head.forward_extremities))
        state = self.fed["a.test"].run(store.get_current_state_ids(self.room))
        auth_ids = [state[k] for k in (("m.room.power_levels", ""), ("m.room.member", self.alice),
                                       ("m.room.join_rules", ""))]
        auth = self.fed["a.test"].run(store.get_pdus(auth_ids))
        key = self.fed[signer].hs.signing_key if signer in self.fed.servers else a.signing_key
        ev = build_event(
            KNOWN_ROOM_VERSIONS["12"],
            room_id=self.room,
            sender=self.alice,
            type="m.room.member",
            state_key=target,
            content={"membership": "invite"},
            prev_events=list(prevs.values()),
            auth_events=list(auth.values()),
            origin_server_ts=1000,
            server_name=signer,
            signing_key=key,
        )
        return ev.pdu() | {"_id": ev.event_id}

    def _put(self, pdu: dict[str, Any], version: str = "12") -> Any:
        event_id = pdu.pop("_id")
        try:
            return self.fed.fed_request(
                "a.test", "b.test", "PUT",
                f"/_matrix/federation/v2/invite/{q(self.room)}/{q(event_id)}",
                body={"event": pdu, "room_version": version, "invite_room_state": []},
            ), event_id
        except FederationError as e:
            return e, event_id

    def _stored(self, event_id: str) -> bool:
        b = self.fed["b.test"]
        return bool(b.run(b.hs.rooms.store.have_events([event_id])))  # type: ignore[union-attr]

    def test_valid_invite_is_signed(self) -> None:
        """b.test adds its signature and records the invite for Bob."""
        answer, event_id = self._put(self._invite(self.bob))
        self.assertIn("b.test", answer["event"]["signatures"])
        self.assertIn("a.test", answer["event"]["signatures"])
        self.assertTrue(self._stored(event_id))

    def test_invite_of_another_servers_user(self) -> None:
        """An invite for a user of another server is refused and not stored."""
        e, event_id = self._put(self._invite("@carol:c.test"))
        self.assertEqual(e.status, 403)
        self.assertFalse(self._stored(event_id))

    def test_forged_invite(self) -> None:
        """An invite signed with a key that is not a.test's is refused and not stored."""
        from ruma.protocol.events import add_hashes_and_signature
        from ruma.protocol.signing import generate_signing_key

        pdu = self._invite(self.bob)
        event_id = pdu.pop("_id")
        forged = add_hashes_and_signature(
            {**pdu, "signatures": {}}, KNOWN_ROOM_VERSIONS["12"], "a.test",
            generate_signing_key("test"),
        )
        forged["_id"] = event_id
        e, _ = self._put(forged)
        self.assertEqual(e.status, 400)
        self.assertFalse(self._stored(event_id))

    def test_unsupported_room_version(self) -> None:
        """An invite into a room version we do not know → 400 M_INCOMPATIBLE_ROOM_VERSION."""
        e, event_id = self._put(self._invite(self.bob), version="99")
        self.assertEqual(e.status, 400)
        self.assertEqual(e.errcode, "M_INCOMPATIBLE_ROOM_VERSION")
        self.assertFalse(self._stored(event_id))


# The same tests with every server on PostgreSQL.


class InviteTestsPostgres(InviteTests):
    engine = Engine.POSTGRES


class InboundInviteTestsPostgres(InboundInviteTests):
    engine = Engine.POSTGRES
