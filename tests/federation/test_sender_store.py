"""The sender's queue: batch cutting (limits, order, coalescing, expiry) and the store
contract (idempotent enqueue, pending transactions, acknowledgement) on both engines."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from ruma.federation.sender.transactions import MAX_EDUS, MAX_PDUS, build_batch
from ruma.storage.federation_sender import (
    FederationSenderStore,
    OutboxItem,
    PendingTransaction,
    QueuedItem,
)
from tests.storage.engines import PostgresEngine, SQLiteEngine


def pdu(position: int) -> QueuedItem:
    return QueuedItem(position, 0, f"$e{position}", {"n": position}, None, None, None, None)


def edu(
    position: int,
    seq: int = 1,
    key: str | None = None,
    expires: int | None = None,
    n: Any = None,
) -> QueuedItem:
    return QueuedItem(
        position, seq, None, None, "m.test", {"n": position if n is None else n}, key, expires
    )


class BuildBatchTests(SynchronousTestCase):
    def test_120_pdus_make_three_batches_in_order(self) -> None:
        """120 queued PDUs are cut into batches of 50, 50 and 20, in stream order, each
        batch's bounds starting where the previous one ended."""
        items = [pdu(p) for p in range(1, 121)]
        after, sizes, seen = 0, [], []
        while True:
            batch = build_batch([i for i in items if i.position > after], after, 0)
            if batch is None:
                break
            self.assertEqual(batch.after, after)
            sizes.append(len(batch.pdus))
            seen.extend(p["n"] for p in batch.pdus)
            after = batch.upto
        self.assertEqual(sizes, [50, 50, 20])
        self.assertEqual(seen, list(range(1, 121)))

    def test_edu_limit(self) -> None:
        """At most 100 EDUs go in one transaction."""
        batch = build_batch([edu(p) for p in range(1, 251)], 0, 0)
        assert batch is not None
        self.assertEqual(len(batch.edus), MAX_EDUS)
        self.assertEqual(batch.upto, 100)

    def test_mixed_limits(self) -> None:
        """PDUs and EDUs have separate limits: 50 PDUs and 100 EDUs fit together."""
        items = [pdu(p) for p in range(1, 51)] + [edu(p) for p in range(51, 151)]
        batch = build_batch(items, 0, 0)
        assert batch is not None
        self.assertEqual((len(batch.pdus), len(batch.edus)), (MAX_PDUS, MAX_EDUS))
        more = build_batch([pdu(1), *[pdu(p) for p in range(2, 52)]], 0, 0)
        assert more is not None
        self.assertEqual((len(more.pdus), more.upto), (50, 50))

    def test_a_position_is_never_split(self) -> None:
        """The PDU and EDUs of one stream position go in the same transaction."""
        items = [pdu(p) for p in range(1, 50)] + [edu(49, seq) for seq in range(1, 4)]
        items.append(pdu(50))
        items.extend(edu(50, seq) for seq in range(1, 3))
        items.append(pdu(51))
        batch = build_batch(items, 0, 0)
        assert batch is not None
        self.assertEqual(batch.upto, 50)
        self.assertEqual((len(batch.pdus), len(batch.edus)), (50, 5))

    def test_coalescing_keeps_the_newest(self) -> None:
        """Of EDUs sharing a coalesce key only the newest is sent; it does not count twice
        against the limit."""
        items = [edu(p, key="presence @a", n=p) for p in range(1, 200)] + [edu(200, n="x")]
        batch = build_batch(items, 0, 0)
        assert batch is not None
        self.assertEqual([e["content"]["n"] for e in batch.edus], [199, "x"])
        self.assertEqual(batch.upto, 200)

    def test_expired_edus_are_left_out_but_covered(self) -> None:
        """Expired EDUs are not sent but the batch's bounds cover them (not read again)."""
        batch = build_batch([edu(1, expires=10), edu(2, expires=1000)], 0, 500)
        assert batch is not None
        self.assertEqual([e["content"]["n"] for e in batch.edus], [2])
        self.assertEqual(batch.edu_expiry, (1000,))
        self.assertEqual(batch.upto, 2)

    def test_missing_pdu_is_skipped(self) -> None:
        """A queued PDU whose event is gone is left out rather than sent empty."""
        gone = QueuedItem(1, 0, "$gone", None, None, None, None, None)
        batch = build_batch([gone, pdu(2)], 0, 0)
        assert batch is not None
        self.assertEqual([p["n"] for p in batch.pdus], [2])

    def test_empty(self) -> None:
        """No rows, no batch."""
        self.assertIsNone(build_batch([], 0, 0))


class SenderStoreContract:
    """The sender store on a real database (``self.make_db()``)."""

    def setUp(self) -> None:
        self.db = self.make_db()  # type: ignore[attr-defined]
        self.store = FederationSenderStore(self.db)

    def run_sync(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))  # type: ignore[attr-defined]

    def assert_equal(self, a: Any, b: Any) -> None:
        self.assertEqual(a, b)  # type: ignore[attr-defined]

    def test_enqueue_is_idempotent(self) -> None:
        """Enqueueing the same rows twice (a replay after a crash) queues them once."""
        items = [OutboxItem("a.test", 5, event_id="$x"), OutboxItem("a.test", 6, 1, None,
                 "m.typing", {"k": 1}, "key", 99)]
        self.assert_equal(self.run_sync(self.store.enqueue(items, 1)), {"a.test"})
        self.assert_equal(self.run_sync(self.store.enqueue(items, 2)), set())
        queue = self.run_sync(self.store.read_queue("a.test", 0, 10))
        self.assert_equal([(q.position, q.seq) for q in queue], [(5, 0), (6, 1)])
        self.assert_equal(queue[1].edu_content, {"k": 1})
        self.assert_equal((queue[1].coalesce_key, queue[1].expires_ms), ("key", 99))

    def test_pending_and_ack(self) -> None:
        """A saved pending transaction survives a reopen of the database; acknowledging it
        moves the destination's position and drops the delivered rows only."""
        self.run_sync(self.store.enqueue(
            [OutboxItem("a.test", p, event_id=f"$e{p}") for p in (3, 4, 9)], 1))
        txn = PendingTransaction("t1", 0, 4, {"pdus": [{"x": 1}], "edus": []}, ())
        self.run_sync(self.store.save_pending("a.test", txn))
        reopened = FederationSenderStore(self.make_db())  # type: ignore[attr-defined]
        state = self.run_sync(reopened.get_destination("a.test"))
        self.assert_equal(state.pending, txn)
        self.assert_equal(self.run_sync(reopened.ack_pending("a.test", "other")), None)
        self.assert_equal(self.run_sync(reopened.ack_pending("a.test", "t1")), 4)
        state = self.run_sync(reopened.get_destination("a.test"))
        self.assert_equal((state.last_acked_position, state.pending), (4, None))
        queue = self.run_sync(reopened.read_queue("a.test", 4, 10))
        self.assert_equal([q.position for q in queue], [9])

    def test_replay_below_the_acknowledged_position_is_ignored(self) -> None:
        """Rows at or below what a destination already acknowledged are not queued again."""
        self.run_sync(self.store.enqueue([OutboxItem("a.test", 5, event_id="$x")], 1))
        self.run_sync(self.store.save_pending("a.test", PendingTransaction("t", 0, 5, {}, ())))
        self.run_sync(self.store.ack_pending("a.test", "t"))
        woken = self.run_sync(self.store.enqueue([OutboxItem("a.test", 5, event_id="$x")], 2))
        self.assert_equal(woken, set())
        self.assert_equal(self.run_sync(self.store.read_queue("a.test", 0, 10)), [])

    def test_backlog_and_backoff(self) -> None:
        """Destinations with queued rows are listed for start-up with their backoff state;
        an up destination has its backoff cleared."""
        self.run_sync(self.store.enqueue([OutboxItem("b.test", 1, event_id="$x"),
                                          OutboxItem("a.test", 1, event_id="$x")], 1))
        self.run_sync(self.store.set_backoff("b.test", 3, 5000, 100))
        backlog = self.run_sync(self.store.get_destinations_with_backlog())
        self.assert_equal([(d.destination, d.failures) for d in backlog],
                          [("a.test", 0), ("b.test", 3)])
        self.assert_equal(backlog[1].down_since_ms, 100)
        self.run_sync(self.store.set_backoff("b.test", 4, 9000, 200))
        state = self.run_sync(self.store.get_destination("b.test"))
        self.assert_equal((state.failures, state.retry_at_ms, state.down_since_ms), (4, 9000, 100))
        self.run_sync(self.store.set_backoff("b.test", 0, None, 300))
        state = self.run_sync(self.store.get_destination("b.test"))
        self.assert_equal((state.failures, state.retry_at_ms, state.down_since_ms), (0, None, None))

    def test_relays(self) -> None:
        """A relayed event remembers the server it came from; adding it twice is harmless."""
        self.run_sync(self.store.add_relay("$j", "b.test"))
        self.run_sync(self.store.add_relay("$j", "b.test"))
        self.assert_equal(self.run_sync(self.store.get_relay_origin("$j")), "b.test")
        self.assert_equal(self.run_sync(self.store.get_relay_origin("$other")), None)


class SenderStoreSQLiteTests(SenderStoreContract, SQLiteEngine):
    pass


class SenderStorePostgresTests(SenderStoreContract, PostgresEngine):
    pass
