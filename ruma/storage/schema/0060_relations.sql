-- Event relations (m.relates_to: threads, edits, references, annotations), one row per
-- relating timeline event, written in the same transaction that persists the event and
-- deleted when it is redacted. Read by ruma/rooms/relations.py through
-- ruma/storage/relations.py (the /relations and /threads endpoints, bundled aggregations).
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    relates_to_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    -- m.annotation's key (a reaction's emoji); NULL for other relations.
    aggregation_key TEXT,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    stream_position BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, stream_position);
CREATE INDEX event_relations_room ON event_relations (room_id, rel_type, stream_position);
