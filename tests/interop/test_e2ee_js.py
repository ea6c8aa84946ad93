"""matrix-js-sdk with its Rust crypto exchanges end-to-end encrypted messages through a
real ``twistd -n ruma``.

``js/e2ee_scenario.mjs`` logs two users in as new devices, starts the SDK's Rust crypto
(``@matrix-org/matrix-sdk-crypto-wasm``, in memory), has alice create an encrypted room and
bob join, and each sends a message the other decrypts: device keys through ``/keys/upload``
and ``/keys/query``, an olm session from ``/keys/claim``, the megolm room key through
``/sendToDevice`` and ``/sync``'s ``to_device``. The same script runs against a real
Synapse as a control.
"""

from __future__ import annotations

import secrets

from twisted.trial.unittest import TestCase

from tests.interop.processes import (
    ServerProcess,
    describe_scenario_failure,
    run_json_script,
    start_ruma,
    start_synapse,
    unhandled_errors,
)
from tests.interop.test_client_js import JS_DIR, ensure_js_sdk

SCENARIO_TIMEOUT = 120.0


def run_e2ee(testcase: TestCase, server: ServerProcess) -> dict:
    suffix = secrets.token_hex(3)
    alice, bob = f"alice{suffix}", f"bob{suffix}"
    password = "correct horse battery staple"
    for user in (alice, bob):
        server.register_user(user, password)
    result = run_json_script(
        [
            "node",
            str(JS_DIR / "e2ee_scenario.mjs"),
            server.base_url,
            alice,
            password,
            bob,
            password,
            str(int(SCENARIO_TIMEOUT)),
        ],
        timeout=SCENARIO_TIMEOUT + 30,
        cwd=JS_DIR,
    )
    if not result.get("ok"):
        testcase.fail(describe_scenario_failure(result, server))
    return result


class JsSdkE2EEAgainstRumaTests(TestCase):
    """matrix-js-sdk's Rust crypto against Ruma."""

    timeout = 400

    def test_two_users_exchange_encrypted_messages(self) -> None:
        """Two matrix-js-sdk clients with Rust crypto publish their keys, see each other's
        devices, and each decrypts the other's message in an encrypted room, through a
        real Ruma on loopback; the server holds only ciphertext."""
        ensure_js_sdk()
        server = start_ruma(self)
        run_e2ee(self, server)
        self.assertEqual(unhandled_errors(server), [], "the session left unhandled errors")


class JsSdkE2EEAgainstSynapseTests(TestCase):
    """The control: the same scenario against a real Synapse."""

    timeout = 400

    def test_two_users_exchange_encrypted_messages(self) -> None:
        """The e2ee scenario passes against Synapse, so a failure against Ruma is Ruma's."""
        ensure_js_sdk()
        server = start_synapse(self)
        run_e2ee(self, server)
