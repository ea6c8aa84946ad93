"""Start and stop real homeservers on loopback for the interop tests and the benchmarks.

Everything here is synchronous and bounded: a server is an OS process started with
``subprocess``, its output goes to log files in its own directory, readiness is a poll of
``GET /_matrix/client/versions`` against a deadline, and stopping is by PID (SIGTERM, then
SIGKILL after a grace period). Tests register ``stop`` with ``addCleanup`` through
``start_ruma``/``start_synapse`` so nothing outlives its test.

Nothing here imports Ruma's internals: Ruma is run as ``twistd -n ruma -c FILE`` and
configured through ``ruma generate-config`` like an operator would.

Contents: ``RumaProcess``/``start_ruma``, ``SynapseProcess``/``start_synapse`` (optionally
TLS for federation), ``make_test_ca`` (a CA and loopback leaf certificates),
``postgres_database`` (a throwaway schema), ``require_peer`` (skip, or fail under
``CI=true``), ``run_json_script`` and ``describe_scenario_failure`` for the client-library
scenario scripts, ``Session``/``register_session``/``http_json`` for plain client-API calls,
``unhandled_errors`` (log lines nobody should see) and ``wait_for`` (bounded polling).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

#: The repository root (tests/interop/processes.py -> ../..).
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
#: The directory of the Python running the tests; twistd, ruma and Synapse live beside it.
VENV_BIN = Path(sys.executable).parent

POLL_INTERVAL = 0.1
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class SkippingTestCase(Protocol):
    """The part of a trial TestCase the helpers use."""

    def addCleanup(self, f: Callable[..., object], *args: object, **kwargs: object) -> None: ...

    def mktemp(self) -> str: ...


def in_ci() -> bool:
    """True when running under CI (env ``CI=true``), where a missing peer is a failure."""
    return os.environ.get("CI", "").lower() == "true"


class PeerMissing(Exception):
    """A real peer needed by an interop test is not installed on this machine."""


def require_peer(available: bool, why: str) -> None:
    """Skip the current test when a peer is missing, or fail it under ``CI=true``.

    Call from a test method or ``setUp``; ``why`` says what is missing and how to get it.
    """
    if available:
        return
    if in_ci():
        raise PeerMissing(f"{why} (CI=true: a missing interop peer is a failure)")
    from twisted.trial.unittest import SkipTest

    raise SkipTest(why)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def http_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """One blocking HTTP request with a JSON body; returns ``(status, decoded JSON or None)``."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status: int = response.status
    except urllib.error.HTTPError as e:
        raw = e.read()
        status = e.code
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
    return status, decoded


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = POLL_INTERVAL
) -> None:
    """Poll ``predicate`` every ``interval`` seconds until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ServerProcess:
    """A homeserver in a child process, with its own directory for config, data and logs."""

    base_dir: Path
    name: str = "server"
    host: str = "127.0.0.1"
    port: int = 0
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    starts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)

    # -- to be provided by subclasses -------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def configure(self) -> None:
        """Write the configuration (called once, before the first start)."""

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    # -- common behaviour ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    @property
    def stdout_path(self) -> Path:
        return self.base_dir / f"{self.name}.stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.base_dir / f"{self.name}.stderr.log"

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the process and wait until ``/versions`` answers 200."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        if self.starts == 0:
            self.configure()
        self.starts += 1
        with (
            open(self.stdout_path, "ab") as out,
            open(self.stderr_path, "ab") as err,
        ):
            marker = f"\n===== start #{self.starts} at {time.strftime('%H:%M:%S')} =====\n"
            out.write(marker.encode())
            err.write(marker.encode())
            out.flush()
            err.flush()
            self.popen = subprocess.Popen(
                self.command(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.child_env(),
                start_new_session=True,
            )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill9()
            raise

    def wait_ready(self, timeout: float) -> None:
        url = self.base_url + "/_matrix/client/versions"

        def ready() -> bool:
            if not self.running():
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode if self.popen else '?'} "
                    f"before answering /versions; log tail:\n{self.log_tail()}"
                )
            try:
                status, _ = http_json("GET", url, timeout=2.0)
            except (OSError, urllib.error.URLError):
                return False
            return status == 200

        try:
            wait_for(ready, timeout, f"{self.name} to answer GET {url}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; log tail:\n{self.log_tail()}") from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM by PID, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.popen.returncode

    def kill9(self) -> None:
        """SIGKILL by PID (and its process group, which it leads), and reap it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop gracefully (if running) and start again on the same config and data."""
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.stderr_path, self.stdout_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def rss_bytes(self) -> int | None:
        """The resident memory of the process, from /proc (Linux only)."""
        if not self.running() or self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def register_user(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create an account out of band; returns the full user ID."""
        raise NotImplementedError

    def login(self, localpart: str, password: str) -> dict[str, Any]:
        """Password login through the client API; returns the response body."""
        status, body = http_json(
            "POST",
            self.base_url + "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
            },
        )
        if status != 200:
            raise RuntimeError(f"login of {localpart} on {self.name} failed: {status} {body}")
        assert isinstance(body, dict)
        return body


# --------------------------------------------------------------------------------------
# Ruma
# --------------------------------------------------------------------------------------


def ruma_available() -> tuple[bool, str]:
    """Whether ``twistd ruma`` and ``ruma generate-config`` can run here."""
    twistd = VENV_BIN / "twistd"
    if not twistd.exists():
        return False, f"{twistd} not found"
    if not (VENV_BIN / "ruma").exists():
        return False, f"{VENV_BIN / 'ruma'} (the admin command) not found"
    return True, ""


#: Rate limits far above anything a test or benchmark does (Synapse's key names).
GENEROUS_RATE = {"per_second": 10000, "burst_count": 100000}

#: What every test Ruma runs with on top of ``ruma generate-config``: open registration
#: (the clients register themselves), cheap password hashing, no throttling.
RUMA_TEST_SETTINGS: dict[str, Any] = {
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "bcrypt_rounds": 4,
    "rc_message": GENEROUS_RATE,
    "rc_registration": GENEROUS_RATE,
    "rc_login": {
        "address": GENEROUS_RATE,
        "account": GENEROUS_RATE,
        "failed_attempts": GENEROUS_RATE,
    },
    "rc_joins": {"local": GENEROUS_RATE, "remote": GENEROUS_RATE},
    "rc_invites": {
        "per_room": GENEROUS_RATE,
        "per_user": GENEROUS_RATE,
        "per_issuer": GENEROUS_RATE,
    },
    "rc_room_creation": GENEROUS_RATE,
}


@dataclass
class RumaProcess(ServerProcess):
    """``twistd -n --pidfile= ruma -c homeserver.yaml`` with its data in ``base_dir``.

    The config comes from ``ruma generate-config``; the listener is then pointed at our
    loopback port and rate limits are raised so tests are not throttled. ``config_overrides``
    is merged into the generated YAML (dicts recursively).
    """

    name: str = "ruma"
    server_name: str = ""
    config_overrides: Mapping[str, Any] = field(default_factory=dict)
    #: Run Ruma's code from this source tree (e.g. an exported older commit) instead of
    #: the installed one: it goes first on the children's PYTHONPATH.
    source_tree: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.server_name:
            self.server_name = f"localhost:{self.port}"

    def child_env(self) -> dict[str, str]:
        env = super().child_env()
        if self.source_tree is not None:
            rest = env.get("PYTHONPATH")
            env["PYTHONPATH"] = str(self.source_tree) + (os.pathsep + rest if rest else "")
        return env

    @property
    def config_path(self) -> Path:
        return self.base_dir / "homeserver.yaml"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    def ruma_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "ruma"), *args],
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env=self.child_env(),
        )

    def configure(self) -> None:
        if not self.config_path.exists():
            result = self.ruma_command(
                "generate-config",
                "--server-name",
                self.server_name,
                "--data-dir",
                str(self.data_dir),
                "--output",
                str(self.config_path),
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"ruma generate-config failed ({result.returncode}):\n"
                    f"{result.stdout}\n{result.stderr}"
                )
        config = yaml.safe_load(self.config_path.read_text()) or {}
        config = patch_ruma_config(config, self.host, self.port)
        config = deep_merge(config, RUMA_TEST_SETTINGS)
        config = deep_merge(config, dict(self.config_overrides))
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self) -> list[str]:
        return [
            str(VENV_BIN / "twistd"),
            "-n",
            "--pidfile=",
            "ruma",
            "-c",
            str(self.config_path),
        ]

    def register_user(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create an account with ``ruma register-user`` against our config."""
        args = [
            "register-user",
            "-c",
            str(self.config_path),
            "--user",
            localpart,
            "--password",
            password,
        ]
        if admin:
            args.append("--admin")
        result = self.ruma_command(*args)
        if result.returncode != 0:
            raise RuntimeError(
                f"ruma register-user {localpart} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return f"@{localpart}:{self.server_name}"


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in: nested dicts are merged, anything else replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def patch_ruma_config(config: dict[str, Any], host: str, port: int) -> dict[str, Any]:
    """Point the client listener of a generated Ruma config at ``host:port``.

    Every HTTP listener that serves the client API is moved to the loopback port; any other
    listener (federation, metrics) gets its own free loopback port so parallel test servers
    never collide with each other or with a real homeserver on this machine.
    """
    config = dict(config)
    listeners = config.get("listeners")
    if isinstance(listeners, list) and listeners:
        patched = []
        client_done = False
        for listener in listeners:
            listener = dict(listener)
            resources = _listener_resources(listener)
            if "client" in resources and not client_done:
                listener["port"] = port
                client_done = True
            else:
                listener["port"] = free_port(host)
            for key in ("bind_addresses", "bind_address", "host", "interface"):
                if key in listener:
                    listener[key] = [host] if isinstance(listener[key], list) else host
            if not any(
                k in listener for k in ("bind_addresses", "bind_address", "host", "interface")
            ):
                listener["bind_addresses"] = [host]
            patched.append(listener)
        if not client_done:
            raise RuntimeError(f"no client listener in the generated config: {listeners!r}")
        config["listeners"] = patched
    else:
        config["listeners"] = [
            {
                "port": port,
                "bind_addresses": [host],
                "type": "http",
                "resources": [{"names": ["client"]}],
            }
        ]
    return config


def _listener_resources(listener: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for resource in listener.get("resources", []) or []:
        if isinstance(resource, str):
            names.add(resource)
        elif isinstance(resource, Mapping):
            for n in resource.get("names", []) or []:
                names.add(str(n))
    return names


def start_ruma(testcase: SkippingTestCase, **kwargs: Any) -> RumaProcess:
    """Start a Ruma for ``testcase`` (skipped, or failed under CI, if it cannot run here)."""
    ok, why = ruma_available()
    require_peer(ok, f"Ruma cannot run: {why}")
    server = RumaProcess(Path(testcase.mktemp()), **kwargs)
    testcase.addCleanup(server.kill9)
    testcase.addCleanup(server.stop)
    server.start()
    return server


# --------------------------------------------------------------------------------------
# Synapse
# --------------------------------------------------------------------------------------

#: The usual private/reserved ranges a homeserver refuses to call out to, without loopback
#: (127.0.0.0/8 and ::1/128), so that a Synapse under test may federate with 127.0.0.1.
IP_RANGE_BLACKLIST_WITHOUT_LOOPBACK = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
]

_GENEROUS = GENEROUS_RATE


@functools.cache
def synapse_available() -> tuple[bool, str]:
    """Whether ``matrix-synapse`` is importable by the Python running the tests."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", "import synapse, synapse.app.homeserver"],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"cannot check for Synapse: {e}"
    if result.returncode != 0:
        return False, "matrix-synapse is not installed in this venv (pip install matrix-synapse)"
    return True, ""


@dataclass
class SynapseProcess(ServerProcess):
    """A real Synapse (from PyPI) with SQLite in ``base_dir`` and a plain-HTTP client listener.

    With ``tls`` (a ``TestCA`` leaf), it also serves client+federation+keys over TLS on
    ``federation_port``, its server name becomes ``127.0.0.1:federation_port`` and it trusts
    only the test CA for outbound federation, with loopback allowed.
    """

    name: str = "synapse"
    server_name: str = ""
    tls: LeafCert | None = None
    federation_port: int = 0
    shared_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    config_overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tls is not None and not self.federation_port:
            self.federation_port = free_port(self.host)
        if not self.server_name:
            if self.tls is not None:
                self.server_name = f"{self.host}:{self.federation_port}"
            else:
                self.server_name = f"localhost:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.base_dir / "homeserver.yaml"

    @property
    def federation_url(self) -> str:
        return f"https://{self.host}:{self.federation_port}"

    def configure(self) -> None:
        from signedjson.key import generate_signing_key, write_signing_keys

        key_path = self.base_dir / "signing.key"
        if not key_path.exists():
            with open(key_path, "w") as f:
                write_signing_keys(f, [generate_signing_key("a_" + secrets.token_hex(2))])
        listeners: list[dict[str, Any]] = [
            {
                "port": self.port,
                "bind_addresses": [self.host],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ]
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(self.base_dir / "synapse.pid"),
            "listeners": listeners,
            "database": {
                "name": "sqlite3",
                "args": {"database": str(self.base_dir / "homeserver.db")},
            },
            "media_store_path": str(self.base_dir / "media"),
            "signing_key_path": str(key_path),
            "report_stats": False,
            "bcrypt_rounds": 4,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "registration_shared_secret": self.shared_secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "presence": {"enabled": True},
            "url_preview_enabled": False,
            "rc_message": _GENEROUS,
            "rc_registration": _GENEROUS,
            "rc_registration_token_validity": _GENEROUS,
            "rc_login": {
                "address": _GENEROUS,
                "account": _GENEROUS,
                "failed_attempts": _GENEROUS,
            },
            "rc_admin_redaction": _GENEROUS,
            "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
            "rc_joins_per_room": _GENEROUS,
            "rc_key_requests": _GENEROUS,
            "rc_3pid_validation": _GENEROUS,
            "rc_invites": {
                "per_room": _GENEROUS,
                "per_user": _GENEROUS,
                "per_issuer": _GENEROUS,
            },
            "rc_third_party_invite": _GENEROUS,
            "rc_media_create": _GENEROUS,
            "rc_presence": {"per_user": _GENEROUS},
            "rc_delayed_event_mgmt": _GENEROUS,
            "rc_room_creation": _GENEROUS,
            "rc_reports": _GENEROUS,
            "rc_user_directory": _GENEROUS,
            "rc_profile": _GENEROUS,
            "rc_federation": {
                "window_size": 1000,
                "sleep_limit": 10000,
                "sleep_delay": 1,
                "reject_limit": 100000,
                "concurrent": 1000,
            },
            "federation_rr_transactions_per_room_per_second": 10000,
        }
        if self.tls is not None:
            listeners.append(
                {
                    "port": self.federation_port,
                    "bind_addresses": [self.host],
                    "type": "http",
                    "tls": True,
                    "x_forwarded": False,
                    "resources": [{"names": ["client", "federation", "keys"], "compress": False}],
                }
            )
            config.update(
                {
                    "tls_certificate_path": str(self.tls.cert_path),
                    "tls_private_key_path": str(self.tls.key_path),
                    "federation_custom_ca_list": [str(self.tls.ca_cert_path)],
                    "ip_range_blacklist": IP_RANGE_BLACKLIST_WITHOUT_LOOPBACK,
                    "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
                }
            )
        config = deep_merge(config, dict(self.config_overrides))
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)]

    def register_user(self, localpart: str, password: str, admin: bool = False) -> str:
        """Create an account through Synapse's shared-secret registration admin API."""
        url = self.base_url + "/_synapse/admin/v1/register"
        status, body = http_json("GET", url)
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"nonce request failed: {status} {body}")
        nonce = body["nonce"]
        message = b"\x00".join(
            part.encode("utf-8")
            for part in (nonce, localpart, password, "admin" if admin else "notadmin")
        )
        mac = hmac.new(self.shared_secret.encode(), message, digestmod=hashlib.sha1)
        status, body = http_json(
            "POST",
            url,
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"registering {localpart} on Synapse failed: {status} {body}")
        user_id: str = body["user_id"]
        return user_id


def start_synapse(testcase: SkippingTestCase, **kwargs: Any) -> SynapseProcess:
    """Start a Synapse for ``testcase`` (skipped, or failed under CI, if not installed)."""
    ok, why = synapse_available()
    require_peer(ok, f"Synapse cannot run: {why}")
    server = SynapseProcess(Path(testcase.mktemp()), **kwargs)
    testcase.addCleanup(server.kill9)
    testcase.addCleanup(server.stop)
    server.start()
    return server


# --------------------------------------------------------------------------------------
# A test certificate authority (for the federation interop tests)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeafCert:
    """A server certificate signed by a ``TestCA``, with the CA's certificate path."""

    cert_path: Path
    key_path: Path
    ca_cert_path: Path


@dataclass(frozen=True)
class TestCA:
    """A throwaway CA on disk that can sign loopback server certificates."""

    directory: Path
    cert_path: Path
    key_path: Path

    def issue(
        self,
        name: str = "server",
        dns_names: Sequence[str] = ("localhost",),
        ip_addresses: Sequence[str] = ("127.0.0.1", "::1"),
    ) -> LeafCert:
        """Sign a leaf certificate for the given names; files are ``{name}.crt``/``.key``."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_path = self.directory / f"{name}.crt"
        key_path = self.directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return LeafCert(cert_path=cert_path, key_path=key_path, ca_cert_path=self.cert_path)


def make_test_ca(directory: str | Path) -> TestCA:
    """Create a CA (``ca.crt``/``ca.key``) in ``directory``; sign leaves with ``.issue()``.

    The default leaf from ``make_test_ca(d).issue()`` covers IP:127.0.0.1, DNS:localhost
    and IP:::1, which is what a loopback Synapse federating with Ruma needs.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ruma interop test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "ca.crt"
    key_path = directory / "ca.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TestCA(directory=directory, cert_path=cert_path, key_path=key_path)


@functools.cache
def node_available() -> tuple[bool, str]:
    """Whether ``node`` (20+) is on PATH."""
    node = shutil.which("node")
    if node is None:
        return False, "node is not on PATH (apt-get install nodejs npm)"
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"node does not run: {e}"
    version = out.stdout.strip().lstrip("v")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return False, f"cannot read node's version {out.stdout!r}"
    if major < 20:
        return False, f"node {version} is too old (20+ needed)"
    return True, ""


# --------------------------------------------------------------------------------------
# Scenario scripts (nio, matrix-js-sdk) that print one JSON result on stdout
# --------------------------------------------------------------------------------------


def run_json_script(
    command: Sequence[str], timeout: float, cwd: Path | None = None
) -> dict[str, Any]:
    """Run a scenario script to completion (killed at ``timeout``) and decode its result.

    The script prints one JSON object as its last stdout line. On anything else the returned
    dict has ``ok: False`` and says what happened, with the script's stderr tail.
    """
    try:
        completed = subprocess.run(
            list(command),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        return {
            "ok": False,
            "steps": [],
            "error": f"scenario killed after {timeout:.0f}s",
            "stderr": (stderr or "")[-4000:],
        }
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1])
        if not isinstance(result, dict):
            raise ValueError("not an object")
    except (IndexError, ValueError):
        return {
            "ok": False,
            "steps": [],
            "error": f"no JSON result (exit code {completed.returncode})",
            "stderr": completed.stderr[-4000:],
        }
    result["stderr"] = completed.stderr[-4000:]
    return result


def describe_scenario_failure(result: Mapping[str, Any], server: ServerProcess) -> str:
    """A failure message naming every failed step, then the server's log tail."""
    lines = [f"{server.name} failed the scenario:"]
    if result.get("error"):
        lines.append(f"  error: {result['error']}")
    for step in result.get("steps", []):
        mark = "ok  " if step.get("ok") else "FAIL"
        lines.append(f"  [{mark}] {step.get('name')}")
        if not step.get("ok"):
            lines.append(f"         {step.get('detail')}")
    if not result.get("steps") and result.get("stderr"):
        lines.append("--- scenario stderr ---")
        lines.append(str(result["stderr"])[-2000:])
    lines.append(server.log_tail(30))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Plain client-API helpers (blocking) for tests that need no client library
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A logged-in user: where, who and the access token."""

    base_url: str
    user_id: str
    access_token: str

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """A client-API call that must succeed; returns the decoded body."""
        status, decoded = http_json(
            method, self.base_url + path, body, token=self.access_token, timeout=timeout
        )
        if status != 200:
            raise AssertionError(f"{method} {path} -> {status} {decoded}")
        return decoded


def register_session(base_url: str, localpart: str, password: str) -> Session:
    """Register through ``POST /_matrix/client/v3/register`` (the dummy auth stage)."""
    url = base_url + "/_matrix/client/v3/register"
    body: dict[str, Any] = {"username": localpart, "password": password}
    status, decoded = http_json("POST", url, body)
    if status == 401 and isinstance(decoded, dict) and "flows" in decoded:
        auth: dict[str, Any] = {"type": "m.login.dummy"}
        if "session" in decoded:
            auth["session"] = decoded["session"]
        status, decoded = http_json("POST", url, {**body, "auth": auth})
    if status != 200 or not isinstance(decoded, dict):
        raise AssertionError(f"registering {localpart}: {status} {decoded}")
    return Session(base_url, decoded["user_id"], decoded["access_token"])


#: Log markers of an error nobody handled (twisted.logger's level tag, Deferred GC reports).
UNHANDLED_MARKERS = (
    "#critical]",
    "Unhandled error",
    "Unhandled Error",
    "Unhandled error in Deferred",
)


def unhandled_errors(server: ServerProcess, limit: int = 20) -> list[str]:
    """Lines of the server's logs that report an unhandled error or a critical event.

    A normal client session must leave none: each one is a request that blew up or a
    background task that failed with nobody listening.
    """
    found: list[str] = []
    for path in (server.stdout_path, server.stderr_path):
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if any(marker in line for marker in UNHANDLED_MARKERS):
                found.append(line[:300])
                if len(found) >= limit:
                    return found
    return found


# --------------------------------------------------------------------------------------
# PostgreSQL: a throwaway database per test
# --------------------------------------------------------------------------------------

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
POSTGRES_DB = "test"


def postgres_database(testcase: SkippingTestCase) -> dict[str, Any]:
    """A fresh, empty PostgreSQL schema in the ``test`` database for ``testcase`` (dropped at
    cleanup), as Ruma/Synapse-style ``database.args`` whose connections use it as their
    ``search_path``. Skips (fails under CI) if PostgreSQL at 127.0.0.1:5432 is unreachable.

    A schema rather than a database: ``DROP DATABASE`` forces a checkpoint, which takes up to
    a minute on a busy server; ``DROP SCHEMA … CASCADE`` does not.
    """
    try:
        import psycopg2
    except ImportError:
        require_peer(False, "psycopg2 is not installed")
        raise
    schema = f"ruma_interop_{secrets.token_hex(4)}"
    try:
        conn = psycopg2.connect(dbname=POSTGRES_DB, connect_timeout=5, **POSTGRES)
    except psycopg2.OperationalError as e:
        require_peer(False, f"PostgreSQL is not reachable at 127.0.0.1:5432: {e}")
        raise
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    conn.close()

    def drop() -> None:
        conn = psycopg2.connect(dbname=POSTGRES_DB, connect_timeout=5, **POSTGRES)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()

    testcase.addCleanup(drop)
    return {
        **POSTGRES,
        "database": POSTGRES_DB,
        "options": f"-c search_path={schema}",
        "cp_min": 1,
        "cp_max": 5,
    }
