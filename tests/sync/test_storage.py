"""The sync-side stores on SQLite and PostgreSQL: receipts, account data, filters, presence,
typing rows, and that each write takes a stream position in the same transaction."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ruma.storage.account_data import AccountDataStore
from ruma.storage.bus import BusStore
from ruma.storage.filters import FilterStore
from ruma.storage.presence import PresenceStore
from ruma.storage.receipts import ReceiptStore
from ruma.storage.sync import SyncStore
from tests.sync.dbtest import PostgresDB, SQLiteDB


class StoreTestsMixin:
    def setUp(self) -> None:
        self.db = self.make_db()  # type: ignore[attr-defined]

    def run_(self, coro: Any) -> Any:
        return self.successResultOf(Deferred.fromCoroutine(coro))  # type: ignore[attr-defined]

    def stream(self) -> list[tuple[str, str | None, str | None, str | None]]:
        rows = self.run_(BusStore(self.db).read_stream(0, 10**9, 1000))
        return [(r.kind, r.room_id, r.user_id, r.ref) for r in rows]

    def test_receipts(self) -> None:
        """A receipt is stored with a position and a stream row; the same receipt again is a
        no-op; threads are separate; changes are read by position range."""
        store = ReceiptStore(self.db)
        p1 = self.run_(store.set_receipt("!r:hs", "m.read", "@a:hs", "", "$e1", 1000))
        self.assertIsNotNone(p1)  # type: ignore[attr-defined]
        self.assertIsNone(  # type: ignore[attr-defined]
            self.run_(store.set_receipt("!r:hs", "m.read", "@a:hs", "", "$e1", 2000))
        )
        p2 = self.run_(store.set_receipt("!r:hs", "m.read", "@a:hs", "main", "$e2", 3000))
        p3 = self.run_(store.set_receipt("!r:hs", "m.read", "@a:hs", "", "$e3", 4000))
        self.assertEqual(  # type: ignore[attr-defined]
            self.stream(),
            [
                ("receipt", "!r:hs", "@a:hs", "$e1"),
                ("receipt", "!r:hs", "@a:hs", "$e2"),
                ("receipt", "!r:hs", "@a:hs", "$e3"),
            ],
        )
        all_ = self.run_(store.get_receipts_for_rooms(["!r:hs", "!other:hs"], 0, p3))
        self.assertEqual(  # type: ignore[attr-defined]
            sorted((r.thread_id, r.event_id, r.ts) for r in all_),
            [("", "$e3", 4000), ("main", "$e2", 3000)],
        )
        since = self.run_(store.get_receipts_for_rooms(["!r:hs"], p2, p3))
        self.assertEqual([r.event_id for r in since], ["$e3"])  # type: ignore[attr-defined]
        self.assertEqual(  # type: ignore[attr-defined]
            len(self.run_(store.get_user_receipts("@a:hs", "!r:hs"))), 2
        )

    def test_account_data(self) -> None:
        """Global and room account data, replaced in place, with changes by position."""
        store = AccountDataStore(self.db)
        p1 = self.run_(store.set_account_data("@a:hs", None, "x", {"v": 1}))
        self.run_(store.set_account_data("@a:hs", "!r:hs", "x", {"v": "room"}))
        p3 = self.run_(store.set_account_data("@a:hs", None, "x", {"v": 2}))
        self.assertEqual(self.run_(store.get_account_data("@a:hs", None, "x")), {"v": 2})  # type: ignore[attr-defined]
        self.assertEqual(  # type: ignore[attr-defined]
            self.run_(store.get_account_data("@a:hs", "!r:hs", "x")), {"v": "room"}
        )
        self.assertIsNone(self.run_(store.get_account_data("@b:hs", None, "x")))  # type: ignore[attr-defined]
        changes = self.run_(store.get_account_data_changes("@a:hs", p1, p3))
        self.assertEqual(changes.global_data, {"x": {"v": 2}})  # type: ignore[attr-defined]
        self.assertEqual(changes.rooms, {"!r:hs": {"x": {"v": "room"}}})  # type: ignore[attr-defined]
        self.assertEqual(  # type: ignore[attr-defined]
            [k for k, *_ in self.stream()], ["account_data"] * 3
        )

    def test_filters(self) -> None:
        """Filter IDs count per user; an identical filter reuses its ID."""
        store = FilterStore(self.db)
        a0 = self.run_(store.add_filter("@a:hs", {"x": 1}))
        a1 = self.run_(store.add_filter("@a:hs", {"x": 2}))
        b0 = self.run_(store.add_filter("@b:hs", {"x": 1}))
        self.assertEqual((a0, a1, b0), (0, 1, 0))  # type: ignore[attr-defined]
        self.assertEqual(self.run_(store.add_filter("@a:hs", {"x": 2})), 1)  # type: ignore[attr-defined]
        self.assertEqual(self.run_(store.get_filter("@a:hs", 1)), {"x": 2})  # type: ignore[attr-defined]
        self.assertIsNone(self.run_(store.get_filter("@a:hs", 5)))  # type: ignore[attr-defined]

    def test_presence(self) -> None:
        """Presence rows are upserted with positions; changes and the active set are read."""
        store = PresenceStore(self.db)
        r1 = self.run_(store.set_presence("@a:hs", "online", None, 1000, True))
        r2 = self.run_(store.set_presence("@b:hs", "offline", "gone", 0, False))
        r3 = self.run_(store.set_presence("@a:hs", "unavailable", "afk", 1000, False))
        got = self.run_(store.get_presence("@a:hs"))
        self.assertEqual((got.state, got.status_msg, got.stream_pos), ("unavailable", "afk", r3.stream_pos))  # type: ignore[attr-defined]
        self.assertEqual(  # type: ignore[attr-defined]
            [r.user_id for r in self.run_(store.get_all_changes(r1.stream_pos, r3.stream_pos))],
            ["@b:hs", "@a:hs"],
        )
        self.assertEqual(  # type: ignore[attr-defined]
            [r.user_id for r in self.run_(store.get_presence_changes(["@b:hs"], 0, r3.stream_pos))],
            ["@b:hs"],
        )
        self.assertEqual(  # type: ignore[attr-defined]
            [r.user_id for r in self.run_(store.get_active_presence())], ["@a:hs"]
        )
        self.assertLess(r1.stream_pos, r2.stream_pos)  # type: ignore[attr-defined]

    def test_typing_rows(self) -> None:
        """Typing changes take positions; rooms with changes in a range are found."""
        store = SyncStore(self.db)
        p1 = self.run_(store.record_typing_change("!a:hs"))
        p2 = self.run_(store.record_typing_change("!b:hs"))
        self.assertEqual(  # type: ignore[attr-defined]
            self.run_(store.get_rooms_with_changes("typing", ["!a:hs", "!b:hs"], 0, p2)),
            {"!a:hs", "!b:hs"},
        )
        self.assertEqual(  # type: ignore[attr-defined]
            self.run_(store.get_rooms_with_changes("typing", ["!a:hs", "!b:hs"], p1, p2)),
            {"!b:hs"},
        )
        self.assertEqual(  # type: ignore[attr-defined]
            self.run_(store.get_rooms_with_changes("event", ["!a:hs"], 0, p2)), set()
        )

    def test_subscriber_positions(self) -> None:
        """A durable subscriber's position is inserted then updated."""
        store = BusStore(self.db)
        self.assertIsNone(self.run_(store.get_subscriber_position("s")))  # type: ignore[attr-defined]
        self.run_(store.set_subscriber_position("s", 5))
        self.run_(store.set_subscriber_position("s", 9))
        self.assertEqual(self.run_(store.get_subscriber_position("s")), 9)  # type: ignore[attr-defined]


class SQLiteStoreTests(StoreTestsMixin, SQLiteDB):
    pass


class PostgresStoreTests(StoreTestsMixin, PostgresDB):
    pass
