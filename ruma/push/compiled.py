"""Push rulesets compiled once and evaluated for many users of a room at a time.

:func:`ruma.push.evaluator.evaluate` walks one user's ruleset as JSON. Here a ruleset is
compiled once (keys split, globs turned into regexes, malformed and disabled rules dropped,
actions encoded) into a :class:`CompiledRuleset` that holds no user ID: the few places
where the server-default rules name their owner (``.m.rule.invite_for_me``'s state key,
``.m.rule.is_user_mention``'s user ID, ``.m.rule.contains_user_name``'s localpart) and
``contains_display_name`` become *per-user* conditions. Every user with only the default
rules (and the same changes to them) then shares one compiled ruleset, and
:func:`evaluate_users` walks it once per event for all of them: conditions that do not
depend on the user are decided once, the per-user ones only for users still undecided.

The outcome is the same as :func:`~ruma.push.evaluator.evaluate`'s for each user
(``tests/push/test_compiled.py`` checks them side by side).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ruma.protocol.ids import UserID
from ruma.push.defaults import default_ruleset
from ruma.push.evaluator import (
    ABSENT,
    KINDS,
    LEGACY_MENTION_RULES,
    Outcome,
    glob_regex,
    member_count_matches,
    rule_conditions,
    split_key,
    strict_equal,
)
from ruma.push.rules import RuleSetting, UserRule, build_ruleset

__all__ = [
    "CompiledRuleset",
    "RulesetCache",
    "EventFacts",
    "Match",
    "Recipient",
    "RoomFacts",
    "compile_ruleset",
    "evaluate_users",
]

_GLOB_CHARS = frozenset("*?")


@dataclass(frozen=True, slots=True)
class Recipient:
    """A user who may be notified, with what their per-user conditions need."""

    user_id: str
    display_name: str | None
    localpart: str
    # Lower-cased, for the cheap substring tests that rule most bodies out.
    name_lower: str
    localpart_lower: str
    localpart_is_glob: bool

    @classmethod
    def of(cls, user_id: str, display_name: str | None = None) -> Recipient:
        localpart = UserID.parse(user_id, strict=False).localpart
        return cls(
            user_id,
            display_name,
            localpart,
            (display_name or "").lower(),
            localpart.lower(),
            bool(_GLOB_CHARS & set(localpart)),
        )


@dataclass(frozen=True, slots=True)
class RoomFacts:
    """What the user-independent conditions need to know about the room."""

    member_count: int
    sender_power_level: float
    notification_levels: Mapping[str, int]


class EventFacts:
    """One event as the conditions see it, with lookups and condition results remembered."""

    __slots__ = ("event", "room", "has_mentions", "body", "body_lower", "_values", "decided")

    def __init__(self, event: Mapping[str, Any], room: RoomFacts) -> None:
        self.event = event
        self.room = room
        content = event.get("content")
        self.has_mentions = isinstance(content, Mapping) and "m.mentions" in content
        body = content.get("body") if isinstance(content, Mapping) else None
        self.body: str | None = body if isinstance(body, str) else None
        self.body_lower = self.body.lower() if self.body is not None else ""
        self._values: dict[tuple[str, ...], Any] = {}
        # Shared condition -> its result for this event.
        self.decided: dict[_Shared, bool] = {}

    def value(self, path: tuple[str, ...]) -> Any:
        try:
            return self._values[path]
        except KeyError:
            pass
        value: Any = self.event
        for part in path:
            if not isinstance(value, Mapping) or part not in value:
                value = ABSENT
                break
            value = value[part]
        self._values[path] = value
        return value


# A user-independent condition: decided once per event.
class _Shared:
    __slots__ = ("test",)

    def __init__(self, test: Callable[[EventFacts], bool]) -> None:
        self.test = test

    def holds(self, facts: EventFacts) -> bool:
        try:
            return facts.decided[self]
        except KeyError:
            result = facts.decided[self] = self.test(facts)
            return result


# A per-user condition: (event, recipient) -> bool.
_PerUser = Callable[[EventFacts, Recipient], bool]


@dataclass(frozen=True, slots=True)
class _Rule:
    rule_id: str
    shared: tuple[_Shared, ...]
    per_user: tuple[_PerUser, ...]
    legacy_mention: bool
    match: Match


@dataclass(frozen=True, slots=True)
class Match:
    """A matching rule's outcome, ready to store."""

    rule_id: str
    actions: tuple[Any, ...]
    notify: bool
    highlight: bool
    actions_json: str


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRuleset:
    """Compared (and hashed) by identity: users share one when they share its object."""

    rules: tuple[_Rule, ...]


def _never(_: EventFacts) -> bool:
    return False


_NEVER = _Shared(_never)


def _event_match(path: tuple[str, ...], pattern: str, words: bool) -> Callable[[EventFacts], bool]:
    regex = glob_regex(pattern, words)
    find = regex.search if words else regex.fullmatch

    def test(facts: EventFacts) -> bool:
        value = facts.value(path)
        return isinstance(value, str) and find(value) is not None

    return test


def _compile_condition(
    cond: Mapping[str, Any], owner: str | None, owner_localpart: str | None
) -> _Shared | _PerUser:
    """``owner``: the user a server-default rule was rendered for (their ID in it is a
    placeholder for any user's); None for the user's own rules (taken literally)."""
    kind = cond.get("kind")
    if kind == "event_match":
        key, pattern = cond.get("key"), cond.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return _NEVER
        path = tuple(split_key(key))
        words = key == "content.body"
        if owner is not None and pattern == owner:
            return _per_user_glob(path, words)
        if owner_localpart is not None and words and pattern == owner_localpart:
            return _body_has_localpart
        return _Shared(_event_match(path, pattern, words))
    if kind == "event_property_is":
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return _NEVER
        path, wanted = tuple(split_key(key)), cond["value"]

        def prop_is(facts: EventFacts) -> bool:
            value = facts.value(path)
            return value is not ABSENT and strict_equal(value, wanted)

        return _Shared(prop_is)
    if kind == "event_property_contains":
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return _NEVER
        path, wanted = tuple(split_key(key)), cond["value"]
        if owner is not None and wanted == owner:
            return _per_user_contains(path)

        def prop_contains(facts: EventFacts) -> bool:
            value = _list_at(facts, path)
            return value is not None and any(strict_equal(v, wanted) for v in value)

        return _Shared(prop_contains)
    if kind == "contains_display_name":
        return _contains_display_name
    if kind == "room_member_count":
        spec = cond.get("is")
        return _Shared(lambda facts: member_count_matches(spec, facts.room.member_count))
    if kind == "sender_notification_permission":
        key = cond.get("key")
        if not isinstance(key, str):
            return _NEVER

        def permitted(facts: EventFacts) -> bool:
            needed = facts.room.notification_levels.get(key, 50)
            level = facts.room.sender_power_level
            return level == math.inf or level >= needed

        return _Shared(permitted)
    return _NEVER  # unknown conditions never match


def _list_at(facts: EventFacts, path: tuple[str, ...]) -> Sequence[Any] | None:
    value = facts.value(path)
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        return None
    return value


def _per_user_glob(path: tuple[str, ...], words: bool) -> _PerUser:
    """``event_match`` against the user's own ID (whole value)."""

    def test(facts: EventFacts, r: Recipient) -> bool:
        value = facts.value(path)
        if not isinstance(value, str):
            return False
        regex = glob_regex(r.user_id, words)
        return (regex.search(value) if words else regex.fullmatch(value)) is not None

    return test


def _body_has_localpart(facts: EventFacts, r: Recipient) -> bool:
    """``content.body`` names the user's localpart as a word (``contains_user_name``)."""
    if facts.body is None:
        return False
    # Most bodies do not name the user: a substring test rules them out cheaply.
    if not r.localpart_is_glob and r.localpart_lower not in facts.body_lower:
        return False
    return glob_regex(r.localpart, True).search(facts.body) is not None


def _per_user_contains(path: tuple[str, ...]) -> _PerUser:
    def test(facts: EventFacts, r: Recipient) -> bool:
        value = _list_at(facts, path)
        return value is not None and any(strict_equal(v, r.user_id) for v in value)

    return test


def _contains_display_name(facts: EventFacts, r: Recipient) -> bool:
    name = r.display_name
    if not name or facts.body is None or r.name_lower not in facts.body_lower:
        return False
    return (
        re.search(r"(?:^|\W)" + re.escape(name) + r"(?:\W|$)", facts.body, re.IGNORECASE)
        is not None
    )


def _match(rule_id: str, actions: Any) -> Match:
    acts = tuple(actions) if isinstance(actions, list) else ()
    outcome = Outcome(rule_id, acts)
    return Match(rule_id, acts, outcome.notify, outcome.highlight, json.dumps(list(acts)))


def compile_ruleset(
    ruleset: Mapping[str, Sequence[Mapping[str, Any]]], owner: str
) -> CompiledRuleset:
    """Compile ``owner``'s ruleset (as :func:`~ruma.push.rules.build_ruleset` renders it).

    In server-default rules, ``owner``'s ID and localpart stand for whichever user the
    ruleset is evaluated for, so the result may serve any user with the same own rules
    and settings (see :class:`RulesetCache`).
    """
    localpart = UserID.parse(owner, strict=False).localpart
    rules: list[_Rule] = []
    for kind in KINDS:
        for rule in ruleset.get(kind, ()):
            if not rule.get("enabled", True):
                continue
            rule_id = str(rule.get("rule_id", ""))
            conds = rule_conditions(kind, rule)
            if conds is None:
                continue
            default = bool(rule.get("default", False))
            shared: list[_Shared] = []
            per_user: list[_PerUser] = []
            for cond in conds:
                c = _compile_condition(
                    cond, owner if default else None, localpart if default else None
                )
                if isinstance(c, _Shared):
                    shared.append(c)
                else:
                    per_user.append(c)
            if _NEVER in shared:
                continue
            rules.append(
                _Rule(
                    rule_id,
                    tuple(shared),
                    tuple(per_user),
                    rule_id in LEGACY_MENTION_RULES,
                    _match(rule_id, rule.get("actions", [])),
                )
            )
    return CompiledRuleset(tuple(rules))


def evaluate_users(
    ruleset: CompiledRuleset, facts: EventFacts, users: Iterable[Recipient]
) -> dict[str, Match]:
    """The matching rule of each of ``users`` (users no rule matches are left out)."""
    remaining = list(users)
    out: dict[str, Match] = {}
    for rule in ruleset.rules:
        if not remaining:
            break
        if rule.legacy_mention and facts.has_mentions:
            continue
        if not all(c.holds(facts) for c in rule.shared):
            continue
        if not rule.per_user:
            for r in remaining:
                out[r.user_id] = rule.match
            return out
        undecided: list[Recipient] = []
        for r in remaining:
            if all(c(facts, r) for c in rule.per_user):
                out[r.user_id] = rule.match
            else:
                undecided.append(r)
        remaining = undecided
    return out


RuleData = tuple[tuple[UserRule, ...], tuple[RuleSetting, ...]]


class RulesetCache:
    """Compiled rulesets, shared by every user whose own rules allow it.

    Users without rules of their own share the ruleset compiled for their settings (the
    same settings, the same object); a user with rules of their own gets one of their own.
    Keyed on the rule data objects :class:`~ruma.storage.push.PushStore` caches, which stay
    the same until the user's rules change.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._by_user: dict[str, tuple[RuleData, CompiledRuleset]] = {}
        self._by_settings: dict[str, CompiledRuleset] = {}

    def get(self, user_id: str, data: RuleData) -> CompiledRuleset:
        cached = self._by_user.get(user_id)
        if cached is not None and cached[0] is data:
            return cached[1]
        rules, settings = data
        if not rules:
            key = json.dumps(
                sorted([s.kind, s.rule_id, s.enabled, s.actions] for s in settings),
                sort_keys=True,
            )
            compiled = self._by_settings.get(key)
            if compiled is None:
                compiled = compile_ruleset(build_ruleset(user_id, (), settings), user_id)
                if len(self._by_settings) >= self._size:
                    self._by_settings.clear()
                self._by_settings[key] = compiled
        else:
            compiled = compile_ruleset(build_ruleset(user_id, rules, settings), user_id)
        if len(self._by_user) >= self._size:
            self._by_user.clear()
        self._by_user[user_id] = (data, compiled)
        return compiled


def default_compiled(user_id: str) -> CompiledRuleset:
    """The server-default ruleset compiled (mainly for tests)."""
    return compile_ruleset(default_ruleset(user_id), user_id)
