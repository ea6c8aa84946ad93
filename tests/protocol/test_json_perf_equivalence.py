"""The fast JSON paths give exactly what the general paths give.

:mod:`ruma.protocol.json` has fast paths (an exact-type check that hands the original
object to the encoder, and orjson when it is installed) next to the general, checking
paths that were there first. Hashes and signatures depend on every byte, so these tests
compare the two on arbitrary JSON, on hostile values and on every test vector we have.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol import json as rjson
from ruma.protocol.errors import InvalidEvent
from ruma.protocol.events import (
    Event,
    check_content_hash,
    compute_content_hash,
    verify_event_signatures,
)
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
from ruma.protocol.redaction import redact
from ruma.protocol.room_versions import EventFormat, RoomVersion, get_room_version
from ruma.protocol.signing import VerifyKey, decode_verify_key, encode_base64
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


def typed(value: Any) -> Any:
    """``value`` with every leaf's type and every object's key order made visible, so that
    1, 1.0 and True, or {"a":1,"b":2} and {"b":2,"a":1}, compare unequal."""
    if isinstance(value, type):  # an outcome() error
        return ("error", value.__name__)
    if isinstance(value, dict):
        return (type(value).__name__, [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, repr(value))


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




class _Paths:
    """Run a test class once with orjson (if installed) and once with the stdlib only."""

    use_orjson = True

    def setUp(self) -> None:
        if not self.use_orjson:
            self.patch(rjson, "_orjson", None)


_NO_ORJSON = "orjson is not installed" if rjson._orjson is None else None


class _CanonicalEncodingEquivalence(_Paths):
    @given(canonical_values)
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
    def test_strict_fast_path_is_byte_identical(self, obj: Any) -> None:
        """For canonical data (plain and frozen containers alike) the fast encoder's bytes
        equal the checking path's and json.dumps' canonical settings."""
        fast = encode_canonical_json(obj)
        self.assertEqual(fast, stdlib_canonical(obj, True))
        expected = json.dumps(thaw(obj), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False, allow_nan=False).encode("utf-8")  # fmt: skip
        self.assertEqual(fast, expected)

    @given(lenient_values, st.booleans())
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
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



class CanonicalEncodingWithOrjsonTests(_CanonicalEncodingEquivalence, SynchronousTestCase):
    skip = _NO_ORJSON


class CanonicalEncodingStdlibTests(_CanonicalEncodingEquivalence, SynchronousTestCase):
    use_orjson = False


def stdlib_decode(data: Any, strict: bool) -> Any:
    """The reference: the stdlib parser with the strict/lenient number hooks."""
    return typed(outcome(rjson._decode_stdlib, data, strict))


def fast_decode(data: Any, strict: bool) -> Any:
    return typed(outcome(decode_json, data, strict=strict))


def serialisations(value: Any) -> list[str]:
    """Several valid JSON texts of ``value``: escaped or raw non-ASCII, spaced or not."""
    out = []
    for ensure_ascii in (True, False):
        for kwargs in ({}, {"separators": (",", ":")}, {"indent": 1}, {"indent": "\t"}):
            out.append(json.dumps(value, ensure_ascii=ensure_ascii, **kwargs))  # type: ignore[arg-type]
    return out


# Characters that make or break JSON: structure, number parts, escapes, whitespace
# (JSON's four and others), controls, BOM, surrogate escapes and non-ASCII.
mutation_atoms = st.sampled_from(
    ["{", "}", "[", "]", ",", ":", '"', "\\", "-", "+", ".", "e", "E", "0", "1", "9",
     " ", "\t", "\n", "\r", "\x0c", "\x0b", "\x00", "\x1f", "\x7f", "\xa0", "\u2028",
     "\ufeff", "\\u", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\u0000", "\\/", "null",
     "true", "NaN", "Infinity", "1e400", "18446744073709551616", "9007199254740992",
     "1.0", "é", "\U0001f600", "\ud800"]
)  # fmt: skip


@st.composite
def mutated_json(draw: st.DrawFn) -> str:
    """A JSON text with a few insertions, deletions or replacements: mostly invalid,
    sometimes valid in surprising ways."""
    text: str = draw(st.sampled_from(serialisations(draw(json_values(lenient_leaves)))))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        atom = draw(mutation_atoms)
        if action == "insert":
            text = text[:pos] + atom + text[pos:]
        elif action == "delete":
            text = text[:pos] + text[pos + 1 :]
        else:
            text = text[:pos] + atom + text[pos + 1 :]
    return text


HOSTILE_TEXTS: list[str | bytes] = [
    '"\\ud800"', '"\\udc00x"', '["\\ud83d"]', '{"\\udfff":1}', '"\\ud83d\\ude00"',
    "\ufeff{}", b"\xef\xbb\xbf{}", '"\x01"', '"\x7f"', b'"\xed\xa0\x80"', b'"\xc0\xaf"',
    b'"\xff"', b'"\xf4\x90\x80\x80"', "01", "-", "1.", ".5", "+1", "1e", "1E+2", "-0",
    "-0.0", "0e0", "1e400", "-1e400", "1e-400", "2.5", "1.0", "1e10", "1E10", "1e16",
    str(2**53), str(-(2**53)), str(2**53 - 1), str(-(2**53) + 1), str(2**63), str(2**64),
    str(-(2**63) - 1), str(2**64 - 1), "1" * 30, "1" * 5000, "NaN", "[Infinity]",
    '{"a":-Infinity}', '{"a":1,"b":2,"a":3}', '{"a":{"x":1},"a":[2]}', "", " ", "[1,]",
    "{", "[" * 255 + "]" * 255, "[" * 256 + "]" * 256, "[" * 257 + "]" * 257,
    "[" * 1000 + "]" * 1000, "[" * 100000, "\x0c[]", "[]\x0c", "\xa0[]", "[1]\u2028",
    " [1] ", "\t\n\r[1]\r\n\t", "[1] x", "[]\x00", '"\\u0000"', '"\\/"', '"\\x41"',
    '"\\U0041"', "'a'", '{"a" 1}', '{a:1}', "[1 2]", "tru", "nul", "true false",
    '"\u2028\u2029"', '"\\u2028"', b'"\xe2\x80\xa8"', "{}", "[]", '""', "0", "-1",
]  # fmt: skip


class _DecodeEquivalence(_Paths):
    @given(json_values(lenient_leaves), st.booleans(), st.integers(0, 7), st.booleans())
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
    def test_valid_json_same_value(self, value: Any, strict: bool, which: int, as_bytes: bool) -> None:
        """Any JSON value (floats, integers of any size, every kind of text) written any
        way gives the same value (types and key order included) or the same error."""
        text = serialisations(value)[which]
        data: str | bytes = text.encode("utf-8") if as_bytes else text
        self.assertEqual(fast_decode(data, strict), stdlib_decode(data, strict))

    @given(mutated_json(), st.booleans(), st.booleans())
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
    def test_mutated_json_same_outcome(self, text: str, strict: bool, as_bytes: bool) -> None:
        """Damaged JSON is rejected, or accepted with the same value, exactly as before."""
        data: str | bytes = text
        if as_bytes:
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                data = text.encode("utf-8", "surrogatepass")
        self.assertEqual(fast_decode(data, strict), stdlib_decode(data, strict))

    @given(st.binary(max_size=40), st.booleans())
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
    def test_arbitrary_bytes_same_outcome(self, data: bytes, strict: bool) -> None:
        """Arbitrary bytes (invalid UTF-8 included) behave exactly as before."""
        self.assertEqual(fast_decode(data, strict), stdlib_decode(data, strict))

    def test_hostile_texts(self) -> None:
        """Surrogate escapes, BOMs, bad UTF-8, number edge cases, NaN, duplicate keys,
        odd whitespace and deep nesting: same value or same error, strict and lenient,
        as str, bytes, bytearray and memoryview."""
        for i, text in enumerate(HOSTILE_TEXTS):
            forms: list[Any] = [text]
            if isinstance(text, str):
                try:
                    forms.append(text.encode("utf-8"))
                except UnicodeEncodeError:
                    forms.append(text.encode("utf-8", "surrogatepass"))
            forms += [bytearray(forms[-1]), memoryview(bytes(forms[-1]))]
            for data in forms:
                if isinstance(data, str) and not isinstance(text, str):
                    continue
                for strict in (True, False):
                    self.assertEqual(
                        fast_decode(data, strict), stdlib_decode(data, strict), (i, strict)
                    )

    def test_not_text(self) -> None:
        """Inputs that are not text at all fail the same way."""
        for data in (None, 5, 1.5, ["[]"], {"a": 1}):
            for strict in (True, False):
                self.assertEqual(fast_decode(data, strict), stdlib_decode(data, strict))

    def test_every_vector_file(self) -> None:
        """Every vector file, as read from disk and in canonical form, and every
        canonical-JSON example's input text decodes identically."""
        texts = [(VECTORS_DIR / "test-vectors.json").read_bytes()]
        texts += [p.read_bytes() for p in sorted((VECTORS_DIR / "synapse").glob("*.json"))]
        for top in all_vector_values():
            texts.append(rjson._encode_checked(top, False))
            for value in walk(top):
                if isinstance(value, dict):
                    texts.append(rjson._encode_checked(value, False))
        for v in load_vectors()["canonical_json"]["vectors"]:
            texts.append(v["input_text"])
        for data in texts:
            for strict in (True, False):
                self.assertEqual(fast_decode(data, strict), stdlib_decode(data, strict))


# Without orjson, decode_json and encode_json are the stdlib paths themselves.
class DecodeWithOrjsonTests(_DecodeEquivalence, SynchronousTestCase):
    skip = _NO_ORJSON


class _EncodeJSONEquivalence(_Paths):
    @given(lenient_values | json_values(lenient_leaves | st.tuples(plain_leaves)))
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
    def test_same_bytes(self, obj: Any) -> None:
        """encode_json gives the stdlib compact encoder's bytes, insertion order kept,
        for plain, frozen, float, big-int and tuple-holding values alike."""
        self.assertEqual(
            outcome(encode_json, obj), outcome(rjson._encode_json_stdlib, obj)
        )

    def test_hostile(self) -> None:
        """Surrogates, NaN, non-string keys and deep nesting fail or pass as before."""
        nested: Any = 0
        for _ in range(300):
            nested = [nested]
        for obj in ("\ud800", {"a": float("nan")}, {1: 2}, nested, 2**64, {"k": object()}):
            self.assertEqual(outcome(encode_json, obj), outcome(rjson._encode_json_stdlib, obj))


class EncodeJSONWithOrjsonTests(_EncodeJSONEquivalence, SynchronousTestCase):
    skip = _NO_ORJSON


class FreezeThawEquivalenceTests(SynchronousTestCase):
    @given(json_values(lenient_leaves | st.tuples(plain_leaves, plain_leaves), frozen=True))
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
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


# -- events: one walk, kept redacted bytes, orjson ---------------------------------------

SYNAPSE_ROOMS = [
    json.loads((VECTORS_DIR / "synapse" / f"v{n}.json").read_text(encoding="utf-8"))
    for n in range(1, 13)
]


def reference_signed_bytes(pdu: Any, room_version: RoomVersion) -> bytes:
    """What the signatures cover and the reference hash hashes, the way it was first
    written: deep-copying redact, then the checking encoder (stdlib only)."""
    d = thaw(pdu)
    if room_version.event_format is not EventFormat.V1:
        d.pop("event_id", None)
    redacted = redact(d, room_version)
    for key in ("signatures", "unsigned", "age_ts"):
        redacted.pop(key, None)
    return rjson._encode_checked(redacted, False)


def reference_event_id(pdu: Any, room_version: RoomVersion) -> str:
    if room_version.event_format is EventFormat.V1:
        return str(pdu["event_id"])
    digest = hashlib.sha256(reference_signed_bytes(pdu, room_version)).digest()
    return "$" + encode_base64(digest, urlsafe=room_version.event_format is not EventFormat.V2)


def reference_content_hash(pdu: Any, room_version: RoomVersion) -> bytes:
    d = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes", "age_ts")}
    if room_version.event_format is not EventFormat.V1:
        d.pop("event_id", None)
    return hashlib.sha256(rjson._encode_checked(d, False)).digest()


def event_outcome(pdu: Any, room_version: RoomVersion) -> Any:
    """Everything observable about parsing ``pdu``: the error, or the event's ID, PDU,
    fields, signed bytes (checked against the reference) and its redacted copy's."""
    try:
        event = Event.from_pdu(pdu, room_version)
    except InvalidEvent as e:
        return ("invalid", str(e))
    signed = event._signed_bytes()
    redacted = event.redacted()
    unsigned = event.with_unsigned({"age": 1})
    return (
        event.event_id, typed(event.pdu()), event.room_id, event.sender, event.type,
        event.state_key, event.prev_event_ids, event.auth_event_ids, event.depth,
        event.origin_server_ts, signed, redacted._signed_bytes(), unsigned._signed_bytes(),
        typed(redacted.pdu()), reference_signed_bytes(event.pdu(), room_version),
        reference_signed_bytes(redacted.pdu(), room_version),
    )  # fmt: skip


class _EventEquivalence(_Paths):
    def test_synapse_pdus(self) -> None:
        """Every captured Synapse PDU (rooms v1-v12), and its redacted form, parses to
        the event ID and signed bytes the original algorithm computes (deep-copying
        redact, checking stdlib encoder), and Synapse's signatures verify over them."""
        for room in SYNAPSE_ROOMS:
            rv = get_room_version(room["room_version"])
            keys = {k: decode_verify_key(k, v) for k, v in room["verify_keys"].items()}

            def get_key(server: str, key_id: str) -> VerifyKey | None:
                return keys.get(key_id) if server == room["server_name"] else None  # noqa: B023

            for pdu, synapse_id in zip(room["events"], room["event_ids"], strict=True):
                for variant in (pdu, redact(pdu, rv), freeze(pdu)):
                    event = Event.from_pdu(variant, rv)
                    self.assertEqual(event.event_id, synapse_id)
                    self.assertEqual(event.event_id, reference_event_id(variant, rv))
                    self.assertEqual(event._signed_bytes(), reference_signed_bytes(variant, rv))
                    verify_event_signatures(event, get_key)
                    verify_event_signatures(event.redacted(), get_key)
                    verify_event_signatures(event.with_unsigned({"age": 5}), get_key)
                    self.assertEqual(typed(event.pdu()), typed(thaw(event.pdu())))
                self.assertEqual(compute_content_hash(pdu, rv), reference_content_hash(pdu, rv))
                self.assertTrue(check_content_hash(pdu, rv))

    @given(
        st.sampled_from(range(len(SYNAPSE_ROOMS))),
        st.data(),
        json_values(lenient_leaves, frozen=True),
        st.sampled_from(["content", "unsigned", "extra", "hashes", "prev_events", "depth"]),
    )
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.differing_executors])
    def test_altered_pdus(self, room_i: int, data: st.DataObject, value: Any, where: str) -> None:
        """A captured PDU with arbitrary JSON (floats, big ints, odd text, frozen parts)
        put into its content or elsewhere is accepted or refused exactly alike with
        orjson and without, and when accepted has the reference event ID, content hash
        and signed bytes."""
        room = SYNAPSE_ROOMS[room_i]
        rv = get_room_version(room["room_version"])
        pdu = dict(data.draw(st.sampled_from(room["events"])))
        if where == "content":
            key = data.draw(st.sampled_from(["body", "membership", "join_rule", "users", "x"]))
            pdu["content"] = {**pdu["content"], key: value}
        else:
            pdu[where] = value
        got = event_outcome(pdu, rv)
        self.patch(rjson, "_orjson", None)
        self.assertEqual(got, event_outcome(pdu, rv))
        if got[0] != "invalid":
            self.assertEqual(got[0], reference_event_id(pdu, rv))
            self.assertEqual(got[10], got[14])  # signed bytes == reference
            self.assertEqual(got[11], got[15])
            self.assertEqual(
                outcome(compute_content_hash, pdu, rv), outcome(reference_content_hash, pdu, rv)
            )


class EventWithOrjsonTests(_EventEquivalence, SynchronousTestCase):
    skip = _NO_ORJSON


class EventStdlibTests(_EventEquivalence, SynchronousTestCase):
    use_orjson = False
