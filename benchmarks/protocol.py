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
2. PDUs fully checked per second by Ruma: JSON decode, ``Event.from_pdu`` (shape checks and,
   from v3, the reference hash that is the event ID), the content hash, Synapse's signature
   verified over the redacted form, and the auth rules against the event's auth events
   (``check_auth_events`` + ``check_auth``); and that rate as a share of (1) — the goal is
   70 % or more. Then a what-if (:func:`lean_check`: the same checks with one canonical
   encoding per hashed form and no deep copies) and a per-stage breakdown;
3. seconds to resolve the state of a room with 10,000 members and 100 conflicted state
   events (``benchmarks.state_res_bench.bench_state_res``; v12, state res v2.1).

The PDUs are the real ones Synapse produced in ``tests/vectors/synapse/`` (rooms v10 and
v12: joins, invites, knocks, restricted joins, kicks, bans, power levels, messages, edits,
redactions), each checked in turn, round and round.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruma.protocol import json as ruma_json
from ruma.protocol.auth import check_auth, check_auth_events
from ruma.protocol.events import Event, check_content_hash, verify_event_signatures
from ruma.protocol.json import decode_json, encode_canonical_json
from ruma.protocol.redaction import redact, redacted_content_keys, redacted_top_level_keys
from ruma.protocol.room_versions import RoomVersion, get_room_version
from ruma.protocol.signing import VerifyKey, decode_base64, decode_verify_key, encode_base64

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
        """What receiving a PDU costs the protocol core (no I/O, auth events at hand)."""
        event = Event.from_json(raw, self.room_version)
        if not event.content_hash_matches():
            raise AssertionError(f"content hash of {event.event_id}")
        verify_event_signatures(event, self.get_key)
        auth_state = check_auth_events(event, self.by_id, create_event=self.create)
        check_auth(event, auth_state)
        return event


_CANONICAL = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
)


def lean_check(corpus: Corpus, raw: bytes) -> None:
    """A what-if, not Ruma's code: the same hash, ID and signature checks done with one
    canonical encoding per hashed form and no deep copies (the auth stage is Ruma's, on an
    already parsed event). It bounds what the proposals in the report could gain.

    It uses the stdlib ``json`` module and skips what Ruma must still do per PDU: the shape
    and identifier checks, the canonical-JSON validation (strict integers, no floats) of
    the decoded, hashed and frozen values, and the frozen copy an ``Event`` keeps."""
    rv = corpus.room_version
    pdu = json.loads(raw)
    unhashed = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    content_hash = hashlib.sha256(_CANONICAL.encode(unhashed).encode()).digest()
    if content_hash != decode_base64(pdu["hashes"]["sha256"]):
        raise AssertionError("content hash")
    keep = redacted_top_level_keys(rv)
    redacted = {k: v for k, v in pdu.items() if k in keep and k != "signatures"}
    kept = redacted_content_keys(rv, pdu["type"])
    if kept is not None:
        content = pdu["content"]
        redacted["content"] = {k: content[k] for k in kept if k in content}
    # The reference hash and the signature cover the same bytes.
    message = _CANONICAL.encode(redacted).encode()
    event_id = "$" + encode_base64(hashlib.sha256(message).digest(), urlsafe=True)
    ((key_id, sig),) = pdu["signatures"][corpus.server_name].items()
    corpus.keys[key_id].verify(message, decode_base64(sig))
    event = corpus.by_id[event_id]
    check_auth(event, check_auth_events(event, corpus.by_id, create_event=corpus.create))


def per_item(
    workloads: dict[str, Callable[[int], Any]],
    n_items: int,
    seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per item of each workload, run interleaved.

    Each round runs every workload once over items 0..n_items-1, one after the other, so
    a shared machine's drifting load hits them all alike; rounds repeat for ``seconds``.
    """
    times: dict[str, list[float]] = {name: [] for name in workloads}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times[next(iter(times))]) < 5:
        for name, work in workloads.items():
            started = clock()
            for i in range(n_items):
                work(i)
            times[name].append((clock() - started) / n_items)
    return {name: statistics.median(ts) for name, ts in times.items()}


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

    def raw_verify(i: int) -> None:
        key, message, sig = signed[i]
        key.verify(message, sig)

    def full(i: int) -> None:
        corpus, data = raw[i]
        corpus.full_check(data)

    main_figures = per_item(
        {"raw": raw_verify, "full": full, "lean": lambda i: lean_check(*raw[i])},
        len(raw),
        seconds * 2,
        clock,
    )
    raw_rate, full_rate, lean_rate = (1 / main_figures[k] for k in ("raw", "full", "lean"))
    ratio = full_rate / raw_rate
    verdict = "meets" if ratio >= 0.70 else "BELOW"
    print(f"(1) raw PyNaCl ed25519 verify:        {raw_rate:10,.0f} verifications/s")
    print(f"(2) Ruma full PDU check:              {full_rate:10,.0f} events/s")
    print(f"    ratio to raw verify:              {ratio:10.1%}   ({verdict} the 70 % goal)")
    print(
        f"    what-if, same checks done lean:   {lean_rate:10,.0f} events/s"
        f" = {lean_rate / raw_rate:.1%} of raw (lean_check; not Ruma's code)"
    )

    # Per-stage cost, each stage alone on the same PDUs (microseconds per PDU).
    parsed = [(c, decode_json(r, strict=c.room_version.strict_canonicaljson)) for c, r in raw]
    events = [Event.from_pdu(p, c.room_version) for c, p in parsed]

    stage_times = per_item(
        {
            "JSON decode": lambda i: decode_json(raw[i][1]),
            "Event.from_pdu (incl. event ID)": lambda i: Event.from_pdu(
                parsed[i][1], parsed[i][0].room_version
            ),
            "content hash": lambda i: check_content_hash(parsed[i][1], parsed[i][0].room_version),
            "signature (redact+encode+verify)": lambda i: verify_event_signatures(
                events[i], raw[i][0].get_key
            ),
            "auth (auth events + rules)": lambda i: check_auth(
                events[i],
                check_auth_events(events[i], raw[i][0].by_id, create_event=raw[i][0].create),
            ),
            "(raw verify, for scale)": raw_verify,
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
    print(f"      {'total of stages':34} {sum(stages.values()):8.1f} us"
          f"   (full check measured: {1e6 / full_rate:.1f} us)")  # fmt: skip

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for corpus, data in raw:
                corpus.full_check(data)
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
