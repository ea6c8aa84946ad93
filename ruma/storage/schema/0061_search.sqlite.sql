-- Full-text search over room messages (POST /search), SQLite flavour: the indexed values in
-- event_search and an FTS5 index over them as an external-content table, both maintained by
-- ruma/storage/search.py in the transaction that persists (or redacts) the event.
CREATE TABLE event_search (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    -- content.body, content.name or content.topic
    key TEXT NOT NULL,
    sender TEXT NOT NULL,
    value TEXT NOT NULL,
    stream_position BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL
);
CREATE INDEX event_search_room ON event_search (room_id, stream_position);
CREATE VIRTUAL TABLE event_search_fts USING fts5(
    value, content='event_search', content_rowid='rowid', tokenize='porter unicode61'
);
