"""A burst from one server: 2,000 PDUs in 40 transactions, each sent as soon as the last
was answered. Every PDU is accepted and in the timeline; none is dropped."""

from __future__ import annotations

import time

from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.events import Event
from ruma.storage.database import Engine
from tests.federation.receiver_fixture import Servers


class BurstTests(SynchronousTestCase):
    def test_two_thousand_pdus_in_forty_transactions(self) -> None:
        """2,000 chained messages from b.test, 50 per transaction: all answered {} and all
        2,000 in a.test's timeline in order (no queue that overflows)."""
        s = Servers(self)
        _, alice_tok = s["a.test"].register("alice")
        room = s.create_room("a.test", alice_tok)
        bob = "@bob:b.test"
        join = s.forge("b.test", "a.test", room, bob, "m.room.member", {"membership": "join"},
                       bob)
        self.assertEqual(s.send_txn("b.test", "a.test", "join", [join])[1],
                         {"pdus": {join.event_id: {}}})
        auth = list(s.run(s.store("a.test").get_pdus(join.auth_event_ids)).values()) + [join]
        auth = [e for e in auth if e.type != "m.room.join_rules"]
        events: list[Event] = []
        prev = join
        for i in range(2000):
            prev = s.forge("b.test", "a.test", room, bob, "m.room.message",
                           {"msgtype": "m.text", "body": f"burst {i}"},
                           prev_events=[prev], auth_events=auth)
            events.append(prev)
        started = time.monotonic()
        for t in range(40):
            batch = events[t * 50:(t + 1) * 50]
            status, body = s.send_txn("b.test", "a.test", f"burst{t}", batch)
            self.assertEqual(status, 200)
            self.assertEqual(body["pdus"], {e.event_id: {} for e in batch}, f"transaction {t}")
        elapsed = time.monotonic() - started
        timeline = [e.event_id for e in s.timeline("a.test", room)]
        self.assertEqual(timeline[-2000:], [e.event_id for e in events])
        # No fetches were needed: every PDU's prev event came before it.
        self.assertFalse([u for _, u in s.requests if b"get_missing_events" in u])
        print(f"\n2,000 PDUs accepted in {elapsed:.1f} s ({2000 / elapsed:.0f} PDUs/s)")


class BurstTestsPostgres(BurstTests):
    """The same on PostgreSQL."""

    engine = Engine.POSTGRES
