"""Acknowledged messages survive ``kill -9`` of a real ``twistd -n ruma``.

A user sends N messages; as soon as the last ``PUT …/send`` has answered 200 the server is
killed with SIGKILL (no shutdown code runs), then started again on the same config and data
directory. All N messages must come back, in order, through ``/messages``; a ``/sync`` token
issued before the kill must still work for an incremental sync that returns exactly them;
the access token must still be valid; and re-sending with a transaction ID used before the
kill must return the original event, not a new one. The same test runs against Synapse as
a control.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from typing import Any

from twisted.trial.unittest import TestCase

from tests.interop.processes import (
    ServerProcess,
    Session,
    register_session,
    start_ruma,
    start_synapse,
    unhandled_errors,
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

    def paginate_back(self, session: Session, room_id: str, wanted: set[str]) -> list[str]:
        """Page backwards through /messages (bounded) and return wanted IDs newest first."""
        found: list[str] = []
        token: str | None = None
        for _ in range(20):
            path = f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=20"
            if token is not None:
                path += f"&from={q(token)}"
            page: dict[str, Any] = session.call("GET", path)
            found += [e["event_id"] for e in page.get("chunk", []) if e["event_id"] in wanted]
            token = page.get("end")
            if token is None or not page.get("chunk") or len(found) == len(wanted):
                break
        return found


class RumaRestartTests(RestartMixin, TestCase):
    """kill -9 and restart of Ruma."""

    def start_server(self) -> ServerProcess:
        return start_ruma(self)

    def check_logs(self, server: ServerProcess) -> None:
        """Recovering from kill -9 logs no unhandled error and no critical event."""
        self.assertEqual(unhandled_errors(server), [], "recovery left unhandled errors")


class SynapseRestartTests(RestartMixin, TestCase):
    """The control: the same expectations hold for Synapse."""

    def start_server(self) -> ServerProcess:
        return start_synapse(self)
