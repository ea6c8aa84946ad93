"""Real appservices against a real ``twistd ruma`` on loopback.

- heisenbridge (an IRC bridge from PyPI, built on mautrix-python) does its whole startup
  against Ruma, then bridges a message both ways between a Matrix user on Ruma and a plain
  IRC client on a real InspIRCd;
- a recording appservice (a real HTTP server in this process) is down while Ruma is killed
  with ``kill -9``; once both are back it receives every event it missed, once, in order.

Peers: heisenbridge (``pip install heisenbridge``), InspIRCd (``apt-get install inspircd``).
A missing peer skips the test, or fails it under ``CI=true``. Every process is started by
the test and stopped by PID; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import TestCase

from tests.interop.processes import (
    VENV_BIN,
    RumaProcess,
    free_port,
    http_json,
    require_peer,
    ruma_available,
    wait_for,
)

WAIT = 60.0


def heisenbridge_available() -> tuple[bool, str]:
    try:
        result = subprocess.run(
            [str(VENV_BIN / "python"), "-c", "import heisenbridge"],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"cannot run the venv's python: {e}"
    if result.returncode != 0:
        return False, "heisenbridge is not installed in the venv (pip install heisenbridge)"
    return True, ""


def inspircd_path() -> str | None:
    return shutil.which("inspircd") or (
        "/usr/sbin/inspircd" if os.path.exists("/usr/sbin/inspircd") else None
    )


class Child:
    """A child process in its own session, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, args: list[str], cwd: Path, log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(10)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_inspircd(test: TestCase, directory: Path) -> int:
    binary = inspircd_path()
    require_peer(binary is not None, "InspIRCd is not installed (apt-get install -y inspircd)")
    assert binary is not None
    port = free_port()
    conf = directory / "inspircd.conf"
    conf.write_text(
        f"""<server name="irc.test" description="Ruma test IRC" network="RumaTest">
<admin name="Admin" nick="admin" email="admin@irc.test">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect name="main" allow="*" maxchans="50" timeout="20" pingfreq="120" hardsendq="1048576"
 softsendq="8192" recvq="8192" threshold="100000" commandrate="100000" fakelag="no"
 localmax="1000" globalmax="1000" useident="no" limit="5000">
<pid file="{directory}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{directory}/ircd.log">
<options prefixquit="Quit: " syntaxhints="no" announcets="yes" hostintopic="yes" defaultmodes="nt">
<security genericoper="no" hidebans="no" hideulines="no" hidesplits="no" maxtargets="20"
 restrictbannedusers="yes">
<limits maxnick="30" maxchan="64" maxmodes="20" maxident="11" maxhost="64" maxquit="255"
 maxtopic="307" maxkick="255" maxreal="128" maxgecos="128" maxaway="200">
<dns server="127.0.0.1" timeout="1">
"""
    )
    child = Child([binary, "--nofork", "--runasroot", f"--config={conf}"], directory,
                  directory / "inspircd.log")
    test.addCleanup(child.stop)

    def listening() -> bool:
        if child.popen.poll() is not None:
            raise RuntimeError(f"inspircd exited: {child.tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(listening, 30, "InspIRCd to listen")
    return port


class IrcClient:
    """A plain IRC client on a raw socket: register, join, send, wait for lines."""

    def __init__(self, port: int, nick: str) -> None:
        self.nick = nick
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.settimeout(0.5)
        self.buffer = b""
        self.lines: list[str] = []
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick}")
        self.wait(lambda line: f" 001 {nick} " in line, 30, "IRC registration")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + b"\r\n")

    def _read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        if not data:
            raise ConnectionError("IRC server closed the connection")
        self.buffer += data
        while b"\r\n" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\r\n", 1)
            line = raw.decode("utf-8", "replace")
            if line.startswith("PING "):
                self.send("PONG " + line[5:])
            self.lines.append(line)

    def wait(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if predicate(line):
                    return line
            seen = len(self.lines)
            if time.monotonic() > deadline:
                raise TimeoutError(f"IRC: timed out waiting for {what}; last lines:\n"
                                   + "\n".join(self.lines[-15:]))
            self._read()

    def close(self) -> None:
        try:
            self.send("QUIT :bye")
        except OSError:
            pass
        self.sock.close()


class MatrixUser:
    """A Matrix client over urllib: sync with a deadline, join, send."""

    def __init__(self, base_url: str, user_id: str, token: str) -> None:
        self.base = base_url + "/_matrix/client/v3"
        self.user_id = user_id
        self.token = token
        self.since: str | None = None
        self.timeline: list[dict[str, Any]] = []  # with room_id
        self.invites: list[str] = []
        self.joined: set[str] = set()
        self._txn = 0

    def call(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = http_json(method, self.base + path, body, token=self.token)
        if status != 200:
            raise AssertionError(f"{method} {path}: {status} {answer}")
        return answer

    def sync_once(self) -> None:
        q = "timeout=1000"
        if self.since:
            q += "&since=" + urllib.parse.quote(self.since)
        body = self.call("GET", f"/sync?{q}")
        self.since = body["next_batch"]
        rooms = body.get("rooms", {})
        for room_id in rooms.get("invite", {}):
            if room_id not in self.invites:
                self.invites.append(room_id)
        for room_id, room in rooms.get("join", {}).items():
            self.joined.add(room_id)
            for event in room.get("timeline", {}).get("events", []):
                self.timeline.append({**event, "room_id": room_id})

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"Matrix: timed out waiting for {what}")
            self.sync_once()

    def wait_invite(self, known: set[str], what: str) -> str:
        def new_invite() -> str | None:
            fresh = [r for r in self.invites if r not in known]
            return fresh[0] if fresh else None

        room_id: str = self.wait(new_invite, what)
        known.add(room_id)
        return room_id

    def join(self, room_id: str) -> None:
        self.call("POST", f"/join/{urllib.parse.quote(room_id)}", {})

    def send(self, room_id: str, text: str) -> str:
        self._txn += 1
        answer = self.call(
            "PUT",
            f"/rooms/{urllib.parse.quote(room_id)}/send/m.room.message/t{self._txn}",
            {"msgtype": "m.text", "body": text},
        )
        return str(answer["event_id"])

    def find(self, room_id: str, sender: str | None, needle: str) -> dict[str, Any] | None:
        for event in self.timeline:
            if event["room_id"] != room_id or event.get("type") != "m.room.message":
                continue
            if sender is not None and event.get("sender") != sender:
                continue
            if needle in str(event.get("content", {}).get("body", "")):
                return event
        return None

    def notice_containing(self, room_id: str, needle: str) -> dict[str, Any] | None:
        return self.find(room_id, None, needle)


def irc_sees(irc: IrcClient, nick: str, timeout: float = WAIT) -> None:
    """Poll ``ISON`` until ``nick`` is on the IRC server."""
    deadline = time.monotonic() + timeout
    while True:
        irc.send(f"ISON {nick}")
        try:
            irc.wait(lambda line: " 303 " in line and nick in line.split(" 303 ", 1)[1]
                     .split(":", 1)[-1].split(), 2, f"{nick} online")
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def register(ruma: RumaProcess, localpart: str) -> MatrixUser:
    status, body = http_json(
        "POST", ruma.base_url + "/_matrix/client/v3/register",
        {"username": localpart, "password": "pw-" + localpart, "auth": {"type": "m.login.dummy"}},
    )
    if status != 200:
        raise AssertionError(f"register {localpart}: {status} {body}")
    return MatrixUser(ruma.base_url, body["user_id"], body["access_token"])


class HeisenbridgeTests(TestCase):
    timeout = 300

    def test_startup_and_bridging_both_ways(self) -> None:
        """heisenbridge starts against Ruma (register, whoami, account data, createRoom,
        invites, masquerading), is driven by its owner to connect to InspIRCd and join a
        channel, and a message crosses in each direction."""
        ok, why = ruma_available()
        require_peer(ok, f"Ruma cannot run: {why}")
        ok, why = heisenbridge_available()
        require_peer(ok, why)
        base = Path(self.mktemp()).resolve()
        base.mkdir(parents=True)
        irc_port = start_inspircd(self, base)

        hb_port = free_port()
        reg = base / "heisenbridge.yaml"
        subprocess.run(
            [str(VENV_BIN / "python"), "-m", "heisenbridge", "-c", str(reg), "--generate",
             "-l", "127.0.0.1", "-p", str(hb_port)],
            check=True, cwd=base, capture_output=True, timeout=60,
        )
        ruma = RumaProcess(base / "ruma", config_overrides={"app_service_config_files": [str(reg)]})
        self.addCleanup(ruma.kill9)
        self.addCleanup(ruma.stop)
        ruma.start()
        owner = register(ruma, "owner")
        bridge = Child(
            [str(VENV_BIN / "python"), "-m", "heisenbridge", "-v", "-c", str(reg),
             "-l", "127.0.0.1", "-p", str(hb_port), "-o", owner.user_id, ruma.base_url],
            base, base / "heisenbridge.log",
        )
        self.addCleanup(bridge.stop)
        try:
            self._bridge(ruma, owner, irc_port)
        except BaseException:
            print("--- heisenbridge log ---\n" + bridge.tail(80))
            print("--- ruma log ---\n" + ruma.log_tail(80))
            raise

    def _bridge(self, ruma: RumaProcess, owner: MatrixUser, irc_port: int) -> None:
        bot = f"@heisenbridge:{ruma.server_name}"
        known: set[str] = set()
        control = owner.wait_invite(known, "heisenbridge's control room invite")
        owner.join(control)
        owner.wait(lambda: owner.find(control, bot, "Howdy"), "the greeting")

        irc = IrcClient(irc_port, "ircuser")
        self.addCleanup(irc.close)
        irc.send("JOIN #bridge")
        irc.wait(lambda line: " JOIN " in line and "#bridge" in line, 30, "joining #bridge")

        owner.send(control, "ADDNETWORK test")
        owner.wait(lambda: owner.find(control, bot, "Network added."), "ADDNETWORK")
        owner.send(control, f"ADDSERVER test 127.0.0.1 {irc_port}")
        owner.wait(lambda: owner.find(control, bot, "Server added."), "ADDSERVER")
        owner.send(control, "OPEN test")
        network = owner.wait_invite(known, "the network room invite")
        owner.join(network)
        owner.send(network, "NICK mxowner")
        owner.send(network, "CONNECT")
        owner.wait(lambda: owner.find(network, bot, "Connecting to"), "the IRC connection")
        irc_sees(irc, "mxowner")
        owner.send(network, "JOIN #bridge")
        channel = owner.wait_invite(known, "the channel room invite")
        owner.join(channel)
        irc.wait(lambda line: line.startswith(":mxowner!") and " JOIN " in line, 30,
                 "the bridged user joining #bridge")

        owner.send(channel, "hello from matrix")
        irc.wait(lambda line: line.startswith(":mxowner!")
                 and "PRIVMSG #bridge :hello from matrix" in line, 30, "the Matrix message on IRC")

        irc.send("PRIVMSG #bridge :hello from irc")
        event = owner.wait(lambda: owner.find(channel, None, "hello from irc"),
                           "the IRC message on Matrix")
        self.assertTrue(event["sender"].startswith("@irc_"), event)
        self.assertEqual(event["content"]["body"], "hello from irc")


# -- the restart test ----------------------------------------------------------------------


class Recorder:
    """A minimal real appservice: records transactions (checking the hs_token), in a thread."""

    def __init__(self, port: int, hs_token: str) -> None:
        self.port = port
        self.hs_token = hs_token
        self.transactions: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.headers.get("Authorization") != f"Bearer {recorder.hs_token}":
                    self._answer(403, {"errcode": "M_FORBIDDEN"})
                    return
                txn_id = self.path.split("?")[0].rsplit("/", 1)[-1]
                with recorder.lock:
                    if txn_id not in [t for t, _ in recorder.transactions]:
                        recorder.transactions.append((txn_id, body))
                self._answer(200, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._answer(200, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies(self, room_id: str) -> list[str]:
        with self.lock:
            return [
                e["content"].get("body")
                for _, b in self.transactions
                for e in b.get("events", [])
                if e.get("room_id") == room_id and e.get("type") == "m.room.message"
            ]

    def event_ids(self) -> list[str]:
        with self.lock:
            return [e["event_id"] for _, b in self.transactions for e in b.get("events", [])]


class RestartTests(TestCase):
    timeout = 300

    def test_kill9_while_appservice_down(self) -> None:
        """Ruma is killed with kill -9 while the appservice is down; after both are back the
        appservice has every event it missed, once each, in order."""
        ok, why = ruma_available()
        require_peer(ok, f"Ruma cannot run: {why}")
        base = Path(self.mktemp()).resolve()
        base.mkdir(parents=True)
        as_port = free_port()
        reg = {
            "id": "recorder", "url": f"http://127.0.0.1:{as_port}", "as_token": "rec-as",
            "hs_token": "rec-hs", "sender_localpart": "recbot", "rate_limited": False,
            "namespaces": {"users": [{"exclusive": True, "regex": "@rec_.*"}],
                           "aliases": [], "rooms": []},
        }
        reg_path = base / "recorder.yaml"
        reg_path.write_text(yaml.safe_dump(reg))
        recorder = Recorder(as_port, "rec-hs")
        recorder.start()
        self.addCleanup(recorder.stop)
        ruma = RumaProcess(base / "ruma",
                           config_overrides={"app_service_config_files": [str(reg_path)]})
        self.addCleanup(ruma.kill9)
        self.addCleanup(ruma.stop)
        ruma.start()
        alice = register(ruma, "alice")
        room = alice.call("POST", "/createRoom", {})["room_id"]
        as_user = MatrixUser(ruma.base_url, "@rec_puppet", "rec-as")
        as_user.call("POST", "/register", {"type": "m.login.application_service",
                                           "username": "rec_puppet"})
        puppet = f"@rec_puppet:{ruma.server_name}"
        alice.call("POST", f"/rooms/{urllib.parse.quote(room)}/invite", {"user_id": puppet})
        as_user.call("POST", f"/join/{urllib.parse.quote(room)}?user_id={urllib.parse.quote(puppet)}", {})
        alice.send(room, "before")
        wait_for(lambda: recorder.bodies(room) == ["before"], WAIT, "the first event")

        recorder.stop()
        expected = ["before"]
        for i in range(10):
            alice.send(room, f"down-{i}")
            expected.append(f"down-{i}")
        time.sleep(0.5)  # let Ruma try (and fail) at least once; not a wait for a result
        assert ruma.popen is not None
        ruma.kill9()
        ruma.start()
        for i in range(5):
            alice.send(room, f"after-restart-{i}")
            expected.append(f"after-restart-{i}")
        recorder = Recorder(as_port, "rec-hs")
        recorder.start()
        self.addCleanup(recorder.stop)
        # The appservice says it is back (mautrix bridges ping at startup).
        status, body = http_json(
            "POST", ruma.base_url + "/_matrix/client/v1/appservice/recorder/ping", {},
            token="rec-as",
        )
        self.assertEqual(status, 200, body)
        wait_for(lambda: len(recorder.bodies(room)) >= len(expected) - 1, WAIT,
                 "the missed events")
        time.sleep(1.0)  # nothing more may arrive (a duplicate would show up here)
        self.assertEqual(recorder.bodies(room), expected[1:])
        ids = recorder.event_ids()
        self.assertEqual(len(ids), len(set(ids)))
