"""The pure push rule evaluator: conditions, globs, keys, the default ruleset's outcomes."""

from __future__ import annotations

import math
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.push.defaults import default_ruleset
from ruma.push.evaluator import (
    PushContext,
    condition_matches,
    evaluate,
    glob_matches,
    lookup,
    member_count_matches,
    split_key,
    thread_of,
)

ALICE = "@alice:test"


def message(body: str, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": "@bob:test",
        "room_id": "!r:test",
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def ctx(**kw: Any) -> PushContext:
    base: dict[str, Any] = {"user_id": ALICE, "display_name": "Alice Liddell", "member_count": 3}
    base.update(kw)
    return PushContext(**base)


class KeyTests(SynchronousTestCase):
    def test_escaped_dots(self) -> None:
        """`\\.` is a literal dot in a key; `\\\\` a backslash."""
        self.assertEqual(split_key("content.m\\.relates_to.rel_type"), ["content", "m.relates_to", "rel_type"])
        self.assertEqual(split_key("a\\\\.b"), ["a\\", "b"])

    def test_lookup_absent(self) -> None:
        """A missing path is absent, not None (so event_property_is null does not match it)."""
        ev = {"content": {"a": None}}
        self.assertIsNone(lookup(ev, "content.a"))
        self.assertFalse(condition_matches({"kind": "event_property_is", "key": "content.b", "value": None}, ev, ctx()))
        self.assertTrue(condition_matches({"kind": "event_property_is", "key": "content.a", "value": None}, ev, ctx()))


class GlobTests(SynchronousTestCase):
    def test_whole_value_and_words(self) -> None:
        """Globs match a whole value case-insensitively, but words inside content.body."""
        self.assertTrue(glob_matches("m.room.*", "M.ROOM.message"))
        self.assertFalse(glob_matches("m.room", "m.room.message"))
        self.assertTrue(glob_matches("ca?e", "cake"))
        self.assertTrue(glob_matches("cake*lie", "the cake is a lie!", words=True))
        self.assertFalse(glob_matches("cake", "cakes", words=True))
        self.assertTrue(glob_matches("alice", "hi alice: ok", words=True))

    def test_event_match_needs_strings(self) -> None:
        """event_match never matches a non-string value."""
        ev = {"content": {"n": 5}}
        self.assertFalse(condition_matches({"kind": "event_match", "key": "content.n", "pattern": "5"}, ev, ctx()))


class ConditionTests(SynchronousTestCase):
    def test_property_is_type_strict(self) -> None:
        """event_property_is: True is not 1, "1" is not 1."""
        ev = {"content": {"b": True, "i": 1, "s": "1"}}

        def is_(key: str, value: Any) -> bool:
            return condition_matches({"kind": "event_property_is", "key": key, "value": value}, ev, ctx())

        self.assertTrue(is_("content.b", True))
        self.assertFalse(is_("content.b", 1))
        self.assertFalse(is_("content.i", True))
        self.assertTrue(is_("content.i", 1))
        self.assertFalse(is_("content.s", 1))

    def test_property_contains(self) -> None:
        """event_property_contains looks inside arrays only."""
        ev = {"content": {"l": ["a", 1], "s": "abc"}}
        c = {"kind": "event_property_contains", "key": "content.l", "value": "a"}
        self.assertTrue(condition_matches(c, ev, ctx()))
        self.assertFalse(condition_matches({**c, "value": "b"}, ev, ctx()))
        self.assertFalse(condition_matches({**c, "key": "content.s"}, ev, ctx()))

    def test_member_count(self) -> None:
        """room_member_count: ==, <, >, <=, >= and a bare number."""
        self.assertTrue(member_count_matches("2", 2))
        self.assertTrue(member_count_matches("==2", 2))
        self.assertTrue(member_count_matches("<3", 2))
        self.assertTrue(member_count_matches(">=2", 2))
        self.assertFalse(member_count_matches(">2", 2))
        self.assertFalse(member_count_matches("x2", 2))

    def test_display_name_and_permission(self) -> None:
        """contains_display_name matches whole words; sender_notification_permission uses levels."""
        dn = {"kind": "contains_display_name"}
        self.assertTrue(condition_matches(dn, message("hey alice liddell!"), ctx()))
        self.assertFalse(condition_matches(dn, message("hey alice"), ctx()))
        self.assertFalse(condition_matches(dn, message("hey"), ctx(display_name=None)))
        perm = {"kind": "sender_notification_permission", "key": "room"}
        self.assertTrue(condition_matches(perm, message("x"), ctx(sender_power_level=50)))
        self.assertFalse(condition_matches(perm, message("x"), ctx(sender_power_level=49)))
        self.assertFalse(
            condition_matches(perm, message("x"), ctx(sender_power_level=60, notification_levels={"room": 70}))
        )
        self.assertTrue(condition_matches(perm, message("x"), ctx(sender_power_level=math.inf)))

    def test_unknown_condition(self) -> None:
        """An unknown condition kind never matches."""
        self.assertFalse(condition_matches({"kind": "org.example.new"}, message("x"), ctx()))


class DefaultRulesetTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rules = default_ruleset(ALICE)

    def outcome(self, event: dict[str, Any], **kw: Any) -> tuple[str, bool, bool] | None:
        o = evaluate(self.rules, event, ctx(**kw))
        return None if o is None else (o.rule_id, o.notify, o.highlight)

    def test_messages(self) -> None:
        """Ordinary messages notify; in a two-person room with a sound; notices do not."""
        self.assertEqual(self.outcome(message("hello")), (".m.rule.message", True, False))
        self.assertEqual(self.outcome(message("hello"), member_count=2), (".m.rule.room_one_to_one", True, False))
        self.assertEqual(self.outcome(message("x", msgtype="m.notice")), (".m.rule.suppress_notices", False, False))

    def test_mentions(self) -> None:
        """m.mentions user_ids highlights; legacy name rules apply only without m.mentions."""
        self.assertEqual(
            self.outcome(message("hi", **{"m.mentions": {"user_ids": [ALICE]}})),
            (".m.rule.is_user_mention", True, True),
        )
        self.assertEqual(self.outcome(message("hi alice")), (".m.rule.contains_user_name", True, True))
        self.assertEqual(
            self.outcome(message("hi alice", **{"m.mentions": {}})), (".m.rule.message", True, False)
        )
        self.assertEqual(
            self.outcome(message("hey Alice Liddell")), (".m.rule.contains_display_name", True, True)
        )

    def test_room_mention(self) -> None:
        """@room highlights only when the sender may notify the room."""
        room = message("@room look", **{"m.mentions": {"room": True}})
        self.assertEqual(self.outcome(room, sender_power_level=50), (".m.rule.is_room_mention", True, True))
        self.assertEqual(self.outcome(room, sender_power_level=0), (".m.rule.message", True, False))
        self.assertEqual(self.outcome(message("@room look"), sender_power_level=100), (".m.rule.roomnotif", True, True))

    def test_invites_members_edits_reactions(self) -> None:
        """An invite for me notifies; other member events, edits and reactions do not."""
        invite = {"type": "m.room.member", "state_key": ALICE, "sender": "@bob:test", "content": {"membership": "invite"}}
        self.assertEqual(self.outcome(invite), (".m.rule.invite_for_me", True, False))
        join = {**invite, "state_key": "@carol:test", "content": {"membership": "join"}}
        self.assertEqual(self.outcome(join), (".m.rule.member_event", False, False))
        edit = message("fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
        self.assertEqual(self.outcome(edit), (".m.rule.suppress_edits", False, False))
        reaction = {"type": "m.reaction", "sender": "@bob:test", "content": {}}
        self.assertEqual(self.outcome(reaction), (".m.rule.reaction", False, False))

    def test_encrypted_and_calls(self) -> None:
        """Encrypted events and call invites notify."""
        enc = {"type": "m.room.encrypted", "sender": "@bob:test", "content": {"ciphertext": "x"}}
        self.assertEqual(self.outcome(enc), (".m.rule.encrypted", True, False))
        self.assertEqual(self.outcome(enc, member_count=2), (".m.rule.encrypted_room_one_to_one", True, False))
        call = {"type": "m.call.invite", "sender": "@bob:test", "content": {}}
        self.assertEqual(self.outcome(call), (".m.rule.call", True, False))

    def test_master_rule(self) -> None:
        """Enabling .m.rule.master silences everything."""
        self.rules["override"][0]["enabled"] = True
        self.assertEqual(self.outcome(message("hi alice")), (".m.rule.master", False, False))

    def test_thread_of(self) -> None:
        """Thread replies belong to their root; everything else to 'main'."""
        self.assertEqual(thread_of(message("x", **{"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}})), "$root")
        self.assertEqual(thread_of(message("x")), "main")
