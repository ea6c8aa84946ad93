"""matrix-nio, a real Python client library, chats through a real ``twistd -n ruma``.

The scenario (``nio_scenario.py``) runs in its own process with nio's asyncio loop; this
module starts the homeserver, runs the script with a deadline and reports every failed step
with the server's log. The same script also runs against a real Synapse, which proves the
scenario itself asks only what a homeserver should answer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.interop.processes import (
    ServerProcess,
    describe_scenario_failure,
    run_json_script,
    start_ruma,
    start_synapse,
    unhandled_errors,
)

SCRIPT = Path(__file__).with_name("nio_scenario.py")
SCENARIO_TIMEOUT = 60.0


def run_nio(testcase: TestCase, server: ServerProcess) -> None:
    result = run_json_script(
        [sys.executable, str(SCRIPT), server.base_url, "--timeout", str(SCENARIO_TIMEOUT)],
        timeout=SCENARIO_TIMEOUT + 20,
    )
    if not result.get("ok"):
        testcase.fail(describe_scenario_failure(result, server))


class NioAgainstRumaTests(TestCase):
    """matrix-nio against Ruma."""

    timeout = 150

    def test_two_users_chat(self) -> None:
        """Two nio clients register, set a profile, create a room, invite and join, exchange
        messages seen through /sync and /messages, see the room's name and topic, gap-fill
        from a limited sync's prev_batch on a new device, see each other's typing, read
        receipts and a display-name change, and leave, all through a real Ruma on loopback."""
        server = start_ruma(self)
        run_nio(self, server)
        self.assertEqual(unhandled_errors(server), [], "the session left unhandled errors")


class NioAgainstSynapseTests(TestCase):
    """The control: the same scenario against a real Synapse."""

    timeout = 150

    def test_two_users_chat(self) -> None:
        """The nio scenario passes against Synapse, so a failure against Ruma is Ruma's."""
        server = start_synapse(self)
        run_nio(self, server)
