"""The ``ruma`` command: generate-config and register-user."""

from __future__ import annotations

import getpass
import io
import os
import sys

import yaml
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from ruma import cli
from ruma.accounts import PasswordHasher, run_inline
from ruma.config import load_config
from ruma.protocol.signing import read_signing_keys
from ruma.storage.accounts import AccountStore
from ruma.storage.database import Database, Engine
from tests.storage.engines import PostgresEngine


class CliTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.config_path = os.path.join(self.dir, "homeserver.yaml")
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def run_cli(self, *argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = cli.main(list(argv), stdout=out)
        return code, out.getvalue()

    def generate(self) -> None:
        code, out = self.run_cli(
            "generate-config",
            "--server-name",
            "example.org",
            "--data-dir",
            os.path.join(self.dir, "data"),
            "--output",
            self.config_path,
        )
        self.assertEqual(code, 0, self.stderr.getvalue())
        # Keep the tests fast: cheap bcrypt.
        with open(self.config_path) as f:
            text = f.read().replace("bcrypt_rounds: 12", "bcrypt_rounds: 4")
        with open(self.config_path, "w") as f:
            f.write(text)

    def user(self, user_id: str) -> object:
        config = load_config(self.config_path)
        db = Database.inline(Engine.SQLITE, str(config.database.args["database"]))
        self.addCleanup(db.close)
        return self.successResultOf(Deferred.fromCoroutine(AccountStore(db).get_user(user_id)))

    def test_no_arguments_prints_help(self) -> None:
        """Plain `ruma` prints usage listing the subcommands and succeeds."""
        code, out = self.run_cli()
        self.assertEqual(code, 0)
        self.assertIn("generate-config", out)
        self.assertIn("register-user", out)

    def test_generate_config(self) -> None:
        """generate-config writes a loadable config and a signing key it points at."""
        self.generate()
        config = load_config(self.config_path)
        self.assertEqual(config.server_name, "example.org")
        self.assertEqual(config.data_dir, os.path.join(self.dir, "data"))
        with open(config.signing_key_path) as f:
            keys = read_signing_keys(f.read())
        self.assertEqual(len(keys), 1)
        self.assertEqual(os.stat(config.signing_key_path).st_mode & 0o777, 0o600)

    def test_generate_refuses_to_overwrite(self) -> None:
        """An existing config is kept unless --force; the signing key is never replaced."""
        self.generate()
        with open(load_config(self.config_path).signing_key_path) as f:
            key_before = f.read()
        code, _ = self.run_cli(
            "generate-config", "--server-name", "example.org", "--output", self.config_path,
            "--data-dir", os.path.join(self.dir, "data"),
        )  # fmt: skip
        self.assertEqual(code, 1)
        self.assertIn("already exists", self.stderr.getvalue())
        code, out = self.run_cli(
            "generate-config", "--server-name", "example.org", "--output", self.config_path,
            "--data-dir", os.path.join(self.dir, "data"), "--force",
        )  # fmt: skip
        self.assertEqual(code, 0)
        self.assertIn("Kept the existing signing key", out)
        with open(load_config(self.config_path).signing_key_path) as f:
            self.assertEqual(f.read(), key_before)

    def test_generate_to_stdout(self) -> None:
        """--output - prints the YAML."""
        code, out = self.run_cli(
            "generate-config", "--server-name", "a.example", "--output", "-",
            "--data-dir", os.path.join(self.dir, "d"),
        )  # fmt: skip
        self.assertEqual(code, 0)
        self.assertIn('server_name: "a.example"', out)

    def test_generate_bad_server_name(self) -> None:
        """An invalid server name is an error, not a broken config."""
        code, _ = self.run_cli("generate-config", "--server-name", "bad name", "--output", "-")
        self.assertEqual(code, 1)
        self.assertIn("--server-name", self.stderr.getvalue())

    def test_register_user(self) -> None:
        """register-user creates the account with a working bcrypt password, optionally admin."""
        self.generate()
        code, out = self.run_cli(
            "register-user", "-c", self.config_path, "--user", "alice", "--password", "pw", "--admin"
        )
        self.assertEqual(code, 0, self.stderr.getvalue())
        self.assertIn("@alice:example.org", out)
        user = self.user("@alice:example.org")
        self.assertTrue(user.is_admin)  # type: ignore[attr-defined]
        hasher = PasswordHasher(4, run_inline)
        ok = self.successResultOf(
            Deferred.fromCoroutine(hasher.verify("pw", user.password_hash))  # type: ignore[attr-defined]
        )
        self.assertTrue(ok)

    def test_register_full_user_id_and_taken(self) -> None:
        """A full ID of this server works; registering it twice fails with a message."""
        self.generate()
        argv = ["register-user", "-c", self.config_path, "--user", "@bob:example.org", "-p", "x"]
        self.assertEqual(self.run_cli(*argv)[0], 0)
        self.assertFalse(self.user("@bob:example.org").is_admin)  # type: ignore[attr-defined]
        self.assertEqual(self.run_cli(*argv)[0], 1)
        self.assertIn("already taken", self.stderr.getvalue())

    def test_register_prompts_for_password(self) -> None:
        """Without --password the password is asked for twice and must match."""
        self.generate()
        answers = iter(["s3cret", "s3cret", "one", "two"])
        self.patch(getpass, "getpass", lambda prompt="": next(answers))
        self.assertEqual(self.run_cli("register-user", "-c", self.config_path, "--user", "carol")[0], 0)
        self.assertEqual(self.run_cli("register-user", "-c", self.config_path, "--user", "dave")[0], 1)
        self.assertIn("do not match", self.stderr.getvalue())

    def test_register_with_bad_config(self) -> None:
        """A missing config file is reported, not a traceback."""
        code, _ = self.run_cli("register-user", "-c", "/nonexistent.yaml", "--user", "a", "-p", "b")
        self.assertEqual(code, 1)
        self.assertIn("/nonexistent.yaml", self.stderr.getvalue())

    def test_register_invalid_name(self) -> None:
        """Invalid localparts are refused with the reason."""
        self.generate()
        code, _ = self.run_cli("register-user", "-c", self.config_path, "--user", "a b", "-p", "x")
        self.assertEqual(code, 1)
        self.assertIn("User ID can only contain", self.stderr.getvalue())

    def test_register_while_database_is_open(self) -> None:
        """With another connection mid-read (a running server), register-user still commits."""
        import sqlite3

        self.generate()
        # Let the server's schema exist first, as it would.
        self.assertEqual(
            self.run_cli("register-user", "-c", self.config_path, "--user", "a", "-p", "x")[0], 0
        )
        path = str(load_config(self.config_path).database.args["database"])
        server = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(server.close)
        server.execute("BEGIN")
        server.execute("SELECT COUNT(*) FROM users").fetchone()
        code, _ = self.run_cli("register-user", "-c", self.config_path, "--user", "b", "-p", "x")
        self.assertEqual(code, 0, self.stderr.getvalue())
        # The reader's snapshot is unchanged until it ends its transaction (WAL).
        self.assertEqual(server.execute("SELECT COUNT(*) FROM users").fetchone(), (1,))
        server.execute("COMMIT")
        self.assertEqual(server.execute("SELECT COUNT(*) FROM users").fetchone(), (2,))

    def test_check_config(self) -> None:
        """check-config summarises a valid config and creates nothing."""
        self.generate()
        config = load_config(self.config_path)
        os.unlink(config.signing_key_path)
        code, out = self.run_cli("check-config", "-c", self.config_path)
        self.assertEqual(code, 0, self.stderr.getvalue())
        self.assertIn("server name:  example.org", out)
        self.assertIn("will be created on first start", out)
        self.assertIn("http port 8008", out)
        self.assertFalse(os.path.exists(config.signing_key_path))
        self.assertFalse(os.path.exists(str(config.database.args["database"])))

    def test_check_config_reports_problems(self) -> None:
        """check-config fails with the file and field of the first problem, including
        sections other parts of Ruma parse (application service registrations)."""
        self.generate()
        with open(self.config_path, "a") as f:
            f.write("app_service_config_files: [missing.yaml]\n")
        code, _ = self.run_cli("check-config", "-c", self.config_path)
        self.assertEqual(code, 1)
        self.assertIn("missing.yaml", self.stderr.getvalue())
        with open(self.config_path, "a") as f:
            f.write("listeners: [{port: 0.5}]\n")
        code, _ = self.run_cli("check-config", "-c", self.config_path)
        self.assertEqual(code, 1)
        self.assertIn("homeserver.yaml: listeners[0].port: must be an integer 1-65535", self.stderr.getvalue())


class CliPostgresTests(PostgresEngine):
    def test_register_user_on_postgres(self) -> None:
        """register-user writes to a PostgreSQL database configured Synapse-style."""
        pg = self.db_args()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "homeserver.yaml")
        args = {
            "user": pg["user"],
            "host": pg["host"],
            "database": pg["dbname"],
            "options": pg["options"],
            **({"port": pg["port"]} if "port" in pg else {}),
        }
        with open(path, "w") as f:
            yaml.safe_dump(
                {
                    "server_name": "pg.test",
                    "bcrypt_rounds": 4,
                    "database": {"name": "psycopg2", "args": args},
                },
                f,
            )
        self.patch(sys, "stderr", io.StringIO())
        out = io.StringIO()
        code = cli.main(["register-user", "-c", path, "--user", "alice", "-p", "pw"], stdout=out)
        self.assertEqual(code, 0, sys.stderr.getvalue())
        user = self.successResultOf(
            Deferred.fromCoroutine(AccountStore(self.make_db()).get_user("@alice:pg.test"))
        )
        self.assertIsNotNone(user)
