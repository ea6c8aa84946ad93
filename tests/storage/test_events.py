"""The event store's contract (what sync, federation and the client API read), on SQLite and
PostgreSQL: timeline ranges, state now and at a position, local memberships and their
changes, served events (prev_content, redaction), transaction IDs, the stream log, state
groups as deltas, and reading everything back after a restart."""

from __future__ import annotations

from typing import Any

from ruma.protocol.events import StateKey
from ruma.storage.events import EventStore, TxnIdKey
from ruma.storage.state import SNAPSHOT_FRACTION, StateStore
from tests.rooms.helpers import SERVER, RoomsTestMixin
from tests.storage.engines import PostgresEngine, SQLiteEngine


class EventStoreContract(RoomsTestMixin):
    def all_events(self, room: str) -> list[tuple[int, Any]]:
        return self.run_sync(
            self.store.get_room_events(room, from_pos=0, to_pos=10**12, limit=10_000,
                                       backwards=False)
        )

    def test_room_events_ranges(self) -> None:
        """get_room_events returns from_pos < position <= to_pos: oldest first forwards,
        newest first backwards, and limit keeps the end nearest the start of the walk."""
        room = self.create_room()
        sent = [self.send_text(room, self.alice, str(i)) for i in range(5)]
        rows = self.all_events(room)
        positions = {e.event_id: p for p, e in rows}
        first, last = positions[sent[0]], positions[sent[-1]]
        fwd = self.run_sync(self.store.get_room_events(
            room, from_pos=first, to_pos=last, limit=2, backwards=False))
        self.assertEqual([e.event_id for _, e in fwd], sent[1:3])
        back = self.run_sync(self.store.get_room_events(
            room, from_pos=first, to_pos=last, limit=2, backwards=True))
        self.assertEqual([e.event_id for _, e in back], [sent[4], sent[3]])
        everything = self.run_sync(self.store.get_room_events(
            room, from_pos=first - 1, to_pos=last, limit=100, backwards=True))
        self.assertEqual([e.event_id for _, e in everything], list(reversed(sent)))
        self.assertEqual([p for p, _ in rows], sorted(p for p, _ in rows))

    def test_stream_rows_for_events(self) -> None:
        """Each timeline event has a stream row of kind 'event' at its position, naming the
        room, the event and (for memberships) the member."""
        room = self.create_room()
        rows = self.all_events(room)

        def txn_fn(txn: Any) -> list[tuple[Any, ...]]:
            return txn.select(
                "SELECT position, kind, room_id, user_id, ref FROM stream WHERE room_id = ?"
                " ORDER BY position", (room,))

        stream = self.successResultOf(self.db.run("get_stream", txn_fn))
        expected = [
            (p, "event", room, e.state_key if e.type == "m.room.member" else None, e.event_id)
            for p, e in rows
        ]
        self.assertEqual([tuple(r) for r in stream], expected)

    def test_state_now_and_at(self) -> None:
        """get_current_state_ids is the state now; get_state_ids_at(pos) the state after the
        last event at or before pos (earlier names stay visible at earlier positions)."""
        room = self.create_room(name="one")
        pos_one = self.run_sync(self.store.get_max_stream_position(room))
        assert pos_one is not None
        second = self.run_sync(
            self.rooms.messages.set_state(self.alice, room, "m.room.name", "", {"name": "two"}))
        self.send_text(room, self.alice, "after")
        now = self.run_sync(self.store.get_current_state_ids(room))
        self.assertEqual(now[("m.room.name", "")], second)
        then = self.run_sync(self.store.get_state_ids_at(room, pos_one))
        first_name = self.run_sync(self.store.get_event(then[("m.room.name", "")]))
        assert first_name is not None
        self.assertEqual(first_name.content["name"], "one")
        self.assertEqual(self.run_sync(self.store.get_state_ids_at(room, 0)), {})
        self.assertEqual(
            self.run_sync(self.store.get_state_ids_at(room, 10**12)), now)
        names = self.run_sync(self.store.get_current_state_ids(room, types=["m.room.name"]))
        self.assertEqual(names, {("m.room.name", ""): second})

    def test_local_memberships(self) -> None:
        """local_memberships holds each local user's latest membership per room, and
        get_membership_changes lists every change in order within a position range."""
        room = self.create_room(invite=[self.bob])
        self.assertEqual(
            [r[:2] for r in self.run_sync(self.store.get_rooms_for_local_user(
                self.bob, ("invite",)))],
            [(room, "invite")])
        self.run_sync(self.rooms.membership.join(self.bob, room))
        self.run_sync(self.rooms.membership.leave(self.bob, room))
        joined = self.run_sync(self.store.get_rooms_for_local_user(self.bob))
        self.assertEqual(joined, [])
        left = self.run_sync(self.store.get_rooms_for_local_user(self.bob, ("leave",)))
        self.assertEqual([r[:2] for r in left], [(room, "leave")])
        changes = self.run_sync(self.store.get_membership_changes(self.bob, 0, 10**12))
        self.assertEqual([c[1:3] for c in changes],
                         [(room, "invite"), (room, "join"), (room, "leave")])
        self.assertEqual([c[0] for c in changes], sorted(c[0] for c in changes))
        mid = changes[0][0]
        self.assertEqual(
            [c[2] for c in self.run_sync(self.store.get_membership_changes(self.bob, mid,
                                                                          10**12))],
            ["join", "leave"])
        # Forgetting hides the room from every list.
        self.run_sync(self.rooms.membership.forget(self.bob, room))
        self.assertEqual(
            self.run_sync(self.store.get_rooms_for_local_user(self.bob, ("leave",))), [])

    def test_served_events(self) -> None:
        """Served state events carry prev_content/prev_sender/replaces_state; a redacted
        event is served pruned with redacted_because, while get_pdus keeps the original."""
        room = self.create_room(topic="old")
        new_topic = self.run_sync(self.rooms.messages.set_state(
            self.alice, room, "m.room.topic", "", {"topic": "new"}))
        served = self.run_sync(self.store.get_event(new_topic))
        assert served is not None
        self.assertEqual(served.unsigned["prev_content"]["topic"], "old")
        self.assertEqual(served.unsigned["prev_sender"], self.alice)
        msg = self.send_text(room, self.alice, "secret")
        redaction = self.run_sync(self.rooms.messages.redact(self.alice, room, msg, None, None))
        redacted = self.run_sync(self.store.get_event(msg))
        assert redacted is not None
        self.assertEqual(dict(redacted.content), {})
        self.assertEqual(redacted.unsigned["redacted_because"]["event_id"], redaction)
        original = self.run_sync(self.store.get_pdus([msg]))[msg]
        self.assertEqual(original.content["body"], "secret")
        meta = self.run_sync(self.store.get_event_meta([msg]))[msg]
        self.assertEqual(meta.redacted_by, redaction)

    def test_txn_ids(self) -> None:
        """A transaction ID maps to its event, per user and scope, and back."""
        room = self.create_room()
        key = TxnIdKey(self.alice, "device:D", "send:1")
        eid = self.run_sync(self.rooms.messages.send_message(
            self.alice, room, "m.room.message", {"body": "x"}, key))
        again = self.run_sync(self.rooms.messages.send_message(
            self.alice, room, "m.room.message", {"body": "x"}, key))
        self.assertEqual(eid, again)
        self.assertEqual(self.run_sync(self.store.get_txn_event(key)), eid)
        other = TxnIdKey(self.alice, "device:E", "send:1")
        self.assertIsNone(self.run_sync(self.store.get_txn_event(other)))
        self.assertEqual(self.run_sync(self.store.get_txn_ids_for_events([eid])), {eid: key})

    def test_restart(self) -> None:
        """A fresh EventStore on a reopened database (no caches) reads the same room."""
        room = self.create_room(name="persist")
        eid = self.send_text(room, self.alice, "kept")
        state = self.run_sync(self.store.get_current_state_ids(room))
        reopened = self.make_db()
        fresh = EventStore(reopened, SERVER, StateStore(reopened))
        self.assertEqual(self.run_sync(fresh.get_current_state_ids(room)), state)
        event = self.run_sync(fresh.get_event(eid))
        assert event is not None
        self.assertEqual(event.content["body"], "kept")
        head = self.run_sync(fresh.get_room_head(room))
        assert head is not None
        self.assertEqual(head.forward_extremities, {eid})
        group_state = self.run_sync(fresh.state.get_state_group(head.current_state_group))  # type: ignore[arg-type]
        self.assertEqual(dict(group_state), state)

    def test_state_groups_are_deltas(self) -> None:
        """Each state event adds one delta row, messages add none, and every event's state
        group reads back as the state at that point."""
        room = self.create_room()

        def count(txn: Any) -> int:
            row = txn.select_one("SELECT COUNT(*) FROM state_group_entries")
            return int(row[0])

        before = self.successResultOf(self.db.run("count", count))
        for i in range(30):
            self.run_sync(self.rooms.messages.set_state(
                self.alice, room, "m.room.topic", "", {"topic": str(i)}))
            self.send_text(room, self.alice, str(i))
        after = self.successResultOf(self.db.run("count", count))
        self.assertEqual(after - before, 30)
        rows = self.all_events(room)
        for _, event in rows[-2:]:
            ids = self.run_sync(self.store.get_state_ids_for_event(event.event_id))
            assert ids is not None
            topic = self.run_sync(self.store.get_event(ids[("m.room.topic", "")]))
            assert topic is not None
            self.assertEqual(topic.content["topic"], "29")

    def test_many_members(self) -> None:
        """A room with 150 members: current state, the state group and the members list
        agree; state rows stay linear in the number of joins."""
        room = self.create_room(preset="public_chat")
        users = [f"@user{i}:{SERVER}" for i in range(150)]
        for user in users:
            self.profiles.add(user)
            self.run_sync(self.rooms.membership.join(user, room))
        current = self.run_sync(self.store.get_current_state_ids(room))
        head = self.run_sync(self.store.get_room_head(room))
        assert head is not None and head.current_state_group is not None
        fresh = StateStore(self.db)
        self.assertEqual(dict(self.run_sync(fresh.get_state_group(head.current_state_group))),
                         current)
        members = self.run_sync(self.store.get_current_members(room, "join"))
        self.assertEqual(set(members), {self.alice, *users})

        def count(txn: Any) -> int:
            row = txn.select_one("SELECT COUNT(*) FROM state_group_entries")
            return int(row[0])

        rows = self.successResultOf(self.db.run("count", count))
        self.assertLess(rows, 3 * len(current) + 2 * len(users))


class EventStoreSQLiteTests(EventStoreContract, SQLiteEngine):
    def test_ten_thousand_member_state(self) -> None:
        """State groups for a room growing to 10,000 members: storage stays linear (about
        SNAPSHOT_FRACTION rows per change at most) and the last group reads back whole."""
        state = StateStore(self.db)

        def build(txn: Any) -> int:
            group = state.store_group_txn(txn, "!big:x", None, {("m.room.create", ""): "$c"})
            for i in range(10_000):
                group = state.store_group_txn(
                    txn, "!big:x", group, {("m.room.member", f"@u{i}:x"): f"$m{i}"})
            return group

        last = self.successResultOf(self.db.run("build", build))

        def count(txn: Any) -> int:
            row = txn.select_one("SELECT COUNT(*) FROM state_group_entries")
            return int(row[0])

        rows = self.successResultOf(self.db.run("count", count))
        self.assertLess(rows, 10_000 * (SNAPSHOT_FRACTION + 2))
        full = self.run_sync(StateStore(self.db).get_state_group(last))
        self.assertEqual(len(full), 10_001)
        key: StateKey = ("m.room.member", "@u1234:x")
        self.assertEqual(full[key], "$m1234")
        some = self.run_sync(StateStore(self.db).get_state_group_keys(last, [key]))
        self.assertEqual(some, {key: "$m1234"})


class EventStorePostgresTests(EventStoreContract, PostgresEngine):
    pass
