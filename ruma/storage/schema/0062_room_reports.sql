-- Reports of rooms and events by users (POST /rooms/{id}/report[/{eventId}]), kept for the
-- server's admins. event_id is NULL for a report about the whole room.
CREATE TABLE room_reports (
    report_id BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_id TEXT,
    user_id TEXT NOT NULL,
    reason TEXT,
    score BIGINT,
    received_ts BIGINT NOT NULL
);
CREATE INDEX room_reports_ts ON room_reports (received_ts);
