"""Federation benchmark: Ruma and a second Synapse joining a big room on a Synapse.

    .venv/bin/python benchmarks/federation.py            # 2,000 members, 5,000 events
    .venv/bin/python benchmarks/federation.py --quick    # 100 members, 400 events
    .venv/bin/python benchmarks/federation.py --json     # also print the figures as JSON

On loopback, with one test CA trusted by everyone (see tests/interop/federation_env.py):

* **Synapse A** (the host) gets a public room of ``--members`` members and ``--events``
  events in all. It is built through an application service registered on A (users created
  and joined by masquerading with ``?user_id=``, messages sent concurrently), so setup is
  bounded by A's own write speed; the setup time is reported.
* **Ruma** and **Synapse B** (the comparison) each have one user join the room through A.
  *Join* is timed from ``POST /join`` until the joiner has sent a message (200) **and**
  ``GET /rooms/{id}/state`` on its own server returns the full current membership (for
  Synapse's partial-state joins this waits for the state resync, which is what "can see
  current state" means). The two joins take turns (``--synapse-first`` swaps the order).
* *Backfill*: each joiner then paginates ``/messages`` backwards (pages of 100) until it
  has ``--backfill`` events; the servers must fetch them from A over federation.
* *Inbound throughput*: ``--burst`` message PDUs are built and signed as A (with A's own
  signing key, by a user of A who is in the room, chained one after the other on the
  room's latest event) and PUT to each receiver in transactions of 50, each sent as soon as
  the last was answered. The figure is PDUs per second from the first ``PUT`` until the last
  event is readable through the receiver's client API (Synapse queues PDUs and answers
  before it has processed them; Ruma answers once they are persisted). The PDUs are real
  federation events signed by a real Synapse's key, but A's software did not produce them
  (it never sees them), so this measures receiving, not sending.

Every figure comes with Ruma/Synapse B as a ratio (below 1 is faster for times, above 1 for
rates). Absolute figures drift on a shared machine: compare within one run. Servers are
stopped by PID at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from ruma.federation.xmatrix import sign_request  # noqa: E402
from ruma.protocol.events import Event, build_event  # noqa: E402
from ruma.protocol.room_versions import get_room_version  # noqa: E402
from ruma.protocol.signing import SigningKey, read_signing_keys  # noqa: E402
from tests.interop.federation_env import (  # noqa: E402
    make_ruma,
    make_synapse,
    q,
)
from tests.interop.processes import (  # noqa: E402
    ServerProcess,
    Session,
    SynapseProcess,
    http_json,
    make_test_ca,
    register_session,
    ruma_available,
    synapse_available,
)

TIMEOUT = 600.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Building the big room on Synapse A through an application service
# --------------------------------------------------------------------------------------


class AppService:
    """Masquerading client of an appservice registered on a Synapse."""

    def __init__(self, base_url: str, server_name: str, token: str, sender: str) -> None:
        self.base_url = base_url
        self.server_name = server_name
        self.token = token
        self.sender = f"@{sender}:{server_name}"

    def call(self, method: str, path: str, body: Any = None, user: str | None = None) -> Any:
        if user is not None:
            path += ("&" if "?" in path else "?") + f"user_id={q(user)}"
        for attempt in range(5):
            status, out = http_json(method, self.base_url + path, body, token=self.token,
                                    timeout=120)
            if status == 200:
                return out
            if status == 429 or status >= 500:
                time.sleep(0.5 * (attempt + 1))
                continue
            break
        raise RuntimeError(f"{method} {path} as {user}: {status} {out}")

    def register(self, localpart: str) -> str:
        self.call(
            "POST", "/_matrix/client/v3/register",
            {"type": "m.login.application_service", "username": localpart},
        )
        return f"@{localpart}:{self.server_name}"


def write_appservice(path: Path) -> tuple[str, str]:
    as_token, hs_token = secrets.token_hex(16), secrets.token_hex(16)
    path.write_text(json.dumps({
        "id": "federation-bench",
        "url": None,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": "benchbot",
        "rate_limited": False,
        "namespaces": {
            "users": [{"exclusive": True, "regex": "@bench_.*"}],
            "aliases": [],
            "rooms": [],
        },
    }))
    return as_token, "benchbot"


def populate(asvc: AppService, members: int, events: int, concurrency: int) -> str:
    """A public room on A with ``members`` members and about ``events`` events."""
    room_id: str = asvc.call(
        "POST", "/_matrix/client/v3/createRoom",
        {"preset": "public_chat", "name": "federation benchmark"},
    )["room_id"]
    start = time.monotonic()

    def add_member(i: int) -> None:
        user = asvc.register(f"bench_{i}_{secrets.token_hex(2)}")
        asvc.call("POST", f"/_matrix/client/v3/join/{q(room_id)}", {}, user=user)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(add_member, range(members - 1)))
    log(f"  {members} members in {time.monotonic() - start:.1f}s")

    state = asvc.call("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state")
    # So far every event of the room is a state event (creation, then the joins).
    messages = max(0, events - len(state))
    start = time.monotonic()

    def send(i: int) -> None:
        asvc.call(
            "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/b{i}",
            {"msgtype": "m.text", "body": f"history {i}"},
        )

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(messages)))
    log(f"  {messages} messages in {time.monotonic() - start:.1f}s")
    return room_id


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def measure_join(joiner: Session, room_id: str, via: str, expected_members: int) -> dict[str, float]:
    """Seconds until the join answered, a message was sent, and the full state is visible."""
    t0 = time.monotonic()
    status, body = http_json(
        "POST", f"{joiner.base_url}/_matrix/client/v3/join/{q(room_id)}?server_name={q(via)}",
        {}, token=joiner.access_token, timeout=TIMEOUT,
    )
    if status != 200:
        raise RuntimeError(f"join on {joiner.base_url}: {status} {body}")
    t_join = time.monotonic() - t0
    joiner.call(
        "PUT", f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/hello",
        {"msgtype": "m.text", "body": "hello from the joiner"}, timeout=TIMEOUT,
    )
    t_send = time.monotonic() - t0

    def full_state() -> bool:
        status, state = http_json(
            "GET", f"{joiner.base_url}/_matrix/client/v3/rooms/{q(room_id)}/state",
            token=joiner.access_token, timeout=TIMEOUT,
        )
        if status != 200 or not isinstance(state, list):
            return False
        joined = sum(
            1 for e in state
            if e.get("type") == "m.room.member" and e["content"].get("membership") == "join"
        )
        return joined >= expected_members

    wait_until(full_state, TIMEOUT, "the full membership", interval=0.1)
    return {"join_answered_s": t_join, "sent_s": t_send, "join_total_s": time.monotonic() - t0}


def measure_backfill(joiner: Session, room_id: str, wanted: int) -> dict[str, float]:
    """Paginate ``/messages`` backwards until ``wanted`` events (or the room's start)."""
    t0 = time.monotonic()
    token = ""
    got = 0
    pages = 0
    empty = 0
    while got < wanted and pages < 300:
        path = f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=100"
        if token:
            path += f"&from={q(token)}"
        page = joiner.call("GET", path, timeout=TIMEOUT)
        pages += 1
        chunk = page.get("chunk", [])
        got += len(chunk)
        if any(e.get("type") == "m.room.create" for e in chunk) or "end" not in page:
            break
        # A server may answer a page with nothing while it backfills: ask again, boundedly.
        empty = empty + 1 if not chunk else 0
        if empty >= 5:
            break
        token = page["end"]
    elapsed = time.monotonic() - t0
    return {"backfill_s": elapsed, "backfill_events": float(got), "backfill_pages": float(pages),
            "backfill_events_per_s": got / elapsed if elapsed else 0.0}


class FederationCaller:
    """Signed federation requests as one server, over TLS trusting the test CA."""

    def __init__(self, origin: str, key: SigningKey, ca_path: Path) -> None:
        self.origin = origin
        self.key = key
        self.context = ssl.create_default_context(cafile=str(ca_path))

    def request(self, method: str, destination: str, path: str, body: Any = None) -> Any:
        auth = sign_request(method=method, uri=path, origin=self.origin,
                            destination=destination, content=body, key=self.key)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"https://{destination}{path}", data=data, method=method)
        req.add_header("Authorization", auth)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT, context=self.context) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(
                f"{method} {destination}{path}: {e.code} {e.read()[:300]!r}"
            ) from None


def synapse_key(server: SynapseProcess) -> SigningKey:
    text = (server.base_dir / "signing.key").read_text()
    return read_signing_keys(text)[0]


def build_burst(
    caller: FederationCaller, host: SynapseProcess, room_id: str, sender: str, count: int,
    asvc: AppService,
) -> list[dict[str, Any]]:
    """``count`` message PDUs by ``sender`` (of A), chained on the room's latest event."""
    version_id = asvc.call("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.create")
    room_version = get_room_version(str(version_id.get("room_version", "1")))
    state = asvc.call("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state")
    ids = {(e["type"], e["state_key"]): e["event_id"] for e in state}
    chunk = asvc.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=20"
    )["chunk"]
    if not chunk:
        raise RuntimeError("no recent event to chain the burst on")
    latest = chunk[0]["event_id"]

    def fetch(event_id: str) -> Event:
        out = caller.request("GET", host.server_name, f"/_matrix/federation/v1/event/{q(event_id)}")
        return Event.from_pdu(out["pdus"][0], room_version)

    auth = [fetch(ids[("m.room.create", "")]), fetch(ids[("m.room.power_levels", "")]),
            fetch(ids[("m.room.member", sender)])]
    prev = fetch(latest)
    out = []
    now = int(time.time() * 1000)
    for i in range(count):
        ev = build_event(
            room_version, room_id=room_id, sender=sender, type="m.room.message",
            content={"msgtype": "m.text", "body": f"burst {i}"},
            prev_events=[prev], auth_events=auth, origin_server_ts=now + i,
            server_name=host.server_name, signing_key=caller.key,
            event_id_localpart=f"burst{i}x{secrets.token_hex(4)}",
        )
        out.append(ev.pdu())
        prev = ev
    return out


def burst_indexes(reader: Session, room_id: str, limit: int) -> set[int]:
    """Indexes ``i`` of the "burst i" messages among the newest ``limit`` events."""
    seen: set[int] = set()
    token = ""
    remaining = limit
    while remaining > 0:
        path = f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit={min(remaining, 500)}"
        if token:
            path += f"&from={q(token)}"
        status, page = http_json("GET", reader.base_url + path, token=reader.access_token,
                                 timeout=120)
        if status != 200 or not isinstance(page, dict) or not page.get("chunk"):
            break
        for e in page["chunk"]:
            body = e.get("content", {}).get("body", "")
            if isinstance(body, str) and body.startswith("burst "):
                seen.add(int(body.split()[1]))
        remaining -= len(page["chunk"])
        if "end" not in page:
            break
        token = page["end"]
    return seen


def measure_burst(
    caller: FederationCaller, destination: str, pdus: list[dict[str, Any]],
    reader: Session, room_id: str, quiet: float,
) -> dict[str, float]:
    """Send the burst, then watch the receiver's timeline until every PDU is there or
    nothing new has appeared for ``quiet`` seconds. Rate: accepted PDUs over the time from
    the first PUT until the last one was seen."""
    t0 = time.monotonic()
    refused = 0
    prefix = secrets.token_hex(4)
    for n, start in enumerate(range(0, len(pdus), 50)):
        batch = pdus[start:start + 50]
        answer = caller.request(
            "PUT", destination, f"/_matrix/federation/v1/send/bench{prefix}{n}",
            {"origin": caller.origin, "origin_server_ts": int(time.time() * 1000),
             "pdus": batch, "edus": []},
        )
        refused += sum(1 for r in answer.get("pdus", {}).values() if r.get("error"))
    answered = time.monotonic() - t0
    count = 0
    last_change = time.monotonic()
    last_seen_at = answered
    while True:
        seen = burst_indexes(reader, room_id, len(pdus) + 50)
        now = time.monotonic()
        if len(seen) > count:
            count, last_change, last_seen_at = len(seen), now, now - t0
        if count >= len(pdus) or now - last_change > quiet:
            break
        time.sleep(0.2)
    return {"burst_answered_s": answered, "burst_accepted": float(count),
            "burst_refused_in_answer": float(refused), "burst_last_seen_s": last_seen_at,
            "burst_pdus_per_s": count / last_seen_at if last_seen_at else 0.0}


# --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="ruma-fed-bench-"))
    log(f"working in {base}")
    ca = make_test_ca(base / "ca")
    as_path = base / "appservice.json"
    as_token, sender_local = write_appservice(as_path)
    host = make_synapse(base / "synapse-a", ca, name="synapse-a",
                        overrides={"app_service_config_files": [str(as_path)]})
    peer = make_synapse(base / "synapse-b", ca, name="synapse-b")
    ruma = make_ruma(base / "ruma", ca)
    servers: list[ServerProcess] = [host, peer, ruma]
    results: dict[str, Any] = {"members": args.members, "events": args.events}
    try:
        for s in servers:
            s.start()
        asvc = AppService(host.base_url, host.server_name, as_token, sender_local)
        log(f"building a room of {args.members} members and {args.events} events on A")
        t0 = time.monotonic()
        room_id = populate(asvc, args.members, args.events, args.concurrency)
        results["setup_s"] = time.monotonic() - t0
        log(f"  room {room_id} ready in {results['setup_s']:.1f}s")

        ruma_user = register_session(ruma.base_url, f"joiner{secrets.token_hex(3)}", "pw")
        peer_user = register_session(peer.base_url, f"joiner{secrets.token_hex(3)}", "pw")
        joiners = [("ruma", ruma_user), ("synapse_b", peer_user)]
        if args.synapse_first:
            joiners.reverse()
        expected = args.members  # everyone on A plus the first joiner at least
        def phase(label: str, what: str, fn: Callable[[], dict[str, float]]) -> None:
            log(f"{label}: {what}")
            try:
                results.setdefault(label, {}).update(fn())
            except Exception as e:  # a failed phase is reported, the others still run
                results.setdefault("errors", []).append(f"{label} {what}: {e}")
            log(f"  {label}: {results[label]}")

        for label, user in joiners:
            phase(label, "joining",
                  lambda u=user: measure_join(u, room_id, host.server_name, expected))
        for label, user in joiners:
            phase(label, f"backfilling {args.backfill} events",
                  lambda u=user: measure_backfill(u, room_id, args.backfill))

        if args.burst:
            caller = FederationCaller(host.server_name, synapse_key(host), ca.cert_path)
            pdus = build_burst(caller, host, room_id, asvc.sender, args.burst, asvc)
            for label, user, dest in (("ruma", ruma_user, ruma.server_name),
                                      ("synapse_b", peer_user, peer.server_name)):
                phase(label, f"receiving a burst of {len(pdus)} PDUs",
                      lambda u=user, d=dest: measure_burst(caller, d, pdus, u, room_id, 15.0))
        results["rss_mib"] = {
            s.name: round((s.rss_bytes() or 0) / 2**20) for s in servers
        }
    finally:
        def stop(s: ServerProcess) -> None:
            try:
                s.stop()
            finally:
                s.kill9()

        threads = [threading.Thread(target=stop, args=(s,)) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    return results


def report(results: dict[str, Any]) -> None:
    r, s = results.get("ruma", {}), results.get("synapse_b", {})
    print(f"\nroom on Synapse A: {results['members']} members, ~{results['events']} events "
          f"(built in {results.get('setup_s', 0):.0f}s)")
    print(f"{'figure':<34}{'Ruma':>12}{'Synapse B':>12}{'Ruma/B':>10}")
    rows = [
        ("join answered (s)", "join_answered_s"),
        ("join + sent (s)", "sent_s"),
        ("join until full state (s)", "join_total_s"),
        ("backfill time (s)", "backfill_s"),
        ("backfilled events", "backfill_events"),
        ("backfill pages", "backfill_pages"),
        ("backfill events/s", "backfill_events_per_s"),
        ("burst: all PUTs answered (s)", "burst_answered_s"),
        ("burst: PDUs accepted", "burst_accepted"),
        ("burst: errors in the answers", "burst_refused_in_answer"),
        ("burst: last accepted seen (s)", "burst_last_seen_s"),
        ("burst: accepted PDUs/s", "burst_pdus_per_s"),
    ]
    for name, key in rows:
        if key not in r and key not in s:
            continue
        a, b = r.get(key), s.get(key)
        ratio = f"{a / b:10.2f}" if a is not None and b else f"{'-':>10}"
        fa = f"{a:12.2f}" if a is not None else f"{'-':>12}"
        fb = f"{b:12.2f}" if b is not None else f"{'-':>12}"
        print(f"{name:<34}{fa}{fb}{ratio}")
    for error in results.get("errors", []):
        print(f"FAILED: {error}")
    if "rss_mib" in results:
        print("memory at the end (MiB):", results["rss_mib"])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small room (100 members, 400 events, backfill 200, burst 500)")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--backfill", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=2000, help="0 to skip")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--synapse-first", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.events, args.backfill, args.burst = 100, 400, 200, 500
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds through run()'s finally, which stops the servers by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for ok, why in (synapse_available(), ruma_available()):
        if not ok:
            print(f"cannot run: {why}", file=sys.stderr)
            return 2
    results = run(args)
    report(results)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
