"""Client-API benchmark: message throughput and send-to-sync latency, Ruma beside Synapse.

    .venv/bin/python benchmarks/client.py                      # starts a Ruma (SQLite) itself
    .venv/bin/python benchmarks/client.py --url http://127.0.0.1:8008   # a running server
    .venv/bin/python benchmarks/client.py --compare-synapse --runs 3    # Ruma and Synapse
    .venv/bin/python benchmarks/client.py --compare-ref HEAD~20         # now and then

Workloads, all in one room on a server with open registration (the benchmark registers its
own users through ``/register``, so the server must allow it, as the test config does):

* sequential sends: one user, ``PUT /rooms/{id}/send/m.room.message/{txn}`` one after the
  other; messages per second;
* concurrent sends: 20 users in the same room sending at once; messages per second overall;
* send-to-sync latency: a second user keeps a long-polling ``/sync`` open; the time from just
  before the ``PUT`` to the moment that user's ``/sync`` returns the event; median and p95.

With ``--compare-synapse`` a Synapse from PyPI runs on the same machine with the same
settings (SQLite, rate limits raised, loopback, plain HTTP) and the figures of both servers
are printed with the ratio Ruma/Synapse (higher is better for messages/s, lower is better for
latency). Absolute figures drift on a shared machine; compare within one run (with
``--runs N`` the servers take turns, run by run, and each figure is the median). Every
request has a timeout and every loop a bound. Servers started here are stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from treq.client import HTTPClient  # noqa: E402
from twisted.internet.defer import Deferred, DeferredList, gatherResults  # noqa: E402
from twisted.internet.interfaces import IReactorTime  # noqa: E402
from twisted.internet.task import deferLater, react  # noqa: E402
from twisted.web.client import Agent, HTTPConnectionPool  # noqa: E402
from twisted.web.http_headers import Headers  # noqa: E402

from tests.interop.processes import (  # noqa: E402
    RumaProcess,
    ServerProcess,
    SynapseProcess,
    ruma_available,
    synapse_available,
)

REQUEST_TIMEOUT = 30.0
SYNC_POLL_MS = 10_000


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


@dataclass
class Figures:
    sequential_msgs_per_s: float
    concurrent_msgs_per_s: float
    latency_median_ms: float
    latency_p95_ms: float
    rss_after_start_mib: float | None = None
    rss_after_runs_mib: float | None = None


class Client:
    """A minimal Matrix client on treq with a shared connection pool."""

    def __init__(self, http: HTTPClient, base_url: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.token = ""
        self.user_id = ""
        self.txn = 0

    async def request(
        self, method: str, path: str, body: Any = None, timeout: float = REQUEST_TIMEOUT
    ) -> Any:
        headers = Headers({b"Content-Type": [b"application/json"]})
        if self.token:
            headers.addRawHeader(b"Authorization", f"Bearer {self.token}".encode())
        data = None if body is None else json.dumps(body).encode()
        response = await self.http.request(
            method, self.base_url + path, data=data, headers=headers, timeout=timeout
        )
        raw = await response.content()
        decoded = json.loads(raw) if raw else None
        if response.code != 200:
            raise RuntimeError(f"{method} {path} -> {response.code} {decoded}")
        return decoded

    async def register(self, localpart: str, password: str) -> None:
        path = "/_matrix/client/v3/register"
        body: dict[str, Any] = {"username": localpart, "password": password}
        try:
            result = await self.request("POST", path, {**body, "auth": {"type": "m.login.dummy"}})
        except RuntimeError:
            # Some servers want the UIA session from a first, auth-less request.
            response = await self.http.post(
                self.base_url + path,
                data=json.dumps(body).encode(),
                headers=Headers({b"Content-Type": [b"application/json"]}),
                timeout=REQUEST_TIMEOUT,
            )
            flows = json.loads(await response.content())
            auth = {"type": "m.login.dummy", "session": flows.get("session")}
            result = await self.request("POST", path, {**body, "auth": auth})
        self.token = result["access_token"]
        self.user_id = result["user_id"]

    async def send(self, room_id: str, text: str) -> str:
        self.txn += 1
        txn = f"bench-{secrets.token_hex(4)}-{self.txn}"
        result = await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}",
            {"msgtype": "m.text", "body": text},
        )
        event_id: str = result["event_id"]
        return event_id

    async def sync(self, since: str | None, timeout_ms: int) -> dict[str, Any]:
        path = f"/_matrix/client/v3/sync?timeout={timeout_ms}"
        path += "&filter=" + q(json.dumps({"room": {"timeline": {"limit": 50}}}))
        if since is not None:
            path += f"&since={q(since)}"
        result: dict[str, Any] = await self.request(
            "GET", path, timeout=timeout_ms / 1000 + REQUEST_TIMEOUT
        )
        return result


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def benchmark(
    reactor: IReactorTime, base_url: str, args: argparse.Namespace, label: str
) -> Figures:
    """One run of the three workloads against the server at ``base_url``."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = args.concurrency + 4
    http = HTTPClient(Agent(reactor, pool=pool))
    run = secrets.token_hex(3)
    password = "benchmark password"
    try:
        owner = Client(http, base_url)
        await owner.register(f"bench{run}owner", password)
        room_id = (
            await owner.request(
                "POST",
                "/_matrix/client/v3/createRoom",
                {"preset": "public_chat", "name": f"benchmark {run}"},
            )
        )["room_id"]

        senders = [Client(http, base_url) for _ in range(args.concurrency)]
        await gatherResults(
            [
                Deferred.fromCoroutine(c.register(f"bench{run}s{i}", password))
                for i, c in enumerate(senders)
            ],
            consumeErrors=True,
        )
        watcher = Client(http, base_url)
        await watcher.register(f"bench{run}watcher", password)
        for c in [*senders, watcher]:
            await c.request("POST", f"/_matrix/client/v3/join/{q(room_id)}", {})

        # 1. Sequential sends.
        await owner.send(room_id, "warm-up")
        start = time.perf_counter()
        for i in range(args.messages):
            await owner.send(room_id, f"sequential {i}")
        sequential = args.messages / (time.perf_counter() - start)
        log(f"{label}: sequential {sequential:.1f} msg/s")

        # 2. Concurrent senders in the same room.
        per_sender = max(1, args.messages // args.concurrency)

        async def send_many(c: Client) -> None:
            for i in range(per_sender):
                await c.send(room_id, f"concurrent {i}")

        start = time.perf_counter()
        results = await DeferredList(
            [Deferred.fromCoroutine(send_many(c)) for c in senders], consumeErrors=True
        )
        elapsed = time.perf_counter() - start
        for ok, value in results:
            if not ok:
                raise RuntimeError(f"a concurrent sender failed: {value}")
        concurrent = per_sender * len(senders) / elapsed
        log(f"{label}: {len(senders)} concurrent senders {concurrent:.1f} msg/s")

        # 3. Send-to-sync latency through the watcher's long-polling /sync.
        since = (await watcher.sync(None, 0))["next_batch"]
        latencies: list[float] = []
        for i in range(args.latency_samples):
            pending = Deferred.fromCoroutine(watcher.sync(since, SYNC_POLL_MS))
            # Give the long-poll a moment to reach the server before sending.
            await deferLater(reactor, 0.02, lambda: None)
            sent_at = time.perf_counter()
            event_id = await owner.send(room_id, f"latency {i}")
            deadline = sent_at + SYNC_POLL_MS / 1000 * 2
            while True:
                body = await pending
                since = body["next_batch"]
                room = body.get("rooms", {}).get("join", {}).get(room_id, {})
                ids = [e.get("event_id") for e in room.get("timeline", {}).get("events", [])]
                if event_id in ids:
                    latencies.append((time.perf_counter() - sent_at) * 1000)
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"{label}: the watcher never saw {event_id} in /sync")
                pending = Deferred.fromCoroutine(watcher.sync(since, SYNC_POLL_MS))
        median = statistics.median(latencies)
        p95 = percentile(latencies, 0.95)
        log(f"{label}: send-to-sync median {median:.1f} ms, p95 {p95:.1f} ms")
        return Figures(sequential, concurrent, median, p95)
    finally:
        await pool.closeCachedConnections()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


async def measure_servers(
    reactor: IReactorTime,
    targets: Sequence[tuple[str, str, ServerProcess | None]],
    args: argparse.Namespace,
) -> dict[str, Figures | str]:
    """Run the workloads ``args.runs`` times on every target, interleaved (run 1 on each
    server, then run 2 on each, ...) so that drifting machine load hits both alike; each
    figure is the median over the runs. A server that fails is reported by its error."""
    rss_start = {label: mib(server.rss_bytes()) if server else None for label, _, server in targets}
    runs: dict[str, list[Figures]] = {label: [] for label, _, _ in targets}
    failed: dict[str, str] = {}
    for n in range(args.runs):
        for label, url, server in targets:
            if label in failed:
                continue
            log(f"{label}: run {n + 1}/{args.runs}")
            try:
                runs[label].append(await benchmark(reactor, url, args, label))
            except Exception as e:  # noqa: BLE001 - one server failing still reports the other
                failed[label] = str(e).splitlines()[0][:200]
                log(f"{label} failed: {e}")
                if server is not None:
                    log(server.log_tail(20))
    results: dict[str, Figures | str] = dict(failed)
    for label, _, server in targets:
        if label in failed:
            continue
        done = runs[label]
        results[label] = Figures(
            sequential_msgs_per_s=statistics.median(r.sequential_msgs_per_s for r in done),
            concurrent_msgs_per_s=statistics.median(r.concurrent_msgs_per_s for r in done),
            latency_median_ms=statistics.median(r.latency_median_ms for r in done),
            latency_p95_ms=statistics.median(r.latency_p95_ms for r in done),
            rss_after_start_mib=rss_start[label],
            rss_after_runs_mib=mib(server.rss_bytes()) if server else None,
        )
    return results


def fmt(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.1f} {unit}"


def report(results: dict[str, Figures | str], args: argparse.Namespace) -> None:
    rows = [
        ("sequential sends", "sequential_msgs_per_s", "msg/s"),
        (f"{args.concurrency} concurrent senders", "concurrent_msgs_per_s", "msg/s"),
        ("send->sync latency median", "latency_median_ms", "ms"),
        ("send->sync latency p95", "latency_p95_ms", "ms"),
        ("memory after start", "rss_after_start_mib", "MiB"),
        ("memory after the runs", "rss_after_runs_mib", "MiB"),
    ]
    names = list(results)
    header = f"{'workload':<30}" + "".join(f"{n:>18}" for n in names)
    compare = "ruma" in results and "synapse" in results
    if compare:
        header += f"{'ruma/synapse':>15}"
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{args.messages} messages per send workload, {args.latency_samples} latency samples, "
        f"median of {args.runs} run(s), SQLite; {os.cpu_count()} CPUs, load average now {load}"
    )
    print(header)
    print("-" * len(header))
    for title, attr, unit in rows:
        line = f"{title:<30}"
        values = []
        for n in names:
            figures = results[n]
            value = getattr(figures, attr) if isinstance(figures, Figures) else None
            values.append(value)
            line += f"{fmt(value, unit):>18}"
        if compare:
            ruma, synapse = values[names.index("ruma")], values[names.index("synapse")]
            ratio = "-" if not ruma or not synapse else f"{ruma / synapse:.2f}"
            line += f"{ratio:>15}"
        print(line)
    for n in names:
        if isinstance(results[n], str):
            print(f"{n}: could not run: {results[n]}")
    if args.json:
        print(
            json.dumps(
                {
                    n: asdict(r) if isinstance(r, Figures) else {"error": r}
                    for n, r in results.items()
                }
            )
        )


async def main(reactor: IReactorTime, args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="ruma-bench-"))
    started: list[ServerProcess] = []
    results: dict[str, Figures | str] = {}
    try:
        targets: list[tuple[str, str, ServerProcess | None]] = []
        if args.url:
            targets.append((args.name, args.url, None))
        else:
            ok, why = ruma_available()
            if ok:
                ruma = RumaProcess(work / "ruma")
                try:
                    ruma.start()
                    started.append(ruma)
                    targets.append(("ruma", ruma.base_url, ruma))
                except Exception as e:  # noqa: BLE001 - reported in the table
                    results["ruma"] = f"did not start: {e}".splitlines()[0]
                    log(f"ruma did not start:\n{e}")
            else:
                results["ruma"] = why
        for ref in args.compare_ref:
            label = f"ruma@{ref}"
            try:
                tree = export_commit(ref, work / f"src-{len(targets)}")
                old = RumaProcess(work / f"ruma-{len(targets)}", source_tree=tree)
                old.start()
                started.append(old)
                targets.append((label, old.base_url, old))
            except Exception as e:  # noqa: BLE001 - reported in the table
                results[label] = f"did not start: {e}".splitlines()[0]
                log(f"{label} did not start:\n{e}")
        if args.compare_synapse:
            ok, why = synapse_available()
            if ok:
                synapse = SynapseProcess(work / "synapse")
                synapse.start()
                started.append(synapse)
                targets.append(("synapse", synapse.base_url, synapse))
            else:
                results["synapse"] = why
        results.update(await measure_servers(reactor, targets, args))
        # Keep the table's column order stable: ruma first.
        refs = [f"ruma@{ref}" for ref in args.compare_ref]
        order = [n for n in ("ruma", args.name, *refs, "synapse") if n in results]
        report({n: results[n] for n in dict.fromkeys(order)}, args)
    finally:
        for server in started:
            server.stop()
        log(f"server logs kept in {work}")


def export_commit(ref: str, directory: Path) -> Path:
    """Ruma's code (``ruma/`` and ``twisted/``) as of ``ref``, exported with ``git archive``."""
    directory.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", ref, "ruma", "twisted"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    subprocess.run(
        ["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True, timeout=60
    )
    return directory


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: start a Ruma here)")
    parser.add_argument("--name", default="server", help="label for --url in the table")
    parser.add_argument("--compare-synapse", action="store_true")
    parser.add_argument(
        "--compare-ref",
        action="append",
        default=[],
        metavar="COMMIT",
        help="also run Ruma's code as of this git commit (repeatable), to find regressions",
    )
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if args.url is None:
        args.name = "ruma"
    return args


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments)))
