"""``twistd ruma``: makeService builds the tree, and it serves real HTTP on a real reactor."""

from __future__ import annotations

import json
import os
from typing import Any

import yaml
from treq.client import HTTPClient
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from ruma import tap
from ruma.config import load_config
from ruma.storage.database import Database, Engine
from tests.storage.engines import PostgresEngine

TIMEOUT = 20


def write_config(directory: str, **extra: Any) -> str:
    data: dict[str, Any] = {
        "server_name": "tap.test",
        "data_dir": os.path.join(directory, "data"),
        "bcrypt_rounds": 4,
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "listeners": [
            {"port": 0, "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]}
        ],
    }
    data.update(extra)
    path = os.path.join(directory, "homeserver.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return path


class MakeServiceTests(SynchronousTestCase):
    def test_make_service_builds_tree(self) -> None:
        """makeService returns a MultiService with a listener, without starting anything."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        options = tap.Options()
        options.parseOptions(["-c", write_config(directory)])
        service = tap.makeService(options)
        self.addCleanup(service.hs.db.close)  # type: ignore[attr-defined]
        self.assertIsInstance(service, MultiService)
        listeners = [s for s in service if isinstance(s, tap.ListenerService)]
        self.assertEqual(len(listeners), 1)
        self.assertFalse(service.running)
        # The signing key was created on the way.
        config = load_config(os.path.join(directory, "homeserver.yaml"))
        self.assertTrue(os.path.exists(config.signing_key_path))

    def test_config_error_exits_with_message(self) -> None:
        """A bad config stops twistd with 'ruma: file: field: problem', not a traceback."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = write_config(directory, listeners=[{"port": "eighty"}])
        with self.assertRaises(SystemExit) as cm:
            tap.makeService({"config": path})
        self.assertEqual(
            str(cm.exception.code),
            "ruma: homeserver.yaml: listeners[0].port: must be an integer 1-65535",
        )

    def test_no_config_generates_one(self) -> None:
        """Without -c and without ./homeserver.yaml, one is generated for localhost."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = tap.resolve_config_path({}, directory)
        self.assertEqual(path, os.path.join(directory, "homeserver.yaml"))
        config = load_config(path)
        self.assertEqual(config.server_name, "localhost")
        self.assertEqual(config.data_dir, os.path.join(directory, "ruma-data"))
        # A second call uses the existing file.
        with open(path) as f:
            before = f.read()
        tap.resolve_config_path({}, directory)
        with open(path) as f:
            self.assertEqual(f.read(), before)

    def test_refuses_newer_schema(self) -> None:
        """A database written by a newer Ruma stops startup with a clear message."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = load_config(write_config(directory))
        os.makedirs(config.data_dir)
        db = Database.inline(Engine.SQLITE, str(config.database.args["database"]))
        self.successResultOf(Deferred.fromCoroutine(db.prepare()))
        self.successResultOf(
            db.run(
                "bump", lambda t: t.execute("INSERT INTO schema_version (version) VALUES (9999)")
            )
        )
        db.close()

        from twisted.internet.testing import MemoryReactorClock

        fatal: list[str] = []
        service = tap.make_service_from_config(
            config,
            MemoryReactorClock(),
            fatal.append,
            database=Database.inline(Engine.SQLITE, str(config.database.args["database"])),
        )
        service.startService()
        self.failureResultOf(service.ready)
        self.assertEqual(len(fatal), 1)
        self.assertIn("refusing to start", fatal[0])
        self.assertIn("9999", fatal[0])
        self.flushLoggedErrors()
        self.successResultOf(service.stopService())


class RealReactorTests(TestCase):
    timeout = TIMEOUT

    async def test_serves_http(self) -> None:
        """Started on a real reactor, the service migrates the DB and answers on its port."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = load_config(write_config(directory))
        fatal: list[str] = []
        service = tap.make_service_from_config(config, reactor, fatal.append)
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        listener = next(s for s in service if isinstance(s, tap.ListenerService))
        port = listener.ports[0].getHost().port

        pool = HTTPConnectionPool(reactor, persistent=False)
        http = HTTPClient(Agent(reactor, pool=pool))
        base = f"http://127.0.0.1:{port}/_matrix/client"

        response = await http.get(base + "/versions")
        self.assertEqual(response.code, 200)
        self.assertIn("v1.1", json.loads(await response.content())["versions"])

        # A registration exercises the thread pool (bcrypt) and the real SQLite pool.
        body = {"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}}
        response = await http.post(base + "/v3/register", data=json.dumps(body).encode())
        result = json.loads(await response.content())
        self.assertEqual((response.code, result["user_id"]), (200, "@alice:tap.test"))
        response = await http.get(
            base + "/v3/account/whoami",
            headers={b"Authorization": [b"Bearer " + result["access_token"].encode()]},
        )
        self.assertEqual(json.loads(await response.content())["user_id"], "@alice:tap.test")
        self.assertEqual(fatal, [])
        await service.stopService()
        self.assertEqual(listener.ports, [])

    async def test_serves_https(self) -> None:
        """A tls: true listener serves HTTPS with the configured certificate (chain verified)."""
        from twisted.internet.ssl import Certificate
        from twisted.web.client import BrowserLikePolicyForHTTPS

        from tests.interop.processes import make_test_ca

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        leaf = make_test_ca(os.path.join(directory, "ca")).issue()
        path = write_config(
            directory,
            tls_certificate_path=str(leaf.cert_path),
            tls_private_key_path=str(leaf.key_path),
            listeners=[
                {
                    "port": 0,
                    "bind_addresses": ["127.0.0.1"],
                    "tls": True,
                    "resources": [{"names": ["client"]}],
                }
            ],
        )
        service = tap.make_service_from_config(load_config(path), reactor, lambda m: None)
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        listener = next(s for s in service if isinstance(s, tap.ListenerService))
        port = listener.ports[0].getHost().port
        with open(leaf.ca_cert_path, "rb") as f:
            trust = Certificate.loadPEM(f.read())
        agent = Agent(
            reactor,
            contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust),
            pool=HTTPConnectionPool(reactor, persistent=False),
        )
        response = await HTTPClient(agent).get(f"https://localhost:{port}/_matrix/client/versions")
        self.assertEqual(response.code, 200)
        self.assertIn("versions", json.loads(await response.content()))

    async def test_synapse_register_new_matrix_user(self) -> None:
        """Synapse's register_new_matrix_user (shared-secret admin API) works against Ruma,
        both with -k SECRET and reading our homeserver.yaml with -c."""
        import shutil
        import sys

        from twisted.internet.utils import getProcessOutputAndValue

        tool = os.path.join(os.path.dirname(sys.executable), "register_new_matrix_user")
        if not os.path.exists(tool):
            tool = shutil.which("register_new_matrix_user") or ""
        if not tool:
            raise SkipTest("register_new_matrix_user (matrix-synapse) is not installed")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = write_config(directory, registration_shared_secret="s3cret", enable_registration=False)
        service = tap.make_service_from_config(load_config(path), reactor, lambda m: None)
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        listener = next(s for s in service if isinstance(s, tap.ListenerService))
        port = listener.ports[0].getHost().port
        url = f"http://127.0.0.1:{port}"

        out, err, code = await getProcessOutputAndValue(
            tool, ["-k", "s3cret", "-u", "bob", "-p", "pw", "-a", url], env=dict(os.environ)
        )
        self.assertEqual(code, 0, (out, err))
        user = await service.hs.account_store.get_user("@bob:tap.test")
        self.assertIsNotNone(user)
        assert user is not None
        self.assertTrue(user.is_admin)

        out, err, code = await getProcessOutputAndValue(
            tool, ["-c", path, "-u", "carol", "-p", "pw", "--no-admin", url], env=dict(os.environ)
        )
        self.assertEqual(code, 0, (out, err))
        self.assertIsNotNone(await service.hs.account_store.get_user("@carol:tap.test"))

        out, err, code = await getProcessOutputAndValue(
            tool, ["-k", "wrong", "-u", "dave", "-p", "pw", "--no-admin", url], env=dict(os.environ)
        )
        self.assertNotEqual(code, 0)
        self.assertIsNone(await service.hs.account_store.get_user("@dave:tap.test"))


class RealReactorPostgresTests(PostgresEngine, TestCase):
    timeout = TIMEOUT

    async def test_serves_http_on_postgres(self) -> None:
        """With a psycopg2 database the server migrates PostgreSQL and serves registrations."""
        pg = self.db_args()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        args = {"user": pg["user"], "host": pg["host"], "database": pg["dbname"]}
        args["options"] = pg["options"]
        args.update({"port": pg["port"]} if "port" in pg else {})
        path = write_config(directory, database={"name": "psycopg2", "args": args})
        service = tap.make_service_from_config(load_config(path), reactor, lambda m: None)
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        listener = next(s for s in service if isinstance(s, tap.ListenerService))
        port = listener.ports[0].getHost().port
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        body = {"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}}
        response = await http.post(
            f"http://127.0.0.1:{port}/_matrix/client/v3/register", data=json.dumps(body).encode()
        )
        result = json.loads(await response.content())
        self.assertEqual((response.code, result["user_id"]), (200, "@alice:tap.test"))
        await service.stopService()

class SiteTests(SynchronousTestCase):
    def test_access_log_hides_tokens(self) -> None:
        """The access log line never contains an access token from the query string."""
        from twisted.web.server import Request
        from twisted.web.test.requesthelper import DummyChannel

        request = Request(DummyChannel())
        request.uri = b"/_matrix/client/v3/sync?access_token=SECRET&since=1"
        request.method = b"GET"
        request.clientproto = b"HTTP/1.1"
        line = tap._access_log("-", request)
        self.assertNotIn("SECRET", line)
        self.assertIn("access_token=<redacted>&since=1", line)

    def test_forwarded_request(self) -> None:
        """Behind a proxy (x_forwarded) the client is the first X-Forwarded-For hop."""
        from twisted.web.test.requesthelper import DummyChannel

        request = tap.ForwardedRequest(DummyChannel())
        request.requestHeaders.addRawHeader(b"X-Forwarded-For", b"203.0.113.9, 10.0.0.1")
        request.requestHeaders.addRawHeader(b"X-Forwarded-Proto", b"https")
        self.assertEqual(request.getClientAddress().host, "203.0.113.9")  # type: ignore[attr-defined]
        self.assertTrue(request.isSecure())
        plain = tap.ForwardedRequest(DummyChannel())
        self.assertNotEqual(plain.getClientAddress().host, "203.0.113.9")  # type: ignore[attr-defined]

    def test_listener_without_client_resource(self) -> None:
        """A listener that does not serve 'client' answers client paths with 404 JSON."""
        from treq.testing import StubTreq

        from tests.harness import make_homeserver

        hs = make_homeserver(self)
        treq = StubTreq(hs.hs.root_resource(("federation",)))
        d = treq.get("http://test/_matrix/client/versions")
        treq.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 404)
        body = json.loads(self.successResultOf(response.content()))
        self.assertEqual(body["errcode"], "M_UNRECOGNIZED")


class _PortsTakenReactor(MemoryReactorClock):
    """A memory reactor on which every port is already in use."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


class StartupFailureTests(SynchronousTestCase):
    def test_port_in_use_is_fatal(self) -> None:
        """A port that cannot be opened stops startup with a message naming it."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = load_config(write_config(directory))
        os.makedirs(config.data_dir)
        fatal: list[str] = []
        service = tap.make_service_from_config(
            config,
            _PortsTakenReactor(),
            fatal.append,
            database=Database.inline(Engine.SQLITE, str(config.database.args["database"])),
        )
        service.startService()
        self.failureResultOf(service.ready, tap.ListenError)
        self.assertEqual(len(fatal), 1)
        self.assertTrue(fatal[0].startswith("refusing to start: cannot listen on 127.0.0.1 port 0"))
        self.successResultOf(service.stopService())

    def test_no_ipv6_is_not_fatal(self) -> None:
        """Without IPv6, '::1' is skipped with a warning while 127.0.0.1 serves."""
        import errno as errno_

        class NoIPv6Reactor(MemoryReactorClock):
            def listenTCP(
                self, port: int, factory: Any, backlog: int = 50, interface: str = ""
            ) -> Any:
                if ":" in interface:
                    raise CannotListenError(interface, port, OSError(errno_.EADDRNOTAVAIL, "no"))
                return super().listenTCP(port, factory, backlog, interface)

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        listeners = [
            {"port": 8008, "bind_addresses": ["::1", "127.0.0.1"], "resources": [{"names": ["client"]}]}
        ]
        config = load_config(write_config(directory, listeners=listeners))
        os.makedirs(config.data_dir)
        fatal: list[str] = []
        service = tap.make_service_from_config(
            config,
            NoIPv6Reactor(),
            fatal.append,
            database=Database.inline(Engine.SQLITE, str(config.database.args["database"])),
        )
        service.startService()
        self.successResultOf(service.ready)
        self.assertEqual(fatal, [])
        listener = next(s for s in service if isinstance(s, tap.ListenerService))
        self.assertEqual(len(listener.ports), 1)
        self.successResultOf(service.stopService())


class FileProblemsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def exit_message(self, **extra: Any) -> str:
        with self.assertRaises(SystemExit) as cm:
            tap.makeService({"config": write_config(self.dir, **extra)})
        return str(cm.exception.code)

    def test_bad_signing_key(self) -> None:
        """A corrupt signing key file is reported with the config field, not a traceback."""
        key = os.path.join(self.dir, "bad.key")
        with open(key, "w") as f:
            f.write("ed25519 a_1 not-base64!!\n")
        message = self.exit_message(signing_key_path=key)
        self.assertTrue(
            message.startswith("ruma: homeserver.yaml: signing_key_path: "), message
        )

    def test_missing_tls_files(self) -> None:
        """Unreadable TLS files name the field."""
        message = self.exit_message(
            tls_certificate_path="nope.crt",
            tls_private_key_path="nope.key",
            listeners=[
                {"port": 8448, "tls": True, "resources": [{"names": ["federation"]}]}
            ],
        )
        self.assertTrue(
            message.startswith("ruma: homeserver.yaml: tls_certificate_path: cannot read"), message
        )

    def test_garbage_tls_files(self) -> None:
        """Files that are not PEM are refused at startup with the field named."""
        for name in ("c.pem", "k.pem"):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write("garbage\n")
        message = self.exit_message(
            tls_certificate_path="c.pem",
            tls_private_key_path="k.pem",
            listeners=[
                {"port": 8448, "tls": True, "resources": [{"names": ["federation"]}]}
            ],
        )
        self.assertTrue(
            message.startswith("ruma: homeserver.yaml: tls_certificate_path: "), message
        )
