"""The appservice store contract, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ruma.storage.appservice import EPHEMERAL, EVENT, AppserviceStore, QueueItem
from tests.storage.engines import PostgresEngine, SQLiteEngine


class AppserviceStoreContract:
    make_db: Any
    successResultOf: Any
    assertEqual: Any
    assertIsNone: Any

    def wait(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))

    def store(self) -> AppserviceStore:
        return AppserviceStore(self.make_db())

    def test_queue_txn_ack(self) -> None:
        """Items queue in order; a transaction is fixed (same id and items until accepted);
        accepting it drops its items and moves the acknowledged position."""
        s = self.store()
        self.wait(s.ensure_appservices(["a"], 10))
        items = [QueueItem("a", p, 0, EVENT, event_id=f"$e{p}") for p in range(11, 16)]
        items.append(QueueItem("a", 15, 1, EPHEMERAL, content={"type": "m.typing"}))
        self.assertEqual(self.wait(s.enqueue(items)), {"a"})
        first = self.wait(s.next_txn("a", 3, 0))
        self.assertEqual([i.position for i in first.items], [11, 12, 13])
        again = self.wait(s.next_txn("a", 3, 0))
        self.assertEqual((again.txn_id, again.items), (first.txn_id, first.items))
        self.wait(s.complete_txn(first))
        second = self.wait(s.next_txn("a", 10, 0))
        self.assertEqual(second.txn_id, first.txn_id + 1)
        self.assertEqual([(i.position, i.seq) for i in second.items], [(14, 0), (15, 0), (15, 1)])
        self.assertEqual(second.items[-1].content, {"type": "m.typing"})
        self.wait(s.complete_txn(second))
        self.assertIsNone(self.wait(s.next_txn("a", 10, 0)))
        state = self.wait(s.get_state("a"))
        self.assertEqual((state.acked_position, state.last_txn_id), (15, second.txn_id))

    def test_enqueue_is_idempotent(self) -> None:
        """Replayed rows (already queued, in flight or delivered) are not queued again."""
        s = self.store()
        self.wait(s.ensure_appservices(["a"], 0))
        items = [QueueItem("a", p, 0, EVENT, event_id=f"$e{p}") for p in (1, 2, 3)]
        self.wait(s.enqueue(items))
        self.assertEqual(self.wait(s.enqueue(items)), set())
        txn = self.wait(s.next_txn("a", 2, 0))
        self.wait(s.complete_txn(txn))
        self.assertEqual(self.wait(s.enqueue(items)), set())
        rest = self.wait(s.next_txn("a", 10, 0))
        self.assertEqual([i.position for i in rest.items], [3])

    def test_state_survives_reopen(self) -> None:
        """The transaction in flight and the backoff survive a restart."""
        s = self.store()
        self.wait(s.ensure_appservices(["a", "b"], 5))
        self.wait(s.enqueue([QueueItem("a", 6, 0, EVENT, event_id="$x")]))
        txn = self.wait(s.next_txn("a", 10, 0))
        self.wait(s.set_backoff("a", 3, 12345))
        s2 = AppserviceStore(self.make_db())
        self.assertEqual(self.wait(s2.next_txn("a", 10, 0)).txn_id, txn.txn_id)
        states = self.wait(s2.ensure_appservices(["a", "b"], 99))
        self.assertEqual((states["a"].failures, states["a"].retry_at_ms), (3, 12345))
        self.assertEqual(states["b"].acked_position, 5)
        self.assertEqual(self.wait(s2.get_backlog()), {"a": 1})


class AppserviceStoreSQLiteTests(AppserviceStoreContract, SQLiteEngine):
    pass


class AppserviceStorePostgresTests(AppserviceStoreContract, PostgresEngine):
    pass
