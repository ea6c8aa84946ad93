-- The bus's durable log: one row per stream position (see ruma/storage/database.py).
CREATE TABLE stream (
    position BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    room_id TEXT,
    user_id TEXT,
    ref TEXT
);
CREATE INDEX stream_room ON stream (room_id, position);
CREATE INDEX stream_user ON stream (user_id, position);
