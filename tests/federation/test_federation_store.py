"""FederationInboundStore on SQLite and PostgreSQL: transaction answers kept and pruned."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from ruma.storage.federation import FederationInboundStore
from tests.storage.engines import EngineTestCase, PostgresEngine, SQLiteEngine


class InboundTxnContract(EngineTestCase if TYPE_CHECKING else object):
    def test_round_trip_first_answer_wins_and_prune(self) -> None:
        """An answer is read back per (origin, txn id); storing again keeps the first; pruning
        removes only older ones; a restart (reopening the database) keeps them."""
        store = FederationInboundStore(self.make_db())

        def run(coro: object) -> object:
            return self.successResultOf(Deferred.fromCoroutine(coro))  # type: ignore[arg-type]

        self.assertIsNone(run(store.get_txn_response("a.test", "t1")))
        run(store.store_txn_response("a.test", "t1", {"pdus": {"$x": {}}}, 1000))
        run(store.store_txn_response("a.test", "t1", {"pdus": {}}, 2000))
        run(store.store_txn_response("b.test", "t1", {"pdus": {"$y": {"error": "no"}}}, 3000))
        self.assertEqual(run(store.get_txn_response("a.test", "t1")), {"pdus": {"$x": {}}})
        store2 = FederationInboundStore(self.make_db())
        self.assertEqual(
            run(store2.get_txn_response("b.test", "t1")), {"pdus": {"$y": {"error": "no"}}}
        )
        self.assertEqual(run(store2.prune_txns(2500)), 1)
        self.assertIsNone(run(store2.get_txn_response("a.test", "t1")))
        self.assertIsNotNone(run(store2.get_txn_response("b.test", "t1")))


class InboundTxnSQLiteTests(InboundTxnContract, SQLiteEngine):
    pass


class InboundTxnPostgresTests(InboundTxnContract, PostgresEngine):
    pass


class PrunerTests(SQLiteEngine):
    def test_pruner_forgets_week_old_transactions_daily(self) -> None:
        """The pruner service runs at start and daily, dropping answers older than 7 days."""
        from twisted.internet.task import Clock

        from ruma.federation.inbound.pruning import TransactionPruner

        clock = Clock()
        clock.advance(30 * 86400)
        store = FederationInboundStore(self.make_db())
        now = int(clock.seconds() * 1000)
        for txn, age_days in (("old", 8), ("new", 1)):
            self.successResultOf(Deferred.fromCoroutine(
                store.store_txn_response("a.test", txn, {"pdus": {}}, now - age_days * 86400_000)))
        pruner = TransactionPruner(clock, store)
        pruner.startService()
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(
            store.get_txn_response("a.test", "old"))))
        self.assertIsNotNone(self.successResultOf(Deferred.fromCoroutine(
            store.get_txn_response("a.test", "new"))))
        clock.advance(7 * 86400)
        self.assertIsNone(self.successResultOf(Deferred.fromCoroutine(
            store.get_txn_response("a.test", "new"))))
        pruner.stopService()
