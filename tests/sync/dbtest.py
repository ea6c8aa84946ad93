"""Real databases for storage tests: SQLite in a temp file, PostgreSQL in a fresh schema.

A test class mixes in ``SQLiteDB`` or ``PostgresDB`` and calls ``self.make_db()``. PostgreSQL
tests skip when the server is unreachable, unless ``CI=true`` (then they fail).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ruma.storage.database import Database, Engine

PG_ARGS: dict[str, Any] = {"host": "127.0.0.1", "user": "postgres", "dbname": "test"}


class SQLiteDB(SynchronousTestCase):
    engine = Engine.SQLITE

    def db_args(self) -> str | dict[str, Any]:
        if not hasattr(self, "_db_path"):
            self._db_path = self.mktemp()
        return self._db_path

    def make_db(self) -> Database:
        """A prepared database; calling it again opens the same data (a "restart")."""
        db = Database.inline(Engine.SQLITE, self.db_args())
        self.successResultOf(defer_prepare(db))
        self.addCleanup(db.close)
        return db


class PostgresDB(SynchronousTestCase):
    engine = Engine.POSTGRES

    def db_args(self) -> str | dict[str, Any]:
        if not hasattr(self, "_pg_schema"):
            try:
                import psycopg2

                conn = psycopg2.connect(**PG_ARGS)
            except Exception as e:
                if os.environ.get("CI") == "true":
                    raise
                raise SkipTest(f"PostgreSQL unreachable: {e}") from e
            schema = "t_" + uuid.uuid4().hex
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE SCHEMA {schema}")
            conn.close()
            self._pg_schema = schema

            def drop() -> None:
                c = psycopg2.connect(**PG_ARGS)
                c.autocommit = True
                with c.cursor() as cur:
                    cur.execute(f"DROP SCHEMA {schema} CASCADE")
                c.close()

            self.addCleanup(drop)
        return dict(PG_ARGS, options=f"-c search_path={self._pg_schema}")

    def make_db(self) -> Database:
        db = Database.inline(Engine.POSTGRES, self.db_args())
        self.successResultOf(defer_prepare(db))
        self.addCleanup(db.close)
        return db


def defer_prepare(db: Database) -> Any:
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(db.prepare())
