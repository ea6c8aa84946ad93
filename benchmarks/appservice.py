"""Appservice benchmark: events/s delivered to an appservice, and send-to-receipt delay.

    .venv/bin/python benchmarks/appservice.py [--messages 500] [--latency 100]

Starts a Ruma (``twistd ruma``, SQLite) on loopback with one appservice registered, whose
HTTP server (a threaded ``http.server`` in this process) records the arrival time of every
event in every transaction it accepts. One user sends into a room where a namespace user of
the appservice is joined:

* throughput: ``--messages`` messages from 8 sending threads at once; events per second
  from the first send to the appservice holding the last one;
* delay: ``--latency`` messages one after the other; for each, the time from just before the
  ``PUT /send`` to its arrival at the appservice; median and p95.

Every wait has a deadline; the server is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.interop.processes import RumaProcess, free_port, http_json  # noqa: E402

HS_TOKEN = "bench-hs"
AS_TOKEN = "bench-as"


class Receiver:
    def __init__(self, port: int) -> None:
        self.arrivals: dict[str, float] = {}
        self.paused = False
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if receiver.paused:
                    self.send_response(503)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                now = time.perf_counter()
                with receiver.cond:
                    for event in body.get("events", []):
                        receiver.arrivals.setdefault(event["event_id"], now)
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # Ruma closing a kept-alive connection at the end is not news

        self.server = Server(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, event_id: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while event_id not in self.arrivals:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{event_id} never reached the appservice")
                self.cond.wait(left)
            return self.arrivals[event_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def call(base: str, method: str, path: str, body: Any, token: str) -> Any:
    status, answer = http_json(method, base + "/_matrix/client/v3" + path, body, token=token)
    if status != 200:
        raise RuntimeError(f"{method} {path}: {status} {answer}")
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--latency", type=int, default=100)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ruma-as-bench-"))
    as_port = free_port()
    reg = {
        "id": "bench", "url": f"http://127.0.0.1:{as_port}", "as_token": AS_TOKEN,
        "hs_token": HS_TOKEN, "sender_localpart": "benchbot", "rate_limited": False,
        "namespaces": {"users": [{"exclusive": True, "regex": "@bench_.*"}],
                       "aliases": [], "rooms": []},
    }
    reg_path = workdir / "bench.yaml"
    reg_path.write_text(yaml.safe_dump(reg))
    receiver = Receiver(as_port)
    ruma = RumaProcess(workdir / "ruma",
                       config_overrides={"app_service_config_files": [str(reg_path)]})
    ruma.start()
    try:
        base = ruma.base_url
        status, body = http_json("POST", base + "/_matrix/client/v3/register",
                                 {"username": "sender", "password": "pw",
                                  "auth": {"type": "m.login.dummy"}})
        token = body["access_token"]
        room = call(base, "POST", "/createRoom", {}, token)["room_id"]
        q = urllib.parse.quote
        call(base, "POST", "/register", {"type": "m.login.application_service",
                                         "username": "bench_puppet"}, AS_TOKEN)
        puppet = f"@bench_puppet:{ruma.server_name}"
        call(base, "POST", f"/rooms/{q(room)}/invite", {"user_id": puppet}, token)
        call(base, "POST", f"/join/{q(room)}?user_id={q(puppet)}", {}, AS_TOKEN)

        def send(i: int, tag: str) -> tuple[str, float]:
            started = time.perf_counter()
            answer = call(base, "PUT", f"/rooms/{q(room)}/send/m.room.message/{tag}{i}",
                          {"msgtype": "m.text", "body": f"{tag} {i}"}, token)
            return answer["event_id"], started

        for i in range(20):  # warm up
            receiver.wait_for(send(i, "warm")[0])

        # Delay: one at a time.
        delays = []
        for i in range(args.latency):
            event_id, started = send(i, "lat")
            delays.append((receiver.wait_for(event_id) - started) * 1000)
        delays.sort()

        # Throughput: many senders at once.
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            sent = list(pool.map(lambda i: send(i, "tp"), range(args.messages)))
        last = max(receiver.wait_for(event_id, 120) for event_id, _ in sent)
        elapsed = last - t0
        # Backlog drain: the appservice refuses while messages pile up, then comes back
        # (announced with a ping); delivery alone, without the sending in the measurement.
        receiver.paused = True
        with ThreadPoolExecutor(8) as pool:
            backlog = list(pool.map(lambda i: send(i, "bl"), range(args.messages)))
        receiver.paused = False
        t1 = time.perf_counter()
        http_json("POST", base + "/_matrix/client/v1/appservice/bench/ping", {}, token=AS_TOKEN)
        drained = max(receiver.wait_for(event_id, 120) for event_id, _ in backlog) - t1
        print(f"appservice delivery, Ruma on loopback (SQLite), {args.messages} messages:")
        print(f"  throughput: {args.messages / elapsed:.0f} events/s delivered"
              f" ({elapsed:.2f} s from the first send to the last receipt, 8 senders)")
        print(f"  backlog drain: {args.messages / drained:.0f} events/s"
              f" ({args.messages} queued while the appservice refused, delivered in"
              f" {drained:.2f} s once it was back)")
        print(f"  send->appservice delay over {args.latency} sequential messages:"
              f" median {statistics.median(delays):.1f} ms,"
              f" p95 {delays[int(len(delays) * 0.95) - 1]:.1f} ms")
    finally:
        ruma.stop()
        receiver.stop()


if __name__ == "__main__":
    main()
