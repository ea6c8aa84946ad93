-- Backfilled history: events older than the point at which this server joined a room.
-- They get negative stream positions (never written to the `stream` table, so the bus does
-- not announce them as new), handed out downwards from this counter in blocks, so
-- /messages orders them before everything the room had when we joined.
CREATE TABLE backfill_position_counter (
    value BIGINT NOT NULL
);
INSERT INTO backfill_position_counter (value) VALUES (0);
