"""Restricted joins authorised by a resident server, and knocking across servers."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ruma.storage.database import Engine
from tests.federation.rooms_fixtures import Federation, q


class RestrictedJoinTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")
        self.space = self.fed.create_room("a.test", self.alice_tok, preset="public_chat")

    def restricted_room(self, version: str) -> str:
        return self.fed.create_room(
            "a.test",
            self.alice_tok,
            room_version=version,
            preset="private_chat",
            initial_state=[
                {
                    "type": "m.room.join_rules",
                    "state_key": "",
                    "content": {
                        "join_rule": "restricted",
                        "allow": [{"type": "m.room_membership", "room_id": self.space}],
                    },
                }
            ],
        )

    def test_member_of_allowed_room_joins(self) -> None:
        """Bob, in the allowed room, joins a restricted room (v8 to v12): the join names
        Alice as authoriser and carries a.test's signature as well as b.test's."""
        self.fed.ok("b.test", "POST", f"/join/{q(self.space)}?via=a.test", {}, self.bob_tok)
        for version in ("8", "9", "10", "11", "12"):
            room = self.restricted_room(version)
            self.fed.ok("b.test", "POST", f"/join/{q(room)}?via=a.test", {}, self.bob_tok)
            for server in ("a.test", "b.test"):
                hs = self.fed[server]
                ev = hs.run(hs.hs.rooms.store.get_current_state_event(  # type: ignore[union-attr]
                    room, "m.room.member", self.bob))
                self.assertEqual(ev.membership, "join", (server, version))
                self.assertEqual(
                    ev.content["join_authorised_via_users_server"], self.alice, version
                )
                self.assertEqual(set(ev.signatures), {"a.test", "b.test"}, (server, version))

    def test_outsider_is_refused(self) -> None:
        """Bob, not in the allowed room, is refused (403) and joined nowhere."""
        room = self.restricted_room("10")
        status, body = self.fed.request(
            "b.test", "POST", f"/join/{q(room)}?via=a.test", {}, self.bob_tok
        )
        self.assertEqual(status, 403, body)
        self.assertIsNone(self.fed.membership("a.test", room, self.bob))


class KnockTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")
        self.room = self.fed.create_room(
            "a.test",
            self.alice_tok,
            name="Knock knock",
            room_version="10",
            preset="private_chat",
            initial_state=[
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
            ],
        )

    def knock(self) -> None:
        self.fed.ok(
            "b.test", "POST", f"/knock/{q(self.room)}?via=a.test", {"reason": "let me in"},
            self.bob_tok,
        )

    def test_knock_shows_on_both_and_in_sync(self) -> None:
        """Bob's knock is his membership on a.test, and his /sync lists the room under
        knock with the room's stripped state."""
        self.knock()
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "knock")
        sync = self.fed.sync("b.test", self.bob_tok)
        knock = sync["rooms"]["knock"][self.room]
        types = {e["type"]: e for e in knock["knock_state"]["events"]}
        self.assertEqual(types["m.room.name"]["content"], {"name": "Knock knock"})
        self.assertEqual(types["m.room.member"]["content"]["membership"], "knock")

    def test_knock_then_invited_then_join(self) -> None:
        """Alice lets Bob in by inviting him after his knock; he joins."""
        self.knock()
        self.fed.ok(
            "a.test", "POST", f"/rooms/{q(self.room)}/invite", {"user_id": self.bob},
            self.alice_tok,
        )
        self.fed.ok("b.test", "POST", f"/join/{q(self.room)}", {}, self.bob_tok)
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "join")

    def test_withdraw_knock(self) -> None:
        """Bob withdraws his knock (leave): a.test has him left."""
        self.knock()
        self.fed.ok("b.test", "POST", f"/rooms/{q(self.room)}/leave", {}, self.bob_tok)
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "leave")

    def test_knock_on_invite_only_room_refused(self) -> None:
        """A room whose join rule is not knock refuses the knock (403)."""
        room = self.fed.create_room("a.test", self.alice_tok, preset="private_chat")
        status, body = self.fed.request(
            "b.test", "POST", f"/knock/{q(room)}?via=a.test", {}, self.bob_tok
        )
        self.assertEqual(status, 403, body)
        self.assertIsNone(self.fed.membership("a.test", room, self.bob))

    def test_knock_on_old_room_version(self) -> None:
        """A v6 room cannot be knocked on: M_INCOMPATIBLE_ROOM_VERSION."""
        room = self.fed.create_room(
            "a.test", self.alice_tok, preset="private_chat", room_version="6"
        )
        status, body = self.fed.request(
            "b.test", "POST", f"/knock/{q(room)}?via=a.test", {}, self.bob_tok
        )
        self.assertEqual(status, 400, body)
        self.assertEqual(body["errcode"], "M_INCOMPATIBLE_ROOM_VERSION")


# The same tests with every server on PostgreSQL.


class RestrictedJoinTestsPostgres(RestrictedJoinTests):
    engine = Engine.POSTGRES


class KnockTestsPostgres(KnockTests):
    engine = Engine.POSTGRES
