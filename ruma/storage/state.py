"""Room state as state groups: a group is its previous group plus a few delta rows.

A state event adds one row to its room's state instead of copying the whole state, so a
room of 10,000 members costs one row per membership change. A chain of deltas is cut by a
full snapshot (``prev_group`` NULL) once it is longer than ``SNAPSHOT_INTERVAL`` and than
``1/SNAPSHOT_FRACTION`` of the state's size. So reading any state reads at most about
``(1 + 1/SNAPSHOT_FRACTION)`` times its size in rows (one query: the chain is followed with
a recursive CTE), while storage stays at about ``SNAPSHOT_FRACTION`` rows per state change
however big the room grows: linear, not quadratic, in the number of state events.
Groups are immutable once committed, which makes them safe to cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from types import MappingProxyType

from ruma.protocol.events import StateKey
from ruma.storage.database import Database, Txn

__all__ = ["SNAPSHOT_INTERVAL", "StateMap", "StateStore"]

StateMap = Mapping[StateKey, str]

# A delta chain may grow to max(SNAPSHOT_INTERVAL, size // SNAPSHOT_FRACTION) groups.
SNAPSHOT_INTERVAL = 100
SNAPSHOT_FRACTION = 20

_CHAIN_SQL = (
    "WITH RECURSIVE chain(g, p) AS ("
    " SELECT state_group, prev_group FROM state_groups WHERE state_group = ?"
    " UNION ALL"
    " SELECT s.state_group, s.prev_group FROM state_groups s JOIN chain c"
    " ON s.state_group = c.p)"
)


KEYS_CACHE_SIZE = 50_000


class _GroupCache:
    """A small LRU of materialised, committed state groups (shared across pool threads)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[int, Mapping[StateKey, str]] = OrderedDict()

    def get(self, group: int) -> Mapping[StateKey, str] | None:
        with self._lock:
            found = self._items.get(group)
            if found is not None:
                self._items.move_to_end(group)
            return found

    def put(self, group: int, state: Mapping[StateKey, str]) -> None:
        with self._lock:
            self._items[group] = state
            self._items.move_to_end(group)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class StateStore:
    """SQL for state groups. Writers call the ``*_txn`` helpers inside their transaction."""

    def __init__(self, db: Database, *, cache_size: int = 32) -> None:
        self._db = db
        self._cache = _GroupCache(cache_size)
        self._keys: OrderedDict[tuple[int, StateKey], str | None] = OrderedDict()
        self._keys_lock = threading.Lock()

    # -- reads -----------------------------------------------------------------------------

    async def get_state_group(self, group: int) -> Mapping[StateKey, str]:
        """The full state of ``group`` (read-only mapping)."""
        cached = self._cache.get(group)
        if cached is not None:
            return cached
        state = await self._db.run("get_state_group", self.load_group_txn, group)
        self._cache.put(group, state)
        return state

    async def get_state_groups(self, groups: Iterable[int]) -> dict[int, Mapping[StateKey, str]]:
        out: dict[int, Mapping[StateKey, str]] = {}
        for group in set(groups):
            out[group] = await self.get_state_group(group)
        return out

    async def get_state_group_keys(
        self, group: int, keys: Collection[StateKey]
    ) -> dict[StateKey, str]:
        """Only ``keys`` of ``group``: cheap even for a group of a very large room."""
        cached = self._cache.get(group)
        if cached is not None:
            return {k: cached[k] for k in keys if k in cached}
        # Committed groups never change, so single keys are cached too (absent ones as None):
        # the auth checks of every message read the same few keys of the same group.
        out: dict[StateKey, str] = {}
        missing: list[StateKey] = []
        with self._keys_lock:
            for k in keys:
                if (group, k) in self._keys:
                    value = self._keys[(group, k)]
                    if value is not None:
                        out[k] = value
                else:
                    missing.append(k)
        if not missing:
            return out
        found = await self._db.run(
            "get_state_group_keys", self.load_group_keys_txn, group, missing
        )
        with self._keys_lock:
            for k in missing:
                self._keys[(group, k)] = found.get(k)
            while len(self._keys) > KEYS_CACHE_SIZE:
                self._keys.popitem(last=False)
        out.update(found)
        return out

    async def get_state_group_members(self, group: int) -> dict[str, str]:
        """The ``m.room.member`` part of ``group``: user ID to event ID."""
        state = await self.get_state_group(group)
        return {sk: eid for (t, sk), eid in state.items() if t == "m.room.member"}

    # -- transaction helpers ---------------------------------------------------------------

    def _chain(self, txn: Txn, group: int) -> list[int]:
        """``group`` and its predecessors back to (and including) the snapshot."""
        rows = txn.select(_CHAIN_SQL + " SELECT g, p FROM chain", (group,))
        prev = {int(r[0]): (int(r[1]) if r[1] is not None else None) for r in rows}
        if group not in prev:
            raise KeyError(f"unknown state group {group}")
        chain: list[int] = []
        current: int | None = group
        while current is not None:
            chain.append(current)
            current = prev[current]
        return chain

    def load_group_txn(self, txn: Txn, group: int) -> Mapping[StateKey, str]:
        cached = self._cache.get(group)
        if cached is not None:
            return cached
        chain = self._chain(txn, group)
        order = {g: i for i, g in enumerate(chain)}
        rows = txn.select(
            _CHAIN_SQL + " SELECT e.state_group, e.type, e.state_key, e.event_id"
            " FROM chain c JOIN state_group_entries e ON e.state_group = c.g",
            (group,),
        )
        # Apply oldest first: the snapshot at the end of the chain, then each delta.
        rows.sort(key=lambda r: -order[int(r[0])])
        state: dict[StateKey, str] = {}
        for _, etype, skey, event_id in rows:
            if event_id is None:
                state.pop((etype, skey), None)
            else:
                state[(etype, skey)] = event_id
        return MappingProxyType(state)

    def load_group_keys_txn(
        self, txn: Txn, group: int, keys: Collection[StateKey]
    ) -> dict[StateKey, str]:
        cached = self._cache.get(group)
        if cached is not None:
            return {k: cached[k] for k in keys if k in cached}
        chain = self._chain(txn, group)
        order = {g: i for i, g in enumerate(chain)}
        out: dict[StateKey, str] = {}
        for etype, skey in keys:
            rows = txn.select(
                _CHAIN_SQL + " SELECT e.state_group, e.event_id FROM chain c"
                " JOIN state_group_entries e ON e.state_group = c.g"
                " WHERE e.type = ? AND e.state_key = ?",
                (group, etype, skey),
            )
            if not rows:
                continue
            newest = min(rows, key=lambda r: order[int(r[0])])
            if newest[1] is not None:
                out[(etype, skey)] = newest[1]
        return out

    def store_group_txn(
        self,
        txn: Txn,
        room_id: str,
        prev_group: int | None,
        changes: Mapping[StateKey, str | None],
    ) -> int:
        """Write a group equal to ``prev_group`` with ``changes`` applied (``None`` removes).

        With no ``prev_group`` the changes are the full state. With no changes the
        existing ``prev_group`` is returned: groups are shared by all events between two
        state changes.
        """
        if prev_group is not None and not changes:
            return prev_group
        group = _allocate_group(txn)
        added = sum(1 for v in changes.values() if v is not None)
        if prev_group is not None:
            row = txn.select_one(
                "SELECT chain_length, approx_size FROM state_groups WHERE state_group = ?",
                (prev_group,),
            )
            if row is None:
                raise KeyError(f"unknown state group {prev_group}")
            chain_length = int(row[0]) + 1
            approx_size = int(row[1]) + added
            if chain_length <= max(SNAPSHOT_INTERVAL, approx_size // SNAPSHOT_FRACTION):
                txn.execute(
                    "INSERT INTO state_groups (state_group, room_id, prev_group, chain_length,"
                    " approx_size) VALUES (?, ?, ?, ?, ?)",
                    (group, room_id, prev_group, chain_length, approx_size),
                )
                txn.executemany(
                    "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
                    " VALUES (?, ?, ?, ?)",
                    [(group, t, sk, eid) for (t, sk), eid in changes.items()],
                )
                return group
            full = dict(self.load_group_txn(txn, prev_group))
            for key, eid in changes.items():
                if eid is None:
                    full.pop(key, None)
                else:
                    full[key] = eid
        else:
            full = {k: v for k, v in changes.items() if v is not None}
        txn.execute(
            "INSERT INTO state_groups (state_group, room_id, prev_group, chain_length,"
            " approx_size) VALUES (?, ?, NULL, 0, ?)",
            (group, room_id, len(full)),
        )
        txn.executemany(
            "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
            " VALUES (?, ?, ?, ?)",
            [(group, t, sk, eid) for (t, sk), eid in full.items()],
        )
        return group


def _allocate_group(txn: Txn) -> int:
    # The UPDATE takes the row lock first on PostgreSQL, so concurrent writers queue here
    # rather than both reading the same value.
    txn.execute("UPDATE state_group_counter SET value = value + 1")
    row = txn.select_one("SELECT value FROM state_group_counter")
    assert row is not None
    return int(row[0])


def diff_states(
    old: Mapping[StateKey, str], new: Mapping[StateKey, str]
) -> dict[StateKey, str | None]:
    """The changes turning ``old`` into ``new`` (``None`` for removed keys)."""
    changes: dict[StateKey, str | None] = {k: v for k, v in new.items() if old.get(k) != v}
    for k in old:
        if k not in new:
            changes[k] = None
    return changes
