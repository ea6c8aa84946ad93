"""Canonical JSON encoding, JSON decoding and frozen JSON values."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.errors import CanonicalJSONError
from ruma.protocol.json import (
    CANONICALJSON_MAX_INT,
    CANONICALJSON_MIN_INT,
    FrozenDict,
    FrozenList,
    decode_json,
    encode_canonical_json,
    encode_json,
    freeze,
    thaw,
)
from tests.protocol import load_vectors

canonical_ints = st.integers(min_value=CANONICALJSON_MIN_INT, max_value=CANONICALJSON_MAX_INT)
# Any text that UTF-8 can encode (no lone surrogates).
json_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | canonical_ints | json_text,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(json_text, children, max_size=5),
    max_leaves=25,
)
json_objects = st.dictionaries(json_text, json_values, max_size=8)


class CanonicalJSONVectorTests(SynchronousTestCase):
    def test_spec_vectors(self) -> None:
        """Every canonical JSON example in the spec parses and re-encodes byte for byte."""
        vectors = load_vectors()["canonical_json"]["vectors"]
        self.assertEqual(len(vectors), 10)
        for v in vectors:
            got = encode_canonical_json(decode_json(v["input_text"]))
            self.assertEqual(got, v["expected_output"].encode("utf-8"), v["input_text"])

    def test_whole_number_floats_read_as_integers(self) -> None:
        """Strict decoding reads 1e10, -0 and 2.0 as integers, as the spec's example needs."""
        self.assertEqual(decode_json('{"a":-0,"b":1e10,"c":2.0}'), {"a": 0, "b": 10**10, "c": 2})
        self.assertIsInstance(decode_json("1e10"), int)


class CanonicalJSONTests(SynchronousTestCase):
    def test_no_whitespace_sorted_utf8(self) -> None:
        """Output has sorted keys at every level, no whitespace and raw UTF-8."""
        self.assertEqual(
            encode_canonical_json({"b": [1, {"y": 1, "x": "é"}], "a": None}),
            '{"a":null,"b":[1,{"x":"é","y":1}]}'.encode(),
        )

    def test_sorts_by_code_point(self) -> None:
        """Keys are ordered by Unicode code point, not by UTF-16 units or locale."""
        keys = ["\U0001f600", "\uffff", "a", "B", "é"]
        out = encode_canonical_json(dict.fromkeys(keys, 1)).decode()
        self.assertEqual(list(json.loads(out)), sorted(keys))
        self.assertTrue(out.startswith('{"B":1,"a":1,"é":1'))

    def test_control_characters(self) -> None:
        """Control characters use short escapes where they exist, else lowercase \\u00xx;
        DEL and non-ASCII are left raw."""
        out = encode_canonical_json({"a": "\x00\x1f\n\t\b\f\r\"\\\x7f\u2028"})
        self.assertEqual(out, b'{"a":"\\u0000\\u001f\\n\\t\\b\\f\\r\\"\\\\\x7f\xe2\x80\xa8"}')

    def test_rejects_floats(self) -> None:
        """Floats, even whole ones, are not canonical JSON."""
        for bad in (1.5, 1.0, [0.1], {"a": {"b": 2.0}}):
            self.assertRaises(CanonicalJSONError, encode_canonical_json, bad)

    def test_lenient_allows_floats_and_big_ints(self) -> None:
        """strict=False encodes the floats and big ints old rooms contain, but never NaN."""
        self.assertEqual(encode_canonical_json({"a": 1.5, "b": 2**60}, strict=False),
                         b'{"a":1.5,"b":1152921504606846976}')
        self.assertRaises(CanonicalJSONError, encode_canonical_json, float("nan"), strict=False)
        self.assertRaises(CanonicalJSONError, encode_canonical_json, float("inf"), strict=False)

    def test_integer_bounds(self) -> None:
        """+/-(2**53-1) are accepted and one beyond is rejected."""
        encode_canonical_json([CANONICALJSON_MAX_INT, CANONICALJSON_MIN_INT])
        self.assertRaises(CanonicalJSONError, encode_canonical_json, 2**53)
        self.assertRaises(CanonicalJSONError, encode_canonical_json, -(2**53))

    def test_rejects_non_json(self) -> None:
        """Non-string keys, sets, bytes and lone surrogates raise CanonicalJSONError."""
        for bad in ({1: 2}, {1, 2}, b"x", "\ud800", {"\udfff": 1}):
            self.assertRaises(CanonicalJSONError, encode_canonical_json, bad)

    def test_deep_nesting_rejected(self) -> None:
        """Absurd nesting is an error, not a RecursionError."""
        v: Any = []
        for _ in range(10000):
            v = [v]
        self.assertRaises(CanonicalJSONError, encode_canonical_json, v)

    def test_nesting_limit_is_fixed(self) -> None:
        """256 levels of nesting encode; 257 are rejected, deterministically."""

        def nest(n: int) -> Any:
            v: Any = 0
            for _ in range(n):
                v = [v]
            return v

        self.assertEqual(decode_json(encode_canonical_json(nest(256))), nest(256))
        self.assertRaises(CanonicalJSONError, encode_canonical_json, nest(257))
        self.assertEqual(thaw(freeze(nest(256))), nest(256))

    def test_booleans_are_not_integers(self) -> None:
        """True/False encode as JSON booleans even though bool subclasses int."""
        self.assertEqual(encode_canonical_json([True, False]), b"[true,false]")

    @given(json_objects)
    @settings(max_examples=200, deadline=None)
    def test_round_trip(self, obj: dict[str, Any]) -> None:
        """decode(encode(x)) == x, and re-encoding gives the same bytes."""
        encoded = encode_canonical_json(obj)
        self.assertEqual(decode_json(encoded), obj)
        self.assertEqual(encode_canonical_json(decode_json(encoded)), encoded)

    @given(json_objects)
    @settings(max_examples=200, deadline=None)
    def test_key_order_irrelevant(self, obj: dict[str, Any]) -> None:
        """Insertion order never changes the output, and output keys come out sorted."""
        reordered = dict(reversed(list(obj.items())))
        self.assertEqual(encode_canonical_json(reordered), encode_canonical_json(obj))
        parsed = json.loads(encode_canonical_json(obj))
        self.assertEqual(list(parsed), sorted(parsed))

    @given(json_objects)
    @settings(max_examples=100, deadline=None)
    def test_agrees_with_stdlib(self, obj: dict[str, Any]) -> None:
        """For plain data the output equals json.dumps with canonical settings."""
        expected = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self.assertEqual(encode_canonical_json(obj), expected.encode("utf-8"))

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_floats_always_rejected(self, f: float) -> None:
        """Any float anywhere is rejected by the strict encoder."""
        self.assertRaises(CanonicalJSONError, encode_canonical_json, {"a": [f]})

    @given(
        st.integers(min_value=CANONICALJSON_MAX_INT + 1)
        | st.integers(max_value=CANONICALJSON_MIN_INT - 1)
    )
    def test_out_of_range_ints_rejected(self, n: int) -> None:
        """Integers beyond +/-(2**53-1) are rejected both when encoding and strict decoding."""
        self.assertRaises(CanonicalJSONError, encode_canonical_json, {"n": n})
        self.assertRaises(CanonicalJSONError, decode_json, f'{{"n":{n}}}')
        self.assertEqual(decode_json(f'{{"n":{n}}}', strict=False), {"n": n})


class DecodeJSONTests(SynchronousTestCase):
    def test_rejects_nan_and_infinity(self) -> None:
        """NaN/Infinity literals are invalid even in lenient mode."""
        for text in ("NaN", "[Infinity]", '{"a":-Infinity}', "1e999"):
            self.assertRaises(CanonicalJSONError, decode_json, text)
            self.assertRaises(CanonicalJSONError, decode_json, text, strict=False)

    def test_strict_rejects_fractions(self) -> None:
        """Strict decoding rejects fractional numbers; lenient keeps them as floats."""
        self.assertRaises(CanonicalJSONError, decode_json, '{"a":1.5}')
        self.assertEqual(decode_json('{"a":1.5}', strict=False), {"a": 1.5})

    def test_duplicate_keys_last_wins(self) -> None:
        """Duplicate keys are tolerated; the last one wins."""
        self.assertEqual(decode_json('{"a":1,"a":2}'), {"a": 2})

    def test_bad_input(self) -> None:
        """Malformed JSON, invalid UTF-8 and huge digit strings raise CanonicalJSONError."""
        for bad in (b"\xff", "{", "", "[1,]", "1" * 5000, "[" * 100000):
            self.assertRaises(CanonicalJSONError, decode_json, bad)

    def test_bytes_and_str(self) -> None:
        """Both bytes (UTF-8) and str are accepted."""
        self.assertEqual(decode_json('{"a":"é"}'.encode()), decode_json('{"a":"é"}'))

    def test_error_is_value_error(self) -> None:
        """CanonicalJSONError is a ValueError, so generic handlers still catch it."""
        self.assertRaises(ValueError, decode_json, "{")


class EncodeJSONTests(SynchronousTestCase):
    def test_compact(self) -> None:
        """encode_json is compact UTF-8 and keeps insertion order."""
        self.assertEqual(encode_json({"b": 1, "a": ["é"]}), '{"b":1,"a":["é"]}'.encode())

    def test_frozen_values(self) -> None:
        """Frozen values and tuples serialise like their plain counterparts."""
        self.assertEqual(encode_json(freeze({"a": [1, {"b": 2}]})), b'{"a":[1,{"b":2}]}')
        self.assertEqual(encode_json({"t": (1, 2)}), b'{"t":[1,2]}')

    def test_rejects_unserialisable(self) -> None:
        """Objects JSON cannot represent raise CanonicalJSONError."""
        self.assertRaises(CanonicalJSONError, encode_json, object())
        self.assertRaises(CanonicalJSONError, encode_json, float("nan"))


class FrozenTests(SynchronousTestCase):
    def test_immutable(self) -> None:
        """FrozenDict/FrozenList refuse every mutating method, nested too."""
        f = freeze({"a": [1, {"b": 2}]})
        self.assertIsInstance(f, dict)
        self.assertIsInstance(f["a"], list)
        self.assertIsInstance(f, FrozenDict)
        self.assertIsInstance(f["a"], FrozenList)
        with self.assertRaises(TypeError):
            f["x"] = 1
        with self.assertRaises(TypeError):
            f["a"].append(3)
        with self.assertRaises(TypeError):
            f["a"][1]["b"] = 3
        with self.assertRaises(TypeError):
            f.update({})
        with self.assertRaises(TypeError):
            f |= {}
        with self.assertRaises(TypeError):
            f["a"] += [1]

    def test_thaw_gives_independent_copy(self) -> None:
        """thaw returns plain mutable containers equal to the frozen ones."""
        f = freeze({"a": [1, {"b": 2}]})
        t = thaw(f)
        self.assertEqual(t, f)
        self.assertIs(type(t), dict)
        self.assertIs(type(t["a"]), list)
        t["a"].append(3)
        self.assertEqual(f["a"], [1, {"b": 2}])

    def test_freeze_copies(self) -> None:
        """Mutating the source after freezing does not affect the frozen copy."""
        src: dict[str, Any] = {"a": [1]}
        f = freeze(src)
        src["a"].append(2)
        self.assertEqual(f, {"a": [1]})

    def test_hashable(self) -> None:
        """Frozen values are hashable and equal values hash equal."""
        self.assertEqual(hash(freeze({"a": [1, {"b": 2}]})), hash(freeze({"a": [1, {"b": 2}]})))
