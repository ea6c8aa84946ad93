"""matrix-nio with end-to-end encryption uploads, queries, claims and verifies device keys
through a real ``twistd -n ruma`` (``nio_e2ee_scenario.py``), with a Synapse control.

nio's encryption needs ``matrix-nio[e2e]`` (its olm bindings); without them the test skips
(or fails under ``CI=true``), and ``test_e2ee_js`` remains the proof of the key relay.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.interop.processes import (
    ServerProcess,
    describe_scenario_failure,
    require_peer,
    run_json_script,
    start_ruma,
    start_synapse,
)

SCRIPT = Path(__file__).with_name("nio_e2ee_scenario.py")
SCENARIO_TIMEOUT = 90.0


def nio_encryption_available() -> tuple[bool, str]:
    try:
        from nio.crypto import ENCRYPTION_ENABLED
    except ImportError as e:
        return False, f"matrix-nio is not installed: {e}"
    if not ENCRYPTION_ENABLED:
        return False, "matrix-nio has no encryption support (pip install 'matrix-nio[e2e]')"
    return True, ""


def run_nio_e2ee(testcase: TestCase, server: ServerProcess) -> None:
    result = run_json_script(
        [sys.executable, str(SCRIPT), server.base_url, "--timeout", str(SCENARIO_TIMEOUT)],
        timeout=SCENARIO_TIMEOUT + 20,
    )
    if not result.get("ok"):
        testcase.fail(describe_scenario_failure(result, server))


class NioDevicesAgainstRumaTests(TestCase):
    """matrix-nio's encryption against Ruma."""

    timeout = 200

    def test_upload_query_claim_verify(self) -> None:
        """nio uploads device and one-time keys, finds the other user's device keys exactly
        as that device holds them and verifies it, claims a one-time key whose signature nio
        checks (the server's count drops by one), and decrypts an encrypted message."""
        require_peer(*nio_encryption_available())
        server = start_ruma(self)
        run_nio_e2ee(self, server)


class NioDevicesAgainstSynapseTests(TestCase):
    """The control: the same scenario against a real Synapse."""

    timeout = 200

    def test_upload_query_claim_verify(self) -> None:
        """The nio key scenario passes against Synapse, so a failure against Ruma is Ruma's."""
        require_peer(*nio_encryption_available())
        server = start_synapse(self)
        run_nio_e2ee(self, server)
