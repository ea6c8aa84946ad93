-- The event bus's durable subscribers: the last stream position each has fully handled.
CREATE TABLE bus_subscriber_positions (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);

-- Read receipts. thread_id is '' for an unthreaded receipt ("main" and event IDs are threads).
-- stream_pos is the stream position taken when the receipt last changed.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_room_pos ON receipts (room_id, stream_pos);

-- Account data, global (room_id = '') and per room.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_user_pos ON account_data (user_id, stream_pos);

-- Stored sync filters (POST /user/{userId}/filter). filter_id is allocated per user.
CREATE TABLE user_filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- Presence of local users. last_active_ts is milliseconds since the epoch (0 = never).
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    currently_active BOOLEAN NOT NULL,
    stream_pos BIGINT NOT NULL
);
CREATE INDEX presence_pos ON presence (stream_pos);
