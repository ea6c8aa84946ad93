"""``bridges: irc:`` parsing and plugin discovery (ruma.bridges.irc.config, base)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.bridges.base import discover_modules
from ruma.bridges.irc.config import parse_irc_config
from ruma.config import ConfigError, ConfigReader


def parse(section: dict[str, Any]) -> Any:
    r = ConfigReader("homeserver.yaml", "bridges.irc", section, "/tmp")
    return parse_irc_config(r, "example.org", "https://matrix.example.org/")


def net(**kw: Any) -> dict[str, Any]:
    return {"networks": {"libera": {"host": "irc.libera.chat", **kw}}}


class ConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """A host is enough: port 6667 (6697 with TLS, certificate checked), templates."""
        cfg = parse(net())
        n = cfg.networks["libera"]
        self.assertEqual((n.port, n.tls, n.tls_verify), (6667, False, True))
        self.assertEqual(n.user_id("bob"), "@irc_libera_bob:example.org")
        self.assertEqual(n.alias("#Ruma"), "#irc_libera_ruma:example.org")
        self.assertEqual(parse(net(tls=True)).networks["libera"].port, 6697)
        self.assertEqual(cfg.bot_user_id, "@ircbot:example.org")
        self.assertEqual(cfg.media_base_url, "https://matrix.example.org")
        m = n.alias_pattern().fullmatch("#irc_libera_python:example.org")
        assert m is not None
        self.assertEqual(m.group("channel"), "python")

    def test_full(self) -> None:
        """Every field is read."""
        cfg = parse({
            "netsplit_window": 30, "idle_timeout": 3600, "networks": {"oftc": {
                "host": "irc.oftc.net", "port": 6697, "tls": True,
                "sasl": {"username": "u", "password": "p"}, "password": "srv",
                "nick_template": "M-{displayname}", "channels": {"#a": "!room:example.org",
                                                                 "#b": {}},
                "allowed_users": ["@*:example.org"]}}})
        n = cfg.networks["oftc"]
        self.assertEqual((n.sasl_username, n.sasl_password, n.password), ("u", "p", "srv"))
        self.assertEqual(dict(n.channels), {"#a": "!room:example.org", "#b": None})
        self.assertTrue(n.allows("@x:example.org"))
        self.assertFalse(n.allows("@x:elsewhere.org"))
        self.assertEqual((cfg.netsplit_window, cfg.idle_timeout), (30.0, 3600.0))

    def test_errors_name_file_and_field(self) -> None:
        """Mistakes are ConfigErrors naming homeserver.yaml and the field."""
        cases = [
            ({}, "homeserver.yaml: bridges.irc.networks: needs at least one network"),
            (net(port=70000), "homeserver.yaml: bridges.irc.networks.libera.port: must be an "
                              "integer 1-65535"),
            ({"networks": {"libera": {}}}, "bridges.irc.networks.libera.host: is required"),
            (net(sasl={"username": "u"}), "bridges.irc.networks.libera.sasl: needs both"),
            (net(nick_template="x"), "networks.libera.nick_template: must contain"),
            (net(user_template="@other_{nick}:example.org"),
             "networks.libera.user_template: must give @irc_"),
            (net(alias_template="#irc_{chan}:{server}"), "alias_template: must contain"),
            (net(channels={"ruma": {}}), "networks.libera.channels.ruma: channel names"),
            ({"networks": {"Bad Name": {"host": "h"}}}, "networks.Bad Name: network names"),
            ({"netsplit_window": -1, **net()}, "bridges.irc.netsplit_window"),
        ]
        for section, message in cases:
            with self.assertRaises(ConfigError) as e:
                parse(section)
            self.assertIn(message, str(e.exception))

    def test_plugin_discovery(self) -> None:
        """The irc module is found as a Twisted plugin."""
        self.assertIn("irc", discover_modules())


class WiringTests(SynchronousTestCase):
    def test_unknown_bridge_module(self) -> None:
        """An unknown name under bridges: is a config error naming it."""
        from tests.harness import make_homeserver

        with self.assertRaises(ConfigError) as e:
            make_homeserver(self, config_overrides={"bridges": {"xmpp": {}}})
        self.assertIn("bridges.xmpp: unknown bridge module", str(e.exception))

    def test_disabled_and_absent(self) -> None:
        """No bridges: section, or enabled: false, builds no bridge."""
        from tests.harness import make_homeserver

        hs = make_homeserver(self)
        self.assertEqual(hs.hs.bridges, [])
        hs2 = make_homeserver(self, config_overrides={"bridges": {"irc": {"enabled": False}}})
        self.assertEqual(hs2.hs.bridges, [])
