"""GET /pushrules/ and /pushrules/global/: the spec's server-default ruleset."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.sync.helpers import make_sync_homeserver


class PushRulesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hs = make_sync_homeserver(self)
        self.alice, self.token = self.hs.register("alice")

    def test_all_and_global_agree(self) -> None:
        """/pushrules/ is {"global": ruleset} and /pushrules/global/ is the same ruleset."""
        status, all_rules = self.hs.request("GET", "/pushrules/", token=self.token)
        self.assertEqual(status, 200)
        self.assertEqual(set(all_rules), {"global"})
        status, glob = self.hs.request("GET", "/pushrules/global/", token=self.token)
        self.assertEqual((status, glob), (200, all_rules["global"]))
        self.assertEqual(set(glob), {"override", "content", "room", "sender", "underride"})

    def test_default_rule_order(self) -> None:
        """Rule IDs and order are the spec's, every rule is a default, master is off."""
        _, rules = self.hs.request("GET", "/pushrules/global/", token=self.token)
        self.assertEqual(
            [r["rule_id"] for r in rules["override"]],
            [
                ".m.rule.master",
                ".m.rule.suppress_notices",
                ".m.rule.invite_for_me",
                ".m.rule.member_event",
                ".m.rule.is_user_mention",
                ".m.rule.contains_display_name",
                ".m.rule.is_room_mention",
                ".m.rule.roomnotif",
                ".m.rule.tombstone",
                ".m.rule.reaction",
                ".m.rule.room.server_acl",
                ".m.rule.suppress_edits",
            ],
        )
        self.assertEqual(
            [r["rule_id"] for r in rules["underride"]],
            [
                ".m.rule.call",
                ".m.rule.encrypted_room_one_to_one",
                ".m.rule.room_one_to_one",
                ".m.rule.message",
                ".m.rule.encrypted",
            ],
        )
        self.assertEqual([r["rule_id"] for r in rules["content"]], [".m.rule.contains_user_name"])
        self.assertEqual(rules["content"][0]["pattern"], "alice")
        every = rules["override"] + rules["content"] + rules["underride"]
        self.assertTrue(all(r["default"] for r in every))
        self.assertEqual([r["rule_id"] for r in every if not r["enabled"]], [".m.rule.master"])

    def test_user_specific_rules(self) -> None:
        """invite_for_me and is_user_mention name the requesting user."""
        _, rules = self.hs.request("GET", "/pushrules/global/", token=self.token)
        by_id = {r["rule_id"]: r for r in rules["override"]}
        self.assertIn(
            {"kind": "event_match", "key": "state_key", "pattern": self.alice},
            by_id[".m.rule.invite_for_me"]["conditions"],
        )
        self.assertEqual(
            by_id[".m.rule.is_user_mention"]["conditions"],
            [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids",
              "value": self.alice}],
        )
        self.assertEqual(
            by_id[".m.rule.is_user_mention"]["actions"],
            ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}],
        )

    def test_needs_auth(self) -> None:
        """Without a token: 401."""
        status, body = self.hs.request("GET", "/pushrules/")
        self.assertEqual((status, body["errcode"]), (401, "M_MISSING_TOKEN"))
