"""What receiving a PDU costs in database transactions, and the read-ahead that makes it
cheap staying correct when something else is persisted in between."""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.events import Event
from ruma.storage.database import Engine
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
        """A transaction of 50 chained messages: one read and one write per PDU (plus the
        transaction's own bookkeeping), every PDU in the timeline."""
        events = self.messages(50)
        counts = self.count_transactions()
        _, body = self.s.send_txn("b.test", "a.test", "t1", events)
        self.assertEqual(body["pdus"], {e.event_id: {} for e in events})
        self.assertEqual(counts["get_persist_context"], 50)
        self.assertEqual(counts["persist_event"], 50)
        self.assertLessEqual(sum(counts.values()), 2 * 50 + 6, counts)
        timeline = [e.event_id for e in self.s.timeline("a.test", self.room)]
        self.assertEqual(timeline[-50:], [e.event_id for e in events])

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
