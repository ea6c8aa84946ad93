"""Evaluating push rules against an event: pure functions, no I/O.

:func:`evaluate` walks a user's ruleset in priority order (override, content, room, sender,
underride) and returns the actions of the first enabled rule whose conditions all hold, as
the spec's "Push Rules" section says. Everything it needs about the room (member count, the
user's display name, the sender's power level, the notification levels) comes in a
:class:`PushContext`, so the caller fetches it once per event.

Conditions:

- ``event_match``: a glob (``*``, ``?``) against a string property, case-insensitively. The
  whole value must match, except for ``content.body``, where the pattern must match whole
  words (as Synapse and the spec's content rules do).
- ``event_property_is`` / ``event_property_contains``: exact, type-strict equality with a
  string, integer, boolean or null (``True`` is not ``1``).
- ``contains_display_name``, ``room_member_count`` (``==``, ``<``, ``>``, ``<=``, ``>=``),
  ``sender_notification_permission``.
- Anything else never matches (the spec: unknown conditions make the rule not match).

Keys are dot-separated paths in which ``\\.`` is a literal dot and ``\\\\`` a backslash.
Since v1.7, events carrying ``m.mentions`` skip the legacy mention rules
(``.m.rule.contains_display_name``, ``.m.rule.contains_user_name``, ``.m.rule.roomnotif``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

KINDS = ("override", "content", "room", "sender", "underride")

LEGACY_MENTION_RULES = frozenset(
    {".m.rule.contains_display_name", ".m.rule.contains_user_name", ".m.rule.roomnotif"}
)

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PushContext:
    """What the conditions need to know besides the event itself."""

    user_id: str
    display_name: str | None = None
    member_count: int = 0
    sender_power_level: float = 0
    notification_levels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The actions of the matching rule and what they amount to."""

    rule_id: str
    actions: tuple[Any, ...]

    @property
    def notify(self) -> bool:
        return "notify" in self.actions

    @property
    def highlight(self) -> bool:
        return bool(self.tweaks.get("highlight", False))

    @property
    def tweaks(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for action in self.actions:
            if isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
                # A highlight tweak without a value means true.
                default: Any = True if action["set_tweak"] == "highlight" else None
                value = action.get("value", default)
                if value is not None:
                    out[action["set_tweak"]] = value
        return out


def split_key(key: str) -> list[str]:
    """``content.m\\.relates_to.rel_type`` -> ``["content", "m.relates_to", "rel_type"]``."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            current.append(key[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return parts


# What :func:`lookup` returns for a missing key (unlike None, which may be a value).
ABSENT = object()


def lookup(event: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted ``key`` in the event, or a sentinel when absent."""
    value: Any = event
    for part in split_key(key):
        if not isinstance(value, Mapping) or part not in value:
            return ABSENT
        value = value[part]
    return value


@lru_cache(maxsize=2048)
def glob_regex(pattern: str, words: bool) -> re.Pattern[str]:
    out: list[str] = []
    for c in pattern:
        if c == "*":
            out.append(".*?")
        elif c == "?":
            out.append(".")
        else:
            out.append(re.escape(c))
    body = "".join(out)
    if words:
        return re.compile(r"(?:^|\W)" + body + r"(?:\W|$)", re.IGNORECASE | re.DOTALL)
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def glob_matches(pattern: str, value: str, *, words: bool = False) -> bool:
    regex = glob_regex(pattern, words)
    if words:
        return regex.search(value) is not None
    return regex.fullmatch(value) is not None


def strict_equal(a: Any, b: Any) -> bool:
    """Type-strict equality of JSON scalars (``True`` is not ``1``)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return False


_MEMBER_COUNT = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)$")


def member_count_matches(spec: Any, count: int) -> bool:
    if not isinstance(spec, str):
        return False
    m = _MEMBER_COUNT.match(spec)
    if m is None:
        return False
    op, n = m.group(1) or "==", int(m.group(2))
    if op == "==":
        return count == n
    if op == "<":
        return count < n
    if op == ">":
        return count > n
    if op == "<=":
        return count <= n
    return count >= n


def condition_matches(cond: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    kind = cond.get("kind")
    if kind == "event_match":
        key, pattern = cond.get("key"), cond.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        value = lookup(event, key)
        if not isinstance(value, str):
            return False
        return glob_matches(pattern, value, words=key == "content.body")
    if kind == "event_property_is":
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return False
        value = lookup(event, key)
        return value is not ABSENT and strict_equal(value, cond["value"])
    if kind == "event_property_contains":
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return False
        value = lookup(event, key)
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
            return False
        return any(strict_equal(v, cond["value"]) for v in value)
    if kind == "contains_display_name":
        name = ctx.display_name
        body = lookup(event, "content.body")
        if not name or not isinstance(body, str):
            return False
        return re.search(r"(?:^|\W)" + re.escape(name) + r"(?:\W|$)", body, re.IGNORECASE) is not None
    if kind == "room_member_count":
        return member_count_matches(cond.get("is"), ctx.member_count)
    if kind == "sender_notification_permission":
        key = cond.get("key")
        if not isinstance(key, str):
            return False
        needed = ctx.notification_levels.get(key, 50)
        level = ctx.sender_power_level
        return level == math.inf or level >= needed
    return False


def rule_conditions(kind: str, rule: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The conditions a rule of ``kind`` stands for (None when the rule is malformed)."""
    if kind in ("override", "underride"):
        conds = rule.get("conditions", [])
        if not isinstance(conds, list) or not all(isinstance(c, Mapping) for c in conds):
            return None
        return conds
    if kind == "content":
        pattern = rule.get("pattern")
        if not isinstance(pattern, str):
            return None
        return [{"kind": "event_match", "key": "content.body", "pattern": pattern}]
    if kind == "room":
        return [{"kind": "event_match", "key": "room_id", "pattern": rule.get("rule_id", "")}]
    if kind == "sender":
        return [{"kind": "event_property_is", "key": "sender", "value": rule.get("rule_id", "")}]
    return None


def evaluate(
    ruleset: Mapping[str, Sequence[Mapping[str, Any]]],
    event: Mapping[str, Any],
    ctx: PushContext,
) -> Outcome | None:
    """The outcome of the first enabled rule matching ``event``, or None if none matches."""
    content = event.get("content")
    has_mentions = isinstance(content, Mapping) and "m.mentions" in content
    for kind in KINDS:
        for rule in ruleset.get(kind, ()):
            if not rule.get("enabled", True):
                continue
            rule_id = str(rule.get("rule_id", ""))
            if has_mentions and rule_id in LEGACY_MENTION_RULES:
                continue
            conds = rule_conditions(kind, rule)
            if conds is None:
                continue
            if all(condition_matches(c, event, ctx) for c in conds):
                actions = rule.get("actions", [])
                return Outcome(rule_id, tuple(actions) if isinstance(actions, list) else ())
    return None


def thread_of(event: Mapping[str, Any]) -> str:
    """The thread an event belongs to: its root's event ID, or ``"main"``."""
    content = event.get("content")
    if isinstance(content, Mapping):
        rel = content.get("m.relates_to")
        if isinstance(rel, Mapping) and rel.get("rel_type") == "m.thread":
            root = rel.get("event_id")
            if isinstance(root, str) and root:
                return root
    return "main"
