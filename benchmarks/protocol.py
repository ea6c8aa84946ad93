"""Protocol-core benchmark: how close full PDU checking comes to raw ed25519 verification.

    .venv/bin/python -m benchmarks.protocol            # about half a minute
    .venv/bin/python -m benchmarks.protocol --quick    # a few seconds
    .venv/bin/python -m benchmarks.protocol --profile  # also cProfile the full check
    .venv/bin/python -m benchmarks.protocol --cpu      # CPU time, for a busy shared machine

Prints, all measured in this one run (single process, ``time.perf_counter``; with
``--cpu``, ``time.process_time``, which other processes' load disturbs less):

0. which JSON library ``ruma.protocol.json`` uses (orjson when installed, else the stdlib);

1. raw PyNaCl ed25519 verifications per second, over the same bytes Ruma verifies for each
   PDU (the canonical JSON of its redacted form), so only the Python work differs;
2. PDUs fully checked per second by Ruma, the way ``/send`` delivers them: a transaction
   of PDUs at a time (at most 50; here each room's 46 captured PDUs), through
   ``Event.from_json`` (decode, canonical-JSON and shape checks, the reference hash that is
   the event ID from v3), the content hash, Synapse's signatures checked over the redacted
   form (:func:`verify_events_signatures`, which does the Python work for the whole batch
   and then the ed25519 checks back to back) and the auth rules against the event's auth
   events (``check_auth_events`` + ``check_auth``); and that rate as a share of (1): the
   goal is 70 % or more. Then the same, one PDU at a time (each stage interleaved with the
   others, which costs the ed25519 code its warm caches), and a per-stage breakdown;
3. seconds to resolve the state of a room with 10,000 members and 100 conflicted state
   events (``benchmarks.state_res_bench.bench_state_res``; v12, state res v2.1).

The PDUs are the real ones Synapse produced in ``tests/vectors/synapse/`` (rooms v10 and
v12: joins, invites, knocks, restricted joins, kicks, bans, power levels, messages, edits,
redactions), each checked in turn, round and round.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruma.protocol import json as ruma_json
from ruma.protocol.auth import check_auth, check_auth_events
from ruma.protocol.events import Event, verify_event_signatures, verify_events_signatures
from ruma.protocol.json import encode_canonical_json
from ruma.protocol.redaction import redact
from ruma.protocol.room_versions import RoomVersion, get_room_version
from ruma.protocol.signing import VerifyKey, decode_base64, decode_verify_key

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "synapse"


class Corpus:
    """The captured PDUs of one room, as the raw JSON bytes a server would receive."""

    def __init__(self, version: str) -> None:
        data = json.loads((VECTORS / f"v{version}.json").read_text())
        self.room_version: RoomVersion = get_room_version(data["room_version"])
        self.server_name: str = data["server_name"]
        self.keys: dict[str, VerifyKey] = {
            k: decode_verify_key(k, v) for k, v in data["verify_keys"].items()
        }
        self.raw: list[bytes] = [json.dumps(p).encode() for p in data["events"]]
        self.events = [Event.from_pdu(p, self.room_version) for p in data["events"]]
        self.by_id = {e.event_id: e for e in self.events}
        self.create = self.events[0] if self.room_version.room_id_from_create_event else None
        # For the raw baseline: exactly the bytes and signature Ruma checks per PDU.
        self.signed: list[tuple[VerifyKey, bytes, bytes]] = []
        strict = self.room_version.strict_canonicaljson
        for pdu in data["events"]:
            redacted = redact(pdu, self.room_version)
            sigs = redacted.pop("signatures")[self.server_name]
            redacted.pop("unsigned", None)
            ((key_id, sig),) = sigs.items()
            message = encode_canonical_json(redacted, strict=strict)
            self.signed.append((self.keys[key_id], message, decode_base64(sig)))

    def get_key(self, server: str, key_id: str) -> VerifyKey | None:
        return self.keys.get(key_id) if server == self.server_name else None

    def full_check(self, raw: bytes) -> Event:
        """What receiving one PDU costs the protocol core (no I/O, auth events at hand)."""
        event = Event.from_json(raw, self.room_version)
        if not event.content_hash_matches():
            raise AssertionError(f"content hash of {event.event_id}")
        verify_event_signatures(event, self.get_key)
        auth_state = check_auth_events(event, self.by_id, create_event=self.create)
        check_auth(event, auth_state)
        return event

    def check_transaction(self, raws: list[bytes]) -> list[Event]:
        """The same checks for a transaction's PDUs together, as the inbound path makes
        them: parse and hash each, the signatures as one batch, then auth each."""
        rv = self.room_version
        events = [Event.from_json(raw, rv) for raw in raws]
        for event in events:
            if not event.content_hash_matches():
                raise AssertionError(f"content hash of {event.event_id}")
        get_key = self.get_key
        for error in verify_events_signatures([(event, get_key) for event in events]):
            if error is not None:
                raise error
        for event in events:
            check_auth(event, check_auth_events(event, self.by_id, create_event=self.create))
        return events


def per_item(
    workloads: dict[str, Callable[[], Any]],
    n_items: int,
    seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per item of each workload (each one pass over ``n_items`` items),
    run interleaved.

    Each round runs every workload once, one after the other, so a shared machine's
    drifting load hits them all alike; rounds repeat for ``seconds``.
    """
    times: dict[str, list[float]] = {name: [] for name in workloads}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times[next(iter(times))]) < 5:
        for name, work in workloads.items():
            started = clock()
            work()
            times[name].append((clock() - started) / n_items)
    return {name: statistics.median(ts) for name, ts in times.items()}


def each(items: list[Any], work: Callable[[Any], Any]) -> Callable[[], None]:
    """A workload: ``work`` on every item in turn."""

    def run() -> None:
        for item in items:
            work(item)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--profile", action="store_true", help="cProfile the full check")
    parser.add_argument("--cpu", action="store_true", help="time with process_time")
    args = parser.parse_args()
    clock = time.process_time if args.cpu else time.perf_counter
    seconds = 1.5 if args.quick else 6.0
    members = 2_000 if args.quick else 10_000
    conflicted = 100

    corpora = [Corpus("10"), Corpus("12")]
    signed = [s for c in corpora for s in c.signed]
    raw = [(c, r) for c in corpora for r in c.raw]
    print(f"corpus: {len(raw)} real Synapse PDUs (rooms v10 and v12); {seconds:.1f} s per figure"
          f"{'; CPU time' if args.cpu else ''}")  # fmt: skip
    orjson = ruma_json._orjson
    backend = f"orjson {orjson.__version__}" if orjson is not None else "stdlib json only"
    print(f"(0) JSON in ruma.protocol.json:       {backend}")

    def raw_verify(item: tuple[VerifyKey, bytes, bytes]) -> None:
        key, message, sig = item
        key.verify(message, sig)

    def transactions() -> None:
        for corpus in corpora:
            corpus.check_transaction(corpus.raw)

    main_figures = per_item(
        {
            "raw": each(signed, raw_verify),
            "txn": transactions,
            "one": each(raw, lambda item: item[0].full_check(item[1])),
        },
        len(raw),
        seconds * 2,
        clock,
    )
    raw_rate, txn_rate, one_rate = (1 / main_figures[k] for k in ("raw", "txn", "one"))
    ratio = txn_rate / raw_rate
    verdict = "meets" if ratio >= 0.70 else "BELOW"
    print(f"(1) raw PyNaCl ed25519 verify:        {raw_rate:10,.0f} verifications/s")
    print(f"(2) Ruma full PDU check, by txn:      {txn_rate:10,.0f} events/s")
    print(f"    ratio to raw verify:              {ratio:10.1%}   ({verdict} the 70 % goal)")
    print(
        f"    one PDU at a time:                {one_rate:10,.0f} events/s"
        f" = {one_rate / raw_rate:.1%} of raw"
    )

    # Per-stage cost, each stage alone on the same PDUs (microseconds per PDU).
    events = [(c, Event.from_json(r, c.room_version)) for c, r in raw]
    stage_times = per_item(
        {
            "JSON decode (orjson)": each(raw, lambda item: ruma_json._orjson.loads(item[1])),
            "Event.from_json (incl. event ID)": each(
                raw, lambda item: Event.from_json(item[1], item[0].room_version)
            ),
            "content hash": each(events, lambda item: item[1].content_hash_matches()),
            "signatures (one batch)": lambda: [
                verify_events_signatures([(e, c.get_key) for c2, e in events if c2 is c])
                for c in corpora
            ],
            "auth (auth events + rules)": each(
                events,
                lambda item: check_auth(
                    item[1],
                    check_auth_events(item[1], item[0].by_id, create_event=item[0].create),
                ),
            ),
            "(raw verify, for scale)": each(signed, raw_verify),
        },
        len(raw),
        seconds,
        clock,
    )
    stages = {name: t * 1e6 for name, t in stage_times.items()}
    scale = stages.pop("(raw verify, for scale)")
    print(f"    per PDU, each stage alone (raw verify in the same rounds: {scale:.1f} us):")
    for name, micros in stages.items():
        print(f"      {name:34} {micros:8.1f} us")
    print(f"      {'total of stages':34} {sum(stages.values()) - stages['JSON decode (orjson)']:8.1f} us"
          f"   (transaction check measured: {1e6 / txn_rate:.1f} us; decode is inside from_json)")  # fmt: skip

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            transactions()
        profiler.disable()
        print("    cProfile of the full check (top 25 by own time):")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)

    # (3) state resolution.
    try:
        from benchmarks.state_res_bench import bench_state_res
    except ImportError as e:  # pragma: no cover - the state-res engineer's module
        print(f"(3) state resolution: benchmarks.state_res_bench unavailable ({e})")
        return
    started = time.perf_counter()
    res_seconds = bench_state_res(members, conflicted)
    built = time.perf_counter() - started
    print(
        f"(3) resolve_state, {members:,} members, {conflicted} conflicted state events (v12): "
        f"{res_seconds * 1000:,.1f} ms  (best of 3; building the room took {built:.1f} s)"
    )


if __name__ == "__main__":
    main()
