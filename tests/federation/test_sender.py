"""The federation sender end to end: the room stack persists events, the bus wakes the sender,
destinations deliver transactions over (in-memory) HTTP to recording remote servers."""

from __future__ import annotations

from ruma.rooms.builder import NewEvent
from tests.federation.sender_fixtures import LOCAL, SenderTestMixin
from tests.storage.engines import PostgresEngine, SQLiteEngine


class SenderContract(SenderTestMixin):
    def test_message_reaches_joined_servers(self) -> None:
        """A local message goes to every server with a joined member, not to others, and
        the transaction is signed by us for that destination."""
        room = self.create_room()
        self.remote_join("a.test", room)
        self.remote_join("b.test", room)
        self.send_text(room, "hello")
        self.pump()
        for name in ("a.test", "b.test"):
            remote = self.remotes[name]
            self.assertEqual(remote.bodies(), ["hello"])
            auth = remote.processed[-1].auth
            self.assertEqual((auth.origin, auth.destination), (LOCAL, name))
            self.assertEqual(remote.processed[-1].body["origin"], LOCAL)
        self.assertEqual(self.remotes["c.test"].requests, [])

    def test_remote_events_are_not_sent_back(self) -> None:
        """Another server's events (its join) are not sent by us: it sends them itself."""
        room = self.create_room()
        self.remote_join("a.test", room)
        self.remote_join("b.test", room)
        pdus = self.remotes["a.test"].pdus()
        self.assertEqual([p["type"] for p in pdus], [])

    def test_relayed_join_goes_to_the_other_servers(self) -> None:
        """A remote join marked for relaying (send_join as resident server) reaches the
        room's other servers but not the server it came from."""
        room = self.create_room()
        self.remote_join("a.test", room)
        user = "@carol:b.test"
        event = self.remote_event(
            "b.test", room, NewEvent("m.room.member", user, {"membership": "join"}, user)
        )
        self.drive(self.sender.relay(event.event_id, "b.test"))
        self.drive(self.rooms.writer.persist_event(event))
        self.pump()
        self.assertEqual(
            [(p["type"], p["state_key"]) for p in self.remotes["a.test"].pdus()],
            [("m.room.member", user)],
        )
        self.assertEqual(self.remotes["b.test"].requests, [])

    def test_destinations_follow_joins_and_leaves(self) -> None:
        """A server hears the room's events from its join on, hears its own user's leave
        being acknowledged by nobody, and hears nothing after leaving."""
        room = self.create_room()
        self.send_text(room, "before")
        self.remote_join("a.test", room)
        self.send_text(room, "while joined")
        self.remote_leave("a.test", room)
        self.send_text(room, "after")
        self.pump()
        self.assertEqual(self.remotes["a.test"].bodies(), ["while joined"])

    def test_kick_reaches_the_kicked_server(self) -> None:
        """A kick of a remote user goes to that user's server (joined just before it), and
        later messages do not."""
        room = self.create_room()
        self.remote_join("a.test", room)
        self.drive(self.rooms.membership.kick(self.alice, room, "@bob:a.test", reason=None))
        self.send_text(room, "after kick")
        self.pump()
        members = [p for p in self.remotes["a.test"].pdus() if p["type"] == "m.room.member"]
        self.assertEqual(
            [(p["state_key"], p["content"]["membership"]) for p in members],
            [("@bob:a.test", "leave")],
        )
        self.assertEqual(self.remotes["a.test"].bodies(), [])

    def test_invite_reaches_the_invited_server(self) -> None:
        """An invite of a user on a server not in the room goes to that server."""
        room = self.create_room()
        self.drive(self.rooms.membership.invite(self.alice, room, "@dan:c.test"))
        self.pump()
        members = [p for p in self.remotes["c.test"].pdus() if p["type"] == "m.room.member"]
        self.assertEqual([p["content"]["membership"] for p in members], ["invite"])

    def test_per_pdu_errors_are_logged_not_retried(self) -> None:
        """A PDU the peer rejects in its answer is not sent again; later ones still flow."""
        room = self.create_room()
        self.remote_join("a.test", room)
        self.remotes["a.test"].reject_bodies.add("bad")
        self.send_text(room, "bad")
        self.send_text(room, "good")
        self.pump()
        self.assertEqual(self.remotes["a.test"].bodies(), ["bad", "good"])
        self.assertEqual(len(self.remotes["a.test"].requests), len(self.remotes["a.test"].processed))
        errors = self.flushLoggedErrors()
        self.assertEqual(errors, [])


class SenderSQLiteTests(SenderContract, SQLiteEngine):
    pass


class SenderPostgresTests(SenderContract, PostgresEngine):
    pass
