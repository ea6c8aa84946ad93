"""The search index on both engines (SQLite FTS5, PostgreSQL tsvector): written with the
event, removed on redaction, ranked, stemmed and prefix-matched, ordered by recency, and
safe with any search term."""

from __future__ import annotations

from ruma.rooms.reading import EventFilter
from ruma.search.handler import SearchHandler, SearchQuery
from ruma.storage.search import SearchStore, search_words
from tests.rooms.helpers import RoomsTestMixin
from tests.storage.engines import PostgresEngine, SQLiteEngine

BODY = ("content.body",)


class SearchContract(RoomsTestMixin):
    def setUp(self) -> None:
        super().setUp()
        self.search = SearchStore(self.db)
        self.room = self.create_room(preset="public_chat", name="Bicycle repairs")
        self.handler = SearchHandler(self.store, self.search, self.rooms.reader)

    def find(self, term: str, *, rank: bool = True, keys: tuple[str, ...] = BODY,
             before: int | None = None, limit: int = 10, offset: int = 0) -> list[str]:
        hits, _ = self.run_sync(self.search.search(
            [self.room], search_words(term), keys=keys, order_by_rank=rank, offset=offset,
            before_position=before, limit=limit,
        ))
        return [h.event_id for h in hits]

    def test_stemming_prefix_and_rank(self) -> None:
        """'wheel' finds 'wheels' (stem/prefix); the more relevant text ranks first; the
        count covers every match."""
        weak = self.send_text(self.room, self.alice, "my wheels are fine, thanks for asking")
        strong = self.send_text(self.room, self.alice, "wheel wheel wheel")
        self.send_text(self.room, self.alice, "unrelated")
        self.assertEqual(self.find("wheel"), [strong, weak])
        self.assertEqual(self.find("whe"), [strong, weak])
        _, count = self.run_sync(self.search.search(
            [self.room], ["wheel"], keys=BODY, order_by_rank=True, offset=0,
            before_position=None, limit=1,
        ))
        self.assertEqual(count, 2)

    def test_all_words_must_match(self) -> None:
        """Every word of the term must match."""
        both = self.send_text(self.room, self.alice, "flat tyre on the road")
        self.send_text(self.room, self.alice, "flat battery")
        self.assertEqual(self.find("flat tyre"), [both])

    def test_recent_and_pagination(self) -> None:
        """Recency order is newest first and continues below a position; rank order
        continues at an offset."""
        ids = [self.send_text(self.room, self.alice, f"chain {i}") for i in range(4)]
        self.assertEqual(self.find("chain", rank=False), list(reversed(ids)))
        first = self.run_sync(self.search.search(
            [self.room], ["chain"], keys=BODY, order_by_rank=False, offset=0,
            before_position=None, limit=2,
        ))[0]
        rest = self.find("chain", rank=False, before=first[-1].stream_position)
        self.assertEqual(rest, [ids[1], ids[0]])
        self.assertEqual(len(set(self.find("chain", limit=2) + self.find("chain", offset=2))), 4)

    def test_redaction_unindexes(self) -> None:
        """A redacted event leaves the index; others stay."""
        gone = self.send_text(self.room, self.alice, "saddle one")
        kept = self.send_text(self.room, self.alice, "saddle two")
        self.run_sync(self.rooms.messages.redact(self.alice, self.room, gone, None, None))
        self.assertEqual(self.find("saddle"), [kept])

    def test_names_and_topics(self) -> None:
        """Room names and topics are indexed under their own keys."""
        self.assertEqual(len(self.find("bicycle", keys=("content.name",))), 1)
        self.assertEqual(self.find("bicycle"), [])

    def test_hostile_terms(self) -> None:
        """Query syntax characters are words or nothing, never errors."""
        self.send_text(self.room, self.alice, 'he said "NEAR" and OR')
        for term in ['"', "NEAR(", "a:*", "x & !y", "OR", "*", "-", "' OR 1=1 --"]:
            self.find(term)
        self.assertEqual(len(self.find("near")), 1)

    def test_handler_joined_rooms_only(self) -> None:
        """The handler searches only rooms the user is joined to."""
        other = self.create_room(self.bob, preset="public_chat")
        self.send_text(other, self.bob, "spokes")
        query = SearchQuery(search_term="spokes", event_filter=EventFilter())
        self.assertEqual(self.run_sync(self.handler.search(self.alice, query)).results, [])
        self.run_sync(self.rooms.membership.join(self.alice, other))
        self.assertEqual(len(self.run_sync(self.handler.search(self.alice, query)).results), 1)


class SearchSQLiteTests(SearchContract, SQLiteEngine):
    pass


class SearchPostgresTests(SearchContract, PostgresEngine):
    pass
