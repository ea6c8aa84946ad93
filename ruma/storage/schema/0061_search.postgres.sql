-- Full-text search over room messages (POST /search), PostgreSQL flavour: a tsvector per
-- indexed value with a GIN index, maintained by ruma/storage/search.py in the transaction
-- that persists (or redacts) the event.
CREATE TABLE event_search (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    -- content.body, content.name or content.topic
    key TEXT NOT NULL,
    sender TEXT NOT NULL,
    value TEXT NOT NULL,
    stream_position BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    vector TSVECTOR NOT NULL
);
CREATE INDEX event_search_room ON event_search (room_id, stream_position);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
