"""The room writer's seams for federation membership and backfill, on both engines:
out-of-room memberships, outliers joining the timeline, backfill positions and backward
extremities."""

from __future__ import annotations

from typing import Any

from ruma.protocol.events import Event, add_hashes_and_signature, build_event
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS
from ruma.protocol.signing import generate_signing_key
from ruma.rooms.builder import NewEvent
from ruma.storage.events import NewRoom
from tests.rooms.helpers import RoomsTestMixin
from tests.storage.engines import PostgresEngine, SQLiteEngine

V12 = KNOWN_ROOM_VERSIONS["12"]


class WriterSeamsContract(RoomsTestMixin):
    successResultOf: Any
    assertEqual: Any
    assertIsNone: Any
    assertTrue: Any
    assertIsNotNone: Any

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

    def test_outlier_batch(self) -> None:
        """A batch of outliers is checked against auth events in the batch and in storage:
        valid ones are stored, one with an unknown auth event is stored rejected, and so is
        one that depends on it; known events are left alone."""
        room = self.create_room(preset="public_chat")
        state = self.run_sync(self.store.get_current_state_ids(room))
        auth = self.run_sync(self.store.get_pdus(
            [state[("m.room.power_levels", "")], state[("m.room.join_rules", "")]]
        ))
        head = self.run_sync(self.store.get_room_head(room))
        prevs = list(self.run_sync(self.store.get_pdus(head.forward_extremities)).values())
        key = generate_signing_key("r1")

        def member(user: str, auth_events: list[Event], ts: int) -> Event:
            return build_event(
                V12, room_id=room, sender=user, type="m.room.member", state_key=user,
                content={"membership": "join"}, prev_events=prevs, auth_events=auth_events,
                origin_server_ts=ts, server_name="remote.test", signing_key=key,
            )

        good = member("@rob:remote.test", list(auth.values()), 1)
        orphan = build_event(
            V12, room_id=room, sender="@rob:remote.test", type="m.room.message",
            content={"body": "x"}, prev_events=prevs, auth_events=[], origin_server_ts=2,
            server_name="remote.test", signing_key=key,
        )
        pdu = orphan.pdu()
        pdu["auth_events"] = ["$" + "u" * 43]
        orphan = Event.from_pdu(add_hashes_and_signature(pdu, V12, "remote.test", key), V12)
        child = build_event(
            V12, room_id=room, sender="@rob:remote.test", type="m.room.message",
            content={"body": "y"}, prev_events=prevs, auth_events=[orphan, good],
            origin_server_ts=3, server_name="remote.test", signing_key=key,
        )
        existing = prevs[0]

        async def go() -> Any:
            async with self.rooms.writer.room_lock(room):
                return await self.rooms.writer.persist_outliers_locked(
                    [good, orphan, child, existing]
                )

        out = self.run_sync(go())
        self.assertIsNone(out[good.event_id].rejected_reason)
        self.assertTrue(out[orphan.event_id].rejected_reason.startswith("auth_events.missing"))
        self.assertTrue(out[child.event_id].rejected_reason.startswith("auth_events.rejected"))
        self.assertTrue(out[existing.event_id].already_known)
        meta = self.run_sync(self.store.get_event_meta([good.event_id, child.event_id]))
        self.assertTrue(meta[good.event_id].outlier)
        self.assertIsNone(meta[good.event_id].stream_position)
        self.assertIsNotNone(meta[child.event_id].rejected_reason)

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

