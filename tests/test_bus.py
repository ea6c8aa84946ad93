"""The event bus: next-turn delivery, coalescing, isolation and durable replay."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ruma.bus import DurableSubscriber, EventBus, StreamRow
from ruma.storage.database import Database, Txn
from tests.sync.dbtest import PostgresDB, SQLiteDB


def write(db: Database, kind: str = "test", ref: str | None = None) -> int:
    """Commit one stream row and return its position (inline DB: already committed)."""

    def txn_fn(txn: Txn) -> int:
        return txn.next_stream_position(kind, room_id="!r", user_id="@u:hs", ref=ref)

    d = db.run("write_test", txn_fn)
    result: list[int] = []
    d.addCallback(result.append)
    return result[0]


class Recorder(DurableSubscriber):
    def __init__(self, name: str, bus: EventBus, fail_on: set[str] | None = None) -> None:
        super().__init__(name, bus)
        self.rows: list[StreamRow] = []
        self.fail_on = fail_on or set()

    async def handle_rows(self, rows: list[StreamRow]) -> None:
        for row in rows:
            if row.ref in self.fail_on:
                raise RuntimeError(f"cannot handle {row.ref}")
        self.rows.extend(rows)


class BusTestsMixin:
    def setUp(self) -> None:
        self.clock = Clock()
        self.db = self.make_db()  # type: ignore[attr-defined]
        self.bus = EventBus(self.clock, self.db)
        self.bus.start()

    def test_delivery_on_next_turn(self) -> None:
        """A subscriber is never called inside the committing code, only on the next turn."""
        seen: list[int] = []
        self.bus.subscribe("s", seen.append)
        pos = write(self.db)
        self.assertEqual(seen, [])  # type: ignore[attr-defined]
        self.clock.advance(0)
        self.assertEqual(seen, [pos])  # type: ignore[attr-defined]

    def test_coalesced_and_ordered(self) -> None:
        """Positions reach every subscriber in increasing order, several writes coalesced."""
        a: list[int] = []
        b: list[int] = []
        self.bus.subscribe("a", a.append)
        self.bus.subscribe("b", b.append)
        write(self.db)
        p2 = write(self.db)
        self.clock.advance(0)
        p3 = write(self.db)
        self.clock.advance(0)
        self.assertEqual(a, [p2, p3])  # type: ignore[attr-defined]
        self.assertEqual(b, [p2, p3])  # type: ignore[attr-defined]

    def test_failing_subscriber_isolated(self) -> None:
        """One subscriber raising is logged; the others and its own later deliveries go on."""
        good: list[int] = []
        bad_calls: list[int] = []

        def bad(pos: int) -> None:
            bad_calls.append(pos)
            raise ValueError("boom")

        self.bus.subscribe("bad", bad)
        self.bus.subscribe("good", good.append)
        p1 = write(self.db)
        self.clock.advance(0)
        p2 = write(self.db)
        self.clock.advance(0)
        self.assertEqual(good, [p1, p2])  # type: ignore[attr-defined]
        self.assertEqual(bad_calls, [p1, p2])  # type: ignore[attr-defined]
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)  # type: ignore[attr-defined]

    def test_slow_subscriber_does_not_block(self) -> None:
        """A subscriber still busy is called again with the newest position when it finishes,
        while the others keep receiving."""
        gate: Deferred[None] = Deferred()
        slow: list[int] = []
        fast: list[int] = []

        async def slow_cb(pos: int) -> None:
            slow.append(pos)
            if len(slow) == 1:
                await gate

        self.bus.subscribe("slow", slow_cb)
        self.bus.subscribe("fast", fast.append)
        p1 = write(self.db)
        self.clock.advance(0)
        p2 = write(self.db)
        self.clock.advance(0)
        p3 = write(self.db)
        self.clock.advance(0)
        self.assertEqual(fast, [p1, p2, p3])  # type: ignore[attr-defined]
        self.assertEqual(slow, [p1])  # type: ignore[attr-defined]
        gate.callback(None)
        self.assertEqual(slow, [p1, p3])  # type: ignore[attr-defined]

    def test_cancelled_subscription(self) -> None:
        """After cancel() a subscriber hears nothing more."""
        seen: list[int] = []
        sub = self.bus.subscribe("s", seen.append)
        write(self.db)
        sub.cancel()
        self.clock.advance(0)
        self.assertEqual(seen, [])  # type: ignore[attr-defined]

    def test_durable_replay_after_restart(self) -> None:
        """A durable subscriber that stops (a crash) gets every row it had not finished,
        once, when a new process starts on the same database."""
        rec = Recorder("appservice:x", self.bus, fail_on={"b"})
        self.successResultOf(Deferred.fromCoroutine(rec.start()))  # type: ignore[attr-defined]
        write(self.db, ref="a")
        self.clock.advance(0)
        write(self.db, ref="b")  # the handler fails on this one: not recorded as handled
        write(self.db, ref="c")
        self.clock.advance(0)
        self.assertEqual([r.ref for r in rec.rows], ["a"])  # type: ignore[attr-defined]
        self.flushLoggedErrors(RuntimeError)  # type: ignore[attr-defined]
        self.successResultOf(Deferred.fromCoroutine(rec.stop()))  # type: ignore[attr-defined]
        self.bus.stop()
        write(self.db, ref="d")  # written while nobody listens

        # "Restart": a fresh database object, bus and subscriber on the same data.
        db2 = self.make_db()  # type: ignore[attr-defined]
        bus2 = EventBus(self.clock, db2)
        bus2.start()
        rec2 = Recorder("appservice:x", bus2)
        self.successResultOf(Deferred.fromCoroutine(rec2.start()))  # type: ignore[attr-defined]
        self.clock.advance(0)
        self.assertEqual([r.ref for r in rec2.rows], ["b", "c", "d"])  # type: ignore[attr-defined]
        e = write(db2, ref="e")
        self.clock.advance(0)
        self.assertEqual([r.ref for r in rec2.rows], ["b", "c", "d", "e"])  # type: ignore[attr-defined]
        self.assertEqual(rec2.position, e)  # type: ignore[attr-defined]

    def test_durable_retry_after_delay(self) -> None:
        """A failed batch is retried on the clock even if nothing new is written."""
        rec = Recorder("retry", self.bus, fail_on={"x"})
        self.successResultOf(Deferred.fromCoroutine(rec.start()))  # type: ignore[attr-defined]
        write(self.db, ref="x")
        self.clock.advance(0)
        self.assertEqual(rec.rows, [])  # type: ignore[attr-defined]
        self.flushLoggedErrors(RuntimeError)  # type: ignore[attr-defined]
        rec.fail_on = set()
        self.clock.advance(rec.retry_delay)
        self.assertEqual([r.ref for r in rec.rows], ["x"])  # type: ignore[attr-defined]

    def test_new_durable_subscriber_starts_at_current(self) -> None:
        """A subscriber that never ran is not handed the whole history."""
        write(self.db, ref="old")
        self.clock.advance(0)
        rec = Recorder("fresh", self.bus)
        self.successResultOf(Deferred.fromCoroutine(rec.start()))  # type: ignore[attr-defined]
        write(self.db, ref="new")
        self.clock.advance(0)
        self.assertEqual([r.ref for r in rec.rows], ["new"])  # type: ignore[attr-defined]

    def test_batches(self) -> None:
        """Replay in batches of batch_size hands over every row exactly once, in order."""
        rec = Recorder("batched", self.bus)
        rec.batch_size = 3
        self.successResultOf(Deferred.fromCoroutine(rec.start()))  # type: ignore[attr-defined]
        refs = [str(i) for i in range(10)]
        for r in refs:
            write(self.db, ref=r)
        self.clock.advance(0)
        self.assertEqual([r.ref for r in rec.rows], refs)  # type: ignore[attr-defined]


class BusSQLiteTests(BusTestsMixin, SQLiteDB):
    pass


class BusPostgresTests(BusTestsMixin, PostgresDB):
    pass
