"""Acknowledged messages survive ``kill -9`` of a real ``twistd -n ruma``.

A user sends N messages; as soon as the last ``PUT …/send`` has answered 200 the server is
killed with SIGKILL (no shutdown code runs), then started again on the same config and data
directory. All N messages must come back, in order, through ``/messages``; a ``/sync`` token
issued before the kill must still work for an incremental sync that returns exactly them;
the access token must still be valid; and re-sending with a transaction ID used before the
kill must return the original event, not a new one. The same test runs against Synapse as
a control.

A second test kills the server while five senders are in the middle of a stream of sends:
every send that was acknowledged before the kill must be there after the restart, in the
same order through /messages and through an incremental /sync from a pre-kill token, and
the restarted server must wake a long-polling /sync for a new message.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import threading
import time
import urllib.parse
from typing import Any

from twisted.trial.unittest import TestCase

from tests.interop.processes import (
    ServerProcess,
    Session,
    http_json,
    postgres_database,
    register_session,
    start_ruma,
    start_synapse,
    unhandled_errors,
    wait_for,
)

N_MESSAGES = 30


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class RestartMixin:
    """The scenario; subclasses say which server to start."""

    timeout = 120

    def start_server(self) -> ServerProcess:
        raise NotImplementedError

    def check_logs(self, server: ServerProcess) -> None:
        """Server-specific checks of the logs after the scenario (none by default)."""

    def test_messages_and_sync_token_survive_kill_9(self) -> None:
        """Every acknowledged message is in /messages after kill -9 and restart, and a sync
        token from before the kill still gives an incremental sync of exactly them; the access
        token and the transaction IDs from before the kill still hold."""
        assert isinstance(self, TestCase)
        server = self.start_server()
        try:
            self.run_scenario(server)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{server.log_tail(30)}") from None
        self.check_logs(server)

    def run_scenario(self, server: ServerProcess) -> None:
        assert isinstance(self, TestCase)
        alice = register_session(server.base_url, f"alice{secrets.token_hex(3)}", "pw-restart")
        room_id = alice.call("POST", "/_matrix/client/v3/createRoom", {"name": "restart"})[
            "room_id"
        ]
        sync_filter = q(json.dumps({"room": {"timeline": {"limit": 2 * N_MESSAGES}}}))
        before = alice.call("GET", f"/_matrix/client/v3/sync?timeout=0&filter={sync_filter}")
        since = before["next_batch"]

        sent: list[str] = []
        for i in range(N_MESSAGES):
            txn = f"restart-{i}"
            body = alice.call(
                "PUT",
                f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}",
                {"msgtype": "m.text", "body": f"durable {i}"},
            )
            sent.append(body["event_id"])

        server.kill9()
        self.assertFalse(server.running())
        server.start()

        # The access token issued before the kill is still valid.
        whoami = alice.call("GET", "/_matrix/client/v3/account/whoami")
        self.assertEqual(whoami["user_id"], alice.user_id)

        # All N messages, newest first, through /messages.
        self.assertEqual(self.paginate_back(alice, room_id, set(sent)), list(reversed(sent)))

        # The sync token from before the kill gives exactly the N messages, in order.
        after = alice.call(
            "GET", f"/_matrix/client/v3/sync?timeout=0&since={q(since)}&filter={sync_filter}"
        )
        room = after.get("rooms", {}).get("join", {}).get(room_id)
        self.assertIsNotNone(room, f"the room is missing from the incremental sync: {after}")
        timeline = [e["event_id"] for e in room["timeline"]["events"]]
        self.assertEqual([e for e in timeline if e in sent], sent)
        self.assertEqual(timeline, sent, "the incremental sync holds only the N messages")
        self.assertFalse(room["timeline"].get("limited", False))

        # Re-using a transaction ID from before the kill returns the original event.
        again = alice.call(
            "PUT",
            f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/restart-0",
            {"msgtype": "m.text", "body": "durable 0"},
        )
        self.assertEqual(again["event_id"], sent[0])

        # And the server takes new messages after the restart.
        new = alice.call(
            "PUT",
            f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/after-restart",
            {"msgtype": "m.text", "body": "after"},
        )["event_id"]
        self.assertNotIn(new, sent)

    def test_acknowledged_sends_survive_kill_9_mid_stream(self) -> None:
        """kill -9 while five senders stream messages: every acknowledged send survives, in
        one consistent order through /messages and an incremental /sync from a pre-kill
        token, and the restarted server wakes a long-polling /sync for a new message."""
        assert isinstance(self, TestCase)
        server = self.start_server()
        try:
            self.run_mid_stream(server)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{server.log_tail(30)}") from None
        self.check_logs(server)

    def run_mid_stream(self, server: ServerProcess) -> None:
        assert isinstance(self, TestCase)
        alice = register_session(server.base_url, f"alice{secrets.token_hex(3)}", "pw-midstream")
        room_id = alice.call("POST", "/_matrix/client/v3/createRoom", {"name": "mid-stream"})[
            "room_id"
        ]
        sync_filter = q(json.dumps({"room": {"timeline": {"limit": 500}}}))
        since = alice.call("GET", f"/_matrix/client/v3/sync?timeout=0&filter={sync_filter}")[
            "next_batch"
        ]

        acked: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def sender(k: int) -> None:
            for i in range(60):
                if stop.is_set():
                    return
                path = f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/m{k}-{i}"
                try:
                    status, body = http_json(
                        "PUT",
                        server.base_url + path,
                        {"msgtype": "m.text", "body": f"sender {k} message {i}"},
                        token=alice.access_token,
                        timeout=10,
                    )
                except Exception:  # noqa: BLE001 - the server died under us: that is the test
                    return
                if status != 200:
                    return
                with lock:
                    acked.append(body["event_id"])

        threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(5)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= 40, 60, "40 acknowledged sends")
        server.kill9()
        stop.set()
        for t in threads:
            t.join(15)
        self.assertFalse([t for t in threads if t.is_alive()], "a sender thread is stuck")
        with lock:
            survivors = set(acked)
        server.start()

        history = self.paginate_back(alice, room_id, survivors, page=50, pages=20)
        missing = survivors - set(history)
        self.assertFalse(missing, f"{len(missing)} acknowledged sends lost in /messages")

        after = alice.call(
            "GET", f"/_matrix/client/v3/sync?timeout=0&since={q(since)}&filter={sync_filter}"
        )
        room = after.get("rooms", {}).get("join", {}).get(room_id)
        self.assertIsNotNone(room, "the room is missing from the incremental sync")
        timeline = [e["event_id"] for e in room["timeline"]["events"]]
        self.assertFalse(survivors - set(timeline), "acknowledged sends missing from /sync")
        self.assertEqual(
            [e for e in timeline if e in survivors],
            list(reversed(history)),
            "/sync and /messages disagree on the order",
        )

        # The restarted notifier wakes a long-poll for a new message.
        token = alice.call("GET", f"/_matrix/client/v3/sync?timeout=0&filter={sync_filter}")[
            "next_batch"
        ]
        result: dict[str, Any] = {}

        def long_poll() -> None:
            result["sync"] = alice.call(
                "GET",
                f"/_matrix/client/v3/sync?timeout=20000&since={q(token)}&filter={sync_filter}",
            )

        poller = threading.Thread(target=long_poll, daemon=True)
        poller.start()
        new = alice.call(
            "PUT",
            f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/after-kill",
            {"msgtype": "m.text", "body": "after the kill"},
        )["event_id"]
        poller.join(25)
        self.assertFalse(poller.is_alive(), "the long-poll did not return")
        woken = result["sync"].get("rooms", {}).get("join", {}).get(room_id, {})
        self.assertIn(new, [e["event_id"] for e in woken.get("timeline", {}).get("events", [])])

    def paginate_back(
        self,
        session: Session,
        room_id: str,
        wanted: set[str],
        page: int = 20,
        pages: int = 20,
    ) -> list[str]:
        """Page backwards through /messages (bounded) and return wanted IDs newest first."""
        found: list[str] = []
        token: str | None = None
        for _ in range(pages):
            path = f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit={page}"
            if token is not None:
                path += f"&from={q(token)}"
            chunk_page: dict[str, Any] = session.call("GET", path)
            found += [e["event_id"] for e in chunk_page.get("chunk", []) if e["event_id"] in wanted]
            token = chunk_page.get("end")
            if token is None or not chunk_page.get("chunk") or len(found) == len(wanted):
                break
        return found


class RumaRestartTests(RestartMixin, TestCase):
    """kill -9 and restart of Ruma."""

    def start_server(self) -> ServerProcess:
        return start_ruma(self)

    def check_logs(self, server: ServerProcess) -> None:
        """Recovering from kill -9 logs no unhandled error and no critical event."""
        self.assertEqual(unhandled_errors(server), [], "recovery left unhandled errors")

    def test_sigterm_with_open_long_polls_exits_promptly(self) -> None:
        """SIGTERM while clients hold 30-second long-polling /syncs: the server closes them
        and exits cleanly within a few seconds instead of waiting for the polls, and starts
        again."""
        server = self.start_server()
        alice = register_session(server.base_url, f"alice{secrets.token_hex(3)}", "pw-sigterm")
        token = alice.call("GET", "/_matrix/client/v3/sync?timeout=0")["next_batch"]
        # Three raw connections, each with a whole long-poll request already sent: once
        # sendall returns the bytes are in the server's socket buffer, no waiting needed.
        polls: list[socket.socket] = []
        for _ in range(3):
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=15)
            request = (
                f"GET /_matrix/client/v3/sync?timeout=30000&since={q(token)} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\n"
                f"Authorization: Bearer {alice.access_token}\r\n\r\n"
            )
            conn.sendall(request.encode())
            polls.append(conn)
            self.addCleanup(conn.close)
        started = time.monotonic()
        code = server.stop(timeout=10)
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 8, f"shutdown took {elapsed:.1f}s\n{server.log_tail(20)}")
        # twistd re-raises the signal at itself once it has shut down cleanly, so its exit
        # status is "killed by SIGTERM" (Synapse exits with 0).
        self.assertIn(code, (0, -signal.SIGTERM), f"exit code {code}\n{server.log_tail(20)}")
        self.assertIn("Server Shut Down.", server.stdout_path.read_text(errors="replace"))
        for conn in polls:
            # The held request ended with the server: closed, or answered early.
            try:
                data = conn.recv(65536)
            except ConnectionResetError:
                data = b""
            self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 "), data[:200])
        server.start()
        alice.call("GET", "/_matrix/client/v3/account/whoami")
        self.check_logs(server)


class RumaPostgresRestartTests(RestartMixin, TestCase):
    """kill -9 and restart of Ruma on PostgreSQL."""

    check_logs = RumaRestartTests.check_logs

    def start_server(self) -> ServerProcess:
        args = postgres_database(self)
        return start_ruma(self, config_overrides={"database": {"name": "psycopg2", "args": args}})


class SynapseRestartTests(RestartMixin, TestCase):
    """The control: the same expectations hold for Synapse."""

    def start_server(self) -> ServerProcess:
        return start_synapse(self)
