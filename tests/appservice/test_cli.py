"""``ruma appservice validate|list``."""

from __future__ import annotations

import io
import os

import yaml
from twisted.trial.unittest import SynchronousTestCase

from ruma.cli import main
from ruma.config import generate_config
from tests.appservice.support import registration, write_registration


class AppserviceCliTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def run_cli(self, *argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = main(list(argv), stdout=out)
        return code, out.getvalue()

    def test_validate_ok_and_bad(self) -> None:
        """validate prints OK per file, or each problem as file: field: message (exit 1)."""
        good = write_registration(self.dir, registration())
        code, text = self.run_cli("appservice", "validate", good, "--server-name", "example.org")
        self.assertEqual(code, 0, text)
        self.assertIn("irc.yaml: OK", text)
        self.assertIn("@irc_bot:example.org", text)
        bad_data = registration("bad", prefix="b_", as_token="x", hs_token="y")
        bad_data["namespaces"]["users"][0]["regex"] = "(["
        bad = write_registration(self.dir, bad_data)
        code, text = self.run_cli("appservice", "validate", good, bad)
        self.assertEqual(code, 1)
        self.assertIn("bad.yaml: namespaces.users[0].regex: not a valid regular expression", text)
        clash = write_registration(self.dir, registration("dup", prefix="irc_", as_token="p",
                                                          hs_token="q"), "dup.yaml")
        code, text = self.run_cli("appservice", "validate", good, clash)
        self.assertEqual(code, 1)
        self.assertIn("dup.yaml: sender_localpart: already used by irc.yaml", text)

    def test_list(self) -> None:
        """list shows each appservice's namespaces and delivery state from the database."""
        reg = write_registration(self.dir, registration(protocols=["irc"]))
        config = yaml.safe_load(generate_config("example.org", os.path.join(self.dir, "data")))
        config["app_service_config_files"] = [reg]
        path = os.path.join(self.dir, "homeserver.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        code, text = self.run_cli("appservice", "list", "-c", path)
        self.assertEqual(code, 0, text)
        self.assertIn("irc  (irc.yaml)", text)
        self.assertIn("@irc_.*:test (exclusive)", text)
        self.assertIn("protocols: irc", text)
        self.assertIn("delivery: not started yet", text)
