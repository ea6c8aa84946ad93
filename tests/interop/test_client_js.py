"""matrix-js-sdk, the SDK under Element, chats through a real ``twistd -n ruma``.

``js/scenario.mjs`` runs under Node with the SDK's in-memory store and no crypto. Both users
are created out of band (``ruma register-user`` / Synapse's shared-secret API) and log in
with a password, as Element does. The same script runs against a real Synapse as a control.

``js/node_modules`` comes from ``npm ci`` in ``tests/interop/js`` (see docs/testing.md);
when it is missing the test runs ``npm ci`` itself, bounded, from the committed lock file.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.interop.processes import (
    ServerProcess,
    describe_scenario_failure,
    node_available,
    require_peer,
    run_json_script,
    start_ruma,
    start_synapse,
    unhandled_errors,
)

JS_DIR = Path(__file__).with_name("js")
SCENARIO_TIMEOUT = 60.0


def ensure_js_sdk() -> None:
    """Require node 20+ and the pinned matrix-js-sdk in ``js/node_modules``."""
    ok, why = node_available()
    require_peer(ok, why)
    if (JS_DIR / "node_modules" / "matrix-js-sdk" / "package.json").exists():
        return
    npm = shutil.which("npm")
    require_peer(npm is not None, "npm is not on PATH, so matrix-js-sdk cannot be installed")
    assert npm is not None
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        ok, why = done.returncode == 0, f"npm ci failed: {done.stderr[-2000:]}"
    except (OSError, subprocess.TimeoutExpired) as e:
        ok, why = False, f"npm ci did not finish: {e}"
    require_peer(ok, why)


def run_js(testcase: TestCase, server: ServerProcess) -> None:
    suffix = secrets.token_hex(3)
    alice, bob = f"alice{suffix}", f"bob{suffix}"
    password = "correct horse battery staple"
    for user in (alice, bob):
        server.register_user(user, password)
    result = run_json_script(
        [
            "node",
            str(JS_DIR / "scenario.mjs"),
            server.base_url,
            alice,
            password,
            bob,
            password,
            str(int(SCENARIO_TIMEOUT)),
        ],
        timeout=SCENARIO_TIMEOUT + 20,
        cwd=JS_DIR,
    )
    if not result.get("ok"):
        testcase.fail(describe_scenario_failure(result, server))


class JsSdkAgainstRumaTests(TestCase):
    """matrix-js-sdk against Ruma."""

    timeout = 400

    def test_two_users_chat(self) -> None:
        """Two matrix-js-sdk clients log in, reach PREPARED, set a profile, create a room,
        invite and join, exchange messages seen live and through /messages, see the room's
        name and topic, scroll back from a short initial sync on a new device, see typing,
        read receipts and a display-name change, and leave, through a real Ruma on
        loopback."""
        ensure_js_sdk()
        server = start_ruma(self)
        run_js(self, server)
        self.assertEqual(unhandled_errors(server), [], "the session left unhandled errors")


class JsSdkAgainstSynapseTests(TestCase):
    """The control: the same scenario against a real Synapse."""

    timeout = 400

    def test_two_users_chat(self) -> None:
        """The matrix-js-sdk scenario passes against Synapse, so a failure against Ruma is
        Ruma's."""
        ensure_js_sdk()
        server = start_synapse(self)
        run_js(self, server)
