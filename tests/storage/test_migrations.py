"""Schema migrations: late-arriving lower-numbered migrations are still applied."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from ruma.storage.database import Txn
from tests.storage.engines import EngineTestCase, PostgresEngine, SQLiteEngine


class MigrationContract(EngineTestCase):
    def test_missing_lower_migration_is_applied(self) -> None:
        """A database that recorded a higher migration but not a lower one (the lower file
        arrived later) gets the lower one on the next start."""
        db = self.make_db()

        def forget_accounts(t: Txn) -> None:
            for table in ("access_tokens", "devices", "registration_token_uses", "users"):
                t.execute(f"DROP TABLE {table}")
            t.execute("DELETE FROM schema_version WHERE version = 2")

        self.successResultOf(db.run("forget_accounts", forget_accounts))
        db.close()
        again = self.make_db()
        rows = self.successResultOf(
            again.run("get_users", lambda t: t.select("SELECT COUNT(*) FROM users"))
        )
        self.assertEqual(rows, [(0,)])
        versions = self.successResultOf(
            again.run("get_versions", lambda t: t.select("SELECT version FROM schema_version"))
        )
        self.assertEqual(sorted(v for (v,) in versions).count(2), 1)

    def test_prepare_is_idempotent(self) -> None:
        """Preparing an up-to-date database applies nothing twice."""
        db = self.make_db()
        before = self.successResultOf(
            db.run("get_versions", lambda t: t.select("SELECT version FROM schema_version"))
        )
        self.successResultOf(Deferred.fromCoroutine(db.prepare()))
        after = self.successResultOf(
            db.run("get_versions", lambda t: t.select("SELECT version FROM schema_version"))
        )
        self.assertEqual(sorted(before), sorted(after))


class MigrationSQLiteTests(MigrationContract, SQLiteEngine):
    pass


class MigrationPostgresTests(MigrationContract, PostgresEngine):
    pass


del MigrationContract
