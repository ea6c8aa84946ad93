"""PDUs pushed to us while we are joining a room wait for the join, then enter the room.

The window: the resident server has our join (it answered ``send_join`` or is about to)
and counts us in the room, so its sender pushes the room's new events to us, while we
have not persisted the room's state yet."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.inbound.joining import JoiningRooms
from ruma.storage.database import Engine
from tests.federation.rooms_fixtures import Federation, q


class JoinQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fed = Federation(self)
        self.alice, self.alice_tok = self.fed["a.test"].register("alice")
        self.bob, self.bob_tok = self.fed["b.test"].register("bob")
        self.room = self.fed.create_room("a.test", self.alice_tok, preset="public_chat")
        self.joining = self.fed.wiring["b.test"].joining
        # Hold b.test's join between the send_join answer and persisting the room's state.
        self.gate: Deferred[None] = Deferred()
        complete = self.joining._complete_join

        async def held(*args: Any) -> Any:
            await self.gate
            return await complete(*args)

        self.joining._complete_join = held  # type: ignore[method-assign]

    def start_join(self) -> Deferred[Any]:
        hs = self.fed["b.test"]
        d: Deferred[Any] = hs.treq.request(
            "POST",
            hs.url(f"/join/{q(self.room)}?server_name=a.test"),
            data=b"{}",
            headers={b"Authorization": [b"Bearer " + self.bob_tok.encode("ascii")]},
        )
        self.fed.settle()
        # a.test has the join: from now on its sender counts b.test in the room.
        self.assertEqual(self.fed.membership("a.test", self.room, self.bob), "join")
        self.assertTrue(self.joining.joining.is_joining(self.room))
        return d

    def timeline_bodies(self, server: str) -> list[str]:
        store = self.fed[server].hs.rooms.store  # type: ignore[union-attr]
        events = self.fed.run(
            store.get_room_events(self.room, from_pos=0, to_pos=2**62, limit=1000, backwards=False)
        )
        return [e.content.get("body") for _, e in events if e.type == "m.room.message"]

    def test_message_sent_during_our_join_appears_after_it(self) -> None:
        """Alice sends a message while b.test's join is in flight: a.test pushes it to
        b.test, which queues it (answered {}), and it is in b.test's timeline, after Bob's
        join, once the join is persisted."""
        join = self.start_join()
        during = self.fed.send_text("a.test", self.alice_tok, self.room, "during the join", "t1")
        self.fed.settle()
        self.assertEqual(self.joining.joining.queued(self.room), 1)
        store = self.fed["b.test"].hs.rooms.store  # type: ignore[union-attr]
        self.assertFalse(self.fed.run(store.have_events([during])))
        self.gate.callback(None)
        response = self.fed.wait(join)
        self.assertEqual(response.code, 200)
        self.fed.settle()
        self.assertEqual(self.timeline_bodies("b.test"), ["during the join"])
        meta = self.fed.run(store.get_event_meta([during]))[during]
        self.assertIsNotNone(meta.stream_position)
        self.assertIsNone(meta.rejected_reason)
        self.assertFalse(self.joining.joining.is_joining(self.room))
        # No gap had to be filled to get it: it came from the queue.
        self.assertEqual(self.fed.membership("b.test", self.room, self.bob), "join")
        after = self.fed.send_text("a.test", self.alice_tok, self.room, "after the join", "t2")
        self.fed.settle()
        self.assertTrue(self.fed.run(store.have_events([after])))
        self.assertEqual(self.timeline_bodies("b.test"), ["during the join", "after the join"])

    def test_several_messages_keep_their_order(self) -> None:
        """Three messages during the join come out in the order they were sent."""
        join = self.start_join()
        for i in range(3):
            self.fed.send_text("a.test", self.alice_tok, self.room, f"m{i}", f"t{i}")
        self.fed.settle()
        self.gate.callback(None)
        self.assertEqual(self.fed.wait(join).code, 200)
        self.fed.settle()
        self.assertEqual(self.timeline_bodies("b.test"), ["m0", "m1", "m2"])

    def test_failed_join_drops_the_queue(self) -> None:
        """If the join fails after all, the queued PDUs are dropped and the room is no
        longer held as being joined."""
        join = self.start_join()
        self.fed.send_text("a.test", self.alice_tok, self.room, "lost", "t1")
        self.fed.settle()
        self.assertEqual(self.joining.joining.queued(self.room), 1)
        self.gate.errback(ValueError("the join broke"))
        response = self.fed.wait(join)
        self.assertEqual(response.code, 500)
        self.flushLoggedErrors(ValueError)
        self.fed.settle()
        self.assertFalse(self.joining.joining.is_joining(self.room))
        self.assertEqual(self.joining.joining.queued(self.room), 0)


class JoinQueueTestsPostgres(JoinQueueTests):
    engine = Engine.POSTGRES


class JoiningRoomsTests(SynchronousTestCase):
    """The queue on its own: bounded, ordered, dropped on failure."""

    def test_bounded_per_room(self) -> None:
        rooms = JoiningRooms(max_queued=2)
        self.assertFalse(rooms.offer("!r:x", "o", {}))
        rooms.begin("!r:x")
        self.assertTrue(rooms.offer("!r:x", "o", {"n": 1}))
        self.assertTrue(rooms.offer("!r:x", "o", {"n": 2}))
        self.assertFalse(rooms.offer("!r:x", "o", {"n": 3}))
        self.assertEqual(rooms.queued("!r:x"), 2)

    def test_processed_in_order_after_the_join(self) -> None:
        rooms = JoiningRooms()
        seen: list[tuple[str, list[Any]]] = []

        async def process(origin: str, room_id: str, pdus: list[Any]) -> None:
            seen.append((origin, pdus))
            if len(seen) == 1:
                rooms.offer(room_id, "c", {"n": 4})  # arrives while the queue is worked off

        rooms.processor = process
        rooms.begin("!r:x")
        for origin, n in (("a", 1), ("a", 2), ("b", 3)):
            rooms.offer("!r:x", origin, {"n": n})
        rooms.finish("!r:x", joined=True)
        self.assertEqual(seen, [("a", [{"n": 1}, {"n": 2}]), ("b", [{"n": 3}]), ("c", [{"n": 4}])])
        self.assertFalse(rooms.is_joining("!r:x"))

    def test_overlapping_joins(self) -> None:
        """Two local users joining the same room: queueing lasts until both are done."""
        rooms = JoiningRooms()
        rooms.processor = _ignore
        rooms.begin("!r:x")
        rooms.begin("!r:x")
        rooms.finish("!r:x", joined=False)
        self.assertTrue(rooms.is_joining("!r:x"))
        rooms.finish("!r:x", joined=True)
        self.assertFalse(rooms.is_joining("!r:x"))

    def test_failed_join_drops(self) -> None:
        rooms = JoiningRooms()
        called: list[Any] = []

        async def process(*args: Any) -> None:
            called.append(args)

        rooms.processor = process
        rooms.begin("!r:x")
        rooms.offer("!r:x", "o", {})
        rooms.finish("!r:x", joined=False)
        self.assertEqual(called, [])
        self.assertFalse(rooms.is_joining("!r:x"))


async def _ignore(*args: Any) -> None:
    return None
