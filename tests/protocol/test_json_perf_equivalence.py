"""The fast JSON paths give exactly what the general paths give.

:mod:`ruma.protocol.json` has fast paths (an exact-type check that hands the original
object to the encoder, and orjson when it is installed) next to the general, checking
paths that were there first. Hashes and signatures depend on every byte, so these tests
compare the two on arbitrary JSON, on hostile values and on every test vector we have.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol import json as rjson
from ruma.protocol.json import (
    CANONICALJSON_MAX_INT,
    CANONICALJSON_MIN_INT,
    FrozenDict,
    FrozenList,
    encode_canonical_json,
    freeze,
    thaw,
)
from tests.protocol import VECTORS_DIR, load_vectors

# Text of every kind UTF-8 can carry: controls, DEL, U+2028/2029, astral characters.
any_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
tricky_text = st.text(
    st.sampled_from(
        ["\x00", "\x01", "\x1f", "\x7f", '"', "\\", "/", "\n", "\t", "\b", "\f", "\r",
         "\u2028", "\u2029", "\ufeff", "\uffff", "é", "\U0001f600", "\U0010ffff", "a"]
    ),
    max_size=8,
)  # fmt: skip
texts = any_text | tricky_text
canonical_ints = st.integers(min_value=CANONICALJSON_MIN_INT, max_value=CANONICALJSON_MAX_INT)
edge_ints = st.sampled_from(
    [0, -1, 1, CANONICALJSON_MAX_INT, CANONICALJSON_MIN_INT, 2**53, -(2**53),
     2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -(10**30)]
)  # fmt: skip
any_ints = canonical_ints | edge_ints | st.integers()
floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1.0, 1e16, 1e-7, 2.5, 1e300, 5e-324]
)


def json_values(leaves: st.SearchStrategy[Any], frozen: bool = False) -> st.SearchStrategy[Any]:
    def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        lists = st.lists(children, max_size=5)
        dicts = st.dictionaries(texts, children, max_size=5)
        if frozen:
            lists = lists | lists.map(FrozenList)
            dicts = dicts | dicts.map(FrozenDict)
        return lists | dicts

    return st.recursive(leaves, containers, max_leaves=30)


plain_leaves = st.none() | st.booleans() | canonical_ints | texts
lenient_leaves = st.none() | st.booleans() | any_ints | texts | floats
canonical_values = json_values(plain_leaves, frozen=True)
lenient_values = json_values(lenient_leaves, frozen=True)


def outcome(f: Any, *args: Any, **kwargs: Any) -> Any:
    """The result of ``f``, or the type of the exception it raised."""
    try:
        return f(*args, **kwargs)
    except Exception as e:
        return type(e)


def stdlib_canonical(obj: Any, strict: bool) -> Any:
    """The reference: the original checking copy, then the stdlib encoder."""
    return outcome(rjson._encode_checked, obj, strict)


def all_vector_values() -> list[Any]:
    """Every JSON value in tests/vectors: spec vectors and the captured Synapse rooms."""
    values: list[Any] = [load_vectors()]
    for path in sorted((VECTORS_DIR / "synapse").glob("*.json")):
        values.append(json.loads(path.read_text(encoding="utf-8")))
    return values


def walk(value: Any) -> list[Any]:
    """Every sub-value of ``value``, containers and leaves."""
    out = [value]
    if isinstance(value, dict):
        for v in value.values():
            out.extend(walk(v))
    elif isinstance(value, list):
        for v in value:
            out.extend(walk(v))
    return out


class CanonicalEncodingEquivalenceTests(SynchronousTestCase):
    @given(canonical_values)
    @settings(max_examples=500, deadline=None)
    def test_strict_fast_path_is_byte_identical(self, obj: Any) -> None:
        """For canonical data (plain and frozen containers alike) the fast encoder's bytes
        equal the checking path's and json.dumps' canonical settings."""
        fast = encode_canonical_json(obj)
        self.assertEqual(fast, stdlib_canonical(obj, True))
        expected = json.dumps(thaw(obj), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False, allow_nan=False).encode("utf-8")  # fmt: skip
        self.assertEqual(fast, expected)

    @given(lenient_values, st.booleans())
    @settings(max_examples=500, deadline=None)
    def test_any_value_same_outcome(self, obj: Any, strict: bool) -> None:
        """With floats and integers of any size, strict or lenient, the public encoder
        gives the same bytes or the same error as the checking path."""
        got = outcome(encode_canonical_json, obj, strict=strict)
        self.assertEqual(got, stdlib_canonical(obj, strict))

    def test_hostile_values_same_outcome(self) -> None:
        """Surrogates, NaN, non-string keys, tuples, sets, subclasses and deep nesting
        behave exactly as on the checking path."""

        class Str(str):
            pass

        class Int(int):
            pass

        def nest(n: int, leaf: Any = 0) -> Any:
            v = leaf
            for _ in range(n):
                v = [v]
            return v

        cases: list[Any] = [
            "\ud800", {"a": "x\udfff"}, {"\ud83d": 1}, float("nan"), [float("inf")],
            {1: 2}, {True: 1}, {None: 1}, (1, 2), {"t": (1, [2])}, {1, 2}, b"x",
            {Str("k"): Int(3)}, Str("s"), Int(7), {"a": Int(2**60)}, object(),
            nest(253), nest(254), nest(255), nest(256), nest(257), nest(256, "x"),
            nest(255, {}), nest(256, []), nest(3000), FrozenDict({"a": FrozenList([1.5])}),
            2**53, -(2**53), 2**63, 2**64, -(2**63) - 1, 10**5000,
        ]  # fmt: skip
        for i, case in enumerate(cases):
            for strict in (True, False):
                got = outcome(encode_canonical_json, case, strict=strict)
                self.assertEqual(got, stdlib_canonical(case, strict), (i, strict))

    def test_every_vector_value(self) -> None:
        """Every value inside the spec vectors and the captured Synapse rooms, and each
        of them frozen, encodes identically on both paths."""
        for top in all_vector_values():
            for value in walk(top):
                for v in (value, freeze(value)):
                    for strict in (True, False):
                        self.assertEqual(
                            outcome(encode_canonical_json, v, strict=strict),
                            stdlib_canonical(v, strict),
                        )


class FreezeThawEquivalenceTests(SynchronousTestCase):
    @given(json_values(lenient_leaves | st.tuples(plain_leaves, plain_leaves), frozen=True))
    @settings(max_examples=300, deadline=None)
    def test_freeze_thaw_shapes(self, obj: Any) -> None:
        """freeze gives frozen containers all the way down and thaw plain ones, each equal
        to the input (tuples become lists), whatever mix of containers went in."""

        def frozen_all_the_way(v: Any) -> bool:
            if isinstance(v, dict):
                return type(v) is FrozenDict and all(map(frozen_all_the_way, v.values()))
            if isinstance(v, list):
                return type(v) is FrozenList and all(map(frozen_all_the_way, v))
            return not isinstance(v, tuple)

        def plain_all_the_way(v: Any) -> bool:
            if isinstance(v, dict):
                return type(v) is dict and all(map(plain_all_the_way, v.values()))
            if isinstance(v, list):
                return type(v) is list and all(map(plain_all_the_way, v))
            return not isinstance(v, tuple)

        def untuple(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: untuple(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [untuple(x) for x in v]
            return v

        thawed = thaw(obj)
        self.assertTrue(plain_all_the_way(thawed))
        self.assertEqual(thawed, untuple(obj))
        frozen = freeze(thawed)
        self.assertTrue(frozen_all_the_way(frozen))
        self.assertEqual(frozen, thawed)
        self.assertEqual(thaw(frozen), thawed)

    def test_frozen_input_kept(self) -> None:
        """freeze hands back an already frozen value as it is, at the top and nested."""
        inner = FrozenDict({"x": 1})
        self.assertIs(freeze(inner), inner)
        self.assertIs(freeze({"a": inner})["a"], inner)
        self.assertIs(freeze([inner])[0], inner)

    def test_other_mappings_and_subclasses(self) -> None:
        """Mappings that are not dicts, dict/list subclasses and tuples are converted by
        the general rules, in both directions."""
        from types import MappingProxyType

        class D(dict[str, Any]):
            pass

        class L(list[Any]):
            pass

        src = {"m": MappingProxyType({"a": [1]}), "d": D(b=L([2, (3,)])), "t": (4, {"c": 5})}
        frozen = freeze(src)
        self.assertIs(type(frozen["m"]), FrozenDict)
        self.assertIs(type(frozen["d"]), FrozenDict)
        self.assertIs(type(frozen["d"]["b"]), FrozenList)
        self.assertIs(type(frozen["d"]["b"][1]), FrozenList)
        self.assertIs(type(frozen["t"]), FrozenList)
        expected = {"m": {"a": [1]}, "d": {"b": [2, [3]]}, "t": [4, {"c": 5}]}
        self.assertEqual(thaw(src), expected)
        self.assertIs(type(thaw(src)["d"]), dict)
        self.assertIs(type(thaw(src)["d"]["b"]), list)
        self.assertEqual(thaw(frozen), expected)
