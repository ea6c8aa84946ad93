"""Matrix canonical JSON, lenient/strict JSON decoding and frozen JSON values.

Canonical JSON (spec appendix "Canonical JSON") is what everything that gets hashed or
signed is encoded as: keys sorted by code point, no insignificant whitespace, UTF-8, no
floats, integers within +/-(2**53 - 1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ruma.protocol.errors import CanonicalJSONError

__all__ = [
    "CANONICALJSON_MAX_INT",
    "CANONICALJSON_MIN_INT",
    "FrozenDict",
    "FrozenList",
    "decode_json",
    "encode_canonical_json",
    "encode_json",
    "freeze",
    "thaw",
]

CANONICALJSON_MAX_INT = 2**53 - 1
CANONICALJSON_MIN_INT = -CANONICALJSON_MAX_INT

# A fixed nesting limit, so hostile input fails the same way wherever it is encoded
# (hitting the interpreter recursion limit would depend on the caller's stack depth).
_MAX_DEPTH = 256

_canonical_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
)
_compact_encoder = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    separators=(",", ":"),
    default=lambda o: _to_plain(o),
)


def _to_plain(o: object) -> object:
    if isinstance(o, Mapping):
        return dict(o)
    if isinstance(o, (tuple, frozenset)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _normalise(value: object, strict: bool, depth: int) -> object:
    """Return a plain dict/list/scalar copy of ``value``, rejecting non-canonical data."""
    if depth > _MAX_DEPTH:
        raise CanonicalJSONError("JSON nested too deeply")
    # bool is an int subclass, so test it first.
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if strict and not CANONICALJSON_MIN_INT <= value <= CANONICALJSON_MAX_INT:
            raise CanonicalJSONError(f"integer out of canonical JSON range: {value}")
        return int(value)
    if isinstance(value, float):
        if strict:
            raise CanonicalJSONError("floats are not allowed in canonical JSON")
        if not math.isfinite(value):
            raise CanonicalJSONError("NaN and infinities are not JSON")
        return value
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise CanonicalJSONError(f"object keys must be strings, not {type(k).__name__}")
            out[k] = _normalise(v, strict, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        # Plain loops, not comprehensions: one stack frame per nesting level.
        items: list[object] = []
        for v in value:
            items.append(_normalise(v, strict, depth + 1))
        return items
    raise CanonicalJSONError(f"{type(value).__name__} is not JSON serialisable")


def encode_canonical_json(obj: object, *, strict: bool = True) -> bytes:
    """Encode ``obj`` as canonical JSON bytes.

    ``strict=False`` tolerates floats and big integers, which only exist in events from
    rooms before v6; we still need to hash and verify those byte-exactly as they were sent.
    """
    try:
        plain = _normalise(obj, strict, 0)
    except RecursionError as e:
        raise CanonicalJSONError("JSON nested too deeply") from e
    try:
        return _canonical_encoder.encode(plain).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError) as e:
        # Lone surrogates cannot be UTF-8; they can never be canonical.
        raise CanonicalJSONError(str(e)) from e


def encode_json(obj: object) -> bytes:
    """Compact (not canonical) UTF-8 JSON, for HTTP bodies."""
    try:
        return _compact_encoder.encode(obj).encode("utf-8")
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError) as e:
        raise CanonicalJSONError(str(e)) from e


def _reject_constant(name: str) -> NoReturn:
    raise CanonicalJSONError(f"{name} is not valid JSON")


def _parse_int_strict(s: str) -> int:
    v = int(s)
    if not CANONICALJSON_MIN_INT <= v <= CANONICALJSON_MAX_INT:
        raise CanonicalJSONError(f"integer out of canonical JSON range: {s}")
    return v


def _parse_float_strict(s: str) -> int:
    # The spec's own example reads `1e10` and `-0` as integers, so whole-number values
    # written in float notation are integers; anything with a fraction is rejected.
    f = float(s)
    if not math.isfinite(f) or not f.is_integer():
        raise CanonicalJSONError(f"non-integral number in canonical JSON: {s}")
    return _parse_int_strict(str(int(f)))


def _parse_float_lenient(s: str) -> float:
    f = float(s)
    if not math.isfinite(f):
        raise CanonicalJSONError(f"number out of range: {s}")
    return f


def decode_json(data: bytes | str, *, strict: bool = True) -> Any:
    """Parse JSON text. Raises :class:`CanonicalJSONError` on anything invalid.

    NaN/Infinity are always rejected. Duplicate keys are tolerated (last wins), as other
    homeservers do. With ``strict=True`` numbers must be canonical-JSON integers.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CanonicalJSONError(f"JSON is not UTF-8: {e}") from e
    else:
        text = data
    parse_float: Callable[[str], object] = (
        _parse_float_strict if strict else _parse_float_lenient
    )
    parse_int: Callable[[str], object] = _parse_int_strict if strict else int
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=parse_float,
            parse_int=parse_int,
        )
    except CanonicalJSONError:
        raise
    except (ValueError, RecursionError) as e:
        raise CanonicalJSONError(f"invalid JSON: {e}") from e


def _immutable(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is immutable")


class FrozenDict(dict[str, Any]):
    """A ``dict`` that refuses mutation.

    It subclasses ``dict`` so ``isinstance(x, dict)`` checks and ``json`` keep working
    on event content; only the mutating methods are disabled.
    """

    __slots__ = ()

    __setitem__ = _immutable
    __delitem__ = _immutable
    __ior__ = _immutable
    clear = _immutable
    pop = _immutable
    popitem = _immutable
    setdefault = _immutable
    update = _immutable

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> FrozenDict:
        return self

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset((k, _hashable(v)) for k, v in self.items()))


class FrozenList(list[Any]):
    """A ``list`` that refuses mutation (see :class:`FrozenDict`)."""

    __slots__ = ()

    __setitem__ = _immutable
    __delitem__ = _immutable
    __iadd__ = _immutable
    __imul__ = _immutable
    append = _immutable
    clear = _immutable
    extend = _immutable
    insert = _immutable
    pop = _immutable
    remove = _immutable
    reverse = _immutable
    sort = _immutable

    def __reduce__(self) -> tuple[type[FrozenList], tuple[list[Any]]]:
        return (FrozenList, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> FrozenList:
        return self

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(_hashable(v) for v in self))


def _hashable(v: object) -> object:
    if isinstance(v, (FrozenDict, FrozenList)):
        return hash(v)
    if isinstance(v, dict):
        return hash(FrozenDict(v))
    if isinstance(v, list):
        return hash(FrozenList(v))
    return v


def freeze(value: Any) -> Any:
    """Deep-copy a JSON value into :class:`FrozenDict`/:class:`FrozenList`."""
    if isinstance(value, FrozenDict | FrozenList):
        return value
    if isinstance(value, Mapping):
        d = {}
        for k, v in value.items():
            d[k] = freeze(v)
        return FrozenDict(d)
    if isinstance(value, (list, tuple)):
        items = []
        for v in value:
            items.append(freeze(v))
        return FrozenList(items)
    return value


def thaw(value: Any) -> Any:
    """Deep-copy a (possibly frozen) JSON value into plain mutable dicts and lists."""
    if isinstance(value, Mapping):
        d = {}
        for k, v in value.items():
            d[k] = thaw(v)
        return d
    if isinstance(value, (list, tuple)):
        items = []
        for v in value:
            items.append(thaw(v))
        return items
    return value


