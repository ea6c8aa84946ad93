"""Room events (PDUs): per-version validation, hashing, event IDs, signing and building.

An :class:`Event` is immutable and only ever made by :meth:`Event.from_pdu` (or
:func:`build_event`, which goes through it), so holding one means its shape is valid
for its room version. Whether it is *authorised* is :mod:`ruma.protocol.auth`'s job.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from nacl.exceptions import BadSignatureError

from ruma.protocol.errors import (
    CanonicalJSONError,
    InvalidEvent,
    InvalidIdentifier,
    KeyFormatError,
    SignatureError,
)
from ruma.protocol.ids import EventID, RoomID, UserID
from ruma.protocol.json import (
    FrozenDict,
    _c_freeze_pdu,
    _c_pdu_fields,
    _c_signable_view,
    _c_without,
    _encode_plain,
    _freeze_plain,
    _integer_range,
    _NotPlain,
    _orjson,
    decode_json,
    encode_canonical_json,
    freeze,
    thaw,
)
from ruma.protocol.redaction import _SIGNABLE_ARGS, _redacted_view
from ruma.protocol.room_versions import EventFormat, RoomVersion, get_room_version
from ruma.protocol.signing import (
    ED25519,
    SigningKey,
    VerifyKey,
    _decode_signature,
    decode_base64,
    encode_base64,
    sign_json,
)

__all__ = [
    "MAX_ID_BYTES",
    "MAX_PDU_SIZE",
    "Event",
    "GetVerifyKey",
    "StateKey",
    "add_hashes_and_signature",
    "auth_types_for_event",
    "build_event",
    "check_content_hash",
    "compute_content_hash",
    "compute_event_id",
    "compute_reference_hash",
    "required_signature_servers",
    "verify_event_signatures",
    "verify_events_signatures",
]

StateKey = tuple[str, str]
GetVerifyKey = Callable[[str, str], VerifyKey | None]

MAX_PDU_SIZE = 65536  # bytes of canonical JSON, signatures included
MAX_ID_BYTES = 255  # sender, room_id, type, state_key, event_id

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
REDACTION = "m.room.redaction"


def _strip_for_hashing(pdu: Mapping[str, Any], room_version: RoomVersion | None) -> dict[str, Any]:
    out = dict(pdu)
    # After v1/v2 the event ID is derived from the hash, so it can't be part of it.
    if room_version is not None and room_version.event_format is not EventFormat.V1:
        out.pop("event_id", None)
    return out


_STRICT_INTS = _integer_range(True)
_LENIENT_INTS = _integer_range(False)
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")

_NOT_CONTENT_HASHED = frozenset({"unsigned", "signatures", "hashes", "age_ts"})
_NOT_CONTENT_HASHED_NO_ID = _NOT_CONTENT_HASHED | {"event_id"}


def compute_content_hash(pdu: Mapping[str, Any], room_version: RoomVersion | None = None) -> bytes:
    """SHA-256 of the canonical JSON of ``pdu`` without unsigned, signatures and hashes.

    ``age_ts`` is dropped too: old servers put it at top level and excluded it.
    Pass ``room_version`` to drop a stray ``event_id`` from hash-ID versions.
    """
    # The same keys _strip_for_hashing and the pops remove, in one shallow copy.
    drop = (
        _NOT_CONTENT_HASHED_NO_ID
        if room_version is not None and room_version.event_format is not EventFormat.V1
        else _NOT_CONTENT_HASHED
    )
    d = {k: v for k, v in pdu.items() if k not in drop}
    return hashlib.sha256(encode_canonical_json(d, strict=False)).digest()


def _redacted_signable(pdu: Mapping[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    # The redacted event without signatures/unsigned, sharing pdu's values (not copied).
    return _redacted_view(pdu, room_version, signable=True)


def _redacted_bytes(pdu: Mapping[str, Any], room_version: RoomVersion, strict: bool) -> bytes:
    """Canonical JSON of the redacted ``pdu`` without signatures and unsigned: the bytes
    the reference hash hashes and the origin's signatures sign (``pdu`` already stripped
    of a hash-ID version's ``event_id``)."""
    return encode_canonical_json(_redacted_signable(pdu, room_version), strict=strict)


def compute_reference_hash(pdu: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """SHA-256 of the redacted event without signatures/unsigned (spec "reference hash")."""
    stripped = _strip_for_hashing(pdu, room_version)
    return hashlib.sha256(_redacted_bytes(stripped, room_version, strict=False)).digest()


def compute_event_id(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """The event ID: from the PDU for the V1 format, else ``$`` + the reference hash."""
    fmt = room_version.event_format
    if fmt is EventFormat.V1:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise InvalidEvent("event_id", "required in this room version")
        return event_id
    digest = compute_reference_hash(pdu, room_version)
    return "$" + encode_base64(digest, urlsafe=fmt is not EventFormat.V2)


def check_content_hash(pdu: Mapping[str, Any], room_version: RoomVersion | None = None) -> bool:
    """Whether ``hashes.sha256`` matches the content. A mismatch means "redact", not reject."""
    try:
        hashes = pdu.get("hashes")
        if not isinstance(hashes, Mapping):
            return False
        claimed = hashes.get("sha256")
        if not isinstance(claimed, str):
            return False
        return decode_base64(claimed) == compute_content_hash(pdu, room_version)
    except (KeyFormatError, CanonicalJSONError):
        return False


def add_hashes_and_signature(
    pdu: Mapping[str, Any],
    room_version: RoomVersion,
    server_name: str,
    signing_key: SigningKey,
) -> dict[str, Any]:
    """Return a new PDU with ``hashes.sha256`` set and our signature over its redacted form."""
    out: dict[str, Any] = _strip_for_hashing(thaw(pdu), room_version)
    hashes = out.get("hashes")
    out["hashes"] = dict(hashes) if isinstance(hashes, Mapping) else {}
    out["hashes"]["sha256"] = encode_base64(compute_content_hash(out, room_version))
    # sign_json neither mutates nor keeps its argument, so the uncopied view will do.
    redacted = _redacted_view(out, room_version)
    signed = sign_json(
        redacted, server_name, signing_key, strict=room_version.strict_canonicaljson
    )
    out["signatures"] = signed["signatures"]
    return out


def _bad(field: str, reason: str) -> NoReturn:
    raise InvalidEvent(field, reason)


def _check_id_len(field: str, value: str) -> None:
    if value.isascii():
        # One byte per character and nothing unencodable: no need to encode.
        if len(value) > MAX_ID_BYTES:
            _bad(field, f"longer than {MAX_ID_BYTES} bytes")
        return
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        _bad(field, "not valid Unicode")
    if n > MAX_ID_BYTES:
        _bad(field, f"longer than {MAX_ID_BYTES} bytes")


def _require_str(pdu: Mapping[str, Any], field: str) -> str:
    v = pdu.get(field)
    if not isinstance(v, str):
        _bad(field, "missing or not a string")
    return v


def _require_int(pdu: Mapping[str, Any], field: str) -> int:
    v = pdu.get(field)
    if not isinstance(v, int) or isinstance(v, bool):
        _bad(field, "missing or not an integer")
    return v


def _event_refs(pdu: Mapping[str, Any], field: str, fmt: EventFormat) -> tuple[str, ...]:
    refs = pdu.get(field)
    if not isinstance(refs, list):
        _bad(field, "missing or not a list")
    if fmt is not EventFormat.V1:
        for ref in refs:
            if type(ref) is not str or not ref.startswith("$"):
                _bad(field, "entries must be event IDs")
            if len(ref) > MAX_ID_BYTES or not ref.isascii():
                _check_id_len(field, ref)
        return tuple(refs)
    ids: list[str] = []
    for ref in refs:
        # [[event_id, {"sha256": reference hash}], ...]
        if not (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[1], Mapping)):
            _bad(field, "entries must be [event_id, hashes] pairs")
        ref = ref[0]
        if not isinstance(ref, str) or not ref.startswith("$"):
            _bad(field, "entries must be event IDs")
        _check_id_len(field, ref)
        ids.append(ref)
    return tuple(ids)


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


_Fields = tuple[str, str, str | None, Mapping[str, Any], int, int, tuple[str, ...], tuple[str, ...]]


def _pdu_fields(d: FrozenDict, room_version: RoomVersion) -> _Fields:
    """The shape checks on a PDU's top level: (type, sender, state_key, content, depth,
    origin_server_ts, prev event IDs, auth event IDs). The C ``pdu_fields`` does the same
    for the common case and leaves the rest, and every error, to this."""
    fmt = room_version.event_format
    event_type = _require_str(d, "type")
    _check_id_len("type", event_type)
    sender = _require_str(d, "sender")
    _check_sender(sender)

    state_key = d.get("state_key")
    if state_key is not None:
        if not isinstance(state_key, str):
            _bad("state_key", "not a string")
        _check_id_len("state_key", state_key)
    elif "state_key" in d:
        _bad("state_key", "null")

    content = d.get("content")
    if not isinstance(content, dict):
        _bad("content", "missing or not an object")

    depth = _require_int(d, "depth")
    if not 0 <= depth <= room_version.max_depth:
        _bad("depth", "out of range")
    origin_server_ts = _require_int(d, "origin_server_ts")

    if not _is_str_map(d.get("hashes")):
        _bad("hashes", "missing or not an object of strings")
    signatures = d.get("signatures")
    if not isinstance(signatures, dict) or not all(map(_is_str_map, signatures.values())):
        _bad("signatures", "missing or not an object of objects of strings")
    if "unsigned" in d and not isinstance(d["unsigned"], dict):
        _bad("unsigned", "not an object")
    if "origin" in d and not isinstance(d["origin"], str):
        _bad("origin", "not a string")

    prev_ids = _event_refs(d, "prev_events", fmt)
    auth_ids = _event_refs(d, "auth_events", fmt)
    return (event_type, sender, state_key, content, depth, origin_server_ts, prev_ids, auth_ids)


# Identifier strings already found valid. A stream of PDUs names the same few senders and
# rooms over and over; parsing each against the grammar again was most of the cost of
# checking an event's shape. Only valid strings are remembered, so a memo can never let
# a bad one through; each is emptied when full.
_MEMO_SIZE = 4096
_valid_senders: dict[str, bool] = {}
# Room ID -> whether it is the v12 hash form.
_valid_room_ids: dict[str, bool] = {}


def _remember(memo: dict[str, bool], s: str, value: bool) -> None:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo[s] = value


def _check_sender(sender: str) -> None:
    if sender in _valid_senders:
        return
    _check_id_len("sender", sender)
    try:
        UserID.parse(sender)
    except InvalidIdentifier as e:
        _bad("sender", str(e))
    _remember(_valid_senders, sender, True)


def _check_room_id(room_id: str) -> bool:
    """Validate ``room_id``; whether it is the v12 hash form."""
    hash_form = _valid_room_ids.get(room_id)
    if hash_form is not None:
        return hash_form
    _check_id_len("room_id", room_id)
    try:
        hash_form = RoomID.parse(room_id).is_hash_form
    except InvalidIdentifier as e:
        _bad("room_id", str(e))
    _remember(_valid_room_ids, room_id, hash_form)
    return hash_form


class _EventSlots:
    """An :class:`Event`'s storage. :meth:`Event.from_pdu` fills a bare one in with plain
    attribute writes and then makes it an Event, which refuses writes (assigning
    ``__class__`` is allowed between classes of the same slots; it is several times
    cheaper than a dozen ``object.__setattr__`` calls, on every event received)."""

    __slots__ = (
        "_derived",
        "_pdu",
        "_plain",
        "_redacted_bytes",
        "auth_event_ids",
        "content",
        "depth",
        "event_id",
        "origin_server_ts",
        "prev_event_ids",
        "room_id",
        "room_version",
        "sender",
        "state_key",
        "type",
    )

    # What the auth rules work out from this event once and ask again for every event
    # they check against it (parsed power levels): None until then. Never copied to a
    # redacted or re-unsigned copy.
    _derived: Any
    _pdu: FrozenDict
    # Whether _pdu holds only exact dict/list/str/int/bool/None within the version's
    # integer range: then it can go straight to the C encoder, with no checking walk.
    _plain: bool
    # Canonical JSON of the redacted PDU without signatures/unsigned: what the reference
    # hash hashes and what signatures cover. Kept from from_pdu (hash-ID versions compute
    # it for the event ID anyway) so verify_event_signatures needn't redact and encode
    # again; None until needed otherwise (see _signed_bytes).
    _redacted_bytes: bytes | None
    room_version: RoomVersion
    event_id: str
    room_id: str
    sender: str
    type: str
    state_key: str | None
    content: Mapping[str, Any]
    prev_event_ids: tuple[str, ...]
    auth_event_ids: tuple[str, ...]
    depth: int
    origin_server_ts: int


class Event(_EventSlots):
    """A validated, immutable PDU of a known room version.

    ``content`` and the other JSON-valued attributes are deep-frozen
    (:class:`~ruma.protocol.json.FrozenDict`/``FrozenList``, which are ``dict``/``list``
    subclasses that refuse mutation). Use :meth:`pdu` for a mutable copy.
    Equality and hashing are by event ID.
    """

    __slots__ = ()

    def __init__(self) -> None:
        raise TypeError("use Event.from_pdu() or build_event()")

    @classmethod
    def from_pdu(cls, pdu: Mapping[str, Any], room_version: RoomVersion) -> Event:
        """Validate ``pdu`` for ``room_version`` and wrap it; raises only InvalidEvent."""
        try:
            return cls._from_pdu(pdu, room_version)
        except InvalidEvent:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
            # Belt and braces: hostile input must never escape as anything else.
            raise InvalidEvent("pdu", f"malformed: {type(e).__name__}") from e

    @classmethod
    def _from_pdu(
        cls,
        pdu: Mapping[str, Any],
        room_version: RoomVersion,
        *,
        fast_only: bool = False,
        text_size: int | None = None,
    ) -> Event:
        if type(pdu) is not dict and not isinstance(pdu, Mapping):
            _bad("pdu", "not a JSON object")
        strict = room_version.strict_canonicaljson
        fmt = room_version.event_format
        fields: _Fields | None = None
        try:
            try:
                # One walk checks canonical-ness and makes the frozen copy we keep (in C,
                # with the top level's shape checks, when the extension is built).
                if _c_freeze_pdu is not None and fmt is not EventFormat.V1:
                    frozen, fields = _c_freeze_pdu(
                        pdu, *(_STRICT_INTS if strict else _LENIENT_INTS), room_version.max_depth
                    )
                else:
                    frozen = _freeze_plain(pdu, strict)
                plain = True
                # Canonical JSON of a plain tree is never longer than any JSON text that
                # decodes to it (no whitespace, minimal escapes, integer literals only),
                # so a text within the limit needs no encoding to prove it.
                if text_size is None or text_size > MAX_PDU_SIZE:
                    if len(_encode_plain(frozen)) > MAX_PDU_SIZE:
                        _bad("pdu", f"larger than {MAX_PDU_SIZE} bytes")
            except _NotPlain:
                if fast_only:
                    raise
                # Floats, big ints, tuples, other mappings...: the general path decides.
                plain = False
                encoded = encode_canonical_json(pdu, strict=strict)
                frozen = freeze(thaw(pdu))
                if len(encoded) > MAX_PDU_SIZE:
                    _bad("pdu", f"larger than {MAX_PDU_SIZE} bytes")
        except CanonicalJSONError as e:
            _bad("pdu", f"not canonical JSON for this room version: {e}")
        d: FrozenDict = frozen
        if fields is None:
            if fmt is not EventFormat.V1 and "event_id" in d:
                # As _strip_for_hashing: the ID is derived from the hash, so not part of it.
                d = FrozenDict({k: v for k, v in d.items() if k != "event_id"})
            if plain and _c_pdu_fields is not None and fmt is not EventFormat.V1:
                fields = _c_pdu_fields(d, room_version.max_depth)
            if fields is None:
                fields = _pdu_fields(d, room_version)
        event_type, sender, state_key, content, depth, origin_server_ts, prev_ids, auth_ids = (
            fields
        )
        if sender not in _valid_senders:
            _check_sender(sender)

        if event_type == REDACTION:
            # Only meaningful on redactions; elsewhere these are just unknown keys.
            if "redacts" in d and not isinstance(d["redacts"], str):
                _bad("redacts", "not a string")
            if room_version.updated_redaction_rules and "redacts" in content:
                if not isinstance(content["redacts"], str):
                    _bad("content.redacts", "not a string")

        is_v12_create = fmt is EventFormat.V4 and event_type == CREATE and state_key == ""
        if is_v12_create:
            if "room_id" in d:
                _bad("room_id", "the create event of this room version has no room_id")
            if auth_ids:
                _bad("auth_events", "the create event has no auth events")
        else:
            given: Any = d.get("room_id")
            hash_form = _valid_room_ids.get(given) if type(given) is str else None
            if hash_form is not None:
                room_id = given
            else:
                room_id = _require_str(d, "room_id")
                hash_form = _check_room_id(room_id)
            if fmt is EventFormat.V4 and not hash_form:
                _bad("room_id", "must be derived from the create event in this room version")

        redacted_bytes: bytes | None = None
        if fmt is EventFormat.V1:
            event_id = _require_str(d, "event_id")
            _check_id_len("event_id", event_id)
            try:
                parsed_id = EventID.parse(event_id)
            except InvalidIdentifier as e:
                _bad("event_id", str(e))
            if parsed_id.server is None:
                _bad("event_id", "must be '$opaque:server' in this room version")
        else:
            # compute_event_id, keeping the bytes: with the whole PDU valid for this
            # version, strict and lenient encodings of its redacted form are the same.
            try:
                view = (
                    _c_signable_view(d, *_SIGNABLE_ARGS[room_version.redaction_rules])
                    if plain and _c_signable_view is not None
                    else None
                )
                if view is not None and _orjson is not None:
                    # Plain values from a plain PDU: orjson encodes them canonically.
                    redacted_bytes = _orjson.dumps(view, option=_orjson.OPT_SORT_KEYS)
                elif view is not None:
                    redacted_bytes = _encode_plain(view)
                elif plain:
                    redacted_bytes = _encode_plain(_redacted_signable(d, room_version))
                else:
                    redacted_bytes = _redacted_bytes(d, room_version, strict=False)
            except CanonicalJSONError as e:
                _bad("pdu", str(e))
            digest = hashlib.sha256(redacted_bytes).digest()
            b64 = binascii.b2a_base64(digest, newline=False)[:43]
            if fmt is not EventFormat.V2:
                b64 = b64.translate(_TO_URLSAFE)
            event_id = "$" + b64.decode("ascii")
        if is_v12_create:
            room_id = "!" + event_id[1:]

        ev = object.__new__(_EventSlots)
        ev._derived = None
        ev._pdu = d
        ev._plain = plain
        ev._redacted_bytes = redacted_bytes
        ev.room_version = room_version
        ev.event_id = event_id
        ev.room_id = room_id
        ev.sender = sender
        ev.type = event_type
        ev.state_key = state_key
        ev.content = content
        ev.prev_event_ids = prev_ids
        ev.auth_event_ids = auth_ids
        ev.depth = depth
        ev.origin_server_ts = origin_server_ts
        ev.__class__ = cls
        return ev  # type: ignore[return-value]  # an Event from the line above

    @classmethod
    def from_json(cls, data: bytes | str, room_version: RoomVersion) -> Event:
        """Decode one PDU's JSON text and validate it, as :meth:`from_pdu`.

        The decoded tree is ours alone, so the one walk that checks canonical-JSON rules
        and freezes it is the only pass over it in Python. Raises only InvalidEvent.
        """
        if _orjson is not None:
            try:
                pdu = _orjson.loads(data)
            except (ValueError, TypeError, RecursionError):
                pass  # decode_json below names the problem (or parses what orjson won't)
            else:
                if type(pdu) is dict:
                    try:
                        return cls._from_pdu(
                            pdu,
                            room_version,
                            fast_only=True,
                            # Bytes, not characters: the size limit is in bytes.
                            text_size=len(data) if type(data) is bytes else None,
                        )
                    except _NotPlain:
                        pass  # floats or huge integers: decode_json reads them exactly
                    except InvalidEvent:
                        raise
                    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
                        raise InvalidEvent("pdu", f"malformed: {type(e).__name__}") from e
        try:
            pdu = decode_json(data, strict=room_version.strict_canonicaljson)
        except CanonicalJSONError as e:
            raise InvalidEvent("pdu", f"not canonical JSON for this room version: {e}") from e
        return cls.from_pdu(pdu, room_version)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Event is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Event is immutable")

    def __reduce__(self) -> tuple[Callable[..., Event], tuple[dict[str, Any], str]]:
        return (_unpickle_event, (self.pdu(), self.room_version.identifier))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.event_id == other.event_id

    def __hash__(self) -> int:
        return hash(self.event_id)

    def __repr__(self) -> str:
        sk = "" if self.state_key is None else f", state_key={self.state_key!r}"
        return f"<Event {self.event_id} {self.type}{sk} v{self.room_version.identifier}>"

    # -- derived views -------------------------------------------------------------------

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def state_key_tuple(self) -> StateKey:
        if self.state_key is None:
            raise ValueError(f"{self.event_id} is not a state event")
        return (self.type, self.state_key)

    @property
    def membership(self) -> str | None:
        if self.type != MEMBER:
            return None
        m = self.content.get("membership")
        return m if isinstance(m, str) else None

    @property
    def redacts(self) -> str | None:
        """The redacted event's ID: ``content.redacts`` from v11, else the top-level key."""
        if self.room_version.updated_redaction_rules:
            r = self.content.get("redacts")
            if isinstance(r, str):
                return r
        r = self._pdu.get("redacts")
        return r if isinstance(r, str) else None

    @property
    def hashes(self) -> Mapping[str, str]:
        h: Mapping[str, str] = self._pdu["hashes"]
        return h

    @property
    def signatures(self) -> Mapping[str, Mapping[str, str]]:
        s: Mapping[str, Mapping[str, str]] = self._pdu["signatures"]
        return s

    @property
    def unsigned(self) -> Mapping[str, Any]:
        u: Mapping[str, Any] = self._pdu.get("unsigned", FrozenDict())
        return u

    @property
    def origin(self) -> str | None:
        o = self._pdu.get("origin")
        return o if isinstance(o, str) else None

    @property
    def prev_events(self) -> Sequence[Any]:
        """The raw ``prev_events`` (pairs in the V1 format); prefer :attr:`prev_event_ids`."""
        p: Sequence[Any] = self._pdu["prev_events"]
        return p

    @property
    def auth_events(self) -> Sequence[Any]:
        a: Sequence[Any] = self._pdu["auth_events"]
        return a

    def pdu(self) -> dict[str, Any]:
        """A mutable deep copy of the PDU as sent over federation.

        It has ``event_id`` only in the V1 format and no ``room_id`` for v12 create events.
        """
        out: dict[str, Any] = thaw(self._pdu)
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """Read any top-level PDU key (frozen)."""
        return self._pdu.get(key, default)

    def redacted(self) -> Event:
        """This event with the room version's redaction algorithm applied."""
        # _pdu is frozen throughout, so the uncopied view freezes to an equal value.
        return self._replace_pdu(_redacted_view(self._pdu, self.room_version), same_signed=False)

    def with_unsigned(self, unsigned: Mapping[str, Any] | None) -> Event:
        """A copy with ``unsigned`` replaced; hashes, signatures and ID are unaffected."""
        d = dict(self._pdu)
        if unsigned is None:
            d.pop("unsigned", None)
        else:
            d["unsigned"] = unsigned
        return self._replace_pdu(d, same_signed=True)

    def _replace_pdu(self, d: Mapping[str, Any], *, same_signed: bool) -> Event:
        # Neither redaction nor unsigned changes the ID or shape, so skip revalidation.
        ev = object.__new__(Event)
        frozen = freeze(d)
        for name in _EventSlots.__slots__:
            object.__setattr__(ev, name, getattr(self, name))
        object.__setattr__(ev, "_pdu", frozen)
        object.__setattr__(ev, "_derived", None)
        object.__setattr__(ev, "_plain", self._plain and not same_signed)
        object.__setattr__(ev, "content", frozen.get("content", FrozenDict()))
        if not same_signed:
            object.__setattr__(ev, "_redacted_bytes", None)
        return ev

    def content_hash_matches(self) -> bool:
        """Whether ``hashes.sha256`` matches the content (:func:`check_content_hash`),
        computed on the frozen PDU without copying it. A mismatch means "redact"."""
        claimed = self._pdu["hashes"].get("sha256")
        if type(claimed) is not str:
            return False
        if not self._plain:
            return check_content_hash(self._pdu, self.room_version)
        # (_pdu has no event_id in the hash-ID formats: from_pdu dropped it.)
        pdu = self._pdu
        d = (
            _c_without(pdu, _NOT_CONTENT_HASHED)
            if _c_without is not None
            else {k: v for k, v in pdu.items() if k not in _NOT_CONTENT_HASHED}
        )
        digest = hashlib.sha256(_encode_plain(d)).digest()
        # What the spec says servers send (unpadded standard base64 of the 32 bytes: 43
        # characters) compares as text; any other spelling of the same bytes is decoded.
        if binascii.b2a_base64(digest, newline=False)[:43].decode("ascii") == claimed:
            return True
        try:
            return decode_base64(claimed) == digest
        except KeyFormatError:
            return False

    def _signed_bytes(self) -> bytes:
        """What the signatures on this event cover (see ``_redacted_bytes``)."""
        b = self._redacted_bytes
        if b is None:
            strict = self.room_version.strict_canonicaljson
            b = _redacted_bytes(self._pdu, self.room_version, strict)
            object.__setattr__(self, "_redacted_bytes", b)
        return b


def _unpickle_event(pdu: dict[str, Any], room_version_id: str) -> Event:
    return Event.from_pdu(pdu, get_room_version(room_version_id))


def build_event(
    room_version: RoomVersion,
    *,
    room_id: str | None,
    sender: str,
    type: str,
    content: Mapping[str, Any],
    state_key: str | None = None,
    prev_events: Sequence[Event],
    auth_events: Sequence[Event],
    depth: int | None = None,
    origin_server_ts: int,
    server_name: str,
    signing_key: SigningKey,
    redacts: str | None = None,
    unsigned: Mapping[str, Any] | None = None,
    event_id_localpart: str | None = None,
) -> Event:
    """Build, hash and sign a new event for ``room_version``.

    ``event_id_localpart`` is required for the V1 format (rooms v1/v2) and ignored
    otherwise; the caller supplies it so this module stays free of randomness.
    Raises ``ValueError`` for builder misuse and :class:`InvalidEvent` if the result
    is not a valid event (e.g. floats in the content of a v6+ room).
    """
    fmt = room_version.event_format
    is_v12_create = fmt is EventFormat.V4 and type == CREATE and state_key == ""
    if is_v12_create:
        if room_id is not None:
            raise ValueError("v12 create events have no room_id")
    elif room_id is None:
        raise ValueError("room_id is required")

    if fmt is EventFormat.V4:
        # v12: the create event is implied by the room ID, never an auth event.
        auth_events = [e for e in auth_events if not (e.type == CREATE and e.state_key == "")]

    if depth is None:
        depth = max((e.depth for e in prev_events), default=0) + 1
    depth = min(depth, room_version.max_depth)

    def refs(events: Sequence[Event]) -> list[Any]:
        if fmt is EventFormat.V1:
            return [
                [
                    e.event_id,
                    {"sha256": encode_base64(compute_reference_hash(e.pdu(), e.room_version))},
                ]
                for e in events
            ]
        return [e.event_id for e in events]

    pdu: dict[str, Any] = {
        "type": type,
        "sender": sender,
        "content": thaw(content),
        "prev_events": refs(prev_events),
        "auth_events": refs(auth_events),
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "hashes": {},
        "signatures": {},
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        if room_version.updated_redaction_rules:
            pdu["content"]["redacts"] = redacts
        else:
            pdu["redacts"] = redacts
    if unsigned is not None:
        pdu["unsigned"] = thaw(unsigned)
    if fmt is EventFormat.V1:
        if not event_id_localpart:
            raise ValueError("event_id_localpart is required for this room version")
        pdu["event_id"] = f"${event_id_localpart}:{server_name}"

    try:
        signed = add_hashes_and_signature(pdu, room_version, server_name, signing_key)
    except CanonicalJSONError as e:
        raise InvalidEvent("pdu", str(e)) from e
    return Event.from_pdu(signed, room_version)


def auth_types_for_event(
    room_version: RoomVersion,
    type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> set[StateKey]:
    """The state keys an event's auth_events are chosen from (spec "Auth events selection")."""
    if type == CREATE:
        return set()
    wanted: set[StateKey] = {(POWER_LEVELS, ""), (MEMBER, sender)}
    if not room_version.room_id_from_create_event:
        wanted.add((CREATE, ""))
    if type == MEMBER and state_key is not None:
        wanted.add((MEMBER, state_key))
        membership = content.get("membership")
        if membership in ("join", "invite") or (
            membership == "knock" and room_version.knock_join_rule
        ):
            wanted.add((JOIN_RULES, ""))
        if membership == "invite":
            tpi = content.get("third_party_invite")
            if isinstance(tpi, Mapping):
                signed = tpi.get("signed")
                token = signed.get("token") if isinstance(signed, Mapping) else None
                if isinstance(token, str):
                    wanted.add((THIRD_PARTY_INVITE, token))
        if membership == "join" and room_version.restricted_join_rule:
            via = content.get("join_authorised_via_users_server")
            if isinstance(via, str):
                wanted.add((MEMBER, via))
    return wanted


def _server_of(user_or_event_id: str) -> str | None:
    _, sep, server = user_or_event_id.partition(":")
    return server if sep and server else None


def required_signature_servers(event: Event) -> set[str]:
    """Servers whose signatures the spec requires on ``event`` (server-server API,
    "Validating hashes and signatures on received events")."""
    servers: set[str] = set()
    room_version = event.room_version
    is_member = event.type == MEMBER
    content = event.content
    # A third-party invite may arrive via any server: the sender's check is replaced by
    # the identity server signature that auth checks on content.third_party_invite.
    if not (
        is_member and "third_party_invite" in content and content.get("membership") == "invite"
    ):
        server = _server_of(event.sender)
        if server:
            servers.add(server)
    if room_version.event_format is EventFormat.V1:
        server = _server_of(event.event_id)
        if server:
            servers.add(server)
    if is_member and room_version.restricted_join_rule and content.get("membership") == "join":
        via = content.get("join_authorised_via_users_server")
        if isinstance(via, str):
            server = _server_of(via)
            if server:
                servers.add(server)
    return servers


_ED25519_PREFIX = ED25519 + ":"


def verify_event_signatures(event: Event, get_verify_key: GetVerifyKey) -> None:
    """Check the signatures the spec requires on ``event``, over its redacted form.

    ``get_verify_key(server_name, key_id)`` returns the key, or ``None`` if unknown (or,
    from v5, not valid at ``event.origin_server_ts``; that check is the caller's since
    only it knows the key's ``valid_until_ts``). For each required server at least one
    signature must verify and none with a known key may fail.
    """
    error = _run_checks(_signature_checks(event, get_verify_key))
    if error is not None:
        raise error


def verify_events_signatures(
    events: Sequence[tuple[Event, GetVerifyKey]],
) -> list[SignatureError | None]:
    """:func:`verify_event_signatures` for many events at once, each with its own key
    lookup: each event's error (or ``None``), in order.

    All the Python work (which servers, which keys, decoding the signatures) is done
    first and the ed25519 checks then run back to back. Interleaved with Python, the
    checks run measurably slower (the curve code's tables fall out of the CPU caches), so
    a transaction's or a backfill's events are best checked together.
    """
    plans = [_signature_checks(event, get_verify_key) for event, get_verify_key in events]
    return [_run_checks(plan) for plan in plans]


# One step of checking an event's signatures: an ed25519 check to make (message,
# signature, key, server, key ID), or the error the check stops at.
_Check = tuple[bytes, bytes, VerifyKey, str, str] | SignatureError


def _signature_checks(event: Event, get_verify_key: GetVerifyKey) -> list[_Check]:
    """The steps :func:`verify_event_signatures` takes on ``event``, in its order, up to
    and including the first error it can see without checking a signature."""
    # The bytes are the redacted event's canonical JSON, as verify_signed_json would
    # make them from redact(event.pdu()); the Event keeps them from from_pdu.
    message = event._redacted_bytes
    signatures = event._pdu["signatures"]
    servers = required_signature_servers(event)
    if message is not None and len(servers) == 1:
        # The usual event: one server to check, which signed with one key.
        (server,) = servers
        sigs = signatures.get(server)
        if sigs is not None and len(sigs) == 1:
            ((key_id, sig_text),) = sigs.items()
            if key_id.startswith(_ED25519_PREFIX) and type(sig_text) is str:
                key = get_verify_key(server, key_id)
                sig = _fast_signature(sig_text) if key is not None else None
                if key is not None and sig is not None:
                    return [(message, sig, key, server, key_id)]
    checks: list[_Check] = []
    # Sorted only to make the order (and so the first error) stable; one needs no sort.
    for server in sorted(servers) if len(servers) > 1 else servers:
        sigs = signatures.get(server)
        if not sigs:
            checks.append(SignatureError(f"{event.event_id} is not signed by {server}"))
            return checks
        verified = False
        for key_id in sorted(sigs) if len(sigs) > 1 else sigs:
            if not key_id.startswith(_ED25519_PREFIX):
                continue
            key = get_verify_key(server, key_id)
            if key is None:
                continue
            sig_text = sigs[key_id]
            if not isinstance(sig_text, str):
                checks.append(SignatureError("signature is not a string"))
                return checks
            try:
                sig = _fast_signature(sig_text) or _decode_signature(sig_text)
                if message is None:
                    message = event._signed_bytes()
            except (SignatureError, KeyFormatError, CanonicalJSONError) as e:
                checks.append(
                    e
                    if isinstance(e, SignatureError)
                    else SignatureError(f"cannot canonicalise signed object: {e}")
                )
                return checks
            checks.append((message, sig, key, server, key_id))
            verified = True
        if not verified:
            checks.append(
                SignatureError(f"no known key for any signature of {server} on {event.event_id}")
            )
            return checks
    return checks


def _fast_signature(text: str) -> bytes | None:
    """An ed25519 signature as servers write it (86 characters of unpadded standard
    base64), decoded; ``None`` for any other spelling, which the general decoder takes."""
    if len(text) != 86:
        return None
    try:
        return binascii.a2b_base64(text + "==", strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def _run_checks(checks: list[_Check]) -> SignatureError | None:
    for check in checks:
        if isinstance(check, SignatureError):
            return check
        message, sig, key, server, key_id = check
        try:
            key.verify(message, sig)
        except BadSignatureError:
            return SignatureError(f"bad signature for {server} {key_id}")
    return None
