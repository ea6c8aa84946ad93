"""Sync benchmark: initial /sync for a user in many busy rooms, and incremental sync latency,
Ruma beside Synapse (both SQLite, same machine), as ratios.

    .venv/bin/python benchmarks/sync.py            # 200 rooms x 50 members x 100 messages
    .venv/bin/python benchmarks/sync.py --quick    # 20 rooms x 10 members x 10 messages
    .venv/bin/python benchmarks/sync.py --no-synapse
    .venv/bin/python benchmarks/sync.py --no-synapse --dataset /tmp/ruma-sync-set  # build once

With ``--dataset DIR`` Ruma's data set is built once and kept in ``DIR`` (the server is
stopped, its directory copied, then restarted); later runs with the same ``DIR`` and sizes
start Ruma on a copy of it (same port, so the same server name) and skip building. Such a
run measures a freshly started server, whose caches are cold for the first initial sync.

The data set is built the same way on both servers, through the client API as an
application service would (one registration file, its ``as_token`` masquerading as
``@bench_*`` users with ``?user_id=``, no rate limits): the measured user creates every
room (public_chat) and ``members - 1`` users from a pool join it; then ``messages`` messages
per room are sent by random members. Requests run ``--concurrency`` at a time.

Figures (each a median over ``--runs``; a fresh login, so a fresh device, for every initial
sync so no server can answer from a per-device response cache):

* initial sync: ``GET /sync`` without ``since`` and without a filter, and with an
  Element-like filter (lazy-loaded members, timeline limit 20);
* incremental sync, nothing new: ``GET /sync?since=...&timeout=0``;
* send->sync latency: a long-polling incremental ``/sync`` is open while another member sends
  into one of the rooms; from just before the ``PUT`` until ``/sync`` returns it (median, p95).

Measuring starts once the server process is idle (under 5% CPU over 2 s): Ruma evaluates
push rules after answering, Synapse while persisting, and neither should be measured while
still catching up. Presence is off on both servers (it is not what is measured). Servers started here are
stopped by PID at the end; every request has a timeout and every loop a bound.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import yaml  # noqa: E402
from treq.client import HTTPClient  # noqa: E402
from twisted.internet.defer import Deferred, gatherResults  # noqa: E402
from twisted.internet.interfaces import IReactorTime  # noqa: E402
from twisted.internet.task import react  # noqa: E402
from twisted.web.client import Agent, HTTPConnectionPool  # noqa: E402
from twisted.web.http_headers import Headers  # noqa: E402

from benchmarks.client import percentile, q  # noqa: E402
from tests.interop.processes import (  # noqa: E402
    RumaProcess,
    ServerProcess,
    SynapseProcess,
    ruma_available,
    synapse_available,
)

REQUEST_TIMEOUT = 120.0
LAZY_FILTER = {
    "room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 20}},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Figures:
    build_s: float
    initial_sync_ms: float
    initial_sync_lazy_ms: float
    initial_sync_kib: float
    incremental_empty_ms: float
    latency_median_ms: float
    latency_p95_ms: float


class Api:
    """Just enough of the client API, on treq with one connection pool."""

    def __init__(self, http: HTTPClient, base_url: str, as_token: str) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.as_token = as_token

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str,
        as_user: str | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        if as_user is not None:
            path += ("&" if "?" in path else "?") + "user_id=" + q(as_user)
        headers = Headers()
        if token:
            headers.setRawHeaders(b"Authorization", [f"Bearer {token}".encode()])
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.setRawHeaders(b"Content-Type", [b"application/json"])
        response = await self.http.request(
            method, self.base + path, data=data, headers=headers, timeout=timeout
        )
        raw = await response.content()
        decoded = json.loads(raw) if raw else None
        if response.code != 200:
            raise RuntimeError(f"{method} {path} -> {response.code} {decoded}")
        return decoded

    async def register_as(self, localpart: str) -> None:
        await self.call(
            "POST",
            "/_matrix/client/v3/register",
            {"type": "m.login.application_service", "username": localpart},
            token=self.as_token,
        )

    async def register_user(self, localpart: str, password: str) -> str:
        path = "/_matrix/client/v3/register"
        body = {"username": localpart, "password": password, "auth": {"type": "m.login.dummy"}}
        try:
            out = await self.call("POST", path, body, token="")
        except RuntimeError:
            response = await self.http.post(
                self.base + path,
                data=json.dumps({"username": localpart, "password": password}).encode(),
                headers=Headers({b"Content-Type": [b"application/json"]}),
                timeout=REQUEST_TIMEOUT,
            )
            session = json.loads(await response.content()).get("session")
            body["auth"] = {"type": "m.login.dummy", "session": session}
            out = await self.call("POST", path, body, token="")
        user_id: str = out["user_id"]
        return user_id

    async def login(self, user_id: str, password: str) -> str:
        out = await self.call(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user_id},
                "password": password,
            },
            token="",
        )
        token: str = out["access_token"]
        return token

    async def sync(
        self,
        token: str,
        *,
        since: str | None = None,
        timeout_ms: int = 0,
        flt: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], int]:
        path = f"/_matrix/client/v3/sync?timeout={timeout_ms}"
        if since is not None:
            path += "&since=" + q(since)
        if flt is not None:
            path += "&filter=" + q(json.dumps(flt))
        headers = Headers({b"Authorization": [f"Bearer {token}".encode()]})
        response = await self.http.get(
            self.base + path, headers=headers, timeout=timeout_ms / 1000 + REQUEST_TIMEOUT
        )
        raw = await response.content()
        if response.code != 200:
            raise RuntimeError(f"sync -> {response.code} {raw[:200]!r}")
        return json.loads(raw), len(raw)


async def bounded(concurrency: int, jobs: Sequence[Callable[[], Awaitable[Any]]]) -> None:
    """Run ``jobs`` with at most ``concurrency`` in flight; the first failure propagates."""
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            job = queue.pop()
            await job()

    await gatherResults(
        [Deferred.fromCoroutine(worker()) for _ in range(min(concurrency, len(jobs)) or 1)],
        consumeErrors=True,
    )


def registration(as_token: str, hs_token: str) -> dict[str, Any]:
    return {
        "id": "sync-bench",
        "url": None,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": "bench_bot",
        "rate_limited": False,
        "namespaces": {
            "users": [{"exclusive": True, "regex": "@bench_.*"}],
            "aliases": [],
            "rooms": [],
        },
    }


async def build(
    api: Api, args: argparse.Namespace, server_name: str
) -> tuple[str, str, list[tuple[str, list[str]]]]:
    """The data set; returns (measured user, their password, [(room, members)])."""
    rng = random.Random(args.seed)
    password = "bench-" + secrets.token_hex(8)
    user_id = await api.register_user("syncer", password)
    token = await api.login(user_id, password)
    pool_size = max(args.members - 1, min(args.rooms * (args.members - 1), args.pool))
    pool = [f"bench_{i}" for i in range(pool_size)]
    t0 = time.perf_counter()
    await bounded(args.concurrency, [lambda p=p: api.register_as(p) for p in pool])
    log(f"  {len(pool)} users registered in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    rooms: list[str] = []

    async def create(i: int) -> None:
        out = await api.call(
            "POST",
            "/_matrix/client/v3/createRoom",
            {"preset": "public_chat", "name": f"Bench room {i}"},
            token=token,
        )
        rooms.append(out["room_id"])

    await bounded(args.concurrency, [lambda i=i: create(i) for i in range(args.rooms)])
    log(f"  {len(rooms)} rooms created in {time.perf_counter() - t0:.1f}s")
    layout = [
        (room, [f"@{p}:{server_name}" for p in rng.sample(pool, args.members - 1)])
        for room in sorted(rooms)
    ]
    t0 = time.perf_counter()
    joins = [
        (
            lambda r=room, m=member: api.call(
                "POST", f"/_matrix/client/v3/join/{q(r)}", {}, token=api.as_token, as_user=m
            )
        )
        for room, members in layout
        for member in members
    ]
    # Interleave rooms so concurrent requests rarely wait on one room's lock.
    joins = [joins[i] for i in _interleave(len(layout), args.members - 1)]
    await bounded(args.concurrency, joins)
    log(f"  {len(joins)} joins in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    sends = []
    for n in range(args.messages):
        for room, members in layout:
            sender = rng.choice(members)
            txn = f"b{n}-{secrets.token_hex(4)}"
            sends.append(
                lambda r=room, s=sender, t=txn, n=n: api.call(
                    "PUT",
                    f"/_matrix/client/v3/rooms/{q(r)}/send/m.room.message/{t}",
                    {"msgtype": "m.text", "body": f"message {n} in this room, with some words"},
                    token=api.as_token,
                    as_user=s,
                )
            )
    await bounded(args.concurrency, sends)
    log(f"  {len(sends)} messages in {time.perf_counter() - t0:.1f}s")
    return user_id, password, layout


def _interleave(rooms: int, per_room: int) -> list[int]:
    return [r * per_room + k for k in range(per_room) for r in range(rooms)]


Built = tuple[str, str, list[tuple[str, list[str]]]]


async def measure(
    reactor: IReactorTime,
    label: str,
    server: ServerProcess,
    as_token: str,
    args: argparse.Namespace,
    prebuilt: Built | None = None,
    save: Callable[[Built], None] | None = None,
) -> Figures:
    """Build the data set (unless ``prebuilt``; ``save`` keeps it) and measure."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = args.concurrency + 4
    api = Api(HTTPClient(Agent(reactor, pool=pool)), server.base_url, as_token)
    try:
        t0 = time.perf_counter()
        if prebuilt is None:
            log(
                f"{label}: building {args.rooms} rooms x {args.members} members x "
                f"{args.messages} messages"
            )
            user_id, password, layout = await build(api, args, server.server_name)
            idle = await wait_idle(reactor, server.pid, args.idle_limit)
            log(f"  idle after {idle:.1f}s more")
            build_s = time.perf_counter() - t0
            if save is not None:
                await pool.closeCachedConnections()  # the server restarts
                save((user_id, password, layout))
        else:
            user_id, password, layout = prebuilt
            idle = await wait_idle(reactor, server.pid, args.idle_limit)
            log(f"{label}: reusing the kept data set; idle after {idle:.1f}s")
            build_s = 0.0
        full: list[float] = []
        lazy: list[float] = []
        size = 0
        next_batch = ""
        token = ""
        for n in range(args.runs):
            for flt, out in ((None, full), (LAZY_FILTER, lazy)):
                token = await api.login(user_id, password)
                t0 = time.perf_counter()
                body, size_n = await api.sync(token, flt=flt)
                out.append((time.perf_counter() - t0) * 1000)
                joined = len(body.get("rooms", {}).get("join", {}))
                if joined != len(layout):
                    raise RuntimeError(f"initial sync has {joined} rooms, not {len(layout)}")
                if flt is None:
                    size = size_n
                next_batch = body["next_batch"]
            log(f"{label}: initial sync run {n + 1}: {full[-1]:.0f} ms, lazy {lazy[-1]:.0f} ms")
        empty: list[float] = []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            await api.sync(token, since=next_batch, timeout_ms=0)
            empty.append((time.perf_counter() - t0) * 1000)
        rng = random.Random(args.seed + 1)
        latencies: list[float] = []
        since = next_batch
        for i in range(args.samples):
            room, members = rng.choice(layout)
            poll = Deferred.fromCoroutine(api.sync(token, since=since, timeout_ms=30_000))
            await _sleep(reactor, 0.05)  # let the long-poll arrive first
            t0 = time.perf_counter()
            await api.call(
                "PUT",
                f"/_matrix/client/v3/rooms/{q(room)}/send/m.room.message/lat{i}",
                {"msgtype": "m.text", "body": f"latency {i}"},
                token=as_token,
                as_user=members[0],
            )
            body, _ = await poll
            latencies.append((time.perf_counter() - t0) * 1000)
            since = body["next_batch"]
        return Figures(
            build_s=build_s,
            initial_sync_ms=statistics.median(full),
            initial_sync_lazy_ms=statistics.median(lazy),
            initial_sync_kib=size / 1024,
            incremental_empty_ms=statistics.median(empty),
            latency_median_ms=statistics.median(latencies),
            latency_p95_ms=percentile(latencies, 0.95),
        )
    finally:
        await pool.closeCachedConnections()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_idle(reactor: IReactorTime, pid: int | None, limit_s: float) -> float:
    """Wait until the server process uses under 5% of a CPU over 2 s (work it deferred
    after answering, such as push evaluation, is part of building the data set); return
    how long that took. Bounded by ``limit_s``."""
    if pid is None or not Path(f"/proc/{pid}/stat").exists():
        return 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        before = _cpu_seconds(pid)
        await _sleep(reactor, 2.0)
        if _cpu_seconds(pid) - before < 0.1:
            break
    return time.perf_counter() - start


async def _sleep(reactor: IReactorTime, seconds: float) -> None:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    await d


def report(results: dict[str, Figures | str], args: argparse.Namespace) -> None:
    rows = [
        ("build the data set (until idle)", "build_s", "s"),
        ("initial sync", "initial_sync_ms", "ms"),
        ("initial sync, lazy members", "initial_sync_lazy_ms", "ms"),
        ("initial sync size", "initial_sync_kib", "KiB"),
        ("incremental sync, nothing new", "incremental_empty_ms", "ms"),
        ("send->sync latency median", "latency_median_ms", "ms"),
        ("send->sync latency p95", "latency_p95_ms", "ms"),
    ]
    names = list(results)
    compare = isinstance(results.get("ruma"), Figures) and isinstance(
        results.get("synapse"), Figures
    )
    header = f"{'measure':<32}" + "".join(f"{n:>14}" for n in names)
    if compare:
        header += f"{'ruma/synapse':>14}"
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{args.rooms} rooms x {args.members} members x {args.messages} messages, "
        f"median of {args.runs} run(s), {args.samples} samples; SQLite; "
        f"{os.cpu_count()} CPUs, load average now {load}"
    )
    print(header)
    print("-" * len(header))
    for title, attr, unit in rows:
        line = f"{title:<32}"
        values = []
        for n in names:
            figures = results[n]
            value = getattr(figures, attr) if isinstance(figures, Figures) else None
            values.append(value)
            line += f"{'-' if value is None else f'{value:.1f} {unit}':>14}"
        if compare:
            ruma, synapse = values[names.index("ruma")], values[names.index("synapse")]
            line += f"{'-' if not ruma or not synapse else f'{ruma / synapse:.2f}':>14}"
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
    work = Path(tempfile.mkdtemp(prefix="ruma-sync-bench-"))
    as_token, hs_token = secrets.token_hex(16), secrets.token_hex(16)
    prebuilt: Built | None = None
    ruma_port = 0
    kept = _kept_dataset(args)
    if kept is not None:
        as_token, hs_token, ruma_port = kept["as_token"], kept["hs_token"], kept["port"]
        prebuilt = (kept["user_id"], kept["password"], [(r, list(m)) for r, m in kept["layout"]])
        shutil.copytree(args.dataset / "ruma", work / "ruma")
        # The generated config names its data directory by absolute path: point it here.
        config = work / "ruma" / "homeserver.yaml"
        config.write_text(config.read_text().replace(kept["base_dir"], str(work / "ruma")))
    reg_path = work / "bench-appservice.yaml"
    reg_path.write_text(yaml.safe_dump(registration(as_token, hs_token), sort_keys=False))
    overrides = {"app_service_config_files": [str(reg_path)], "presence": {"enabled": False}}
    results: dict[str, Figures | str] = {}
    servers: list[tuple[str, ServerProcess]] = []
    try:
        ok, why = ruma_available()
        if ok:
            servers.append(
                (
                    "ruma",
                    RumaProcess(
                        work / "ruma",
                        port=ruma_port,
                        config_overrides=overrides,
                        source_tree=args.ruma_source,
                    ),
                )
            )
        else:
            results["ruma"] = why
        if not args.no_synapse:
            ok, why = synapse_available()
            if ok:
                servers.append(
                    ("synapse", SynapseProcess(work / "synapse", config_overrides=overrides))
                )
            else:
                results["synapse"] = why
        # One server at a time, so neither competes with the other for the two CPUs.
        for label, server in servers:
            try:
                server.start()
                if label == "ruma" and args.dataset is not None:
                    results[label] = await measure(
                        reactor,
                        label,
                        server,
                        as_token,
                        args,
                        prebuilt,
                        lambda built, s=server: _keep_dataset(args, s, as_token, hs_token, built),
                    )
                else:
                    results[label] = await measure(reactor, label, server, as_token, args)
            except Exception as e:  # noqa: BLE001 - one server failing still reports the other
                results[label] = str(e).splitlines()[0][:200]
                log(f"{label} failed: {e}\n{server.log_tail(20)}")
            finally:
                server.stop()
        report({n: results[n] for n in ("ruma", "synapse") if n in results}, args)
    finally:
        log(f"server logs kept in {work}")


def _dataset_key(args: argparse.Namespace) -> dict[str, int]:
    return {
        "rooms": args.rooms,
        "members": args.members,
        "messages": args.messages,
        "pool": args.pool,
        "seed": args.seed,
    }


def _kept_dataset(args: argparse.Namespace) -> dict[str, Any] | None:
    """The kept data set's description, if ``--dataset`` holds one of these sizes."""
    if args.dataset is None:
        return None
    state = args.dataset / "state.json"
    if not state.exists():
        return None
    kept: dict[str, Any] = json.loads(state.read_text())
    if kept.get("key") != _dataset_key(args):
        raise SystemExit(f"{args.dataset} holds a data set of other sizes: {kept.get('key')}")
    return kept


def _keep_dataset(
    args: argparse.Namespace, server: ServerProcess, as_token: str, hs_token: str, built: Built
) -> None:
    """Copy the freshly built (idle) server's directory into ``--dataset``, stopped so the
    SQLite files are consistent, then start it again."""
    dest: Path = args.dataset
    server.stop()
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(server.base_dir, dest / "ruma", dirs_exist_ok=True)
    user_id, password, layout = built
    (dest / "state.json").write_text(
        json.dumps(
            {
                "key": _dataset_key(args),
                "port": server.port,
                "as_token": as_token,
                "hs_token": hs_token,
                "base_dir": str(server.base_dir),
                "user_id": user_id,
                "password": password,
                "layout": layout,
            }
        )
    )
    log(f"  data set kept in {dest}")
    server.start()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="20 rooms x 10 members x 10 messages, 1 run, 5 samples"
    )
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument(
        "--pool", type=int, default=1000, help="how many distinct users the members are drawn from"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-synapse", action="store_true")
    parser.add_argument(
        "--idle-limit",
        type=float,
        default=900.0,
        help="longest wait (s) for a server to go idle after building",
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--ruma-source",
        type=Path,
        default=None,
        help="run Ruma from this source tree (e.g. an exported older commit)",
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="build Ruma's data set once into this directory and reuse it",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rooms, args.members, args.messages = 20, 10, 10
        args.pool, args.runs, args.samples = 100, 1, 5
    if args.members < 2:
        parser.error("--members must be at least 2")
    return args


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments)))
