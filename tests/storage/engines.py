"""Real databases for storage tests, on both engines: the SQLite + PostgreSQL mixins.

Write the contract once as a plain mixin that calls ``self.make_db()``, then run it twice::

    class AccountStoreContract:
        def test_something(self) -> None:
            db = self.make_db()
            ...

    class AccountStoreSQLiteTests(AccountStoreContract, SQLiteEngine): ...
    class AccountStorePostgresTests(AccountStoreContract, PostgresEngine): ...

``make_db()`` returns a prepared (migrated) ``Database.inline`` whose Deferreds have already
fired; calling it again in the same test reopens the *same* data (a "restart").
SQLite lives in a file under the test's temp directory. PostgreSQL (127.0.0.1:5432, user
postgres, database ``test``; override with ``RUMA_TEST_PG`` as ``host:port:user:dbname``)
gets a fresh uniquely named schema per test, dropped afterwards. When PostgreSQL is
unreachable the PostgreSQL tests skip, unless ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ruma.storage.database import Database, Engine


def pg_args() -> dict[str, Any]:
    spec = os.environ.get("RUMA_TEST_PG")
    if spec:
        host, port, user, dbname = spec.split(":")
        return {"host": host, "port": int(port), "user": user, "dbname": dbname}
    return {"host": "127.0.0.1", "user": "postgres", "dbname": "test"}


class EngineTestCase(SynchronousTestCase):
    """Base for the two engine mixins."""

    engine: Engine

    def db_args(self) -> str | dict[str, Any]:
        raise NotImplementedError

    def make_db(self, *, prepare: bool = True) -> Database:
        db = Database.inline(self.engine, self.db_args())
        self.addCleanup(db.close)
        if prepare:
            self.successResultOf(Deferred.fromCoroutine(db.prepare()))
        return db


class SQLiteEngine(EngineTestCase):
    engine = Engine.SQLITE

    def db_args(self) -> str:
        if not hasattr(self, "_sqlite_path"):
            directory = os.path.abspath(self.mktemp())
            os.makedirs(directory)
            self._sqlite_path = os.path.join(directory, "test.db")
        return self._sqlite_path


class PostgresEngine(EngineTestCase):
    engine = Engine.POSTGRES

    def db_args(self) -> dict[str, Any]:
        if not hasattr(self, "_pg_schema"):
            self._pg_schema = _create_schema(self)
        return {**pg_args(), "options": f"-c search_path={self._pg_schema}"}


def _create_schema(test: SynchronousTestCase) -> str:
    try:
        import psycopg2

        conn = psycopg2.connect(connect_timeout=5, **pg_args())
    except Exception as e:
        if os.environ.get("CI") == "true":
            raise
        raise SkipTest(f"PostgreSQL unreachable: {e}") from e
    schema = "t_" + uuid.uuid4().hex[:20]
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    conn.close()

    def drop() -> None:
        c = psycopg2.connect(**pg_args())
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        c.close()

    # Cleanups run last-added-first: registered here, before make_db's close(), so the
    # connection is closed before the schema is dropped.
    test.addCleanup(drop)
    return schema
