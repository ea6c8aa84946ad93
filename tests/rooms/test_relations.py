"""Relations storage and the relations handler on both engines: rows written in the persist
transaction, removed on redaction, thread summaries, edits, references, /threads order."""

from __future__ import annotations

from typing import Any

from ruma.rooms.creation import CreateRoomRequest
from ruma.storage.relations import RelationStore
from tests.rooms.helpers import RoomsTestMixin
from tests.storage.engines import PostgresEngine, SQLiteEngine


class RelationsContract(RoomsTestMixin):
    def setUp(self) -> None:
        super().setUp()
        self.relstore = RelationStore(self.db)
        self.room = self.create_room(preset="public_chat")
        self.run_sync(self.rooms.membership.join(self.bob, self.room))

    def send(self, sender: str, body: str, **rel: Any) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if rel:
            content["m.relates_to"] = rel
        return self.run_sync(
            self.rooms.messages.send_message(sender, self.room, "m.room.message", content, None)
        )

    def test_rows_written_with_the_event(self) -> None:
        """Every relating timeline event has one row with its type, sender, key and position;
        events without m.relates_to (or with a malformed one) have none."""
        root = self.send(self.alice, "root")
        reply = self.send(self.bob, "r", rel_type="m.thread", event_id=root)
        self.send(self.bob, "bad", rel_type="m.thread")
        self.send(self.bob, "bad", rel_type=5, event_id=root)
        rel = self.run_sync(self.relstore.get_relation(reply))
        assert rel is not None
        self.assertEqual(
            (rel.relates_to_id, rel.rel_type, rel.sender, rel.type, rel.room_id),
            (root, "m.thread", self.bob, "m.room.message", self.room),
        )
        meta = self.run_sync(self.store.get_event_meta([reply]))[reply]
        self.assertEqual(rel.stream_position, meta.stream_position)
        children = self.run_sync(self.relstore.get_children([root]))
        self.assertEqual([c.event_id for c in children], [reply])

    def test_annotation_key_and_redaction(self) -> None:
        """A reaction's key is stored; redacting it removes the row in the same write."""
        root = self.send(self.alice, "root")
        react = self.run_sync(self.rooms.messages.send_message(
            self.bob, self.room, "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "🎉"}}, None,
        ))
        rel = self.run_sync(self.relstore.get_relation(react))
        assert rel is not None
        self.assertEqual(rel.aggregation_key, "🎉")
        self.run_sync(self.rooms.messages.redact(self.bob, self.room, react, None, None))
        self.assertIsNone(self.run_sync(self.relstore.get_relation(react)))

    def test_thread_summary_and_threads_order(self) -> None:
        """Thread summaries count replies and name the latest; get_threads orders roots by
        latest reply and pages below a position; participant narrows."""
        t1 = self.send(self.alice, "t1")
        t2 = self.send(self.bob, "t2")
        self.send(self.bob, "a", rel_type="m.thread", event_id=t1)
        last2 = self.send(self.bob, "b", rel_type="m.thread", event_id=t2)
        last1 = self.send(self.bob, "c", rel_type="m.thread", event_id=t1)
        summaries = self.run_sync(self.relstore.get_thread_summaries([t1, t2]))
        self.assertEqual((summaries[t1].count, summaries[t1].latest_event_id), (2, last1))
        self.assertEqual((summaries[t2].count, summaries[t2].latest_event_id), (1, last2))
        self.assertEqual(summaries[t1].participants, frozenset({self.bob}))
        threads = self.run_sync(self.relstore.get_threads(self.room, before=None, limit=10))
        self.assertEqual([t for t, _ in threads], [t1, t2])
        below = self.run_sync(
            self.relstore.get_threads(self.room, before=threads[0][1], limit=10)
        )
        self.assertEqual([t for t, _ in below], [t2])
        # Alice started t1 (the root) and replied nowhere.
        mine = self.run_sync(
            self.relstore.get_threads(self.room, before=None, limit=10, participant=self.alice)
        )
        self.assertEqual([t for t, _ in mine], [t1])

    def test_bundle_edit_rules(self) -> None:
        """The bundler picks the newest edit by the original sender; an edit of an edit is
        not bundled on the edit; events without relations come back untouched."""
        root = self.send(self.alice, "root")
        plain = self.send(self.alice, "plain")
        first = self.send(self.alice, "* one", rel_type="m.replace", event_id=root)
        self.clock.advance(1)
        second = self.send(self.alice, "* two", rel_type="m.replace", event_id=root)
        self.clock.advance(1)
        self.send(self.bob, "* forged", rel_type="m.replace", event_id=root)
        self.send(self.alice, "* edit of edit", rel_type="m.replace", event_id=first)
        events = self.run_sync(self.store.get_events([root, plain, first]))
        bundled = self.run_sync(
            self.rooms.relations.bundle([events[root], events[plain], events[first]], self.bob)
        )
        self.assertEqual(bundled[0].unsigned["m.relations"]["m.replace"]["event_id"], second)
        self.assertIs(bundled[1], events[plain])
        self.assertNotIn("m.relations", bundled[2].unsigned)

    def test_relations_page_visibility(self) -> None:
        """get_relations through the handler pages relations, and a user who may not read
        the room is refused."""
        from ruma.errors import MatrixError

        root = self.send(self.alice, "root")
        replies = [self.send(self.bob, f"r{i}", rel_type="m.thread", event_id=root)
                   for i in range(3)]
        page = self.run_sync(self.rooms.relations.get_relations(
            self.alice, self.room, root, rel_type=None, event_type=None, from_token=None,
            to_token=None, limit=2, backwards=True, recurse=False,
        ))
        self.assertEqual([e.event_id for e in page.events], [replies[2], replies[1]])
        assert page.next_batch is not None
        page2 = self.run_sync(self.rooms.relations.get_relations(
            self.alice, self.room, root, rel_type=None, event_type=None,
            from_token=page.next_batch, to_token=None, limit=2, backwards=True, recurse=False,
        ))
        self.assertEqual([e.event_id for e in page2.events], [replies[0]])
        private = self.run_sync(self.rooms.creator.create_room(
            CreateRoomRequest(creator=self.alice, preset="private_chat")
        ))[0]
        self.failureResultOf(
            self._relations_in(private, self.carol), MatrixError
        )

    def _relations_in(self, room: str, user: str) -> Any:
        from twisted.internet.defer import Deferred

        return Deferred.fromCoroutine(self.rooms.relations.get_relations(
            user, room, "$x", rel_type=None, event_type=None, from_token=None, to_token=None,
            limit=5, backwards=True, recurse=False,
        ))


class RelationsSQLiteTests(RelationsContract, SQLiteEngine):
    pass


class RelationsPostgresTests(RelationsContract, PostgresEngine):
    pass
