"""Capture real room PDUs from a real Synapse, for Ruma's protocol cross-checks.

Starts a throwaway Synapse (from the installed ``matrix-synapse`` package) on loopback with
SQLite in a temporary directory, registers two users, and for every stable room version
1-12 that Synapse supports builds a room whose history exercises the auth rules: power
levels, name/topic, public/invite/knock/restricted/knock_restricted join rules (where the
version has them), invites, rejections, joins, leaves, kicks, bans, unbans, knocks,
restricted joins authorised by another user, messages, edits, and redactions (of a
message, of one's own message and of a state event).

Then it stops Synapse and reads back, straight from Synapse's database, each room's PDUs
(``event_json`` joined with ``events``/``rejections``, in stream order), the room version
(``rooms.room_version``) and the resolved current state (``current_state_events``), plus
the server's published verify key, and writes one JSON file per room version.

Usage (re-runnable; overwrites the files)::

    .venv/bin/python tests/synapse_capture/capture.py [--out tests/vectors/synapse]

Finally it builds fork cases: pairs (and a triple) of the states Synapse recorded after
different events of the history, resolved by Synapse's own state resolution code
(``synapse.state.v1``/``v2``, run in this process on the captured events), so Ruma's
``resolve_state`` can be checked against Synapse's answers.

This is a tool, not a test: it needs ``matrix-synapse`` importable by this Python.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

SERVER_NAME = "synapse.test"
SHARED_SECRET = "capture-shared-secret"
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "vectors" / "synapse"
STABLE_VERSIONS = [str(v) for v in range(1, 13)]
# Versions that introduced each join rule.
KNOCK_FROM = 7
RESTRICTED_FROM = 8
KNOCK_RESTRICTED_FROM = 10

START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 30.0
HTTP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- Synapse process -------------------------------------------------------------------


def write_config(python: str, workdir: Path, port: int) -> Path:
    config_path = workdir / "homeserver.yaml"
    subprocess.run(
        [
            python, "-m", "synapse.app.homeserver",
            "--server-name", SERVER_NAME,
            "--config-path", str(config_path),
            "--data-directory", str(workdir),
            "--generate-config", "--report-stats=no",
        ],
        check=True, cwd=workdir, capture_output=True, timeout=120,
    )  # fmt: skip
    config = yaml.safe_load(config_path.read_text())
    fast = {"per_second": 10000, "burst_count": 10000}
    config.update(
        {
            "database": {
                "name": "sqlite3",
                "args": {"database": str(workdir / "homeserver.db")},
            },
            "listeners": [
                {
                    "port": port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client", "federation", "keys"]}],
                }
            ],
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "registration_shared_secret": SHARED_SECRET,
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "presence": {"enabled": False},
            # Keep the original JSON of redacted events (Synapse prunes it after this).
            "redaction_retention_period": None,
            "rc_message": fast,
            "rc_registration": fast,
            "rc_login": {"address": fast, "account": fast, "failed_attempts": fast},
            "rc_joins": {"local": fast, "remote": fast},
            "rc_joins_per_room": fast,
            "rc_invites": {"per_room": fast, "per_user": fast, "per_issuer": fast},
            "rc_room_creation": fast,
            "rc_admin_redaction": fast,
            "rc_profile": fast,
        }
    )
    config_path.write_text(yaml.safe_dump(config))
    return config_path


class Synapse:
    def __init__(self, python: str, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config_path = write_config(python, workdir, self.port)
        self.log_file = (workdir / "synapse.stdout").open("wb")
        self.proc = subprocess.Popen(
            [python, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=workdir, stdout=self.log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Synapse exited with {self.proc.returncode}; see {self.log_file.name}"
                )
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError("Synapse did not start in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_DEADLINE_S)
        self.log_file.close()

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path} -> {e.code} {e.read()!r}") from None


# --- client-API helpers ----------------------------------------------------------------


def q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


class User:
    def __init__(self, hs: Synapse, localpart: str, admin: bool = False) -> None:
        self.hs = hs
        nonce = hs.request("GET", "/_synapse/admin/v1/register")["nonce"]
        password = f"pw-{localpart}"
        mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([
            nonce.encode(), localpart.encode(), password.encode(),
            b"admin" if admin else b"notadmin",
        ]))  # fmt: skip
        r = hs.request(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        self.token: str = r["access_token"]
        self.user_id: str = r["user_id"]
        self._txn = 0

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.hs.request(method, "/_matrix/client/v3" + path, body, self.token)

    def txn(self) -> str:
        self._txn += 1
        return f"t{self._txn}"

    def create_room(self, version: str, **extra: Any) -> str:
        body = {"room_version": version, **extra}
        return str(self.call("POST", "/createRoom", body)["room_id"])

    def state(self, room: str, type: str, content: dict[str, Any], state_key: str = "") -> str:
        r = self.call("PUT", f"/rooms/{q(room)}/state/{q(type)}/{q(state_key)}", content)
        return str(r["event_id"])

    def get_state(self, room: str, type: str, state_key: str = "") -> dict[str, Any]:
        r = self.call("GET", f"/rooms/{q(room)}/state/{q(type)}/{q(state_key)}")
        return dict(r)

    def send(self, room: str, content: dict[str, Any], type: str = "m.room.message") -> str:
        r = self.call("PUT", f"/rooms/{q(room)}/send/{q(type)}/{self.txn()}", content)
        return str(r["event_id"])

    def say(self, room: str, text: str) -> str:
        return self.send(room, {"msgtype": "m.text", "body": text})

    def redact(self, room: str, event_id: str, reason: str) -> str:
        r = self.call(
            "PUT", f"/rooms/{q(room)}/redact/{q(event_id)}/{self.txn()}", {"reason": reason}
        )
        return str(r["event_id"])

    def join(self, room: str) -> None:
        self.call("POST", f"/join/{q(room)}", {})

    def knock(self, room: str, reason: str) -> None:
        self.call("POST", f"/knock/{q(room)}", {"reason": reason})

    def leave(self, room: str) -> None:
        self.call("POST", f"/rooms/{q(room)}/leave", {})

    def invite(self, room: str, user: User) -> None:
        self.call("POST", f"/rooms/{q(room)}/invite", {"user_id": user.user_id})

    def kick(self, room: str, user: User, reason: str) -> None:
        self.call("POST", f"/rooms/{q(room)}/kick", {"user_id": user.user_id, "reason": reason})

    def ban(self, room: str, user: User, reason: str) -> None:
        self.call("POST", f"/rooms/{q(room)}/ban", {"user_id": user.user_id, "reason": reason})

    def unban(self, room: str, user: User) -> None:
        self.call("POST", f"/rooms/{q(room)}/unban", {"user_id": user.user_id})


# --- the scenario ----------------------------------------------------------------------


def build_room(version: str, alice: User, bob: User, allow_room: str) -> str:
    """One room of ``version`` whose history walks through the auth rules."""
    v = int(version)
    room = alice.create_room(
        version, preset="private_chat", name=f"Room v{version}", topic="first topic"
    )
    alice.state(room, "m.room.name", {"name": f"Capture room v{version}"})
    topic_id = alice.state(room, "m.room.topic", {"topic": "a topic to be redacted"})
    alice.state(room, "m.room.history_visibility", {"history_visibility": "shared"})
    alice.state(room, "m.room.guest_access", {"guest_access": "forbidden"})

    # Public: bob joins freely, talks, renames himself, leaves.
    alice.state(room, "m.room.join_rules", {"join_rule": "public"})
    bob.join(room)
    bob_msg = bob.say(room, "hello from bob")
    bob.state(room, "m.room.member", {"membership": "join", "displayname": "Bob B."},
              bob.user_id)  # fmt: skip
    bob.leave(room)

    # Invite-only: invite, join, kick, ban, unban; then invite and reject.
    alice.state(room, "m.room.join_rules", {"join_rule": "invite"})
    alice.invite(room, bob)
    bob.join(room)
    alice.kick(room, bob, "kick test")
    alice.ban(room, bob, "ban test")
    alice.unban(room, bob)
    alice.invite(room, bob)
    bob.leave(room)  # rejects the invite

    if v >= KNOCK_FROM:
        alice.state(room, "m.room.join_rules", {"join_rule": "knock"})
        bob.knock(room, "let me in")
        alice.invite(room, bob)  # accepts the knock
        bob.join(room)
        bob.leave(room)
    if v >= RESTRICTED_FROM:
        allow = [{"type": "m.room_membership", "room_id": allow_room}]
        alice.state(room, "m.room.join_rules", {"join_rule": "restricted", "allow": allow})
        bob.join(room)  # authorised by alice (join_authorised_via_users_server)
        bob.leave(room)
    if v >= KNOCK_RESTRICTED_FROM:
        alice.state(room, "m.room.join_rules", {"join_rule": "knock_restricted", "allow": allow})
        bob.knock(room, "knock under knock_restricted")
        bob.leave(room)  # rescinds the knock
        bob.join(room)  # and joins through the restriction instead
    else:
        alice.state(room, "m.room.join_rules", {"join_rule": "invite"})
        alice.invite(room, bob)
        bob.join(room)

    # Bob gets some power; then messages, an edit, and redactions.
    pl = alice.get_state(room, "m.room.power_levels")
    pl.setdefault("users", {})[bob.user_id] = 50
    pl.setdefault("events", {})["m.room.topic"] = 50
    alice.state(room, "m.room.power_levels", pl)
    bob.state(room, "m.room.topic", {"topic": "bob's topic"})
    first = alice.say(room, "first message")
    alice.send(room, {
        "msgtype": "m.text", "body": "* first message (edited)",
        "m.new_content": {"msgtype": "m.text", "body": "first message (edited)"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": first},
    })  # fmt: skip
    mine = bob.say(room, "a message bob takes back")
    bob.redact(room, mine, "oops")
    alice.redact(room, bob_msg, "moderation")
    alice.redact(room, topic_id, "redacting a state event")
    alice.state(room, "m.room.topic", {"topic": "final topic"})
    alice.say(room, "last message")
    return room


# --- reading Synapse's database --------------------------------------------------------


def read_room(db: sqlite3.Connection, room_id: str) -> dict[str, Any]:
    (room_version,) = db.execute(
        "SELECT room_version FROM rooms WHERE room_id = ?", (room_id,)
    ).fetchone()
    rows = db.execute(
        """
        SELECT e.event_id, ej.json, r.reason
        FROM events AS e
        JOIN event_json AS ej ON ej.event_id = e.event_id
        LEFT JOIN rejections AS r ON r.event_id = e.event_id
        WHERE e.room_id = ?
        ORDER BY e.stream_ordering
        """,
        (room_id,),
    ).fetchall()
    event_ids, events, rejected = [], [], {}
    for event_id, raw, reason in rows:
        pdu = json.loads(raw)
        # Synapse keeps a local timestamp in unsigned; over federation it becomes "age".
        unsigned = pdu.get("unsigned")
        if isinstance(unsigned, dict):
            unsigned.pop("age_ts", None)
            if not unsigned:
                del pdu["unsigned"]
        event_ids.append(event_id)
        events.append(pdu)
        if reason is not None:
            rejected[event_id] = reason
    state = {
        f"{t}|{sk}": eid
        for t, sk, eid in db.execute(
            "SELECT type, state_key, event_id FROM current_state_events WHERE room_id = ?"
            " ORDER BY type, state_key",
            (room_id,),
        )
    }
    return {
        "room_version": room_version,
        "room_id": room_id,
        "event_ids": event_ids,
        "events": events,
        "rejected": rejected,
        "expected_state": state,
    }


def state_after(db: sqlite3.Connection, event_id: str) -> dict[str, str]:
    """The state Synapse recorded after ``event_id``, following its state group deltas."""
    row = db.execute(
        "SELECT state_group FROM event_to_state_groups WHERE event_id = ?", (event_id,)
    ).fetchone()
    chain = []
    group = row[0] if row else None
    while group is not None:
        chain.append(group)
        prev = db.execute(
            "SELECT prev_state_group FROM state_group_edges WHERE state_group = ?", (group,)
        ).fetchone()
        group = prev[0] if prev else None
    state: dict[str, str] = {}
    for group in reversed(chain):
        for t, sk, eid in db.execute(
            "SELECT type, state_key, event_id FROM state_groups_state WHERE state_group = ?",
            (group,),
        ):
            state[f"{t}|{sk}"] = eid
    return state


class _NoSleepClock:
    """Synapse's resolver yields to the reactor now and then; here there is no reactor."""

    async def sleep(self, duration: object) -> None:
        return None


def synapse_resolve(room: dict[str, Any], state_sets: list[dict[str, str]]) -> dict[str, str]:
    """Resolve ``state_sets`` with Synapse's own state resolution code."""
    import synapse.server  # noqa: F401  (first, or synapse.state's imports go round in a circle)
    from synapse.api.room_versions import KNOWN_ROOM_VERSIONS, StateResolutionVersions
    from synapse.events import make_event_from_dict
    from synapse.state import v1, v2
    from synapse.storage.databases.main.event_federation import StateDifference
    from twisted.internet.defer import Deferred

    room_version = KNOWN_ROOM_VERSIONS[room["room_version"]]
    event_map = {}
    for pdu in room["events"]:
        event = make_event_from_dict(dict(pdu), room_version)
        event_map[event.event_id] = event
    assert list(event_map) == room["event_ids"]
    sets: list[dict[tuple[str, str], str]] = [
        {(k.partition("|")[0], k.partition("|")[2]): v for k, v in s.items()} for s in state_sets
    ]

    class Store:
        # Every event is passed in event_map as "unpersisted", so Synapse's resolver works
        # out the auth difference (and v2.1's conflicted subgraph) itself and asks the
        # store only about persisted events, of which there are none.
        async def get_events(self, event_ids: Any, allow_rejected: bool = False) -> Any:
            return {e: event_map[e] for e in event_ids if e in event_map}

        async def get_auth_chain_difference(
            self, room_id: Any, state_sets: Any, conflicted: Any, extra: Any
        ) -> Any:
            assert not any(state_sets), state_sets
            return StateDifference(
                auth_difference=set(), conflicted_subgraph=None if conflicted is None else set()
            )

    store = Store()
    if room_version.state_res == StateResolutionVersions.V1:
        coro = v1.resolve_events_with_store(
            room["room_id"], room_version, sets, dict(event_map), store.get_events
        )
    else:
        coro = v2.resolve_events_with_store(
            _NoSleepClock(), room["room_id"], room_version, sets, dict(event_map), store
        )
    results: list[Any] = []
    Deferred.fromCoroutine(coro).addBoth(results.append)
    (result,) = results  # everything above completes synchronously
    from twisted.python.failure import Failure

    if isinstance(result, Failure):
        result.raiseException()
    return {f"{t}|{sk}": eid for (t, sk), eid in sorted(result.items())}


def fork_cases(db: sqlite3.Connection, room: dict[str, Any]) -> list[dict[str, Any]]:
    """States after several points of the history against the final state, resolved.

    Adds ``recorded_states`` (Synapse's state after each of those events) to ``room``.
    """
    events, ids = room["events"], room["event_ids"]
    bob = next(e["sender"] for e in events if e["sender"].startswith("@bob:"))

    def first(pred: Any) -> int:
        return next(i for i, e in enumerate(events) if pred(e))

    def membership(e: dict[str, Any]) -> Any:
        return e["content"].get("membership") if e["type"] == "m.room.member" else None

    points = {
        "bob joined the public room": first(
            lambda e: membership(e) == "join" and e["sender"] == bob
        ),
        "bob kicked": first(
            lambda e: membership(e) == "leave" and e.get("state_key") == bob and e["sender"] != bob
        ),
        "bob banned": first(lambda e: membership(e) == "ban"),
        "half-way": len(events) // 2,
        "bob's topic": first(lambda e: e["type"] == "m.room.topic" and e["sender"] == bob),
    }
    points["final"] = len(events) - 1
    recorded = {ids[i]: state_after(db, ids[i]) for i in points.values()}
    assert recorded[ids[-1]] == room["expected_state"], "final state group is not current state"
    room["recorded_states"] = recorded
    final = ids[-1]
    cases = []

    def case(description: str, after: list[str]) -> None:
        resolved = synapse_resolve(room, [recorded[e] for e in after])
        cases.append({"description": description, "state_after": after, "resolved": resolved})

    for label, i in points.items():
        if label == "final":
            continue
        case(f"after event {i} ({label}), after the final event", [ids[i], final])
        case(f"after the final event, after event {i} ({label})", [final, ids[i]])
    three = [points["bob joined the public room"], points["bob banned"]]
    case("after bob joined the public room, after bob was banned, after the final event",
         [ids[three[0]], ids[three[1]], final])  # fmt: skip
    return cases


def dump(data: dict[str, Any]) -> str:
    """JSON with a line per event, fork case and state entry, so diffs stay readable."""

    def one(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    lines = []
    for key in sorted(data):
        value = data[key]
        if isinstance(value, list) and value:
            items = ",\n".join("  " + one(item) for item in value)
            lines.append(f" {one(key)}: [\n{items}\n ]")
        elif isinstance(value, dict) and value:
            items = ",\n".join(f"  {one(k)}: {one(v)}" for k, v in sorted(value.items()))
            lines.append(f" {one(key)}: {{\n{items}\n }}")
        else:
            lines.append(f" {one(key)}: {one(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    version = subprocess.run(
        [
            sys.executable,
            "-c",
            # Not synapse.__version__: that appends the git state of the *current* directory.
            "import importlib.metadata as m; print(m.version('matrix-synapse'))",
        ],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="synapse-capture-"))
    hs = Synapse(sys.executable, workdir)
    rooms: dict[str, str] = {}
    try:
        hs.wait_started()
        alice = User(hs, "alice")
        bob = User(hs, "bob")
        allow_room = alice.create_room("10", preset="public_chat", name="allow room")
        bob.join(allow_room)
        supported = alice.call("GET", "/capabilities")["capabilities"]["m.room_versions"]
        available = supported["available"]
        for v in STABLE_VERSIONS:
            if v not in available:
                print(f"Synapse {version} does not offer room version {v}; skipped")
                continue
            rooms[v] = build_room(v, alice, bob, allow_room)
            print(f"built room v{v}: {rooms[v]}")
        keys = hs.request("GET", "/_matrix/key/v2/server")
        verify_keys = {k: v["key"] for k, v in keys["verify_keys"].items()}
    finally:
        hs.stop()

    db = sqlite3.connect(workdir / "homeserver.db")
    args.out.mkdir(parents=True, exist_ok=True)
    for v, room_id in rooms.items():
        data = {
            "room_version": None,
            "server_name": SERVER_NAME,
            "synapse_version": version,
            "verify_keys": verify_keys,
            **read_room(db, room_id),
        }
        data["fork_cases"] = fork_cases(db, data)
        assert data["room_version"] == v, (data["room_version"], v)
        path = args.out / f"v{v}.json"
        path.write_text(dump(data))
        print(f"wrote {path} ({len(data['events'])} events)")
    db.close()
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
