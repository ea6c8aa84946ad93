"""Full-text search over room events: SQLite FTS5 or PostgreSQL ``tsvector``.

:func:`index_search_txn` adds an event's searchable value (``content.body`` of
``m.room.message``, ``content.name`` of ``m.room.name``, ``content.topic`` of
``m.room.topic``) inside the transaction that persists it (called from
:mod:`ruma.storage.event_index`); :func:`unindex_search_txn` removes it when the event is
redacted.

SQLite keeps the values in ``event_search`` and an external-content FTS5 table
``event_search_fts`` (porter stemming) beside it, kept in step here; rank is ``-bm25``.
PostgreSQL keeps a ``tsvector`` (``english`` configuration) per row with a GIN index; rank
is ``ts_rank``. Both match every word of the search term as a prefix.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ruma.protocol.events import Event
from ruma.storage.database import Database, Engine, Txn

__all__ = [
    "SEARCH_KEYS",
    "SearchHit",
    "SearchStore",
    "index_search_txn",
    "search_words",
    "unindex_search_txn",
]

# Event type -> (search key, content field).
SEARCH_KEYS: dict[str, tuple[str, str]] = {
    "m.room.message": ("content.body", "body"),
    "m.room.name": ("content.name", "name"),
    "m.room.topic": ("content.topic", "topic"),
}

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORDS = 16


def search_words(term: str) -> list[str]:
    """The words of a search term, lower-cased, in order, without repeats."""
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(term)))[:MAX_WORDS]


@dataclass(frozen=True, slots=True)
class SearchHit:
    event_id: str
    room_id: str
    rank: float
    stream_position: int


def index_search_txn(txn: Txn, event: Event, position: int) -> None:
    if event.type not in SEARCH_KEYS:
        return
    key, field = SEARCH_KEYS[event.type]
    if key == "content.body" and event.state_key is not None:
        return
    value = event.content.get(field)
    if not isinstance(value, str) or not value.strip():
        return
    if txn.select_one("SELECT 1 FROM event_search WHERE event_id = ?", (event.event_id,)):
        return
    params = (
        event.event_id,
        event.room_id,
        key,
        event.sender,
        value,
        position,
        event.origin_server_ts,
    )
    columns = "event_id, room_id, key, sender, value, stream_position, origin_server_ts"
    if txn.engine is Engine.POSTGRES:
        txn.execute(
            f"INSERT INTO event_search ({columns}, vector)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, to_tsvector('english', ?))",
            (*params, value),
        )
        return
    txn.execute(f"INSERT INTO event_search ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?)", params)
    row = txn.select_one("SELECT last_insert_rowid()")
    assert row is not None
    txn.execute(
        "INSERT INTO event_search_fts (rowid, value) VALUES (?, ?)", (int(row[0]), value)
    )


def unindex_search_txn(txn: Txn, event_id: str) -> None:
    if txn.engine is Engine.SQLITE:
        row = txn.select_one(
            "SELECT rowid, value FROM event_search WHERE event_id = ?", (event_id,)
        )
        if row is None:
            return
        # External content: FTS5 is told the old value to delete it from its index.
        txn.execute(
            "INSERT INTO event_search_fts (event_search_fts, rowid, value)"
            " VALUES ('delete', ?, ?)",
            (int(row[0]), row[1]),
        )
    txn.execute("DELETE FROM event_search WHERE event_id = ?", (event_id,))


def _fts5_query(words: Sequence[str]) -> str:
    # Each word quoted (so FTS5 syntax characters are literal) and matched as a prefix.
    return " ".join('"' + w.replace('"', '""') + '"*' for w in words)


def _tsquery(words: Sequence[str]) -> str:
    # Words are \w+ only, so nothing in them is tsquery syntax.
    return " & ".join(f"{w}:*" for w in words)


class SearchStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(
        self,
        room_ids: Collection[str],
        words: Sequence[str],
        *,
        keys: Collection[str],
        order_by_rank: bool,
        offset: int,
        before_position: int | None,
        limit: int,
        senders: Collection[str] | None = None,
        not_senders: Collection[str] = (),
    ) -> tuple[list[SearchHit], int]:
        """Matching events in ``room_ids`` and the total number of matches.

        ``order_by_rank``: best first, skipping ``offset``; otherwise newest first, below
        ``before_position`` if given.
        """
        rooms = sorted(set(room_ids))
        key_list = sorted(set(keys))
        if not rooms or not words or not key_list or limit <= 0:
            return [], 0

        def txn_fn(txn: Txn) -> tuple[list[SearchHit], int]:
            where = (
                f" AND s.room_id IN ({','.join('?' for _ in rooms)})"
                f" AND s.key IN ({','.join('?' for _ in key_list)})"
            )
            params: list[Any] = [*rooms, *key_list]
            if senders is not None:
                sl = sorted(set(senders))
                if not sl:
                    return [], 0
                where += f" AND s.sender IN ({','.join('?' for _ in sl)})"
                params += sl
            nl = sorted(set(not_senders))
            if nl:
                where += f" AND s.sender NOT IN ({','.join('?' for _ in nl)})"
                params += nl
            if txn.engine is Engine.POSTGRES:
                base = (
                    " FROM event_search s, to_tsquery('english', ?) q"
                    " WHERE s.vector @@ q" + where
                )
                rank = "ts_rank(s.vector, q)"
                match_params: list[Any] = [_tsquery(words), *params]
            else:
                base = (
                    " FROM event_search_fts f JOIN event_search s ON s.rowid = f.rowid"
                    " WHERE event_search_fts MATCH ?" + where
                )
                rank = "-bm25(event_search_fts)"
                match_params = [_fts5_query(words), *params]
            count_row = txn.select_one("SELECT COUNT(*)" + base, match_params)
            count = int(count_row[0]) if count_row else 0
            select = f"SELECT s.event_id, s.room_id, {rank}, s.stream_position" + base
            if order_by_rank:
                rows = txn.select(
                    select + " ORDER BY 3 DESC, s.stream_position DESC LIMIT ? OFFSET ?",
                    [*match_params, limit, offset],
                )
            else:
                extra = ""
                extra_params: list[Any] = []
                if before_position is not None:
                    extra = " AND s.stream_position < ?"
                    extra_params.append(before_position)
                rows = txn.select(
                    select + extra + " ORDER BY s.stream_position DESC LIMIT ?",
                    [*match_params, *extra_params, limit],
                )
            hits = [SearchHit(r[0], r[1], float(r[2]), int(r[3])) for r in rows]
            return hits, count

        return await self._db.run("get_search_results", txn_fn)
