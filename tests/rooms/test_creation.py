"""Room creation in the service: distinct rooms, event order, power levels per version."""

from __future__ import annotations

from tests.rooms.helpers import RoomsTestMixin
from tests.storage.engines import SQLiteEngine


class CreationTests(RoomsTestMixin, SQLiteEngine):
    def test_identical_v12_creates_make_two_rooms(self) -> None:
        """Two identical v12 createRoom calls in the same millisecond make two rooms (the
        room ID is the create event's hash, so the second create is made distinct)."""
        first = self.create_room(room_version="12")
        second = self.create_room(room_version="12")
        self.assertNotEqual(first, second)
        for room in (first, second):
            members = self.run_sync(self.store.get_current_members(room))
            self.assertEqual(members, {self.alice: "join"})

    def test_event_order(self) -> None:
        """Events come in the spec's order: create, creator join, power levels, canonical
        alias, preset events, initial state, name, topic, invites."""
        from ruma.rooms.creation import InitialState

        room = self.create_room(
            room_alias_name="ordered", name="N", topic="T", invite=[self.bob],
            initial_state=[InitialState("m.room.encryption", "", {"algorithm": "x"})],
        )
        rows = self.run_sync(self.store.get_room_events(
            room, from_pos=0, to_pos=10**12, limit=100, backwards=False))
        self.assertEqual(
            [(e.type, e.state_key) for _, e in rows],
            [
                ("m.room.create", ""),
                ("m.room.member", self.alice),
                ("m.room.power_levels", ""),
                ("m.room.canonical_alias", ""),
                ("m.room.join_rules", ""),
                ("m.room.history_visibility", ""),
                ("m.room.guest_access", ""),
                ("m.room.encryption", ""),
                ("m.room.name", ""),
                ("m.room.topic", ""),
                ("m.room.member", self.bob),
            ],
        )
        topic = rows[9][1]
        self.assertEqual(topic.content["m.topic"], [{"body": "T", "mimetype": "text/plain"}])

    def test_v12_creator_removed_from_override(self) -> None:
        """In v12, creators named in a power level override are dropped (they have
        infinite power and may not be listed); other users stay."""
        room = self.create_room(
            room_version="12",
            power_level_content_override={"users": {self.alice: 100, self.bob: 50}},
        )
        pl = self.run_sync(self.store.get_current_state_event(room, "m.room.power_levels", ""))
        assert pl is not None
        self.assertEqual(dict(pl.content["users"]), {self.bob: 50})
