"""One connection pool over SQLite or PostgreSQL, versioned migrations, and stream positions.

Every store runs its SQL through ``Database.run(desc, func, *args)``: ``func`` gets a ``Txn``
and runs in a pool thread inside one transaction. SQL is written once with ``?``
placeholders; the ``Txn`` translates them for PostgreSQL.

Stream positions: anything others must see (room events, EDUs, account data, ...) takes a
position with ``txn.next_stream_position()`` inside the transaction that stores it. Positions
are handed out in order but transactions may commit out of order, so a position is only
announced (``current_stream_position`` and the listeners) once every smaller position has
committed or rolled back. A reader that syncs "up to N" therefore never misses a row below N.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from typing import Any, ParamSpec, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

T = TypeVar("T")
P = ParamSpec("P")

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+(?:\.(sqlite|postgres))?\.sql$")


class Engine(Enum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


class SchemaTooNew(Exception):
    """The database was written by a newer Ruma: running old code on it could corrupt it."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


class Txn:
    """A cursor inside one transaction, with ``?`` placeholders on every engine."""

    def __init__(self, cursor: Any, engine: Engine, positions: StreamPositions) -> None:
        self._cursor = cursor
        self.engine = engine
        self._positions = positions
        self.allocated: list[int] = []

    def _sql(self, sql: str) -> str:
        if self.engine is Engine.POSTGRES:
            return sql.replace("%", "%%").replace("?", "%s")
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(self._sql(sql), [tuple(r) for r in rows])

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cursor.fetchone()
        return tuple(row) if row is not None else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._cursor.fetchall()]

    def select(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.execute(sql, params)
        return self.fetchall()

    def select_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self.execute(sql, params)
        return self.fetchone()

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def next_stream_position(
        self,
        kind: str,
        *,
        room_id: str | None = None,
        user_id: str | None = None,
        ref: str | None = None,
    ) -> int:
        """Take the next stream position for something written in this transaction.

        The ``stream`` row is the bus's durable log: ``kind`` says what happened (``event``,
        ``typing``, ``receipt``, ``account_data``, ...), ``room_id``/``user_id`` say whom it
        concerns and ``ref`` points at the stored item (an event ID, a key). Subscribers replay
        from this table after a restart.
        """
        pos = self._positions.allocate()
        self.allocated.append(pos)
        self.execute(
            "INSERT INTO stream (position, kind, room_id, user_id, ref) VALUES (?, ?, ?, ?, ?)",
            (pos, kind, room_id, user_id, ref),
        )
        return pos


class StreamPositions:
    """Hands out positions and tracks the highest one below which everything is settled."""

    def __init__(self, start: int) -> None:
        self._lock = threading.Lock()
        self._last_allocated = start
        self._pending: set[int] = set()
        self.current = start
        self._listeners: list[Callable[[int], None]] = []

    def allocate(self) -> int:
        # Called from pool threads.
        with self._lock:
            self._last_allocated += 1
            self._pending.add(self._last_allocated)
            return self._last_allocated

    def settle(self, positions: Iterable[int]) -> None:
        """Mark positions committed or abandoned; called in the reactor thread."""
        with self._lock:
            for p in positions:
                self._pending.discard(p)
            new = min(self._pending) - 1 if self._pending else self._last_allocated
        if new > self.current:
            self.current = new
            for listener in list(self._listeners):
                listener(new)

    def add_listener(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[int], None]) -> None:
        self._listeners.remove(listener)

    def listeners(self) -> list[Callable[[int], None]]:
        return list(self._listeners)


def load_migrations(engine: Engine) -> list[Migration]:
    """The numbered schema files for ``engine``: shared ``.sql`` or engine-specific ones."""
    found: dict[int, Migration] = {}
    for entry in resources.files("ruma.storage.schema").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m is None:
            continue
        dialect = m.group(2)
        if dialect is not None and dialect != engine.value:
            continue
        version = int(m.group(1))
        if version in found:
            raise RuntimeError(f"two schema files for version {version}: {entry.name}")
        found[version] = Migration(version, entry.name, entry.read_text("utf-8"))
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Split a schema file on ``;`` at line ends (our schema files keep ``;`` out of strings)."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    parts = re.split(r";\s*(?:\n|$)", "\n".join(lines))
    return [p.strip() for p in parts if p.strip()]


class Database:
    """The single gateway to SQL. Construct with ``Database.sqlite`` or ``Database.postgres``."""

    log = Logger()

    def __init__(self, engine: Engine, pool: adbapi.ConnectionPool | InlinePool) -> None:
        self.engine = engine
        self._pool = pool
        self.positions = StreamPositions(0)

    @classmethod
    def sqlite(cls, reactor: IReactorThreads, path: str) -> Database:
        # One connection and one thread: SQLite serialises writers anyway, and a single
        # writer avoids "database is locked" errors under load.
        pool = adbapi.ConnectionPool(
            "sqlite3",
            path,
            check_same_thread=False,
            isolation_level=None,
            cp_min=1,
            cp_max=1,
            cp_openfun=_open_sqlite,
            cp_reactor=reactor,
        )
        return cls(Engine.SQLITE, pool)

    @classmethod
    def postgres(
        cls, reactor: IReactorThreads, args: dict[str, Any], module: str = "psycopg2"
    ) -> Database:
        kwargs = dict(args)
        cp_min = int(kwargs.pop("cp_min", 1))
        cp_max = int(kwargs.pop("cp_max", 5))
        pool = adbapi.ConnectionPool(
            module, cp_min=cp_min, cp_max=cp_max, cp_reactor=reactor, cp_noisy=False, **kwargs
        )
        return cls(Engine.POSTGRES, pool)

    @classmethod
    def inline(cls, engine: Engine, path_or_args: str | dict[str, Any]) -> Database:
        """A database whose transactions run synchronously in the calling thread.

        For ``SynchronousTestCase`` tests on ``MemoryReactorClock``: the SQL and the engine are
        real, only the thread hop is gone, so every returned Deferred has already fired.
        """
        return cls(engine, InlinePool(engine, path_or_args))

    def run(self, desc: str, func: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run ``func(txn, *args)`` in one transaction and settle its stream positions."""
        allocated: list[int] = []

        def interaction(cursor: Any) -> T:
            txn = Txn(cursor, self.engine, self.positions)
            try:
                if self.engine is Engine.SQLITE:
                    cursor.execute("BEGIN IMMEDIATE" if _writes(desc) else "BEGIN")
                return func(txn, *args)
            finally:
                allocated.extend(txn.allocated)

        d: Deferred[T] = self._pool.runInteraction(_sqlite_commit_wrapper(interaction)
                                                   if self.engine is Engine.SQLITE
                                                   else interaction)

        def settle(result: Any) -> Any:
            if allocated:
                self.positions.settle(allocated)
            return result

        d.addBoth(settle)
        return d

    async def prepare(self) -> int:
        """Create or upgrade the schema; return the schema version now in force."""
        migrations = load_migrations(self.engine)
        newest = migrations[-1].version if migrations else 0

        def upgrade(txn: Txn) -> int:
            txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            applied = {int(r[0]) for r in txn.select("SELECT version FROM schema_version")}
            current = max(applied, default=0)
            if current > newest:
                raise SchemaTooNew(
                    f"the database schema is version {current} but this Ruma only knows up to "
                    f"{newest}: upgrade Ruma, do not downgrade it"
                )
            # Apply every migration not yet recorded, not only those above the highest: numbers
            # are handed out in blocks per area, so a lower number can arrive after a higher one.
            for m in migrations:
                if m.version in applied:
                    continue
                for stmt in split_statements(m.sql):
                    txn.execute(stmt)
                txn.execute("INSERT INTO schema_version (version) VALUES (?)", (m.version,))
                self.log.info("applied schema migration {name}", name=m.name)
            return max(current, newest)

        version = await self.run("prepare_schema", upgrade)
        start = await self.run("stream_start", _max_stream_position)
        positions = StreamPositions(start)
        for listener in self.positions.listeners():
            positions.add_listener(listener)  # subscribers attached before prepare keep working
        self.positions = positions
        return version

    def close(self) -> None:
        self._pool.close()


class InlinePool:
    """The part of ``adbapi.ConnectionPool`` that ``Database`` uses, without threads."""

    def __init__(self, engine: Engine, path_or_args: str | dict[str, Any]) -> None:
        self._engine = engine
        self._conn: Any
        if engine is Engine.SQLITE:
            assert isinstance(path_or_args, str)
            self._conn = sqlite3.connect(path_or_args, isolation_level=None)
            _open_sqlite(self._conn)
        else:
            import psycopg2

            assert isinstance(path_or_args, dict)
            self._conn = psycopg2.connect(**path_or_args)

    def runInteraction(self, func: Callable[..., T], *args: Any) -> Deferred[T]:
        cursor = self._conn.cursor()
        try:
            result = func(cursor, *args)
            if self._engine is Engine.POSTGRES:
                self._conn.commit()
        except BaseException:
            if self._engine is Engine.POSTGRES:
                self._conn.rollback()
            return fail()
        finally:
            cursor.close()
        return succeed(result)

    def close(self) -> None:
        self._conn.close()


def _writes(desc: str) -> bool:
    # SQLite: take the write lock at BEGIN for anything but plain reads, so two
    # read-then-write transactions can never deadlock on lock upgrade.
    return not desc.startswith(("get_", "read_", "select_"))


def _sqlite_commit_wrapper(interaction: Callable[[Any], T]) -> Callable[[Any], T]:
    # With isolation_level=None sqlite3 is in autocommit mode and we manage BEGIN/COMMIT;
    # adbapi's own commit() is then a no-op, so commit or roll back here.
    def wrapped(cursor: Any) -> T:
        try:
            result = interaction(cursor)
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")
        return result

    return wrapped


def _open_sqlite(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")


def _max_stream_position(txn: Txn) -> int:
    """The highest stream position on disk: every allocated position has a ``stream`` row."""
    row = txn.select_one("SELECT MAX(position) FROM stream")
    return int(row[0]) if row and row[0] is not None else 0
