"""Indexes kept beside room events, written in the event's own persist transaction.

:meth:`ruma.storage.events.EventStore.persist` calls :func:`index_event_txn` once per
event: a timeline event's relation (:mod:`ruma.storage.relations`) and searchable text
(:mod:`ruma.storage.search`) are recorded, and a redaction removes its target from both.
"""

from __future__ import annotations

from ruma.protocol.events import Event
from ruma.storage.database import Txn
from ruma.storage.relations import index_relation_txn, unindex_relation_txn
from ruma.storage.search import index_search_txn, unindex_search_txn

__all__ = ["index_event_txn"]


def index_event_txn(
    txn: Txn,
    event: Event,
    position: int | None,
    *,
    redacts: str | None,
    redacted: bool,
) -> None:
    """``position``: the event's timeline position (None: not in the timeline);
    ``redacts``: the event this one redacts, now applied; ``redacted``: the event arrives
    already redacted."""
    if redacts is not None:
        unindex_relation_txn(txn, redacts)
        unindex_search_txn(txn, redacts)
    if position is None or redacted:
        return
    index_relation_txn(txn, event, position)
    index_search_txn(txn, event, position)
