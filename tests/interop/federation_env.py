"""A real Synapse (or two) and a real ``twistd ruma`` federating over TLS on loopback.

Used by ``tests/interop/test_federation_synapse.py`` and ``benchmarks/federation.py``.

Every server gets a certificate from one throwaway CA (``make_test_ca``) covering
``IP:127.0.0.1``, and trusts only that CA for outbound federation
(``federation_custom_ca_list``). Server names are ``127.0.0.1:PORT`` where PORT is the TLS
federation listener, so neither side needs ``.well-known`` or SRV. Each server also has a
plain-HTTP client listener for the tests (``base_url``). Loopback is allowed for outbound
requests on both sides (Synapse: taken out of ``ip_range_blacklist`` and whitelisted; Ruma:
``ip_range_whitelist``, which wins over its deny list).

Everything is synchronous and bounded (blocking HTTP with timeouts, polls with deadlines);
processes are stopped by PID.
"""

from __future__ import annotations

import atexit
import json
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.interop.processes import (
    GENEROUS_RATE,
    RumaProcess,
    ServerProcess,
    Session,
    SynapseProcess,
    TestCA,
    free_port,
    http_json,
    make_test_ca,
    register_session,
    require_peer,
    ruma_available,
    synapse_available,
)

#: Synapse's own federation limits, raised (the rc_* keys are raised by SynapseProcess).
SYNAPSE_FEDERATION_SETTINGS: dict[str, Any] = {
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 100000,
        "sleep_delay": 1,
        "reject_limit": 1000000,
        "concurrent": 1000,
    },
    # Typing/receipts/presence are what the EDU scenarios check.
    "presence": {"enabled": True},
    # Faster retries: a peer that was down is retried sooner (Synapse's default backoff
    # starts at 10 minutes after repeated failures; these are test servers).
    "federation": {
        "destination_min_retry_interval": "1s",
        "destination_retry_multiplier": 1,
        "destination_max_retry_interval": "2s",
    },
    "allow_public_rooms_over_federation": True,
    # The room directory can list rooms published by any user in tests.
    "room_list_publication_rules": [{"action": "allow"}],
    "alias_creation_rules": [{"action": "allow"}],
    "require_auth_for_profile_requests": False,
    "limit_profile_requests_to_users_who_share_rooms": False,
}

RUMA_FEDERATION_SETTINGS: dict[str, Any] = {
    "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
    "trusted_key_servers": [],
    "rc_federation": {"window_size": 1000, "sleep_limit": 100000, "reject_limit": 1000000},
    "rc_message": GENEROUS_RATE,
}


def q(value: str) -> str:
    """Percent-encode one path segment (room IDs, event IDs, aliases)."""
    return urllib.parse.quote(value, safe="")


def federation_peers_available() -> None:
    """Skip (or fail under ``CI=true``) when Synapse or Ruma cannot run here."""
    ok, why = synapse_available()
    require_peer(ok, f"Synapse cannot run: {why}")
    ok, why = ruma_available()
    require_peer(ok, f"Ruma cannot run: {why}")


def make_ruma(
    base_dir: Path, ca: TestCA, *, name: str = "ruma", overrides: dict[str, Any] | None = None
) -> RumaProcess:
    """A Ruma named ``127.0.0.1:FEDPORT`` with a TLS federation listener and a plain client one."""
    host = "127.0.0.1"
    client_port = free_port(host)
    federation_port = free_port(host)
    leaf = ca.issue(name)
    config: dict[str, Any] = {
        "listeners": [
            {
                "port": client_port,
                "bind_addresses": [host],
                "type": "http",
                "tls": False,
                "resources": [{"names": ["client"]}],
            },
            {
                "port": federation_port,
                "bind_addresses": [host],
                "type": "http",
                "tls": True,
                "resources": [{"names": ["federation", "keys"]}],
            },
        ],
        "tls_certificate_path": str(leaf.cert_path),
        "tls_private_key_path": str(leaf.key_path),
        "federation_custom_ca_list": [str(ca.cert_path)],
        **RUMA_FEDERATION_SETTINGS,
    }
    if overrides:
        config.update(overrides)
    ruma = RumaProcess(
        base_dir,
        name=name,
        host=host,
        port=client_port,
        server_name=f"{host}:{federation_port}",
        config_overrides=config,
    )
    return ruma


def make_synapse(
    base_dir: Path, ca: TestCA, *, name: str = "synapse", overrides: dict[str, Any] | None = None
) -> SynapseProcess:
    """A Synapse named ``127.0.0.1:FEDPORT`` federating over TLS with the test CA's leaf."""
    leaf = ca.issue(name)
    config = dict(SYNAPSE_FEDERATION_SETTINGS)
    if overrides:
        config.update(overrides)
    return SynapseProcess(base_dir, name=name, tls=leaf, config_overrides=config)


@dataclass
class FederationEnv:
    """A CA, one Ruma and one or more Synapses, all trusting the CA, in ``base_dir``."""

    base_dir: Path
    synapse_count: int = 1
    ruma_overrides: dict[str, Any] = field(default_factory=dict)
    synapse_overrides: dict[str, Any] = field(default_factory=dict)
    ca: TestCA = field(init=False)
    ruma: RumaProcess = field(init=False)
    synapses: list[SynapseProcess] = field(init=False)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.ca = make_test_ca(self.base_dir / "ca")
        self.ruma = make_ruma(self.base_dir / "ruma", self.ca, overrides=self.ruma_overrides)
        self.synapses = [
            make_synapse(
                self.base_dir / f"synapse{i}",
                self.ca,
                name=f"synapse{i}" if i else "synapse",
                overrides=self.synapse_overrides,
            )
            for i in range(self.synapse_count)
        ]

    @property
    def synapse(self) -> SynapseProcess:
        return self.synapses[0]

    @property
    def servers(self) -> list[ServerProcess]:
        return [self.ruma, *self.synapses]

    def start(self) -> None:
        atexit.register(self.stop)
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in self.servers:
            try:
                server.stop()
            finally:
                server.kill9()


# --------------------------------------------------------------------------------------
# Client-API helpers (blocking, bounded)
# --------------------------------------------------------------------------------------


def new_user(server: ServerProcess, prefix: str) -> Session:
    """Register a fresh user through the client API of ``server``."""
    return register_session(server.base_url, f"{prefix}{secrets.token_hex(3)}", "pw-federation")


def try_call(
    session: Session, method: str, path: str, body: Any = None, timeout: float = 60.0
) -> tuple[int, Any]:
    """A client-API call whose status the caller checks."""
    return http_json(
        method, session.base_url + path, body, token=session.access_token, timeout=timeout
    )


def poll(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.2,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            extra = f"\n{describe()}" if describe is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def retry_call(
    session: Session,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = 30.0,
    ok: Iterable[int] = (200,),
) -> Any:
    """Repeat a call until it answers one of ``ok`` (for joins racing federation)."""
    statuses = set(ok)
    last: list[Any] = [None, None]

    def attempt() -> bool:
        status, body_ = try_call(session, method, path, body)
        last[0], last[1] = status, body_
        return status in statuses

    poll(
        attempt,
        timeout,
        f"{method} {path} by {session.user_id} to succeed",
        interval=0.5,
        describe=lambda: f"last answer: {last[0]} {last[1]}",
    )
    return last[1]


def create_room(session: Session, **body: Any) -> str:
    room_id: str = session.call("POST", "/_matrix/client/v3/createRoom", body, timeout=60)[
        "room_id"
    ]
    return room_id


def join(session: Session, room: str, via: Sequence[str] = (), timeout: float = 60.0) -> str:
    """Join ``room`` (ID or alias), naming ``via`` servers; returns the room ID."""
    query = "&".join(f"server_name={q(s)}&via={q(s)}" for s in via)
    path = f"/_matrix/client/v3/join/{q(room)}" + (f"?{query}" if query else "")
    body = retry_call(session, "POST", path, {}, timeout=timeout)
    room_id: str = body["room_id"]
    return room_id


def send_text(session: Session, room_id: str, text: str) -> str:
    txn = secrets.token_hex(8)
    event_id: str = session.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": text},
    )["event_id"]
    return event_id


def send_state(
    session: Session, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
) -> str:
    event_id: str = session.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}",
        content,
    )["event_id"]
    return event_id


def get_state(session: Session, room_id: str) -> list[dict[str, Any]]:
    state: list[dict[str, Any]] = session.call(
        "GET", f"/_matrix/client/v3/rooms/{q(room_id)}/state"
    )
    return state


def membership(session: Session, room_id: str, user_id: str) -> str | None:
    """``user_id``'s membership in ``room_id`` as ``session``'s server sees it (None: none)."""
    status, body = try_call(
        session,
        "GET",
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}",
    )
    if status != 200 or not isinstance(body, dict):
        return None
    value = body.get("membership")
    return value if isinstance(value, str) else None


def messages(
    session: Session, room_id: str, limit: int = 100, direction: str = "b", since: str = ""
) -> dict[str, Any]:
    path = f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir={direction}&limit={limit}"
    if since:
        path += f"&from={q(since)}"
    body: dict[str, Any] = session.call("GET", path, timeout=120)
    return body


def message_bodies(session: Session, room_id: str, limit: int = 200) -> list[str]:
    """Bodies of the ``limit`` newest m.room.message events, oldest first."""
    chunk = messages(session, room_id, limit)["chunk"]
    return [
        e["content"].get("body", "")
        for e in reversed(chunk)
        if e.get("type") == "m.room.message"
    ]


class SyncWatcher:
    """A user's ``/sync`` stream, polled incrementally (bounded long-polls)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.since: str | None = None
        self.filter = q(json.dumps({"room": {"timeline": {"limit": 100}}}))
        self.timeline: dict[str, list[dict[str, Any]]] = {}
        self.ephemeral: dict[str, list[dict[str, Any]]] = {}
        self.invites: dict[str, dict[str, Any]] = {}
        self.left: set[str] = set()
        self.state: dict[str, list[dict[str, Any]]] = {}
        self.sync(0)

    def sync(self, timeout_ms: int = 1000) -> dict[str, Any]:
        path = f"/_matrix/client/v3/sync?timeout={timeout_ms}&filter={self.filter}"
        if self.since is not None:
            path += f"&since={q(self.since)}"
        body: dict[str, Any] = self.session.call("GET", path, timeout=timeout_ms / 1000 + 30)
        self.since = body["next_batch"]
        rooms = body.get("rooms", {})
        for room_id, room in rooms.get("join", {}).items():
            self.timeline.setdefault(room_id, []).extend(room.get("timeline", {}).get("events", []))
            self.state.setdefault(room_id, []).extend(room.get("state", {}).get("events", []))
            self.ephemeral.setdefault(room_id, []).extend(
                room.get("ephemeral", {}).get("events", [])
            )
        for room_id, room in rooms.get("invite", {}).items():
            self.invites[room_id] = room
        for room_id, room in rooms.get("leave", {}).items():
            self.left.add(room_id)
            self.timeline.setdefault(room_id, []).extend(room.get("timeline", {}).get("events", []))
        return body

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Sync until ``predicate()`` is truthy (checked before each long-poll)."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.session.user_id}: timed out after {timeout:.0f}s waiting for {what}"
                )
            self.sync(1000)

    def events(self, room_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
        events = self.timeline.get(room_id, [])
        return [e for e in events if event_type is None or e.get("type") == event_type]

    def bodies(self, room_id: str) -> list[str]:
        return [e["content"].get("body", "") for e in self.events(room_id, "m.room.message")]

    def ephemeral_of(self, room_id: str, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.ephemeral.get(room_id, []) if e.get("type") == event_type]
