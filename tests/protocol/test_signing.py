"""Unpadded base64, server keys, and signing/verifying JSON."""

from __future__ import annotations

import base64
import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ruma.protocol.errors import KeyFormatError, SignatureError
from ruma.protocol.signing import (
    SigningKey,
    decode_base64,
    decode_signing_key,
    decode_verify_key,
    encode_base64,
    encode_verify_key,
    generate_signing_key,
    read_signing_keys,
    sign_json,
    signing_key_from_seed,
    verify_signed_json,
    write_signing_keys,
)
from tests.protocol import load_vectors


def spec_key() -> tuple[SigningKey, str, str]:
    """The spec's test key, its server name and key ID."""
    v = load_vectors()["signing_key"]
    algorithm, version = v["key_id"].split(":")
    return decode_signing_key(algorithm, version, v["seed_base64"]), v["server_name"], v["key_id"]


class Base64Tests(SynchronousTestCase):
    def test_spec_vectors(self) -> None:
        """The spec's unpadded base64 examples encode exactly and decode back."""
        for v in load_vectors()["unpadded_base64"]["vectors"]:
            raw = v["input_utf8"].encode()
            self.assertEqual(encode_base64(raw), v["expected"])
            self.assertEqual(decode_base64(v["expected"]), raw)

    def test_decode_accepts_all_forms(self) -> None:
        """Decoding accepts standard and url-safe alphabets, padded or not, str or bytes."""
        raw = bytes(range(256))
        for enc in (
            base64.b64encode(raw),
            base64.b64encode(raw).rstrip(b"="),
            base64.urlsafe_b64encode(raw),
            base64.urlsafe_b64encode(raw).rstrip(b"="),
        ):
            self.assertEqual(decode_base64(enc), raw)
            self.assertEqual(decode_base64(enc.decode()), raw)

    def test_urlsafe_encoding(self) -> None:
        """urlsafe=True uses '-' and '_' and no padding."""
        self.assertEqual(encode_base64(b"\xfb\xff", urlsafe=True), "-_8")
        self.assertEqual(encode_base64(b"\xfb\xff"), "+/8")

    def test_decode_rejects_garbage(self) -> None:
        """Invalid characters, impossible lengths and non-ASCII raise KeyFormatError."""
        for bad in ("a", "ab!c", "abcde", "Zg===", "é", b"\xff", "Z=g"):
            self.assertRaises(KeyFormatError, decode_base64, bad)

    @given(st.binary(max_size=100))
    def test_round_trip(self, raw: bytes) -> None:
        """decode(encode(x)) == x in both alphabets, and no padding is emitted."""
        for urlsafe in (False, True):
            enc = encode_base64(raw, urlsafe=urlsafe)
            self.assertNotIn("=", enc)
            self.assertEqual(decode_base64(enc), raw)


class KeyTests(SynchronousTestCase):
    def test_spec_key(self) -> None:
        """The spec's seed decodes to a key with the right ID and the same seed bytes.

        The spec's seed text has non-zero trailing bits, so decoding must tolerate them
        and re-encoding gives the canonical spelling.
        """
        key, _, key_id = spec_key()
        self.assertEqual(key.key_id, key_id)
        self.assertEqual(key.version, "1")
        seed_text = load_vectors()["signing_key"]["seed_base64"]
        self.assertEqual(decode_base64(key.seed_base64), decode_base64(seed_text))
        self.assertEqual(key.seed_base64[:-1], seed_text[:-1])
        self.assertEqual(encode_verify_key(key.verify_key), key.public_key_base64)

    def test_generate(self) -> None:
        """Generated keys have the given version and distinct key material."""
        a, b = generate_signing_key("a_AbCd"), generate_signing_key("a_AbCd")
        self.assertEqual(a.key_id, "ed25519:a_AbCd")
        self.assertNotEqual(a.seed_base64, b.seed_base64)
        self.assertRaises(KeyFormatError, generate_signing_key, "bad:version")
        self.assertRaises(KeyFormatError, generate_signing_key, "")

    def test_read_write_round_trip(self) -> None:
        """write_signing_keys/read_signing_keys round-trip the standard line format."""
        keys = [generate_signing_key("a1"), generate_signing_key("b2")]
        text = write_signing_keys(keys)
        self.assertTrue(text.startswith("ed25519 a1 "))
        self.assertEqual(text.count("\n"), 2)
        back = read_signing_keys("\n" + text + "\n")
        self.assertEqual([k.key_id for k in back], ["ed25519:a1", "ed25519:b2"])
        self.assertEqual([k.seed_base64 for k in back], [k.seed_base64 for k in keys])

    def test_read_rejects_bad_lines(self) -> None:
        """Unknown algorithms, wrong field counts and bad seeds raise KeyFormatError."""
        seed = encode_base64(b"\0" * 32)
        for bad in (f"rsa a {seed}", "ed25519 a", f"ed25519 a {seed} x", "ed25519 a AAAA"):
            self.assertRaises(KeyFormatError, read_signing_keys, bad)

    def test_seed_length(self) -> None:
        """Seeds must be exactly 32 bytes."""
        self.assertRaises(KeyFormatError, signing_key_from_seed, "a", b"\0" * 31)

    def test_decode_verify_key(self) -> None:
        """Published keys decode for ed25519 IDs; bad IDs and lengths are rejected."""
        key, _, key_id = spec_key()
        vk = decode_verify_key(key_id, key.public_key_base64)
        self.assertEqual(bytes(vk), bytes(key.verify_key))
        # Other servers' versions need not follow our grammar.
        decode_verify_key("ed25519:some-key.v1", key.public_key_base64)
        self.assertRaises(KeyFormatError, decode_verify_key, "curve25519:1", key.public_key_base64)
        self.assertRaises(KeyFormatError, decode_verify_key, "ed25519:", key.public_key_base64)
        self.assertRaises(KeyFormatError, decode_verify_key, key_id, "AAAA")

    def test_repr_hides_secret(self) -> None:
        """A key's repr does not leak the seed."""
        key, _, _ = spec_key()
        self.assertNotIn(key.seed_base64, repr(key))


class JSONSigningTests(SynchronousTestCase):
    def test_spec_vectors(self) -> None:
        """Signing the spec's objects with the test key gives the spec's signatures."""
        key, server, key_id = spec_key()
        for v in load_vectors()["json_signing"]["vectors"]:
            signed = sign_json(v["input"], server, key)
            self.assertEqual(signed, v["expected_signed"])
            verify_signed_json(v["expected_signed"], server, key_id, key.verify_key)

    def test_does_not_mutate(self) -> None:
        """sign_json returns a new dict and leaves its argument untouched, nested included."""
        key, server, _ = spec_key()
        obj: dict[str, Any] = {"a": {"b": [1]}, "signatures": {"other": {"ed25519:x": "s"}}}
        before = copy.deepcopy(obj)
        signed = sign_json(obj, server, key)
        self.assertEqual(obj, before)
        signed["a"]["b"].append(2)
        self.assertEqual(obj, before)

    def test_keeps_existing_signatures_and_unsigned(self) -> None:
        """Existing signatures and unsigned are kept and not covered by the new signature."""
        key, server, key_id = spec_key()
        obj = {"x": 1, "unsigned": {"age": 5}, "signatures": {"other": {"ed25519:o": "sig"}}}
        signed = sign_json(obj, server, key)
        self.assertEqual(signed["signatures"]["other"], {"ed25519:o": "sig"})
        self.assertEqual(signed["unsigned"], {"age": 5})
        signed["unsigned"] = {"age": 99}
        verify_signed_json(signed, server, key_id, key.verify_key)

    def test_tampering_detected(self) -> None:
        """Changing any signed value makes verification fail with SignatureError."""
        key, server, key_id = spec_key()
        signed = sign_json({"one": 1, "two": "Two"}, server, key)
        signed["one"] = 2
        self.assertRaises(SignatureError, verify_signed_json, signed, server, key_id,
                          key.verify_key)

    def test_wrong_key(self) -> None:
        """A signature does not verify under another key."""
        key, server, key_id = spec_key()
        other = generate_signing_key("1")
        signed = sign_json({"a": 1}, server, key)
        self.assertRaises(SignatureError, verify_signed_json, signed, server, key_id,
                          other.verify_key)

    def test_missing_or_malformed_signature(self) -> None:
        """Missing servers/keys and malformed signatures raise SignatureError."""
        key, server, key_id = spec_key()
        vk = key.verify_key
        obj: Any
        for obj in (
            {},
            {"signatures": None},
            {"signatures": {server: {}}},
            {"signatures": {server: {key_id: 5}}},
            {"signatures": {server: {key_id: "!!!"}}},
            {"signatures": {server: {key_id: "AAAA"}}},
        ):
            self.assertRaises(SignatureError, verify_signed_json, obj, server, key_id, vk)

    def test_unencodable_object(self) -> None:
        """An object that cannot be canonicalised fails verification cleanly."""
        key, server, key_id = spec_key()
        signed = sign_json({"a": 1}, server, key)
        signed["a"] = float("nan")
        self.assertRaises(SignatureError, verify_signed_json, signed, server, key_id,
                          key.verify_key)

    @given(st.dictionaries(st.text(max_size=10), st.integers(-(2**53) + 1, 2**53 - 1)
                           | st.text(max_size=10), max_size=6))
    @settings(max_examples=50, deadline=None)
    def test_sign_verify_property(self, obj: dict[str, Any]) -> None:
        """Whatever we sign verifies with our key."""
        key, server, key_id = spec_key()
        verify_signed_json(sign_json(obj, server, key), server, key_id, key.verify_key)
