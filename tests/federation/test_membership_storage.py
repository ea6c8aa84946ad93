"""The room writer's seams for federation membership and backfill, on both engines:
out-of-room memberships, outliers joining the timeline, backfill positions and backward
extremities."""

from __future__ import annotations

from typing import Any

from ruma.protocol.events import Event, build_event
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS
from ruma.protocol.signing import generate_signing_key
from ruma.rooms.builder import NewEvent
from ruma.storage.events import NewRoom
from tests.rooms.helpers import RoomsTestMixin
from tests.storage.engines import PostgresEngine, SQLiteEngine


class WriterSeamsContract(RoomsTestMixin):
    successResultOf: Any
    assertEqual: Any
    assertIsNone: Any
    assertTrue: Any

    def remote_event(self, **kw: Any) -> Event:
        key = generate_signing_key("r1")
        args: dict[str, Any] = {
            "room_id": "!unknown:remote.test",
            "sender": "@rita:remote.test",
            "type": "m.room.member",
            "state_key": self.alice,
            "content": {"membership": "invite"},
            "prev_events": [],
            "auth_events": [],
            "depth": 5,
            "origin_server_ts": 1000,
            "server_name": "remote.test",
            "signing_key": key,
            "event_id_localpart": "x",
        }
        args.update(kw)
        return build_event(KNOWN_ROOM_VERSIONS["10"], **args)

    def test_out_of_room_invite(self) -> None:
        """An invite to a room we have no state of is stored (not rejected, though none of
        its auth events are here) and becomes the local user's membership; the room is
        known without state."""
        invite = self.remote_event()
        persisted = self.run_sync(
            self.rooms.writer.persist_event(
                invite,
                out_of_room=True,
                new_room=NewRoom(KNOWN_ROOM_VERSIONS["10"], "@rita:remote.test"),
            )
        )
        self.assertIsNone(persisted.rejected_reason)
        local = self.run_sync(self.store.get_local_membership(self.alice, invite.room_id))
        self.assertEqual(local[:2], ("invite", invite.event_id))
        head = self.run_sync(self.store.get_room_head(invite.room_id))
        self.assertIsNone(head.current_state_group)
        served = self.run_sync(self.store.get_event(invite.event_id))
        self.assertEqual(served.event_id, invite.event_id)

    def test_outlier_joins_timeline(self) -> None:
        """An event first stored as an outlier gets a stream position and state when it is
        persisted again into the timeline."""
        room = self.create_room()
        head = self.run_sync(self.store.get_room_head(room))
        event = self.run_sync(
            self.rooms.sender.build(
                head,
                NewEvent("m.room.message", self.alice, {"msgtype": "m.text", "body": "x"}),
            )
        )
        first = self.run_sync(self.rooms.writer.persist_event(event, outlier=True))
        self.assertIsNone(first.stream_position)
        second = self.run_sync(self.rooms.writer.persist_event(event))
        self.assertTrue(second.stream_position is not None and second.stream_position > 0)
        meta = self.run_sync(self.store.get_event_meta([event.event_id]))[event.event_id]
        self.assertEqual((meta.outlier, meta.stream_position), (False, second.stream_position))
        third = self.run_sync(self.rooms.writer.persist_event(event))
        self.assertTrue(third.already_known)

    def test_backfill_positions(self) -> None:
        """Reserved backfill positions are negative, ascending within a block, and each
        block lies below the one before."""
        first = self.run_sync(self.store.reserve_backfill_positions(3))
        second = self.run_sync(self.store.reserve_backfill_positions(2))
        self.assertEqual(first, [-3, -2, -1])
        self.assertEqual(second, [-5, -4])
        self.assertEqual(self.run_sync(self.store.reserve_backfill_positions(0)), [])

    def test_no_backward_extremities_in_a_local_room(self) -> None:
        """A room created here refers to nothing it lacks."""
        room = self.create_room()
        self.send_text(room, self.alice, "hi")
        self.assertEqual(self.run_sync(self.store.get_backward_extremities(room)), {})


class WriterSeamsSQLiteTests(WriterSeamsContract, SQLiteEngine):
    pass


class WriterSeamsPostgresTests(WriterSeamsContract, PostgresEngine):
    pass

