"""The bus's shared row window and durable subscribers' coalesced position writes."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from ruma.bus import EventBus
from ruma.storage import bus as bus_module
from ruma.storage.bus import BusStore
from tests.sync.dbtest import PostgresDB, SQLiteDB
from tests.test_bus import Recorder, write


class BatchingTestsMixin:
    def setUp(self) -> None:
        self.clock = Clock()
        self.db = self.make_db()  # type: ignore[attr-defined]
        self.bus = EventBus(self.clock, self.db)
        self.bus.start()
        self.reads = 0
        real_run = self.db.run

        def counting_run(desc: str, func: Any, *args: Any) -> Any:
            if desc == "read_stream":
                self.reads += 1
            return real_run(desc, func, *args)

        self.db.run = counting_run

    def call(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))  # type: ignore[attr-defined]

    def stored(self, name: str) -> int | None:
        return self.call(BusStore(self.db).get_subscriber_position(name))  # type: ignore[no-any-return]

    def test_window_matches_the_table(self) -> None:
        """Any range read through the window (ahead, behind, across the edge, limited) gives
        exactly the rows a fresh store reads from the table."""
        store = BusStore(self.db)
        positions = [write(self.db, ref=str(i)) for i in range(30)]
        top = positions[-1]
        base = positions[0] - 1
        cases = [(base, base + 10, 100), (base + 5, top, 7), (base + 2, base + 4, 100),
                 (base + 10, top, 100), (base, top, 100), (top - 3, top, 2), (base + 29, top, 5)]
        for from_pos, to_pos, limit in cases:
            expect = self.call(BusStore(self.db).read_stream(from_pos, to_pos, limit))
            got = self.call(store.read_stream(from_pos, to_pos, limit))
            self.assertEqual(got, expect, (from_pos, to_pos, limit))  # type: ignore[attr-defined]

    def test_window_trimmed(self) -> None:
        """Past the window's size the oldest rows are dropped and still read correctly."""
        self.patch(bus_module, "ROW_WINDOW", 5)  # type: ignore[attr-defined]
        store = BusStore(self.db)
        positions = [write(self.db, ref=str(i)) for i in range(12)]
        base = positions[0] - 1
        for end in range(1, 13):
            self.call(store.read_stream(base + end - 1, base + end, 100))
        self.assertEqual(  # type: ignore[attr-defined]
            [r.ref for r in self.call(store.read_stream(base, base + 12, 100))],
            [str(i) for i in range(12)],
        )

    def test_subscribers_share_one_read(self) -> None:
        """Three durable subscribers woken by one write read the stream table once."""
        recs = [Recorder(f"r{i}", self.bus) for i in range(3)]
        for rec in recs:
            self.call(rec.start())
        self.clock.advance(0)
        self.reads = 0
        write(self.db, ref="a")
        self.clock.advance(0)
        for rec in recs:
            self.assertEqual([r.ref for r in rec.rows], ["a"])  # type: ignore[attr-defined]
        self.assertEqual(self.reads, 1)  # type: ignore[attr-defined]

    def test_position_written_later_and_on_stop(self) -> None:
        """The handled position reaches the database after position_flush_delay, not per
        batch, and at once when the subscriber stops."""
        rec = Recorder("flush", self.bus)
        self.call(rec.start())
        start = self.stored("flush")
        a = write(self.db, ref="a")
        self.clock.advance(0)
        self.assertEqual(rec.position, a)  # type: ignore[attr-defined]
        self.assertEqual(self.stored("flush"), start)  # type: ignore[attr-defined]
        self.clock.advance(rec.position_flush_delay)
        self.assertEqual(self.stored("flush"), a)  # type: ignore[attr-defined]
        b = write(self.db, ref="b")
        self.clock.advance(0)
        self.call(rec.stop())
        self.assertEqual(self.stored("flush"), b)  # type: ignore[attr-defined]
        self.assertEqual(self.clock.getDelayedCalls(), [])  # type: ignore[attr-defined]

    def test_crash_before_flush_replays(self) -> None:
        """A crash before the position was stored hands the rows over again (at least
        once), and nothing is lost."""
        rec = Recorder("crash", self.bus)
        self.call(rec.start())
        write(self.db, ref="a")
        self.clock.advance(0)
        self.assertEqual([r.ref for r in rec.rows], ["a"])  # type: ignore[attr-defined]
        # No stop(): the process dies. A new one starts on the same database.
        db2 = self.make_db()  # type: ignore[attr-defined]
        bus2 = EventBus(Clock(), db2)
        bus2.start()
        rec2 = Recorder("crash", bus2)
        self.call(rec2.start())
        bus2.clock.advance(0)  # type: ignore[attr-defined]
        self.assertEqual([r.ref for r in rec2.rows], ["a"])  # type: ignore[attr-defined]


class BatchingSQLiteTests(BatchingTestsMixin, SQLiteDB):
    pass


class BatchingPostgresTests(BatchingTestsMixin, PostgresDB):
    pass
