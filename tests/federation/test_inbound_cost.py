"""What receiving a PDU costs in database transactions, and the read-ahead that makes it
cheap staying correct when something else is persisted in between."""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.events import Event
from ruma.storage.database import Engine
from ruma.storage.events import _EventCache
from tests.federation.receiver_fixture import Servers


class InboundCostTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Servers(self)
        _, self.alice_tok = self.s["a.test"].register("alice")
        # v11: a redaction's target is in its content, which forge() builds.
        self.room = self.s.create_room("a.test", self.alice_tok, room_version="11")
        self.bob = "@bob:b.test"
        join = self.s.forge(
            "b.test",
            "a.test",
            self.room,
            self.bob,
            "m.room.member",
            {"membership": "join"},
            self.bob,
        )
        self.assertEqual(
            self.s.send_txn("b.test", "a.test", "join", [join])[1], {"pdus": {join.event_id: {}}}
        )
        self.join = join
        self.store = self.s.store("a.test")

    def count_transactions(self) -> Counter[str]:
        db = self.s["a.test"].hs.db
        counts: Counter[str] = Counter()
        inner = db.run

        def counting(desc: str, func: Any, *args: Any) -> Any:
            counts[desc] += 1
            return inner(desc, func, *args)

        db.run = counting  # type: ignore[method-assign]
        self.addCleanup(setattr, db, "run", inner)
        return counts

    def messages(self, n: int) -> list[Event]:
        auth = [*self.s.run(self.store.get_pdus(self.join.auth_event_ids)).values(), self.join]
        auth = [e for e in auth if e.type != "m.room.join_rules"]
        out: list[Event] = []
        prev = self.join
        for i in range(n):
            prev = self.s.forge(
                "b.test",
                "a.test",
                self.room,
                self.bob,
                "m.room.message",
                {"msgtype": "m.text", "body": f"m{i}"},
                prev_events=[prev],
                auth_events=auth,
            )
            out.append(prev)
        return out

    def test_two_transactions_per_pdu(self) -> None:
        """A transaction of 50 chained messages: one read and one write per PDU, every PDU
        in the timeline."""
        events = self.messages(50)
        counts = self.count_transactions()
        _, body = self.s.send_txn("b.test", "a.test", "t1", events)
        self.assertEqual(body["pdus"], {e.event_id: {} for e in events})
        self.assertEqual(counts["get_persist_context"], 50)
        self.assertEqual(counts["persist_event"], 50)
        # The reads the writer and the pipeline used to make per PDU are gone (what other
        # parts hook into the write, push for one, is theirs to count).
        for kind in (
            "get_event_meta",
            "get_have_events",
            "get_room_head",
            "get_pending_redactions",
            "get_state_groups_for_events",
            "get_pdus",
        ):
            self.assertLessEqual(counts[kind], 2, (kind, counts))
        timeline = [e.event_id for e in self.s.timeline("a.test", self.room)]
        self.assertEqual(timeline[-50:], [e.event_id for e in events])

    def test_cold_caches_still_one_read(self) -> None:
        """With the event, state-group and rejection caches empty (a restart, or a room
        not heard from in a while) the prev events' state groups and the auth events are
        read in the same read transaction, and the PDU is accepted and in the timeline."""
        [event] = self.messages(1)
        self.store._cache = _EventCache(10_000)
        self.store._groups_cache.clear()
        self.store._rejected.clear()
        counts = self.count_transactions()
        _, body = self.s.send_txn("b.test", "a.test", "t1", [event])
        self.assertEqual(body["pdus"], {event.event_id: {}})
        self.assertEqual(counts["get_persist_context"], 1)
        self.assertEqual(counts["persist_event"], 1)
        for kind in (
            "get_pdus",
            "get_have_events",
            "get_event_meta",
            "get_state_groups_for_events",
            "get_room_head",
        ):
            self.assertEqual(counts[kind], 0, kind)
        self.assertEqual(self.s.timeline("a.test", self.room)[-1].event_id, event.event_id)

    def test_resent_pdu_is_known(self) -> None:
        """A PDU sent again in another transaction is answered {} and stored once."""
        [event] = self.messages(1)
        self.s.send_txn("b.test", "a.test", "t1", [event])
        counts = self.count_transactions()
        _, body = self.s.send_txn("b.test", "a.test", "t2", [event])
        self.assertEqual(body["pdus"], {event.event_id: {}})
        self.assertEqual(counts["persist_event"], 0)
        ids = [e.event_id for e in self.s.timeline("a.test", self.room)]
        self.assertEqual(ids.count(event.event_id), 1)

    def test_read_ahead_is_dropped_by_a_persist(self) -> None:
        """The event meta and pending redactions read ahead are not served once a persist
        may have changed them."""
        [message] = self.messages(1)
        redaction = self.s.forge(
            "b.test",
            "a.test",
            self.room,
            self.bob,
            "m.room.redaction",
            {"redacts": message.event_id},
            prev_events=[self.join],
        )
        meta, head = self.s.run(self.store.get_persist_context(message.event_id, self.room))
        self.assertIsNone(meta)
        self.assertIsNotNone(head)
        # The redaction arrives first: it waits for its target.
        writer = self.s["a.test"].hs.rooms.writer
        self.s.run(writer.persist_event(redaction))
        self.assertEqual(redaction.redacts, message.event_id)
        self.assertEqual(
            self.s.run(self.store.get_pending_redactions(message.event_id)), [redaction.event_id]
        )
        # The message itself, through another path than the read-ahead's caller.
        self.s.run(writer.persist_event(message))
        found = self.s.run(self.store.get_event_meta([message.event_id]))
        self.assertEqual(found[message.event_id].redacted_by, redaction.event_id)

    def test_read_ahead_is_served_once(self) -> None:
        [message] = self.messages(1)
        self.s.run(self.store.get_persist_context(message.event_id, self.room))
        counts = self.count_transactions()
        self.assertEqual(self.s.run(self.store.get_event_meta([message.event_id])), {})
        self.assertEqual(self.s.run(self.store.get_pending_redactions(message.event_id)), [])
        self.assertEqual(sum(counts.values()), 0)
        self.s.run(self.store.get_event_meta([message.event_id]))
        self.assertEqual(counts["get_event_meta"], 1)


class InboundCostTestsPostgres(InboundCostTests):
    engine = Engine.POSTGRES
