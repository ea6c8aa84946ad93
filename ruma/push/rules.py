"""A user's push ruleset: the server defaults merged with their own rules and settings.

Order (which is the evaluation order): ``.m.rule.master`` first, then the user's override
rules, then the other default override rules; for every other kind the user's rules come
before the defaults of that kind. User rules within a kind are ordered by ``priority``
(highest first), which :class:`~ruma.storage.push.PushStore` keeps consistent with the
``before``/``after`` parameters of ``PUT /pushrules``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ruma.errors import Codes, MatrixError, invalid_param
from ruma.push.defaults import default_ruleset
from ruma.push.evaluator import KINDS

JsonDict = dict[str, Any]

_ACTION_STRINGS = frozenset({"notify", "dont_notify", "coalesce"})


@dataclass(frozen=True, slots=True)
class UserRule:
    """A rule a user created (``PUT /pushrules/global/{kind}/{ruleId}``)."""

    kind: str
    rule_id: str
    priority: int
    actions: list[Any]
    conditions: list[Any] | None = None
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class RuleSetting:
    """A user's change to a rule: ``enabled`` and, for default rules, ``actions``."""

    kind: str
    rule_id: str
    enabled: bool | None = None
    actions: list[Any] | None = None


def render_user_rule(rule: UserRule, enabled: bool = True) -> JsonDict:
    out: JsonDict = {
        "rule_id": rule.rule_id,
        "default": False,
        "enabled": enabled,
        "actions": copy.deepcopy(rule.actions),
    }
    if rule.kind in ("override", "underride"):
        out["conditions"] = copy.deepcopy(rule.conditions or [])
    elif rule.kind == "content":
        out["pattern"] = rule.pattern or ""
    return out


def build_ruleset(
    user_id: str, rules: Iterable[UserRule], settings: Iterable[RuleSetting]
) -> JsonDict:
    """The ``global`` ruleset a user sees and is evaluated against."""
    defaults = default_ruleset(user_id)
    by_key = {(s.kind, s.rule_id): s for s in settings}
    own: dict[str, list[UserRule]] = {k: [] for k in KINDS}
    for r in rules:
        if r.kind in own:
            own[r.kind].append(r)
    out: JsonDict = {}
    for kind in KINDS:
        mine = sorted(own[kind], key=lambda r: (-r.priority, r.rule_id))
        rendered = []
        for r in mine:
            s = by_key.get((kind, r.rule_id))
            rendered.append(
                render_user_rule(r, True if s is None or s.enabled is None else s.enabled)
            )
        base = []
        for d in defaults[kind]:
            s = by_key.get((kind, d["rule_id"]))
            if s is not None:
                d = dict(d)
                if s.enabled is not None:
                    d["enabled"] = s.enabled
                if s.actions is not None:
                    d["actions"] = copy.deepcopy(s.actions)
            base.append(d)
        if kind == "override" and base and base[0]["rule_id"] == ".m.rule.master":
            out[kind] = [base[0], *rendered, *base[1:]]
        else:
            out[kind] = [*rendered, *base]
    return out


def find_rule(ruleset: Mapping[str, Any], kind: str, rule_id: str) -> JsonDict | None:
    for rule in ruleset.get(kind, ()):
        if rule.get("rule_id") == rule_id:
            return dict(rule)
    return None


# -- validation of what clients send -----------------------------------------------------


def check_scope_and_kind(scope: str, kind: str) -> None:
    if scope != "global":
        raise invalid_param(f"Unknown push rule scope {scope!r} (only 'global')")
    if kind not in KINDS:
        raise invalid_param(f"Unknown push rule kind {kind!r}")


def check_new_rule_id(kind: str, rule_id: str) -> None:
    if not rule_id:
        raise invalid_param("The rule ID must not be empty")
    if rule_id.startswith("."):
        raise invalid_param("Rule IDs starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise invalid_param("Rule IDs may not contain '/' or '\\'")
    if kind == "room" and not rule_id.startswith("!"):
        raise invalid_param("A room rule's ID must be a room ID")
    if kind == "sender" and not rule_id.startswith("@"):
        raise invalid_param("A sender rule's ID must be a user ID")


def check_actions(actions: Any) -> list[Any]:
    """The ``actions`` array, checked (400 M_BAD_JSON if it is not one we understand)."""
    if not isinstance(actions, list):
        raise MatrixError(400, Codes.BAD_JSON, "'actions' must be an array")
    for a in actions:
        if isinstance(a, str):
            if a not in _ACTION_STRINGS:
                raise MatrixError(400, Codes.BAD_JSON, f"Unknown action {a!r}")
        elif isinstance(a, Mapping):
            if not isinstance(a.get("set_tweak"), str):
                raise MatrixError(400, Codes.BAD_JSON, "A tweak action needs 'set_tweak'")
        else:
            raise MatrixError(400, Codes.BAD_JSON, "Actions are strings or objects")
    return actions


def check_conditions(conditions: Any) -> list[Any]:
    if not isinstance(conditions, list):
        raise MatrixError(400, Codes.BAD_JSON, "'conditions' must be an array")
    for c in conditions:
        if not isinstance(c, Mapping) or not isinstance(c.get("kind"), str):
            raise MatrixError(400, Codes.BAD_JSON, "Each condition needs a 'kind'")
        kind = c["kind"]
        if kind in ("event_match",):
            if not isinstance(c.get("key"), str) or not isinstance(c.get("pattern"), str):
                raise MatrixError(400, Codes.BAD_JSON, "event_match needs 'key' and 'pattern'")
        elif kind in ("event_property_is", "event_property_contains"):
            if not isinstance(c.get("key"), str) or "value" not in c:
                raise MatrixError(400, Codes.BAD_JSON, f"{kind} needs 'key' and 'value'")
            if isinstance(c["value"], list | dict | float):
                raise MatrixError(
                    400, Codes.BAD_JSON, f"{kind} 'value' must be a string, integer, boolean or null"
                )
        elif kind == "room_member_count":
            if not isinstance(c.get("is"), str):
                raise MatrixError(400, Codes.BAD_JSON, "room_member_count needs 'is'")
        elif kind == "sender_notification_permission":
            if not isinstance(c.get("key"), str):
                raise MatrixError(400, Codes.BAD_JSON, "sender_notification_permission needs 'key'")
        # Unknown kinds are accepted and never match, as the spec says.
    return conditions


__all__ = [
    "RuleSetting",
    "UserRule",
    "build_ruleset",
    "check_actions",
    "check_conditions",
    "check_new_rule_id",
    "check_scope_and_kind",
    "find_rule",
    "render_user_rule",
]
