"""Config loading: generated configs round-trip and every error names the file and field."""

from __future__ import annotations

import os
from typing import Any

import yaml
from twisted.trial.unittest import SynchronousTestCase

from ruma.config import (
    ConfigError,
    ConfigReader,
    RateLimit,
    generate_config,
    load_config,
)


class ConfigTests(SynchronousTestCase):
    def write(self, data: Any, name: str = "homeserver.yaml") -> str:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(data if isinstance(data, str) else yaml.safe_dump(data))
        return path

    def assertConfigError(self, data: Any, message: str) -> None:
        with self.assertRaises(ConfigError) as cm:
            load_config(self.write(data))
        self.assertEqual(str(cm.exception), message)

    def test_generated_config_round_trips(self) -> None:
        """generate_config's YAML loads into the documented defaults."""
        path = self.write(generate_config("example.org", "/srv/ruma"))
        config = load_config(path)
        self.assertEqual(config.server_name, "example.org")
        self.assertEqual(config.data_dir, "/srv/ruma")
        self.assertEqual(config.signing_key_path, "/srv/ruma/example.org.signing.key")
        self.assertEqual(config.database.name, "sqlite3")
        self.assertEqual(config.database.args["database"], "/srv/ruma/homeserver.db")
        self.assertEqual(len(config.listeners), 1)
        listener = config.listeners[0]
        self.assertEqual(listener.port, 8008)
        self.assertEqual(listener.resources, ("client", "federation", "keys"))
        self.assertFalse(config.enable_registration)
        self.assertEqual(config.default_room_version, "12")
        self.assertEqual(config.rc_message, RateLimit(0.2, 10))
        self.assertEqual(config.max_upload_size, 50 * 1024 * 1024)
        self.assertTrue(config.registration_shared_secret)
        self.assertEqual(config.config_path, path)

    def test_generated_secrets_differ(self) -> None:
        """Each generated config gets its own shared secret."""
        a = yaml.safe_load(generate_config("a.org", "/d"))["registration_shared_secret"]
        b = yaml.safe_load(generate_config("a.org", "/d"))["registration_shared_secret"]
        self.assertNotEqual(a, b)

    def test_minimal_config_defaults(self) -> None:
        """Only server_name is required; paths default to the config file's directory."""
        path = self.write({"server_name": "hs.example"})
        config = load_config(path)
        base = os.path.dirname(path)
        self.assertEqual(config.data_dir, base)
        self.assertEqual(config.database.args["database"], os.path.join(base, "homeserver.db"))
        self.assertEqual(config.listeners, ())
        self.assertIsNone(config.public_baseurl)

    def test_relative_paths(self) -> None:
        """Relative paths are taken relative to the config file, not the working directory."""
        path = self.write(
            {
                "server_name": "hs",
                "data_dir": "data",
                "signing_key_path": "keys/k.key",
                "app_service_config_files": ["bridges/irc.yaml"],
            }
        )
        base = os.path.dirname(path)
        config = load_config(path)
        self.assertEqual(config.data_dir, os.path.join(base, "data"))
        self.assertEqual(config.signing_key_path, os.path.join(base, "keys/k.key"))
        self.assertEqual(config.app_service_config_files, (os.path.join(base, "bridges/irc.yaml"),))

    def test_full_listener_and_postgres(self) -> None:
        """Synapse-style listeners and a PostgreSQL database parse."""
        path = self.write(
            {
                "server_name": "hs:8448",
                "public_baseurl": "https://hs.example",
                "tls_certificate_path": "c.pem",
                "tls_private_key_path": "k.pem",
                "listeners": [
                    {
                        "port": 8448,
                        "tls": True,
                        "type": "http",
                        "bind_addresses": ["0.0.0.0"],
                        "x_forwarded": True,
                        "resources": [{"names": ["federation"]}, {"names": ["keys", "client"]}],
                    }
                ],
                "database": {
                    "name": "psycopg2",
                    "args": {"user": "ruma", "database": "ruma", "host": "db", "cp_max": 10},
                },
                "max_upload_size": "10M",
                "rc_login": {"failed_attempts": {"per_second": 1, "burst_count": 2}},
                "presence": {"enabled": False},
                "federation": {"anything": "kept for later"},
            }
        )
        config = load_config(path)
        listener = config.listeners[0]
        self.assertEqual(
            (listener.port, listener.tls, listener.x_forwarded, listener.bind_addresses),
            (8448, True, True, ("0.0.0.0",)),
        )
        self.assertEqual(listener.resources, ("federation", "keys", "client"))
        self.assertEqual(config.public_baseurl, "https://hs.example/")
        self.assertEqual(config.database.name, "psycopg2")
        self.assertEqual(config.database.args["cp_max"], 10)
        self.assertEqual(config.max_upload_size, 10 * 1024 * 1024)
        self.assertEqual(config.rc_login.failed_attempts, RateLimit(1, 2))
        self.assertEqual(config.rc_login.address, RateLimit(0.003, 5))
        self.assertFalse(config.presence_enabled)
        self.assertEqual(config.raw["federation"], {"anything": "kept for later"})

    def test_section_reader_for_later_parts(self) -> None:
        """ConfigReader.for_section validates another part's section with the same messages."""
        config = load_config(self.write({"server_name": "hs", "federation": {"timeout": "x"}}))
        reader = ConfigReader.for_section(config, "federation")
        with self.assertRaises(ConfigError) as cm:
            reader.get_int("timeout", 5)
        self.assertEqual(str(cm.exception), "homeserver.yaml: federation.timeout: must be an integer")
        self.assertEqual(ConfigReader.for_section(config, "bridges").get_int("x", 3), 3)

    def test_errors_name_file_and_field(self) -> None:
        """Each invalid setting is reported as 'file: field: problem'."""
        base = {"server_name": "hs"}
        cases: list[tuple[dict[str, Any], str]] = [
            ({}, "homeserver.yaml: server_name: is required"),
            ({"server_name": 5}, "homeserver.yaml: server_name: must be a string"),
            ({"listeners": [{"port": "x"}]}, "homeserver.yaml: listeners[0].port: must be an integer 1-65535"),
            ({"listeners": [{"port": 70000}]}, "homeserver.yaml: listeners[0].port: must be an integer 1-65535"),
            ({"listeners": [{}]}, "homeserver.yaml: listeners[0].port: is required"),
            ({"listeners": "x"}, "homeserver.yaml: listeners: must be a list"),
            ({"listeners": [3]}, "homeserver.yaml: listeners[0]: must be a mapping"),
            (
                {"listeners": [{"port": 1, "resources": [{"names": ["client"]}], "type": "manhole"}]},
                "homeserver.yaml: listeners[0].type: unsupported listener type 'manhole' (only 'http')",
            ),
            (
                {"listeners": [{"port": 1, "resources": [{"names": ["nope"]}]}]},
                "homeserver.yaml: listeners[0].resources[0].names: unknown resource 'nope' "
                "(known: client, federation, keys, media, metrics)",
            ),
            (
                {"listeners": [{"port": 1}]},
                "homeserver.yaml: listeners[0].resources: must name at least one resource, e.g. [{names: [client]}]",
            ),
            (
                {"listeners": [{"port": 1, "tls": True, "resources": [{"names": ["client"]}]}]},
                "homeserver.yaml: listeners[0].tls: needs tls_certificate_path and tls_private_key_path at the top level",
            ),
            ({"enable_registration": "yes"}, "homeserver.yaml: enable_registration: must be true or false"),
            ({"database": {"name": "mysql"}}, "homeserver.yaml: database.name: must be one of sqlite3, psycopg2, psycopg"),
            ({"database": {"name": "psycopg2", "args": {"port": "x"}}}, "homeserver.yaml: database.args.port: must be an integer 1-65535"),
            ({"rc_message": {"per_second": -1}}, "homeserver.yaml: rc_message.per_second: must be greater than 0"),
            ({"rc_login": {"account": {"burst_count": "x"}}}, "homeserver.yaml: rc_login.account.burst_count: must be a number"),
            ({"max_upload_size": "lots"}, 'homeserver.yaml: max_upload_size: must be a size in bytes, like 52428800 or "50M"'),
            ({"public_baseurl": "matrix.example"}, "homeserver.yaml: public_baseurl: must be an http:// or https:// URL"),
            ({"bcrypt_rounds": 2}, "homeserver.yaml: bcrypt_rounds: must be an integer 4-31"),
            ({"app_service_config_files": [1]}, "homeserver.yaml: app_service_config_files[0]: must be a string"),
            ({"registration_tokens": [{"uses_allowed": 1}]}, "homeserver.yaml: registration_tokens[0].token: is required"),
            ({"registration_tokens": [{"token": "a b"}]}, "homeserver.yaml: registration_tokens[0].token: must be 1-64 characters of A-Z a-z 0-9 . _ ~ -"),
            ({"registration_requires_token": True}, "homeserver.yaml: registration_tokens: registration_requires_token needs at least one token"),
            ({"tls_certificate_path": "c.pem"}, "homeserver.yaml: tls_private_key_path: tls_certificate_path and tls_private_key_path must be set together"),
            ({"presence": []}, "homeserver.yaml: presence: must be a mapping"),
        ]
        for extra, message in cases:
            self.assertConfigError({**base, **extra} if extra else extra, message)

    def test_bad_server_name(self) -> None:
        """The server name must be a valid server name."""
        with self.assertRaises(ConfigError) as cm:
            load_config(self.write({"server_name": "bad name!"}))
        self.assertTrue(str(cm.exception).startswith("homeserver.yaml: server_name: not a valid"))

    def test_unknown_room_version(self) -> None:
        """default_room_version must be a room version we implement."""
        with self.assertRaises(ConfigError) as cm:
            load_config(self.write({"server_name": "hs", "default_room_version": "99"}))
        self.assertTrue(
            str(cm.exception).startswith(
                "homeserver.yaml: default_room_version: unknown room version '99'"
            )
        )

    def test_open_registration_needs_explicit_consent(self) -> None:
        """enable_registration alone is refused; a token requirement or the explicit flag is needed."""
        with self.assertRaises(ConfigError) as cm:
            load_config(self.write({"server_name": "hs", "enable_registration": True}))
        self.assertIn("homeserver.yaml: enable_registration: ", str(cm.exception))
        load_config(
            self.write(
                {
                    "server_name": "hs",
                    "enable_registration": True,
                    "registration_requires_token": True,
                    "registration_tokens": ["abc"],
                }
            )
        )

    def test_file_problems(self) -> None:
        """Unreadable files, YAML syntax errors and non-mappings are reported with the file."""
        with self.assertRaises(ConfigError) as cm:
            load_config("/nonexistent/ruma.yaml")
        self.assertTrue(str(cm.exception).startswith("/nonexistent/ruma.yaml: cannot read"))
        with self.assertRaises(ConfigError) as cm:
            load_config(self.write("server_name: [unclosed", name="bad.yaml"))
        self.assertTrue(str(cm.exception).startswith("bad.yaml: not valid YAML"))
        with self.assertRaises(ConfigError) as cm:
            load_config(self.write("- a list\n", name="list.yaml"))
        self.assertEqual(
            str(cm.exception), "list.yaml: the file must contain a YAML mapping of settings"
        )

    def test_generate_rejects_bad_server_name(self) -> None:
        """generate_config refuses a server name that could never work."""
        self.assertRaises(ConfigError, generate_config, "not a name", "/d")
