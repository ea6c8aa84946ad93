"""Compiled rulesets (ruma.push.compiled) decide exactly what the plain evaluator decides,
for many users at once, and users without rules of their own share one ruleset."""

from __future__ import annotations

import itertools
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ruma.push.compiled import EventFacts, Recipient, RoomFacts, RulesetCache, evaluate_users
from ruma.push.evaluator import PushContext, evaluate
from ruma.push.rules import RuleSetting, UserRule, build_ruleset

USERS = [
    ("@alice:test", "Alice Liddell"),
    ("@bob:test", None),
    ("@carol:test", "carol"),
    ("@dan:test", "D*n?"),
]


def ev(etype: str = "m.room.message", sender: str = "@eve:test", **content: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": etype,
        "sender": sender,
        "room_id": "!r:test",
        "content": content,
    }
    return out


EVENTS: list[dict[str, Any]] = [
    ev(msgtype="m.text", body="hello"),
    ev(msgtype="m.text", body="hi alice, bob"),
    ev(msgtype="m.text", body="Alice Liddell said"),
    ev(msgtype="m.text", body="thanks carol!"),
    ev(msgtype="m.text", body="D*n? here"),
    ev(msgtype="m.notice", body="alice"),
    ev(msgtype="m.text", body="@room look"),
    ev(msgtype="m.text", body="alice", **{"m.mentions": {}}),
    ev(msgtype="m.text", body="x", **{"m.mentions": {"user_ids": ["@bob:test", "@dan:test"]}}),
    ev(msgtype="m.text", body="x", **{"m.mentions": {"room": True}}),
    ev(
        msgtype="m.text",
        body="edit",
        **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}},
    ),
    ev(msgtype="m.text", body="cake is a lie"),
    ev("m.room.encrypted", algorithm="m.megolm.v1.aes-sha2"),
    ev("m.call.invite", call_id="c"),
    ev("m.reaction"),
    {**ev("m.room.member", membership="invite"), "state_key": "@carol:test"},
    {**ev("m.room.member", membership="join"), "state_key": "@eve:test"},
    {**ev("m.room.tombstone", body="moved"), "state_key": ""},
]

CUSTOM: dict[str, tuple[list[UserRule], list[RuleSetting]]] = {
    "@alice:test": (
        [
            UserRule(
                "content", "cake", 1, ["notify", {"set_tweak": "highlight"}], pattern="cake*lie"
            ),
            UserRule("sender", "@eve:test", 1, []),
        ],
        [],
    ),
    "@bob:test": ([], [RuleSetting("underride", ".m.rule.message", actions=["dont_notify"])]),
    "@carol:test": ([], [RuleSetting("override", ".m.rule.master", enabled=True)]),
    "@dan:test": (
        [
            UserRule(
                "override",
                "odd",
                1,
                ["notify"],
                conditions=[
                    {"kind": "event_property_is", "key": "content.msgtype", "value": "m.notice"},
                    {"kind": "room_member_count", "is": ">2"},
                ],
            ),
            UserRule("room", "!r:test", 1, ["notify", {"set_tweak": "sound", "value": "x"}]),
            UserRule("override", "bad", 2, ["notify"], conditions=[{"kind": "nonsense"}]),
        ],
        [RuleSetting("content", ".m.rule.contains_user_name", enabled=False)],
    ),
}


class CompiledMatchesPlainTests(SynchronousTestCase):
    def check(
        self, data: dict[str, tuple[list[UserRule], list[RuleSetting]]], room: RoomFacts
    ) -> int:
        cache = RulesetCache()
        compared = 0
        for event in EVENTS:
            facts = EventFacts(event, room)
            got: dict[str, Any] = {}
            for user_id, name in USERS:
                rules, settings = data.get(user_id, ([], []))
                compiled = cache.get(user_id, (tuple(rules), tuple(settings)))
                got.update(evaluate_users(compiled, facts, [Recipient.of(user_id, name)]))
            for user_id, name in USERS:
                rules, settings = data.get(user_id, ([], []))
                ctx = PushContext(
                    user_id,
                    name,
                    room.member_count,
                    room.sender_power_level,
                    room.notification_levels,
                )
                want = evaluate(build_ruleset(user_id, rules, settings), event, ctx)
                match = got.get(user_id)
                self.assertEqual(
                    None
                    if want is None
                    else (want.rule_id, want.actions, want.notify, want.highlight),
                    None
                    if match is None
                    else (match.rule_id, match.actions, match.notify, match.highlight),
                    f"{user_id} on {event}",
                )
                compared += 1
        return compared

    def test_defaults_and_custom_rules(self) -> None:
        """Every event x user x room shape gives the plain evaluator's outcome, with the
        default rules only and with each user's own rules and settings."""
        n = 0
        for count, level in itertools.product((2, 3, 10), (0, 50, 100)):
            room = RoomFacts(count, level, {"room": 50})
            n += self.check({}, room)
            n += self.check(CUSTOM, room)
        self.assertEqual(n, 2 * 9 * len(EVENTS) * len(USERS))

    def test_group_evaluation(self) -> None:
        """Evaluated together, users sharing a ruleset get their own per-user outcomes."""
        cache = RulesetCache()
        users = [Recipient.of(u, n) for u, n in USERS]
        shared = {cache.get(r.user_id, ((), ())) for r in users}  # by identity
        self.assertEqual(len(shared), 1)
        (ruleset,) = shared
        facts = EventFacts(EVENTS[8], RoomFacts(5, 0, {"room": 50}))
        out = evaluate_users(ruleset, facts, users)
        self.assertEqual(
            {u: m.rule_id for u, m in out.items()},
            {
                "@alice:test": ".m.rule.message",
                "@bob:test": ".m.rule.is_user_mention",
                "@carol:test": ".m.rule.message",
                "@dan:test": ".m.rule.is_user_mention",
            },
        )
        self.assertTrue(out["@bob:test"].highlight)

    def test_sharing(self) -> None:
        """Users with the same settings and no rules share a compiled ruleset; own rules get
        their own; a changed rules object is recompiled."""
        cache = RulesetCache()
        off = (RuleSetting("override", ".m.rule.master", enabled=True),)
        a = cache.get("@a:test", ((), off))
        self.assertIs(
            cache.get("@b:test", ((), (RuleSetting("override", ".m.rule.master", enabled=True),))),
            a,
        )
        self.assertIsNot(cache.get("@c:test", ((), ())), a)
        own = ((UserRule("room", "!r:test", 1, []),), ())
        mine = cache.get("@a:test", own)
        self.assertIsNot(mine, a)
        self.assertIs(cache.get("@a:test", own), mine)
