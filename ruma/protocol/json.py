"""Matrix canonical JSON, lenient/strict JSON decoding and frozen JSON values.

Canonical JSON (spec appendix "Canonical JSON") is what everything that gets hashed or
signed is encoded as: keys sorted by code point, no insignificant whitespace, UTF-8, no
floats, integers within +/-(2**53 - 1).

Speed: when the optional ``orjson`` package is installed, plain data (exact dict/list/str/
int/bool/None, which is what PDUs are) is encoded and decoded by it. Its output for such
data is byte-identical to the stdlib encoder's canonical settings (compact, sorted keys,
UTF-8 unescaped, controls as short escapes or lowercase \\u00xx); anything else (floats,
integers beyond 64 bits, subclasses, anything orjson refuses) takes the stdlib path, so
results and errors are the same with or without it.
tests/protocol/test_json_perf_equivalence.py holds the evidence.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from ruma.protocol.errors import CanonicalJSONError

_orjson: Any
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the stdlib paths give the same results, slower
    _orjson = None

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

# Integer ranges for the fast paths (see _plain_ok). Lenient encoding has no limit, but
# only integers within 64 bits skip the checking path.
_STRICT_RANGE = (CANONICALJSON_MIN_INT, CANONICALJSON_MAX_INT)
_LENIENT_RANGE = (-(2**63), 2**63 - 1)

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


def _plain_ok(value: object, lo: int, hi: int, depth: int) -> bool:
    """Whether ``value`` can go to the C encoder untouched, without the checking copy.

    True only for trees of exactly ``dict``/``list`` (or the frozen subclasses), ``str``
    keys, and ``str``/``bool``/``None``/``int`` in ``[lo, hi]`` leaves, nested no deeper
    than the fixed limit. For such trees :func:`_normalise` would return an equal copy, so
    encoding the original gives the same bytes. Anything else (floats, out-of-range
    integers, tuples, other mappings, subclasses) answers False and takes the checking
    path, which encodes it or raises exactly as before. Exact ``type()`` tests, not ABC
    ``isinstance``, because this runs on every node of every PDU.
    """
    t = type(value)
    if t is dict or t is FrozenDict:
        if depth >= _MAX_DEPTH:
            return False
        depth += 1
        for k, v in value.items():  # type: ignore[attr-defined]
            if type(k) is not str:
                return False
            tv = type(v)
            if tv is str or v is None or tv is bool:
                continue
            if tv is int:
                if lo <= v <= hi:
                    continue
                return False
            if not _plain_ok(v, lo, hi, depth):
                return False
        return True
    if t is list or t is FrozenList:
        if depth >= _MAX_DEPTH:
            return False
        depth += 1
        for v in value:  # type: ignore[attr-defined]
            tv = type(v)
            if tv is str or v is None or tv is bool:
                continue
            if tv is int:
                if lo <= v <= hi:
                    continue
                return False
            if not _plain_ok(v, lo, hi, depth):
                return False
        return True
    if t is str or value is None or t is bool:
        return True
    if t is int:
        return lo <= value <= hi  # type: ignore[operator]
    return False


def _encode_checked(obj: object, strict: bool) -> bytes:
    """The general path: a checked plain copy, then the stdlib C encoder."""
    try:
        plain = _normalise(obj, strict, 0)
    except RecursionError as e:
        raise CanonicalJSONError("JSON nested too deeply") from e
    return _encode_stdlib(plain)


def _encode_plain(plain: object) -> bytes:
    """Encode a tree :func:`_plain_ok` accepted (never floats, never beyond 64 bits)."""
    if _orjson is not None:
        try:
            out: bytes = _orjson.dumps(plain, option=_orjson.OPT_SORT_KEYS)
            return out
        except TypeError:
            # Lone surrogates or nesting beyond orjson's limit: the stdlib decides.
            pass
    return _encode_stdlib(plain)


def _encode_stdlib(plain: object) -> bytes:
    try:
        return _canonical_encoder.encode(plain).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError) as e:
        # Lone surrogates cannot be UTF-8; they can never be canonical.
        raise CanonicalJSONError(str(e)) from e


def encode_canonical_json(obj: object, *, strict: bool = True) -> bytes:
    """Encode ``obj`` as canonical JSON bytes.

    ``strict=False`` tolerates floats and big integers, which only exist in events from
    rooms before v6; we still need to hash and verify those byte-exactly as they were sent.
    """
    if _plain_ok(obj, *(_STRICT_RANGE if strict else _LENIENT_RANGE), 0):
        return _encode_plain(obj)
    return _encode_checked(obj, strict)


def encode_json(obj: object) -> bytes:
    """Compact (not canonical) UTF-8 JSON, for HTTP bodies."""
    if _orjson is not None and _plain_ok(obj, *_LENIENT_RANGE, 0):
        try:
            out: bytes = _orjson.dumps(obj)
            return out
        except TypeError:
            pass  # lone surrogates, deep nesting: the stdlib path decides
    return _encode_json_stdlib(obj)


def _encode_json_stdlib(obj: object) -> bytes:
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
    if _orjson is not None:
        try:
            value = _orjson.loads(data)
        except (ValueError, TypeError, RecursionError):
            pass  # the stdlib path below gives the verdict (and the error message)
        else:
            # Floats (including integers orjson read as floats: beyond 64 bits) and
            # out-of-range integers go the stdlib way, which converts or rejects them.
            if _plain_ok(value, *(_STRICT_RANGE if strict else _LENIENT_RANGE), 0):
                return value
    return _decode_stdlib(data, strict)


def _decode_stdlib(data: bytes | str, strict: bool) -> Any:
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


# Leaves freeze/thaw hand back as they are, tested by exact type before any ABC check.
_SCALARS = frozenset({str, int, bool, float, type(None)})


def freeze(value: Any) -> Any:
    """Deep-copy a JSON value into :class:`FrozenDict`/:class:`FrozenList`."""
    t = type(value)
    if t is dict:
        return _freeze_dict(value)
    if t is list:
        return _freeze_list(value)
    if t in _SCALARS or t is FrozenDict or t is FrozenList:
        return value
    return _freeze_other(value)


def _freeze_dict(value: dict[Any, Any]) -> FrozenDict:
    d: dict[Any, Any] = {}
    for k, v in value.items():
        t = type(v)
        if t is dict:
            d[k] = _freeze_dict(v)
        elif t is list:
            d[k] = _freeze_list(v)
        elif t in _SCALARS:
            d[k] = v
        else:
            d[k] = freeze(v)
    return FrozenDict(d)


def _freeze_list(value: list[Any]) -> FrozenList:
    items: list[Any] = []
    for v in value:
        t = type(v)
        if t is dict:
            items.append(_freeze_dict(v))
        elif t is list:
            items.append(_freeze_list(v))
        elif t in _SCALARS:
            items.append(v)
        else:
            items.append(freeze(v))
    return FrozenList(items)


def _freeze_other(value: Any) -> Any:
    # Subclasses, other mappings and tuples: the general rules.
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


class _NotPlain(Exception):
    """Raised by :func:`_freeze_plain` for anything :func:`_plain_ok` would refuse."""


def _integer_range(strict: bool) -> tuple[int, int]:
    return _STRICT_RANGE if strict else _LENIENT_RANGE


def _freeze_plain(value: Any, strict: bool) -> Any:
    """Check and deep-freeze in one walk: ``freeze(thaw(value))`` for a tree that
    :func:`_plain_ok` accepts (every container is a fresh frozen copy, even frozen input).

    Raises :class:`_NotPlain` otherwise; the caller then takes the general path, which
    reports (or accepts, e.g. floats in old rooms) exactly as before. The C version, when
    built, does the same walk (tests/protocol/test_speedups.py).
    """
    lo, hi = _STRICT_RANGE if strict else _LENIENT_RANGE
    if _c_freeze_plain is not None:
        return _c_freeze_plain(value, lo, hi)
    return _freeze_plain_node(value, lo, hi, 0)


def _freeze_plain_node(value: Any, lo: int, hi: int, depth: int) -> Any:
    t = type(value)
    if t is dict or t is FrozenDict:
        if depth >= _MAX_DEPTH:
            raise _NotPlain
        depth += 1
        d = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _NotPlain
            tv = type(v)
            if tv is str or v is None or tv is bool:
                d[k] = v
            elif tv is int:
                if not lo <= v <= hi:
                    raise _NotPlain
                d[k] = v
            else:
                d[k] = _freeze_plain_node(v, lo, hi, depth)
        return FrozenDict(d)
    if t is list or t is FrozenList:
        if depth >= _MAX_DEPTH:
            raise _NotPlain
        depth += 1
        items = []
        for v in value:
            tv = type(v)
            if tv is str or v is None or tv is bool:
                items.append(v)
            elif tv is int:
                if not lo <= v <= hi:
                    raise _NotPlain
                items.append(v)
            else:
                items.append(_freeze_plain_node(v, lo, hi, depth))
        return FrozenList(items)
    if t is str or value is None or t is bool or (t is int and lo <= value <= hi):
        return value
    raise _NotPlain


_c_freeze_plain: Callable[[object, int, int], Any] | None
# For ruma.protocol.events and .redaction: the C shape checks of a PDU's top level, and
# the redacted view.
_c_pdu_fields: Callable[[dict[str, Any], int], Any] | None
_c_freeze_pdu: Callable[[object, int, int, int], tuple[Any, Any]] | None
_c_signable_view: Callable[[dict[str, Any], frozenset[str], dict[str, Any], bool], Any] | None
_c_without: Callable[[dict[str, Any], frozenset[str]], dict[str, Any]] | None
_c_redacted_view: Callable[[dict[str, Any], frozenset[str], tuple[str, ...] | None], dict[str, Any]] | None
try:
    from ruma.protocol import _speedups
except ImportError:  # pragma: no cover - built without a C compiler: the Python walk
    _c_freeze_plain = None
    _c_pdu_fields = None
    _c_freeze_pdu = None
    _c_redacted_view = None
    _c_without = None
    _c_signable_view = None
else:
    _speedups.init(FrozenDict, FrozenList, _NotPlain)
    _c_freeze_plain = _speedups.freeze_plain
    _c_pdu_fields = _speedups.pdu_fields
    _c_freeze_pdu = _speedups.freeze_pdu
    _c_redacted_view = _speedups.redacted_view
    _c_without = _speedups.without
    _c_signable_view = _speedups.signable_view


def thaw(value: Any) -> Any:
    """Deep-copy a (possibly frozen) JSON value into plain mutable dicts and lists."""
    t = type(value)
    if t is dict or t is FrozenDict:
        return _thaw_dict(value)
    if t is list or t is FrozenList:
        return _thaw_list(value)
    if t in _SCALARS:
        return value
    return _thaw_other(value)


def _thaw_dict(value: dict[Any, Any]) -> dict[Any, Any]:
    d = {}
    for k, v in value.items():
        t = type(v)
        if t in _SCALARS:
            d[k] = v
        elif t is dict or t is FrozenDict:
            d[k] = _thaw_dict(v)
        elif t is list or t is FrozenList:
            d[k] = _thaw_list(v)
        else:
            d[k] = _thaw_other(v)
    return d


def _thaw_list(value: list[Any]) -> list[Any]:
    items = []
    for v in value:
        t = type(v)
        if t in _SCALARS:
            items.append(v)
        elif t is dict or t is FrozenDict:
            items.append(_thaw_dict(v))
        elif t is list or t is FrozenList:
            items.append(_thaw_list(v))
        else:
            items.append(_thaw_other(v))
    return items


def _thaw_other(value: Any) -> Any:
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
