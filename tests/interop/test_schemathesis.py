"""Conformance with the spec's own OpenAPI definition: schemathesis against a real Ruma.

A real ``twistd ruma`` is started on loopback, a user is registered and given a room (with
an alias and a message, so fixed ``roomId``/``eventId``/``roomIdOrAlias`` parameters reach
real resources), and ``schemathesis run`` goes over every Client-Server operation of
``tests/conformance/client-server.json.gz`` (Matrix v1.19) with that user's access token:
examples, coverage and fuzzing phases, positive data, a bounded number of examples per
operation. The checks are ``not_a_server_error`` and ``response_schema_conformance``: any
5xx, or any response whose body does not match the spec's schema for its status, fails
the test, as does an unhandled error in Ruma's log.

Operations that would end the session (logout, deactivation, password change, device
deletion) are left out so the token survives the run.

Bounds: ``RUMA_SCHEMATHESIS_EXAMPLES`` (default 10) examples per operation, 3 for the slow
ones (sync, events, upload); the whole run has a deadline. See docs/conformance.md.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

from twisted.trial.unittest import TestCase

from tests.interop.processes import (
    REPO_ROOT,
    VENV_BIN,
    register_session,
    require_peer,
    start_ruma,
    unhandled_errors,
)

SPEC = REPO_ROOT / "tests" / "conformance" / "client-server.json.gz"
EXCLUDE = (
    r"/logout"
    r"|/account/deactivate"
    r"|/account/password"
    r"|/delete_devices"
    r"|/devices/\{deviceId\}"
)
RUN_DEADLINE = 540.0


def _failures(output: str) -> str:
    """The failing operations with their check and answer, from schemathesis' report."""
    keep: list[str] = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if re.match(r"^_{3,} .+ _{3,}$", stripped) or stripped.startswith("- ST"):
            keep.append(stripped)
        elif re.match(r"^\[\d{3}\] ", stripped) and i + 1 < len(lines):
            keep.append(f"    {stripped} {lines[i + 1].strip()[:300]}")
        elif stripped.startswith(("curl ", "Failures:", "❌")):
            keep.append(f"    {stripped[:400]}")
    return "\n".join(keep[-400:]) or "\n".join(lines[-60:])


def _schemathesis() -> Path | None:
    path = VENV_BIN / "schemathesis"
    if path.exists():
        return path
    found = shutil.which("schemathesis")
    return Path(found) if found else None


def _config(
    room_id: str, event_id: str, alias: str, user_id: str, server_name: str, slow_examples: int
) -> str:
    def s(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "\n".join(
        [
            "# Written by tests/interop/test_schemathesis.py",
            "[generation]",
            "allow-x00 = false",
            "",
            # The checks are chosen here rather than with --checks, which would override
            # the per-operation setting below.
            "[checks]",
            "enabled = false",
            "not_a_server_error.enabled = true",
            "response_schema_conformance.enabled = true",
            "",
            "[parameters]",
            f"roomId = {s(room_id)}",
            f"eventId = {s(event_id)}",
            f"roomIdOrAlias = {s(room_id)}",
            f"roomAlias = {s(alias)}",
            f"userId = {s(user_id)}",
            # Media of this server: other servers cannot be reached from the test machine
            # (an unreachable origin is a deliberate 502, as in Synapse).
            f"serverName = {s(server_name)}",
            # Long-polls must not sit out their whole (random) timeout.
            '"query.timeout" = 0',
            "",
            "[[operations]]",
            'include-path-regex = "(/sync|/events|/upload|/create)$"',
            f"generation.max-examples = {slow_examples}",
            "",
            # The spec's 200 schema here is oneOf [any object, ClientEvent]: a ClientEvent
            # (?format=event) is always valid under both, so no server can pass it.
            "[[operations]]",
            "include-path-regex = '/state/[{]eventType[}]/[{]stateKey[}]$'",
            "checks.response_schema_conformance.enabled = false",
            "",
        ]
    )


class SchemathesisConformanceTests(TestCase):
    timeout = 900

    def test_client_server_api_conformance(self) -> None:
        """Every Client-Server operation answers schemathesis' generated requests without a
        5xx and with bodies matching the spec's response schemas."""
        tool = _schemathesis()
        # schemathesis is in the test extras: skipped without it, failed under CI=true.
        require_peer(tool is not None, "schemathesis is not installed (pip install schemathesis)")
        assert tool is not None
        # A TURN server configured, so /voip/turnServer answers with credentials (without
        # one Ruma answers {} as Synapse does, which the spec's schema does not allow).
        server = start_ruma(
            self,
            config_overrides={
                "turn_uris": ["turn:turn.invalid:3478?transport=udp"],
                "turn_shared_secret": "conformance-turn-secret",
            },
        )
        user = register_session(server.base_url, "conformance", "conformance-password-1")
        room = user.call(
            "POST",
            "/_matrix/client/v3/createRoom",
            {"preset": "public_chat", "room_alias_name": "conformance", "name": "Conformance"},
        )["room_id"]
        alias = f"#conformance:{server.server_name}"
        event_id = user.call(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room, safe='')}/send/m.room.message/seed",
            {"msgtype": "m.text", "body": "hello conformance"},
        )["event_id"]

        work = Path(self.mktemp()).resolve()
        work.mkdir(parents=True)
        spec = work / "client-server.json"
        with gzip.open(SPEC, "rb") as src, open(spec, "wb") as dst:
            shutil.copyfileobj(src, dst)
        examples = int(os.environ.get("RUMA_SCHEMATHESIS_EXAMPLES", "10"))
        config = work / "schemathesis.toml"
        config.write_text(
            _config(room, event_id, alias, user.user_id, server.server_name, min(examples, 3))
        )
        report = work / "report"
        args = [
            str(tool),
            "--config-file",
            str(config),
            "run",
            str(spec),
            "--url",
            server.base_url,
            "--header",
            f"Authorization: Bearer {user.access_token}",
            "--mode",
            "positive",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(examples),
            "--exclude-path-regex",
            EXCLUDE,
            "--continue-on-failure",
            "--suppress-health-check",
            "all",
            "--no-shrink",
            "--workers",
            "2",
            "--seed",
            os.environ.get("RUMA_SCHEMATHESIS_SEED", "20260101"),
            "--request-timeout",
            "15",
            "--output-truncate",
            "true",
            "--warnings",
            "off",
            "--report",
            "junit,ndjson",
            "--report-dir",
            str(report),
        ]
        try:
            result = subprocess.run(
                args,
                cwd=work,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=RUN_DEADLINE,
                env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
            )
        except subprocess.TimeoutExpired as e:
            self.fail(f"schemathesis did not finish within {RUN_DEADLINE}s: {e.stdout!r}")
        output = result.stdout + result.stderr
        (work / "schemathesis.log").write_text(output)
        summary = _failures(output)
        self.assertEqual(
            result.returncode,
            0,
            f"schemathesis found problems (full log {work / 'schemathesis.log'}):\n{summary}",
        )
        self.assertIn("passed", output)
        self.assertEqual(unhandled_errors(server), [])
