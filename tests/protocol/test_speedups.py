"""The C walk (ruma/protocol/_speedups.c) answers exactly as the Python walk it speeds up.

``_freeze_plain`` decides, for every PDU that arrives, whether it is plain canonical JSON
and makes the frozen copy an Event keeps. The C version must accept and refuse the same
trees and give equal copies of the same types, else an event could be valid on one
machine and not on another.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol import _speedups
from ruma.protocol import json as rjson
from ruma.protocol.json import (
    CANONICALJSON_MAX_INT,
    CANONICALJSON_MIN_INT,
    FrozenDict,
    FrozenList,
    _freeze_plain_node,
    _NotPlain,
)
from ruma.protocol.redaction import (
    _CONTENT_KEYS,
    _SIGNABLE_ARGS,
    _redacted_view,
    _redacted_view_py,
)
from ruma.protocol.room_versions import KNOWN_ROOM_VERSIONS, RedactionRules
from tests.protocol.test_json_perf_equivalence import any_ints, floats, texts

STRICT = (CANONICALJSON_MIN_INT, CANONICALJSON_MAX_INT)
LENIENT = (-(2**63), 2**63 - 1)

leaves = st.none() | st.booleans() | any_ints | texts | floats
trees = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(texts, children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(texts, children, max_size=3).map(FrozenDict)
        | st.lists(children, max_size=3).map(FrozenList)
        | st.dictionaries(st.integers(), children, max_size=2)
    ),
    max_leaves=25,
)


def _c_walk() -> Any:
    walk = rjson._c_freeze_plain
    if walk is None:
        raise AssertionError(
            "ruma.protocol._speedups is not built: pip install -e . needs a C compiler "
            "and the Python headers"
        )
    return walk


def _outcome(walk: Any, value: object, lo: int, hi: int) -> tuple[str, object]:
    try:
        return ("frozen", walk(value, lo, hi))
    except _NotPlain:
        return ("not plain", None)


def _python(value: object, lo: int, hi: int) -> Any:
    return _freeze_plain_node(value, lo, hi, 0)


def _same_shape(a: object, b: object) -> bool:
    """Equal, and of the same exact types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(_same_shape(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(_same_shape(x, y) for x, y in zip(a, b, strict=True))
    return a == b


class CWalkMatchesPython(SynchronousTestCase):
    def setUp(self) -> None:
        self.walk = _c_walk()

    @settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(trees, st.sampled_from([STRICT, LENIENT]))
    def test_same_answer(self, value: object, bounds: tuple[int, int]) -> None:
        c = _outcome(self.walk, value, *bounds)
        py = _outcome(_python, value, *bounds)
        self.assertEqual(c[0], py[0])
        if c[0] == "frozen":
            self.assertTrue(_same_shape(c[1], py[1]), (c[1], py[1]))

    def test_copies_are_frozen_and_new(self) -> None:
        value = {"a": [1, {"b": "c"}], "d": FrozenDict({"e": FrozenList([None, True])})}
        out = self.walk(value, *STRICT)
        self.assertIs(type(out), FrozenDict)
        self.assertIs(type(out["a"]), FrozenList)
        self.assertIs(type(out["a"][1]), FrozenDict)
        self.assertIsNot(out["d"], value["d"])
        with self.assertRaises(TypeError):
            out["x"] = 1
        with self.assertRaises(TypeError):
            out["a"].append(2)
        self.assertEqual(out, value)

    def test_integer_bounds(self) -> None:
        for value, ok in [
            (CANONICALJSON_MAX_INT, True),
            (CANONICALJSON_MIN_INT, True),
            (CANONICALJSON_MAX_INT + 1, False),
            (CANONICALJSON_MIN_INT - 1, False),
            (2**64, False),
            (-(2**70), False),
        ]:
            self.assertEqual(_outcome(self.walk, [value], *STRICT)[0] == "frozen", ok, value)
        self.assertEqual(_outcome(self.walk, [2**63 - 1], *LENIENT)[0], "frozen")
        self.assertEqual(_outcome(self.walk, [2**63], *LENIENT)[0], "not plain")

    def test_refuses_what_is_not_plain(self) -> None:
        class Str(str):
            pass

        for value in [1.5, (1,), {1: "a"}, {"a": Str("b")}, {Str("a"): 1}, {"a": float("nan")}]:
            self.assertEqual(_outcome(self.walk, value, *LENIENT)[0], "not plain", value)

    def test_depth_limit(self) -> None:
        for depth in (255, 256, 257, 300):
            value: object = "leaf"
            for _ in range(depth):
                value = [value]
            self.assertEqual(
                _outcome(self.walk, value, *STRICT)[0],
                _outcome(_python, value, *STRICT)[0],
                depth,
            )

    def test_no_reference_leaks(self) -> None:
        import sys

        value = {"a": ["x" * 40, {"b": 7}], "c": None}
        leaf = value["a"][0]
        before = sys.getrefcount(leaf)
        for _ in range(1000):
            self.walk(value, *STRICT)
            try:
                self.walk({"bad": [leaf, 1.5]}, *STRICT)
            except _NotPlain:
                pass
        self.assertEqual(sys.getrefcount(leaf), before)


class CRedactedViewMatchesPython(SynchronousTestCase):
    """The C redacted view makes the same dicts as the Python one, for every rule set."""

    @settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(
        st.sampled_from(sorted(KNOWN_ROOM_VERSIONS)),
        st.sampled_from(
            ["m.room.member", "m.room.create", "m.room.join_rules", "m.room.power_levels",
             "m.room.history_visibility", "m.room.aliases", "m.room.redaction",
             "m.room.message", "x"]
        ),
        st.dictionaries(
            st.sampled_from(
                ["membership", "join_authorised_via_users_server", "creator", "join_rule",
                 "allow", "users", "ban", "invite", "history_visibility", "aliases",
                 "redacts", "body", "third_party_invite"]
            ) | texts,
            trees,
            max_size=6,
        ),
        st.dictionaries(
            st.sampled_from(
                ["event_id", "room_id", "sender", "state_key", "hashes", "signatures",
                 "depth", "prev_events", "auth_events", "origin", "origin_server_ts",
                 "membership", "prev_state", "unsigned", "age_ts", "redacts"]
            ) | texts,
            trees,
            max_size=8,
        ),
        st.booleans(),
    )  # fmt: skip
    def test_same_view(
        self,
        version: str,
        event_type: str,
        content: dict[str, Any],
        top: dict[str, Any],
        signable: bool,
    ) -> None:
        if rjson._c_redacted_view is None:
            self.fail("ruma.protocol._speedups is not built")
        rv = KNOWN_ROOM_VERSIONS[version]
        pdu = dict(top, type=event_type, content=content)
        fast = _redacted_view(pdu, rv, signable=signable)
        rules = rv.redaction_rules
        keep_top = _keep_top(rules, signable)
        keep_content = _CONTENT_KEYS[rules].get(event_type, ())
        slow = _redacted_view_py(pdu, rules, keep_top, keep_content)
        self.assertEqual(fast, slow)
        self.assertEqual(list(fast), list(slow))
        self.assertEqual(list(fast.get("content", {})), list(slow.get("content", {})))
        self.assertIs(type(fast.get("content", {})), dict)
        if signable:
            # The one-call form used for event IDs: the same view, or None where the
            # Python path must decide (v11 member events with a third-party invite).
            view = _speedups.signable_view(pdu, *_SIGNABLE_ARGS[rv.redaction_rules])
            if view is None:
                self.assertTrue(
                    rules is RedactionRules.V11
                    and event_type == "m.room.member"
                    and "third_party_invite" in content
                )
            else:
                self.assertEqual(view, slow)
                self.assertEqual(list(view), list(slow))
                self.assertEqual(list(view["content"]), list(slow["content"]))


def _keep_top(rules: RedactionRules, signable: bool) -> frozenset[str]:
    from ruma.protocol import redaction

    if signable:
        return redaction._SIGNABLE_V11 if rules is RedactionRules.V11 else redaction._SIGNABLE_V1
    return redaction._TOP_LEVEL_V11 if rules is RedactionRules.V11 else redaction._TOP_LEVEL_V1


class CWithoutMatchesPython(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(texts | st.sampled_from(["unsigned", "hashes", "signatures"]), trees))
    def test_same_dict(self, d: dict[str, Any]) -> None:
        drop = frozenset({"unsigned", "signatures", "hashes", "age_ts"})
        out = _speedups.without(d, drop)
        expected = {k: v for k, v in d.items() if k not in drop}
        self.assertEqual(list(out.items()), list(expected.items()))
        self.assertIs(type(out), dict)
