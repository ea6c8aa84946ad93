"""Inbound federation throughput, in memory: how fast Ruma takes in a burst of PDUs.

    .venv/bin/python benchmarks/federation_inbound.py              # 1,000 PDUs, SQLite and PostgreSQL
    .venv/bin/python benchmarks/federation_inbound.py --pdus 500 --engine sqlite

Two in-memory homeservers (``tests.federation.receiver_fixture.Servers``: the real
``build_homeserver`` graph, real HTTP parsing, no sockets): ``b.test``'s user joins a room
of ``a.test``, then ``--pdus`` message PDUs, each on the one before, built and signed with
b.test's key, are PUT to a.test in transactions of 50, each sent once the last was
answered (Ruma answers once every PDU of a transaction is persisted). Every PDU goes
through the whole inbound pipeline: format, signatures, content hash, auth against its
auth events and the state before, soft-fail against the current state, persistence.

Printed per engine: PDUs per second (from the first PUT to the last answer), the
database transactions a.test ran per PDU, the SQL statements, and the time spent in the
database, with the most frequent kinds of transaction. PostgreSQL is
``127.0.0.1:5432``, user ``postgres``, database ``test`` (``RUMA_TEST_PG`` overrides, as
in the tests); each run uses a fresh schema, dropped at the end. The database calls are
synchronous (``Database.inline``): the SQL and the round trips are real, the thread hop
is not, as in the unit tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from twisted.internet.defer import Deferred  # noqa: E402
from twisted.trial.unittest import SynchronousTestCase  # noqa: E402

from ruma.protocol.events import Event  # noqa: E402
from ruma.storage.database import Database, Engine, Txn  # noqa: E402
from tests.federation.receiver_fixture import Servers  # noqa: E402

PER_TXN = 50


class _Case(SynchronousTestCase):
    """A test case only as the fixture's host (temp dirs, cleanups)."""

    engine = Engine.SQLITE

    def runTest(self) -> None:  # pragma: no cover - never run
        pass


def _count_transactions(db: Database, counts: Counter[str], seconds: Counter[str]) -> None:
    inner = db.run

    def counting(desc: str, func: Any, *args: Any) -> Any:
        counts[desc] += 1
        started = time.monotonic()
        try:
            return inner(desc, func, *args)
        finally:  # the database runs inline: the call is the whole transaction
            seconds[desc] += time.monotonic() - started

    db.run = counting  # type: ignore[method-assign]


def _count_statements(counter: list[int]) -> Any:
    """Count SQL statements run (each a round trip on PostgreSQL); returns the undo."""
    execute, executemany = Txn.execute, Txn.executemany

    def counting_execute(self: Txn, sql: str, params: Any = ()) -> None:
        counter[0] += 1
        execute(self, sql, params)

    def counting_executemany(self: Txn, sql: str, rows: Any) -> None:
        rows = list(rows)
        counter[0] += len(rows)  # psycopg2 runs one statement per row
        executemany(self, sql, rows)

    Txn.execute = counting_execute  # type: ignore[method-assign]
    Txn.executemany = counting_executemany  # type: ignore[method-assign]

    def undo() -> None:
        Txn.execute = execute  # type: ignore[method-assign]
        Txn.executemany = executemany  # type: ignore[method-assign]

    return undo


def _start_subscribers(case: _Case, s: Servers, name: str) -> None:
    """What ``twistd ruma`` runs on the bus (sync, push, the federation sender, ...); the
    fixture starts none of it."""
    hs = s[name].hs
    hs.sync_services.bus.start()
    sender = getattr(hs, "federation_sender", None)
    if sender is not None:
        case.successResultOf(Deferred.fromCoroutine(sender.start()))
        case.addCleanup(lambda: s.wait(Deferred.fromCoroutine(sender.stop())))


def measure(engine: Engine, n: int, *, bus: bool = False) -> dict[str, Any]:
    case = _Case()  # type: ignore[no-untyped-call]
    case.engine = engine
    try:
        s = Servers(case)
        _, alice_tok = s["a.test"].register("alice")
        room = s.create_room("a.test", alice_tok)
        bob = "@bob:b.test"
        join = s.forge("b.test", "a.test", room, bob, "m.room.member", {"membership": "join"}, bob)
        status, body = s.send_txn("b.test", "a.test", "join", [join])
        assert body == {"pdus": {join.event_id: {}}}, body
        auth = [*s.run(s.store("a.test").get_pdus(join.auth_event_ids)).values(), join]
        auth = [e for e in auth if e.type != "m.room.join_rules"]
        events: list[Event] = []
        prev = join
        for i in range(n):
            prev = s.forge(
                "b.test",
                "a.test",
                room,
                bob,
                "m.room.message",
                {"msgtype": "m.text", "body": f"burst {i}"},
                prev_events=[prev],
                auth_events=auth,
            )
            events.append(prev)
        if bus:
            _start_subscribers(case, s, "a.test")
            s.flush()
        counts: Counter[str] = Counter()
        seconds: Counter[str] = Counter()
        _count_transactions(s["a.test"].hs.db, counts, seconds)
        statements = [0]
        undo = _count_statements(statements)
        started = time.monotonic()
        try:
            for t in range(0, n, PER_TXN):
                batch = events[t : t + PER_TXN]
                status, body = s.send_txn("b.test", "a.test", f"burst{t}", batch)
                if status != 200 or body["pdus"] != {e.event_id: {} for e in batch}:
                    raise RuntimeError(f"transaction {t}: {status} {body}")
                if bus:  # let the subscribers catch up before the next transaction
                    for _ in range(20):
                        s.flush()
        finally:
            undo()
        elapsed = time.monotonic() - started
        timeline = [e.event_id for e in s.timeline("a.test", room)]
        if timeline[-n:] != [e.event_id for e in events]:
            raise RuntimeError("the burst is not in the timeline in order")
        total = sum(counts.values())
        return {
            "engine": engine.value,
            "pdus": n,
            "seconds": elapsed,
            "pdus_per_s": n / elapsed,
            "db_txns_per_pdu": total / n,
            "statements_per_pdu": statements[0] / n,
            "db_ms_per_pdu": 1000 * sum(seconds.values()) / n,
            "top": [(d, c, seconds[d]) for d, c in counts.most_common(12)],
        }
    finally:
        case.doCleanups()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pdus", type=int, default=1000)
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--bus",
        action="store_true",
        help="also run the bus subscribers (sync, push, sender...) and count their transactions",
    )
    args = parser.parse_args()
    engines = [Engine.SQLITE, Engine.POSTGRES] if args.engine == "both" else [Engine(args.engine)]
    for engine in engines:
        r = measure(engine, args.pdus, bus=args.bus)
        print(
            f"{r['engine']:9} {r['pdus']} PDUs in {r['seconds']:.1f} s: "
            f"{r['pdus_per_s']:.0f} PDUs/s, {r['db_txns_per_pdu']:.2f} DB transactions/PDU, "
            f"{r['statements_per_pdu']:.1f} SQL statements/PDU, "
            f"{r['db_ms_per_pdu']:.2f} ms/PDU in the database"
        )
        for desc, count, secs in r["top"]:
            print(
                f"    {desc:40} {count / r['pdus']:.2f}/PDU  {1000 * secs / r['pdus']:.2f} ms/PDU"
            )


if __name__ == "__main__":
    main()
