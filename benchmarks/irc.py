"""IRC bridge benchmark: messages/s relayed each way, and the relay delay (median, p95).

    .venv/bin/python benchmarks/irc.py [--users 50] [--messages 500] [--latency 100]

Starts InspIRCd (flood limits off) and a Ruma (``twistd ruma``, SQLite) with the IRC bridge
on loopback, then puts ``--users`` IRC users (raw sockets) and ``--users`` Matrix users
(client API) in one portal room, so the bridge runs one puppet connection per Matrix user.

* IRC -> Matrix: ``--messages`` PRIVMSGs spread over the IRC users, sent as fast as the
  sockets take them; a Matrix observer long-polls ``/sync`` and notes when each arrives.
* Matrix -> IRC: ``--messages`` messages spread over the Matrix users (8 sending threads);
  an IRC observer notes when each PRIVMSG arrives.
* delay: ``--latency`` messages one after the other in each direction; for each, the time
  from just before sending to its arrival on the other side.

Every wait has a deadline; both servers are stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.interop.processes import RumaProcess, http_json  # noqa: E402
from tests.interop.test_irc_bridge import InspIRCd, bridge_config  # noqa: E402

CHANNEL = "#bench"
WAIT = 180.0


class IrcCrowd:
    """Many raw IRC clients, all read by one select loop (PINGs answered, lines kept for
    the observer, the first client)."""

    def __init__(self, port: int, nicks: list[str]) -> None:
        self.port = port
        self.socks: dict[socket.socket, str] = {}
        self.buffers: dict[socket.socket, bytes] = {}
        self.lines: list[tuple[float, str]] = []  # the observer's lines, with arrival time
        self.registered: set[str] = set()
        self.lock = threading.Lock()
        self.running = True
        for nick in nicks:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            self.socks[s] = nick
            self.buffers[s] = b""
            self._send(s, f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n")
        self.observer = next(iter(self.socks))
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _send(self, s: socket.socket, text: str) -> None:
        data = text.encode("utf-8")
        while data:
            try:
                n = s.send(data)
                data = data[n:]
            except BlockingIOError:
                select.select([], [s], [], 1)

    def send(self, nick: str, line: str) -> None:
        for s, n in self.socks.items():
            if n == nick:
                self._send(s, line + "\r\n")
                return

    def _loop(self) -> None:
        while self.running:
            try:
                readable, _, _ = select.select(list(self.socks), [], [], 0.2)
            except (OSError, ValueError):
                return
            now = time.monotonic()
            for s in readable:
                try:
                    data = s.recv(1 << 16)
                except OSError:
                    continue
                if not data:
                    continue
                buf = self.buffers[s] + data
                *complete, self.buffers[s] = buf.split(b"\r\n")
                for raw in complete:
                    line = raw.decode("utf-8", "replace")
                    if line.startswith("PING "):
                        self._send(s, "PONG " + line[5:] + "\r\n")
                    elif f" 001 {self.socks[s]} " in line:
                        with self.lock:
                            self.registered.add(self.socks[s])
                    if s is self.observer:
                        with self.lock:
                            self.lines.append((now, line))

    def close(self) -> None:
        self.running = False
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def wait_until(pred: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


class MatrixObserver:
    """One Matrix user long-polling /sync, noting when each message body arrives."""

    def __init__(self, base: str, token: str, room_id: str) -> None:
        self.base = base + "/_matrix/client/v3"
        self.token = token
        self.room_id = room_id
        self.arrivals: dict[str, float] = {}
        self.members: set[str] = set()
        self.since: str | None = None
        self.running = True
        status, body = http_json("GET", self.base + "/sync?timeout=0", token=token)
        self.since = body["next_batch"]
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while self.running:
            q = "timeout=5000&since=" + urllib.parse.quote(self.since or "")
            try:
                status, body = http_json("GET", self.base + "/sync?" + q, token=self.token,
                                         timeout=30)
            except OSError:
                if not self.running:
                    return
                raise
            now = time.monotonic()
            if status != 200:
                time.sleep(0.2)
                continue
            self.since = body["next_batch"]
            room = body.get("rooms", {}).get("join", {}).get(self.room_id, {})
            for e in room.get("timeline", {}).get("events", []):
                if e.get("type") == "m.room.message":
                    self.arrivals.setdefault(str(e["content"].get("body")), now)
                elif e.get("type") == "m.room.member" and e["content"].get("membership") == \
                        "join":
                    self.members.add(e["state_key"])


def register(base: str, name: str) -> tuple[str, str]:
    status, body = http_json("POST", base + "/_matrix/client/v3/register",
                             {"username": name, "password": "pw-" + name,
                              "auth": {"type": "m.login.dummy"}}, timeout=60)
    if status != 200:
        raise RuntimeError(f"register {name}: {status} {body}")
    return body["user_id"], body["access_token"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--latency", type=int, default=100)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ruma-irc-bench-"))
    ircd = InspIRCd(tmp / "ircd")
    ruma: RumaProcess | None = None
    crowd: IrcCrowd | None = None
    try:
        ircd.start()
        ruma = RumaProcess(tmp / "ruma", config_overrides=bridge_config(
            ircd.port, channels={CHANNEL: {}}))
        ruma.start()
        base = ruma.base_url
        server = ruma.server_name
        alias = f"#irc_test_bench:{server}"
        print(f"cpus: {os.cpu_count()}, load: {os.getloadavg()[0]:.2f}")

        # The IRC side.
        nicks = [f"irc{i:02d}" for i in range(args.users)]
        crowd = IrcCrowd(ircd.port, nicks)
        wait_until(lambda: len(crowd.registered) == len(nicks), "IRC registrations")
        for nick in nicks:
            crowd.send(nick, f"JOIN {CHANNEL}")

        # The Matrix side: users register and join the portal (each gets a puppet).
        with ThreadPoolExecutor(16) as pool:
            users = list(pool.map(lambda i: register(base, f"mx{i:02d}"),
                                  range(args.users)))
        room_id = http_json("POST", base + "/_matrix/client/v3/join/"
                            + urllib.parse.quote(alias), {}, token=users[0][1])[1]["room_id"]
        observer = MatrixObserver(base, users[0][1], room_id)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda u: http_json(
                "POST", base + "/_matrix/client/v3/join/" + urllib.parse.quote(room_id), {},
                token=u[1], timeout=60), users[1:]))
        t0 = time.monotonic()

        def puppets_in_channel() -> int:
            with crowd.lock:
                lines = list(crowd.lines)
            joined = {ln.split("!", 1)[0][1:] for _, ln in lines
                      if " JOIN " in ln and ln.startswith(":mx")}
            return len(joined)

        wait_until(lambda: puppets_in_channel() >= args.users, "the puppets to join",
                   timeout=300)
        def irc_users_in_room() -> int:
            status, body = http_json(
                "GET", f"{base}/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/"
                "joined_members", token=users[0][1])
            joined = body.get("joined", {}) if status == 200 else {}
            return sum(1 for m in joined if m.startswith("@irc_test_irc"))

        wait_until(lambda: irc_users_in_room() >= args.users, "the IRC users in the room",
                   timeout=300)
        print(f"setup: {args.users} IRC users and {args.users} Matrix users (puppets) in "
              f"one portal in {time.monotonic() - t0:.1f}s")

        # IRC -> Matrix throughput.
        start = time.monotonic()
        for i in range(args.messages):
            crowd.send(nicks[i % len(nicks)], f"PRIVMSG {CHANNEL} :i2m-{i}")
        wait_until(lambda: all(f"i2m-{i}" in observer.arrivals for i in range(args.messages)),
                   "IRC messages on Matrix")
        last = max(observer.arrivals[f"i2m-{i}"] for i in range(args.messages))
        i2m_rate = args.messages / (last - start)

        # Matrix -> IRC throughput.
        def seen_on_irc(prefix: str, n: int) -> dict[str, float]:
            with crowd.lock:
                lines = list(crowd.lines)
            out: dict[str, float] = {}
            for at, ln in lines:
                if " PRIVMSG " in ln and f":{prefix}" in ln:
                    out.setdefault(ln.rsplit(":", 1)[1], at)
            return out

        def send_matrix(i: int, text: str) -> None:
            user_id, token = users[i % len(users)]
            status, body = http_json(
                "PUT", f"{base}/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/send/"
                f"m.room.message/{text}", {"msgtype": "m.text", "body": text}, token=token,
                timeout=60)
            if status != 200:
                raise RuntimeError(f"send: {status} {body}")

        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: send_matrix(i, f"m2i-{i}"), range(args.messages)))
        wait_until(lambda: len(seen_on_irc("m2i-", args.messages)) >= args.messages,
                   "Matrix messages on IRC")
        arrivals = seen_on_irc("m2i-", args.messages)
        m2i_rate = args.messages / (max(arrivals.values()) - start)

        # Delays, one message at a time.
        i2m_delays: list[float] = []
        for i in range(args.latency):
            text = f"i2m-lat-{i}"
            sent = time.monotonic()
            crowd.send(nicks[(i + 1) % len(nicks)], f"PRIVMSG {CHANNEL} :{text}")
            wait_until(lambda t=text: t in observer.arrivals, "a delayed IRC message", 30)
            i2m_delays.append(observer.arrivals[text] - sent)
        m2i_delays: list[float] = []
        for i in range(args.latency):
            text = f"m2i-lat-{i}"
            sent = time.monotonic()
            send_matrix(i + 1, text)
            wait_until(lambda t=text: t in seen_on_irc("m2i-lat-", 0), "a delayed message", 30)
            m2i_delays.append(seen_on_irc("m2i-lat-", 0)[text] - sent)

        def ms(v: float) -> str:
            return f"{v * 1000:.1f} ms"

        print(f"IRC -> Matrix: {i2m_rate:.0f} messages/s ({args.messages} messages from "
              f"{args.users} IRC users); delay median {ms(statistics.median(i2m_delays))}, "
              f"p95 {ms(percentile(i2m_delays, 95))}")
        print(f"Matrix -> IRC: {m2i_rate:.0f} messages/s ({args.messages} messages from "
              f"{args.users} Matrix users); delay median {ms(statistics.median(m2i_delays))}, "
              f"p95 {ms(percentile(m2i_delays, 95))}")
        rss = ruma.rss_bytes()
        if rss:
            print(f"Ruma RSS: {rss / 2**20:.0f} MiB")
        observer.running = False
    finally:
        if crowd is not None:
            crowd.close()
        if ruma is not None:
            ruma.stop()
        ircd.stop()


if __name__ == "__main__":
    main()
